//! `kiln regress`: Train an MLP regressor on a table (a named table or a CSV file) and print held-out MSE,

use super::prelude::*;

/// The arguments of `kiln regress`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
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
    /// The training loop's settings.
    #[command(flatten)]
    recipe: RecipeArgs,
    /// Where the datasets and models are.
    #[command(flatten)]
    data: DataDirArgs,
    /// Run folder (default: runs/regress-<unix time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print nothing but the final result.
    #[arg(long)]
    quiet: bool,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let Args {
        dataset,
        target,
        hidden,
        loss,
        recipe,
        data: DataDirArgs { data_dir },
        out,
        quiet,
    } = args;
    let mut cfg = kiln_train::regression::RegressionConfig::new(&dataset);
    cfg.target = target;
    if let Some(h) = hidden {
        cfg.hidden = h;
    }
    if let Some(l) = loss {
        cfg.loss = kiln_train::regression::RegressionLoss::parse(&l)?;
    }
    let mut settings = cfg.recipe();
    recipe.overrides().apply(&mut settings)?;
    cfg.set_recipe(settings)?;
    let out = out.unwrap_or_else(|| kiln_train::default_run_dir("regress"));
    let options = TrainOptions {
        quiet,
        data_dir,
        ..TrainOptions::default()
    };
    let report = kiln_train::regression::train_regression(&cfg, &out, &options)
        .with_context(|| format!("regression on {dataset}"))?;
    print_regression_report(&report, &out);
    Ok(())
}
