use std::path::{Path, PathBuf};

use burn::module::Module;
use kiln_core::Seed;
use kiln_data::{Augment, ImageBatcher, ImageDataset, Normalizer};
use serde::{Deserialize, Serialize};

use crate::files::{RunFiles, write_json};
use crate::{
    ClassificationTask, EpochMetrics, Error, EvalReport, Result, TrainConfig, TrainOptions,
};

/// What a finished run reports (also written as `report.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Run folder.
    pub run_dir: PathBuf,
    /// Model name.
    pub model: String,
    /// Dataset name.
    pub dataset: String,
    /// Parameters of the model.
    pub params: usize,
    /// Training images.
    pub train_size: usize,
    /// Validation images (held out from the training data; the per-epoch "valid" columns,
    /// early stopping, plateau and best-epoch restore watch them).
    #[serde(default)]
    pub valid_size: usize,
    /// Held-out test images.
    pub test_size: usize,
    /// Per-epoch metrics.
    pub epochs: Vec<EpochMetrics>,
    /// Held-out test metrics of the final model, measured after reloading the saved run.
    pub test: EvalReport,
    /// Wall-clock seconds spent in training (without data loading and evaluation; this
    /// session only when the run was resumed).
    pub train_seconds: f64,
    /// Best epoch by the monitored validation value.
    #[serde(default)]
    pub best_epoch: Option<usize>,
    /// The epoch whose weights were saved as `model.bpk` (the best one when early stopping
    /// restores it, else the last).
    #[serde(default)]
    pub model_epoch: usize,
    /// Epoch at which early stopping ended the run.
    #[serde(default)]
    pub stopped_early_at: Option<usize>,
    /// The checkpoint epoch this session resumed from.
    #[serde(default)]
    pub resumed_from: Option<usize>,
}

/// Trains `config` and writes the run folder `run_dir` (created if needed).
///
/// Validation images are held out from the training data (`config.recipe.valid_fraction`, by
/// the run's seed); they decide early stopping, reduce-on-plateau and the best epoch. The
/// test split is read once, at the end: the final test metrics are measured by reloading the
/// saved run with [`evaluate_run`](crate::evaluate_run), exactly as `kiln eval` does.
///
/// With `options.resume`, continues the run folder instead (see [`resume`]).
pub fn train(config: &TrainConfig, run_dir: &Path, options: &TrainOptions) -> Result<TrainReport> {
    run(config, run_dir, options)
}

/// Continues the run in `run_dir` from its last complete checkpoint (written after every
/// epoch) to the end of its configured epochs. With the same seed, the result is the same as
/// a run that was never interrupted.
pub fn resume(run_dir: &Path, options: &TrainOptions) -> Result<TrainReport> {
    let config = TrainConfig::load(&RunFiles::new(run_dir).config)?;
    run(
        &config,
        run_dir,
        &TrainOptions {
            resume: true,
            ..options.clone()
        },
    )
}

fn run(config: &TrainConfig, run_dir: &Path, options: &TrainOptions) -> Result<TrainReport> {
    config.validate()?;
    // One turn at the backend RNG for the whole run: data, training and the test evaluation.
    let _turn = kiln_core::seed::exclusive_rng();
    let mut config = config.clone();
    let seed = Seed(config.recipe.seed);
    let data = crate::eval::load_data(&config, options.data_dir.as_deref())?;
    if config.adapt_model {
        config
            .model
            .adapt_to(data.train.shape(), data.train.num_classes());
        config.adapt_model = false;
        config.validate()?;
    }
    config.model.check_input(data.train.shape())?;
    if config.model.num_classes() != data.train.num_classes() {
        return Err(Error::InvalidSetting(format!(
            "the model predicts {} classes but dataset `{}` has {}",
            config.model.num_classes(),
            config.dataset,
            data.train.num_classes()
        )));
    }
    let normalizer = Normalizer::fit(&data.train);
    let files = RunFiles::new(run_dir);
    let mut params = 0;
    let fitted = crate::fit(&config.recipe(), run_dir, options, |setup| {
        let device = setup.device();
        if setup.resumed_from().is_none() {
            // The config records the resolved shard count, so it reproduces the run.
            TrainConfig {
                recipe: setup.recipe().clone(),
                ..config.clone()
            }
            .save(&files.config)?;
            write_json(&files.normalizer, &normalizer)?;
        }
        // Batches are built (and augmented) in one data-loader worker thread, overlapping
        // the training step; augmentation is keyed by (seed, epoch, item).
        let num_classes = data.train.num_classes();
        let batcher = ImageBatcher::new(data.train.shape(), normalizer.clone());
        let augment = Augment::parse(config.augment.as_deref().unwrap_or(""))?;
        let mut train_batcher =
            batcher
                .clone()
                .with_augment(augment, seed, setup.epochs(), num_classes);
        if let Some(eps) = config.label_smoothing {
            train_batcher = train_batcher.with_label_smoothing(eps, num_classes);
        }
        let loaders = setup.loaders(
            train_batcher,
            batcher,
            ImageDataset::new(data.train.clone()),
            ImageDataset::new(data.valid.clone()),
        );
        let mut model = config.model.init_image(device)?;
        if let Some(spec) = &config.finetune {
            model = crate::pretrained::load_pretrained(model, spec)?;
            setup.add_groups(crate::pretrained::backbone_rules(&model, "model", spec));
        }
        params = model.num_params();
        let teacher = match &config.distill {
            Some(d) => Some(crate::task::load_teacher(d, &normalizer, &config.model)?),
            None => None,
        };
        let projection = match &teacher {
            Some(t) if t.feature_weight > 0.0 => Some(crate::task::feature_projection(
                &model,
                t,
                data.train.shape(),
                device,
            )),
            _ => None,
        };
        let task = ClassificationTask {
            model,
            teacher,
            projection,
            shardable: config.model.shardable(),
        };
        Ok((task, loaders))
    })?;

    crate::files::save_module(fitted.task.model, &files.model)?;
    let test = crate::evaluate_run_in(run_dir, options.data_dir.as_deref())?;
    let report = TrainReport {
        run_dir: run_dir.to_path_buf(),
        model: config.name.clone(),
        dataset: config.dataset.clone(),
        params,
        train_size: data.train.len(),
        valid_size: data.valid.len(),
        test_size: data.test.len(),
        epochs: fitted.epochs,
        test,
        train_seconds: fitted.seconds,
        best_epoch: fitted.best_epoch,
        model_epoch: fitted.model_epoch,
        stopped_early_at: fitted.stopped_early_at,
        resumed_from: fitted.resumed_from,
    };
    write_json(&files.report, &report)?;
    crate::plot::plot_confusion(
        &report.test.confusion,
        &report.test.classes,
        &run_dir.join("confusion.png"),
    )?;
    Ok(report)
}

/// The default run folder for a model: `runs/<name>-<unix seconds>`.
pub fn default_run_dir(name: &str) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(format!("{name}-{secs}"))
}
