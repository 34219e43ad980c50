//! PaddleOCR's text-orientation classifier, imported from ONNX with burn-onnx
//! (`tools/onnx-import`), reproduces onnxruntime's output on the reference input of
//! `models/ppocr-mobile-cls/reference.txt`.

use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use kiln_transfer::onnx::{ORIENTATION_INPUT, TextOrientationClassifier};

fn weights() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/ppocr-mobile-cls.bpk")
}

fn reference() -> (Vec<f32>, String) {
    let dir = PathBuf::from(std::env::var_os("KILN_DATA_DIR").expect("KILN_DATA_DIR"))
        .join("models/ppocr-mobile-cls");
    let text = std::fs::read_to_string(dir.join("reference.txt")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("output"))
        .expect("an output line");
    let values = line
        .split(':')
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    (values, text)
}

#[test]
fn orientation_classifier_matches_onnxruntime() {
    let (expected, text) = reference();
    assert!(text.contains("sin(0.1*h + 0.07*w + c)"), "{text}");
    let device = Device::flex();
    let model = TextOrientationClassifier::from_file(&weights(), &device).unwrap();
    // The ONNX file's initializers (weights, BatchNorm statistics, folded constants).
    assert!(model.num_params() > 100_000, "{}", model.num_params());
    let [c, h, w] = ORIENTATION_INPUT;
    let mut x = Vec::with_capacity(c * h * w);
    for ci in 0..c {
        for hi in 0..h {
            for wi in 0..w {
                x.push((0.1 * hi as f64 + 0.07 * wi as f64 + ci as f64).sin() as f32);
            }
        }
    }
    let input = Tensor::<4>::from_data(TensorData::new(x, [1, c, h, w]), &device);
    let probs: Vec<f32> = model
        .probabilities(input)
        .unwrap()
        .into_data()
        .try_to_vec()
        .unwrap();
    let diff = probs
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!(
        "probabilities {probs:?}, reference {expected:?}, max diff {diff:e}, {} parameters",
        model.num_params()
    );
    for (got, want) in probs.iter().zip(&expected) {
        assert!((got - want).abs() < 1e-4, "{probs:?} vs {expected:?}");
    }
}

#[test]
fn orientation_classifier_errors_name_the_problem() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.bpk");
    let err = TextOrientationClassifier::from_file(&missing, &device).unwrap_err();
    assert!(err.to_string().contains("none.bpk"), "{err}");

    let truncated = dir.path().join("cut.bpk");
    let bytes = std::fs::read(weights()).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = TextOrientationClassifier::from_file(&truncated, &device).unwrap_err();
    assert!(err.to_string().contains("cut.bpk"), "{err}");

    let model = TextOrientationClassifier::from_file(&weights(), &device).unwrap();
    let wrong = Tensor::<4>::zeros([1, 3, 32, 100], &device);
    let err = model.probabilities(wrong).unwrap_err();
    assert!(err.to_string().contains("[1, 3, 32, 100]"), "{err}");

    // A real photo through the preprocessing: a valid distribution either way.
    let (label, p) = model
        .classify(&image::RgbImage::from_pixel(
            300,
            60,
            image::Rgb([200, 200, 200]),
        ))
        .unwrap();
    assert!(
        ["0", "180"].contains(&label) && (0.5..=1.0).contains(&p),
        "{label} {p}"
    );
}
