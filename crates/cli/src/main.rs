//! `kiln`: the command-line front end. It parses arguments and calls the library crates; all
//! logic lives in kiln-core, kiln-models, kiln-data and kiln-train.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

mod cmd;
mod llm;
mod report;

/// Kiln: train, inspect and evaluate deep-learning models from the command line.
#[derive(Parser, Debug)]
#[command(name = "kiln", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// List the model zoo's presets.
    Models,
    /// Print a model's per-layer summary (output shapes, parameters, mult-adds).
    Summary(cmd::summary::Args),
    /// Train a model and write a run folder (config, weights, metrics, report).
    Train(cmd::train::Args),
    /// Train an MLP regressor on a table (a named table or a CSV file) and print held-out MSE,
    /// RMSE, MAE and R² in the target's units.
    Regress(cmd::regress::Args),
    /// Sentence embeddings with a sentence-transformers BERT folder (default:
    /// all-MiniLM-L6-v2 in the data directory): one JSON line per text, or with --similarity
    /// the cosine-similarity matrix.
    Embed(cmd::embed::Args),
    /// Fine-tune the model of a run folder on another image dataset, or a pretrained sentence
    /// encoder (e.g. models/all-MiniLM-L6-v2) on a text dataset: a new head, the backbone
    /// frozen (linear probing) or trained at its own rate; or a chat LLM (--from MODEL.gguf,
    /// --lora-rank R) on instruction data with LoRA adapters; writes a normal run folder.
    Finetune(cmd::finetune::Args),
    /// Write a chat LLM (a fine-tuned run with its adapters merged, or any model --model
    /// takes) as a GGUF file (f16 or q8_0) or a Hugging Face safetensors folder.
    Export(cmd::export::Args),
    /// Classify images and print the top classes: with a run folder's model (--run), or a
    /// pretrained ImageNet model (--model, default efficientnet-lite0).
    Predict(cmd::predict::Args),
    /// Prune a trained run: single weights by magnitude, or whole conv channels, dense
    /// neurons and attention heads (structured), one shot or iteratively with fine-tuning; writes the pruned run
    /// folder (with prune.json).
    Prune(cmd::prune::Args),
    /// Quantize a trained run's Linear and convolution weights to int8 (or int4) after
    /// training, with clipping calibrated on training images; writes the quantized run folder
    /// (with quantize.json).
    Quantize(cmd::quantize::Args),
    /// Train a student by knowledge distillation from a trained teacher run: the student
    /// learns from the teacher's temperature-softened outputs and the labels.
    Distill(cmd::distill::Args),
    /// Generate text with a trained language-model run (e.g. `kiln train char-lm`) or a
    /// pretrained LLM (`--model smollm2`), streamed to stdout as it is sampled.
    Generate(cmd::generate::Args),
    /// Chat with a pretrained LLM through its chat template, one message per line of stdin
    /// (interactive or piped), each reply streamed; /reset forgets the conversation, /exit or
    /// Ctrl-D quits.
    Chat(cmd::chat::Args),
    /// Download a pretrained model by name into Kiln's model cache (KILN_MODEL_CACHE, else
    /// ~/.cache/kiln/models), verified by SHA-256, and print its path; `list` shows the names.
    /// Fetching again is a no-op.
    Fetch(cmd::fetch::Args),
    /// Run a `kiln train`, `finetune`, `distill` or `regress` command once per seed and
    /// summarise its test metrics: mean ± sd, range and every seed's value, in OUT/summary.md
    /// and summary.json (e.g. `kiln seeds 1-5 --out runs/mlp-seeds -- train mlp --epochs 10`).
    /// Each seed's run is OUT/seed-N/run; a sweep run again skips the seeds it has.
    Seeds(cmd::seeds::Args),
    /// Reload a run folder and evaluate it on its dataset's test split (classifiers: accuracy
    /// and per-class metrics; language models: loss, perplexity and bits per character).
    Eval(cmd::eval::Args),
    /// Serve chat LLMs, sentence embeddings and image classifiers over an OpenAI-compatible
    /// HTTP API (chat and text completions with streaming, embeddings, classification,
    /// models, health, readiness, Prometheus metrics, OpenAPI document).
    Serve(cmd::serve::Args),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum PruneMethod {
    /// Individual weights with the smallest magnitudes.
    Magnitude,
    /// Whole conv channels, dense neurons and attention heads with the smallest L1 norms,
    /// removed from the layers (--sparsity is the fraction removed).
    Structured,
    /// As structured, scored by L2 norm.
    StructuredL2,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

/// Restores the default action of SIGPIPE, which Rust's runtime ignores: `kiln ... | head`
/// then ends quietly when the reader closes the pipe, as `cat` or `grep` do, instead of
/// panicking in `println!` on the broken pipe.
fn exit_quietly_on_closed_stdout() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any thread starts; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    exit_quietly_on_closed_stdout();
    kiln_core::allocator::tune();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the error and its causes, skipping causes a message already quotes.
            let mut line = String::new();
            for cause in err.chain().map(|e| e.to_string()) {
                if !line.contains(&cause) {
                    if !line.is_empty() {
                        line.push_str(": ");
                    }
                    line.push_str(&cause);
                }
            }
            eprintln!("error: {}", line.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Models => cmd::models::run(),
        Command::Summary(args) => cmd::summary::run(args),
        Command::Train(args) => cmd::train::run(args),
        Command::Regress(args) => cmd::regress::run(args),
        Command::Embed(args) => cmd::embed::run(args),
        Command::Finetune(args) => cmd::finetune::run(args),
        Command::Export(args) => cmd::export::run(args),
        Command::Predict(args) => cmd::predict::run(args),
        Command::Prune(args) => cmd::prune::run(args),
        Command::Quantize(args) => cmd::quantize::run(args),
        Command::Distill(args) => cmd::distill::run(args),
        Command::Generate(args) => cmd::generate::run(args),
        Command::Chat(args) => cmd::chat::run(args),
        Command::Fetch(args) => cmd::fetch::run(args),
        Command::Seeds(args) => cmd::seeds::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::Serve(args) => cmd::serve::run(args),
    }
}
