//! `kiln distill`: Train a student by knowledge distillation from a trained teacher run: the student

use super::prelude::*;

/// The arguments of `kiln distill`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
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
    /// Augmentation of training images.
    #[arg(long)]
    augment: Option<String>,
    /// The training loop's settings (default: the teacher's budget).
    #[command(flatten)]
    recipe: RecipeArgs,
    /// Where the datasets and models are.
    #[command(flatten)]
    data: DataDirArgs,
    /// Run folder (default: runs/distill-<unix time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print nothing but the final result.
    #[arg(long)]
    quiet: bool,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let Args {
        teacher,
        student,
        temperature,
        alpha,
        feature_weight,
        dataset,
        augment,
        recipe,
        data: DataDirArgs { data_dir },
        out,
        quiet,
    } = args;
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
    let mut settings = cfg.recipe();
    recipe.overrides().apply(&mut settings)?;
    cfg.set_recipe(settings)?;
    let options = TrainOptions {
        quiet,
        data_dir,
        ..TrainOptions::default()
    };
    let out = out.unwrap_or_else(|| kiln_train::default_run_dir("distill"));
    let report = kiln_train::train(&cfg, &out, &options)
        .with_context(|| format!("distilling {} into {student}", teacher.display()))?;
    print_train_report(&report);
    Ok(())
}
