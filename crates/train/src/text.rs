//! Text classification: a [`TransformerClassifier`] trained from scratch, or a pretrained BERT
//! sentence encoder (all-MiniLM-L6-v2) with a new head fine-tuned ([`PretrainedText`]), on
//! labelled texts tokenized with a Hugging Face `tokenizer.json`, trained with burn-train.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Bool, Int, Tensor};
use burn::train::ClassificationOutput;
use kiln_core::Seed;
use kiln_data::text::{LabelledTexts, TextTokenizer, TokenBatch, TokenBatcher, TokenDataset};
use kiln_models::ModelConfig;
use kiln_models::bert::BertClassifier;
use kiln_models::transformer::{TransformerClassifier, TransformerClassifierConfig};
use kiln_optim::{GroupRule, Schedule};
use serde::{Deserialize, Serialize};

use crate::{EpochMetrics, Error, Result, TrainOptions};

/// The text classifiers a run trains. Module paths: `Transformer.*`, `Bert.encoder.*`,
/// `Bert.head`.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum TextModel {
    /// The zoo's transformer classifier (from scratch).
    Transformer(TransformerClassifier),
    /// A pretrained BERT encoder with a new head.
    Bert(BertClassifier),
}

impl TextModel {
    /// `[batch, classes]` logits (true in `mask_pad` at padding).
    pub fn forward(&self, ids: Tensor<2, Int>, mask_pad: Option<Tensor<2, Bool>>) -> Tensor<2> {
        match self {
            Self::Transformer(m) => m.forward(ids, mask_pad),
            Self::Bert(m) => m.forward(ids, mask_pad),
        }
    }
}

/// A sequence classifier trained with cross-entropy.
#[derive(Module, Debug)]
pub struct TextClassificationTask {
    /// The model being trained.
    pub model: TextModel,
}

impl TextClassificationTask {
    /// Forward pass with the cross-entropy of each text (`[batch]`).
    pub fn forward_classification(&self, batch: TokenBatch) -> ClassificationOutput {
        let logits = self.model.forward(batch.ids, Some(batch.mask_pad));
        let loss = crate::task::per_sample_cross_entropy(logits.clone(), batch.targets.clone());
        ClassificationOutput::new(loss, logits, batch.targets)
    }
}

impl crate::Task for TextClassificationTask {
    type Batch = TokenBatch;
    type Output = ClassificationOutput;

    fn forward(&self, batch: TokenBatch) -> ClassificationOutput {
        self.forward_classification(batch)
    }
}

/// Everything that defines a text-classification run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextTrainConfig {
    /// Preset name or label.
    pub name: String,
    /// Dataset: `fine-foods-reviews`, or a CSV file with a header (its text and class
    /// columns named by `text_column` and `target`; a fixed, stratified 20% of its rows is
    /// the test split).
    pub dataset: String,
    /// Text column of a CSV dataset (default `text`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_column: Option<String>,
    /// Class column of a CSV dataset (default `label`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `tokenizer.json` path, relative to the data dir unless absolute.
    pub tokenizer: PathBuf,
    /// Tokens per text (truncate / pad).
    pub max_len: usize,
    /// The loop's settings (epochs, batch size, learning rate, optimizer, schedule, plateau,
    /// monitor, early stopping, seed, device, validation share, shards): top-level keys of
    /// `config.toml`, the shard count resolved in the saved one when the run starts.
    #[serde(flatten)]
    pub recipe: crate::Recipe,
    /// Use only the first N training texts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_train: Option<usize>,
    /// Use only the first N test texts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_test: Option<usize>,
    /// Fine-tune a pretrained sentence encoder instead of training `model` from scratch (its
    /// own `tokenizer.json` then replaces `tokenizer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrained: Option<PretrainedText>,
    /// Size the model's head to the dataset's classes before training (a user's CSV); the
    /// saved config holds the sized model.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adapt_model: bool,
    /// The model trained from scratch (unused with `pretrained`).
    pub model: TransformerClassifierConfig,
    /// Rejects keys that are neither the config's nor the recipe's (serde's
    /// `deny_unknown_fields` does not work beside a flattened field).
    #[serde(flatten, skip_serializing)]
    pub no_other_keys: crate::NoOtherKeys,
}

