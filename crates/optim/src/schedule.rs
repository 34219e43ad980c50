//! Per-epoch learning-rate schedules, run by burn's `Learner` as an `LrScheduler`.

use std::sync::{Arc, Mutex};

use burn::lr_scheduler::{LrScheduler, LrSchedulerRecord};
use burn::optim::LearningRate;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How the learning rate changes from epoch to epoch (epochs counted from 0; `base` is the
/// configured learning rate, `total` the number of epochs).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Schedule {
    /// `base` throughout.
    #[default]
    Constant,
    /// `base · γ^⌊epoch / every⌋` (PyTorch `StepLR`).
    Step {
        /// Epochs between decays.
        every: usize,
        /// Decay factor.
        gamma: f64,
    },
    /// `base · γ^epoch` (PyTorch `ExponentialLR`).
    Exponential {
        /// Decay factor per epoch.
        gamma: f64,
    },
    /// Cosine annealing from `base` to `min_lr` over all epochs (PyTorch
    /// `CosineAnnealingLR` with `T_max` = epochs): `min + (base − min)·(1 + cos(π·e/total))/2`.
    Cosine {
        /// Final learning rate.
        #[serde(default)]
        min_lr: f64,
    },
    /// Linear warm-up from `base / (warmup + 1)` to `base` over `warmup` epochs, then cosine
    /// annealing to `min_lr` over the remaining epochs.
    WarmupCosine {
        /// Warm-up epochs.
        warmup: usize,
        /// Final learning rate.
        #[serde(default)]
        min_lr: f64,
    },
}

impl Schedule {
    /// Parses a command-line spec: `constant`, `step:EVERY:GAMMA`, `exp:GAMMA`,
    /// `cosine[:MIN]`, `warmup-cosine:WARMUP[:MIN]`.
    pub fn parse(spec: &str) -> Result<Self> {
        let parts: Vec<&str> = spec.split(':').map(str::trim).collect();
        let bad = || {
            Error::Invalid(format!(
                "schedule `{spec}`: expected constant, step:EVERY:GAMMA, exp:GAMMA, cosine[:MIN] or warmup-cosine:WARMUP[:MIN]"
            ))
        };
        let num =
            |i: usize| -> Result<f64> { parts.get(i).and_then(|v| v.parse().ok()).ok_or_else(bad) };
        let int = |i: usize| -> Result<usize> {
            parts.get(i).and_then(|v| v.parse().ok()).ok_or_else(bad)
        };
        let min = |i: usize| -> Result<f64> { if parts.len() > i { num(i) } else { Ok(0.0) } };
        let schedule = match parts[0] {
            "constant" if parts.len() == 1 => Schedule::Constant,
            "step" if parts.len() == 3 => Schedule::Step {
                every: int(1)?,
                gamma: num(2)?,
            },
            "exp" | "exponential" if parts.len() == 2 => Schedule::Exponential { gamma: num(1)? },
            "cosine" if parts.len() <= 2 => Schedule::Cosine { min_lr: min(1)? },
            "warmup-cosine" if (2..=3).contains(&parts.len()) => Schedule::WarmupCosine {
                warmup: int(1)?,
                min_lr: min(2)?,
            },
            _ => return Err(bad()),
        };
        schedule.validate()?;
        Ok(schedule)
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let ok = match *self {
            Schedule::Constant => true,
            Schedule::Step { every, gamma } => every > 0 && gamma > 0.0 && gamma.is_finite(),
            Schedule::Exponential { gamma } => gamma > 0.0 && gamma.is_finite(),
            Schedule::Cosine { min_lr } | Schedule::WarmupCosine { min_lr, .. } => {
                min_lr >= 0.0 && min_lr.is_finite()
            }
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "schedule settings out of range: {self:?}"
            )))
        }
    }

    /// The learning rate of `epoch` (0-based) in a run of `total` epochs.
    pub fn lr(&self, base: f64, epoch: usize, total: usize) -> f64 {
        let cosine = |min: f64, done: usize, span: usize| {
            if span == 0 {
                return base;
            }
            let t = (done as f64 / span as f64).min(1.0);
            min + (base - min) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0
        };
        match *self {
            Schedule::Constant => base,
            Schedule::Step { every, gamma } => base * gamma.powi((epoch / every) as i32),
            Schedule::Exponential { gamma } => base * gamma.powi(epoch as i32),
            Schedule::Cosine { min_lr } => cosine(min_lr, epoch, total),
            Schedule::WarmupCosine { warmup, min_lr } => {
                if epoch < warmup {
                    base * (epoch + 1) as f64 / (warmup + 1) as f64
                } else {
                    cosine(min_lr, epoch - warmup, total.saturating_sub(warmup))
                }
            }
        }
    }
}

