//! The whole xtask command line, in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Kiln's project automation.
#[derive(Parser, Debug)]
#[command(name = "cargo xtask")]
pub struct Xtask {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a zoo preset with its default recipe (e.g. `cargo xtask train mlp`).
    Train(TrainArgs),
    /// What CI runs: fmt check, clippy with warnings denied, the test suite.
    Ci(CiArgs),
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Preset name (`kiln models` lists them).
    pub model: String,
    /// Override the recipe's number of epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Override the recipe's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run folder (default: runs/<model>-<unix time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CiArgs {
    /// Skip fmt and clippy; run only the tests.
    #[arg(long)]
    pub tests_only: bool,
}
