//! Regression on tables: an MLP predicting a numeric column from the others, trained with MSE
//! or MAE through the same loop as classification (checkpoints, resume-safe seeding, early
//! stopping, plateau), and evaluated in the target's own units with MSE, RMSE, MAE and R².
//!
//! ```no_run
//! use kiln_train::regression::{RegressionConfig, train_regression};
//! let config = RegressionConfig::new("ames-housing");
//! let report = train_regression(&config, "runs/ames".as_ref(), &Default::default())?;
//! println!("test R² {:.3}", report.test.r2);
//! # Ok::<(), kiln_train::Error>(())
//! ```

use std::path::Path;

use burn::module::Module;
use burn::tensor::Tensor;
use burn::train::RegressionOutput;
use kiln_core::Seed;
use kiln_data::tabular::{
    RegressionBatch, RegressionBatcher, TableDataset, TableEncoder, TableSpec, TableTask,
    TabularSet, Targets,
};
use kiln_models::{Mlp, MlpConfig};
use serde::{Deserialize, Serialize};

use crate::TrainOptions;
use crate::files::write_json;
use crate::{EpochMetrics, Error, Result};

/// The training loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegressionLoss {
    /// Mean squared error (on the standardised target).
    #[default]
    Mse,
    /// Mean absolute error (on the standardised target); robust to outliers.
    Mae,
}

impl RegressionLoss {
    /// Parses `mse` or `mae`.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "mse" => Ok(Self::Mse),
            "mae" => Ok(Self::Mae),
            other => Err(Error::InvalidSetting(format!(
                "unknown regression loss `{other}`: expected mse or mae"
            ))),
        }
    }
}

/// Everything that defines a regression run (saved as `config.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegressionConfig {
    /// A named table (`ames-housing`, `boston-housing`, `concrete`, `diabetes`) or a `.csv`.
    pub dataset: String,
    /// Target column (default: the named table's, else the last column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Hidden layer sizes of the MLP.
    pub hidden: Vec<usize>,
    /// Dropout after each hidden layer.
    #[serde(default)]
    pub dropout: f64,
    /// Training loss.
    #[serde(default)]
    pub loss: RegressionLoss,
    /// Held-out test fraction of the rows: a fixed split of the table
    /// (`kiln_data::split::TEST_SPLIT_SEED`), the same for every run.
    pub test_fraction: f64,
    /// The loop's settings (epochs, batch size, learning rate, optimizer, schedule, plateau,
    /// monitor, early stopping, seed, device, validation share, shards): top-level keys of
    /// `config.toml`, the shard count resolved in the saved one when the run starts.
    #[serde(flatten)]
    pub recipe: crate::Recipe,
    /// Rejects keys that are neither the config's nor the recipe's (serde's
    /// `deny_unknown_fields` does not work beside a flattened field).
    #[serde(flatten, skip_serializing)]
    pub no_other_keys: crate::NoOtherKeys,
}

crate::recipe::loop_settings!(RegressionConfig, "a regression run");

