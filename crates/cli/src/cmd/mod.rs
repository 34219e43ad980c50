//! One module per command: each holds the command's clap arguments and maps them onto the
//! library, printing what it returns.

pub(crate) mod chat;
pub(crate) mod distill;
pub(crate) mod embed;
pub(crate) mod eval;
pub(crate) mod export;
pub(crate) mod fetch;
pub(crate) mod finetune;
pub(crate) mod generate;
pub(crate) mod models;
pub(crate) mod predict;
pub(crate) mod prune;
pub(crate) mod quantize;
pub(crate) mod regress;
pub(crate) mod seeds;
pub(crate) mod serve;
pub(crate) mod summary;
pub(crate) mod train;

/// The settings of the training loop, shared by every command that trains (`kiln train`,
/// `regress`, `finetune`, `distill`): each one given replaces the run's recipe's
/// (`kiln_train::RecipeOverrides`).
#[derive(clap::Args, Debug, Default)]
pub(crate) struct RecipeArgs {
    /// Number of epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Mini-batch size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Base learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Optimizer: sgd, momentum, nesterov, adam (default), adamw, rmsprop.
    #[arg(long)]
    optimizer: Option<String>,
    /// Weight decay (L2; decoupled for adamw).
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Clip each parameter's gradient to this L2 norm.
    #[arg(long, conflicts_with = "clip_value")]
    clip_norm: Option<f64>,
    /// Clip gradient elements to ±this.
    #[arg(long)]
    clip_value: Option<f64>,
    /// Learning-rate schedule: constant, step:EVERY:GAMMA, exp:GAMMA, cosine[:MIN],
    /// warmup-cosine:WARMUP[:MIN].
    #[arg(long)]
    schedule: Option<String>,
    /// Reduce the learning rate on a plateau of the monitored value: FACTOR:PATIENCE[:MIN_LR].
    #[arg(long)]
    reduce_on_plateau: Option<String>,
    /// Stop after PATIENCE epochs without improvement by more than MIN_DELTA, keeping the
    /// best epoch's weights: PATIENCE[:MIN_DELTA].
    #[arg(long)]
    early_stopping: Option<String>,
    /// Validation value for the best epoch, early stopping and plateaus: valid-loss
    /// (default) or valid-accuracy.
    #[arg(long)]
    monitor: Option<String>,
    /// Parameter group (repeatable): PATH=SCALE multiplies the learning rate of the
    /// parameters under module PATH, PATH=frozen freezes them (e.g. model.Mlp.hidden.0=frozen);
    /// PATH may be a layer index: @N, @A..B, @..B, @..-1 (e.g. @..2=frozen).
    #[arg(long = "group")]
    groups: Vec<String>,
    /// Master seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Device: cpu (flex), ndarray, wgpu, wgpu:N.
    #[arg(long)]
    device: Option<String>,
    /// Share of the training data held out for validation (stratified, by the seed; default
    /// 0.1): what the per-epoch "valid" columns, early stopping, plateaus and the best epoch
    /// watch. The test split is the dataset's own and is read once, at the end.
    #[arg(long)]
    valid_fraction: Option<f64>,
    /// Parts of a data-parallel training step, each on its own core, for models without
    /// dropout or batch norm (default: 2 from batches of 32, or KILN_TRAINING_SHARDS; 1
    /// turns it off). The count is recorded in the run's config.toml.
    #[arg(long)]
    shards: Option<usize>,
}

impl RecipeArgs {
    /// The library's overrides.
    pub(crate) fn overrides(&self) -> kiln_train::RecipeOverrides {
        kiln_train::RecipeOverrides {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            optimizer: self.optimizer.clone(),
            weight_decay: self.weight_decay,
            clip_norm: self.clip_norm,
            clip_value: self.clip_value,
            schedule: self.schedule.clone(),
            plateau: self.reduce_on_plateau.clone(),
            early_stopping: self.early_stopping.clone(),
            monitor: self.monitor.clone(),
            groups: self.groups.clone(),
            seed: self.seed,
            device: self.device.clone(),
            valid_fraction: self.valid_fraction,
            shards: self.shards,
        }
    }
}

/// `--data-dir`, which every command that reads data or models takes.
#[derive(clap::Args, Debug, Default)]
pub(crate) struct DataDirArgs {
    /// Data directory (default: KILN_DATA_DIR, else ~/.cache/kiln/data).
    #[arg(long)]
    pub(crate) data_dir: Option<std::path::PathBuf>,
}

/// What every command module imports.
pub(crate) mod prelude {
    pub(crate) use std::path::{Path, PathBuf};

    pub(crate) use anyhow::{Context, Result, bail};
    pub(crate) use kiln_core::DeviceSpec;
    pub(crate) use kiln_models::ModelConfig;
    pub(crate) use kiln_train::{TrainConfig, TrainOptions};

    pub(crate) use super::{DataDirArgs, RecipeArgs};
    pub(crate) use crate::report::*;
    pub(crate) use crate::{Format, PruneMethod, llm};
}
