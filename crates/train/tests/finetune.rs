//! Fine-tuning on real data: a model pretrained on MNIST, linear-probed on Fashion-MNIST with
//! 100 labels per class (frozen backbone stays bit-identical, the new head learns), and clear
//! errors for weights of another architecture.

use kiln_train::{FineTune, TrainConfig, TrainOptions, load_run, train};

fn mlp_weights(m: &kiln_models::ImageModel) -> Vec<Vec<f32>> {
    let kiln_models::ImageModel::Mlp(mlp) = m else {
        panic!("an MLP")
    };
    mlp.hidden
        .iter()
        .chain([&mlp.output])
        .map(|l| l.weight.val().into_data().try_to_vec::<f32>().unwrap())
        .collect()
}

#[test]
fn linear_probing_keeps_the_backbone_and_trains_a_new_head() {
    let pretrained = tempfile::tempdir().unwrap();
    let mut config = TrainConfig::for_preset("mlp-mnist").unwrap();
    config.dataset = "mnist".into();
    config.recipe.epochs = 2;
    config.train_per_class = Some(300);
    config.test_per_class = Some(50);
    let report = train(&config, pretrained.path(), &TrainOptions::quiet()).unwrap();
    assert!(report.test.accuracy > 0.85, "{}", report.test.accuracy);

    let probe = tempfile::tempdir().unwrap();
    let mut ft = TrainConfig::finetune_from(
        pretrained.path(),
        "fashion-mnist",
        FineTune::linear_probe(pretrained.path()),
    )
    .unwrap();
    ft.recipe.epochs = 8;
    ft.train_per_class = Some(100);
    ft.test_per_class = Some(100);
    let report = train(&ft, probe.path(), &TrainOptions::quiet()).unwrap();
    // MNIST features, a new head, 1,000 Fashion-MNIST labels: far above chance (10%).
    assert!(report.test.accuracy > 0.5, "{}", report.test.accuracy);

    let device = config.recipe.device.device();
    let (_, _, before) = load_run(pretrained.path(), &device).unwrap();
    let (saved, _, after) = load_run(probe.path(), &device).unwrap();
    assert!(saved.finetune.as_ref().is_some_and(|f| f.freeze_backbone));
    let (before, after) = (mlp_weights(&before), mlp_weights(&after));
    assert!(
        before[0] == after[0] && before[1] == after[1],
        "the frozen backbone changed"
    );
    assert!(before[2] != after[2], "the head is new and trained");
}

