//! Summaries of every preset: snapshot-tested text and JSON, totals equal to burn's count, and
//! mult-adds equal to hand-computed values.

use burn::module::Module;
use burn::tensor::Device;
use kiln_models::{Classifier, presets};

fn device() -> Device {
    Device::flex().autodiff()
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
        assert_eq!(summary.trainable_params, summary.total_params);
        insta::assert_snapshot!(format!("{}_text", preset.name), summary.to_string());
        insta::assert_snapshot!(format!("{}_json", preset.name), summary.to_json());
    }
}

#[test]
fn mlp_mult_adds_by_hand() {
    // Preset `mlp`: 64 -> 128 -> 64 -> 10 on a batch of 1.
    // Linear mult-adds = rows * d_in * d_out: 64*128 + 128*64 + 64*10 = 8,192 + 8,192 + 640.
    let preset = kiln_models::preset("mlp").unwrap();
    let model = preset.config.init(&device()).unwrap();
    let summary = model.summary("mlp", &[1, 1, 8, 8]).unwrap();
    assert_eq!(summary.total_mult_adds, 17_024);
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
}

#[test]
fn lenet_300_100_counts_by_hand() {
    // 784*300 + 300*100 + 100*10 = 266,200 mult-adds; plus 410 biases = 266,610 parameters.
    let preset = kiln_models::preset("lenet-300-100").unwrap();
    let model = preset.config.init(&device()).unwrap();
    let summary = model
        .summary("lenet-300-100", &preset.summary_input())
        .unwrap();
    assert_eq!(summary.total_mult_adds, 266_200);
    assert_eq!(summary.total_params, 266_610);
    assert_eq!(summary.param_bytes, 266_610 * 4);
}

#[test]
fn frozen_layers_show_as_non_trainable() {
    let preset = kiln_models::preset("mlp").unwrap();
    let model = preset.config.init(&device()).unwrap();
    let kiln_models::ZooModel::Mlp(mut mlp) = model;
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
