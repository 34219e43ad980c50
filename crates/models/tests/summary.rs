//! Summaries of every preset: snapshot-tested text and JSON, totals equal to burn's count, and
//! mult-adds equal to values computed by hand (formulas in each test).

use burn::module::Module;
use burn::tensor::Device;
use kiln_models::{Classifier, ImageModel, ZooModel, preset, presets};

/// The suite's one wrapper around insta: snapshots go through the same filters, which blank
/// out anything that could differ between machines (temporary paths, timings).
macro_rules! summary_snapshot {
    ($name:expr, $value:expr) => {
        insta::with_settings!({filters => vec![
            (r#"/tmp/[^\s"]+"#, "[TMP]"),
            (r"\d+\.\d+s\b", "[SECONDS]"),
        ]}, {
            insta::assert_snapshot!($name, $value);
        })
    };
}

fn device() -> Device {
    Device::flex().autodiff()
}

fn summary_of(name: &str) -> kiln_core::ModelSummary {
    let p = preset(name).unwrap();
    p.config
        .init(&device())
        .unwrap()
        .summary(name, &p.summary_input())
        .unwrap()
}

#[test]
fn every_preset_summary_matches_snapshot_and_burn_count() {
    for preset in presets() {
        let model = preset.config.init(&device()).unwrap();
        let summary = model.summary(preset.name, &preset.summary_input()).unwrap();
        assert_eq!(summary.total_params, model.num_params(), "{}", preset.name);
        let layer_sum: usize = summary.layers.iter().map(|l| l.params).sum();
        assert_eq!(
            layer_sum, summary.total_params,
            "{}: rows must add up",
            preset.name
        );
        summary_snapshot!(format!("{}_text", preset.name), summary.to_string());
        summary_snapshot!(format!("{}_json", preset.name), summary.to_json());
    }
}

#[test]
fn mlp_mult_adds_by_hand() {
    // Linear: rows * d_in * d_out. Preset `mlp` (64-128-64-10), batch 1:
    // 64*128 + 128*64 + 64*10 = 8,192 + 8,192 + 640 = 17,024.
    assert_eq!(summary_of("mlp").total_mult_adds, 17_024);
    let p = preset("mlp").unwrap();
    let model = p.config.init(&device()).unwrap();
    // A batch of 32 multiplies every linear layer's count by 32.
    let summary = model.summary("mlp", &[32, 1, 8, 8]).unwrap();
    assert_eq!(summary.total_mult_adds, 32 * 17_024);
    let hidden0 = summary
        .layers
        .iter()
        .find(|l| l.path == "hidden.0")
        .unwrap();
    assert_eq!(hidden0.output_shape, vec![32, 128]);
    assert_eq!(hidden0.params, 64 * 128 + 128);
    // LeNet-300-100: 784*300 + 300*100 + 100*10 = 266,200; 266,610 parameters with biases.
    let lenet = summary_of("lenet-300-100");
    assert_eq!(lenet.total_mult_adds, 266_200);
    assert_eq!(lenet.total_params, 266_610);
    assert_eq!(lenet.param_bytes, 266_610 * 4);
}

#[test]
fn convolution_mult_adds_by_hand() {
    // Conv2d: C_out * H_out * W_out * (C_in / groups) * k_h * k_w per image.
    // LeNet-5: conv1 6*28*28*1*25 = 117,600; conv2 16*10*10*6*25 = 240,000;
    // dense 400*120 + 120*84 + 84*10 = 58,920. Total 416,520.
    let lenet5 = summary_of("lenet5");
    let conv1 = lenet5
        .layers
        .iter()
        .find(|l| l.path == "blocks.0.conv")
        .unwrap();
    assert_eq!(
        (conv1.mult_adds, conv1.output_shape.clone()),
        (117_600, vec![1, 6, 28, 28])
    );
    assert_eq!(lenet5.total_mult_adds, 416_520);
    assert_eq!(lenet5.total_params, 61_706);
    // cnn-small: conv1 32*26*26*1*9 = 194,688; conv2 64*11*11*32*9 = 2,230,272;
    // dense 1600*128 + 128*10 = 206,080. Total 2,631,040.
    let cnn = summary_of("cnn-small");
    let conv2 = cnn
        .layers
        .iter()
        .find(|l| l.path == "blocks.1.conv")
        .unwrap();
    assert_eq!(
        (conv2.mult_adds, conv2.output_shape.clone()),
        (2_230_272, vec![1, 64, 11, 11])
    );
    assert_eq!(cnn.total_mult_adds, 2_631_040);
    assert_eq!(cnn.total_params, 225_034);
}

#[test]
fn attention_mult_adds_by_hand() {
    // ViT-lite, batch 1: L = 49 patches + 1 class token = 50, d = 64, h = 4, d_k = 16, d_ff = 128.
    // Patch embedding conv: 64 * 7 * 7 * 1 * 4 * 4 = 50,176.
    // Per layer: Q, K, V, O projections 4 * 50 * 64 * 64 = 819,200;
    //   scores QK^T and weights*V: 2 * 4 * 50 * 50 * 16 = 320,000;
    //   feed-forward 50 * 64 * 128 * 2 = 819,200.
    // 4 layers: 4 * 1,958,400 = 7,833,600. Head 64 * 10 = 640. Total 7,884,416.
    let vit = summary_of("vit-lite");
    let mha = vit
        .layers
        .iter()
        .find(|l| l.path == "encoder.layers.0.mha")
        .unwrap();
    assert_eq!(mha.mult_adds, 819_200 + 320_000);
    assert_eq!(mha.output_shape, vec![1, 50, 64]);
    assert_eq!(mha.params, 4 * (64 * 64 + 64));
    assert_eq!(vit.total_mult_adds, 7_884_416);
    assert_eq!(vit.total_params, 139_018);
}

#[test]
fn frozen_layers_show_as_non_trainable() {
    let p = preset("mlp").unwrap();
    let ZooModel::Image(ImageModel::Mlp(mut mlp)) = p.config.init(&device()).unwrap() else {
        panic!("mlp preset is an MLP")
    };
    mlp.hidden[0] = mlp.hidden[0].clone().no_grad();
    let summary = mlp.summary("mlp", &[1, 1, 8, 8]).unwrap();
    let row = summary
        .layers
        .iter()
        .find(|l| l.path == "hidden.0")
        .unwrap();
    assert_eq!(row.trainable_label(), "no");
    assert_eq!(summary.non_trainable_params, 64 * 128 + 128);
    assert_eq!(
        summary.trainable_params + summary.non_trainable_params,
        mlp.num_params()
    );
}

#[test]
fn wrong_input_shapes_are_errors() {
    let p = preset("vit-lite").unwrap();
    let model = p.config.init(&device()).unwrap();
    let err = model
        .summary("vit-lite", &[1, 3, 28, 28])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("expected [batch, 1, 28, 28], found [1, 3, 28, 28]"),
        "{err}"
    );
    let p = preset("char-lm").unwrap();
    let model = p.config.init(&device()).unwrap();
    let err = model.summary("char-lm", &[1, 500]).unwrap_err().to_string();
    assert!(err.contains("1 <= sequence <= 128"), "{err}");
}
