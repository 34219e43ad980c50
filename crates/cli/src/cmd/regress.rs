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
}

pub(crate) fn run(args: Args) -> Result<()> {
    let Args {
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
    } = args;
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
    Ok(())
}
