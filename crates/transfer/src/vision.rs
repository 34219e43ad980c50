//! Pretrained ImageNet classifiers: EfficientNet-Lite0 from its `efficientnet_pytorch`-style
//! checkpoint (safetensors or PyTorch), TensorFlow-Lite-style preprocessing, top-k classes.
//!
//! ```no_run
//! use kiln_transfer::vision::{ImageNetClassifier};
//! let device = burn::tensor::Device::flex();
//! let dir = std::path::Path::new("models/efficientnet-lite0");
//! let (clf, _report) = ImageNetClassifier::efficientnet_lite0(dir, None, &device).unwrap();
//! for (class, name, p) in clf.top_k("flower.jpg".as_ref(), 5).unwrap() {
//!     println!("{class:4} {name:20} {p:.4}");
//! }
//! ```

use std::path::{Path, PathBuf};

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use kiln_data::image_folder::{Channels, FolderOptions, Resize, load_image};
use kiln_models::Classifier;
use kiln_models::efficientnet::{EFFICIENTNET_KEY_MAP, EfficientNet, EfficientNetConfig};

use crate::import::{KeyMap, LoadReport, load_weights};
use crate::{Error, Result};

/// The key map for `efficientnet_pytorch`-style checkpoints.
pub fn efficientnet_key_map() -> KeyMap {
    KeyMap {
        rules: EFFICIENTNET_KEY_MAP
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
    }
}

/// How an image becomes the network's input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Preprocess {
    /// Shorter side after resizing (bilinear, antialiased).
    pub resize: usize,
    /// Centre crop `[height, width]`.
    pub crop: [usize; 2],
    /// Subtracted from each 0-255 pixel value, per RGB channel.
    pub mean: [f32; 3],
    /// Each value is divided by this, per channel.
    pub std: [f32; 3],
}

impl Preprocess {
    /// EfficientNet-Lite's (TensorFlow Lite's): resize 256, crop 224, `(pixel - 127) / 128`.
    pub fn efficientnet_lite() -> Self {
        Self {
            resize: 256,
            crop: [224, 224],
            mean: [127.0; 3],
            std: [128.0; 3],
        }
    }

    /// torchvision's ImageNet evaluation transform: resize 256, crop 224, ImageNet mean/std.
    pub fn imagenet() -> Self {
        Self {
            resize: 256,
            crop: [224, 224],
            mean: [0.485 * 255.0, 0.456 * 255.0, 0.406 * 255.0],
            std: [0.229 * 255.0, 0.224 * 255.0, 0.225 * 255.0],
        }
    }

    /// `[1, 3, h, w]` input for the image file at `path` (decode errors name the file).
    pub fn load(&self, path: &Path, device: &Device) -> Result<Tensor<4>> {
        let options = FolderOptions {
            size: self.crop,
            channels: Channels::Rgb,
            resize: Resize::ResizeThenCentreCrop {
                shorter_side: self.resize,
            },
        };
        let mut pixels = load_image(path, &options)?;
        let plane = self.crop[0] * self.crop[1];
        for (i, v) in pixels.iter_mut().enumerate() {
            let c = i / plane;
            *v = (*v * 255.0 - self.mean[c]) / self.std[c];
        }
        Ok(Tensor::from_data(
            TensorData::new(pixels, [1, 3, self.crop[0], self.crop[1]]),
            device,
        ))
    }
}

/// Reads a class-name list, one name per line.
pub fn read_class_names(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(text.lines().map(|l| l.trim().to_string()).collect())
}

/// A pretrained ImageNet classifier with its class names and preprocessing.
#[derive(Debug)]
pub struct ImageNetClassifier {
    /// The network.
    pub model: EfficientNet,
    /// Class names, by index.
    pub classes: Vec<String>,
    /// Input transform.
    pub preprocess: Preprocess,
    device: Device,
}

impl ImageNetClassifier {
    /// EfficientNet-Lite0 from the folder `dir` (`efficientnet-lite0.safetensors`, or the
    /// file `weights` when given, `.safetensors` or `.pt`; class names from
    /// `imagenet_classes_from_torchvision.txt`).
    pub fn efficientnet_lite0(
        dir: &Path,
        weights: Option<&Path>,
        device: &Device,
    ) -> Result<(Self, LoadReport)> {
        let weights: PathBuf = weights.map_or_else(
            || dir.join("efficientnet-lite0.safetensors"),
            Path::to_path_buf,
        );
        let classes = read_class_names(&dir.join("imagenet_classes_from_torchvision.txt"))?;
        let config = EfficientNetConfig::lite0();
        if classes.len() != config.num_classes {
            return Err(Error::Config {
                path: dir.join("imagenet_classes_from_torchvision.txt"),
                reason: format!(
                    "{} class names, the model has {} classes",
                    classes.len(),
                    config.num_classes
                ),
            });
        }
        let model = config.init(device)?;
        let (model, report) = load_weights(model, &weights, &efficientnet_key_map(), false)?;
        Ok((
            Self {
                model,
                classes,
                preprocess: Preprocess::efficientnet_lite(),
                device: device.clone(),
            },
            report,
        ))
    }

    /// `[1, classes]` logits for the image at `path`.
    pub fn logits(&self, path: &Path) -> Result<Tensor<2>> {
        Ok(self
            .model
            .forward(self.preprocess.load(path, &self.device)?))
    }

    /// The `k` most probable classes: `(index, name, probability)`.
    pub fn top_k(&self, path: &Path, k: usize) -> Result<Vec<(usize, String, f32)>> {
        let k = k.clamp(1, self.classes.len());
        let (probs, indices) = softmax(self.logits(path)?, 1).topk_with_indices(k, 1);
        let read = |e| Error::Invalid(format!("reading probabilities: {e:?}"));
        let probs: Vec<f32> = probs.into_data().try_to_vec().map_err(read)?;
        let indices: Vec<i64> = indices
            .into_data()
            .convert::<i64>()
            .try_to_vec()
            .map_err(read)?;
        Ok(indices
            .into_iter()
            .zip(probs)
            .map(|(i, p)| (i as usize, self.classes[i as usize].clone(), p))
            .collect())
    }
}

/// Where the EfficientNet-Lite0 folder is expected under a data directory.
pub fn efficientnet_lite0_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("models").join("efficientnet-lite0")
}
