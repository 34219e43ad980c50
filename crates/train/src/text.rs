//! Text classification: a [`TransformerClassifier`] on labelled texts tokenized with a Hugging
//! Face `tokenizer.json`, trained with burn-train.

use std::path::{Path, PathBuf};

use burn::data::dataloader::DataLoaderBuilder;
use burn::module::Module;
use burn::optim::lr_scheduler::constant::ConstantLr;
use burn::train::{ClassificationOutput, Learner};
use kiln_core::{DeviceSpec, Seed};
use kiln_data::text::{LabelledTexts, TextTokenizer, TokenBatch, TokenBatcher, TokenDataset};
use kiln_models::ModelConfig;
use kiln_models::transformer::{TransformerClassifier, TransformerClassifierConfig};
use serde::{Deserialize, Serialize};

use crate::error::io;
use crate::{EpochMetrics, Error, Result, TrainOptions};

/// A sequence classifier trained with cross-entropy.
#[derive(Module, Debug)]
pub struct TextClassificationTask {
    /// The model being trained.
    pub model: TransformerClassifier,
}

impl TextClassificationTask {
    /// Forward pass with the cross-entropy of each text (`[batch]`).
    pub fn forward_classification(&self, batch: TokenBatch) -> ClassificationOutput {
        let logits = self.model.forward(batch.ids, Some(batch.mask_pad));
        let loss = crate::task::per_sample_cross_entropy(logits.clone(), batch.targets.clone());
        ClassificationOutput::new(loss, logits, batch.targets)
    }
}

crate::task::supervised_steps!(TextClassificationTask, TokenBatch, forward_classification);

/// Everything that defines a text-classification run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextTrainConfig {
    /// Preset name or label.
    pub name: String,
    /// Dataset (`fine-foods-reviews`).
    pub dataset: String,
    /// `tokenizer.json` path, relative to the data dir unless absolute.
    pub tokenizer: PathBuf,
    /// Tokens per text (truncate / pad).
    pub max_len: usize,
    /// Epochs.
    pub epochs: usize,
    /// Texts per batch.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Master seed.
    pub seed: u64,
    /// Device.
    pub device: DeviceSpec,
    /// Use only the first N training texts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_train: Option<usize>,
    /// Use only the first N test texts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_test: Option<usize>,
    /// The model.
    pub model: TransformerClassifierConfig,
}

impl TextTrainConfig {
    /// The default recipe for a text-classifier preset (all-MiniLM-L6-v2's WordPiece vocabulary).
    pub fn for_preset(name: &str) -> Result<Self> {
        let preset = kiln_models::preset(name)?;
        let ModelConfig::TransformerClassifier(model) = preset.config else {
            return Err(Error::InvalidSetting(format!(
                "`{name}` is not a transformer text classifier"
            )));
        };
        Ok(Self {
            name: name.to_string(),
            dataset: preset.dataset.to_string(),
            tokenizer: PathBuf::from("models/all-MiniLM-L6-v2/tokenizer.json"),
            max_len: model.encoder.max_len,
            epochs: 3,
            batch_size: 32,
            lr: 5e-4,
            seed: Seed::default().0,
            device: DeviceSpec::default(),
            max_train: None,
            max_test: None,
            model,
        })
    }
}

/// What a finished text-classification run reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextReport {
    /// Per-epoch metrics (validation = the test file).
    pub epochs: Vec<EpochMetrics>,
    /// Class names.
    pub classes: Vec<String>,
    /// Training texts.
    pub train_size: usize,
    /// Test texts.
    pub test_size: usize,
    /// Wall-clock seconds of training.
    pub train_seconds: f64,
}

/// Trains a transformer text classifier and writes a run folder (`config.toml`, `model.bpk`,
/// `metrics.csv`, `report.json`).
pub fn train_text_classifier(
    config: &TextTrainConfig,
    run_dir: &Path,
    options: &TrainOptions,
) -> Result<TextReport> {
    config.model.validate()?;
    crate::config::check_schedule(config.epochs, config.batch_size, config.lr)?;
    if config.max_len == 0 {
        return Err(Error::InvalidSetting("max_len must be at least 1".into()));
    }
    if config.max_len > config.model.encoder.max_len {
        return Err(Error::InvalidSetting(format!(
            "max_len {} exceeds the model's {}",
            config.max_len, config.model.encoder.max_len
        )));
    }
    let _turn = kiln_core::seed::exclusive_rng();
    let seed = Seed(config.seed);
    let device = config.device.autodiff_device();
    seed.apply(&device);

    let data_dir = kiln_data::data_dir::resolve(None);
    let (mut train, mut test) = match config.dataset.as_str() {
        "fine-foods-reviews" => LabelledTexts::fine_food_reviews(&data_dir)?,
        other => {
            return Err(Error::InvalidSetting(format!(
                "unknown text dataset `{other}`; available: fine-foods-reviews"
            )));
        }
    };
    for (set, limit) in [(&mut train, config.max_train), (&mut test, config.max_test)] {
        if let Some(n) = limit {
            set.texts.truncate(n);
            set.labels.truncate(n);
        }
    }
    if train.classes.len() != config.model.num_classes {
        return Err(Error::InvalidSetting(format!(
            "the model predicts {} classes but the data has {:?}",
            config.model.num_classes, train.classes
        )));
    }
    let tokenizer = TextTokenizer::from_file(&data_dir.join(&config.tokenizer))?;
    if tokenizer.vocab_size() > config.model.encoder.vocab_size {
        return Err(Error::InvalidSetting(format!(
            "the tokenizer has {} tokens but the model's vocab_size is {}",
            tokenizer.vocab_size(),
            config.model.encoder.vocab_size
        )));
    }
    std::fs::create_dir_all(run_dir).map_err(io(run_dir))?;
    crate::run::write_toml(&run_dir.join("config.toml"), config)?;

    let train_loader = DataLoaderBuilder::new(TokenBatcher)
        .batch_size(config.batch_size)
        .shuffle(seed.derive("shuffle"))
        .set_device(device.clone())
        .build(TokenDataset::new(&train, &tokenizer, config.max_len)?);
    let valid_loader = DataLoaderBuilder::new(TokenBatcher)
        .batch_size(config.batch_size)
        .set_device(device.clone())
        .build(TokenDataset::new(&test, &tokenizer, config.max_len)?);

    let task = TextClassificationTask {
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
    let model_path = run_dir.join("model.bpk");
    fitted
        .model
        .model
        .save_file(&model_path)
        .map_err(|e| Error::Weights {
            path: model_path.clone(),
            reason: e.to_string(),
        })?;
    crate::run::write_metrics_csv(&run_dir.join("metrics.csv"), &epochs)?;
    let report = TextReport {
        epochs,
        classes: train.classes.clone(),
        train_size: train.texts.len(),
        test_size: test.texts.len(),
        train_seconds,
    };
    let report_path = run_dir.join("report.json");
    std::fs::write(
        &report_path,
        serde_json::to_string_pretty(&report).expect("report serialises"),
    )
    .map_err(io(&report_path))?;
    Ok(report)
}
