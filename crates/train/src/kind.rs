//! Which kind of run a run folder or a preset is ([`RunKind`]): below the run kinds, so that
//! any of them can tell a folder of its own kind from another's (a chat model named by a
//! classifier's run folder is refused by kind), and [`crate::resume_run`] above them
//! dispatches on it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::io;
use crate::files::RunFiles;
use crate::{Error, Result};

/// What kind of run a run folder holds (each kind has its own config and reload).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunKind {
    /// An image or table classifier ([`crate::train`], fine-tuned, distilled, compressed).
    Classifier,
    /// A table regressor ([`crate::regression::train_regression`]).
    Regression,
    /// A shared backbone with several heads ([`crate::multitask::train_multitask`]).
    MultiTask,
    /// A causal language model ([`crate::lm::train_lm`]).
    LanguageModel,
    /// A text classifier ([`crate::text::train_text_classifier`]).
    TextClassifier,
    /// A fine-tuned chat LLM ([`crate::llm::finetune_llm`]).
    LlmFinetune,
}

impl RunKind {
    /// The kind of run a zoo preset trains: a causal LM trains a language model, the text
    /// transformer a text classifier, every other preset a classifier.
    pub fn of_preset(name: &str) -> Result<Self> {
        Ok(match kiln_models::preset(name)?.config {
            kiln_models::ModelConfig::CausalLm(_) => Self::LanguageModel,
            kiln_models::ModelConfig::TransformerClassifier(_) => Self::TextClassifier,
            _ => Self::Classifier,
        })
    }

    /// Reads the kind of the run in `dir` from its `config.toml` (each kind's config has
    /// fields the others lack).
    pub fn of(dir: &Path) -> Result<Self> {
        crate::eval::check_run_dir(dir)?;
        let path = RunFiles::new(dir).config;
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| Error::BadRunFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let has = |key: &str| table.contains_key(key);
        Ok(if has("base_model") {
            Self::LlmFinetune
        } else if has("corpus") {
            Self::LanguageModel
        } else if has("tokenizer") {
            Self::TextClassifier
        } else if has("heads") {
            Self::MultiTask
        } else if has("test_fraction") && has("hidden") {
            Self::Regression
        } else if has("model") && has("dataset") {
            Self::Classifier
        } else {
            return Err(Error::BadRunFile {
                path,
                reason: "not a config written by a Kiln run".into(),
            });
        })
    }
}
