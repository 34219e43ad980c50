//! # kiln-compress
//!
//! Making trained models smaller: what neither burn nor candle has.
//!
//! - [`prune`]: unstructured magnitude pruning of Linear and convolution weights, per layer or
//!   with one global threshold ([`prune_magnitude`]), and per-layer [`SparsityReport`]s.
//! - [`structured`]: whole convolution channels, dense neurons, ViT attention heads and
//!   feed-forward neurons removed by L1/L2 norm, the layers physically shrunk
//!   ([`prune_structured`]).
//! - [`quantize`]: post-training int8 (or int4) weight quantization on burn's quantized
//!   tensors, per tensor or per channel/block, with clipping calibrated on training images
//!   ([`quantize_run`]); the saved weights are about 4x smaller.
//! - [`report`]: the compression table (size, parameters, sparsity, accuracy, speed) of a set
//!   of run folders ([`report::compress_table`], `cargo xtask compress-report`).
//! - [`run`]: pruning a trained run folder, one shot or iteratively with fine-tuning between
//!   steps ([`prune_run`]); pruned weights stay zero through fine-tuning (their gradients are
//!   masked, `kiln_train::FineTune::keep_pruned`) and in the saved weights.
//!
//! kiln-compress works on kiln-train's run folders and zoo models; it knows nothing about the
//! CLI.

mod error;
pub mod prune;
pub mod quantize;
pub mod report;
pub mod run;
pub mod speed;
pub mod structured;

pub use error::{Error, Result};
pub use prune::{
    LayerSparsity, Scope, SparsityReport, gradual_sparsity, prune_magnitude, pruned_summary,
    sparsity_report,
};
pub use quantize::{
    Calibration, Granularity, QuantizeConfig, QuantizeReport, quantize_run, quantize_weights,
};
pub use run::{Method, PruneConfig, PruneReport, PruneStep, prune_run};
pub use structured::{Norm, prune_structured};
