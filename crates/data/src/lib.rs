//! # kiln-data
//!
//! From files you have to batched burn tensors:
//!
//! - [`digits`]: the UCI 8x8 handwritten digits (bundled with the crate, or read from a file).
//! - [`ImageSet`]: an in-memory labelled image set (`[N, C, H, W]` pixels as `f32`).
//! - [`split`]: seeded, stratified train/test splits.
//! - [`Normalizer`]: per-channel standardisation fitted on the training split only.
//! - [`ImageDataset`] / [`ImageBatcher`] / [`ImageBatch`]: burn `Dataset` and `Batcher` for
//!   burn's `DataLoader`.
//! - [`data_dir`]: where datasets are found (`--data-dir`, `KILN_DATA_DIR`, then a per-user
//!   cache folder).
//!
//! kiln-data knows nothing about models, training or the CLI.

pub mod batch;
pub mod data_dir;
pub mod digits;
mod error;
mod image_set;
pub mod split;

pub use batch::{ImageBatch, ImageBatcher, ImageDataset, ImageItem, Normalizer};
pub use error::{Error, Result};
pub use image_set::ImageSet;

/// Names of the datasets Kiln can load, for error messages and `--dataset`.
pub const DATASETS: &[&str] = &["digits"];

/// A dataset split into training and test sets, ready to batch.
#[derive(Clone, Debug)]
pub struct SplitImageSet {
    /// Dataset name.
    pub name: String,
    /// Training images.
    pub train: ImageSet,
    /// Held-out test images.
    pub test: ImageSet,
}

/// Loads a dataset by name, split deterministically by `seed`.
///
/// `digits` comes from the copy bundled in this crate (no data dir needed); it is split 80/20,
/// stratified by class.
pub fn load_split(name: &str, seed: kiln_core::Seed) -> Result<SplitImageSet> {
    match name {
        "digits" => {
            let all = digits::load_bundled()?;
            let (train, test) = split::stratified_split(&all.labels, 0.2, seed.derive("split"));
            Ok(SplitImageSet {
                name: name.to_string(),
                train: all.subset(&train),
                test: all.subset(&test),
            })
        }
        other => Err(Error::UnknownDataset {
            name: other.to_string(),
            available: DATASETS.join(", "),
        }),
    }
}
