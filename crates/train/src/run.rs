use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::train::Learner;
use kiln_core::Seed;
use kiln_data::{Augment, EpochCounter, ImageBatcher, ImageDataset, Normalizer};
use kiln_optim::{EpochScheduler, PlateauTracker};
use serde::{Deserialize, Serialize};

use crate::error::io;
use crate::eval::RunFiles;
use crate::fit::{FitPlan, Resume, fit};
use crate::{ClassificationTask, EpochMetrics, Error, EvalReport, Result, TrainConfig};

/// How a run reports progress and where it finds data (neither changes the results).
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// Print nothing while training (for CI and tests).
    pub quiet: bool,
    /// Data directory (default: `KILN_DATA_DIR`, else the user cache).
    pub data_dir: Option<PathBuf>,
    /// Pause once this epoch's checkpoint is written (counting all epochs of the run),
    /// returning [`Error::Paused`]; [`resume`] continues the run. For time-sliced training
    /// (preemptible machines, shared CPUs).
    pub pause_after: Option<usize>,
}

impl TrainOptions {
    /// Silent, default data directory.
    pub fn quiet() -> Self {
        Self {
            quiet: true,
            ..Self::default()
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
/// Validation images are held out from the training data (`config.data.valid_fraction`, by
/// the run's seed); they decide early stopping, reduce-on-plateau and the best epoch. The
/// test split is read once, at the end: the final test metrics are measured by reloading the
/// saved run with [`evaluate_run`](crate::evaluate_run), exactly as `kiln eval` does.
pub fn train(config: &TrainConfig, run_dir: &Path, options: &TrainOptions) -> Result<TrainReport> {
    run(config, run_dir, options, None)
}

/// Continues the run in `run_dir` from its last complete checkpoint (written after every
/// epoch) to the end of its configured epochs. With the same seed, the result is the same as
/// a run that was never interrupted.
pub fn resume(run_dir: &Path, options: &TrainOptions) -> Result<TrainReport> {
    let files = RunFiles::new(run_dir);
    let config = TrainConfig::load(&files.config)?;
    let resume = prepare_resume(run_dir)?;
    run(&config, run_dir, options, Some(resume))
}

/// Where an unfinished run folder resumes: its last complete checkpoint (checked to load)
/// and the metrics of the epochs up to it. An error when the run already finished or has no
/// usable checkpoint. Shared by every kind of run.
pub(crate) fn prepare_resume(run_dir: &Path) -> Result<Resume> {
    let files = RunFiles::new(run_dir);
    if files.report.exists() {
        return Err(Error::InvalidSetting(format!(
            "the run in {} already finished ({} exists); start a new run instead",
            run_dir.display(),
            files.report.display()
        )));
    }
    let saved = crate::fit::complete_checkpoints(run_dir);
    let Some(&epoch) = saved.last() else {
        return Err(Error::BadRunFile {
            path: crate::fit::checkpoint_dir(run_dir),
            reason: "no complete checkpoint to resume from (expected model-N.bpk, optim-N.bpk and scheduler-N.bpk)".into(),
        });
    };
    // Check the records load before burn-train does (it would panic on a corrupt file).
    crate::fit::check_checkpoint(run_dir, epoch)?;
    let history = read_metrics_csv(&files.metrics)?;
    let history: Vec<EpochMetrics> = history.into_iter().filter(|m| m.epoch <= epoch).collect();
    if history.len() != epoch {
        return Err(Error::BadRunFile {
            path: files.metrics.clone(),
            reason: format!(
                "expected the metrics of epochs 1 to {epoch} (the last checkpoint), found {} rows",
                history.len()
            ),
        });
    }
    Ok(Resume {
        epoch,
        history,
        saved,
    })
}

fn run(
    config: &TrainConfig,
    run_dir: &Path,
    options: &TrainOptions,
    resume: Option<Resume>,
) -> Result<TrainReport> {
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

    std::fs::create_dir_all(run_dir).map_err(io(run_dir))?;
    let files = RunFiles::new(run_dir);
    if resume.is_none() {
        config.save(&files.config)?;
        write_json(&files.normalizer, &normalizer)?;
        remove_stale(&[&files.report, &files.model])?;
    }

    // Batches are built (and augmented) in one data-loader worker thread, overlapping the
    // training step. Every random draw is keyed by (seed, epoch): the order of each epoch
    // (`EpochShuffled`), augmentation, and the device generator reseeded at each epoch start,
    // so a resumed run continues exactly.
    let num_classes = data.train.num_classes();
    let batcher = ImageBatcher::new(data.train.shape(), normalizer.clone());
    let start_epoch = resume.as_ref().map_or(0, |r| r.epoch);
    let epochs = EpochCounter::starting_at(start_epoch);
    let augment = Augment::parse(config.augment.as_deref().unwrap_or(""))?;
    let mut train_batcher =
        batcher
            .clone()
            .with_augment(augment, seed, epochs.clone(), num_classes);
    if let Some(eps) = config.label_smoothing {
        train_batcher = train_batcher.with_label_smoothing(eps, num_classes);
    }
    let (train_loader, valid_loader) = crate::fit::loaders(
        train_batcher,
        batcher,
        ImageDataset::new(data.train.clone()),
        ImageDataset::new(data.valid.clone()),
        config.batch_size,
        seed,
        epochs,
        &device,
    );

    let mut model = config.model.init_image(&device)?;
    let mut groups = config.optim.groups.clone();
    if let Some(spec) = &config.finetune {
        model = crate::finetune::load_pretrained(model, spec)?;
        groups.extend(crate::finetune::backbone_rules(&model, "model", spec));
    }
    let params = model.num_params();
    let keep_pruned = config.finetune.as_ref().is_some_and(|f| f.keep_pruned);
    let teacher = match &config.distill {
        Some(d) => Some(crate::task::load_teacher(d, &normalizer, &config.model)?),
        None => None,
    };
    let qat_bits = config.finetune.as_ref().and_then(|f| f.qat_bits);
    let projection = match &teacher {
        Some(t) if t.feature_weight > 0.0 => Some(crate::task::feature_projection(
            &model,
            t,
            data.train.shape(),
            &device,
        )),
        _ => None,
    };
    // Plain steps of a shardable model use both cores (see `kiln_core::parallel`; the step
    // itself runs distillation and QAT whole).
    let shards = config.model.training_shards(config.batch_size);
    let task = ClassificationTask {
        model,
        keep_pruned,
        teacher,
        qat_bits,
        projection,
        shards,
    };
    let groups = kiln_optim::resolve_layer_indices(&task, &groups)?;
    let task = kiln_optim::apply_groups(task, &groups)?;
    let optimizer = config.optim.init()?;
    let steps_per_epoch = data.train.len().div_ceil(config.batch_size);
    let plateau = config
        .plateau
        .clone()
        .map(|p| PlateauTracker::new(p, config.monitor.lower_is_better()));
    let scheduler = EpochScheduler::new(
        config.schedule.clone(),
        config.lr,
        config.epochs,
        steps_per_epoch,
    )
    .with_plateau(plateau.clone());
    let scheduler = kiln_optim::module_scheduler(scheduler, config.lr, &groups);
    let learner = Learner::new(task, optimizer, scheduler);

    let resumed_from = resume.as_ref().map(|r| r.epoch);
    let fitted = fit(
        learner,
        train_loader,
        valid_loader,
        run_dir,
        FitPlan {
            epochs: config.epochs,
            monitor: config.monitor,
            early_stopping: config.early_stopping.clone(),
            plateau,
            resume,
            quiet: options.quiet,
            pause_after: options.pause_after,
        },
    )?;

    crate::fit::save_module(fitted.model.model, &files.model)?;
    write_metrics_csv(&files.metrics, &fitted.epochs)?;

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
        resumed_from,
    };
    write_json(&files.report, &report)?;
    crate::plot::plot_curves(&report.epochs, &run_dir.join("curves.png"))?;
    crate::plot::plot_confusion(
        &report.test.confusion,
        &report.test.classes,
        &run_dir.join("confusion.png"),
    )?;
    Ok(report)
}

const METRICS_HEADER: &str = "epoch,lr,train_loss,train_accuracy,valid_loss,valid_accuracy,seconds";

/// Writes the per-epoch metrics (atomically: a reader never sees half a file).
pub(crate) fn write_metrics_csv(path: &Path, epochs: &[EpochMetrics]) -> Result<()> {
    let mut text = format!("{METRICS_HEADER}\n");
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
    crate::fit::write_atomic(path, text.as_bytes()).map_err(io(path))
}

/// Reads a `metrics.csv` written by [`write_metrics_csv`] (values round-trip exactly).
pub(crate) fn read_metrics_csv(path: &Path) -> Result<Vec<EpochMetrics>> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let bad = |line: usize, reason: String| Error::BadRunFile {
        path: path.to_path_buf(),
        reason: format!("line {line}: {reason}"),
    };
    let mut lines = text.lines();
    if lines.next() != Some(METRICS_HEADER) {
        return Err(bad(1, format!("expected the header `{METRICS_HEADER}`")));
    }
    lines
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let fields: Vec<&str> = line.split(',').collect();
            if fields.len() != 7 {
                return Err(bad(
                    i + 2,
                    format!("expected 7 fields, found {}", fields.len()),
                ));
            }
            let num = |k: usize| -> Result<f64> {
                fields[k]
                    .parse()
                    .map_err(|_| bad(i + 2, format!("`{}` is not a number", fields[k])))
            };
            Ok(EpochMetrics {
                epoch: fields[0]
                    .parse()
                    .map_err(|_| bad(i + 2, format!("`{}` is not an epoch", fields[0])))?,
                lr: num(1)?,
                train_loss: num(2)?,
                train_accuracy: num(3)?,
                valid_loss: num(4)?,
                valid_accuracy: num(5)?,
                seconds: num(6)?,
            })
        })
        .collect()
}

