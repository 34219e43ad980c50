//! The engine under [`fit`](crate::fit()): burn-train's `SupervisedTraining` with Kiln's
//! pieces plugged into its extension points.
//!
//! - [`AtomicCheckpointer`] (a burn `Checkpointer`): model, optimizer and scheduler records are
//!   written to a temporary file, synced and renamed into place, so a kill at any moment
//!   leaves every existing checkpoint whole.
//! - [`Keeper`] (a burn `CheckpointingStrategy`): saves every epoch, then deletes all but the
//!   last two and the best epoch (by the monitored value). Saving comes before deleting, and
//!   two epochs are kept, so a complete checkpoint survives even when the three records of the
//!   newest epoch were only partly written.
//! - [`EpochEnd`] (a burn `EarlyStoppingStrategy`, called after each epoch's checkpoint):
//!   feeds reduce-on-plateau and decides early stopping.
//! - The renderer watches the training loss and interrupts on NaN/inf.
//!
//! Resuming relies on every random draw being a function of `(seed, epoch)`: the data order
//! (`EpochShuffled`), augmentation (keyed by epoch and item), the device generator (reseeded
//! each epoch by `EpochLoader::reseeding`). The optimizer and scheduler states come from the
//! checkpoint; the plateau and best-epoch trackers are rebuilt by replaying the recorded
//! per-epoch metrics. So a run resumed after epoch `k` computes what the uninterrupted run
//! computes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::Dataset;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use burn::train::checkpoint::{
    Checkpoint, Checkpointer, CheckpointerError, CheckpointingAction, CheckpointingStrategy,
};
use burn::train::logger::InMemoryMetricLogger;
use burn::train::metric::store::EventStoreClient;
use burn::train::metric::{LearningRateMetric, LossMetric};
use burn::train::{EarlyStoppingStrategy, Interrupter, Learner, SupervisedTraining};
use kiln_core::Seed;
use kiln_data::{EpochCounter, EpochLoader, EpochShuffled};
use kiln_optim::PlateauTracker;

use crate::files::{RECORDS, checkpoint_dir, checkpoint_file, complete_checkpoints, write_atomic};
use crate::renderer::{KilnRenderer, Shared};
use crate::step::{Stepper, Task, TaskOutput};
use crate::{EarlyStopping, EpochMetrics, Error, Monitor, Result};

/// A burn `Checkpointer` writing `<name>-<epoch>.bpk` atomically.
pub(crate) struct AtomicCheckpointer {
    dir: PathBuf,
    name: &'static str,
}

impl AtomicCheckpointer {
    pub(crate) fn new(run_dir: &Path, name: &'static str) -> Self {
        Self {
            dir: checkpoint_dir(run_dir),
            name,
        }
    }

    fn path(&self, epoch: usize) -> PathBuf {
        self.dir.join(format!("{}-{epoch}.bpk", self.name))
    }
}

impl<R: Checkpoint> Checkpointer<R> for AtomicCheckpointer {
    fn save(&self, epoch: usize, record: R) -> Result<(), CheckpointerError> {
        let bytes = record
            .checkpoint_into_bytes()
            .map_err(CheckpointerError::Record)?;
        std::fs::create_dir_all(&self.dir).map_err(CheckpointerError::IOError)?;
        write_atomic(&self.path(epoch), &bytes).map_err(CheckpointerError::IOError)
    }

    fn delete(&self, epoch: usize) -> Result<(), CheckpointerError> {
        match std::fs::remove_file(self.path(epoch)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(CheckpointerError::IOError(e))
            }
            _ => Ok(()),
        }
    }

    fn restore(&self, epoch: usize) -> Result<R, CheckpointerError> {
        R::load(self.path(epoch))
    }
}

/// The best epoch so far by the monitored value.
#[derive(Clone, Debug, Default)]
pub(crate) struct Best {
    pub epoch: Option<usize>,
    pub value: Option<f64>,
}

impl Best {
    fn observe(&mut self, monitor: Monitor, min_delta: f64, epoch: usize, value: f64) {
        if monitor.improves(value, self.value, min_delta) {
            self.epoch = Some(epoch);
            self.value = Some(value);
        }
    }
}

