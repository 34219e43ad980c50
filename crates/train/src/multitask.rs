//! Multi-task learning: one shared backbone, several classification heads, a weighted sum of
//! their cross-entropies, and metrics per head.
//!
//! Each head predicts a function of the dataset's label, given as a table `label → head
//! class`. On MNIST, for example, one head reads the digit and another says whether it is ≥ 5:
//!
//! ```no_run
//! use kiln_train::multitask::{Head, MultiTaskConfig, train_multitask};
//! let config = MultiTaskConfig::new(
//!     "mnist",
//!     vec![
//!         Head::new("digit", (0..10).collect(), 1.0),
//!         Head::new("at-least-5", (0..10).map(|d| usize::from(d >= 5)).collect(), 0.5),
//!     ],
//! );
//! let report = train_multitask(&config, "runs/mt".as_ref(), &Default::default())?;
//! for head in &report.heads {
//!     println!("{}: {:.2}%", head.name, 100.0 * head.test.accuracy);
//! }
//! # Ok::<(), kiln_train::Error>(())
//! ```
//!
//! The loss of a sample is `Σ_h w_h · CE(head_h(backbone(x)), map_h(label))`. burn-train's
//! per-epoch accuracy is the first head's; every head's test accuracy, per-class metrics and
//! confusion matrix are in the report.

use std::path::Path;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Int, Tensor, TensorData};
use burn::train::ClassificationOutput;
use kiln_core::Seed;
use kiln_data::{ImageBatch, ImageBatcher, ImageDataset, ImageSet, Normalizer};
use kiln_models::{Mlp, MlpConfig};
use serde::{Deserialize, Serialize};

use crate::TrainOptions;
use crate::files::write_json;
use crate::{EpochMetrics, Error, EvalReport, Result};

/// One classification head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    /// Name in reports.
    pub name: String,
    /// The head's class for each dataset label (`classes[label]`).
    pub classes: Vec<usize>,
    /// Weight of the head's loss.
    pub weight: f64,
}

impl Head {
    /// A head mapping dataset label `l` to class `classes[l]`, weighted by `weight`.
    pub fn new(name: &str, classes: Vec<usize>, weight: f64) -> Self {
        Self {
            name: name.to_string(),
            classes,
            weight,
        }
    }

    /// Number of classes the head predicts.
    pub fn num_classes(&self) -> usize {
        self.classes.iter().max().map_or(0, |m| m + 1)
    }
}

/// Everything that defines a multi-task run (saved as `config.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MultiTaskConfig {
    /// An image dataset (`digits`, `mnist`, `fashion-mnist`).
    pub dataset: String,
    /// The heads (at least one); the first one's accuracy is logged per epoch.
    pub heads: Vec<Head>,
    /// Hidden layer sizes of the shared MLP backbone; the last is the feature width.
    pub backbone: Vec<usize>,
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

crate::recipe::loop_settings!(MultiTaskConfig, "a multi-task run");

impl MultiTaskConfig {
    /// A recipe: backbone MLP 256-128, Adam 1e-3, 3 epochs of 64.
    pub fn new(dataset: &str, heads: Vec<Head>) -> Self {
        Self {
            dataset: dataset.to_string(),
            heads,
            backbone: vec![256, 128],
            recipe: crate::Recipe {
                epochs: 3,
                batch_size: 64,
                lr: 1e-3,
                ..crate::Recipe::default()
            },
            no_other_keys: crate::NoOtherKeys,
        }
    }

