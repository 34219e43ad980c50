//! Fine-tuning a pretrained chat LLM (Llama architecture: a GGUF file, a Hugging Face folder,
//! or `smollm2` by name) on a team's own data, with LoRA (burn's `Module::apply_lora` on the
//! attention and MLP projections: only the adapters train, and only they have optimizer
//! state) or fully, on Kiln's loop ([`crate::fit()`]: validation split, checkpoints, exact
//! resume, early stopping).
//!
//! Datasets: instruction data (a JSONL file of `messages` or `prompt`/`response` lines, or a
//! CSV file's prompt and response columns), rendered through the model's own chat template
//! with the loss on the assistant tokens only; `fine-foods-reviews` (the reviews as "Is this
//! review great or other?" → the label; test: the 1,000 test reviews, scored by the two
//! answers' likelihoods, zero-shot base model against the fine-tuned one); `jane-austen`
//! (continuing the prose of five novels; test: perplexity and bits per character on
//! *Persuasion*, base against fine-tuned).
//!
//! ## Run folder
//!
//! Besides [`crate::fit()`]'s files: `config.toml` (an [`LlmFinetuneConfig`]), `adapter/`
//! (LoRA: the adapters alone in PEFT's layout, a few MB, see [`kiln_transfer::adapter`]) or
//! `model/` (full fine-tuning: a Hugging Face folder), `report.json` ([`LlmReport`]). The
//! checkpoints hold the whole module (base weights included, f32), as every Kiln run's do.
//! [`load_llm_run`] gives the fine-tuned model, adapters merged, ready for generation and
//! export (`kiln_transfer::export`).

use std::path::{Path, PathBuf};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::InMemDataset;
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};
use burn::train::ClassificationOutput;
use kiln_core::Seed;
use kiln_data::text::{LabelledTexts, TextTokenizer};
use kiln_models::llama::{LORA_TARGETS, Llama};
use kiln_transfer::chat::{ChatTemplate, Message};
use kiln_transfer::instruct::{self, Conversation, TokenizedChat};
use kiln_transfer::llama::LlmBundle;
use serde::{Deserialize, Serialize};

use crate::{EpochMetrics, Error, Result, TrainOptions};

/// The LoRA settings of a run (PEFT's `LoraConfig` fields and defaults where it has them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraSettings {
    /// Rank r of each adapter.
    #[serde(default = "default_rank")]
    pub rank: usize,
    /// The update is scaled by `alpha / rank`.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Dropout on the adapters' input while training.
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    /// The adapted projections of every block (default: all seven).
    #[serde(default = "all_targets")]
    pub targets: Vec<String>,
    /// QLoRA: store the adapted projections' base weights as 8- or 4-bit integers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantize_base: Option<u8>,
}

fn default_rank() -> usize {
    8
}
fn default_alpha() -> f64 {
    16.0
}
fn default_dropout() -> f64 {
    0.05
}
fn all_targets() -> Vec<String> {
    LORA_TARGETS.iter().map(|s| s.to_string()).collect()
}
fn yes() -> bool {
    true
}

impl Default for LoraSettings {
    /// Rank 8, alpha 16, dropout 0.05, every attention and MLP projection.
    fn default() -> Self {
        Self {
            rank: default_rank(),
            alpha: default_alpha(),
            dropout: default_dropout(),
            targets: all_targets(),
            quantize_base: None,
        }
    }
}

/// Everything that defines an LLM fine-tuning run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlmFinetuneConfig {
    /// A label.
    pub name: String,
    /// The pretrained model: a `.gguf` file, a Hugging Face folder, or a name Kiln fetches
    /// (`smollm2`).
    pub base_model: String,
    /// `fine-foods-reviews`, `jane-austen`, or a `.jsonl` / `.csv` instruction file.
    pub dataset: String,
    /// Prompt column of a CSV dataset (default `prompt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_column: Option<String>,
    /// Response column of a CSV dataset (default `response`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_column: Option<String>,
    /// Tokens per training sequence (a conversation is cut at the end; a review is shortened
    /// so its question and answer fit; Austen windows have this length).
    pub max_len: usize,
    /// LoRA settings; none fine-tunes every weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraSettings>,
    /// The loop's settings: top-level keys of `config.toml`.
    #[serde(flatten)]
    pub recipe: crate::Recipe,
    /// Use only the first N training items (conversations or windows, evenly spaced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_train: Option<usize>,
    /// Use at most N validation items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_valid: Option<usize>,
    /// Use only the first N test items (reviews or *Persuasion* windows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_test: Option<usize>,
    /// Also measure the base model on the test split (zero-shot), for comparison.
    #[serde(default = "yes")]
    pub evaluate_base: bool,
    /// Rejects keys that are neither the config's nor the recipe's.
    #[serde(flatten, skip_serializing)]
    pub no_other_keys: crate::NoOtherKeys,
}

crate::recipe::loop_settings!(LlmFinetuneConfig, "an LLM fine-tuning run");

