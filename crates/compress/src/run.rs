//! Pruning a trained run: one shot, or iteratively with fine-tuning between steps (Han et al.
//! 2015's prune → retrain loop, with Zhu & Gupta's gradual sparsity schedule), writing run
//! folders that `kiln eval` / `predict` understand.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use kiln_train::{FineTune, TrainConfig, TrainOptions};

use crate::prune::{Scope, SparsityReport, gradual_sparsity, prune_magnitude, sparsity_report};
use crate::structured::{Norm, prune_structured};
use crate::{Error, Result};

/// What is pruned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Individual weights with the smallest magnitudes (zeros in dense tensors).
    #[default]
    Magnitude,
    /// Whole convolution channels, dense neurons and ViT attention heads with the smallest L1
    /// norms, removed from the layers (`sparsity` is then the fraction of each removed).
    Structured,
    /// As `Structured`, scored by L2 norm.
    StructuredL2,
}

/// How to prune a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneConfig {
    /// What is pruned.
    #[serde(default)]
    pub method: Method,
    /// Final fraction of the prunable weights set to zero (magnitude) or of the channels,
    /// neurons and heads removed (structured), in [0, 1).
    pub sparsity: f64,
    /// Per-layer or global threshold.
    #[serde(default)]
    pub scope: Scope,
    /// Pruning steps (the sparsity rises along Zhu & Gupta's cubic schedule); 1 = one shot.
    pub iterations: usize,
    /// Fine-tuning epochs after each step (0: prune only).
    pub finetune_epochs: usize,
    /// Fine-tuning learning rate (default: a tenth of the run's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Only the layers under these paths (e.g. `Mlp.hidden.0`); all prunable layers if empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
}

impl PruneConfig {
    /// One-shot pruning to `sparsity`, no fine-tuning.
    pub fn one_shot(sparsity: f64, scope: Scope) -> Self {
        Self {
            method: Method::Magnitude,
            sparsity,
            scope,
            iterations: 1,
            finetune_epochs: 0,
            lr: None,
            layers: Vec::new(),
        }
    }

    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.sparsity) {
            return Err(Error::Invalid(format!(
                "sparsity must be in [0, 1) (the fraction of weights set to zero), found {}",
                self.sparsity
            )));
        }
        if self.iterations == 0 {
            return Err(Error::Invalid("iterations must be at least 1".into()));
        }
        if self.method != Method::Magnitude && self.scope == Scope::Global {
            return Err(Error::Invalid(
                "a global threshold applies to magnitude pruning only: structured pruning removes the same fraction of every block's channels, neurons and heads (drop --global)".into(),
            ));
        }
        if let Some(lr) = self.lr
            && !(lr.is_finite() && lr > 0.0)
        {
            return Err(Error::Invalid(format!(
                "the fine-tuning rate must be > 0, found {lr}"
            )));
        }
        Ok(())
    }
}

/// One pruning step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PruneStep {
    /// 1-based step.
    pub step: usize,
    /// Sparsity this step prunes to.
    pub target: f64,
    /// Test accuracy right after pruning.
    pub pruned_accuracy: f64,
    /// Test accuracy after the step's fine-tuning (when it had any).
    pub finetuned_accuracy: Option<f64>,
    /// The step's run folder (the fine-tuned one when it had fine-tuning).
    pub run_dir: PathBuf,
}

/// What pruning a run measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PruneReport {
    /// The dense run.
    pub from: PathBuf,
    /// Its test accuracy.
    pub dense_accuracy: f64,
    /// The steps.
    pub steps: Vec<PruneStep>,
    /// Test accuracy of the final model (the run folder `out`).
    pub accuracy: f64,
    /// Parameters of the dense model.
    pub dense_params: usize,
    /// Parameters of the final model (structured pruning removes them; magnitude pruning
    /// zeroes them, see `sparsity`).
    pub params: usize,
    /// Size of the dense run's `model.bpk` in bytes.
    pub dense_bytes: u64,
    /// Size of the final `model.bpk` in bytes.
    pub bytes: u64,
    /// Inference samples/s of the dense model (batch 256, this machine, median of 10).
    pub dense_samples_per_sec: f64,
    /// Inference samples/s of the final model, measured right after the dense one.
    pub samples_per_sec: f64,
    /// Zeros per layer of the final model.
    pub sparsity: SparsityReport,
    /// The configuration.
    pub config: PruneConfig,
}