    /// Checks the settings against a dataset with `num_labels` labels.
    pub fn validate(&self, num_labels: usize) -> Result<()> {
        crate::recipe::plain_loop(&self.recipe, "a multi-task run")?;
        if self.heads.is_empty() || self.backbone.is_empty() {
            return Err(Error::InvalidSetting(
                "a multi-task model needs at least one head and one backbone layer".into(),
            ));
        }
        for head in &self.heads {
            if head.classes.len() != num_labels {
                return Err(Error::InvalidSetting(format!(
                    "head `{}` maps {} labels but dataset `{}` has {num_labels}",
                    head.name,
                    head.classes.len(),
                    self.dataset
                )));
            }
            if head.num_classes() < 2 {
                return Err(Error::InvalidSetting(format!(
                    "head `{}` must predict at least 2 classes",
                    head.name
                )));
            }
            if !(head.weight.is_finite() && head.weight >= 0.0) {
                return Err(Error::InvalidSetting(format!(
                    "head `{}`: the loss weight must be ≥ 0, found {}",
                    head.name, head.weight
                )));
            }
        }
        Ok(())
    }
}

/// A shared MLP backbone (ReLU features) with one linear head per task.
#[derive(Module, Debug)]
pub struct MultiTaskModel {
    /// Shared layers; its output layer produces the features.
    pub backbone: Mlp,
    /// One classifier per head.
    pub heads: Vec<Linear>,
}

impl MultiTaskModel {
    /// Logits of every head for `[batch, C, H, W]` images.
    pub fn forward(&self, images: Tensor<4>) -> Vec<Tensor<2>> {
        let [n, c, h, w] = images.dims();
        let features = relu(self.backbone.forward_flat(images.reshape([n, c * h * w])));
        self.heads
            .iter()
            .map(|head| head.forward(features.clone()))
            .collect()
    }
}

/// The model, the heads' label maps and loss weights: the unit the `Learner` drives.
#[derive(Module, Debug)]
pub struct MultiTaskTask {
    /// The model.
    pub model: MultiTaskModel,
    #[module(skip)]
    heads: Vec<Head>,
}

/// Per-sample `Σ_h w_h · CE_h` for head logits and dataset labels (`[batch]`).
pub fn multitask_loss(logits: &[Tensor<2>], labels: &Tensor<1, Int>, heads: &[Head]) -> Tensor<1> {
    let [n] = labels.dims();
    let device = labels.device();
    let mut total: Option<Tensor<1>> = None;
    for (logits, head) in logits.iter().zip(heads) {
        let targets = head_targets(labels, head, &device);
        let ce = crate::task::per_sample_cross_entropy(logits.clone(), targets) * head.weight;
        total = Some(match total {
            Some(t) => t + ce,
            None => ce,
        });
    }
    total.unwrap_or_else(|| Tensor::zeros([n], &device))
}

fn head_targets(
    labels: &Tensor<1, Int>,
    head: &Head,
    device: &burn::tensor::Device,
) -> Tensor<1, Int> {
    let map: Vec<i64> = head.classes.iter().map(|&c| c as i64).collect();
    let [k] = [map.len()];
    let table = Tensor::<1, Int>::from_data(TensorData::new(map, [k]), device);
    table.select(0, labels.clone())
}

impl MultiTaskTask {
    /// Forward pass: the weighted loss per sample, with the first head's logits and targets
    /// for burn-train's accuracy metric.
    pub fn forward_multitask(&self, batch: ImageBatch) -> ClassificationOutput {
        let logits = self.model.forward(batch.images);
        let loss = multitask_loss(&logits, &batch.targets, &self.heads);
        let device = batch.targets.device();
        let first = head_targets(&batch.targets, &self.heads[0], &device);
        ClassificationOutput::new(loss, logits[0].clone(), first)
    }
}

impl crate::Task for MultiTaskTask {
    type Batch = ImageBatch;
    type Output = ClassificationOutput;

    fn forward(&self, batch: ImageBatch) -> ClassificationOutput {
        self.forward_multitask(batch)
    }
}

/// One head's held-out metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadReport {
    /// Head name.
    pub name: String,
    /// Accuracy, per-class precision/recall/F1 and confusion matrix on the test split (the
    /// loss field is this head's unweighted cross-entropy).
    pub test: EvalReport,
}

