//! Every kind of run at once: which kind a run folder or a preset is ([`RunKind`]), and
//! resuming any of them ([`resume_run`]). The top layer of the crate: it uses every run kind,
//! none of them uses it.

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

/// What a run of any kind reports when it finishes ([`resume_run`]).
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum RunReport {
    /// [`crate::train`], [`crate::resume`].
    Classifier(crate::TrainReport),
    /// [`crate::regression::train_regression`].
    Regression(crate::regression::RegressionReport),
    /// [`crate::multitask::train_multitask`].
    MultiTask(crate::multitask::MultiTaskReport),
    /// [`crate::lm::train_lm`].
    LanguageModel(crate::lm::LmReport),
    /// [`crate::text::train_text_classifier`].
    TextClassifier(crate::text::TextReport),
    /// [`crate::llm::finetune_llm`].
    LlmFinetune(crate::llm::LlmReport),
}

/// Continues the run in `run_dir`, whatever its kind, from its last complete checkpoint
/// (what `kiln train --resume` does).
pub fn resume_run(run_dir: &Path, options: &crate::TrainOptions) -> Result<RunReport> {
    Ok(match RunKind::of(run_dir)? {
        RunKind::Classifier => RunReport::Classifier(crate::resume(run_dir, options)?),
        RunKind::Regression => {
            RunReport::Regression(crate::regression::resume_regression(run_dir, options)?)
        }
        RunKind::MultiTask => {
            RunReport::MultiTask(crate::multitask::resume_multitask(run_dir, options)?)
        }
        RunKind::LanguageModel => RunReport::LanguageModel(crate::lm::resume_lm(run_dir, options)?),
        RunKind::TextClassifier => {
            RunReport::TextClassifier(crate::text::resume_text(run_dir, options)?)
        }
        RunKind::LlmFinetune => RunReport::LlmFinetune(crate::llm::resume_llm(run_dir, options)?),
    })
}

/// A dataset named on a command line, as a run's config records it: a file given by path is
/// made absolute (so `kiln eval` and `--resume` find it from anywhere), a name stays a name.
pub fn dataset_reference(dataset: &str) -> Result<String> {
    if Path::new(dataset).is_file() {
        let absolute = std::path::absolute(dataset).map_err(io(dataset))?;
        return Ok(absolute.to_string_lossy().into_owned());
    }
    Ok(dataset.to_string())
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