/// A pretrained BERT sentence encoder to fine-tune with a new classification head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainedText {
    /// A sentence-transformers folder (`config.json`, `model.safetensors`, `tokenizer.json`),
    /// relative to the data dir unless absolute.
    pub dir: PathBuf,
    /// Train only the head (linear probing): the encoder gets no gradient.
    #[serde(default)]
    pub freeze_encoder: bool,
    /// Learning-rate multiplier of the encoder when it trains (e.g. 0.1).
    #[serde(default = "one")]
    pub encoder_lr_scale: f64,
    /// Dropout before the head.
    #[serde(default = "head_dropout")]
    pub dropout: f64,
}

fn one() -> f64 {
    1.0
}

fn head_dropout() -> f64 {
    0.1
}

impl PretrainedText {
    /// All of the encoder and a new head trained (the encoder at `encoder_lr_scale` × the rate).
    pub fn full(dir: impl Into<PathBuf>, encoder_lr_scale: f64) -> Self {
        Self {
            dir: dir.into(),
            freeze_encoder: false,
            encoder_lr_scale,
            dropout: head_dropout(),
        }
    }

    /// A new head on the frozen encoder.
    pub fn linear_probe(dir: impl Into<PathBuf>) -> Self {
        Self {
            freeze_encoder: true,
            ..Self::full(dir, 1.0)
        }
    }
}

crate::recipe::loop_settings!(TextTrainConfig, "a text classifier run");

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
            recipe: crate::Recipe {
                epochs: 3,
                batch_size: 32,
                lr: 5e-4,
                ..crate::Recipe::default()
            },
            no_other_keys: crate::NoOtherKeys,
            max_train: None,
            max_test: None,
            text_column: None,
            target: None,
            adapt_model: false,
            pretrained: None,
            model,
        })
    }

    /// The recipe for fine-tuning all-MiniLM-L6-v2 (data dir `models/all-MiniLM-L6-v2`) on the
    /// fine-food reviews: Adam at 1e-4 for the new head and 5e-5 for the encoder, batch 16,
    /// 128 tokens, 2 epochs, cosine decay (the second epoch at half the rate).
    pub fn minilm_finetune() -> Self {
        let mut config = Self::for_preset("transformer-classifier").expect("a zoo preset");
        config.name = "all-minilm-l6-v2-finetuned".into();
        config.tokenizer = PathBuf::from("models/all-MiniLM-L6-v2/tokenizer.json");
        config.max_len = 128;
        config.recipe.epochs = 2;
        config.recipe.batch_size = 16;
        config.recipe.lr = 1e-4;
        config.recipe.schedule = Schedule::Cosine { min_lr: 0.0 };
        config.pretrained = Some(PretrainedText::full("models/all-MiniLM-L6-v2", 0.5));
        config
    }
}

/// The train and test texts of a named text dataset (`fine-foods-reviews`, its own split).
pub fn load_text_dataset(name: &str, data_dir: &Path) -> Result<(LabelledTexts, LabelledTexts)> {
    load_texts(name, None, None, data_dir)
}

