//! Language modelling: a [`CausalLm`] trained on a character corpus with burn-train, reported
//! against the unigram baseline, with a seeded sample of generated text.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::train::ClassificationOutput;
use kiln_core::Seed;
use kiln_data::text::{CharCorpus, CharVocab, SequenceBatch, SequenceBatcher, SequenceDataset};
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

impl crate::Task for LanguageModelTask {
    type Batch = SequenceBatch;
    type Output = ClassificationOutput;

    fn forward(&self, batch: SequenceBatch) -> ClassificationOutput {
        self.forward_lm(batch)
    }
}

/// Everything that defines a language-model run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LmTrainConfig {
    /// Preset name or label.
    pub name: String,
    /// Corpus (`jane-austen`).
    pub corpus: String,
    /// Window length.
    pub seq_len: usize,
    /// The loop's settings (epochs, batch size, learning rate, optimizer, schedule, plateau,
    /// monitor, early stopping, seed, device, validation share, shards): top-level keys of
    /// `config.toml`, the shard count resolved in the saved one when the run starts.
    #[serde(flatten)]
    pub recipe: crate::Recipe,
    /// Use at most this many training windows (evenly spaced over the text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_train_windows: Option<usize>,
    /// Use at most this many validation windows (and as many test windows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_valid_windows: Option<usize>,
    /// Size the model's vocabulary to the corpus's characters before training (a user's
    /// corpus); the saved config holds the sized model.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adapt_vocab: bool,
    /// The model.
    pub model: CausalLmConfig,
    /// Rejects keys that are neither the config's nor the recipe's (serde's
    /// `deny_unknown_fields` does not work beside a flattened field).
    #[serde(flatten, skip_serializing)]
    pub no_other_keys: crate::NoOtherKeys,
}

crate::recipe::loop_settings!(LmTrainConfig, "a language model run");

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
            recipe: crate::Recipe {
                epochs: 2,
                batch_size: 32,
                lr: 1e-3,
                ..crate::Recipe::default()
            },
            no_other_keys: crate::NoOtherKeys,
            max_train_windows: None,
            max_valid_windows: None,
            adapt_vocab: false,
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
    /// Final validation loss (nats per token; text held out from the training novels).
    pub valid_loss: f64,
    /// `exp(valid_loss)`.
    pub valid_perplexity: f64,
    /// Held-out test metrics of the saved model (the test text, read once at the end).
    pub test: LmEval,
    /// Test cross-entropy of the training unigram distribution (nats per token).
    pub unigram_baseline: f64,
    /// 200 characters generated from the start of the test text (seeded sampling,
    /// temperature 0.8, top-k 20).
    pub sample: String,
    /// Wall-clock seconds of training.
    pub train_seconds: f64,
}

/// A language model's held-out metrics on a text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LmEval {
    /// Predicted tokens (windows × positions).
    pub tokens: usize,
    /// Mean next-token cross-entropy, nats per token.
    pub loss: f64,
    /// `exp(loss)`.
    pub perplexity: f64,
    /// `loss / ln 2`: bits per character for a character model.
    pub bits_per_token: f64,
    /// Share of positions whose most probable next token is the true one.
    pub accuracy: f64,
}

