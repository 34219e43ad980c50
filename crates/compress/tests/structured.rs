//! Structured pruning physically removes channels and neurons: removing all-zero ones leaves
//! the network's function unchanged (checks every tensor slice, including the flatten rows),
//! the model shrinks, and a pruned run fine-tunes back on real data.

use burn::module::Param;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use kiln_compress::{Method, Norm, PruneConfig, Scope, prune_run, prune_structured};
use kiln_models::{Classifier, ImageModel, preset};
use kiln_train::{TrainConfig, TrainOptions, train};

/// Zeroes the first `n` entries of dimension `dim` of a parameter.
fn zero_first<const D: usize>(p: Param<Tensor<D>>, dim: usize, n: usize) -> Param<Tensor<D>> {
    p.map(|t| {
        let shape = t.dims();
        let inner: usize = shape[dim + 1..].iter().product();
        let len: usize = shape.iter().product();
        let mask: Vec<f32> = (0..len)
            .map(|i| {
                if (i / inner) % shape[dim] < n {
                    0.0
                } else {
                    1.0
                }
            })
            .collect();
        let device = t.device();
        t * Tensor::from_data(TensorData::new(mask, shape), &device)
    })
}

#[test]
fn removing_dead_channels_and_neurons_keeps_the_function() {
    let device = Device::flex();
    let p = preset("cnn-small").unwrap();
    let ImageModel::Cnn(mut cnn) = p.config.init_image(&device).unwrap() else {
        panic!("a CNN")
    };
    // Dead units: 8 of 32 filters, 16 of 64 filters, 32 of 128 hidden neurons (weights and
    // biases zero: ReLU and max pooling then output exact zeros).
    for (block, n) in [(0, 8), (1, 16)] {
        let conv = &mut cnn.blocks[block].conv;
        conv.weight = zero_first(conv.weight.clone(), 0, n);
        conv.bias = conv.bias.clone().map(|b| zero_first(b, 0, n));
    }
    cnn.hidden[0].weight = zero_first(cnn.hidden[0].weight.clone(), 1, 32);
    cnn.hidden[0].bias = cnn.hidden[0].bias.clone().map(|b| zero_first(b, 0, 32));
    let model = ImageModel::Cnn(cnn);
    let x = Tensor::<4>::random([4, 1, 28, 28], Distribution::Normal(0.0, 1.0), &device);
    let before: Vec<f32> = model.forward(x.clone()).into_data().try_to_vec().unwrap();

    let (smaller, config) = prune_structured(model, &p.config, 0.25, Norm::L1, &device).unwrap();
    let kiln_models::ModelConfig::Cnn(c) = &config else {
        panic!("a CNN config")
    };
    assert_eq!(
        (c.blocks[0].channels, c.blocks[1].channels, c.hidden[0]),
        (24, 48, 96)
    );
    let after: Vec<f32> = smaller.forward(x).into_data().try_to_vec().unwrap();
    let diff = before
        .iter()
        .zip(&after)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-4, "max logit difference {diff}");
    // Fewer parameters: 225,034 → conv 24·9+24, 48·24·9+48, dense 1200·96+96, 96·10+10.
    assert_eq!(
        burn::module::Module::num_params(&smaller),
        (24 * 9 + 24) + (48 * 24 * 9 + 48) + (48 * 25 * 96 + 96) + (96 * 10 + 10)
    );

    // Bad input.
    let model = p.config.init_image(&device).unwrap();
    let err = prune_structured(model, &p.config, 1.0, Norm::L2, &device).unwrap_err();
    assert!(err.to_string().contains("[0, 1)"), "{err}");
    let vit = preset("vit-lite").unwrap();
    let model = vit.config.init_image(&device).unwrap();
    let err = prune_structured(model, &vit.config, 0.5, Norm::L1, &device).unwrap_err();
    assert!(err.to_string().contains("vit"), "{err}");
}

#[test]
fn a_structurally_pruned_run_is_smaller_and_fine_tunes_back() {
    let dense = tempfile::tempdir().unwrap();
    let mut config = TrainConfig::for_preset("mlp").unwrap();
    config.epochs = 8;
    train(&config, dense.path(), &TrainOptions::quiet()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let prune = PruneConfig {
        method: Method::Structured,
        sparsity: 0.5,
        scope: Scope::Layer,
        iterations: 2,
        finetune_epochs: 3,
        lr: Some(1e-3),
        layers: vec![],
    };
    let report = prune_run(dense.path(), out.path(), &prune, &TrainOptions::quiet()).unwrap();
    assert!(report.params < report.dense_params * 6 / 10, "{report:?}");
    assert!(report.bytes < report.dense_bytes, "{report:?}");
    assert!(
        report.error_increase_points() < 4.0,
        "dense {} pruned {}",
        report.dense_accuracy,
        report.accuracy
    );
    // The run folder holds the smaller config; kiln eval reloads it.
    let saved = TrainConfig::load(&out.path().join("config.toml")).unwrap();
    let kiln_models::ModelConfig::Mlp(m) = &saved.model else {
        panic!("an MLP")
    };
    let kiln_models::ModelConfig::Mlp(original) = &config.model else {
        panic!("an MLP")
    };
    for (small, big) in m.hidden_sizes.iter().zip(&original.hidden_sizes) {
        assert_eq!(*small, big / 2);
    }
    let eval = kiln_train::evaluate_run(out.path()).unwrap();
    assert_eq!(eval.accuracy, report.accuracy);
}