#[test]
fn gradual_unfreezing_probes_then_trains_everything() {
    let pretrained = tempfile::tempdir().unwrap();
    let mut config = TrainConfig::for_preset("mlp").unwrap();
    config.recipe.epochs = 2;
    train(&config, pretrained.path(), &TrainOptions::quiet()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut ft = TrainConfig::finetune_from(
        pretrained.path(),
        "digits",
        FineTune::full(pretrained.path(), 0.5),
    )
    .unwrap();
    ft.recipe.epochs = 4;
    let (probe, last) =
        kiln_train::finetune::train_gradual(&ft, out.path(), 2, &TrainOptions::quiet()).unwrap();
    assert_eq!((probe.epochs.len(), last.epochs.len()), (2, 2));
    assert!(last.test.accuracy > 0.9, "{}", last.test.accuracy);
    let device = config.recipe.device.device();
    let (_, _, original) = load_run(pretrained.path(), &device).unwrap();
    let (_, _, probed) = load_run(&out.path().join("frozen"), &device).unwrap();
    let (_, _, done) = load_run(out.path(), &device).unwrap();
    let (original, probed, done) = (
        mlp_weights(&original),
        mlp_weights(&probed),
        mlp_weights(&done),
    );
    assert!(original[0] == probed[0], "phase 1 keeps the backbone");
    assert!(
        probed[0] != done[0] && probed[2] != done[2],
        "phase 2 trains everything"
    );
    // The epochs must leave room for both phases.
    let err = kiln_train::finetune::train_gradual(&ft, out.path(), 4, &TrainOptions::quiet())
        .unwrap_err();
    assert!(err.to_string().contains("between 1 and 3"), "{err}");
}

#[test]
fn layers_freeze_by_index_keras_style() {
    let pretrained = tempfile::tempdir().unwrap();
    let mut config = TrainConfig::for_preset("mlp").unwrap();
    config.recipe.epochs = 1;
    train(&config, pretrained.path(), &TrainOptions::quiet()).unwrap();
    let device = config.recipe.device.device();
    let (_, _, original) = load_run(pretrained.path(), &device).unwrap();
    let layers = kiln_optim::layers(&original);
    assert_eq!(layers.len(), mlp_weights(&original).len(), "{layers:?}");

    // Every layer but the last frozen (`@..-1`), the last one at full rate, the pretrained
    // head kept (same dataset).
    let out = tempfile::tempdir().unwrap();
    let mut ft = TrainConfig::finetune_from(
        pretrained.path(),
        "digits",
        FineTune {
            new_head: false,
            ..FineTune::full(pretrained.path(), 1.0)
        },
    )
    .unwrap();
    ft.recipe.epochs = 1;
    ft.recipe.optim.groups = vec![kiln_optim::GroupRule::parse("@..-1=frozen").unwrap()];
    train(&ft, out.path(), &TrainOptions::quiet()).unwrap();
    let (_, _, tuned) = load_run(out.path(), &device).unwrap();
    let (before, after) = (mlp_weights(&original), mlp_weights(&tuned));
    let n = before.len();
    assert!(before[..n - 1] == after[..n - 1], "layers 0..-1 are frozen");
    assert!(before[n - 1] != after[n - 1], "the last layer trains");

    // An index beyond the model names the rule and the layer count.
    ft.recipe.optim.groups = vec![kiln_optim::GroupRule::parse("@7=frozen").unwrap()];
    let err = train(&ft, out.path(), &TrainOptions::quiet()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("@7") && msg.contains(&format!("{n} layers")),
        "{msg}"
    );
}

#[test]
fn weights_of_another_architecture_are_named() {
    let pretrained = tempfile::tempdir().unwrap();
    let mut config = TrainConfig::for_preset("mlp").unwrap();
    config.recipe.epochs = 1;
    train(&config, pretrained.path(), &TrainOptions::quiet()).unwrap();

    // An MLP 64-128-64 backbone cannot start an MLP 64-256-128.
    let out = tempfile::tempdir().unwrap();
    let mut other = TrainConfig::for_preset("mlp-mnist").unwrap();
    other.dataset = "digits".into();
    other.adapt_model = true;
    other.finetune = Some(FineTune::linear_probe(pretrained.path()));
    let err = train(&other, out.path(), &TrainOptions::quiet()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("model.bpk") && msg.contains("hidden.0") && msg.contains("architecture"),
        "{msg}"
    );

    // A folder without weights.
    let empty = tempfile::tempdir().unwrap();
    let mut ft = config.clone();
    ft.finetune = Some(FineTune::full(empty.path(), 0.1));
    let err = train(&ft, out.path(), &TrainOptions::quiet()).unwrap_err();
    assert!(err.to_string().contains("model.bpk"), "{err}");
}

#[test]
fn a_loaded_run_does_not_read_its_weights_file_again() {
    use kiln_models::Classifier;
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let mut config = TrainConfig::for_preset("mlp").unwrap();
    config.recipe.epochs = 1;
    train(&config, a.path(), &TrainOptions::quiet()).unwrap();
    config.recipe.seed += 1;
    train(&config, b.path(), &TrainOptions::quiet()).unwrap();
    let device = config.recipe.device.device();
    let x = burn::tensor::Tensor::<4>::ones([2, 1, 8, 8], &device);
    let original = std::fs::read(a.path().join("model.bpk")).unwrap();

    let (_, _, loaded) = load_run(a.path(), &device).unwrap();
    // The file is rewritten in place with other weights before the model is first used.
    std::fs::write(
        a.path().join("model.bpk"),
        std::fs::read(b.path().join("model.bpk")).unwrap(),
    )
    .unwrap();
    let got = loaded.forward(x.clone()).into_data();
    std::fs::write(a.path().join("model.bpk"), &original).unwrap();
    let (_, _, fresh) = load_run(a.path(), &device).unwrap();
    assert_eq!(got.as_bytes(), fresh.forward(x).into_data().as_bytes());
}

#[test]
fn pruning_masks_touch_only_linear_and_conv_weights() {
    use burn::module::Module;
    use kiln_models::{Classifier, ImageModel};
    let device = burn::tensor::Device::flex().autodiff();
    let model = kiln_models::preset("vit-lite")
        .unwrap()
        .config
        .init_image(&device)
        .unwrap();
    let ImageModel::VitLite(mut vit) = model else {
        panic!("a ViT")
    };
    // A class token that happens to be zero is not a pruned weight; a zero in the head is.
    vit.cls_token = vit.cls_token.map(|t| t.zeros_like().require_grad());
    vit.head.weight = vit.head.weight.map(|w| {
        let [a, b] = w.dims();
        let mask = burn::tensor::Tensor::<2>::ones([a, b], &w.device()).slice_assign(
            [0..1, 0..b],
            burn::tensor::Tensor::zeros([1, b], &w.device()),
        );
        (w * mask).detach().require_grad()
    });
    let model = ImageModel::VitLite(vit);
    let x = burn::tensor::Tensor::<4>::ones([2, 1, 28, 28], &device);
    let loss = model.forward(x).powi_scalar(2).sum();
    let mut grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
    kiln_train::mask_pruned_gradients(&model, &mut grads);
    let ImageModel::VitLite(vit) = &model else {
        unreachable!()
    };
    let cls = grads
        .get::<3>(vit.cls_token.id)
        .expect("a class-token gradient");
    assert!(
        cls.abs().sum().into_scalar::<f32>() > 0.0,
        "the class token was masked"
    );
    let head = grads.get::<2>(vit.head.weight.id).expect("a head gradient");
    let [_, b] = head.dims();
    let pruned_row = head
        .clone()
        .slice([0..1, 0..b])
        .abs()
        .sum()
        .into_scalar::<f32>();
    let other_rows = head.slice([1..2, 0..b]).abs().sum().into_scalar::<f32>();
    assert_eq!(pruned_row, 0.0);
    assert!(other_rows > 0.0);
    let _ = model.num_params();
}
