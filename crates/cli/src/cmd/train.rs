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
    } = args;
    let options = TrainOptions {
        quiet,
        data_dir: data_dir.clone(),
        ..TrainOptions::default()
    };
    if let Some(run_dir) = resume {
        let context = || format!("resuming {}", run_dir.display());
        match kiln_train::RunKind::of(&run_dir).with_context(context)? {
            kiln_train::RunKind::Classifier => {
                print_train_report(&kiln_train::resume(&run_dir, &options).with_context(context)?)
            }
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
    Ok(())
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
