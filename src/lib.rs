//! # Kiln
//!
//! A Rust deep-learning toolkit on burn. This facade re-exports the Kiln crates for users who
//! want everything; each is also usable on its own:
//!
//! - [`core`] (`kiln-core`): devices, seeding, errors, model summaries.
//! - [`models`] (`kiln-models`): the model zoo.
//! - [`data`] (`kiln-data`): dataset readers, splits, batching.
//! - [`optim`] (`kiln-optim`): optimizers, clipping, schedules, parameter groups (the type of
//!   `TrainConfig.optim`).
//! - [`train`] (`kiln-train`): training and evaluation, run folders, fine-tuning.
//! - [`transfer`] (`kiln-transfer`): pretrained weights, sentence embeddings, ImageNet models.
//! - [`compress`] (`kiln-compress`): pruning, quantization, the compression table.

pub use kiln_compress as compress;
pub use kiln_core as core;
pub use kiln_core::burn;
pub use kiln_data as data;
pub use kiln_models as models;
pub use kiln_optim as optim;
pub use kiln_train as train;
pub use kiln_transfer as transfer;