/// What a multi-task run reports (also `report.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MultiTaskReport {
    /// Per-epoch metrics (weighted loss; the first head's accuracy).
    pub epochs: Vec<EpochMetrics>,
    /// Held-out metrics of each head.
    pub heads: Vec<HeadReport>,
    /// Wall-clock seconds of training.
    pub train_seconds: f64,
}

fn relabel(set: &ImageSet, head: &Head) -> Result<ImageSet> {
    Ok(set.relabel(
        set.labels().iter().map(|&l| head.classes[l]).collect(),
        (0..head.num_classes()).map(|c| c.to_string()).collect(),
    )?)
}

/// Continues the multi-task run in `run_dir` from its last complete checkpoint; with the
/// same seed the result equals that of a run never interrupted.
pub fn resume_multitask(run_dir: &Path, options: &TrainOptions) -> Result<MultiTaskReport> {
    let config: MultiTaskConfig = crate::files::read_run_config(run_dir)?;
    train_multitask(
        &config,
        run_dir,
        &TrainOptions {
            resume: true,
            ..options.clone()
        },
    )
}

/// Trains a shared backbone with several heads and writes a run folder.
pub fn train_multitask(
    config: &MultiTaskConfig,
    run_dir: &Path,
    options: &TrainOptions,
) -> Result<MultiTaskReport> {
    let _turn = kiln_core::seed::exclusive_rng();
    let seed = Seed(config.recipe.seed);
    let data = kiln_data::load_dataset(
        &config.dataset,
        seed,
        &options.data_dir(),
        &kiln_data::DataOptions::default(),
        config.recipe.valid_fraction,
    )?;
    config.validate(data.train.num_classes())?;
    let normalizer = Normalizer::fit(&data.train);
    let fitted = crate::fit(&config.recipe(), run_dir, options, |setup| {
        if setup.resumed_from().is_none() {
            // The config records the resolved shard count, so it reproduces the run.
            let saved = MultiTaskConfig {
                recipe: setup.recipe().clone(),
                ..config.clone()
            };
            crate::files::write_toml(&run_dir.join("config.toml"), &saved)?;
            write_json(&run_dir.join("normalizer.json"), &normalizer)?;
        }
        let [c, h, w] = data.train.shape();
        let batcher = ImageBatcher::new(data.train.shape(), normalizer.clone());
        let loaders = setup.loaders(
            batcher.clone(),
            batcher,
            ImageDataset::new(data.train.clone()),
            ImageDataset::new(data.valid.clone()),
        );
        let (features, layers) = config
            .backbone
            .split_last()
            .expect("validated: at least one backbone layer");
        let device = setup.device();
        let backbone = MlpConfig::new(c * h * w, layers, *features).init(device)?;
        let heads = config
            .heads
            .iter()
            .map(|head| LinearConfig::new(*features, head.num_classes()).init(device))
            .collect();
        let task = MultiTaskTask {
            model: MultiTaskModel { backbone, heads },
            heads: config.heads.clone(),
        };
        Ok((task, loaders))
    })?;
    let model_path = run_dir.join("model.bpk");
    crate::files::save_module(fitted.task.model.clone(), &model_path)?;

    // Per-head evaluation: run the model once per head on the test split relabelled for it.
    let model = fitted.task.model;
    let mut reports = Vec::new();
    for (index, head) in config.heads.iter().enumerate() {
        let test = relabel(&data.test, head)?;
        let single = HeadModel {
            model: model.clone(),
            index,
        };
        reports.push(HeadReport {
            name: head.name.clone(),
            test: crate::eval::evaluate_with(
                &|images| single.forward(images),
                &test,
                &normalizer,
                config.recipe.batch_size,
                &model.devices()[0],
            )?,
        });
    }
    let report = MultiTaskReport {
        epochs: fitted.epochs,
        heads: reports,
        train_seconds: fitted.seconds,
    };
    write_json(&run_dir.join("report.json"), &report)?;
    Ok(report)
}

struct HeadModel {
    model: MultiTaskModel,
    index: usize,
}

impl HeadModel {
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.model.forward(images).swap_remove(self.index)
    }
}