impl RegressionConfig {
    /// A recipe for `dataset`: MLP 128-64 with dropout 0.1, MSE, Adam 1e-3, 60 epochs of 64.
    pub fn new(dataset: &str) -> Self {
        Self {
            dataset: dataset.to_string(),
            target: None,
            hidden: vec![128, 64],
            dropout: 0.1,
            loss: RegressionLoss::Mse,
            test_fraction: 0.2,
            recipe: crate::Recipe {
                epochs: 60,
                batch_size: 64,
                lr: 1e-3,
                ..crate::Recipe::default()
            },
            no_other_keys: crate::NoOtherKeys,
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        crate::recipe::plain_loop(&self.recipe, "a regression run")?;
        if !(self.test_fraction > 0.0 && self.test_fraction < 1.0) {
            return Err(Error::InvalidSetting(format!(
                "the test fraction must be in (0, 1), found {}",
                self.test_fraction
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::InvalidSetting(format!(
                "dropout must be in [0, 1), found {}",
                self.dropout
            )));
        }
        Ok(())
    }
}

/// Held-out regression metrics in the target's units.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegressionMetrics {
    /// Mean squared error.
    pub mse: f64,
    /// Root mean squared error.
    pub rmse: f64,
    /// Mean absolute error.
    pub mae: f64,
    /// Coefficient of determination `1 − SS_res / SS_tot` (SS_tot around the test mean).
    pub r2: f64,
    /// Rows evaluated.
    pub rows: usize,
}

impl RegressionMetrics {
    /// Metrics of `predicted` against `actual`.
    pub fn of(predicted: &[f64], actual: &[f64]) -> Self {
        let n = actual.len().max(1) as f64;
        let mean = actual.iter().sum::<f64>() / n;
        let (mut ss_res, mut abs, mut ss_tot) = (0.0, 0.0, 0.0);
        for (p, a) in predicted.iter().zip(actual) {
            ss_res += (p - a) * (p - a);
            abs += (p - a).abs();
            ss_tot += (a - mean) * (a - mean);
        }
        let mse = ss_res / n;
        Self {
            mse,
            rmse: mse.sqrt(),
            mae: abs / n,
            r2: if ss_tot > 0.0 {
                1.0 - ss_res / ss_tot
            } else {
                f64::NAN
            },
            rows: actual.len(),
        }
    }
}

/// What a regression run reports (also `report.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegressionReport {
    /// Target column.
    pub target: String,
    /// Encoded features per row.
    pub features: usize,
    /// Training rows.
    pub train_size: usize,
    /// Validation rows (held out from the training part).
    #[serde(default)]
    pub valid_size: usize,
    /// Held-out test rows (the table's fixed split).
    pub test_size: usize,
    /// Per-epoch losses (standardised units; accuracies are NaN).
    pub epochs: Vec<EpochMetrics>,
    /// Held-out metrics of the saved model, in the target's units.
    pub test: RegressionMetrics,
    /// The same metrics for always predicting the training mean (the bar to beat).
    pub baseline: RegressionMetrics,
    /// Epoch whose weights were saved.
    pub model_epoch: usize,
    /// Wall-clock seconds of training.
    pub train_seconds: f64,
}

/// An MLP regressor with its loss: the unit burn-train's `Learner` drives.
#[derive(Module, Debug)]
pub struct RegressionTask {
    /// The model.
    pub model: Mlp,
    #[module(skip)]
    loss: RegressionLoss,
    #[module(skip)]
    dropout: f64,
}

impl RegressionTask {
    /// Forward pass with the per-sample loss (`[batch]`; the step minimises its mean).
    pub fn forward_regression(&self, batch: RegressionBatch) -> RegressionOutput {
        let output = self.model.forward_flat(batch.features);
        let [n, t] = output.dims();
        let diff = output.clone() - batch.targets.clone();
        let per_sample: Tensor<1> = match self.loss {
            RegressionLoss::Mse => (diff.clone() * diff).sum_dim(1).reshape([n]) / t as f64,
            RegressionLoss::Mae => diff.abs().sum_dim(1).reshape([n]) / t as f64,
        };
        RegressionOutput::new(per_sample, output, batch.targets)
    }
}

impl crate::Task for RegressionTask {
    type Batch = RegressionBatch;
    type Output = RegressionOutput;

    fn forward(&self, batch: RegressionBatch) -> RegressionOutput {
        self.forward_regression(batch)
    }

    fn split(
        &self,
        batch: &RegressionBatch,
        shards: usize,
    ) -> Option<crate::Shards<RegressionBatch>> {
        // Dropout draws from the device generator: only a dropout-free MLP shards exactly.
        (self.dropout == 0.0).then(|| crate::Shards::of(batch, shards))
    }
}

fn load_table(
    config: &RegressionConfig,
    data_dir: &Path,
) -> Result<(kiln_data::tabular::Table, String)> {
    let path = Path::new(&config.dataset);
    if config.dataset.ends_with(".csv") || path.is_file() {
        let table = kiln_data::tabular::Table::read_csv(path)?;
        let target =
            match &config.target {
                Some(t) => t.clone(),
                None => table.columns.last().cloned().ok_or_else(|| {
                    Error::InvalidSetting(format!("{}: no columns", path.display()))
                })?,
            };
        Ok((table, target))
    } else {
        let (table, named) = kiln_data::tabular::load_named(&config.dataset, data_dir)?;
        let target = config
            .target
            .clone()
            .unwrap_or_else(|| named.target.to_string());
        Ok((table, target))
    }
}

fn values(set: &TabularSet) -> &[f32] {
    match &set.targets {
        Targets::Values(v) => v,
        Targets::Classes(_) => &[],
    }
}

/// Reloads a regression run folder (`config.toml`, `encoder.json`, `model.bpk`) and measures
/// it on its table's fixed test rows, in the target's units (what `kiln eval` prints).
pub fn evaluate_regression_run(dir: &Path, data_dir: Option<&Path>) -> Result<RegressionMetrics> {
    let config: RegressionConfig = crate::files::read_run_config(dir)?;
    let encoder: TableEncoder = crate::files::read_json(&dir.join("encoder.json"))?;
    let (table, _) = load_table(
        &config,
        &kiln_data::data_dir::resolve(data_dir.map(Path::to_path_buf)),
    )?;
    let (_, test_rows) = table.split(config.test_fraction, kiln_data::split::TEST_SPLIT_SEED);
    let test_set = encoder.transform(&table, &test_rows)?;
    let device = config.recipe.device.device();
    let model = MlpConfig::new(encoder.width(), &config.hidden, 1)
        .with_dropout(config.dropout)
        .init(&device)?;
    let model = crate::files::load_weights_eagerly(model, &dir.join("model.bpk"))?;
    let features = Tensor::<2>::from_data(
        burn::tensor::TensorData::new(test_set.features.clone(), [test_set.len(), test_set.width]),
        &device,
    );
    let predicted: Vec<f64> = model
        .forward_flat(features)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Training(format!("reading predictions: {e:?}")))?
        .into_iter()
        .map(|v| encoder.unscale_target(v))
        .collect();
    let actual: Vec<f64> = values(&test_set)
        .iter()
        .map(|&v| encoder.unscale_target(v))
        .collect();
    Ok(RegressionMetrics::of(&predicted, &actual))
}