/// Evaluates a causal LM on `ids` cut into windows of `seq_len` (at most `max_windows`,
/// evenly spaced), in inference mode.
pub fn evaluate_lm(
    model: &CausalLm,
    ids: &[usize],
    seq_len: usize,
    max_windows: Option<usize>,
    batch_size: usize,
    device: &burn::tensor::Device,
) -> Result<LmEval> {
    use burn::data::dataloader::batcher::Batcher;
    use burn::data::dataset::Dataset;
    let model = model.valid();
    let device = device.clone().inner();
    let set = SequenceDataset::new(ids.to_vec(), seq_len, max_windows)?;
    let items = (0..set.len())
        .map(|i| {
            set.get(i)
                .map_err(|e| Error::Training(format!("window {i}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let (mut nll, mut correct, mut tokens) = (0f64, 0usize, 0usize);
    for chunk in items.chunks(batch_size.max(1)) {
        let batch = SequenceBatcher.batch(chunk.to_vec(), &device);
        let logits = model.forward(batch.inputs);
        let [b, l, v] = logits.dims();
        let logits: Vec<f32> = logits
            .reshape([b * l, v])
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .map_err(|e| Error::Training(format!("reading LM logits: {e:?}")))?;
        let targets = chunk.iter().flat_map(|item| item.ids[1..].iter().copied());
        for (row, target) in logits.chunks(v).zip(targets) {
            if target >= v {
                return Err(Error::InvalidSetting(format!(
                    "token {target} is outside the model's vocabulary of {v}"
                )));
            }
            let (row_nll, best) = crate::eval::nll_and_argmax(row, target);
            nll += row_nll;
            correct += usize::from(best == target);
            tokens += 1;
        }
    }
    let loss = nll / tokens.max(1) as f64;
    Ok(LmEval {
        tokens,
        loss,
        perplexity: loss.exp(),
        bits_per_token: loss / std::f64::consts::LN_2,
        accuracy: correct as f64 / tokens.max(1) as f64,
    })
}

/// The corpus of an LM run: `jane-austen`, or a UTF-8 text file (its last 10% the test
/// text), with `valid_fraction` of the training text held out by `seed`.
pub fn load_corpus(
    corpus: &str,
    data_dir: Option<&Path>,
    valid_fraction: f64,
    seed: Seed,
) -> Result<CharCorpus> {
    let valid_seed = seed.derive("valid");
    match corpus {
        "jane-austen" => Ok(CharCorpus::jane_austen(
            &kiln_data::data_dir::resolve(data_dir.map(Path::to_path_buf)),
            valid_fraction,
            valid_seed,
        )?),
        path if Path::new(path).is_file() => Ok(CharCorpus::from_file(
            Path::new(path),
            valid_fraction,
            valid_seed,
        )?),
        other => Err(Error::InvalidSetting(format!(
            "unknown corpus `{other}`: give `jane-austen` or a UTF-8 text file"
        ))),
    }
}

/// Trains a causal LM on the configured corpus and writes a run folder (`config.toml`,
/// `vocab.json`, `model.bpk`, `metrics.csv`, `report.json`, `checkpoint/`). Validation is
/// text held out from the training part; the test text is read once, at the end, by the
/// reloaded run ([`evaluate_lm_run`]).
pub fn train_lm(
    config: &LmTrainConfig,
    run_dir: &Path,
    options: &TrainOptions,
) -> Result<LmReport> {
    run_lm(config, run_dir, options)
}

/// Continues the LM run in `run_dir` from its last complete checkpoint; with the same seed
/// the result equals that of a run never interrupted.
pub fn resume_lm(run_dir: &Path, options: &TrainOptions) -> Result<LmReport> {
    let config: LmTrainConfig = crate::files::read_run_config(run_dir)?;
    run_lm(
        &config,
        run_dir,
        &TrainOptions {
            resume: true,
            ..options.clone()
        },
    )
}

fn check_lm_config(config: &LmTrainConfig) -> Result<()> {
    config.model.validate()?;
    crate::recipe::plain_loop(&config.recipe, "a language model run")?;
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
    Ok(())
}

fn run_lm(config: &LmTrainConfig, run_dir: &Path, options: &TrainOptions) -> Result<LmReport> {
    check_lm_config(config)?;
    let mut config = config.clone();
    let _turn = kiln_core::seed::exclusive_rng();
    let seed = Seed(config.recipe.seed);
    let corpus = load_corpus(
        &config.corpus,
        options.data_dir.as_deref(),
        config.recipe.valid_fraction,
        seed,
    )?;
    if config.adapt_vocab {
        config.model.encoder.vocab_size = corpus.vocab.len();
        config.adapt_vocab = false;
    }
    if corpus.vocab.len() > config.model.encoder.vocab_size {
        return Err(Error::InvalidSetting(format!(
            "the corpus has {} distinct characters (with unknown) but the model's vocab_size is {}",
            corpus.vocab.len(),
            config.model.encoder.vocab_size
        )));
    }
    let fitted = crate::fit(&config.recipe(), run_dir, options, |setup| {
        if setup.resumed_from().is_none() {
            // The config records the resolved shard count, so it reproduces the run.
            let saved = LmTrainConfig {
                recipe: setup.recipe().clone(),
                ..config.clone()
            };
            crate::files::write_toml(&run_dir.join("config.toml"), &saved)?;
            crate::files::write_json(&run_dir.join("vocab.json"), &corpus.vocab)?;
        }
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
        let loaders = setup.loaders(SequenceBatcher, SequenceBatcher, train_set, valid_set);
        let task = LanguageModelTask {
            model: config.model.init(setup.device())?,
        };
        Ok((task, loaders))
    })?;
    let (epochs, train_seconds) = (fitted.epochs, fitted.seconds);
    let last = epochs
        .last()
        .cloned()
        .expect("fit returns at least one epoch");
    let model_path = run_dir.join("model.bpk");
    crate::files::save_module(fitted.task.model, &model_path)?;

    // The test text, read once, by the reloaded run (what `kiln eval` computes).
    let test = evaluate_lm_run(run_dir, options.data_dir.as_deref())?;
    let (_, vocab, model) = load_lm_run(run_dir, &config.recipe.device.device())?;
    let prompt: Vec<usize> = corpus.test.iter().take(40).copied().collect();
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
        test,
        unigram_baseline: corpus.unigram_cross_entropy(),
        sample: vocab.decode(&generated),
        train_seconds,
    };
    crate::files::write_json(&run_dir.join("report.json"), &report)?;
    Ok(report)
}

/// Loads an LM run folder (its config, character vocabulary and trained model) onto `device`.
pub fn load_lm_run(
    dir: &Path,
    device: &burn::tensor::Device,
) -> Result<(LmTrainConfig, CharVocab, CausalLm)> {
    let config: LmTrainConfig = crate::files::read_run_config(dir)?;
    let path = dir.join("vocab.json");
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let vocab: CharVocab = serde_json::from_str(&text).map_err(|e| Error::BadRunFile {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let model = config.model.init(device)?;
    let model = crate::files::load_weights_eagerly(model, &dir.join("model.bpk"))?;
    Ok((config, vocab, model))
}

/// Reloads an LM run and measures it on its corpus's test text (loss, perplexity, bits per
/// character, next-character accuracy), as `kiln eval` does.
pub fn evaluate_lm_run(dir: &Path, data_dir: Option<&Path>) -> Result<LmEval> {
    let config: LmTrainConfig = crate::files::read_run_config(dir)?;
    let device = config.recipe.device.device();
    let (config, vocab, model) = load_lm_run(dir, &device)?;
    let corpus = load_corpus(
        &config.corpus,
        data_dir,
        config.recipe.valid_fraction,
        Seed(config.recipe.seed),
    )?;
    if corpus.vocab != vocab {
        return Err(Error::BadRunFile {
            path: dir.join("vocab.json"),
            reason: format!(
                "the corpus `{}` now has another character set than the one the model was trained on",
                config.corpus
            ),
        });
    }
    evaluate_lm(
        &model,
        &corpus.test,
        config.seq_len,
        config.max_valid_windows,
        config.recipe.batch_size,
        &device,
    )
}

/// Generates text from a trained LM run: `prompt` encoded with the run's vocabulary (a
/// character it never saw becomes its unknown token), then up to `max_tokens` characters
/// chosen by `sampling` with `seed`, each handed to `on_text` as soon as it is chosen
/// (`on_text` returning false stops). Returns the generated text, without the prompt.
pub fn generate_from_run(
    dir: &Path,
    prompt: &str,
    max_tokens: usize,
    sampling: Sampling,
    seed: Seed,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<String> {
    let device = burn::tensor::Device::flex();
    let (_, vocab, model) = load_lm_run(dir, &device)?;
    let ids = vocab.encode(prompt);
    let mut out = String::new();
    let tokens = model.generate_streaming(&ids, max_tokens, sampling, seed, &mut |id| {
        let piece = vocab.decode(&[id]);
        out.push_str(&piece);
        on_text(&piece)
    })?;
    debug_assert_eq!(tokens.len() - ids.len(), out.chars().count());
    Ok(out)
}