/// The train and test texts of a run's dataset: a named one ([`load_text_dataset`]) or a CSV
/// file read with `text_column` (default `text`) and `target` (default `label`), whose test
/// split is a fixed, stratified 20% of the rows (`kiln_data::split::dataset_split`, the same
/// for every run).
pub fn load_texts(
    dataset: &str,
    text_column: Option<&str>,
    target: Option<&str>,
    data_dir: &Path,
) -> Result<(LabelledTexts, LabelledTexts)> {
    if dataset == "fine-foods-reviews" {
        return Ok(LabelledTexts::fine_food_reviews(data_dir)?);
    }
    let path = Path::new(dataset);
    if path.is_file() {
        let all = LabelledTexts::read_csv(
            path,
            text_column.unwrap_or("text"),
            target.unwrap_or("label"),
            None,
        )?;
        if all.classes.len() < 2 {
            return Err(Error::InvalidSetting(format!(
                "{}: a text classifier needs at least 2 classes, found {:?}",
                path.display(),
                all.classes
            )));
        }
        let (train, test) = kiln_data::split::dataset_split(&all.labels);
        return Ok((all.subset(&train), all.subset(&test)));
    }
    Err(Error::InvalidSetting(format!(
        "unknown text dataset `{dataset}`: give fine-foods-reviews or a CSV file (with --text-column and --target)"
    )))
}

/// The pretrained encoder of `spec` with a new head of `classes`, its tokenizer, and the
/// parameter groups (frozen or slower encoder).
fn pretrained_model(
    spec: &PretrainedText,
    config: &TextTrainConfig,
    data_dir: &Path,
    classes: usize,
    device: &burn::tensor::Device,
) -> Result<(TextModel, TextTokenizer, Vec<GroupRule>)> {
    let dir = data_dir.join(&spec.dir);
    let (embedder, _) = kiln_transfer::SentenceEmbedder::from_dir(&dir, device)?;
    if config.max_len > embedder.encoder().max_len() {
        return Err(Error::InvalidSetting(format!(
            "max_len {} exceeds the pretrained encoder's {} positions",
            config.max_len,
            embedder.encoder().max_len()
        )));
    }
    if !(0.0..1.0).contains(&spec.dropout)
        || spec.encoder_lr_scale.is_nan()
        || spec.encoder_lr_scale < 0.0
    {
        return Err(Error::InvalidSetting(format!(
            "pretrained head dropout must be in [0, 1) and the encoder rate multiplier ≥ 0, found {} and {}",
            spec.dropout, spec.encoder_lr_scale
        )));
    }
    let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"))?;
    let model = BertClassifier::new(embedder.encoder().clone(), classes, spec.dropout);
    let encoder = "model.Bert.encoder";
    let groups = if spec.freeze_encoder {
        vec![GroupRule::frozen(encoder)]
    } else if spec.encoder_lr_scale != 1.0 {
        vec![GroupRule::scaled(encoder, spec.encoder_lr_scale)]
    } else {
        Vec::new()
    };
    Ok((TextModel::Bert(model), tokenizer, groups))
}

/// What a finished text-classification run reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextReport {
    /// Per-epoch metrics (validation: texts held out from the training file).
    pub epochs: Vec<EpochMetrics>,
    /// Class names.
    pub classes: Vec<String>,
    /// Training texts.
    pub train_size: usize,
    /// Validation texts.
    #[serde(default)]
    pub valid_size: usize,
    /// Test texts.
    pub test_size: usize,
    /// Held-out metrics of the final model on the test texts: accuracy, loss, per-class
    /// precision/recall/F1 and the confusion matrix.
    pub test: crate::EvalReport,
    /// Wall-clock seconds of training.
    pub train_seconds: f64,
}

