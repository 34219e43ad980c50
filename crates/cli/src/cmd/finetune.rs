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
        epochs,
        batch_size,
        lr,
        train_per_class,
        augment,
        seed,
        data_dir,
        out,
        quiet,
    } = args;
    let freeze_backbone = freeze.iter().any(|f| f == "backbone");
    let text_dir = if from.join("tokenizer.json").is_file() {
        Some(from.clone())
    } else {
        let under_data = kiln_data::data_dir::resolve(data_dir.clone()).join(&from);
        (!from.is_dir() && under_data.join("tokenizer.json").is_file()).then_some(under_data)
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
        let mut spec = kiln_train::text::PretrainedText::full(std::path::absolute(&dir)?, lr_scale);
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
        let found = kiln_data::load_dataset(&dataset, kiln_core::Seed(cfg.seed), &dir, &cfg.data)?
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
        let (probe, report) = kiln_train::finetune::train_gradual(&cfg, &out, frozen, &options)
            .with_context(context)?;
        print!("head only, {frozen} epochs: ");
        print_train_report(&probe);
        print_train_report(&report);
    } else {
        let report = kiln_train::train(&cfg, &out, &options).with_context(context)?;
        print_train_report(&report);
    }
    Ok(())
}
