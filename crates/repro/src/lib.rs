//! The comparisons Kiln's README makes ("distillation removes errors", "pruning to 8% costs
//! nothing", "pretrained features beat training from scratch") as recipes that run over
//! several seeds, so that each claim comes with its spread: [`run`] a [`Recipe`] by name and
//! get a [`SeedReport`] (mean ± sd of every metric, paired differences with their standard
//! error), written as `summary.json` and `summary.md` beside the per-seed run folders.
//!
//! Each recipe is the README's commands as library calls; `cargo xtask seeds NAME --seeds 1-3`
//! runs one. Models a recipe trains once and reuses for every seed (a fixed, seed-42
//! pretrained network or teacher) live in `OUT/shared/`; everything that varies with the seed
//! (initialisation, shuffling, the validation draw, subsets, dropout) lives in `OUT/seed-N/`.
//! An interrupted sweep run again skips what it has.
//!
//! ```no_run
//! let report = kiln_repro::run("han", vec![1, 2, 3], "runs/seeds/han".as_ref(), &Default::default())?;
//! println!("{}", report.markdown());
//! # Ok::<(), kiln_repro::Error>(())
//! ```

use std::path::{Path, PathBuf};

use kiln_compress::{Calibration, Granularity, Method, PruneConfig, QuantizeConfig, Scope};
use kiln_models::ModelConfig;
use kiln_train::seeds::{Metrics, SeedReport, SeedSweep};
use kiln_train::{Distill, FineTune, TrainConfig, TrainOptions, TrainReport};

pub use kiln_train::seeds;

