//! Language modelling: a [`CausalLm`] trained on a character corpus with burn-train, reported
//! against the unigram baseline, with a seeded sample of generated text.

use std::path::{Path, PathBuf};

use burn::data::dataloader::DataLoaderBuilder;
use burn::module::Module;
use burn::optim::lr_scheduler::constant::ConstantLr;
use burn::train::{ClassificationOutput, Learner};
use kiln_core::{DeviceSpec, Seed};
use kiln_data::text::{CharCorpus, SequenceBatch, SequenceBatcher, SequenceDataset};
use kiln_models::ModelConfig;
use kiln_models::transformer::{CausalLm, CausalLmConfig, Sampling};
use serde::{Deserialize, Serialize};

use crate::error::io;
use crate::{EpochMetrics, Error, Result, TrainOptions};

/// A causal LM trained on next-token prediction: the unit burn-train's `Learner` drives.
#[derive(Module, Debug)]
pub struct LanguageModelTask {
    /// The model being trained.
    pub model: CausalLm,
}

impl LanguageModelTask {
    /// Forward pass with the next-token cross-entropy of every position (`[batch · length]`;
    /// the step minimises their mean).
    pub fn forward_lm(&self, batch: SequenceBatch) -> ClassificationOutput {
        let logits = self.model.forward(batch.inputs);
        let [b, l, v] = logits.dims();
        let logits = logits.reshape([b * l, v]);
        let targets = batch.targets.reshape([b * l]);
        let loss = crate::task::per_sample_cross_entropy(logits.clone(), targets.clone());
        ClassificationOutput::new(loss, logits, targets)
    }
}

crate::task::supervised_steps!(LanguageModelTask, SequenceBatch, forward_lm);

/// Everything that defines a language-model run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmTrainConfig {
    /// Preset name or label.
    pub name: String,
    /// Corpus (`jane-austen`).
    pub corpus: String,
    /// Window length.
    pub seq_len: usize,
    /// Epochs.
    pub epochs: usize,
    /// Windows per batch.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Master seed.
    pub seed: u64,
    /// Device.
    pub device: DeviceSpec,
    /// Use at most this many training windows (evenly spaced over the text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_train_windows: Option<usize>,
    /// Use at most this many validation windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_valid_windows: Option<usize>,
    /// The model.
    pub model: CausalLmConfig,
}

impl LmTrainConfig {
    /// The default recipe for a causal-LM preset (e.g. `char-lm`).
    pub fn for_preset(name: &str) -> Result<Self> {
        let preset = kiln_models::preset(name)?;
        let ModelConfig::CausalLm(model) = preset.config else {
            return Err(Error::InvalidSetting(format!(
                "`{name}` is not a causal language model"
            )));
        };
        Ok(Self {
            name: name.to_string(),
            corpus: preset.dataset.to_string(),
            seq_len: model.encoder.max_len,
            epochs: 2,
            batch_size: 32,
            lr: 1e-3,
            seed: Seed::default().0,
            device: DeviceSpec::default(),
            max_train_windows: None,
            max_valid_windows: None,
            model,
        })
    }
}

/// What a finished language-model run reports (also `report.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LmReport {
    /// Run folder.
    pub run_dir: PathBuf,
    /// Per-epoch metrics (accuracy = next-character accuracy).
    pub epochs: Vec<EpochMetrics>,
    /// Final validation loss (nats per token).
    pub valid_loss: f64,
    /// `exp(valid_loss)`.
    pub valid_perplexity: f64,
    /// Validation cross-entropy of the training unigram distribution (nats per token).
    pub unigram_baseline: f64,
    /// 200 characters generated from the start of the validation text (seeded sampling,
    /// temperature 0.8, top-k 20).
    pub sample: String,
    /// Wall-clock seconds of training.
    pub train_seconds: f64,
}

