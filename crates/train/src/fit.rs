//! [`fit`]: Kiln's training loop for any burn module that implements [`Task`].
//!
//! A user's own model gets what the zoo's get: the [`Recipe`]'s optimizer, gradient clipping,
//! parameter groups and freezing, learning-rate schedule and reduce-on-plateau; data-parallel
//! shards where the task allows them; progress bars; atomic checkpoints after every epoch
//! (the last two and the best kept) and exact resume; early stopping on the validation split;
//! a divergence stop naming the epoch, step and last good checkpoint; and a run folder.
//!
//! ```
//! use burn::module::Module;
//! use burn::train::ClassificationOutput;
//! use kiln_data::{ImageBatch, ImageBatcher, ImageDataset, Normalizer};
//! use kiln_train::{Recipe, Task, TrainOptions, fit, per_sample_cross_entropy};
//!
//! /// Logistic regression on the 8x8 digits.
//! #[derive(Module, Debug)]
//! struct MyTask {
//!     linear: burn::nn::Linear,
//! }
//!
//! impl Task for MyTask {
//!     type Batch = ImageBatch;
//!     type Output = ClassificationOutput;
//!     fn forward(&self, batch: ImageBatch) -> ClassificationOutput {
//!         let logits = self.linear.forward(batch.images.flatten(1, 3));
//!         let loss = per_sample_cross_entropy(logits.clone(), batch.targets.clone());
//!         ClassificationOutput::new(loss, logits, batch.targets)
//!     }
//! }
//!
//! let run_dir = std::env::temp_dir().join("kiln-fit-doc");
//! let recipe = Recipe { epochs: 5, batch_size: 64, ..Recipe::default() };
//! let data = kiln_data::load_split("digits", kiln_core::Seed(recipe.seed))?;
//! let fitted = fit(&recipe, &run_dir, &TrainOptions::quiet(), |setup| {
//!     let task = MyTask { linear: burn::nn::LinearConfig::new(64, 10).init(setup.device()) };
//!     let batcher = ImageBatcher::new(data.train.shape(), Normalizer::fit(&data.train));
//!     let loaders = setup.loaders(
//!         batcher.clone(),
//!         batcher,
//!         ImageDataset::new(data.train.clone()),
//!         ImageDataset::new(data.valid.clone()),
//!     );
//!     Ok((task, loaders))
//! })?;
//! assert!(fitted.epochs.last().unwrap().valid_accuracy > 0.8);
//! kiln_train::save_module(fitted.task, &run_dir.join("model.bpk"))?;
//! # Ok::<(), kiln_train::Error>(())
//! ```
//!
//! ## Run folder
//!
//! | file | content |
//! |---|---|
//! | `recipe.toml` | the [`Recipe`], with the shard count resolved |
//! | `metrics.csv` | per-epoch learning rate, train and validation loss and accuracy |
//! | `curves.png` | loss and accuracy per epoch |
//! | `fit.json` | best epoch, the epoch whose weights were kept, early stop, seconds |
//! | `checkpoint/` | `model-N.bpk`, `optim-N.bpk`, `scheduler-N.bpk`: the last two epochs and the best |
//!
//! ## Exact resume
//!
//! With [`TrainOptions::resume`], `fit` continues the run folder from its last complete
//! checkpoint and computes what the uninterrupted run computes, bit for bit, provided that
//! every random draw of the setup is a function of the seed: the loop reseeds the device
//! generator (dropout) from `(seed, epoch)` at each epoch start and shuffles each epoch in a
//! seeded order; a batcher that augments should key its draws by [`Setup::epochs`] (as
//! `kiln_data::ImageBatcher::with_augment` does). The recipe must be the one the run started
//! with (checked against `recipe.toml`). Resuming a run whose loop already finished (its
//! `fit.json` is written) trains nothing and returns the finished task, so a run killed after
//! its loop, while evaluating, loses nothing.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::data::dataloader::DataLoader;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::tensor::Device;
use burn::train::Learner;
use kiln_core::Seed;
use kiln_data::EpochCounter;
use kiln_optim::{EpochScheduler, GroupRule, PlateauTracker};
use serde::{Deserialize, Serialize};

