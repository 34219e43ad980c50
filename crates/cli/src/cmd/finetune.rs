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

pub(crate) fn run(args: Args) -> Result<()> {
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
