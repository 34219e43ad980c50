//! The command line of xtask's heavy commands (those that build the library), in one place;
//! `cargo xtask` forwards them here.

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
    /// Benchmarks: `cargo xtask bench` (zoo models' training and inference steps, optionally
    /// `--vs-torch PYTHON`), `cargo xtask bench data` (MNIST batching).
    Bench(BenchArgs),
    /// The compression table (method, model.bpk bytes, params, sparsity, test accuracy,
    /// inference samples/s) of run folders: dense, pruned, quantized, distilled.
    CompressReport(CompressReportArgs),
    /// One of the README's comparisons over several seeds (`cargo xtask seeds hinton --seeds
    /// 1-3`): mean ± sd of every metric and paired differences with their standard error, in
    /// OUT/summary.md and summary.json. `cargo xtask seeds list` lists the recipes.
    Seeds(SeedsArgs),
}

#[derive(Args, Debug)]
pub struct SeedsArgs {
    /// The recipe (`list` to see them all).
    pub recipe: String,
    /// Seeds: a list (1,2,3), a range (1-5) or both.
    #[arg(long, default_value = "1-3")]
    pub seeds: String,
    /// Where the per-seed runs and the summary go (default: runs/seeds/RECIPE); a folder that
    /// already holds some seeds of the recipe keeps them and runs only the others.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A smoke run of the pipeline (one epoch on a few images per class): not a measurement.
    #[arg(long)]
    pub tiny: bool,
    /// Print every run's epochs.
    #[arg(long)]
    pub verbose: bool,
    /// Data directory (default: KILN_DATA_DIR, else ~/.cache/kiln/data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CompressReportArgs {
    /// Run folders (each written by `kiln train`, `prune`, `quantize` or `distill`); a folder
    /// that holds run folders stands for all of them.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Where to write the table (Markdown) and the rows (JSON, same name).
    #[arg(long, default_value = "target/compress/report.md")]
    pub out: PathBuf,
    /// Data directory (default: KILN_DATA_DIR, else ~/.cache/kiln/data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Suite to run: `models` (training and inference steps of the zoo presets on each CPU
    /// device, optionally against PyTorch), `data` (MNIST batching against a training step) or
    /// `llm` (SmolLM2 generation speed, optionally against Hugging Face transformers) or
    /// `serve` (`kiln serve` under load on loopback beside the same models in-process;
    /// `--smoke` for a few requests) or `lora` (LoRA against full fine-tuning of SmolLM2:
    /// trainable parameters, peak memory, step time).
    #[arg(default_value = "models")]
    pub suite: String,
    /// Measured rounds (models: each case once per round, alternating with PyTorch; data:
    /// after one warm-up round).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// models: comma-separated presets or reference aliases, `reference` (mlp,cnn,vit) or
    /// `all` (the reference models and every other preset).
    #[arg(long, default_value = "all")]
    pub models: String,
    /// models: comma-separated modes.
    #[arg(long, default_value = "train,infer")]
    pub modes: String,
    /// models: comma-separated devices (default: every compiled CPU device).
    #[arg(long)]
    pub devices: Option<String>,
    /// models: timed steps per case.
    #[arg(long, default_value_t = 30)]
    pub steps: usize,
    /// models: warm-up steps per case.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// models: worker threads for both Kiln and PyTorch (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// models: also run ../shared/bench/torch_bench.py with this Python (one with torch), on the
    /// reference models, alternating with Kiln each round; llm: llm_bench.py (needs torch,
    /// transformers and gguf).
    #[arg(long)]
    pub vs_torch: Option<PathBuf>,
    /// models: the PyTorch reference script.
    #[arg(long, default_value = "../shared/bench/torch_bench.py")]
    pub torch_script: PathBuf,
    /// models: a few steps of each case, one round, no timing worth reading (what CI runs).
    #[arg(long)]
    pub smoke: bool,
    /// Where the reports go.
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
    /// data: MNIST training images per round (the first N/10 of each class).
    #[arg(long, default_value_t = 10_000)]
    pub images: usize,
    /// llm: the model (a .gguf file, a Hugging Face folder or `smollm2`).
    #[arg(long, default_value = "smollm2")]
    pub llm: String,
    /// llm: thread counts, each in its own process.
    #[arg(long, default_value = "1,2")]
    pub llm_threads: String,
    /// llm: tokens generated per call.
    #[arg(long, default_value_t = 64)]
    pub new_tokens: usize,
    /// llm: timed calls per prompt in each round (after one warm-up).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// llm: the transformers reference script (run with --vs-torch PYTHON).
    #[arg(long, default_value = "../shared/bench/llm_bench.py")]
    pub llm_script: PathBuf,
    /// llm: data directory (default: KILN_DATA_DIR, else ~/.cache/kiln/data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Internal: run one case `MODEL:MODE:DEVICE` in this process and print its JSON line.
    #[arg(long, hide = true)]
    pub case: Option<String>,
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
    /// Another dataset than the preset's (the model's input and output follow the data).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Augmentation of training images, e.g. `flip,rotate=15,scale=0.9..1.1`.
    #[arg(long)]
    pub augment: Option<String>,
    /// Target column of a CSV table (default: the last column).
    #[arg(long)]
    pub target: Option<String>,
    /// Size images of an image folder are resized to, HxW (e.g. 28x28).
    #[arg(long, value_parser = kiln_data::image_folder::parse_size)]
    pub image_size: Option<[usize; 2]>,
    /// Read an image folder as grey images instead of RGB.
    #[arg(long)]
    pub grey: bool,
    /// Data directory (default: KILN_DATA_DIR, which `.cargo/config.toml` points at
    /// ../shared/data, else ~/.cache/kiln/data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Run folder (default: runs/<model>-<unix time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
}