/// Trains a causal LM on the configured corpus and writes a run folder (`config.toml`,
/// `vocab.json`, `model.bpk`, `metrics.csv`, `report.json`).
pub fn train_lm(
    config: &LmTrainConfig,
    run_dir: &Path,
    options: &TrainOptions,
) -> Result<LmReport> {
    config.model.validate()?;
    crate::config::check_schedule(config.epochs, config.batch_size, config.lr)?;
    if config.seq_len == 0 {
        return Err(Error::InvalidSetting(
            "sequence length must be at least 1".into(),
        ));
    }
    if config.seq_len > config.model.encoder.max_len {
        return Err(Error::InvalidSetting(format!(
            "sequence length {} exceeds the model's max_len {}",
            config.seq_len, config.model.encoder.max_len
        )));
    }
    let _turn = kiln_core::seed::exclusive_rng();
    let seed = Seed(config.seed);
    let device = config.device.autodiff_device();
    seed.apply(&device);

    let corpus = match config.corpus.as_str() {
        "jane-austen" => CharCorpus::jane_austen(&kiln_data::data_dir::resolve(None))?,
        other => {
            return Err(Error::InvalidSetting(format!(
                "unknown corpus `{other}`; available: jane-austen"
            )));
        }
    };
    if corpus.vocab.len() > config.model.encoder.vocab_size {
        return Err(Error::InvalidSetting(format!(
            "the corpus has {} distinct characters (with unknown) but the model's vocab_size is {}",
            corpus.vocab.len(),
            config.model.encoder.vocab_size
        )));
    }
    std::fs::create_dir_all(run_dir).map_err(io(run_dir))?;
    crate::run::write_toml(&run_dir.join("config.toml"), config)?;
    crate::run::write_json(&run_dir.join("vocab.json"), &corpus.vocab)?;

    let train_set = SequenceDataset::new(
        corpus.train.clone(),
        config.seq_len,
        config.max_train_windows,
    )?;
    let valid_set = SequenceDataset::new(
        corpus.valid.clone(),
        config.seq_len,
        config.max_valid_windows,
    )?;
    let train_loader = DataLoaderBuilder::new(SequenceBatcher)
        .batch_size(config.batch_size)
        .shuffle(seed.derive("shuffle"))
        .set_device(device.clone())
        .build(train_set);
    let valid_loader = DataLoaderBuilder::new(SequenceBatcher)
        .batch_size(config.batch_size)
        .set_device(device.clone())
        .build(valid_set);

    let task = LanguageModelTask {
        model: config.model.init(&device)?,
    };
    let learner = Learner::new(
        task,
        kiln_optim::OptimConfig::default().init()?,
        ConstantLr::new(config.lr),
    );
    let fitted = crate::fit::fit(
        learner,
        train_loader,
        valid_loader,
        run_dir,
        crate::fit::FitPlan::plain(config.epochs, options.quiet),
    )?;
    let (epochs, train_seconds) = (fitted.epochs, fitted.seconds);
    let last = epochs
        .last()
        .cloned()
        .expect("fit returns at least one epoch");
    let model = fitted.model.model;
    let model_path = run_dir.join("model.bpk");
    model
        .clone()
        .save_file(&model_path)
        .map_err(|e| Error::Weights {
            path: model_path.clone(),
            reason: e.to_string(),
        })?;

    let prompt: Vec<usize> = corpus.valid.iter().take(40).copied().collect();
    let generated = model.generate(
        &prompt,
        200,
        Sampling::Sample {
            temperature: 0.8,
            top_k: Some(20),
        },
        seed,
    )?;
    let report = LmReport {
        run_dir: run_dir.to_path_buf(),
        epochs: epochs.clone(),
        valid_loss: last.valid_loss,
        valid_perplexity: last.valid_loss.exp(),
        unigram_baseline: corpus.unigram_cross_entropy(),
        sample: corpus.vocab.decode(&generated),
        train_seconds,
    };
    crate::run::write_metrics_csv(&run_dir.join("metrics.csv"), &epochs)?;
    let report_path = run_dir.join("report.json");
    std::fs::write(
        &report_path,
        serde_json::to_string_pretty(&report).expect("report serialises"),
    )
    .map_err(io(&report_path))?;
    Ok(report)
}
