//! # kiln-train
//!
//! Training and evaluation on burn-train's `SupervisedTraining` + `Learner`.
//!
//! The loop is open: [`fit`](fit()) trains any burn `Module` that implements [`Task`] (a batch
//! in, per-sample losses out) with a [`Recipe`] (optimizer, clipping, parameter groups,
//! schedule, plateau, early stopping, seed, device, validation share, shards, QAT, pruned
//! fine-tuning), atomic checkpoints, exact resume and a run folder; see the [`fit`](mod@fit)
//! module. Every run kind below is a [`Task`] on that loop, and each kind's config holds its
//! [`Recipe`] flattened (the `recipe` field; same TOML keys in every kind, unknown keys
//! refused by [`NoOtherKeys`]), so [`RecipeOverrides`] (what the command line gives) apply
//! to all of them; [`resume_run`] continues a run of any kind.
//!
//! - [`TrainConfig`]: everything that defines a run (model, dataset, the recipe's epochs,
//!   batch size, learning rate, seed, device...), saved as `config.toml` in the run folder.
//! - [`train`]: trains a zoo classifier with cross-entropy (soft targets under mixup/cutmix),
//!   the configured `kiln-optim` optimizer and learning-rate schedule, and seeded augmentation;
//!   prints per-epoch learning rate and train/validation loss and accuracy, and writes a run
//!   folder with checkpoints after every epoch. Validation images are held out from the
//!   training data (10% by default, `recipe.valid_fraction`; the test split is the dataset's
//!   fixed one, read once at the end by the reloaded run). Early stopping ([`EarlyStopping`]), the
//!   [`Monitor`]ed value, reduce-on-plateau, label smoothing and parameter groups are config
//!   fields; a NaN/inf training loss stops the run naming the epoch and step.
//! - [`resume`]: continues a run from its last checkpoint, bit-identical to an uninterrupted
//!   run.
//! - [`regression::train_regression`]: an MLP regressor on a table (MSE or MAE), with MSE,
//!   RMSE, MAE and R² in the target's units.
//! - [`multitask::train_multitask`]: a shared backbone with several heads and weighted losses,
//!   with per-head test metrics.
//! - [`evaluate_run`]: reloads a run folder and measures held-out test accuracy, top-5
//!   accuracy, per-class precision/recall/F1 and the confusion matrix.
//! - [`lm::train_lm`]: trains a causal language model on a character corpus (Jane Austen,
//!   *Persuasion* held out as the test text), reporting validation and test loss, perplexity
//!   and bits per character against the unigram baseline, and a seeded text sample.
//! - [`text::train_text_classifier`]: trains a transformer text classifier on labelled texts
//!   tokenized with a Hugging Face `tokenizer.json`.
//!
//! ## Run folder
//!
//! | file | content |
//! |---|---|
//! | `config.toml` | the [`TrainConfig`] (or the run kind's config), enough to reproduce the run, the shard count included |
//! | `recipe.toml` | the loop's [`Recipe`], as [`fit`](fit()) resolved it (checked on resume) |
//! | `fit.json` | how the loop ended: best epoch, the epoch whose weights were kept, early stop |
//! | `model.bpk` | trained weights (burn's burnpack format) |
//! | `normalizer.json` | the input standardisation fitted on the training split |
//! | `metrics.csv` | per-epoch learning rate, train and validation loss and accuracy |
//! | `report.json` | final held-out test metrics ([`TrainReport`]) |
//! | `curves.png`, `confusion.png` | loss/accuracy per epoch; the test confusion matrix ([`plot`]) |
//! | `checkpoint/` | `model-N.bpk`, `optim-N.bpk`, `scheduler-N.bpk`: the last two epochs and the best |
//!
//! kiln-train depends on kiln-core, kiln-models, kiln-data, kiln-optim and kiln-transfer, and
//! never on the CLI.

mod config;
mod engine;
mod error;
mod eval;
mod files;
pub mod finetune;
pub mod fit;
mod kind;
pub mod llm;
pub mod lm;
pub mod multitask;
pub mod plot;
mod pretrained;
mod recipe;
pub mod regression;
mod renderer;
mod run;
mod runs;
pub mod seeds;
mod step;
mod task;
pub mod text;

pub use config::{Distill, FineTune, TrainConfig, offline_preset};
pub use engine::Fitted;
pub use error::{Error, Result};
pub use eval::{
    ClassMetrics, EvalReport, EvalSplit, ImageClassifier, class_metrics, evaluate, evaluate_run,
    evaluate_run_in, evaluate_run_split, evaluate_with, load_data, load_run, predict_images,
    run_input_shape, save_run,
};
pub use files::{EpochMetrics, dataset_reference, save_module};
pub use fit::{Loaders, Setup, TrainOptions, fit};
pub use kind::RunKind;
pub use recipe::{EarlyStopping, Monitor, NoOtherKeys, Recipe, RecipeOverrides};
pub use run::{TrainReport, default_run_dir, resume, train};
pub use runs::{RunReport, resume_run};
pub use step::{
    Shard, Shards, Task, TaskOutput, fake_quantized, mask_pruned_gradients, train_step,
};
pub use task::{
    ClassificationTask, Teacher, distillation_loss, per_sample_cross_entropy, soft_cross_entropy,
};
