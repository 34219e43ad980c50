//! Models imported from ONNX with burn-onnx.
//!
//! burn-onnx turns an ONNX graph into Rust source (burn modules and a `forward`) plus a `.bpk`
//! weights file. Kiln runs that generator by hand and commits its output, so that building
//! the workspace never compiles burn-onnx and its protobuf stack:
//!
//! ```sh
//! cargo run --manifest-path tools/onnx-import/Cargo.toml -- \
//!     ../shared/data/models/ppocr-mobile-cls/ch_ppocr_mobile_v2.0_cls_infer.onnx /tmp/onnx
//! cp /tmp/onnx/ch_ppocr_mobile_v2.0_cls_infer.rs crates/transfer/src/onnx/ppocr_mobile_cls.rs
//! cp /tmp/onnx/ch_ppocr_mobile_v2.0_cls_infer.bpk crates/transfer/tests/data/ppocr-mobile-cls.bpk
//! ```
//!
//! burn-onnx 0.22 reads this opset-10 model (PaddleOCR's export) as it is: no opset upgrade
//! was needed. Its graph simplification folds the hard-swish `x · clip(x + 3, 0, 6) / 6`
//! patterns and the squeeze-excitation reshapes into burn operations; the generated code is
//! [`ppocr_mobile_cls`].
//!
//! The generated `Model` panics on a bad weights file; [`TextOrientationClassifier`] loads it
//! through burn-store itself and names the file and the parameter instead.

#[allow(missing_docs, clippy::all, clippy::pedantic, unused)]
pub mod ppocr_mobile_cls;

use std::path::Path;

use burn::module::Module;
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::{Device, Tensor, TensorData};

use crate::{Error, Result};

/// PaddleOCR's text-orientation classifier (`ch_ppocr_mobile_v2.0_cls`, MobileNetV3-small
/// style): is a cropped text line upright (`0`) or upside down (`180`)?
#[derive(Debug)]
pub struct TextOrientationClassifier {
    model: ppocr_mobile_cls::Model,
    device: Device,
}

/// `[channels, height, width]` of the classifier's input.
pub const ORIENTATION_INPUT: [usize; 3] = [3, 48, 192];

/// The classifier's labels, by output index.
pub const ORIENTATION_LABELS: [&str; 2] = ["0", "180"];

impl TextOrientationClassifier {
    /// Loads the weights burn-onnx converted (a `.bpk` file). A file that does not parse, or
    /// that lacks or mis-shapes a parameter of the network, is an error naming the file and the
    /// parameter.
    pub fn from_file(weights: &Path, device: &Device) -> Result<Self> {
        if !weights.is_file() {
            return Err(Error::Io {
                path: weights.to_path_buf(),
                reason: "no such file (generate it with tools/onnx-import)".into(),
            });
        }
        let mut model = ppocr_mobile_cls::Model::new(device);
        let mut store = BurnpackStore::from_file(weights)
            .allow_partial(true)
            .validate(true);
        let result = model.load_from(&mut store).map_err(|e| Error::Corrupt {
            path: weights.to_path_buf(),
            format: "burnpack",
            reason: e.to_string(),
        })?;
        if let Some(e) = result.errors.first() {
            return Err(Error::Corrupt {
                path: weights.to_path_buf(),
                format: "burnpack",
                reason: e.to_string(),
            });
        }
        if !result.missing.is_empty() {
            return Err(Error::MissingKeys {
                path: weights.to_path_buf(),
                keys: result.missing.iter().map(|(k, _)| k.clone()).collect(),
            });
        }
        Ok(Self {
            model,
            device: device.clone(),
        })
    }

    /// `[batch, 2]` probabilities (the graph ends with a softmax) for `[batch, 3, 48, 192]`
    /// inputs, preprocessed as [`TextOrientationClassifier::preprocess`] does.
    pub fn probabilities(&self, input: Tensor<4>) -> Result<Tensor<2>> {
        let [_, c, h, w] = input.dims();
        if [c, h, w] != ORIENTATION_INPUT {
            return Err(Error::Invalid(format!(
                "the orientation classifier takes [batch, 3, 48, 192] inputs, found {:?}",
                input.dims()
            )));
        }
        Ok(self.model.forward(input))
    }

    /// RapidOCR's preprocessing of a cropped text line: resized to height 48 keeping the
    /// aspect ratio (width at most 192, bilinear), channels in OpenCV's BGR order, scaled to
    /// `(p / 255 - 0.5) / 0.5`, padded with zeros on the right to width 192.
    pub fn preprocess(&self, image: &image::RgbImage) -> Tensor<4> {
        let [_, h, w] = ORIENTATION_INPUT;
        let ratio = image.width() as f64 / image.height().max(1) as f64;
        let resized_w = ((h as f64 * ratio).ceil() as usize).clamp(1, w);
        let resized = image::imageops::resize(
            image,
            resized_w as u32,
            h as u32,
            image::imageops::FilterType::Triangle,
        );
        let mut data = vec![0f32; 3 * h * w];
        for (x, y, pixel) in resized.enumerate_pixels() {
            for (c, rgb) in [2usize, 1, 0].into_iter().enumerate() {
                data[(c * h + y as usize) * w + x as usize] =
                    (pixel.0[rgb] as f32 / 255.0 - 0.5) / 0.5;
            }
        }
        Tensor::from_data(TensorData::new(data, [1, 3, h, w]), &self.device)
    }

    /// The most probable label and its probability for a cropped text line.
    pub fn classify(&self, image: &image::RgbImage) -> Result<(&'static str, f32)> {
        let probs = self.probabilities(self.preprocess(image))?;
        let v: Vec<f32> = probs
            .into_data()
            .try_to_vec()
            .map_err(|e| Error::Invalid(format!("reading probabilities: {e:?}")))?;
        let best = if v[1] > v[0] { 1 } else { 0 };
        Ok((ORIENTATION_LABELS[best], v[best]))
    }

    /// The number of parameters.
    pub fn num_params(&self) -> usize {
        self.model.num_params()
    }
}
