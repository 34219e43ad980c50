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
    zero_range(p, dim, 0..n)
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
    let effnet = preset("efficientnet-lite0").unwrap();
    let model = effnet.config.init_image(&device).unwrap();
    let err = prune_structured(model, &effnet.config, 0.5, Norm::L1, &device).unwrap_err();
    assert!(err.to_string().contains("efficientnet"), "{err}");
}

#[test]
fn removing_dead_attention_heads_and_neurons_keeps_the_function() {
    let device = Device::flex();
    let p = preset("vit-lite").unwrap();
    let ImageModel::VitLite(mut vit) = p.config.init_image(&device).unwrap() else {
        panic!("a ViT")
    };
    // Dead units in every layer: head `l % 4` (its 16 query/key/value columns and biases, its
    // 16 output rows: the head adds exactly zero) and 32 of the 128 feed-forward neurons
    // (GELU(0) = 0). The dead head sits at a different index in each layer, so a slicing
    // mistake cannot cancel out.
    let d_k = 16;
    for (l, layer) in vit.encoder.layers.iter_mut().enumerate() {
        let h = l % 4;
        let dead = |p: Param<Tensor<2>>, dim: usize| zero_range(p, dim, h * d_k..(h + 1) * d_k);
        let mha = &mut layer.mha;
        for proj in [&mut mha.query, &mut mha.key, &mut mha.value] {
            proj.weight = dead(proj.weight.clone(), 1);
            proj.bias = proj
                .bias
                .clone()
                .map(|b| zero_range(b, 0, h * d_k..(h + 1) * d_k));
        }
        mha.output.weight = dead(mha.output.weight.clone(), 0);
        let ff = &mut layer.pwff;
        ff.linear_inner.weight = zero_first(ff.linear_inner.weight.clone(), 1, 32);
        ff.linear_inner.bias = ff.linear_inner.bias.clone().map(|b| zero_first(b, 0, 32));
        ff.linear_outer.weight = zero_first(ff.linear_outer.weight.clone(), 0, 32);
    }
    let model = ImageModel::VitLite(vit);
    let x = Tensor::<4>::random([3, 1, 28, 28], Distribution::Normal(0.0, 1.0), &device);
    let before: Vec<f32> = model.forward(x.clone()).into_data().try_to_vec().unwrap();

    for norm in [Norm::L1, Norm::L2] {
        let (smaller, config) =
            prune_structured(model.clone(), &p.config, 0.25, norm, &device).unwrap();
        let kiln_models::ModelConfig::VitLite(c) = &config else {
            panic!("a ViT config")
        };
        assert_eq!(c.layer_heads, vec![3; 4]);
        assert_eq!(c.layer_mlp_dims, vec![96; 4]);
        let after: Vec<f32> = smaller.forward(x.clone()).into_data().try_to_vec().unwrap();
        let diff = before
            .iter()
            .zip(&after)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-4, "{norm:?}: max logit difference {diff}");
        // 139,018 - per layer (a head: 3·(64·16 + 16) + 16·64; 32 neurons: 64·32 + 32 + 32·64).
        let per_layer = (3 * (64 * 16 + 16) + 16 * 64) + (64 * 32 + 32 + 32 * 64);
        assert_eq!(
            burn::module::Module::num_params(&smaller),
            139_018 - 4 * per_layer
        );
        // The pruned config round-trips.
        let json = serde_json::to_string(&config).unwrap();
        let back: kiln_models::ModelConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
    }
}

/// Zeroes the entries `range` of dimension `dim` of a parameter.
fn zero_range<const D: usize>(
    p: Param<Tensor<D>>,
    dim: usize,
    range: std::ops::Range<usize>,
) -> Param<Tensor<D>> {
    p.map(|t| {
        let shape = t.dims();
        let inner: usize = shape[dim + 1..].iter().product();
        let len: usize = shape.iter().product();
        let mask: Vec<f32> = (0..len)
            .map(|i| {
                if range.contains(&((i / inner) % shape[dim])) {
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
fn a_structurally_pruned_run_is_smaller_and_fine_tunes_back() {
    let dense = tempfile::tempdir().unwrap();
    let mut config = TrainConfig::for_preset("mlp").unwrap();
    config.recipe.epochs = 8;
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
    // A global threshold has no meaning for structured pruning: an error, not ignored.
    let global = PruneConfig {
        scope: Scope::Global,
        ..prune
    };
    let err = prune_run(dense.path(), out.path(), &global, &TrainOptions::quiet()).unwrap_err();
    assert!(err.to_string().contains("global"), "{err}");
    // The compression table refuses a run whose prune.json cannot be read, rather than
    // labelling it dense.
    std::fs::write(out.path().join("prune.json"), "{ not json").unwrap();
    let err = kiln_compress::report::compress_table(&[out.path().to_path_buf()], None).unwrap_err();
    assert!(err.to_string().contains("prune.json"), "{err}");
}

#[test]
fn a_vit_loses_a_quarter_of_its_heads_and_fine_tunes_back() {
    // ViT-lite on the bundled digits (8x8, 16 patches): 12 epochs dense, then a quarter of
    // every layer's heads and feed-forward neurons removed and 4 epochs of fine-tuning.
    let dense = tempfile::tempdir().unwrap();
    let mut config = TrainConfig::for_preset("vit-lite-digits").unwrap();
    config.recipe.epochs = 12;
    train(&config, dense.path(), &TrainOptions::quiet()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let prune = PruneConfig {
        method: Method::Structured,
        sparsity: 0.25,
        scope: Scope::Layer,
        iterations: 1,
        finetune_epochs: 4,
        lr: Some(3e-4),
        layers: vec![],
    };
    let report = prune_run(dense.path(), out.path(), &prune, &TrainOptions::quiet()).unwrap();
    // Per layer 33,472 → 3 heads (3·(3·(64·16 + 16)) + 48·64 + 64) and 96 neurons.
    let layer = 3 * 3 * (64 * 16 + 16) + 48 * 64 + 64 + (64 * 96 + 96 + 96 * 64 + 64) + 4 * 64;
    assert_eq!(report.params, report.dense_params - 4 * (33_472 - layer));
    assert!(report.bytes < report.dense_bytes, "{report:?}");
    assert!(
        report.dense_accuracy > 0.85 && report.error_increase_points() < 4.0,
        "dense {} pruned {}",
        report.dense_accuracy,
        report.accuracy
    );
    let saved = TrainConfig::load(&out.path().join("config.toml")).unwrap();
    let kiln_models::ModelConfig::VitLite(v) = &saved.model else {
        panic!("a ViT")
    };
    assert_eq!(
        (v.layer_heads.clone(), v.layer_mlp_dims.clone()),
        (vec![3; 4], vec![96; 4])
    );
    let eval = kiln_train::evaluate_run(out.path()).unwrap();
    assert_eq!(eval.accuracy, report.accuracy);
}
