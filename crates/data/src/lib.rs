//! # kiln-data
//!
//! From files you have to batched burn tensors:
//!
//! - [`digits`]: the UCI 8x8 handwritten digits (bundled with the crate, or read from a file).
//! - [`idx`]: IDX files and the MNIST / Fashion-MNIST datasets (60,000 + 10,000 images of
//!   28x28, found in the data directory).
//! - [`ImageSet`]: an in-memory labelled image set (`[N, C, H, W]` pixels as `f32`).
//! - [`text`]: a character corpus for language modelling (Jane Austen, one novel held out),
//!   labelled text from CSV (fine-food reviews) and Hugging Face `tokenizer.json` tokenizers
//!   with padding masks.
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
pub mod idx;
mod image_set;
pub mod split;
pub mod text;

pub use batch::{ImageBatch, ImageBatcher, ImageDataset, ImageItem, Normalizer};
pub use error::{Error, Result};
pub use image_set::ImageSet;

/// Names of the datasets Kiln can load, for error messages and `--dataset`.
pub const DATASETS: &[&str] = &["digits", "mnist", "fashion-mnist"];

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

/// Loads a dataset by name, split deterministically by `seed`, looking for files in the
/// default data directory ([`data_dir::resolve`]`(None)`).
pub fn load_split(name: &str, seed: kiln_core::Seed) -> Result<SplitImageSet> {
    load_split_from(name, seed, &data_dir::resolve(None))
}

/// Loads a dataset by name from `data_dir`:
///
/// - `digits` comes from the copy bundled in this crate (no data dir needed); it is split
///   80/20, stratified by class, by `seed`.
/// - `mnist` and `fashion-mnist` read `<data_dir>/<name>/` and keep the published 60,000 /
///   10,000 train/test split.
pub fn load_split_from(
    name: &str,
    seed: kiln_core::Seed,
    data_dir: &std::path::Path,
) -> Result<SplitImageSet> {
    match name {
        "mnist" | "fashion-mnist" => {
            let dir = data_dir.join(name);
            let digits: Vec<String> = (0..10).map(|d| d.to_string()).collect();
            let digit_names: Vec<&str> = digits.iter().map(String::as_str).collect();
            let classes: &[&str] = if name == "mnist" {
                &digit_names
            } else {
                &idx::FASHION_CLASSES
            };
            Ok(SplitImageSet {
                name: name.to_string(),
                train: idx::load_dir(name, &dir, idx::Split::Train, classes)?,
                test: idx::load_dir(name, &dir, idx::Split::Test, classes)?,
            })
        }
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
