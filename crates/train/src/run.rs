use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::data::dataloader::DataLoader;
use burn::data::dataloader::DataLoaderBuilder;
use burn::module::Module;
use burn::train::logger::InMemoryMetricLogger;
use burn::train::metric::{AccuracyMetric, LossMetric};
use burn::train::{
    ClassificationOutput, InferenceStep, Learner, LearnerModel, SupervisedTraining, TrainStep,
};
use kiln_core::Seed;
use kiln_data::{Augment, EpochCounter, EpochLoader, ImageBatcher, ImageDataset, Normalizer};
use kiln_optim::EpochScheduler;
use serde::{Deserialize, Serialize};

use crate::error::io;
use crate::eval::RunFiles;
use crate::renderer::KilnRenderer;
use crate::{ClassificationTask, EpochMetrics, Error, EvalReport, Result, TrainConfig};

/// How a run reports progress and where it finds data (neither changes the results).
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// Print nothing while training (for CI and tests).
    pub quiet: bool,
    /// Data directory (default: `KILN_DATA_DIR`, else the user cache).
    pub data_dir: Option<PathBuf>,
}

impl TrainOptions {
    /// Silent, default data directory.
    pub fn quiet() -> Self {
        Self {
            quiet: true,
            data_dir: None,
        }
    }
}

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
    /// Held-out test images.
    pub test_size: usize,
    /// Per-epoch metrics.
    pub epochs: Vec<EpochMetrics>,
    /// Held-out test metrics of the final model, measured after reloading the saved run.
    pub test: EvalReport,
    /// Wall-clock seconds spent in training (without data loading and evaluation).
    pub train_seconds: f64,
}

/// Trains `config` and writes the run folder `run_dir` (created if needed).
///
/// The final test metrics are measured by reloading the saved run with
/// [`evaluate_run`](crate::evaluate_run), exactly as `kiln eval` does.
pub fn train(config: &TrainConfig, run_dir: &Path, options: &TrainOptions) -> Result<TrainReport> {
    config.validate()?;
    let mut config = config.clone();
    // burn's CPU backends keep one process-wide RNG (initialisation, dropout). Two runs
    // interleaving their draws would break seed-exactness, so runs in one process take turns.
    let _turn = kiln_core::seed::exclusive_rng();
    let seed = Seed(config.seed);
    let device = config.device.autodiff_device();
    seed.apply(&device);

    let data = crate::eval::load_data(&config, options.data_dir.as_deref())?;
    if config.adapt_model {
        config
            .model
            .adapt_to(data.train.shape, data.train.num_classes());
        config.adapt_model = false;
        config.validate()?;
    }
    config.model.check_input(data.train.shape)?;
    if config.model.num_classes() != data.train.num_classes() {
        return Err(Error::InvalidSetting(format!(
            "the model predicts {} classes but dataset `{}` has {}",
            config.model.num_classes(),
            config.dataset,
            data.train.num_classes()
        )));
    }
    let normalizer = Normalizer::fit(&data.train);

    std::fs::create_dir_all(run_dir).map_err(io(run_dir))?;
    let files = RunFiles::new(run_dir);
    config.save(&files.config)?;
    write_json(&files.normalizer, &normalizer)?;

    // Batches are built (and augmented) in one data-loader worker thread, overlapping the
    // training step; one worker keeps the batch order, hence the run, seed-exact.
    let batcher = ImageBatcher::new(data.train.shape, normalizer);
    let epochs = EpochCounter::default();
    let augment = Augment::parse(config.augment.as_deref().unwrap_or(""))?;
    let train_batcher =
        batcher
            .clone()
            .with_augment(augment, seed, epochs.clone(), data.train.num_classes());
    let train_loader = EpochLoader::new(
        DataLoaderBuilder::new(train_batcher)
            .batch_size(config.batch_size)
            .shuffle(seed.derive("shuffle"))
            .num_workers(1)
            .set_device(device.clone())
            .build(ImageDataset::new(data.train.clone())),
        epochs,
    );
    let valid_loader = DataLoaderBuilder::new(batcher)
        .batch_size(config.batch_size)
        .num_workers(1)
        .set_device(device.clone())
        .build(ImageDataset::new(data.test.clone()));

    let model = config.model.init_image(&device)?;
    let params = model.num_params();
    let task = ClassificationTask { model };
    let optimizer = config.optim.init()?;
    let steps_per_epoch = data.train.len().div_ceil(config.batch_size);
    let scheduler = EpochScheduler::new(
        config.schedule.clone(),
        config.lr,
        config.epochs,
        steps_per_epoch,
    );
    let learning_rates = scheduler.per_epoch();
    let learner = Learner::new(task, optimizer, scheduler);

    let fitted = fit(
        learner,
        train_loader,
        valid_loader,
        learning_rates,
        run_dir,
        options,
    )?;
    let (epochs, train_seconds) = (fitted.epochs, fitted.seconds);

    fitted
        .model
        .model
        .save_file(&files.model)
        .map_err(|e| Error::Weights {
            path: files.model.clone(),
            reason: e.to_string(),
        })?;
    write_metrics_csv(&files.metrics, &epochs)?;

    let test = crate::evaluate_run_in(run_dir, options.data_dir.as_deref())?;
    let report = TrainReport {
        run_dir: run_dir.to_path_buf(),
        model: config.name.clone(),
        dataset: config.dataset.clone(),
        params,
        train_size: data.train.len(),
        test_size: data.test.len(),
        epochs,
        test,
        train_seconds,
    };
    write_json(&files.report, &report)?;
    Ok(report)
}

