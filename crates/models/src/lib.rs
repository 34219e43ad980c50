//! # kiln-models
//!
//! The Kiln model zoo: configurable burn [`Module`](burn::module::Module)s with serde configs,
//! usable on their own, without the CLI or the training crate.
//!
//! - [`Mlp`] / [`MlpConfig`]: a multi-layer perceptron over flattened images.
//! - [`registry`]: model names → config presets → built models ([`ZooModel`]), and configs from
//!   TOML/JSON files.
//!
//! Every zoo model takes images as `[batch, channels, height, width]` and returns logits
//! `[batch, classes]` ([`Classifier`]), and describes itself with a
//! [`ModelSummary`](kiln_core::ModelSummary).
//!
//! kiln-models knows nothing about datasets, training or the CLI.

mod error;
pub mod mlp;
pub mod registry;

pub use error::{Error, Result};
pub use mlp::{Activation, Mlp, MlpConfig};
pub use registry::{ModelConfig, Preset, ZooModel, preset, presets};

use burn::tensor::Tensor;
use kiln_core::ModelSummary;

/// An image classifier: `[batch, channels, height, width]` → logits `[batch, classes]`.
pub trait Classifier {
    /// Forward pass to logits.
    fn forward(&self, images: Tensor<4>) -> Tensor<2>;

    /// Summary for an input of `input_shape` (`[batch, channels, height, width]`), computed by
    /// running one forward pass on zeros. A shape the model cannot take is an error.
    fn summary(&self, name: &str, input_shape: &[usize]) -> Result<ModelSummary>;
}
