//! # kiln-models
//!
//! The Kiln model zoo: configurable burn [`Module`](burn::module::Module)s with serde configs,
//! usable on their own, without the CLI or the training crate.
//!
//! | model | module | input |
//! |---|---|---|
//! | multi-layer perceptron | [`Mlp`] | images (flattened) |
//! | convolutional classifier (`lenet5`, `cnn-small`) | [`cnn::Cnn`] | images |
//! | ViT-lite | [`vit::VitLite`] | images |
//! | EfficientNet-Lite0 (ImageNet, pretrained-ready) | [`efficientnet::EfficientNet`] | images |
//! | transformer sequence classifier | [`transformer::TransformerClassifier`] | token ids |
//! | decoder-only language model with `generate` | [`transformer::CausalLm`] | token ids |
//! | BERT encoder (Hugging Face compatible) | [`bert::BertEncoder`] | token ids |
//! | Llama decoder (SmolLM2, Llama 2/3) with a KV cache, sampling and `generate` | [`llama::Llama`] | token ids |
//!
//! [`registry`] maps names to config presets and built models ([`ZooModel`], [`ImageModel`]);
//! configs also come from TOML/JSON files. Every model describes itself with a
//! [`ModelSummary`](kiln_core::ModelSummary) (per-layer output shape, parameters, trainable
//! flag, mult-adds).
//!
//! Text transformers use burn-nn's `TransformerEncoder` (multi-head attention with padding and
//! causal masks, pre- or post-norm). ViT-lite's encoder ([`vit::VitEncoder`]) is the same
//! pre-norm math with per-layer head counts and feed-forward widths, so that structured
//! pruning can remove attention heads.
//!
//! kiln-models knows nothing about datasets, training or the CLI.

pub mod bert;
pub mod cnn;
mod common;
pub mod efficientnet;
mod error;
pub mod llama;
pub mod mlp;
pub mod ops;
pub mod registry;
pub mod transformer;
pub mod vit;

pub use common::{Activation, Pool, conv_out, is_weight_layer};
pub use error::{Error, Result};
pub use mlp::{Mlp, MlpConfig};
pub use registry::{ImageModel, InputKind, ModelConfig, Preset, ZooModel, preset, presets};

use burn::tensor::Tensor;
use kiln_core::ModelSummary;

/// An image classifier: `[batch, channels, height, width]` → logits `[batch, classes]`.
pub trait Classifier {
    /// Forward pass to logits.
    fn forward(&self, images: Tensor<4>) -> Tensor<2>;

    /// Forward pass returning `(features, logits)`: the features are the input of the final
    /// classification layer (`[batch, width]`), what feature distillation and linear probes
    /// use.
    fn forward_features(&self, images: Tensor<4>) -> (Tensor<2>, Tensor<2>);

    /// Summary for an input of `input_shape` (`[batch, channels, height, width]`), computed by
    /// running one forward pass on zeros. A shape the model cannot take is an error.
    fn summary(&self, name: &str, input_shape: &[usize]) -> Result<ModelSummary>;
}
