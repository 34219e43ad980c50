//! EfficientNet-Lite0 from the project's data dir reproduces the reference logits and top-5
//! on `images/flower.jpg` (`models/efficientnet-lite0/reference.txt`), from the safetensors
//! file and from the PyTorch file.
//!
//! The reference decoded the JPEG with libjpeg-turbo (through Pillow); Kiln decodes with
//! zune-jpeg (through `image`), whose integer IDCT and YCbCr conversion round differently:
//! 0.45% of the YCbCr samples of flower.jpg differ by one level, moving the logits by up to
//! 7e-3. So the exact check (1e-3) runs on `tests/data/flower-libjpeg.png`, flower.jpg's pixels
//! as libjpeg-turbo decodes them (Pillow 13, saved losslessly; the photo is CC-BY 2.0, from
//! scikit-learn's sample images), through Kiln's own resize, crop, normalisation and network;
//! the JPEG itself must give the same top-5 with logits within 1e-2.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use kiln_transfer::vision::{ImageNetClassifier, efficientnet_lite0_dir};

fn data_dir() -> PathBuf {
    let dir = PathBuf::from(
        std::env::var_os("KILN_DATA_DIR")
            .expect("KILN_DATA_DIR must point at the real datasets (see .cargo/config.toml)"),
    );
    if dir.is_relative() {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(dir)
    } else {
        dir
    }
}

fn reference_logits(dir: &Path) -> Vec<f32> {
    let text = std::fs::read_to_string(dir.join("reference.txt")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("logits_first8: "))
        .unwrap()
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect()
}

#[test]
fn efficientnet_lite0_reproduces_the_reference_on_flower_jpg() {
    let data = data_dir();
    let dir = efficientnet_lite0_dir(&data);
    let exact = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/flower-libjpeg.png");
    let jpeg = data.join("images/flower.jpg");
    let expected = reference_logits(&dir);
    let device = Device::flex();
    for weights in ["efficientnet-lite0.safetensors", "efficientnet-lite0.pt"] {
        let (clf, report) =
            ImageNetClassifier::efficientnet_lite0(&dir, Some(&dir.join(weights)), &device)
                .unwrap();
        assert!(report.missing.is_empty() && report.mismatched.is_empty());
        assert!(
            report
                .unused
                .iter()
                .all(|k| k.ends_with("num_batches_tracked")),
            "{:?}",
            report.unused
        );
        for (image, tolerance) in [(&exact, 1e-3), (&jpeg, 1e-2)] {
            let logits: Vec<f32> = clf.logits(image).unwrap().into_data().try_to_vec().unwrap();
            let worst = logits[..8]
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            eprintln!(
                "{weights} on {}: max abs difference {worst:.2e}",
                image.display()
            );
            assert!(worst < tolerance, "{weights}: max abs difference {worst}");
            let top = clf.top_k(image, 5).unwrap();
            assert_eq!((top[0].0, top[0].1.as_str()), (985, "daisy"));
            assert!((top[0].2 - 0.3243).abs() < 2e-3, "{top:?}");
            let names: Vec<&str> = top.iter().map(|t| t.1.as_str()).collect();
            assert_eq!(
                names,
                [
                    "daisy",
                    "bee",
                    "sea anemone",
                    "mushroom",
                    "hen-of-the-woods"
                ]
            );
        }
    }
}

#[test]
fn an_image_that_does_not_decode_is_named() {
    let data = data_dir();
    let dir = efficientnet_lite0_dir(&data);
    let (clf, _) = ImageNetClassifier::efficientnet_lite0(&dir, None, &Device::flex()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("broken.jpg");
    std::fs::write(&bad, b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
    let err = clf.top_k(&bad, 5).unwrap_err();
    assert!(err.to_string().contains("broken.jpg"), "{err}");
}