use crate::engine::{FitPlan, Fitted, Resume};
use crate::error::io;
use crate::files::{RunFiles, read_metrics_csv, remove_stale, write_json, write_toml};
use crate::recipe::{Monitor, Recipe};
use crate::step::{Stepper, Task, TaskOutput};
use crate::{EpochMetrics, Error, Result};

/// How a run reports progress, where it finds data, and whether it continues (none of which
/// changes the results).
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// Print nothing while training (for CI and tests).
    pub quiet: bool,
    /// Data directory (default: `KILN_DATA_DIR`, else the user cache).
    pub data_dir: Option<PathBuf>,
    /// Pause once this epoch's checkpoint is written (counting all epochs of the run),
    /// returning [`Error::Paused`]; resuming continues the run. For time-sliced training
    /// (preemptible machines, shared CPUs).
    pub pause_after: Option<usize>,
    /// Continue the run folder from its last complete checkpoint instead of starting afresh.
    pub resume: bool,
}

impl TrainOptions {
    /// Silent, default data directory.
    pub fn quiet() -> Self {
        Self {
            quiet: true,
            ..Self::default()
        }
    }

    /// The data directory these options point at (see `kiln_data::data_dir::resolve`).
    pub fn data_dir(&self) -> PathBuf {
        kiln_data::data_dir::resolve(self.data_dir.clone())
    }
}

/// What the setup closure of [`fit`] gets: the run's seeded device, its seed and epoch
/// counter, and builders for the data loaders.
pub struct Setup {
    recipe: Recipe,
    device: Device,
    epochs: EpochCounter,
    resumed_from: Option<usize>,
    data_dir: PathBuf,
    groups: RefCell<Vec<GroupRule>>,
}

impl Setup {
    /// The training device (autodiff on, seeded with the recipe's seed): build the task here.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The run's master seed.
    pub fn seed(&self) -> Seed {
        Seed(self.recipe.seed)
    }

    /// The recipe in force (shards resolved).
    pub fn recipe(&self) -> &Recipe {
        &self.recipe
    }

    /// The epoch counter the training loader advances; batchers that augment key their
    /// draws by it, so a resumed run draws what the uninterrupted one did.
    pub fn epochs(&self) -> EpochCounter {
        self.epochs.clone()
    }

    /// The checkpoint epoch the run resumes from (`None` for a fresh run: write the run's
    /// own files, e.g. its config, only then).
    pub fn resumed_from(&self) -> Option<usize> {
        self.resumed_from
    }

    /// The data directory of the run's options.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Carves the validation split from training items with these `labels` (one per item;
    /// all zero for unlabelled data): `(train, valid)` indices, stratified, the recipe's
    /// `valid_fraction`, seeded by the run (stream `valid`).
    pub fn valid_split(&self, labels: &[usize]) -> Result<(Vec<usize>, Vec<usize>)> {
        Ok(kiln_data::split::validation_split(
            labels,
            self.recipe.valid_fraction,
            self.seed().derive("valid"),
        )?)
    }

    /// Parameter-group rules to apply on top of the recipe's (e.g. derived from the model,
    /// as fine-tuning's backbone rate is); the recipe's come first, later rules win.
    pub fn add_groups(&self, rules: impl IntoIterator<Item = GroupRule>) {
        self.groups.borrow_mut().extend(rules);
    }

