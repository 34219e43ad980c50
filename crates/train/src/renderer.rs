//! A compact renderer for burn-train: one line per epoch with train and validation loss and
//! accuracy, and the per-epoch values kept for `metrics.csv`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::train::logger::{EvaluationProgressLogger, TrainingProgressLogger};
use burn::train::metric::{MetricDefinition, MetricId, NumericEntry};
use burn::train::renderer::{
    EvaluationName, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining,
};
use serde::{Deserialize, Serialize};

/// Metrics of one epoch (accuracies as fractions in 0..=1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Training accuracy.
    pub train_accuracy: f64,
    /// Mean validation loss.
    pub valid_loss: f64,
    /// Validation accuracy.
    pub valid_accuracy: f64,
    /// Wall-clock seconds of the epoch (train and validation).
    pub seconds: f64,
    /// Learning rate of the epoch.
    #[serde(default)]
    pub lr: f64,
}

#[derive(Default)]
struct Current {
    train: HashMap<String, f64>,
    valid: HashMap<String, f64>,
}

pub(crate) struct KilnRenderer {
    learning_rates: Vec<f64>,
    quiet: bool,
    total_epochs: usize,
    names: HashMap<MetricId, String>,
    current: Current,
    started: Instant,
    history: Arc<Mutex<Vec<EpochMetrics>>>,
}

impl KilnRenderer {
    pub(crate) fn new(
        quiet: bool,
        history: Arc<Mutex<Vec<EpochMetrics>>>,
        learning_rates: Vec<f64>,
    ) -> Self {
        Self {
            learning_rates,
            quiet,
            total_epochs: 0,
            names: HashMap::new(),
            current: Current::default(),
            started: Instant::now(),
            history,
        }
    }

    fn record(&mut self, state: MetricState, valid: bool) {
        if let MetricState::Numeric(entry, Some(NumericEntry::Final(value))) = state {
            let name = self
                .names
                .get(&entry.metric_id)
                .cloned()
                .unwrap_or_default();
            let map = if valid {
                &mut self.current.valid
            } else {
                &mut self.current.train
            };
            map.insert(name, value);
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
        Ok(())
    }
}

impl TrainingProgressLogger for KilnRenderer {
    fn start(
        &mut self,
        total_epochs: usize,
        _starting_epoch: usize,
        _total_items: Option<usize>,
        _label: Option<&str>,
    ) {
        self.total_epochs = total_epochs;
        self.started = Instant::now();
    }

    fn update_epoch(&mut self, epoch: usize) {
        let current = std::mem::take(&mut self.current);
        let metrics = EpochMetrics {
            epoch,
            train_loss: get(&current.train, "Loss"),
            train_accuracy: get(&current.train, "Accuracy") / 100.0,
            valid_loss: get(&current.valid, "Loss"),
            valid_accuracy: get(&current.valid, "Accuracy") / 100.0,
            seconds: self.started.elapsed().as_secs_f64(),
            lr: self
                .learning_rates
                .get(epoch.saturating_sub(1))
                .copied()
                .unwrap_or(f64::NAN),
        };
        self.started = Instant::now();
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
        self.history.lock().expect("history lock").push(metrics);
    }

    fn start_split(&mut self, _split: &str, _total_items: usize) {}
    fn update_split(&mut self, _items_processed: usize) {}
    fn end_split(&mut self) {}
    fn end(&mut self) {}
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