/// Continues the regression run in `run_dir` from its last complete checkpoint; with the
/// same seed the result equals that of a run never interrupted.
pub fn resume_regression(run_dir: &Path, options: &TrainOptions) -> Result<RegressionReport> {
    let config: RegressionConfig = crate::files::read_run_config(run_dir)?;
    train_regression(
        &config,
        run_dir,
        &TrainOptions {
            resume: true,
            ..options.clone()
        },
    )
}

/// Trains an MLP regressor on a table and writes a run folder (`config.toml`, `encoder.json`,
/// `model.bpk`, `metrics.csv`, `report.json`, `curves.png`, `checkpoint/`).
pub fn train_regression(
    config: &RegressionConfig,
    run_dir: &Path,
    options: &TrainOptions,
) -> Result<RegressionReport> {
    config.validate()?;
    let _turn = kiln_core::seed::exclusive_rng();
    let seed = Seed(config.recipe.seed);
    let (table, target) = load_table(config, &options.data_dir())?;
    let spec = TableSpec {
        task: Some(TableTask::Regression),
        ..TableSpec::target(&target)
    };
    let (rest, test_rows) = table.split(config.test_fraction, kiln_data::split::TEST_SPLIT_SEED);
    let (fit_rows, valid_rows) = kiln_data::split::validation_split(
        &vec![0; rest.len()],
        config.recipe.valid_fraction,
        seed.derive("valid"),
    )?;
    let train_rows: Vec<usize> = fit_rows.iter().map(|&i| rest[i]).collect();
    let valid_rows: Vec<usize> = valid_rows.iter().map(|&i| rest[i]).collect();
    let encoder = TableEncoder::fit(&table, &spec, &train_rows)?;
    let train_set = encoder.transform(&table, &train_rows)?;
    let valid_set = encoder.transform(&table, &valid_rows)?;
    let test_set = encoder.transform(&table, &test_rows)?;

    let fitted = crate::fit(&config.recipe(), run_dir, options, |setup| {
        if setup.resumed_from().is_none() {
            // The config records the resolved shard count, so it reproduces the run.
            let saved = RegressionConfig {
                recipe: setup.recipe().clone(),
                ..config.clone()
            };
            crate::files::write_toml(&run_dir.join("config.toml"), &saved)?;
            write_json(&run_dir.join("encoder.json"), &encoder)?;
        }
        let loaders = setup.loaders(
            RegressionBatcher,
            RegressionBatcher,
            TableDataset::new(train_set.clone()),
            TableDataset::new(valid_set.clone()),
        );
        let model = MlpConfig::new(encoder.width(), &config.hidden, 1)
            .with_dropout(config.dropout)
            .init(setup.device())?;
        let task = RegressionTask {
            model,
            loss: config.loss,
            dropout: config.dropout,
        };
        Ok((task, loaders))
    })?;
    let model_path = run_dir.join("model.bpk");
    crate::files::save_module(fitted.task.model.clone(), &model_path)?;

    // Held-out metrics in the target's units, by the reloaded run (what `kiln eval` prints).
    let test = evaluate_regression_run(run_dir, options.data_dir.as_deref())?;
    let actual: Vec<f64> = values(&test_set)
        .iter()
        .map(|&v| encoder.unscale_target(v))
        .collect();
    let train_mean = values(&train_set)
        .iter()
        .map(|&v| encoder.unscale_target(v))
        .sum::<f64>()
        / train_set.len().max(1) as f64;
    let report = RegressionReport {
        target,
        features: encoder.width(),
        train_size: train_set.len(),
        valid_size: valid_set.len(),
        test_size: test_set.len(),
        test,
        baseline: RegressionMetrics::of(&vec![train_mean; actual.len()], &actual),
        epochs: fitted.epochs,
        model_epoch: fitted.model_epoch,
        train_seconds: fitted.seconds,
    };
    write_json(&run_dir.join("report.json"), &report)?;
    Ok(report)
}