/// Reduce-on-plateau (PyTorch `ReduceLROnPlateau`, `threshold_mode="rel"`, no cooldown):
/// after more than `patience` epochs without the monitored validation value improving by the
/// relative `threshold`, the learning rate is multiplied by `factor`, never going below
/// `min_lr`. It composes with any [`Schedule`]: the effective rate is
/// `max(schedule(epoch) · factor^reductions, min_lr)` once a reduction happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plateau {
    /// Multiplier applied at each reduction (0 < factor < 1).
    pub factor: f64,
    /// Epochs without improvement tolerated before reducing.
    pub patience: usize,
    /// Relative improvement that counts (PyTorch's default 1e-4).
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Floor of the learning rate.
    #[serde(default)]
    pub min_lr: f64,
}

fn default_threshold() -> f64 {
    1e-4
}

impl Plateau {
    /// Parses `FACTOR:PATIENCE[:MIN_LR]`, e.g. `0.5:2`.
    pub fn parse(spec: &str) -> Result<Self> {
        let parts: Vec<&str> = spec.split(':').map(str::trim).collect();
        let bad = || {
            Error::Invalid(format!(
                "reduce-on-plateau `{spec}`: expected FACTOR:PATIENCE[:MIN_LR], e.g. 0.5:2"
            ))
        };
        if !(2..=3).contains(&parts.len()) {
            return Err(bad());
        }
        let plateau = Plateau {
            factor: parts[0].parse().map_err(|_| bad())?,
            patience: parts[1].parse().map_err(|_| bad())?,
            threshold: default_threshold(),
            min_lr: match parts.get(2) {
                Some(v) => v.parse().map_err(|_| bad())?,
                None => 0.0,
            },
        };
        plateau.validate()?;
        Ok(plateau)
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let ok = self.factor > 0.0
            && self.factor < 1.0
            && self.threshold >= 0.0
            && self.threshold.is_finite()
            && self.min_lr >= 0.0
            && self.min_lr.is_finite();
        if ok {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "reduce-on-plateau needs 0 < factor < 1, threshold ≥ 0 and min_lr ≥ 0: {self:?}"
            )))
        }
    }
}

#[derive(Clone, Debug)]
struct PlateauState {
    plateau: Plateau,
    lower_is_better: bool,
    best: Option<f64>,
    bad_epochs: usize,
    reductions: i32,
}

/// The running state of a [`Plateau`] rule, shared between the training loop (which reports
/// each epoch's monitored value with [`PlateauTracker::observe`]) and the [`EpochScheduler`]
/// (which reads the current scale). The state is a pure function of the observed values, so a
/// resumed run rebuilds it by observing the recorded values again.
#[derive(Clone, Debug)]
pub struct PlateauTracker(Arc<Mutex<PlateauState>>);