impl LlmFinetuneConfig {
    /// LoRA (rank 8, alpha 16, dropout 0.05, all projections) on `dataset` from `base_model`:
    /// 1 epoch of batches of 8 at 2e-4 with AdamW (weight decay 0), a cosine schedule, 256
    /// tokens, 10% validation.
    pub fn lora(base_model: &str, dataset: &str) -> Self {
        let mut recipe = crate::Recipe {
            epochs: 1,
            batch_size: 8,
            lr: 2e-4,
            ..crate::Recipe::default()
        };
        recipe.optim.optimizer = kiln_optim::OptimizerConfig::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.0,
        };
        recipe.schedule = kiln_optim::Schedule::Cosine { min_lr: 0.0 };
        Self {
            name: "llm-lora".into(),
            base_model: base_model.into(),
            dataset: dataset.into(),
            prompt_column: None,
            response_column: None,
            max_len: 256,
            lora: Some(LoraSettings::default()),
            recipe,
            max_train: None,
            max_valid: None,
            max_test: None,
            evaluate_base: true,
            no_other_keys: Default::default(),
        }
    }

    fn check(&self) -> Result<()> {
        crate::recipe::plain_loop(&self.recipe, "an LLM fine-tuning run")?;
        if self.max_len < 8 {
            return Err(Error::InvalidSetting(format!(
                "max_len {} is too short for a chat turn (at least 8 tokens)",
                self.max_len
            )));
        }
        if let Some(l) = &self.lora {
            if l.rank == 0 || !(l.alpha > 0.0 && l.alpha.is_finite()) {
                return Err(Error::InvalidSetting(format!(
                    "LoRA needs rank ≥ 1 and alpha > 0, found {} and {}",
                    l.rank, l.alpha
                )));
            }
            if !(0.0..1.0).contains(&l.dropout) {
                return Err(Error::InvalidSetting(format!(
                    "LoRA dropout must be in [0, 1), found {}",
                    l.dropout
                )));
            }
            kiln_models::llama::lora_param_group(&l.targets)?;
            if l.quantize_base.is_some_and(|b| b != 8 && b != 4) {
                return Err(Error::InvalidSetting(format!(
                    "QLoRA quantizes base weights to 8 or 4 bits, not {}",
                    l.quantize_base.unwrap_or_default()
                )));
            }
        }
        Ok(())
    }
}

/// One batch: right-padded ids, the flat positions with a target, the targets.
#[derive(Clone, Debug)]
pub struct LlmBatch {
    /// Input ids `[rows, len]`.
    pub tokens: Tensor<2, Int>,
    /// Flat positions (`row · len + t`) whose next token is a target.
    pub positions: Tensor<1, Int>,
    /// Those next tokens.
    pub targets: Tensor<1, Int>,
}

/// Pads [`TokenizedChat`]s into [`LlmBatch`]es.
#[derive(Clone, Debug)]
pub struct LlmBatcher {
    /// The padding id.
    pub pad_id: u32,
}

impl Batcher<TokenizedChat, LlmBatch> for LlmBatcher {
    fn batch(&self, items: Vec<TokenizedChat>, device: &Device) -> LlmBatch {
        let padded = instruct::pad(&items, self.pad_id);
        let (tokens, positions, targets) = instruct::batch_tensors(&padded, device);
        LlmBatch {
            tokens,
            positions,
            targets,
        }
    }
}

/// The LLM being fine-tuned with its next-token loss on the target tokens (a [`crate::Task`]).
#[derive(Module, Debug)]
pub struct LlmTask {
    /// The model (with LoRA adapters, or every weight trainable).
    pub model: Llama,
}

impl crate::Task for LlmTask {
    type Batch = LlmBatch;
    type Output = ClassificationOutput;

    /// Cross-entropy of every target token (`[targets]`); accuracy is next-token accuracy.
    fn forward(&self, batch: LlmBatch) -> ClassificationOutput {
        let logits = instruct::logits_at(&self.model, batch.tokens, batch.positions)
            .expect("batches are non-empty and within the model's context (checked at setup)");
        let loss = crate::task::per_sample_cross_entropy(logits.clone(), batch.targets.clone());
        ClassificationOutput::new(loss, logits, batch.targets)
    }
}

/// The data of a run, tokenized.
struct LlmData {
    train: Vec<TokenizedChat>,
    valid: Vec<TokenizedChat>,
    test: TestData,
}

/// A run's test split.
enum TestData {
    /// Questions with a known answer among `choices`.
    Choices {
        prompts: Vec<Vec<Message>>,
        answers: Vec<usize>,
        choices: Vec<String>,
    },
    /// A held-out text: windows, and how many characters their predicted tokens cover.
    Text {
        windows: Vec<TokenizedChat>,
        chars: usize,
    },
    /// No test split (a user's file: its validation part is the measure).
    None,
}

/// `items` thinned to at most `limit`, evenly spaced.
fn evenly<T: Clone>(items: Vec<T>, limit: Option<usize>) -> Vec<T> {
    match limit {
        Some(n) if n < items.len() => {
            let step = items.len() as f64 / n as f64;
            (0..n)
                .map(|i| items[(i as f64 * step) as usize].clone())
                .collect()
        }
        _ => items,
    }
}