    /// The run's data loaders: training batches in a seeded order per epoch from one worker
    /// (so the order is exact), the device generator reseeded from (seed, epoch) as each
    /// epoch starts; validation batches in order.
    pub fn loaders<I, B>(
        &self,
        train_batcher: impl Batcher<I, B> + 'static,
        valid_batcher: impl Batcher<I, B> + 'static,
        train: impl Dataset<I> + 'static,
        valid: impl Dataset<I> + 'static,
    ) -> Loaders<B>
    where
        I: Send + Sync + Clone + std::fmt::Debug + 'static,
        B: Send + Clone + std::fmt::Debug + 'static,
    {
        let (train_len, valid_len) = (train.len(), valid.len());
        let (train, valid) = crate::engine::loaders(
            train_batcher,
            valid_batcher,
            train,
            valid,
            self.recipe.batch_size,
            self.seed(),
            self.epochs.clone(),
            &self.device,
        );
        Loaders {
            train,
            valid,
            train_len,
            valid_len,
        }
    }
}

/// The data loaders of a run (built by [`Setup::loaders`]).
pub struct Loaders<B> {
    train: Arc<dyn DataLoader<B>>,
    valid: Arc<dyn DataLoader<B>>,
    train_len: usize,
    valid_len: usize,
}

/// `fit.json`: how the loop ended.
#[derive(Serialize, Deserialize)]
struct FitSummary {
    epochs: Vec<EpochMetrics>,
    best_epoch: Option<usize>,
    model_epoch: usize,
    stopped_early_at: Option<usize>,
    resumed_from: Option<usize>,
    train_seconds: f64,
    train_size: usize,
    valid_size: usize,
}

