//! `kiln finetune`: Fine-tune the model of a run folder on another image dataset, or a pretrained sentence

use super::prelude::*;

/// The arguments of `kiln finetune`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
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
    /// Use only the first N training images of each class (few-label fine-tuning).
    #[arg(long)]
    train_per_class: Option<usize>,
    /// Augmentation of training images.
    #[arg(long)]
    augment: Option<String>,
    /// The LLM options (with --from MODEL.gguf, a Hugging Face Llama folder or `smollm2`).
    #[command(flatten)]
    llm: LlmArgs,
    /// The training loop's settings.
    #[command(flatten)]
    recipe: RecipeArgs,
    /// Where the datasets and models are.
    #[command(flatten)]
    data: DataDirArgs,
    /// Run folder (default: runs/finetune-<unix time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print nothing but the final result.
    #[arg(long)]
    quiet: bool,
}

/// Fine-tuning a chat LLM: `kiln finetune --from MODEL.gguf --dataset FILE --lora-rank R`.
#[derive(clap::Args, Debug, Default)]
pub(crate) struct LlmArgs {
    /// (LLM) LoRA rank (default 8).
    #[arg(long)]
    lora_rank: Option<usize>,
    /// (LLM) LoRA alpha: the update is scaled by alpha / rank (default 2 × rank).
    #[arg(long)]
    lora_alpha: Option<f64>,
    /// (LLM) Dropout on the adapters' input (default 0.05).
    #[arg(long)]
    lora_dropout: Option<f64>,
    /// (LLM) Adapted projections, comma-separated (default all seven: q_proj, k_proj,
    /// v_proj, o_proj, gate_proj, up_proj, down_proj).
    #[arg(long, value_delimiter = ',')]
    targets: Vec<String>,
    /// (LLM) QLoRA: store the adapted projections' base weights as 8- or 4-bit integers
    /// (burn's QLora; dequantized in each product).
    #[arg(long)]
    qlora_bits: Option<u8>,
    /// (LLM) Fine-tune every weight instead of LoRA adapters.
    #[arg(long)]
    full: bool,
    /// (LLM) Tokens per training sequence (default 256).
    #[arg(long)]
    max_len: Option<usize>,
    /// (LLM) Prompt column of a CSV dataset (default prompt).
    #[arg(long)]
    prompt_column: Option<String>,
    /// (LLM) Response column of a CSV dataset (default response).
    #[arg(long)]
    response_column: Option<String>,
    /// (LLM) Use only N training items.
    #[arg(long)]
    max_train: Option<usize>,
    /// (LLM) Use at most N validation items.
    #[arg(long)]
    max_valid: Option<usize>,
    /// (LLM) Use only the first N test items.
    #[arg(long)]
    max_test: Option<usize>,
    /// (LLM) Do not measure the base model on the test split.
    #[arg(long)]
    skip_base: bool,
}

fn run_llm(args: Args) -> Result<()> {
    let Args {
        from,
        dataset,
        llm,
        recipe,
        data: DataDirArgs { data_dir },
        out,
        quiet,
        ..
    } = args;
    let request = kiln_train::llm::LlmRequest {
        base_model: from.to_string_lossy().into_owned(),
        dataset: dataset.clone(),
        lora_rank: llm.lora_rank,
        lora_alpha: llm.lora_alpha,
        lora_dropout: llm.lora_dropout,
        targets: llm.targets,
        qlora_bits: llm.qlora_bits,
        full: llm.full,
        max_len: llm.max_len,
        prompt_column: llm.prompt_column,
        response_column: llm.response_column,
        max_train: llm.max_train,
        max_valid: llm.max_valid,
        max_test: llm.max_test,
        skip_base: llm.skip_base,
    };
    let context = || format!("fine-tuning {} on {dataset}", from.display());
    let config = kiln_train::llm::plan(&request, &recipe.overrides()).with_context(context)?;
    let options = TrainOptions {
        quiet,
        data_dir,
        ..TrainOptions::default()
    };
    let out = out.unwrap_or_else(|| kiln_train::default_run_dir("finetune"));
    let report = kiln_train::llm::finetune_llm(&config, &out, &options).with_context(context)?;
    print_llm_report(&report);
    println!("run folder {}", out.display());
    Ok(())
}

pub(crate) fn run(args: Args) -> Result<()> {
    let llm_flags = args.llm.lora_rank.is_some()
        || args.llm.lora_alpha.is_some()
        || args.llm.full
        || args.llm.qlora_bits.is_some()
        || !args.llm.targets.is_empty();
    if llm_flags || kiln_train::llm::is_llm_source(&args.from) {
        return run_llm(args);
    }
    let Args {
        from,
        dataset,
        freeze,
        head,
        keep_head,
        backbone_lr,
        unfreeze_after,
        train_per_class,
        augment,
        recipe,
        data: DataDirArgs { data_dir },
        out,
        quiet,
        llm: _,
    } = args;
    let request = kiln_train::finetune::Request {
        from: from.clone(),
        dataset: dataset.clone(),
        freeze,
        head_classes: head.as_deref().map(head_classes).transpose()?,
        keep_head,
        backbone_lr,
        unfreeze_after,
        train_per_class,
        augment,
    };
    let options = TrainOptions {
        quiet,
        data_dir: data_dir.clone(),
        ..TrainOptions::default()
    };
    let context = || format!("fine-tuning {} on {dataset}", from.display());
    let plan = kiln_train::finetune::plan(&request, &recipe.overrides(), &options.data_dir())
        .with_context(context)?;
    let out = out.unwrap_or_else(|| kiln_train::default_run_dir("finetune"));
    match plan {
        kiln_train::finetune::Plan::Text(config) => {
            let report = kiln_train::text::train_text_classifier(&config, &out, &options)
                .with_context(context)?;
            println!(
                "test accuracy {:.2}% (macro F1 {:.3}) on {} texts; trained in {:.1}s; run folder {}",
                100.0 * report.test.accuracy,
                report.test.macro_f1,
                report.test_size,
                report.train_seconds,
                out.display()
            );
        }
        kiln_train::finetune::Plan::Image {
            config,
            unfreeze_after: Some(frozen),
        } => {
            let (probe, report) =
                kiln_train::finetune::train_gradual(&config, &out, frozen, &options)
                    .with_context(context)?;
            print!("head only, {frozen} epochs: ");
            print_train_report(&probe);
            print_train_report(&report);
        }
        kiln_train::finetune::Plan::Image { config, .. } => {
            print_train_report(&kiln_train::train(&config, &out, &options).with_context(context)?);
        }
    }
    Ok(())
}