/// A review conversation with the review shortened so the whole conversation fits `max_len`
/// tokens (its question and answer kept whole).
fn fitted_review(
    text: &str,
    answer: Option<&str>,
    template: &ChatTemplate,
    tokenizer: &TextTokenizer,
    max_len: usize,
) -> Result<Vec<Message>> {
    let messages = |review: &str| {
        let mut m = vec![Message::new(
            "user",
            &format!("{}\n\nReview: {review}", instruct::REVIEW_QUESTION),
        )];
        if let Some(a) = answer {
            m.push(Message::new("assistant", a));
        }
        m
    };
    let length = |m: &[Message]| -> Result<usize> {
        Ok(tokenizer
            .encode_plain(&template.render(m, answer.is_none())?)?
            .len())
    };
    // Room for the answer when scoring a prompt: a few tokens.
    let reserve = if answer.is_none() { 4 } else { 0 };
    let full = messages(text);
    if length(&full)? + reserve <= max_len {
        return Ok(full);
    }
    let overhead = length(&messages(""))? + reserve;
    if overhead >= max_len {
        return Err(Error::InvalidSetting(format!(
            "max_len {max_len} leaves no room for a review (the question and answer take {overhead} tokens)"
        )));
    }
    let ids = tokenizer.encode_plain(text)?;
    let mut keep = (max_len - overhead).min(ids.len());
    loop {
        let cut = tokenizer.decode(&ids[..keep])?;
        let m = messages(&cut);
        if length(&m)? + reserve <= max_len || keep == 0 {
            return Ok(m);
        }
        keep = keep.saturating_sub(2);
    }
}

/// Windows of `len` tokens over `ids`, each starting at the previous one's last token so that
/// every token but the first is predicted exactly once.
fn windows(ids: &[u32], len: usize) -> Vec<TokenizedChat> {
    let mut out = Vec::new();
    let mut start = 0;
    while start + 1 < ids.len() {
        let end = (start + len).min(ids.len());
        let mut mask = vec![true; end - start];
        mask[0] = false;
        out.push(TokenizedChat {
            ids: ids[start..end].to_vec(),
            loss_mask: mask,
        });
        start = end - 1;
    }
    out
}

fn split_items(
    items: Vec<TokenizedChat>,
    config: &LlmFinetuneConfig,
) -> Result<(Vec<TokenizedChat>, Vec<TokenizedChat>)> {
    let (train, valid) = kiln_data::split::validation_split(
        &vec![0; items.len()],
        config.recipe.valid_fraction,
        Seed(config.recipe.seed).derive("valid"),
    )?;
    let pick = |idx: &[usize]| idx.iter().map(|&i| items[i].clone()).collect::<Vec<_>>();
    Ok((
        evenly(pick(&train), config.max_train),
        evenly(pick(&valid), config.max_valid),
    ))
}

fn tokenize_all(
    conversations: &[Conversation],
    template: &ChatTemplate,
    tokenizer: &TextTokenizer,
    max_len: usize,
    what: &str,
) -> Result<Vec<TokenizedChat>> {
    conversations
        .iter()
        .enumerate()
        .map(|(i, c)| {
            instruct::tokenize(template, tokenizer, c, max_len)
                .map_err(|e| Error::InvalidSetting(format!("{what}, conversation {}: {e}", i + 1)))
        })
        .collect()
}

