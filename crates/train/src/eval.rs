use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::Device;
use kiln_data::{ImageBatcher, ImageSet, Normalizer};
use kiln_models::{Classifier, ImageModel};
use serde::{Deserialize, Serialize};

use crate::error::io;
use crate::{Error, Result, TrainConfig};

/// Held-out evaluation of a classifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Correctly classified images.
    pub correct: usize,
    /// Images evaluated.
    pub total: usize,
    /// `correct / total`.
    pub accuracy: f64,
    /// Mean cross-entropy.
    pub loss: f64,
}

/// Evaluates `model` on `set` (normalised with `normalizer`) on a non-autodiff `device`.
pub fn evaluate(
    model: &ImageModel,
    set: &ImageSet,
    normalizer: &Normalizer,
    batch_size: usize,
    device: &Device,
) -> Result<EvalReport> {
    let batcher = ImageBatcher::new(set.shape, normalizer.clone());
    let indices: Vec<usize> = (0..set.len()).collect();
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let (mut correct, mut loss_sum) = (0usize, 0f64);
    for chunk in indices.chunks(batch_size.max(1)) {
        let batch = batcher.batch_indices(set, chunk, device);
        let logits = model.forward(batch.images);
        let loss = loss_fn.forward(logits.clone(), batch.targets.clone());
        let loss = loss
            .try_into_scalar::<f64>()
            .map_err(|e| Error::Training(format!("reading the evaluation loss: {e:?}")))?;
        loss_sum += loss * chunk.len() as f64;
        let predicted = logits.argmax(1).flatten::<1>(0, 1);
        let hits = predicted
            .equal(batch.targets)
            .int()
            .sum()
            .try_into_scalar::<i64>()
            .map_err(|e| Error::Training(format!("reading the evaluation accuracy: {e:?}")))?;
        correct += hits as usize;
    }
    let total = set.len();
    Ok(EvalReport {
        correct,
        total,
        accuracy: correct as f64 / total.max(1) as f64,
        loss: loss_sum / total.max(1) as f64,
    })
}

/// Paths of the files in a run folder.
pub(crate) struct RunFiles {
    pub config: PathBuf,
    pub model: PathBuf,
    pub normalizer: PathBuf,
    pub metrics: PathBuf,
    pub report: PathBuf,
}

impl RunFiles {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            config: dir.join("config.toml"),
            model: dir.join("model.bpk"),
            normalizer: dir.join("normalizer.json"),
            metrics: dir.join("metrics.csv"),
            report: dir.join("report.json"),
        }
    }
}

fn check_run_dir(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        return Err(Error::BadRunFile {
            path: dir.to_path_buf(),
            reason: "not a run folder (expected a directory written by `kiln train`)".into(),
        });
    }
    Ok(())
}

/// Loads a run folder's config, normaliser and trained model onto `device`.
pub fn load_run(dir: &Path, device: &Device) -> Result<(TrainConfig, Normalizer, ImageModel)> {
    check_run_dir(dir)?;
    let files = RunFiles::new(dir);
    let config = TrainConfig::load(&files.config)?;
    let text = std::fs::read_to_string(&files.normalizer).map_err(io(&files.normalizer))?;
    let normalizer: Normalizer = serde_json::from_str(&text).map_err(|e| Error::BadRunFile {
        path: files.normalizer.clone(),
        reason: e.to_string(),
    })?;
    if !files.model.is_file() {
        return Err(Error::Weights {
            path: files.model.clone(),
            reason: "file not found".into(),
        });
    }
    let model = config
        .model
        .init_image(device)?
        .try_load_file(&files.model)
        .map_err(|e| Error::Weights {
            path: files.model.clone(),
            reason: e.to_string(),
        })?;
    Ok((config, normalizer, model))
}

/// The dataset of a run, with the run's per-class limits applied, read from `data_dir` (else
/// `KILN_DATA_DIR`, else the user cache).
pub(crate) fn load_data(
    config: &TrainConfig,
    data_dir: Option<&Path>,
) -> Result<kiln_data::SplitImageSet> {
    let dir = kiln_data::data_dir::resolve(data_dir.map(Path::to_path_buf));
    let mut data = kiln_data::load_dataset(
        &config.dataset,
        kiln_core::Seed(config.seed),
        &dir,
        &config.data,
    )?;
    if let Some(n) = config.train_per_class {
        data.train = data.train.first_per_class(n);
    }
    if let Some(n) = config.test_per_class {
        data.test = data.test.first_per_class(n);
    }
    Ok(data)
}

/// Reloads a run folder and evaluates it on its dataset's held-out test split (the same split
/// training used, re-derived from the saved seed), reading data from the default data
/// directory.
pub fn evaluate_run(dir: &Path) -> Result<EvalReport> {
    evaluate_run_in(dir, None)
}

/// [`evaluate_run`] with an explicit data directory.
pub fn evaluate_run_in(dir: &Path, data_dir: Option<&Path>) -> Result<EvalReport> {
    check_run_dir(dir)?;
    let spec = TrainConfig::load(&RunFiles::new(dir).config)?.device;
    let device = spec.device();
    let (config, normalizer, model) = load_run(dir, &device)?;
    let data = load_data(&config, data_dir)?;
    evaluate(
        &model,
        &data.test,
        &normalizer,
        config.batch_size.max(256),
        &device,
    )
}
