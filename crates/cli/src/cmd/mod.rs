//! One module per command: each holds the command's clap arguments and maps them onto the
//! library, printing what it returns.

pub(crate) mod chat;
pub(crate) mod distill;
pub(crate) mod embed;
pub(crate) mod eval;
pub(crate) mod fetch;
pub(crate) mod finetune;
pub(crate) mod generate;
pub(crate) mod models;
pub(crate) mod predict;
pub(crate) mod prune;
pub(crate) mod quantize;
pub(crate) mod regress;
pub(crate) mod seeds;
pub(crate) mod summary;
pub(crate) mod train;

/// What every command module imports.
pub(crate) mod prelude {
    pub(crate) use std::path::{Path, PathBuf};

    pub(crate) use anyhow::{Context, Result, bail};
    pub(crate) use kiln_core::DeviceSpec;
    pub(crate) use kiln_models::ModelConfig;
    pub(crate) use kiln_train::{TrainConfig, TrainOptions};

    pub(crate) use crate::report::*;
    pub(crate) use crate::{Format, PruneMethod, llm};
}