fn load_data(
    config: &LlmFinetuneConfig,
    parts: &kiln_transfer::llama::ChatParts,
    data_dir: &Path,
) -> Result<LlmData> {
    let tokenizer = &parts.tokenizer;
    let template = || {
        parts.template.as_ref().ok_or_else(|| {
            Error::InvalidSetting(format!(
                "{} has no chat template: instruction data needs one",
                config.base_model
            ))
        })
    };
    let max_len = config.max_len;
    match config.dataset.as_str() {
        "fine-foods-reviews" => {
            let template = template()?;
            let (train, test) = LabelledTexts::fine_food_reviews(data_dir)?;
            let train = evenly_reviews(&train, config);
            let conversations: Vec<Conversation> = train
                .iter()
                .map(|(text, label)| {
                    Ok(Conversation {
                        messages: fitted_review(text, Some(label), template, tokenizer, max_len)?,
                    })
                })
                .collect::<Result<_>>()?;
            let items = tokenize_all(&conversations, template, tokenizer, max_len, "reviews")?;
            let (train_items, valid) = split_items(
                items,
                &LlmFinetuneConfig {
                    max_train: None,
                    ..config.clone()
                },
            )?;
            let n = config
                .max_test
                .unwrap_or(test.texts.len())
                .min(test.texts.len());
            let prompts = test.texts[..n]
                .iter()
                .map(|t| fitted_review(t, None, template, tokenizer, max_len))
                .collect::<Result<_>>()?;
            Ok(LlmData {
                train: train_items,
                valid,
                test: TestData::Choices {
                    prompts,
                    answers: test.labels[..n].to_vec(),
                    choices: test.classes.clone(),
                },
            })
        }
        "jane-austen" => {
            let dir = data_dir.join("text").join("jane-austen");
            let mut items = Vec::new();
            let mut test = None;
            for name in kiln_data::text::AUSTEN_NOVELS {
                let path = dir.join(name);
                let text = std::fs::read_to_string(&path).map_err(crate::error::io(&path))?;
                let ids = tokenizer.encode_plain(&text)?;
                if name == kiln_data::text::AUSTEN_TEST {
                    let first = tokenizer.decode(&ids[..1])?.chars().count();
                    let mut w = windows(&ids, max_len);
                    if let Some(n) = config.max_test {
                        w.truncate(n);
                    }
                    let predicted: usize = w.iter().map(|c| c.ids.len() - 1).sum();
                    // The characters of the predicted tokens: all but the first token's when
                    // the whole novel is scored, else those of the windows kept.
                    let chars = if predicted + 1 == ids.len() {
                        text.chars().count() - first
                    } else {
                        let kept: Vec<u32> = w.iter().flat_map(|c| c.ids[1..].to_vec()).collect();
                        tokenizer.decode(&kept)?.chars().count()
                    };
                    test = Some(TestData::Text { windows: w, chars });
                } else {
                    items.extend(windows(&ids, max_len));
                }
            }
            let (train, valid) = split_items(items, config)?;
            Ok(LlmData {
                train,
                valid,
                test: test.unwrap_or(TestData::None),
            })
        }
        file => {
            let path = Path::new(file);
            let conversations = match path.extension().and_then(|e| e.to_str()) {
                Some("jsonl") | Some("json") => instruct::read_jsonl(path)?,
                Some("csv") => instruct::read_csv(
                    path,
                    config.prompt_column.as_deref().unwrap_or("prompt"),
                    config.response_column.as_deref().unwrap_or("response"),
                )?,
                _ => {
                    return Err(Error::InvalidSetting(format!(
                        "unknown LLM dataset `{file}`: give fine-foods-reviews, jane-austen, or a .jsonl or .csv instruction file"
                    )));
                }
            };
            let template = template()?;
            let items = tokenize_all(&conversations, template, tokenizer, max_len, file)?;
            let (train, valid) = split_items(items, config)?;
            Ok(LlmData {
                train,
                valid,
                test: TestData::None,
            })
        }
    }
}

/// The training reviews (text, label name), thinned evenly to `max_train` before the split
/// (tokenizing 4,000 reviews through the template takes a while).
fn evenly_reviews(train: &LabelledTexts, config: &LlmFinetuneConfig) -> Vec<(String, String)> {
    let all: Vec<(String, String)> = train
        .texts
        .iter()
        .zip(&train.labels)
        .map(|(t, &l)| (t.clone(), train.classes[l].clone()))
        .collect();
    let limit = config
        .max_train
        .map(|n| (n as f64 / (1.0 - config.recipe.valid_fraction)).ceil() as usize);
    evenly(all, limit)
}

/// Accuracy on the test questions, with its standard error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChoiceScore {
    /// Fraction right.
    pub accuracy: f64,
    /// Its standard error, `sqrt(p(1−p)/n)`.
    pub standard_error: f64,
    /// Right answers.
    pub correct: usize,
}

/// Perplexity on a held-out text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextScore {
    /// Mean negative log-likelihood per token (nats).
    pub loss_per_token: f64,
    /// `exp(loss_per_token)`.
    pub perplexity: f64,
    /// Total bits over the characters the predicted tokens cover.
    pub bits_per_char: f64,
}

/// What a run measures on its test split, the base model (zero-shot) beside the fine-tuned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LlmTest {
    /// Questions scored by the answers' likelihoods.
    Choices {
        /// Questions.
        n: usize,
        /// The answers.
        choices: Vec<String>,
        /// The base model.
        base: Option<ChoiceScore>,
        /// The fine-tuned model.
        tuned: ChoiceScore,
    },
    /// A held-out text.
    Text {
        /// Predicted tokens.
        tokens: usize,
        /// Characters they cover.
        chars: usize,
        /// The base model.
        base: Option<TextScore>,
        /// The fine-tuned model.
        tuned: TextScore,
    },
}

/// What a finished LLM fine-tuning run reports (`report.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlmReport {
    /// Per-epoch metrics (loss and next-token accuracy on the target tokens).
    pub epochs: Vec<EpochMetrics>,
    /// Parameters that trained (the adapters, or all).
    pub trainable_params: usize,
    /// Parameters of the base model.
    pub base_params: usize,
    /// Training items.
    pub train_size: usize,
    /// Validation items.
    pub valid_size: usize,
    /// Target tokens per training epoch.
    pub train_target_tokens: usize,
    /// The base model's loss on the validation items, before fine-tuning (with
    /// `evaluate_base`): the epochs' `valid_loss` starts from here.
    #[serde(default)]
    pub base_valid_loss: Option<f64>,
    /// The test split's measures (none for a user's file).
    pub test: Option<LlmTest>,
    /// Wall-clock seconds of training.
    pub train_seconds: f64,
    /// Seconds of the test measures.
    pub test_seconds: f64,
}