impl PlateauTracker {
    /// A tracker for `plateau` on a value where lower is better (a loss) or higher is better
    /// (an accuracy).
    pub fn new(plateau: Plateau, lower_is_better: bool) -> Self {
        Self(Arc::new(Mutex::new(PlateauState {
            plateau,
            lower_is_better,
            best: None,
            bad_epochs: 0,
            reductions: 0,
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PlateauState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one epoch's monitored value; returns true when it triggered a reduction.
    pub fn observe(&self, value: f64) -> bool {
        let mut s = self.state();
        let t = s.plateau.threshold;
        let improved = match s.best {
            None => true,
            Some(best) if s.lower_is_better => value < best * (1.0 - t),
            Some(best) => value > best * (1.0 + t),
        };
        if improved && value.is_finite() {
            s.best = Some(value);
            s.bad_epochs = 0;
            return false;
        }
        s.bad_epochs += 1;
        if s.bad_epochs > s.plateau.patience {
            s.reductions += 1;
            s.bad_epochs = 0;
            return true;
        }
        false
    }

    /// The learning rate `lr` of the base schedule after the reductions so far.
    pub fn apply(&self, lr: f64) -> f64 {
        let s = self.state();
        if s.reductions == 0 {
            lr
        } else {
            (lr * s.plateau.factor.powi(s.reductions)).max(s.plateau.min_lr)
        }
    }

    /// Number of reductions so far.
    pub fn reductions(&self) -> usize {
        self.state().reductions as usize
    }
}

/// A [`Schedule`] as burn's `LrScheduler`: burn calls `step` once per optimisation step, and
/// the learning rate changes when a new epoch of `steps_per_epoch` steps starts. Its record is
/// the step counter, so a resumed run continues the schedule.
#[derive(Clone, Debug)]
pub struct EpochScheduler {
    schedule: Schedule,
    base: f64,
    total: usize,
    steps_per_epoch: usize,
    step: usize,
    plateau: Option<PlateauTracker>,
}

impl EpochScheduler {
    /// A scheduler over `total` epochs of `steps_per_epoch` optimisation steps.
    pub fn new(schedule: Schedule, base: f64, total: usize, steps_per_epoch: usize) -> Self {
        Self {
            schedule,
            base,
            total,
            steps_per_epoch: steps_per_epoch.max(1),
            step: 0,
            plateau: None,
        }
    }

    /// Scales the schedule by a reduce-on-plateau rule.
    pub fn with_plateau(mut self, plateau: Option<PlateauTracker>) -> Self {
        self.plateau = plateau;
        self
    }

    /// The same schedule from another base learning rate (parameter groups).
    pub fn with_base(mut self, base: f64) -> Self {
        self.base = base;
        self
    }

    /// The learning rate of each epoch, for logging and reports.
    pub fn per_epoch(&self) -> Vec<f64> {
        (0..self.total)
            .map(|e| self.schedule.lr(self.base, e, self.total))
            .collect()
    }
}

impl LrScheduler for EpochScheduler {
    fn step(&mut self) -> LearningRate {
        let epoch = self.step / self.steps_per_epoch;
        self.step += 1;
        let lr = self.schedule.lr(self.base, epoch, self.total);
        match &self.plateau {
            Some(plateau) => plateau.apply(lr),
            None => lr,
        }
    }

    fn to_record(&self) -> LrSchedulerRecord {
        LrSchedulerRecord::new().with_scalar("step", self.step as u64)
    }

    fn load_record(&mut self, record: LrSchedulerRecord) {
        if let Some(step) = record.scalar::<u64>("step") {
            self.step = step as usize;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn schedules_follow_their_formulas() {
        let step = Schedule::parse("step:2:0.5").unwrap();
        let lrs: Vec<f64> = (0..5).map(|e| step.lr(0.1, e, 5)).collect();
        assert_eq!(lrs, vec![0.1, 0.1, 0.05, 0.05, 0.025]);
        let exp = Schedule::parse("exp:0.9").unwrap();
        assert!(close(exp.lr(1.0, 3, 10), 0.729));
        let cos = Schedule::parse("cosine:0.001").unwrap();
        assert!(close(cos.lr(0.1, 0, 10), 0.1));
        assert!(close(cos.lr(0.1, 5, 10), 0.001 + 0.099 * 0.5));
        assert!(close(cos.lr(0.1, 10, 10), 0.001));
        let warm = Schedule::parse("warmup-cosine:3").unwrap();
        let lrs: Vec<f64> = (0..5).map(|e| warm.lr(0.4, e, 5)).collect();
        assert!(close(lrs[0], 0.1) && close(lrs[1], 0.2) && close(lrs[2], 0.3));
        assert!(close(lrs[3], 0.4) && close(lrs[4], 0.2), "{lrs:?}");
        assert_eq!(Schedule::parse("constant").unwrap().lr(0.3, 7, 9), 0.3);
    }

    #[test]
    fn the_scheduler_changes_rate_per_epoch_and_resumes() {
        let mut s = EpochScheduler::new(
            Schedule::Step {
                every: 1,
                gamma: 0.5,
            },
            1.0,
            3,
            2,
        );
        let lrs: Vec<f64> = (0..6).map(|_| s.step()).collect();
        assert_eq!(lrs, vec![1.0, 1.0, 0.5, 0.5, 0.25, 0.25]);
        let mut fresh = EpochScheduler::new(
            Schedule::Step {
                every: 1,
                gamma: 0.5,
            },
            1.0,
            3,
            2,
        );
        let mut half = fresh.clone();
        for _ in 0..3 {
            half.step();
        }
        fresh.load_record(half.to_record());
        assert_eq!(fresh.step(), 0.5);
        assert_eq!(fresh.step(), 0.25);
        assert_eq!(s.per_epoch(), vec![1.0, 0.5, 0.25]);
    }

    #[test]
    fn bad_specs_are_errors() {
        for spec in ["step:0:0.5", "warp", "cosine:-1", "exp", "step:2"] {
            assert!(Schedule::parse(spec).is_err(), "{spec}");
        }
    }
}
