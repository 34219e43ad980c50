//! Kiln's renderer for burn-train: a progress bar per split with ETA and live loss/accuracy,
//! one line per epoch, the per-epoch values kept for `metrics.csv` (rewritten atomically after
//! every epoch), and the divergence watch: a NaN or infinite training loss stops the run
//! through burn's `Interrupter`, naming the epoch and step.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::EpochMetrics;
use burn::train::Interrupter;
use burn::train::logger::{EvaluationProgressLogger, TrainingProgressLogger};
use burn::train::metric::{MetricDefinition, MetricId, NumericEntry};
use burn::train::renderer::{
    EvaluationName, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where a run diverged.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Divergence {
    pub epoch: usize,
    pub step: usize,
    pub value: f64,
}

/// State shared between the renderer (on burn's event thread) and the training loop.
#[derive(Clone, Default)]
pub(crate) struct Shared {
    pub history: Arc<Mutex<Vec<EpochMetrics>>>,
    pub divergence: Arc<Mutex<Option<Divergence>>>,
}

impl Shared {
    pub(crate) fn with_history(history: Vec<EpochMetrics>) -> Self {
        Self {
            history: Arc::new(Mutex::new(history)),
            divergence: Arc::default(),
        }
    }

    pub(crate) fn history(&self) -> Vec<EpochMetrics> {
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn divergence(&self) -> Option<Divergence> {
        self.divergence
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[derive(Default)]
struct Running {
    sum: f64,
    count: usize,
    last: f64,
}

#[derive(Default)]
struct Split {
    finals: HashMap<String, f64>,
    running: HashMap<String, Running>,
    steps: usize,
}

pub(crate) struct KilnRenderer {
    quiet: bool,
    total_epochs: usize,
    epoch: usize,
    names: HashMap<MetricId, String>,
    train: Split,
    valid: Split,
    in_valid: bool,
    started: Instant,
    shared: Shared,
    interrupter: Interrupter,
    metrics_csv: Option<PathBuf>,
    bar: Option<ProgressBar>,
}

impl KilnRenderer {
    pub(crate) fn new(
        quiet: bool,
        shared: Shared,
        interrupter: Interrupter,
        metrics_csv: Option<PathBuf>,
    ) -> Self {
        Self {
            quiet,
            total_epochs: 0,
            epoch: 1,
            names: HashMap::new(),
            train: Split::default(),
            valid: Split::default(),
            in_valid: false,
            started: Instant::now(),
            shared,
            interrupter,
            metrics_csv,
            bar: None,
        }
    }

    fn record(&mut self, state: MetricState, valid: bool) {
        let MetricState::Numeric(entry, Some(value)) = state else {
            return;
        };
        let name = self
            .names
            .get(&entry.metric_id)
            .cloned()
            .unwrap_or_default();
        let split = if valid {
            &mut self.valid
        } else {
            &mut self.train
        };
        match value {
            NumericEntry::Final(v) => {
                split.finals.insert(name, v);
            }
            NumericEntry::Value(v) => self.update_running(name, v, 1, valid),
            NumericEntry::Aggregated {
                aggregated_value,
                count,
            } => self.update_running(name, aggregated_value, count, valid),
        }
    }

    fn update_running(&mut self, name: String, value: f64, count: usize, valid: bool) {
        let split = if valid {
            &mut self.valid
        } else {
            &mut self.train
        };
        if name == "Loss" {
            split.steps += 1;
            if !valid && !value.is_finite() {
                let step = split.steps;
                self.diverged(step, value);
            }
        }
        let split = if valid {
            &mut self.valid
        } else {
            &mut self.train
        };
        let running = split.running.entry(name).or_default();
        running.sum += value * count as f64;
        running.count += count;
        running.last = value;
        if let Some(bar) = &self.bar {
            let mean = |n: &str| {
                split
                    .running
                    .get(n)
                    .filter(|r| r.count > 0)
                    .map(|r| r.sum / r.count as f64)
            };
            let mut msg = String::new();
            if let Some(loss) = mean("Loss") {
                msg.push_str(&format!("loss {loss:.4}"));
            }
            if let Some(acc) = mean("Accuracy") {
                msg.push_str(&format!("  acc {acc:.2}%"));
            }
            bar.set_message(msg);
        }
    }

    fn diverged(&mut self, step: usize, value: f64) {
        let mut slot = self
            .shared
            .divergence
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(Divergence {
                epoch: self.epoch,
                step,
                value,
            });
            self.interrupter.stop(Some(&format!(
                "the training loss is {value} at epoch {}, step {step}",
                self.epoch
            )));
        }
    }

    fn finish_bar(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

fn get(map: &HashMap<String, f64>, name: &str) -> f64 {
    map.get(name).copied().unwrap_or(f64::NAN)
}

impl MetricsRendererTraining for KilnRenderer {
    fn update_train(&mut self, state: MetricState) {
        self.record(state, false);
    }

    fn update_valid(&mut self, state: MetricState) {
        self.record(state, true);
    }

    fn on_train_end(
        &mut self,
        _summary: Option<burn::train::LearnerSummary>,
    ) -> Result<(), Box<dyn core::error::Error>> {
        self.finish_bar();
        Ok(())
    }
}

impl TrainingProgressLogger for KilnRenderer {
    fn start(
        &mut self,
        total_epochs: usize,
        starting_epoch: usize,
        _total_items: Option<usize>,
        _label: Option<&str>,
    ) {
        self.total_epochs = total_epochs;
        self.epoch = starting_epoch.max(1);
        self.started = Instant::now();
        if !self.quiet && starting_epoch > 1 {
            println!(
                "resuming at epoch {starting_epoch}/{total_epochs} from the checkpoint of epoch {}",
                starting_epoch - 1
            );
        }
    }

    fn update_epoch(&mut self, epoch: usize) {
        self.finish_bar();
        let train = std::mem::take(&mut self.train);
        let valid = std::mem::take(&mut self.valid);
        let metrics = EpochMetrics {
            epoch,
            train_loss: get(&train.finals, "Loss"),
            train_accuracy: get(&train.finals, "Accuracy") / 100.0,
            valid_loss: get(&valid.finals, "Loss"),
            valid_accuracy: get(&valid.finals, "Accuracy") / 100.0,
            seconds: self.started.elapsed().as_secs_f64(),
            // The rate of the epoch's last step (exact; the epoch mean could be off by an ulp).
            lr: train
                .running
                .get("Learning Rate")
                .map_or(f64::NAN, |r| r.last),
        };
        self.started = Instant::now();
        self.epoch = epoch + 1;
        if !self.quiet {
            let width = self.total_epochs.to_string().len();
            println!(
                "epoch {:>width$}/{}  lr {:.3e}  train loss {:.4} acc {:6.2}%  valid loss {:.4} acc {:6.2}%  ({:.2}s)",
                metrics.epoch,
                self.total_epochs,
                metrics.lr,
                metrics.train_loss,
                100.0 * metrics.train_accuracy,
                metrics.valid_loss,
                100.0 * metrics.valid_accuracy,
                metrics.seconds,
            );
        }
        let mut history = self
            .shared
            .history
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        history.retain(|m| m.epoch < epoch);
        history.push(metrics);
        if let Some(path) = &self.metrics_csv
            && let Err(err) = crate::files::write_metrics_csv(path, &history)
        {
            self.interrupter
                .fail(burn::train::TrainingError::Checkpoint(
                    burn::train::checkpoint::CheckpointerError::Unknown(err.to_string()),
                ));
        }
    }

    fn start_split(&mut self, split: &str, total_items: usize) {
        self.finish_bar();
        self.in_valid = split.to_ascii_lowercase().contains("valid");
        if self.quiet {
            return;
        }
        let bar = ProgressBar::with_draw_target(
            Some(total_items as u64),
            ProgressDrawTarget::stderr_with_hz(4),
        );
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta}) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        let name = if self.in_valid { "valid" } else { "train" };
        bar.set_prefix(format!("epoch {}/{} {name}", self.epoch, self.total_epochs));
        bar.enable_steady_tick(Duration::from_millis(500));
        self.bar = Some(bar);
    }

    fn update_split(&mut self, items_processed: usize) {
        if let Some(bar) = &self.bar {
            bar.set_position(items_processed as u64);
        }
    }

    fn end_split(&mut self) {
        self.finish_bar();
    }

    fn end(&mut self) {
        self.finish_bar();
    }

    fn log_event_training(&mut self, _event: String) {}
}

impl EvaluationProgressLogger for KilnRenderer {
    fn start_global_progress(&mut self, _total_tests: usize) {}
    fn start_test(&mut self, _name: &str, _total_items: usize) {}
    fn update_test_progress(&mut self, _items_processed: usize) {}
    fn end_test(&mut self) {}
    fn end_global_progress(&mut self) {}
    fn log_event_evaluation(&mut self, _event: String) {}
}

impl MetricsRendererEvaluation for KilnRenderer {
    fn update_test(&mut self, _name: EvaluationName, _state: MetricState) {}
}

impl MetricsRenderer for KilnRenderer {
    fn manual_close(&mut self) {}

    fn register_metric(&mut self, definition: MetricDefinition) {
        self.names
            .insert(definition.metric_id.clone(), definition.name.to_string());
    }
}