/// Trainable parameters of a module (those with gradients enabled).
pub fn trainable_params<M: Module>(module: &M) -> usize {
    struct Count(usize);
    impl burn::module::ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            if param.is_require_grad() {
                self.0 += param.lazy_shape().num_elements();
            }
        }
    }
    let mut c = Count(0);
    module.visit(&mut c);
    c.0
}

/// Resolves the base model's path.
fn base_path(config: &LlmFinetuneConfig, data_dir: &Path) -> Result<PathBuf> {
    Ok(kiln_transfer::llama::resolve_model(
        &config.base_model,
        data_dir,
    )?)
}

fn chat_parts(path: &Path) -> Result<kiln_transfer::llama::ChatParts> {
    if path.is_dir() {
        let bundle = kiln_transfer::llama::load_hf_folder(path, &Device::flex())?;
        return Ok(kiln_transfer::llama::ChatParts {
            tokenizer: bundle.tokenizer,
            template: bundle.template,
            stop_tokens: bundle.stop_tokens,
        });
    }
    let gguf = kiln_transfer::gguf::GgufFile::open(path).map_err(kiln_transfer::Error::from)?;
    Ok(kiln_transfer::llama::chat_parts_from_gguf(&gguf)?)
}

/// Fine-tunes the LLM `config` describes and writes a run folder (see the module docs); the
/// test split is read once, at the end, by the reloaded run.
pub fn finetune_llm(
    config: &LlmFinetuneConfig,
    run_dir: &Path,
    options: &TrainOptions,
) -> Result<LlmReport> {
    config.check()?;
    let data_dir = options.data_dir();
    let base = base_path(config, &data_dir)?;
    let parts = chat_parts(&base)?;
    let data = load_data(config, &parts, &data_dir)?;
    let context = kiln_transfer::llama::load_config(&base)?.max_position_embeddings;
    if config.max_len > context {
        return Err(Error::InvalidSetting(format!(
            "max_len {} exceeds the model's context of {context} tokens",
            config.max_len
        )));
    }
    let train_target_tokens = data.train.iter().map(TokenizedChat::targets).sum();
    let (train_size, valid_size) = (data.train.len(), data.valid.len());
    let pad_id = parts.tokenizer.pad_id();
    let base_valid_loss = if config.evaluate_base {
        let device = config.recipe.device.device();
        let model = kiln_transfer::llama::load(&base, &device)?.model;
        let (nll, n) = instruct::total_nll(&model, &data.valid, pad_id, EVAL_BATCH)?;
        Some(nll / n.max(1) as f64)
    } else {
        None
    };
    let mut trainable = 0;
    let mut base_params = 0;
    let fitted = crate::fit(&config.recipe(), run_dir, options, |setup| {
        let bundle = kiln_transfer::llama::load(&base, setup.device())?;
        // The tied output projection is a copy of the embedding, not a parameter of its own.
        let head = bundle.model.lm_head.num_params();
        base_params = bundle.model.num_params()
            - if bundle.model.config().tie_word_embeddings {
                head
            } else {
                0
            };
        let model = match &config.lora {
            Some(l) => match l.quantize_base {
                Some(bits) => bundle
                    .model
                    .with_qlora(l.rank, l.alpha, l.dropout, &l.targets, bits)?,
                None => bundle
                    .model
                    .with_lora(l.rank, l.alpha, l.dropout, &l.targets)?,
            },
            None => bundle.model,
        };
        trainable = trainable_params(&model);
        if setup.resumed_from().is_none() {
            let saved = LlmFinetuneConfig {
                recipe: setup.recipe().clone(),
                ..config.clone()
            };
            crate::files::write_toml(&run_dir.join("config.toml"), &saved)?;
        }
        let batcher = LlmBatcher { pad_id };
        let loaders = setup.loaders(
            batcher.clone(),
            batcher,
            InMemDataset::new(data.train.clone()),
            InMemDataset::new(data.valid.clone()),
        );
        Ok((LlmTask { model }, loaders))
    })?;
    let model = fitted.task.model;
    save_tuned(&model, config, run_dir, &data_dir)?;
    drop(model);
    let started = std::time::Instant::now();
    let test = evaluate_llm_run_with(run_dir, &data, options.data_dir.as_deref(), config)?;
    let report = LlmReport {
        epochs: fitted.epochs,
        trainable_params: trainable,
        base_params,
        train_size,
        valid_size,
        train_target_tokens,
        base_valid_loss,
        test,
        train_seconds: fitted.seconds,
        test_seconds: started.elapsed().as_secs_f64(),
    };
    crate::files::write_json(&run_dir.join("report.json"), &report)?;
    Ok(report)
}

