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
//! - [`augment`]: seeded, composable augmentation (flips, rotation, zoom, translation, random
//!   resized crop, noise, brightness/contrast, random erasing, normalisation, mixup/cutmix),
//!   applied in the data-loader workers by [`ImageBatcher`].
//! - [`tabular`]: CSV tables with numeric and categorical columns (one-hot or index encoding,
//!   missing values, standardisation fitted on the training split), regression batches.
//! - [`image_folder`]: one sub-folder of PNG/JPEG images per class, resized and cropped.
//! - [`download`]: fetching MNIST / Fashion-MNIST when absent, verified by SHA-256.
//! - [`split`]: fixed test splits, validation carved from the training data (seeded,
//!   stratified).
//! - [`Normalizer`]: per-channel standardisation fitted on the training split only.
//! - [`ImageDataset`] / [`ImageBatcher`] / [`ImageBatch`]: burn `Dataset` and `Batcher` for
//!   burn's `DataLoader`.
//! - [`data_dir`]: where datasets are found (`--data-dir`, `KILN_DATA_DIR`, then a per-user
//!   cache folder).
//!
//! kiln-data knows nothing about models, training or the CLI.

pub mod augment;
pub mod batch;
pub mod data_dir;
pub mod digits;
pub mod download;
mod error;
pub mod idx;
pub mod image_folder;
mod image_set;
pub mod split;
pub mod tabular;
pub mod text;

pub use augment::Augment;
pub use batch::{
    EpochCounter, EpochLoader, EpochShuffled, ImageBatch, ImageBatcher, ImageDataset, ImageItem,
    Normalizer,
};
pub use error::{Error, Result};
pub use image_set::ImageSet;

