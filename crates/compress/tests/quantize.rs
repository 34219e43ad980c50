//! Post-training weight quantization: error bounds of the int8 grid, per tensor and per
//! channel; a quantized run on real data keeps its accuracy, reloads quantized, and its file
//! is ≥ 3.5x smaller; bad settings are named.

use burn::module::Module;
use burn::tensor::{DType, Device, Distribution, Tensor};
use kiln_compress::{Calibration, Granularity, QuantizeConfig, quantize_run, quantize_weights};
use kiln_models::{Classifier, ImageModel, preset};
use kiln_train::{TrainConfig, TrainOptions, load_run, train};

fn first_weight(model: &ImageModel) -> Tensor<2> {
    let ImageModel::Mlp(mlp) = model else {
        panic!("an MLP")
    };
    mlp.hidden[0].weight.val()
}

#[test]
fn int8_weights_stay_within_half_a_step() {
    let device = Device::flex();
    let model = preset("lenet-300-100")
        .unwrap()
        .config
        .init_image(&device)
        .unwrap();
    let w = first_weight(&model)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let max = w.iter().fold(0f32, |m, v| m.max(v.abs()));

    let (q, tensors) = quantize_weights(model.clone(), 8, Granularity::PerTensor, 100.0).unwrap();
    assert_eq!(tensors, 3, "the three Linear weights, not the biases");
    let qw = first_weight(&q);
    assert!(matches!(qw.dtype(), DType::QFloat(_)), "{:?}", qw.dtype());
    let deq = qw.dequantize().into_data().try_to_vec::<f32>().unwrap();
    let step = max / 127.0;
    let err = w
        .iter()
        .zip(&deq)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(err <= step / 2.0 + 1e-6, "error {err} step {step}");

    // Per channel (blocks of 56 of the 784 inputs): a finer grid, a smaller error.
    let (qc, _) = quantize_weights(model.clone(), 8, Granularity::PerChannel, 100.0).unwrap();
    let deq_c = first_weight(&qc)
        .dequantize()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let err_c: f32 = w.iter().zip(&deq_c).map(|(a, b)| (a - b).abs()).sum();
    let err_t: f32 = w.iter().zip(&deq).map(|(a, b)| (a - b).abs()).sum();
    assert!(err_c < err_t, "per channel {err_c} vs per tensor {err_t}");

    // The quantized model still computes nearly the same logits.
    let x = Tensor::<4>::random([4, 1, 28, 28], Distribution::Normal(0.0, 1.0), &device);
    let diff = (model.forward(x.clone()) - q.forward(x))
        .abs()
        .max()
        .into_scalar::<f32>();
    assert!(diff < 0.05, "logits moved by {diff}");

    // Saved and reloaded into the float architecture: quantized tensors, ≥ 3.5x smaller.
    let dir = tempfile::tempdir().unwrap();
    model.save_file(dir.path().join("f32.bpk")).unwrap();
    q.clone().save_file(dir.path().join("q8.bpk")).unwrap();
    let size = |n: &str| std::fs::metadata(dir.path().join(n)).unwrap().len() as f64;
    let ratio = size("f32.bpk") / size("q8.bpk");
    assert!(ratio >= 3.5, "only {ratio:.2}x smaller");
    let reloaded = preset("lenet-300-100")
        .unwrap()
        .config
        .init_image(&device)
        .unwrap()
        .load_file(dir.path().join("q8.bpk"));
    assert_eq!(
        first_weight(&reloaded).into_data().as_bytes(),
        first_weight(&q).into_data().as_bytes()
    );
}

#[test]
fn a_quantized_run_keeps_its_accuracy_after_reloading() {
    let dense = tempfile::tempdir().unwrap();
    let mut config = TrainConfig::for_preset("mlp").unwrap();
    config.recipe.epochs = 8;
    train(&config, dense.path(), &TrainOptions::quiet()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let q = QuantizeConfig {
        calibration_samples: 200,
        ..QuantizeConfig::default()
    };
    let report = quantize_run(dense.path(), out.path(), &q, &TrainOptions::quiet()).unwrap();
    assert_eq!(report.search.len(), 6, "{report:?}");
    assert!(report.f32_accuracy > 0.9, "{report:?}");
    assert!(report.accuracy_drop_points() <= 1.0, "{report:?}");
    assert!(report.size_ratio() > 2.5, "{report:?}");
    let (_, _, model) = load_run(out.path(), &burn::tensor::Device::flex()).unwrap();
    assert!(matches!(first_weight(&model).dtype(), DType::QFloat(_)));
    assert!(out.path().join("quantize.json").is_file());

    // Quantization-aware training at 4 bits: fine-tuning through the fake-quantized forward
    // pass moves the float weights, then they are quantized.
    let qat = QuantizeConfig {
        bits: 4,
        calibration: Calibration::MinMax,
        qat_epochs: 2,
        qat_lr: Some(1e-3),
        ..QuantizeConfig::default()
    };
    let out4 = tempfile::tempdir().unwrap();
    let report4 = quantize_run(dense.path(), out4.path(), &qat, &TrainOptions::quiet()).unwrap();
    assert!(out4.path().join("qat/model.bpk").is_file());
    assert!(report4.accuracy > 0.85, "{report4:?}");
    let device = burn::tensor::Device::flex();
    let (_, _, before) = load_run(dense.path(), &device).unwrap();
    let (_, _, after) = load_run(&out4.path().join("qat"), &device).unwrap();
    assert!(
        first_weight(&before).into_data() != first_weight(&after).into_data(),
        "QAT did not train the weights"
    );

    for bad in [
        QuantizeConfig {
            bits: 3,
            ..QuantizeConfig::default()
        },
        QuantizeConfig {
            calibration: Calibration::Percentile(30.0),
            ..QuantizeConfig::default()
        },
    ] {
        let err = quantize_run(dense.path(), out.path(), &bad, &TrainOptions::quiet()).unwrap_err();
        assert!(
            err.to_string().contains("bits") || err.to_string().contains("percentile"),
            "{err}"
        );
    }
}

#[test]
fn a_weight_with_nan_is_an_error_naming_it_not_a_garbage_scale() {
    let device = Device::flex();
    let ImageModel::Mlp(mut mlp) = preset("lenet-300-100")
        .unwrap()
        .config
        .init_image(&device)
        .unwrap()
    else {
        panic!("an MLP")
    };
    let layer = &mut mlp.hidden[1];
    let w = layer.weight.val();
    let [rows, cols] = w.dims();
    let mut values = w.into_data().try_to_vec::<f32>().unwrap();
    values[7] = f32::NAN;
    values[cols + 3] = f32::INFINITY;
    layer.weight = burn::module::Param::from_tensor(Tensor::from_data(
        burn::tensor::TensorData::new(values, [rows, cols]),
        &device,
    ));
    let model = ImageModel::Mlp(mlp);
    for percentile in [100.0, 99.9] {
        let err = quantize_weights(model.clone(), 8, Granularity::PerTensor, percentile)
            .expect_err("a NaN weight has no quantization range");
        let message = err.to_string();
        assert!(
            matches!(
                &err,
                kiln_compress::Error::NotFinite { path, count: 2, total } if path.contains("hidden.1.weight") && *total == rows * cols
            ),
            "{message}"
        );
        assert!(
            message.contains("hidden.1.weight") && message.contains("2 non-finite"),
            "{message}"
        );
    }
}