/// Continues the LLM fine-tuning run in `run_dir` from its last complete checkpoint.
pub fn resume_llm(run_dir: &Path, options: &TrainOptions) -> Result<LlmReport> {
    let config: LlmFinetuneConfig = crate::files::read_run_config(run_dir)?;
    finetune_llm(
        &config,
        run_dir,
        &TrainOptions {
            resume: true,
            ..options.clone()
        },
    )
}

/// Writes the trained weights: the adapters (LoRA) or the whole model (full fine-tuning).
fn save_tuned(
    model: &Llama,
    config: &LlmFinetuneConfig,
    run_dir: &Path,
    data_dir: &Path,
) -> Result<()> {
    match &config.lora {
        Some(_) => {
            kiln_transfer::adapter::save_adapter(
                model,
                &run_dir.join("adapter"),
                &config.base_model,
            )?;
        }
        None => {
            let parts = chat_parts(&base_path(config, data_dir)?)?;
            let bundle = LlmBundle {
                model: model.valid(),
                tokenizer: parts.tokenizer,
                template: parts.template,
                stop_tokens: parts.stop_tokens,
                source: run_dir.to_path_buf(),
                format: String::new(),
            };
            kiln_transfer::export::save_hf_folder(
                &bundle,
                &run_dir.join("model"),
                kiln_transfer::export::WeightType::F32,
            )?;
        }
    }
    Ok(())
}

/// The fine-tuned model of the LLM run in `dir`, adapters merged into the base weights, with
/// the base's tokenizer, template and stop tokens (what `kiln chat`, `generate`, `serve` and
/// `export` load).
pub fn load_llm_run(dir: &Path, data_dir: Option<&Path>, device: &Device) -> Result<LlmBundle> {
    let config: LlmFinetuneConfig = crate::files::read_run_config(dir)?;
    let data = kiln_data::data_dir::resolve(data_dir.map(Path::to_path_buf));
    let mut bundle = match &config.lora {
        Some(_) => {
            let base = kiln_transfer::llama::load(&base_path(&config, &data)?, device)?;
            with_adapter(base, &dir.join("adapter"))?
        }
        None => kiln_transfer::llama::load_hf_folder(&dir.join("model"), device)?,
    };
    bundle.source = dir.to_path_buf();
    Ok(bundle)
}

/// Whether `dir` is an LLM fine-tuning run folder.
pub fn is_llm_run(dir: &Path) -> bool {
    matches!(crate::RunKind::of(dir), Ok(crate::RunKind::LlmFinetune))
}

/// A chat model by what a user names: an LLM run folder (fine-tuned, merged), a LoRA adapter
/// folder in PEFT's layout (merged onto the base its `adapter_config.json` names), or what
/// [`kiln_transfer::llama::resolve_model`] accepts (a `.gguf` file, a Hugging Face folder, a
/// model name).
pub fn load_chat_model(spec: &str, data_dir: &Path, device: &Device) -> Result<LlmBundle> {
    let path = Path::new(spec);
    if path.is_dir() && path.join("config.toml").is_file() {
        return match crate::RunKind::of(path)? {
            crate::RunKind::LlmFinetune => load_llm_run(path, Some(data_dir), device),
            other => Err(Error::InvalidSetting(format!(
                "{} holds a {other:?} run, not a fine-tuned chat LLM",
                path.display()
            ))),
        };
    }
    if path.is_dir() && path.join("adapter_config.json").is_file() {
        let Some(base) = kiln_transfer::adapter::read_adapter_config(path)?.base_model_name_or_path
        else {
            return Err(Error::InvalidSetting(format!(
                "the LoRA adapter {}'s adapter_config.json names no base model (base_model_name_or_path is null); name the base with --model and this folder with --adapter",
                path.display()
            )));
        };
        let resolved = kiln_transfer::llama::resolve_model(&base, data_dir).map_err(|e| {
            Error::InvalidSetting(format!(
                "the LoRA adapter {} was trained on `{base}` (its adapter_config.json's base_model_name_or_path), which Kiln cannot find: {e}; name the base with --model and this folder with --adapter",
                path.display()
            ))
        })?;
        let bundle = kiln_transfer::llama::load(&resolved, device)?;
        return with_adapter(bundle, path);
    }
    let resolved = kiln_transfer::llama::resolve_model(spec, data_dir)?;
    Ok(kiln_transfer::llama::load(&resolved, device)?)
}

/// `bundle` with the LoRA adapter in `dir` (PEFT's layout: `adapter_config.json`,
/// `adapter_model.safetensors`) merged into its weights, as `kiln chat --model BASE --adapter
/// DIR` loads it; an error naming the file when the adapter does not fit the model.
pub fn with_adapter(mut bundle: LlmBundle, dir: &Path) -> Result<LlmBundle> {
    let rank = kiln_transfer::adapter::read_adapter_config(dir)?.r;
    bundle.model = kiln_transfer::adapter::merge_adapter(bundle.model, dir)?;
    bundle.format = format!(
        "{} + LoRA r{rank} merged (from {})",
        bundle.format,
        dir.display()
    );
    Ok(bundle)
}