/// Trains the [`Task`] that `setup` builds with `recipe`, writing the run folder `run_dir`
/// (see the [module docs](self)); returns the trained task (the best epoch's when early
/// stopping restores it) and its history.
///
/// `setup` runs once the run holds the process's backend RNG and the device is seeded: it
/// builds the task on [`Setup::device`] and the loaders with [`Setup::loaders`]. On resume
/// it runs again the same way, and the checkpoint's weights replace the fresh ones.
pub fn fit<T, F>(
    recipe: &Recipe,
    run_dir: &Path,
    options: &TrainOptions,
    setup: F,
) -> Result<Fitted<T>>
where
    T: Task,
    F: FnOnce(&Setup) -> Result<(T, Loaders<T::Batch>)>,
{
    recipe.validate()?;
    if recipe.monitor == Monitor::ValidAccuracy && !<T::Output as TaskOutput>::ACCURACY {
        return Err(Error::InvalidSetting(
            "this task reports no accuracy: monitor valid-loss instead".into(),
        ));
    }
    // burn's CPU backends keep one process-wide RNG (initialisation, dropout). Two runs
    // interleaving their draws would break seed-exactness, so runs in one process take turns.
    let _turn = kiln_core::seed::exclusive_rng();
    std::fs::create_dir_all(run_dir).map_err(io(run_dir))?;
    let recipe_path = run_dir.join("recipe.toml");
    let files = RunFiles::new(run_dir);
    let mut recipe = recipe.clone();
    let resume = if options.resume {
        let resume = prepare_resume(run_dir)?;
        if recipe_path.is_file() {
            let saved = crate::files::read_toml::<crate::recipe::RecipeFile>(&recipe_path)?.recipe;
            if recipe.shards.is_none() {
                recipe.shards = saved.shards;
            }
            if recipe != saved {
                return Err(Error::BadRunFile {
                    path: recipe_path,
                    reason: format!(
                        "the run started with another recipe; resume it with the one it started with:\n{}",
                        saved.to_toml()
                    ),
                });
            }
        }
        recipe.shards = Some(recipe.resolved_shards());
        Some(resume)
    } else {
        recipe.shards = Some(recipe.resolved_shards());
        remove_stale(&[&files.report, &files.model, &run_dir.join("fit.json")])?;
        write_toml(&recipe_path, &recipe)?;
        None
    };

    let device = recipe.device.autodiff_device();
    let seed = Seed(recipe.seed);
    seed.apply(&device);
    let start_epoch = resume.as_ref().map_or(0, |r| r.epoch);
    let context = Setup {
        recipe: recipe.clone(),
        device,
        epochs: EpochCounter::starting_at(start_epoch),
        resumed_from: resume.as_ref().map(|r| r.epoch),
        data_dir: options.data_dir(),
        groups: RefCell::new(recipe.optim.groups.clone()),
    };
    let (task, loaders) = setup(&context)?;
    let summary = run_dir.join("fit.json");
    if options.resume && summary.is_file() {
        // The loop finished before (the run stopped after it): its result, not more epochs.
        let done: FitSummary = crate::files::read_json(&summary)?;
        let weights = crate::files::checkpoint_file(run_dir, "model", done.model_epoch);
        let task = crate::files::load_weights_eagerly(task, &weights)?;
        return Ok(Fitted {
            task,
            epochs: done.epochs,
            seconds: 0.0,
            best_epoch: done.best_epoch,
            stopped_early_at: done.stopped_early_at,
            model_epoch: done.model_epoch,
            resumed_from: context.resumed_from,
        });
    }
    if loaders.train_len == 0 || loaders.valid_len == 0 {
        return Err(Error::InvalidSetting(format!(
            "the run needs training and validation items, found {} and {}",
            loaders.train_len, loaders.valid_len
        )));
    }
    let groups = context.groups.into_inner();
    let groups = kiln_optim::resolve_layer_indices(&task, &groups)?;
    let task = kiln_optim::apply_groups(task, &groups)?;
    let stepper = Stepper {
        task,
        shards: recipe.resolved_shards(),
        qat_bits: recipe.qat_bits,
        keep_pruned: recipe.keep_pruned,
    };
    let plateau = recipe
        .plateau
        .clone()
        .map(|p| PlateauTracker::new(p, recipe.monitor.lower_is_better()));
    let scheduler = EpochScheduler::new(
        recipe.schedule.clone(),
        recipe.lr,
        recipe.epochs,
        loaders.train_len.div_ceil(recipe.batch_size),
    )
    .with_plateau(plateau.clone());
    let scheduler = kiln_optim::module_scheduler(scheduler, recipe.lr, &groups);
    let learner = Learner::new(stepper, recipe.optim.init()?, scheduler);
    let fitted = crate::engine::launch(
        learner,
        loaders.train,
        loaders.valid,
        run_dir,
        FitPlan {
            epochs: recipe.epochs,
            monitor: recipe.monitor,
            early_stopping: recipe.early_stopping.clone(),
            plateau,
            resume,
            quiet: options.quiet,
            pause_after: options.pause_after,
        },
    )?;
    crate::files::write_metrics_csv(&files.metrics, &fitted.epochs)?;
    crate::plot::plot_curves(&fitted.epochs, &run_dir.join("curves.png"))?;
    write_json(
        &run_dir.join("fit.json"),
        &FitSummary {
            epochs: fitted.epochs.clone(),
            best_epoch: fitted.best_epoch,
            model_epoch: fitted.model_epoch,
            stopped_early_at: fitted.stopped_early_at,
            resumed_from: fitted.resumed_from,
            train_seconds: fitted.seconds,
            train_size: loaders.train_len,
            valid_size: loaders.valid_len,
        },
    )?;
    Ok(fitted)
}

/// Where an unfinished run folder resumes: its last complete checkpoint (checked to load)
/// and the metrics of the epochs up to it. An error when the run already finished or has no
/// usable checkpoint.
pub(crate) fn prepare_resume(run_dir: &Path) -> Result<Resume> {
    let files = RunFiles::new(run_dir);
    if files.report.exists() {
        return Err(Error::InvalidSetting(format!(
            "the run in {} already finished ({} exists); start a new run instead",
            run_dir.display(),
            files.report.display()
        )));
    }
    let saved = crate::files::complete_checkpoints(run_dir);
    let Some(&epoch) = saved.last() else {
        return Err(Error::BadRunFile {
            path: crate::files::checkpoint_dir(run_dir),
            reason: "no complete checkpoint to resume from (expected model-N.bpk, optim-N.bpk and scheduler-N.bpk)".into(),
        });
    };
    // Check the records load before burn-train does (it would panic on a corrupt file).
    crate::engine::check_checkpoint(run_dir, epoch)?;
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