impl PruneReport {
    /// Test error change in percentage points (positive: the pruned model errs more).
    pub fn error_increase_points(&self) -> f64 {
        100.0 * (self.dense_accuracy - self.accuracy)
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("reports serialise");
    std::fs::write(path, text).map_err(|e| Error::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Prunes the model of `run_dir` as `config` says and writes the result as a run folder
/// `out` (with `prune.json`, the [`PruneReport`]); each step's run folder is `out/step-N`
/// (pruned) and `out/step-N-finetuned`. Fine-tuning keeps the run's dataset, batch size,
/// subset and augmentation, starts a fresh optimizer and masks the gradients of pruned
/// weights, so they stay zero. It trains on the labels alone: a distilled run's teacher is
/// not consulted again (the same rule as [`crate::quantize_run`]'s QAT).
pub fn prune_run(
    run_dir: &Path,
    out: &Path,
    config: &PruneConfig,
    options: &TrainOptions,
) -> Result<PruneReport> {
    config.validate()?;
    let spec = TrainConfig::load(&run_dir.join("config.toml"))?;
    let device = spec.recipe.device.device();
    let (run_config, normalizer, mut model) = kiln_train::load_run(run_dir, &device)?;
    let data_dir = options.data_dir.as_deref();
    let dense_accuracy = kiln_train::evaluate_run_in(run_dir, data_dir)?.accuracy;
    let dense_params = burn::module::Module::num_params(&model);
    let dense_model = model.clone();
    let mut current = run_config.clone();
    let mut steps = Vec::with_capacity(config.iterations);
    let mut removed = 0.0;
    for step in 1..=config.iterations {
        let target = gradual_sparsity(config.sparsity, step, config.iterations);
        model = match config.method {
            Method::Magnitude => prune_magnitude(model, target, config.scope, &config.layers)?,
            Method::Structured | Method::StructuredL2 => {
                if !config.layers.is_empty() {
                    return Err(Error::Invalid(
                        "structured pruning prunes every block and hidden layer; --layer applies to magnitude pruning".into(),
                    ));
                }
                let norm = if config.method == Method::Structured {
                    Norm::L1
                } else {
                    Norm::L2
                };
                // This step's fraction of what is left, so that `target` of the original
                // channels are gone.
                let fraction = 1.0 - (1.0 - target) / (1.0 - removed);
                let (smaller, model_config) =
                    prune_structured(model, &current.model, fraction, norm, &device)?;
                current.model = model_config;
                smaller
            }
        };
        removed = target;
        let pruned_dir = out.join(format!("step-{step}"));
        kiln_train::save_run(&pruned_dir, &current, &normalizer, &model)?;
        let pruned_accuracy = kiln_train::evaluate_run_in(&pruned_dir, data_dir)?.accuracy;
        let (finetuned_accuracy, step_dir) = if config.finetune_epochs > 0 {
            let tuned_dir = out.join(format!("step-{step}-finetuned"));
            let tune = TrainConfig {
                recipe: kiln_train::Recipe {
                    epochs: config.finetune_epochs,
                    lr: config.lr.unwrap_or(run_config.recipe.lr / 10.0),
                    early_stopping: None,
                    plateau: None,
                    keep_pruned: true,
                    ..current.recipe.clone()
                },
                distill: None,
                finetune: Some(FineTune {
                    new_head: false,
                    ..FineTune::full(&pruned_dir, 1.0)
                }),
                ..current.clone()
            };
            let report = kiln_train::train(&tune, &tuned_dir, options)?;
            model = kiln_train::load_run(&tuned_dir, &device)?.2;
            (Some(report.test.accuracy), tuned_dir)
        } else {
            (None, pruned_dir)
        };
        steps.push(PruneStep {
            step,
            target,
            pruned_accuracy,
            finetuned_accuracy,
            run_dir: step_dir,
        });
    }
    kiln_train::save_run(out, &current, &normalizer, &model)?;
    let accuracy = kiln_train::evaluate_run_in(out, data_dir)?.accuracy;
    let input = kiln_train::run_input_shape(&current, &normalizer)?;
    let bytes = |dir: &Path| std::fs::metadata(dir.join("model.bpk")).map_or(0, |m| m.len());
    let report = PruneReport {
        from: run_dir.to_path_buf(),
        dense_accuracy,
        steps,
        accuracy,
        dense_params,
        params: burn::module::Module::num_params(&model),
        dense_bytes: bytes(run_dir),
        bytes: bytes(out),
        dense_samples_per_sec: crate::speed::inference_throughput(&dense_model, input, &device),
        samples_per_sec: crate::speed::inference_throughput(&model, input, &device),
        sparsity: sparsity_report(&model)?,
        config: config.clone(),
    };
    write_json(&out.join("prune.json"), &report)?;
    Ok(report)
}