/// [`load_chat_model`], then [`with_adapter`] when an adapter folder is given.
pub fn load_chat_model_with(
    spec: &str,
    adapter: Option<&Path>,
    data_dir: &Path,
    device: &Device,
) -> Result<LlmBundle> {
    let bundle = load_chat_model(spec, data_dir, device)?;
    match adapter {
        Some(dir) => with_adapter(bundle, dir),
        None => Ok(bundle),
    }
}

const EVAL_BATCH: usize = 8;

fn score_choices(
    model: &Llama,
    parts: (&ChatTemplate, &TextTokenizer),
    prompts: &[Vec<Message>],
    answers: &[usize],
    choices: &[String],
) -> Result<ChoiceScore> {
    let names: Vec<&str> = choices.iter().map(String::as_str).collect();
    let scores = instruct::choice_logprobs(model, parts.0, parts.1, prompts, &names, EVAL_BATCH)?;
    let correct = scores
        .iter()
        .zip(answers)
        .filter(|(s, a)| {
            let best = s
                .iter()
                .enumerate()
                .max_by(|x, y| x.1.total_cmp(y.1))
                .map(|(i, _)| i);
            best == Some(**a)
        })
        .count();
    let n = answers.len().max(1) as f64;
    let p = correct as f64 / n;
    Ok(ChoiceScore {
        accuracy: p,
        standard_error: (p * (1.0 - p) / n).sqrt(),
        correct,
    })
}

fn score_text(
    model: &Llama,
    windows: &[TokenizedChat],
    chars: usize,
    pad_id: u32,
) -> Result<(TextScore, usize)> {
    let (nll, tokens) = instruct::total_nll(model, windows, pad_id, EVAL_BATCH)?;
    let loss = nll / tokens.max(1) as f64;
    Ok((
        TextScore {
            loss_per_token: loss,
            perplexity: loss.exp(),
            bits_per_char: nll / std::f64::consts::LN_2 / chars.max(1) as f64,
        },
        tokens,
    ))
}

fn evaluate_llm_run_with(
    run_dir: &Path,
    data: &LlmData,
    data_dir: Option<&Path>,
    config: &LlmFinetuneConfig,
) -> Result<Option<LlmTest>> {
    let device = config.recipe.device.device();
    let tuned = load_llm_run(run_dir, data_dir, &device)?;
    let base = || -> Result<LlmBundle> {
        let dir = kiln_data::data_dir::resolve(data_dir.map(Path::to_path_buf));
        Ok(kiln_transfer::llama::load(
            &base_path(config, &dir)?,
            &device,
        )?)
    };
    Ok(match &data.test {
        TestData::None => None,
        TestData::Choices {
            prompts,
            answers,
            choices,
        } => {
            let template = tuned
                .template
                .as_ref()
                .ok_or_else(|| Error::InvalidSetting("the model has no chat template".into()))?;
            let score = score_choices(
                &tuned.model,
                (template, &tuned.tokenizer),
                prompts,
                answers,
                choices,
            )?;
            let base_score = if config.evaluate_base {
                let b = base()?;
                Some(score_choices(
                    &b.model,
                    (template, &tuned.tokenizer),
                    prompts,
                    answers,
                    choices,
                )?)
            } else {
                None
            };
            Some(LlmTest::Choices {
                n: answers.len(),
                choices: choices.clone(),
                base: base_score,
                tuned: score,
            })
        }
        TestData::Text { windows, chars } => {
            let pad = tuned.tokenizer.pad_id();
            let (score, tokens) = score_text(&tuned.model, windows, *chars, pad)?;
            let base_score = if config.evaluate_base {
                Some(score_text(&base()?.model, windows, *chars, pad)?.0)
            } else {
                None
            };
            Some(LlmTest::Text {
                tokens,
                chars: *chars,
                base: base_score,
                tuned: score,
            })
        }
    })
}

/// Reloads the LLM run in `dir` and measures it on its dataset's test split (what `kiln eval`
/// computes for an LLM run).
pub fn evaluate_llm_run(dir: &Path, data_dir: Option<&Path>) -> Result<Option<LlmTest>> {
    let config: LlmFinetuneConfig = crate::files::read_run_config(dir)?;
    let data = kiln_data::data_dir::resolve(data_dir.map(Path::to_path_buf));
    let parts = chat_parts(&base_path(&config, &data)?)?;
    let loaded = load_data(&config, &parts, &data)?;
    evaluate_llm_run_with(dir, &loaded, data_dir, &config)
}

/// Whether `from` names a chat LLM to fine-tune (a `.gguf` file, a model Kiln fetches by
/// name, or a Hugging Face Llama folder) rather than a Kiln run or a sentence encoder.
pub fn is_llm_source(from: &Path) -> bool {
    if from.extension().is_some_and(|e| e == "gguf") {
        return true;
    }
    if let Some(name) = from.to_str()
        && kiln_transfer::fetch::model(name).is_ok()
        && !from.exists()
    {
        return true;
    }
    from.is_dir()
        && from.join("config.json").is_file()
        && kiln_transfer::llama::load_config(from).is_ok()
}

