//! Every kind of run at once: resuming any of them ([`resume_run`]) and what each reports
//! ([`RunReport`]). The top layer of the crate: it uses every run kind, none of them uses it
//! (which kind a folder holds, [`crate::RunKind`], sits below them in `kind`).

use std::path::Path;

use crate::{Result, RunKind};

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