/// Reads a file, gunzipping it when its name ends in `.gz`.
pub(crate) fn read_maybe_gz(path: &std::path::Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let raw = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if path.extension().is_none_or(|e| e != "gz") {
        return Ok(raw);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .map_err(|source| Error::Gzip {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(out)
}

/// Names of the image datasets Kiln can load, for error messages and `--dataset` (tables
/// are in [`tabular::TABLES`]; a path to a `.csv` file or an image folder works too).
pub const DATASETS: &[&str] = &["digits", "mnist", "fashion-mnist"];

/// How to read a dataset given by path (CSV table or image folder); ignored by named image
/// datasets.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataOptions {
    /// Target column of a table (default: the named table's, else the last column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Categorical encoding of a table.
    #[serde(default)]
    pub encoding: tabular::Encoding,
    /// `[height, width]` images of a folder are resized to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<[usize; 2]>,
    /// Grey or RGB images of a folder.
    #[serde(default)]
    pub channels: image_folder::Channels,
}

/// A dataset split into training, validation and test sets, ready to batch (see [`split`]
/// for the rules: a fixed test split, validation carved from the training data).
#[derive(Clone, Debug)]
pub struct SplitImageSet {
    /// Dataset name.
    pub name: String,
    /// Training images.
    pub train: ImageSet,
    /// Validation images, held out from the training data (what early stopping, plateau
    /// and best-epoch choice watch).
    pub valid: ImageSet,
    /// Held-out test images (the dataset's fixed test split, read once at the end).
    pub test: ImageSet,
}

impl SplitImageSet {
    /// Splits `train` into training and validation images (stratified by class, seeded),
    /// keeping `test`.
    pub fn carve(
        name: String,
        train: ImageSet,
        test: ImageSet,
        valid_fraction: f64,
        seed: kiln_core::Seed,
    ) -> Result<Self> {
        let (fit, valid) =
            split::validation_split(train.labels(), valid_fraction, seed.derive("valid"))?;
        Ok(Self {
            name,
            valid: train.subset(&valid),
            train: train.subset(&fit),
            test,
        })
    }
}

/// Loads a dataset by name, its validation part carved by `seed`, looking for files in the
/// default data directory ([`data_dir::resolve`]`(None)`).
pub fn load_split(name: &str, seed: kiln_core::Seed) -> Result<SplitImageSet> {
    load_split_from(name, seed, &data_dir::resolve(None))
}

/// Loads a dataset by name from `data_dir`:
///
/// - `digits` comes from the copy bundled in this crate (no data dir needed); its fixed test
///   split is 20%, stratified by class ([`split::dataset_split`]): 359 of the 1,797 images.
/// - `mnist` and `fashion-mnist` read `<data_dir>/<name>/` (downloading the files there when
///   absent, see [`download`]) and keep the published 60,000 / 10,000 train/test split.
///
/// In every case 10% of the training images (stratified, by `seed`) are held out for
/// validation ([`load_dataset`] takes another share).
pub fn load_split_from(
    name: &str,
    seed: kiln_core::Seed,
    data_dir: &std::path::Path,
) -> Result<SplitImageSet> {
    load_dataset(
        name,
        seed,
        data_dir,
        &DataOptions::default(),
        split::DEFAULT_VALID_FRACTION,
    )
}

/// Loads any classification dataset as train and test image sets:
///
/// - a named image dataset ([`DATASETS`], see [`load_split_from`]);
/// - a named table ([`tabular::TABLES`]) or a path to a `.csv` / `.csv.gz` file: features
///   encoded by [`tabular::TableEncoder`] fitted on the training rows, as `[1, 1, features]`
///   "images", with a fixed 20% test split stratified by class (the target must be
///   categorical);
/// - a path to an image folder ([`image_folder::load_split`]), resized to
///   `options.image_size`.
///
/// The test split never depends on `seed`; `seed` draws `valid_fraction` of the training
/// part as validation items (stratified, see [`split`]; ignored where the dataset has a
/// validation part of its own, an image folder's `valid/` or `val/`).
pub fn load_dataset(
    name: &str,
    seed: kiln_core::Seed,
    data_dir: &std::path::Path,
    options: &DataOptions,
    valid_fraction: f64,
) -> Result<SplitImageSet> {
    let path = std::path::Path::new(name);
    let is_csv = name.ends_with(".csv") || name.ends_with(".csv.gz");
    if tabular::TABLES.iter().any(|t| t.name == name) || is_csv {
        let (table, default_target) = if is_csv {
            (tabular::Table::read_csv(path)?, None)
        } else {
            let (table, named) = tabular::load_named(name, data_dir)?;
            (table, Some(named.target))
        };
        let target = match (&options.target, default_target) {
            (Some(t), _) => t.clone(),
            (None, Some(t)) => t.to_string(),
            (None, None) => table.columns.last().cloned().unwrap_or_default(),
        };
        let spec = tabular::TableSpec {
            target: target.clone(),
            encoding: options.encoding,
            task: Some(tabular::TableTask::Classification),
            drop: Vec::new(),
        };
        if table.is_numeric(table.column(&target)?) {
            return Err(Error::Invalid(format!(
                "{name}: target `{target}` is numeric; image-style training needs classes (regression tables are for tabular::RegressionBatcher)"
            )));
        }
        let labels = table.class_labels(&target)?;
        let h = split::holdout(&labels, valid_fraction, seed.derive("valid"))?;
        let encoder = tabular::TableEncoder::fit(&table, &spec, &h.train)?;
        let classes = encoder.classes().unwrap_or_default().to_vec();
        let part = |rows: &[usize]| encoder.transform(&table, rows)?.to_image_set(&classes);
        return Ok(SplitImageSet {
            name: name.to_string(),
            train: part(&h.train)?,
            valid: part(&h.valid)?,
            test: part(&h.test)?,
        });
    }
    if !DATASETS.contains(&name) && path.is_dir() {
        let size = options.image_size.ok_or_else(|| {
            Error::Invalid(format!(
                "{name} is an image folder: give the image size (e.g. --image-size 28x28)"
            ))
        })?;
        let folder = image_folder::FolderOptions {
            size,
            channels: options.channels,
            resize: image_folder::Resize::default(),
        };
        return image_folder::load_split(path, &folder, valid_fraction, seed);
    }
    match name {
        "mnist" | "fashion-mnist" => {
            let remote = download::remote(name).expect("both are remote datasets");
            let dir = download::ensure(remote, data_dir, download::Policy::from_env())?;
            let digits: Vec<String> = (0..10).map(|d| d.to_string()).collect();
            let digit_names: Vec<&str> = digits.iter().map(String::as_str).collect();
            let classes: &[&str] = if name == "mnist" {
                &digit_names
            } else {
                &idx::FASHION_CLASSES
            };
            SplitImageSet::carve(
                name.to_string(),
                idx::load_dir(name, &dir, idx::Split::Train, classes)?,
                idx::load_dir(name, &dir, idx::Split::Test, classes)?,
                valid_fraction,
                seed,
            )
        }
        "digits" => {
            let all = digits::load_bundled()?;
            let h = split::holdout(all.labels(), valid_fraction, seed.derive("valid"))?;
            Ok(SplitImageSet {
                name: name.to_string(),
                train: all.subset(&h.train),
                valid: all.subset(&h.valid),
                test: all.subset(&h.test),
            })
        }
        other => Err(Error::UnknownDataset {
            name: other.to_string(),
            available: format!(
                "{}, {}, a .csv file or an image folder",
                DATASETS.join(", "),
                tabular::TABLES
                    .iter()
                    .map(|t| t.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}