/// Held-out metrics of a text classifier on tokenized texts (burn's inference mode: no
/// dropout).
pub fn evaluate_texts(
    model: &TextModel,
    texts: &TokenDataset,
    classes: &[String],
    batch_size: usize,
    device: &burn::tensor::Device,
) -> Result<crate::EvalReport> {
    use burn::data::dataloader::batcher::Batcher;
    use burn::data::dataset::Dataset;
    let model = model.valid();
    let mut tally = crate::eval::Tally::new(classes.to_vec());
    let device = device.clone().inner();
    let items = (0..texts.len())
        .map(|i| {
            texts
                .get(i)
                .map_err(|e| Error::Training(format!("text {i}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    for chunk in items.chunks(batch_size.max(1)) {
        let labels: Vec<usize> = chunk.iter().map(|i| i.label).collect();
        let batch = TokenBatcher.batch(chunk.to_vec(), &device);
        tally.add(model.forward(batch.ids, Some(batch.mask_pad)), &labels)?;
    }
    Ok(tally.report())
}

/// Trains a transformer text classifier and writes a run folder (`config.toml`, `model.bpk`,
/// `metrics.csv`, `report.json`, `curves.png`, `checkpoint/`). Validation texts are held out
/// from the training texts; the test texts are read once, at the end, by the reloaded run
/// ([`evaluate_text_run`]).
pub fn train_text_classifier(
    config: &TextTrainConfig,
    run_dir: &Path,
    options: &TrainOptions,
) -> Result<TextReport> {
    run_text(config, run_dir, options)
}

/// Continues the text-classification run in `run_dir` from its last complete checkpoint;
/// with the same seed the result equals that of a run never interrupted.
pub fn resume_text(run_dir: &Path, options: &TrainOptions) -> Result<TextReport> {
    let config: TextTrainConfig = crate::files::read_run_config(run_dir)?;
    run_text(
        &config,
        run_dir,
        &TrainOptions {
            resume: true,
            ..options.clone()
        },
    )
}

fn check_text_config(config: &TextTrainConfig) -> Result<()> {
    config.model.validate()?;
    crate::recipe::plain_loop(&config.recipe, "a text classifier run")?;
    if config.max_len == 0 {
        return Err(Error::InvalidSetting("max_len must be at least 1".into()));
    }
    if config.pretrained.is_none() && config.max_len > config.model.encoder.max_len {
        return Err(Error::InvalidSetting(format!(
            "max_len {} exceeds the model's {}",
            config.max_len, config.model.encoder.max_len
        )));
    }
    Ok(())
}

/// The texts of a run: (train, valid, test), with its limits applied.
fn run_texts(
    config: &TextTrainConfig,
    data_dir: &Path,
) -> Result<(LabelledTexts, LabelledTexts, LabelledTexts)> {
    let (mut train, mut test) = load_texts(
        &config.dataset,
        config.text_column.as_deref(),
        config.target.as_deref(),
        data_dir,
    )?;
    for (set, limit) in [(&mut train, config.max_train), (&mut test, config.max_test)] {
        if let Some(n) = limit {
            set.texts.truncate(n);
            set.labels.truncate(n);
        }
    }
    let (train, valid) = train.split_validation(
        config.recipe.valid_fraction,
        Seed(config.recipe.seed).derive("valid"),
    )?;
    Ok((train, valid, test))
}

/// The model, tokenizer and parameter groups of a run, freshly initialised.
fn text_model(
    config: &TextTrainConfig,
    data_dir: &Path,
    classes: usize,
    device: &burn::tensor::Device,
) -> Result<(TextModel, TextTokenizer, Vec<GroupRule>)> {
    let (model, tokenizer, groups) = match &config.pretrained {
        Some(spec) => pretrained_model(spec, config, data_dir, classes, device)?,
        None => {
            if classes != config.model.num_classes {
                return Err(Error::InvalidSetting(format!(
                    "the model predicts {} classes but the data has {classes}",
                    config.model.num_classes
                )));
            }
            let tokenizer = TextTokenizer::from_file(&data_dir.join(&config.tokenizer))?;
            let model = TextModel::Transformer(config.model.init(device)?);
            (model, tokenizer, Vec::new())
        }
    };
    if config.pretrained.is_none() && tokenizer.vocab_size() > config.model.encoder.vocab_size {
        return Err(Error::InvalidSetting(format!(
            "the tokenizer has {} tokens but the model's vocab_size is {}",
            tokenizer.vocab_size(),
            config.model.encoder.vocab_size
        )));
    }
    Ok((model, tokenizer, groups))
}

fn run_text(
    config: &TextTrainConfig,
    run_dir: &Path,
    options: &TrainOptions,
) -> Result<TextReport> {
    check_text_config(config)?;
    let mut config = config.clone();
    let _turn = kiln_core::seed::exclusive_rng();
    let data_dir = options.data_dir();
    let (train, valid, test) = run_texts(&config, &data_dir)?;
    if config.adapt_model || config.pretrained.is_some() {
        // (A fine-tuned encoder's head is sized here too, so the saved config records it.)
        config.model.num_classes = train.classes.len();
        config.adapt_model = false;
    }
    let fitted = crate::fit(&config.recipe(), run_dir, options, |setup| {
        let (model, tokenizer, groups) =
            text_model(&config, &data_dir, train.classes.len(), setup.device())?;
        if setup.resumed_from().is_none() {
            // The config records the resolved shard count, so it reproduces the run.
            let saved = TextTrainConfig {
                recipe: setup.recipe().clone(),
                ..config.clone()
            };
            crate::files::write_toml(&run_dir.join("config.toml"), &saved)?;
        }
        let loaders = setup.loaders(
            TokenBatcher,
            TokenBatcher,
            TokenDataset::new(&train, &tokenizer, config.max_len)?,
            TokenDataset::new(&valid, &tokenizer, config.max_len)?,
        );
        setup.add_groups(groups);
        Ok((TextClassificationTask { model }, loaders))
    })?;
    let (epochs, train_seconds) = (fitted.epochs, fitted.seconds);
    crate::files::save_module(fitted.task.model, &run_dir.join("model.bpk"))?;
    // The test texts, read once, by the reloaded run (what `kiln eval` computes).
    let test_report = evaluate_text_run(run_dir, options.data_dir.as_deref())?;
    let report = TextReport {
        epochs,
        classes: train.classes.clone(),
        train_size: train.texts.len(),
        valid_size: valid.texts.len(),
        test_size: test.texts.len(),
        test: test_report,
        train_seconds,
    };
    crate::files::write_json(&run_dir.join("report.json"), &report)?;
    Ok(report)
}

/// Loads a text-classification run folder (config, tokenizer, trained model) onto `device`;
/// a fine-tuned encoder's architecture comes from its pretrained folder, its weights from
/// the run.
pub fn load_text_run(
    dir: &Path,
    data_dir: Option<&Path>,
    device: &burn::tensor::Device,
) -> Result<(TextTrainConfig, TextTokenizer, TextModel)> {
    let config: TextTrainConfig = crate::files::read_run_config(dir)?;
    let data = kiln_data::data_dir::resolve(data_dir.map(Path::to_path_buf));
    let classes = config.model.num_classes;
    let (model, tokenizer, _) = text_model(&config, &data, classes, device)?;
    let model = crate::files::load_weights_eagerly(model, &dir.join("model.bpk"))?;
    Ok((config, tokenizer, model))
}

/// Reloads a text-classification run and evaluates it on its dataset's test texts
/// (accuracy, loss, per-class precision/recall/F1, confusion matrix), as `kiln eval` does.
pub fn evaluate_text_run(dir: &Path, data_dir: Option<&Path>) -> Result<crate::EvalReport> {
    let config: TextTrainConfig = crate::files::read_run_config(dir)?;
    let device = config.recipe.device.device();
    let (config, tokenizer, model) = load_text_run(dir, data_dir, &device)?;
    let data = kiln_data::data_dir::resolve(data_dir.map(Path::to_path_buf));
    let (train, _, test) = run_texts(&config, &data)?;
    evaluate_texts(
        &model,
        &TokenDataset::new(&test, &tokenizer, config.max_len)?,
        &train.classes,
        config.recipe.batch_size,
        &device,
    )
}