/// Everything that can go wrong running a recipe.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A recipe name that does not exist.
    #[error("no recipe `{0}`; the recipes are: {list}", list = names().join(", "))]
    UnknownRecipe(String),
    /// From training, evaluation or the sweep itself.
    #[error(transparent)]
    Train(#[from] kiln_train::Error),
    /// From pruning or quantization.
    #[error(transparent)]
    Compress(#[from] kiln_compress::Error),
    /// From the zoo (a model config).
    #[error(transparent)]
    Model(#[from] kiln_models::Error),
    /// A model config of a recipe that does not parse (a bug in this crate).
    #[error("recipe `{recipe}`: model config: {reason}")]
    BadModel {
        /// The recipe.
        recipe: &'static str,
        /// The parser's message.
        reason: String,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// A recipe: what it compares and how long one seed takes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Recipe {
    /// Its name (`cargo xtask seeds NAME`).
    pub name: &'static str,
    /// What it measures, in one line.
    pub about: &'static str,
    /// Roughly how long one seed takes on 2 cores, for planning.
    pub minutes_per_seed: f64,
}

/// Every recipe.
pub const RECIPES: &[Recipe] = &[
    Recipe {
        name: "hinton",
        about: "MNIST: teacher 1200-1200 (dropout, jitter), student 800-800 alone, student distilled (T 4, α 0.9)",
        minutes_per_seed: 7.0,
    },
    Recipe {
        name: "hinton-cnn-teacher",
        about: "MNIST: the Hinton student 800-800 alone vs distilled (T 4, α 0.9) from a stronger teacher, one cnn-small (seed 42)",
        minutes_per_seed: 6.0,
    },
    Recipe {
        name: "han",
        about: "MNIST: LeNet-300-100 dense, pruned to 8% (global magnitude, 5 steps x 4 epochs), int8 post-training",
        minutes_per_seed: 1.5,
    },
    Recipe {
        name: "lenet5-distill",
        about: "MNIST: LeNet-5 distilled from one cnn-small teacher vs the same student on labels only (α 0)",
        minutes_per_seed: 3.0,
    },
    Recipe {
        name: "fashion-transfer",
        about: "Fashion-MNIST, 100 labels per class: LeNet-5 and cnn-small from scratch vs fine-tuned from MNIST, LeNet-5 probe",
        minutes_per_seed: 1.5,
    },
    Recipe {
        name: "structured-cnn",
        about: "MNIST: cnn-small dense vs 25/50/75% of channels and neurons removed (one shot, 2 fine-tuning epochs), int8",
        minutes_per_seed: 10.0,
    },
    Recipe {
        name: "vit-structured",
        about: "digits: ViT-lite dense vs 25/50/75% of attention heads and feed-forward neurons removed (one shot, 5 fine-tuning epochs; 50% and 75% also in 3 gradual steps of 5 epochs)",
        minutes_per_seed: 4.5,
    },
    Recipe {
        name: "fashion-quant",
        about: "Fashion-MNIST: cnn-small f32 vs int8, int4 with MinMax ranges, int4 with searched clipping, int4 after 2 epochs of QAT",
        minutes_per_seed: 7.5,
    },
];

/// The recipes' names.
pub fn names() -> Vec<&'static str> {
    RECIPES.iter().map(|r| r.name).collect()
}

/// The recipe called `name`.
pub fn recipe(name: &str) -> Result<Recipe> {
    RECIPES
        .iter()
        .find(|r| r.name == name)
        .copied()
        .ok_or_else(|| Error::UnknownRecipe(name.to_string()))
}

/// How to run a recipe.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// A smoke run that checks the pipeline, not the claim: one epoch (or one pruning step) on
    /// 20 training images per class, 20 test images per class.
    pub tiny: bool,
    /// Where the datasets are (the data-dir rule when `None`).
    pub data_dir: Option<PathBuf>,
    /// Print each run's epochs.
    pub verbose: bool,
}

impl Options {
    fn train(&self) -> TrainOptions {
        TrainOptions {
            quiet: !self.verbose,
            data_dir: self.data_dir.clone(),
            ..TrainOptions::default()
        }
    }

    /// The README's budget, or the tiny mode's.
    fn scale(&self, cfg: &mut TrainConfig, epochs: usize) {
        cfg.recipe.epochs = if self.tiny { 1 } else { epochs };
        if self.tiny {
            cfg.train_per_class = Some(20);
            cfg.test_per_class = Some(20);
        }
    }
}

/// Runs recipe `name` over `seeds` under `out` and writes its summary there.
pub fn run(name: &str, seeds: Vec<u64>, out: &Path, options: &Options) -> Result<SeedReport> {
    let recipe = recipe(name)?;
    let title = format!(
        "{}{}",
        recipe.about,
        if options.tiny { " (tiny mode)" } else { "" }
    );
    let shared = out.join("shared");
    match recipe.name {
        "hinton" => SeedSweep::new(&title, seeds, out)
            .compare("student alone test errors", "student distilled test errors")
            .compare("student alone test errors", "teacher test errors")
            .run(|seed, dir| hinton(seed, dir, options)),
        "hinton-cnn-teacher" => {
            let teacher = shared_cnn_small(&shared, options)?;
            SeedSweep::new(&title, seeds, out)
                .compare(
                    "student alone test errors",
                    "distilled from cnn-small test errors",
                )
                .run(|seed, dir| hinton_cnn_teacher(seed, dir, &teacher, options))
        }
        "han" => SeedSweep::new(&title, seeds, out)
            .compare("dense test accuracy %", "pruned 8% test accuracy %")
            .compare("dense test accuracy %", "int8 test accuracy %")
            .run(|seed, dir| han(seed, dir, options)),
        "lenet5-distill" => {
            let teacher = shared_cnn_small(&shared, options)?;
            SeedSweep::new(&title, seeds, out)
                .compare("labels only test accuracy %", "distilled test accuracy %")
                .run(|seed, dir| lenet5_distill(seed, dir, &teacher, options))
        }
        "fashion-transfer" => {
            let cnn = shared_cnn_small(&shared, options)?;
            let lenet5 = shared_run(
                &shared.join("lenet5-mnist"),
                options,
                preset_config("lenet5", 42, 3, options)?,
            )?;
            SeedSweep::new(&title, seeds, out)
                .compare(
                    "cnn-small scratch test accuracy %",
                    "cnn-small fine-tuned test accuracy %",
                )
                .compare(
                    "lenet5 scratch test accuracy %",
                    "lenet5 fine-tuned test accuracy %",
                )
                .compare(
                    "lenet5 scratch test accuracy %",
                    "lenet5 probe test accuracy %",
                )
                .run(|seed, dir| fashion_transfer(seed, dir, &cnn, &lenet5, options))
        }
        "structured-cnn" => SeedSweep::new(&title, seeds, out)
            .compare("dense test accuracy %", "25% removed test accuracy %")
            .compare("dense test accuracy %", "50% removed test accuracy %")
            .compare("dense test accuracy %", "75% removed test accuracy %")
            .compare("dense test accuracy %", "int8 test accuracy %")
            .run(|seed, dir| structured_cnn(seed, dir, options)),
        "vit-structured" => SeedSweep::new(&title, seeds, out)
            .compare("dense test accuracy %", "25% removed test accuracy %")
            .compare("dense test accuracy %", "50% removed test accuracy %")
            .compare("dense test accuracy %", "75% removed test accuracy %")
            .compare(
                "50% removed test accuracy %",
                "50% removed in 3 steps test accuracy %",
            )
            .compare(
                "75% removed test accuracy %",
                "75% removed in 3 steps test accuracy %",
            )
            .run(|seed, dir| vit_structured(seed, dir, options)),
        "fashion-quant" => SeedSweep::new(&title, seeds, out)
            .compare("f32 test accuracy %", "int8 test accuracy %")
            .compare("f32 test accuracy %", "int4 minmax test accuracy %")
            .compare("f32 test accuracy %", "int4 searched test accuracy %")
            .compare("f32 test accuracy %", "int4 QAT test accuracy %")
            .compare("int4 minmax test accuracy %", "int4 QAT test accuracy %")
            .run(|seed, dir| fashion_quant(seed, dir, options)),
        _ => unreachable!("every recipe in RECIPES has a runner"),
    }
}

/// `configs/hinton-teacher.toml`.
const HINTON_TEACHER: &str = r#"model = "mlp"
input_size = 784
hidden_sizes = [1200, 1200]
output_size = 10
activation = "relu"
dropout = 0.3
"#;

/// `configs/hinton-student.toml`.
const HINTON_STUDENT: &str = r#"model = "mlp"
input_size = 784
hidden_sizes = [800, 800]
output_size = 10
activation = "relu"
dropout = 0.0
"#;

fn model(recipe: &'static str, toml: &str) -> Result<ModelConfig> {
    ModelConfig::from_toml(toml).map_err(|reason| Error::BadModel { recipe, reason })
}

fn preset_config(name: &str, seed: u64, epochs: usize, options: &Options) -> Result<TrainConfig> {
    let mut cfg = TrainConfig::for_preset(name)?;
    cfg.recipe.seed = seed;
    options.scale(&mut cfg, epochs);
    Ok(cfg)
}

/// A run shared by every seed (trained once, or found finished); returns `dir`.
fn shared_run(dir: &Path, options: &Options, cfg: TrainConfig) -> Result<PathBuf> {
    train(&cfg, dir, options)?;
    Ok(dir.to_path_buf())
}

/// The seed-42 `cnn-small` on MNIST (`kiln train cnn-small`) that several recipes share as a
/// teacher or pretrained network.
fn shared_cnn_small(shared: &Path, options: &Options) -> Result<PathBuf> {
    shared_run(
        &shared.join("cnn-small-mnist"),
        options,
        preset_config("cnn-small", 42, 12, options)?,
    )
}

/// Trains `cfg` into `dir`, or reads the report of the finished run already there when its
/// `config.toml` is `cfg` (an interrupted seed resumes run by run; a changed recipe retrains).
fn train(cfg: &TrainConfig, dir: &Path, options: &Options) -> Result<TrainReport> {
    let report = dir.join("report.json");
    if report.is_file()
        && TrainConfig::load(&dir.join("config.toml")).is_ok_and(|done| done == *cfg)
        && let Ok(bytes) = std::fs::read(&report)
        && let Ok(done) = serde_json::from_slice::<TrainReport>(&bytes)
    {
        return Ok(done);
    }
    Ok(kiln_train::train(cfg, dir, &options.train())?)
}

fn percent(report: &TrainReport) -> f64 {
    100.0 * report.test.accuracy
}

fn errors(report: &TrainReport) -> f64 {
    (report.test.total - report.test.correct) as f64
}

/// `kiln train mlp-mnist --config configs/hinton-teacher.toml --epochs 15 --batch-size 128
/// --augment translate=0.08`, the student alone (12 epochs), and `kiln distill --temperature 4
/// --alpha 0.9 --epochs 12 --batch-size 128`, all with the seed.
fn hinton(seed: u64, dir: &Path, options: &Options) -> Result<Metrics> {
    let mut teacher = preset_config("mlp-mnist", seed, 15, options)?;
    teacher.model = model("hinton", HINTON_TEACHER)?;
    teacher.name = "hinton-teacher".into();
    teacher.recipe.batch_size = 128;
    teacher.augment = Some("translate=0.08".into());
    let teacher_dir = dir.join("teacher");
    let t = train(&teacher, &teacher_dir, options)?;

    let s = train(
        &hinton_student(seed, options)?,
        &dir.join("student"),
        options,
    )?;

    let student_file = dir.join("hinton-student.toml");
    std::fs::write(&student_file, HINTON_STUDENT).map_err(|source| kiln_train::Error::Io {
        path: student_file.clone(),
        source,
    })?;
    let mut distilled = TrainConfig::distill_from(
        &teacher_dir,
        &student_file.to_string_lossy(),
        Distill {
            teacher: teacher_dir.clone(),
            temperature: 4.0,
            alpha: 0.9,
            feature_weight: 0.0,
        },
    )?;
    options.scale(&mut distilled, 12);
    distilled.recipe.batch_size = 128;
    distilled.recipe.seed = seed;
    let d = train(&distilled, &dir.join("distilled"), options)?;
    Ok(Metrics::from([
        ("teacher test errors".into(), errors(&t)),
        ("student alone test errors".into(), errors(&s)),
        ("student distilled test errors".into(), errors(&d)),
        ("teacher test accuracy %".into(), percent(&t)),
        ("student alone test accuracy %".into(), percent(&s)),
        ("student distilled test accuracy %".into(), percent(&d)),
    ]))
}

/// `kiln train mlp-mnist --config configs/hinton-student.toml --epochs 12 --batch-size 128`.
fn hinton_student(seed: u64, options: &Options) -> Result<TrainConfig> {
    let mut student = preset_config("mlp-mnist", seed, 12, options)?;
    student.model = model("hinton", HINTON_STUDENT)?;
    student.name = "hinton-student".into();
    student.recipe.batch_size = 128;
    Ok(student)
}

/// The Hinton student alone and distilled (T 4, α 0.9) from one stronger teacher, cnn-small
/// (seed 42, 12 epochs), shared by every seed: the student's recipe with the distillation term
/// added, nothing else changed.
fn hinton_cnn_teacher(seed: u64, dir: &Path, teacher: &Path, options: &Options) -> Result<Metrics> {
    let student = hinton_student(seed, options)?;
    let s = train(&student, &dir.join("student"), options)?;
    let mut distilled = student;
    distilled.name = "hinton-student-distilled-from-cnn-small".into();
    distilled.distill = Some(Distill {
        teacher: teacher.to_path_buf(),
        temperature: 4.0,
        alpha: 0.9,
        feature_weight: 0.0,
    });
    let d = train(&distilled, &dir.join("distilled-from-cnn-small"), options)?;
    Ok(Metrics::from([
        ("student alone test errors".into(), errors(&s)),
        ("distilled from cnn-small test errors".into(), errors(&d)),
    ]))
}

/// `kiln quantize RUN` (int8, per tensor, clipping searched on 1,000 training images).
fn int8(run: &Path, out: &Path, options: &Options) -> Result<f64> {
    quantize(run, out, 8, Calibration::Search, 0, options)
}

/// `kiln quantize RUN --bits B --calibration C [--qat-epochs E --qat-lr 1e-4]`, per tensor.
fn quantize(
    run: &Path,
    out: &Path,
    bits: u8,
    calibration: Calibration,
    qat_epochs: usize,
    options: &Options,
) -> Result<f64> {
    let config = QuantizeConfig {
        bits,
        granularity: Granularity::PerTensor,
        calibration,
        calibration_samples: if options.tiny { 50 } else { 1000 },
        qat_epochs: if options.tiny {
            qat_epochs.min(1)
        } else {
            qat_epochs
        },
        qat_lr: (qat_epochs > 0).then_some(1e-4),
    };
    let report = kiln_compress::quantize_run(run, out, &config, &options.train())?;
    Ok(100.0 * report.accuracy)
}

/// `kiln train lenet-300-100`, `kiln prune RUN --sparsity 0.92 --global --iterations 5
/// --finetune-epochs 4 --lr 3e-4`, `kiln quantize RUN`.
fn han(seed: u64, dir: &Path, options: &Options) -> Result<Metrics> {
    let dense = preset_config("lenet-300-100", seed, 20, options)?;
    let dense_dir = dir.join("dense");
    let d = train(&dense, &dense_dir, options)?;
    let prune = PruneConfig {
        method: Method::Magnitude,
        sparsity: 0.92,
        scope: Scope::Global,
        iterations: if options.tiny { 1 } else { 5 },
        finetune_epochs: if options.tiny { 1 } else { 4 },
        lr: Some(3e-4),
        layers: Vec::new(),
    };
    let p = kiln_compress::prune_run(&dense_dir, &dir.join("pruned"), &prune, &options.train())?;
    let q = int8(&dense_dir, &dir.join("int8"), options)?;
    Ok(Metrics::from([
        ("dense test accuracy %".into(), percent(&d)),
        ("pruned 8% test accuracy %".into(), 100.0 * p.accuracy),
        ("int8 test accuracy %".into(), q),
    ]))
}

/// `kiln distill --teacher CNN --student lenet5 --epochs 3`, and the same with `--alpha 0`.
fn lenet5_distill(seed: u64, dir: &Path, teacher: &Path, options: &Options) -> Result<Metrics> {
    let mut accuracy = Vec::new();
    for alpha in [0.9, 0.0] {
        let mut cfg = TrainConfig::distill_from(
            teacher,
            "lenet5",
            Distill {
                teacher: teacher.to_path_buf(),
                temperature: 4.0,
                alpha,
                feature_weight: 0.0,
            },
        )?;
        options.scale(&mut cfg, 3);
        cfg.recipe.seed = seed;
        let out = dir.join(if alpha > 0.0 {
            "distilled"
        } else {
            "labels-only"
        });
        accuracy.push(percent(&train(&cfg, &out, options)?));
    }
    Ok(Metrics::from([
        ("distilled test accuracy %".into(), accuracy[0]),
        ("labels only test accuracy %".into(), accuracy[1]),
    ]))
}

/// The README's 1,000-label Fashion-MNIST table: `kiln train lenet5|cnn-small --dataset
/// fashion-mnist --train-per-class 100 --epochs 20`, `kiln finetune --from CNN` and `--from
/// LENET5 --backbone-lr 3e-4` or `--freeze backbone`, with the seed (which also draws the
/// 100 images per class).
fn fashion_transfer(
    seed: u64,
    dir: &Path,
    cnn: &Path,
    lenet5: &Path,
    options: &Options,
) -> Result<Metrics> {
    let per_class = |cfg: &mut TrainConfig| {
        options.scale(cfg, 20);
        cfg.train_per_class = Some(if options.tiny { 20 } else { 100 });
        cfg.recipe.seed = seed;
    };
    let mut metrics = Metrics::new();
    for name in ["lenet5", "cnn-small"] {
        let mut cfg = TrainConfig::for_preset(name)?;
        cfg.adapt_model = true;
        cfg.dataset = "fashion-mnist".into();
        per_class(&mut cfg);
        let r = train(&cfg, &dir.join(format!("{name}-scratch")), options)?;
        metrics.insert(format!("{name} scratch test accuracy %"), percent(&r));
    }
    let runs = [
        ("cnn-small fine-tuned", cnn, false, None),
        ("lenet5 fine-tuned", lenet5, false, Some(3e-4)),
        ("lenet5 probe", lenet5, true, None),
    ];
    for (label, from, freeze_backbone, backbone_lr) in runs {
        let spec = FineTune {
            from: from.to_path_buf(),
            new_head: true,
            freeze_backbone,
            backbone_lr_scale: 1.0,
        };
        let mut cfg = TrainConfig::finetune_from(from, "fashion-mnist", spec)?;
        per_class(&mut cfg);
        if let (Some(rate), Some(ft)) = (backbone_lr, cfg.finetune.as_mut()) {
            ft.backbone_lr_scale = rate / cfg.recipe.lr;
        }
        let r = train(&cfg, &dir.join(label.replace(' ', "-")), options)?;
        metrics.insert(format!("{label} test accuracy %"), percent(&r));
    }
    Ok(metrics)
}

/// `kiln train cnn-small`, `kiln prune RUN --method structured --sparsity S --finetune-epochs
/// 2 --lr 3e-4` for S = 0.25, 0.5, 0.75, and `kiln quantize RUN`.
fn structured_cnn(seed: u64, dir: &Path, options: &Options) -> Result<Metrics> {
    let dense = preset_config("cnn-small", seed, 12, options)?;
    let dense_dir = dir.join("dense");
    let d = train(&dense, &dense_dir, options)?;
    let mut metrics = structured(&dense_dir, dir, percent(&d), 2, options)?;
    metrics.insert(
        "int8 test accuracy %".into(),
        int8(&dense_dir, &dir.join("int8"), options)?,
    );
    Ok(metrics)
}

/// The dense accuracy and `kiln prune DENSE --method structured --sparsity S
/// --finetune-epochs E --lr 3e-4` for S = 0.25, 0.5, 0.75.
fn structured(
    dense_dir: &Path,
    dir: &Path,
    dense_accuracy: f64,
    finetune_epochs: usize,
    options: &Options,
) -> Result<Metrics> {
    let mut metrics = Metrics::from([("dense test accuracy %".into(), dense_accuracy)]);
    for sparsity in [0.25, 0.5, 0.75] {
        let p = prune_structured(dense_dir, dir, sparsity, 1, finetune_epochs, options)?;
        metrics.insert(format!("{}% removed test accuracy %", pct(sparsity)), p);
    }
    Ok(metrics)
}

fn pct(fraction: f64) -> f64 {
    (100.0 * fraction).round()
}

/// `kiln prune DENSE --method structured --sparsity S --iterations STEPS --finetune-epochs E --lr
/// 3e-4` into DIR/structured-S (one shot) or DIR/structured-S-gradual-STEPS; the test
/// accuracy in percent.
fn prune_structured(
    dense_dir: &Path,
    dir: &Path,
    sparsity: f64,
    steps: usize,
    finetune_epochs: usize,
    options: &Options,
) -> Result<f64> {
    let prune = PruneConfig {
        method: Method::Structured,
        sparsity,
        scope: Scope::Layer,
        iterations: steps,
        finetune_epochs: if options.tiny { 1 } else { finetune_epochs },
        lr: Some(3e-4),
        layers: Vec::new(),
    };
    let name = match steps {
        1 => format!("structured-{}", pct(sparsity)),
        _ => format!("structured-{}-gradual-{steps}", pct(sparsity)),
    };
    let p = kiln_compress::prune_run(dense_dir, &dir.join(name), &prune, &options.train())?;
    Ok(100.0 * p.accuracy)
}

/// `kiln train vit-lite-digits` (40 epochs) and `kiln prune RUN --method structured
/// --sparsity S --finetune-epochs 5 --lr 3e-4`, for 50% and 75% also with `--iterations 3`.
fn vit_structured(seed: u64, dir: &Path, options: &Options) -> Result<Metrics> {
    let mut dense = preset_config("vit-lite-digits", seed, 40, options)?;
    if options.tiny {
        // The digits' 1,797 images: no per-class subsets needed to keep the smoke run short.
        (dense.train_per_class, dense.test_per_class) = (None, None);
    }
    let dense_dir = dir.join("dense");
    let d = train(&dense, &dense_dir, options)?;
    let mut metrics = structured(&dense_dir, dir, percent(&d), 5, options)?;
    for sparsity in [0.5, 0.75] {
        let p = prune_structured(&dense_dir, dir, sparsity, 3, 5, options)?;
        metrics.insert(
            format!("{}% removed in 3 steps test accuracy %", pct(sparsity)),
            p,
        );
    }
    Ok(metrics)
}

/// `kiln train cnn-small --dataset fashion-mnist`, then `kiln quantize RUN` to int8, and to 4
/// bits with `--calibration minmax`, with the searched clipping, and `--calibration minmax
/// --qat-epochs 2 --qat-lr 1e-4`.
fn fashion_quant(seed: u64, dir: &Path, options: &Options) -> Result<Metrics> {
    let mut dense = preset_config("cnn-small", seed, 12, options)?;
    dense.adapt_model = true;
    dense.dataset = "fashion-mnist".into();
    let dense_dir = dir.join("f32");
    let d = train(&dense, &dense_dir, options)?;
    let q = |name: &str, bits, calibration, qat| {
        quantize(&dense_dir, &dir.join(name), bits, calibration, qat, options)
    };
    Ok(Metrics::from([
        ("f32 test accuracy %".into(), percent(&d)),
        (
            "int8 test accuracy %".into(),
            q("int8", 8, Calibration::Search, 0)?,
        ),
        (
            "int4 minmax test accuracy %".into(),
            q("int4-minmax", 4, Calibration::MinMax, 0)?,
        ),
        (
            "int4 searched test accuracy %".into(),
            q("int4-search", 4, Calibration::Search, 0)?,
        ),
        (
            "int4 QAT test accuracy %".into(),
            q("int4-qat", 4, Calibration::MinMax, 2)?,
        ),
    ]))
}