fn value_of(shared: &Shared, monitor: Monitor, epoch: usize) -> f64 {
    shared
        .history
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|m| m.epoch == epoch)
        .map_or(f64::NAN, |m| monitor.value(m))
}

/// Checkpointing strategy: save every epoch; keep the last two and the best.
#[derive(Clone)]
pub(crate) struct Keeper {
    shared: Shared,
    monitor: Monitor,
    min_delta: f64,
    best: Arc<Mutex<Best>>,
    saved: Vec<usize>,
}

impl CheckpointingStrategy for Keeper {
    fn checkpointing(
        &mut self,
        epoch: usize,
        _store: &EventStoreClient,
    ) -> Vec<CheckpointingAction> {
        let value = value_of(&self.shared, self.monitor, epoch);
        let best = {
            let mut best = self.best.lock().unwrap_or_else(|e| e.into_inner());
            best.observe(self.monitor, self.min_delta, epoch, value);
            best.epoch
        };
        self.saved.push(epoch);
        let mut actions = vec![CheckpointingAction::Save];
        let recent: Vec<usize> = self.saved.iter().rev().take(2).copied().collect();
        self.saved.retain(|&e| {
            let keep = recent.contains(&e) || Some(e) == best;
            if !keep {
                actions.push(CheckpointingAction::Delete(e));
            }
            keep
        });
        actions
    }
}

/// End-of-epoch hook: reduce-on-plateau and early stopping.
#[derive(Clone)]
pub(crate) struct EpochEnd {
    shared: Shared,
    monitor: Monitor,
    best: Arc<Mutex<Best>>,
    early: Option<EarlyStopping>,
    plateau: Option<PlateauTracker>,
    stopped_at: Arc<Mutex<Option<usize>>>,
    pause_after: Option<usize>,
    paused_at: Arc<Mutex<Option<usize>>>,
    quiet: bool,
}

impl EarlyStoppingStrategy for EpochEnd {
    fn should_stop(&mut self, epoch: usize, _store: &EventStoreClient) -> bool {
        let value = value_of(&self.shared, self.monitor, epoch);
        if let Some(plateau) = &self.plateau
            && plateau.observe(value)
            && !self.quiet
        {
            println!(
                "reduce-on-plateau: no improvement of the {:?} for a while, learning rate reduced ({} reductions)",
                self.monitor,
                plateau.reductions()
            );
        }
        if self.pause_after == Some(epoch) {
            *self.paused_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(epoch);
            return true;
        }
        let Some(early) = &self.early else {
            return false;
        };
        let best = self.best.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let since = epoch - best.epoch.unwrap_or(0);
        if since >= early.patience {
            *self.stopped_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(epoch);
            if !self.quiet {
                println!(
                    "early stopping at epoch {epoch}: no improvement of the {:?} by more than {} for {} epochs (best: epoch {})",
                    self.monitor,
                    early.min_delta,
                    early.patience,
                    best.epoch.unwrap_or(0)
                );
            }
            return true;
        }
        false
    }
}

/// How a run is driven beyond the learner: what to watch, when to stop, where it resumes.
pub(crate) struct FitPlan {
    pub epochs: usize,
    pub monitor: Monitor,
    pub early_stopping: Option<EarlyStopping>,
    pub plateau: Option<PlateauTracker>,
    pub resume: Option<Resume>,
    pub quiet: bool,
    pub pause_after: Option<usize>,
}

/// Where a resumed run starts.
#[derive(Clone, Debug)]
pub(crate) struct Resume {
    /// The last complete checkpoint.
    pub epoch: usize,
    /// Metrics of epochs `1..=epoch`.
    pub history: Vec<EpochMetrics>,
    /// Checkpoint epochs on disk.
    pub saved: Vec<usize>,
}