pub(crate) fn write_metrics_csv(path: &Path, epochs: &[EpochMetrics]) -> Result<()> {
    let mut text =
        String::from("epoch,lr,train_loss,train_accuracy,valid_loss,valid_accuracy,seconds\n");
    for m in epochs {
        text.push_str(&format!(
            "{},{},{},{},{},{},{:.3}\n",
            m.epoch,
            m.lr,
            m.train_loss,
            m.train_accuracy,
            m.valid_loss,
            m.valid_accuracy,
            m.seconds
        ));
    }
    std::fs::write(path, text).map_err(io(path))
}

/// The default run folder for a model: `runs/<name>-<unix seconds>`.
pub fn default_run_dir(name: &str) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(format!("{name}-{secs}"))
}

/// A trained model and its history.
pub(crate) struct Fitted<M> {
    /// The trained model (validation mode).
    pub model: M,
    /// Per-epoch metrics.
    pub epochs: Vec<EpochMetrics>,
    /// Wall-clock seconds of training.
    pub seconds: f64,
}

/// Runs burn-train's `SupervisedTraining` with loss and accuracy metrics and Kiln's renderer,
/// then checks every epoch's losses are finite.
pub(crate) fn fit<M>(
    learner: Learner<M>,
    train: Arc<dyn DataLoader<<M as TrainStep>::Input>>,
    valid: Arc<dyn DataLoader<<M as InferenceStep>::Input>>,
    learning_rates: Vec<f64>,
    run_dir: &Path,
    options: &TrainOptions,
) -> Result<Fitted<M>>
where
    M: LearnerModel
        + TrainStep<Output = ClassificationOutput>
        + InferenceStep<Output = ClassificationOutput>,
{
    let history = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let result = SupervisedTraining::new(run_dir.join("logs"), train, valid)
        .num_epochs(learning_rates.len())
        .metric_train_numeric(LossMetric::new())
        .metric_valid_numeric(LossMetric::new())
        .metric_train_numeric(AccuracyMetric::new())
        .metric_valid_numeric(AccuracyMetric::new())
        .with_metric_logger(InMemoryMetricLogger::new())
        .with_application_logger(None)
        .renderer(Box::new(KilnRenderer::new(
            options.quiet,
            history.clone(),
            learning_rates,
        )))
        .launch(learner);
    let seconds = started.elapsed().as_secs_f64();
    if let Some(error) = result.error {
        return Err(Error::Training(error.to_string()));
    }
    let epochs = history.lock().expect("history lock").clone();
    if epochs.is_empty() {
        return Err(Error::Training("no epoch finished".into()));
    }
    for m in &epochs {
        for (split, value) in [("train", m.train_loss), ("valid", m.valid_loss)] {
            if !value.is_finite() {
                return Err(Error::Diverged {
                    split: split.into(),
                    epoch: m.epoch,
                    value,
                });
            }
        }
    }
    Ok(Fitted {
        model: result.model,
        epochs,
        seconds,
    })
}

/// Writes `value` as TOML.
pub(crate) fn write_toml<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = toml::to_string(value).expect("Kiln's run configs always serialise to TOML");
    std::fs::write(path, text).map_err(io(path))
}

/// Writes `value` as pretty JSON.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_string_pretty(value).expect("Kiln's run files always serialise");
    std::fs::write(path, json).map_err(io(path))
}