/// The default run folder for a model: `runs/<name>-<unix seconds>`.
pub fn default_run_dir(name: &str) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(format!("{name}-{secs}"))
}

/// Removes the files of an earlier run in the same folder that a new run must not leave
/// behind (a stale `report.json` would claim the new run finished).
pub(crate) fn remove_stale(paths: &[&Path]) -> Result<()> {
    for path in paths {
        if path.exists() {
            std::fs::remove_file(path).map_err(io(path))?;
        }
    }
    Ok(())
}

/// Reads a run folder's `config.toml` as the config type of its kind of run.
pub(crate) fn read_run_config<T: serde::de::DeserializeOwned>(run_dir: &Path) -> Result<T> {
    let path = run_dir.join("config.toml");
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    toml::from_str(&text).map_err(|e| Error::BadRunFile {
        path,
        reason: e.to_string(),
    })
}

/// Writes `value` as TOML.
pub(crate) fn write_toml<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = toml::to_string(value).expect("Kiln's run configs always serialise to TOML");
    std::fs::write(path, text).map_err(io(path))
}

/// Writes `value` as pretty JSON, atomically (a crash leaves the old file or the new one,
/// never half a report).
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_string_pretty(value).expect("Kiln's run files always serialise");
    crate::fit::write_atomic(path, json.as_bytes()).map_err(io(path))
}