/// A trained task and its history (what [`fit`](crate::fit()) returns).
#[derive(Debug)]
pub struct Fitted<T> {
    /// The final task: the best epoch's weights when early stopping restores them, else the
    /// last epoch's. Its parameters come back as burn-train returns them, without gradient
    /// tracking: call `.train()` on it to train it further (e.g. fine-tune it in another
    /// [`fit`](crate::fit())).
    pub task: T,
    /// Per-epoch metrics (including the epochs before a resume).
    pub epochs: Vec<EpochMetrics>,
    /// Wall-clock seconds of training (this session).
    pub seconds: f64,
    /// Best epoch by the monitored value.
    pub best_epoch: Option<usize>,
    /// Epoch at which early stopping ended the run.
    pub stopped_early_at: Option<usize>,
    /// Epoch whose weights the returned task holds.
    pub model_epoch: usize,
    /// The checkpoint epoch this session resumed from.
    pub resumed_from: Option<usize>,
}

/// Runs burn-train's `SupervisedTraining` with loss, accuracy and learning-rate metrics,
/// Kiln's renderer, atomic checkpoints, the end-of-epoch hook, and the divergence watch.
pub(crate) fn launch<T: Task>(
    learner: Learner<Stepper<T>>,
    train: Arc<dyn DataLoader<T::Batch>>,
    valid: Arc<dyn DataLoader<T::Batch>>,
    run_dir: &Path,
    plan: FitPlan,
) -> Result<Fitted<T>> {
    let min_delta = plan.early_stopping.as_ref().map_or(0.0, |e| e.min_delta);
    let resumed_from = plan.resume.as_ref().map(|r| r.epoch);
    let (history, saved) = match &plan.resume {
        Some(r) => (r.history.clone(), r.saved.clone()),
        None => {
            // A fresh run never inherits another run's checkpoints.
            let dir = checkpoint_dir(run_dir);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(crate::error::io(&dir))?;
            }
            (Vec::new(), Vec::new())
        }
    };
    let mut best = Best::default();
    for m in &history {
        best.observe(plan.monitor, min_delta, m.epoch, plan.monitor.value(m));
        if let Some(plateau) = &plan.plateau {
            plateau.observe(plan.monitor.value(m));
        }
    }
    let best = Arc::new(Mutex::new(best));
    let shared = Shared::with_history(history);
    let interrupter = Interrupter::new();
    let stopped_at = Arc::new(Mutex::new(None));
    let paused_at = Arc::new(Mutex::new(None));

    let keeper = Keeper {
        shared: shared.clone(),
        monitor: plan.monitor,
        min_delta,
        best: best.clone(),
        saved,
    };
    let epoch_end = EpochEnd {
        shared: shared.clone(),
        monitor: plan.monitor,
        best: best.clone(),
        early: plan.early_stopping.clone(),
        plateau: plan.plateau.clone(),
        stopped_at: stopped_at.clone(),
        pause_after: plan.pause_after,
        paused_at: paused_at.clone(),
        quiet: plan.quiet,
    };
    let training = SupervisedTraining::new(run_dir.join("logs"), train, valid)
        .num_epochs(plan.epochs)
        .metric_train_numeric(LossMetric::new())
        .metric_valid_numeric(LossMetric::new());
    let mut training = <T::Output as TaskOutput>::register(training)
        .metric_train_numeric(LearningRateMetric::new())
        .with_metric_logger(InMemoryMetricLogger::new())
        .with_application_logger(None)
        .with_interrupter(interrupter.clone())
        .with_custom_checkpointers(
            AtomicCheckpointer::new(run_dir, RECORDS[0]),
            AtomicCheckpointer::new(run_dir, RECORDS[1]),
            AtomicCheckpointer::new(run_dir, RECORDS[2]),
        )
        .with_checkpointing_strategy(keeper)
        .early_stopping(epoch_end)
        .renderer(Box::new(KilnRenderer::new(
            plan.quiet,
            shared.clone(),
            interrupter,
            Some(run_dir.join("metrics.csv")),
        )));
    if let Some(resume) = &plan.resume {
        training = training.checkpoint(resume.epoch);
    }
    let started = Instant::now();
    let result = training.launch(learner);
    let seconds = started.elapsed().as_secs_f64();

    let last_good = complete_checkpoints(run_dir).last().copied();
    if let Some(d) = shared.divergence() {
        return Err(Error::Diverged {
            split: "train".into(),
            epoch: d.epoch,
            step: Some(d.step),
            value: d.value,
            checkpoint: last_good.map(|e| checkpoint_file(run_dir, "model", e)),
        });
    }
    if let Some(error) = result.error {
        return Err(Error::Training(error.to_string()));
    }
    if let Some(epoch) = *paused_at.lock().unwrap_or_else(|e| e.into_inner()) {
        return Err(Error::Paused {
            epoch,
            run_dir: run_dir.to_path_buf(),
        });
    }
    let epochs = shared.history();
    let Some(last) = epochs.last() else {
        return Err(Error::Training("no epoch finished".into()));
    };
    for m in &epochs {
        if !m.valid_loss.is_finite() {
            return Err(Error::Diverged {
                split: "valid".into(),
                epoch: m.epoch,
                step: None,
                value: m.valid_loss,
                checkpoint: last_good.map(|e| checkpoint_file(run_dir, "model", e)),
            });
        }
    }
    let best_epoch = best.lock().unwrap_or_else(|e| e.into_inner()).epoch;
    let stopped_early_at = *stopped_at.lock().unwrap_or_else(|e| e.into_inner());
    let mut model = result.model;
    let mut model_epoch = last.epoch;
    let restore = plan.early_stopping.as_ref().is_some_and(|e| e.restore_best);
    if restore
        && let Some(best) = best_epoch
        && best != last.epoch
    {
        let path = checkpoint_file(run_dir, "model", best);
        model = crate::files::load_weights_eagerly(model, &path)?;
        model_epoch = best;
        if !plan.quiet {
            println!("restored the weights of the best epoch, {best}");
        }
    }
    Ok(Fitted {
        task: model.task,
        epochs,
        seconds,
        best_epoch,
        stopped_early_at,
        model_epoch,
        resumed_from,
    })
}