/// What `kiln finetune --from MODEL.gguf` asks for, beside the loop's settings.
#[derive(Clone, Debug, Default)]
pub struct LlmRequest {
    /// The base model (`--from`).
    pub base_model: String,
    /// The dataset.
    pub dataset: String,
    /// LoRA rank; none with `full` fine-tunes every weight.
    pub lora_rank: Option<usize>,
    /// LoRA alpha (default 2 × rank).
    pub lora_alpha: Option<f64>,
    /// LoRA dropout (default 0.05).
    pub lora_dropout: Option<f64>,
    /// Adapted projections (default all seven).
    pub targets: Vec<String>,
    /// QLoRA: the base weights of the adapted projections as 8- or 4-bit integers.
    pub qlora_bits: Option<u8>,
    /// Fine-tune every weight instead of LoRA.
    pub full: bool,
    /// Tokens per sequence (default 256).
    pub max_len: Option<usize>,
    /// CSV prompt column.
    pub prompt_column: Option<String>,
    /// CSV response column.
    pub response_column: Option<String>,
    /// Limits on the training, validation and test items.
    pub max_train: Option<usize>,
    /// See `max_train`.
    pub max_valid: Option<usize>,
    /// See `max_train`.
    pub max_test: Option<usize>,
    /// Skip measuring the base model on the test split.
    pub skip_base: bool,
}

/// The run config of `request` with the loop's `overrides` on [`LlmFinetuneConfig::lora`]'s
/// defaults.
pub fn plan(request: &LlmRequest, overrides: &crate::RecipeOverrides) -> Result<LlmFinetuneConfig> {
    let dataset = crate::dataset_reference(&request.dataset)?;
    let base = match Path::new(&request.base_model).exists() {
        true => crate::dataset_reference(&request.base_model)?,
        false => request.base_model.clone(),
    };
    let mut config = LlmFinetuneConfig::lora(&base, &dataset);
    if request.full {
        if request.lora_rank.is_some()
            || request.lora_alpha.is_some()
            || !request.targets.is_empty()
        {
            return Err(Error::InvalidSetting(
                "full fine-tuning trains every weight: give it no LoRA rank, alpha or targets"
                    .into(),
            ));
        }
        config.lora = None;
        config.name = "llm-full".into();
    } else {
        let mut lora = LoraSettings::default();
        if let Some(r) = request.lora_rank {
            lora.rank = r;
            lora.alpha = 2.0 * r as f64;
        }
        if let Some(a) = request.lora_alpha {
            lora.alpha = a;
        }
        if let Some(d) = request.lora_dropout {
            lora.dropout = d;
        }
        if !request.targets.is_empty() {
            lora.targets = request.targets.clone();
        }
        lora.quantize_base = request.qlora_bits;
        config.lora = Some(lora);
    }
    if let Some(n) = request.max_len {
        config.max_len = n;
    }
    config.prompt_column = request.prompt_column.clone();
    config.response_column = request.response_column.clone();
    config.max_train = request.max_train;
    config.max_valid = request.max_valid;
    config.max_test = request.max_test;
    config.evaluate_base = !request.skip_base;
    let mut recipe = config.recipe();
    overrides.apply(&mut recipe)?;
    config.set_recipe(recipe)?;
    config.check()?;
    Ok(config)
}

/// What [`export`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// One GGUF file (llama.cpp, Ollama, Kiln).
    Gguf,
    /// A Hugging Face folder (transformers, Kiln).
    Safetensors,
}

impl std::str::FromStr for ExportFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "gguf" => Ok(Self::Gguf),
            "safetensors" | "hf" => Ok(Self::Safetensors),
            other => Err(Error::InvalidSetting(format!(
                "export format `{other}`: expected gguf or safetensors"
            ))),
        }
    }
}

/// Loads the chat model `spec` names ([`load_chat_model`]: a fine-tuned run is merged), with
/// the LoRA adapter folder `adapter` merged when given ([`with_adapter`]), and writes it to
/// `out` as `format` with matrices stored as `ty`; returns what was loaded.
pub fn export(
    spec: &str,
    adapter: Option<&Path>,
    data_dir: &Path,
    out: &Path,
    format: ExportFormat,
    ty: kiln_transfer::export::WeightType,
) -> Result<LlmBundle> {
    let bundle = load_chat_model_with(spec, adapter, data_dir, &Device::flex())?;
    let name = Path::new(spec)
        .file_name()
        .map_or_else(|| spec.to_string(), |n| n.to_string_lossy().into_owned());
    match format {
        ExportFormat::Gguf => kiln_transfer::export::save_gguf(&bundle, out, ty, &name)?,
        ExportFormat::Safetensors => kiln_transfer::export::save_hf_folder(&bundle, out, ty)?,
    }
    Ok(bundle)
}
