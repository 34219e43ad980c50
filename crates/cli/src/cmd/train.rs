//! `kiln train`: Train a model and write a run folder (config, weights, metrics, report).

use super::prelude::*;

/// The arguments of `kiln train`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
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
    /// Where the datasets and models are.
    #[command(flatten)]
    data: DataDirArgs,
    /// The training loop's settings.
    #[command(flatten)]
    recipe: RecipeArgs,
    /// Label smoothing ε of the cross-entropy, in [0, 1).
    #[arg(long)]
    label_smoothing: Option<f32>,
    /// Train on only the first N images of each class.
    #[arg(long)]
    train_per_class: Option<usize>,
    /// Evaluate on only the first N test images of each class.
    #[arg(long)]
    test_per_class: Option<usize>,
    /// Run folder (default: runs/<model>-<unix time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print nothing but the final result.
    #[arg(long)]
    quiet: bool,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let Args {
        model,
        resume,
        config,
        dataset,
        augment,
        target,
        text_column,
        image_size,
        grey,
        data: DataDirArgs { data_dir },
        recipe,
        label_smoothing,
        train_per_class,
        test_per_class,
        out,
        quiet,
    } = args;
    let options = TrainOptions {
        quiet,
        data_dir,
        ..TrainOptions::default()
    };
    if let Some(run_dir) = resume {
        let report = kiln_train::resume_run(&run_dir, &options)
            .with_context(|| format!("resuming {}", run_dir.display()))?;
        print_run_report(&report, &run_dir);
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
    let overrides = recipe.overrides();
    let dataset = dataset
        .as_deref()
        .map(kiln_train::dataset_reference)
        .transpose()?;
    let kind = kiln_train::RunKind::of_preset(&model)?;
    if kind != kiln_train::RunKind::Classifier {
        let image_only = [
            ("--config", config.is_some()),
            ("--augment", augment.is_some()),
            ("--image-size", image_size.is_some()),
            ("--grey", grey),
            ("--label-smoothing", label_smoothing.is_some()),
            ("--train-per-class", train_per_class.is_some()),
            ("--test-per-class", test_per_class.is_some()),
        ];
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
    }
    let report = match kind {
        kiln_train::RunKind::LanguageModel => {
            anyhow::ensure!(
                target.is_none() && text_column.is_none(),
                "--target and --text-column are for labelled texts; a language model reads a plain text file"
            );
            let mut cfg = kiln_train::lm::LmTrainConfig::for_preset(&model)?;
            if let Some(d) = dataset {
                cfg.adapt_vocab = d != cfg.corpus;
                cfg.corpus = d;
            }
            let mut settings = cfg.recipe();
            overrides.apply(&mut settings)?;
            cfg.set_recipe(settings)?;
            let out = out.unwrap_or_else(|| kiln_train::default_run_dir(&model));
            let report = kiln_train::lm::train_lm(&cfg, &out, &options)
                .with_context(|| format!("training {model} on {}", cfg.corpus))?;
            (kiln_train::RunReport::LanguageModel(report), out)
        }
        kiln_train::RunKind::TextClassifier => {
            let mut cfg = kiln_train::text::TextTrainConfig::for_preset(&model)?;
            if let Some(d) = dataset {
                cfg.adapt_model = d != cfg.dataset;
                cfg.dataset = d;
            }
            cfg.text_column = text_column;
            cfg.target = target;
            let mut settings = cfg.recipe();
            overrides.apply(&mut settings)?;
            cfg.set_recipe(settings)?;
            let out = out.unwrap_or_else(|| kiln_train::default_run_dir(&model));
            let report = kiln_train::text::train_text_classifier(&cfg, &out, &options)
                .with_context(|| format!("training {model} on {}", cfg.dataset))?;
            (kiln_train::RunReport::TextClassifier(report), out)
        }
        _ => {
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
            cfg.label_smoothing = label_smoothing;
            cfg.train_per_class = train_per_class.or(cfg.train_per_class);
            cfg.test_per_class = test_per_class.or(cfg.test_per_class);
            let mut settings = cfg.recipe();
            overrides.apply(&mut settings)?;
            cfg.set_recipe(settings)?;
            let out = out.unwrap_or_else(|| kiln_train::default_run_dir(&cfg.name));
            if !quiet {
                println!(
                    "training {} on {} for {} epochs (batch {}, lr {}, seed {}, device {}) -> {}",
                    cfg.name,
                    cfg.dataset,
                    cfg.recipe.epochs,
                    cfg.recipe.batch_size,
                    cfg.recipe.lr,
                    cfg.recipe.seed,
                    cfg.recipe.device,
                    out.display()
                );
            }
            let report = kiln_train::train(&cfg, &out, &options)
                .with_context(|| format!("training {}", cfg.name))?;
            (kiln_train::RunReport::Classifier(report), out)
        }
    };
    print_run_report(&report.0, &report.1);
    Ok(())
}