/// Loads the three records of checkpoint `epoch`, so that a corrupt or truncated file is an
/// error naming it rather than a panic inside burn-train.
pub(crate) fn check_checkpoint(run_dir: &Path, epoch: usize) -> Result<()> {
    let fail = |record: &str, reason: String| Error::Weights {
        path: checkpoint_file(run_dir, record, epoch),
        reason,
    };
    ModuleRecord::load(checkpoint_file(run_dir, "model", epoch))
        .map_err(|e| fail("model", e.to_string()))?;
    burn::optim::OptimizerRecord::load(checkpoint_file(run_dir, "optim", epoch))
        .map_err(|e| fail("optim", e.to_string()))?;
    burn::lr_scheduler::LrSchedulerRecord::load(checkpoint_file(run_dir, "scheduler", epoch))
        .map_err(|e| fail("scheduler", e.to_string()))?;
    Ok(())
}

/// The two data loaders of a run. Training batches come in the seeded order of each epoch
/// (`EpochShuffled`) from one worker thread (so the order is exact), the device generator
/// reseeded from (seed, epoch) as each epoch starts; validation batches come in order.
#[allow(clippy::too_many_arguments)]
pub(crate) fn loaders<I, O>(
    train_batcher: impl Batcher<I, O> + 'static,
    valid_batcher: impl Batcher<I, O> + 'static,
    train: impl Dataset<I> + 'static,
    valid: impl Dataset<I> + 'static,
    batch_size: usize,
    seed: Seed,
    epochs: EpochCounter,
    device: &Device,
) -> (Arc<dyn DataLoader<O>>, Arc<dyn DataLoader<O>>)
where
    I: Send + Sync + Clone + std::fmt::Debug + 'static,
    O: Send + Clone + std::fmt::Debug + 'static,
{
    let train = EpochLoader::reseeding(
        DataLoaderBuilder::new(train_batcher)
            .batch_size(batch_size)
            .num_workers(1)
            .set_device(device.clone())
            .build(EpochShuffled::new(train, seed, epochs.clone())),
        epochs,
        seed,
        device.clone(),
    );
    let valid = DataLoaderBuilder::new(valid_batcher)
        .batch_size(batch_size)
        .num_workers(1)
        .set_device(device.clone())
        .build(valid);
    (train, valid)
}
