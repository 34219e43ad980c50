//! Kiln's loop on a model that is not in the zoo: a two-layer network defined here, trained
//! through `kiln_train::fit` on the bundled UCI digits. Pause and exact resume, the finished
//! run resumed, a changed recipe refused, frozen groups, early stopping, the divergence stop,
//! the data-parallel step and the accuracy monitor of a loss-only task.

use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use burn::train::{ClassificationOutput, RegressionOutput};
use kiln_core::Seed;
use kiln_data::{ImageBatch, ImageBatcher, ImageDataset, Normalizer, SplitImageSet};
use kiln_optim::GroupRule;
use kiln_train::{
    EarlyStopping, Error, Fitted, Monitor, Recipe, Shards, Task, TrainOptions, fit,
    per_sample_cross_entropy,
};

#[derive(Module, Debug)]
struct TwoLayer {
    hidden: Linear,
    out: Linear,
    /// Multiplies the loss by NaN (to exercise the divergence stop).
    #[module(skip)]
    poison: bool,
}

impl TwoLayer {
    fn new(device: &Device) -> Self {
        Self {
            hidden: LinearConfig::new(64, 32).init(device),
            out: LinearConfig::new(32, 10).init(device),
            poison: false,
        }
    }

    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        self.out
            .forward(relu(self.hidden.forward(images.flatten(1, 3))))
    }
}

impl Task for TwoLayer {
    type Batch = ImageBatch;
    type Output = ClassificationOutput;

    fn forward(&self, batch: ImageBatch) -> ClassificationOutput {
        let logits = self.logits(batch.images);
        let mut loss = per_sample_cross_entropy(logits.clone(), batch.targets.clone());
        if self.poison {
            loss = loss * f32::NAN;
        }
        ClassificationOutput::new(loss, logits, batch.targets)
    }

    fn split(&self, batch: &ImageBatch, shards: usize) -> Option<Shards<ImageBatch>> {
        Some(Shards::of(batch, shards))
    }
}

fn digits() -> SplitImageSet {
    kiln_data::load_split("digits", Seed(42)).unwrap()
}

fn recipe() -> Recipe {
    Recipe {
        epochs: 4,
        batch_size: 64,
        lr: 3e-3,
        schedule: kiln_optim::Schedule::Cosine { min_lr: 0.0 },
        ..Recipe::default()
    }
}

fn run(
    data: &SplitImageSet,
    recipe: &Recipe,
    dir: &Path,
    options: &TrainOptions,
    poison: bool,
) -> kiln_train::Result<Fitted<TwoLayer>> {
    let normalizer = Normalizer::fit(&data.train);
    fit(recipe, dir, options, |setup| {
        let task = TwoLayer {
            poison,
            ..TwoLayer::new(setup.device())
        };
        let batcher = ImageBatcher::new(data.train.shape(), normalizer);
        let loaders = setup.loaders(
            batcher.clone(),
            batcher,
            ImageDataset::new(data.train.clone()),
            ImageDataset::new(data.valid.clone()),
        );
        Ok((task, loaders))
    })
}

struct Values(Vec<f32>);

impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let data = param.val().into_data().convert::<f32>();
        self.0.extend(data.try_to_vec::<f32>().unwrap());
    }
}

fn values<M: Module>(module: &M) -> Vec<u32> {
    let mut v = Values(Vec::new());
    module.visit(&mut v);
    v.0.into_iter().map(f32::to_bits).collect()
}

fn losses(f: &Fitted<TwoLayer>) -> Vec<(u64, u64)> {
    f.epochs
        .iter()
        .map(|m| (m.train_loss.to_bits(), m.valid_loss.to_bits()))
        .collect()
}

fn test_accuracy(model: &TwoLayer, data: &SplitImageSet) -> f64 {
    let device = model.devices()[0].clone();
    kiln_train::evaluate_with(
        &|images| model.logits(images),
        &data.test,
        &Normalizer::fit(&data.train),
        256,
        &device,
    )
    .unwrap()
    .accuracy
}

#[test]
fn a_user_model_pauses_and_resumes_exactly_and_learns() {
    let data = digits();
    let tmp = tempfile::tempdir().unwrap();
    let (whole_dir, paused_dir) = (tmp.path().join("whole"), tmp.path().join("paused"));
    let whole = run(&data, &recipe(), &whole_dir, &TrainOptions::quiet(), false).unwrap();
    assert_eq!(whole.epochs.len(), 4);
    assert!(whole.epochs[3].train_loss < whole.epochs[0].train_loss / 2.0);
    let accuracy = test_accuracy(&whole.task, &data);
    assert!(accuracy > 0.9, "test accuracy {accuracy}");

    // The run folder: the recipe with its shards resolved, metrics, curves, the summary.
    let saved: Recipe =
        toml::from_str(&std::fs::read_to_string(whole_dir.join("recipe.toml")).unwrap()).unwrap();
    assert_eq!(saved.shards, Some(kiln_core::parallel::shards_for(64)));
    for file in [
        "metrics.csv",
        "curves.png",
        "fit.json",
        "checkpoint/model-4.bpk",
    ] {
        assert!(whole_dir.join(file).is_file(), "{file}");
    }

    let paused = TrainOptions {
        pause_after: Some(2),
        ..TrainOptions::quiet()
    };
    let err = run(&data, &recipe(), &paused_dir, &paused, false).unwrap_err();
    assert!(matches!(err, Error::Paused { epoch: 2, .. }), "{err}");
    let resume = TrainOptions {
        resume: true,
        ..TrainOptions::quiet()
    };
    let resumed = run(&data, &recipe(), &paused_dir, &resume, false).unwrap();
    assert_eq!(resumed.resumed_from, Some(2));
    assert_eq!(losses(&resumed), losses(&whole));
    assert_eq!(values(&resumed.task), values(&whole.task));

    // Resuming a finished loop trains nothing and gives the same task back.
    let again = run(&data, &recipe(), &paused_dir, &resume, false).unwrap();
    assert_eq!(again.seconds, 0.0);
    assert_eq!(values(&again.task), values(&whole.task));

    // Another recipe cannot continue the run.
    let other = Recipe {
        lr: 1e-2,
        ..recipe()
    };
    std::fs::remove_file(paused_dir.join("fit.json")).unwrap();
    let err = run(&data, &other, &paused_dir, &resume, false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("recipe.toml") && err.contains("another recipe"),
        "{err}"
    );
}

#[test]
fn the_sharded_step_equals_the_whole_batch() {
    let data = digits();
    let tmp = tempfile::tempdir().unwrap();
    let one = Recipe {
        epochs: 2,
        shards: Some(1),
        ..recipe()
    };
    let two = Recipe {
        shards: Some(2),
        ..one.clone()
    };
    let a = run(
        &data,
        &one,
        &tmp.path().join("a"),
        &TrainOptions::quiet(),
        false,
    )
    .unwrap();
    let b = run(
        &data,
        &two,
        &tmp.path().join("b"),
        &TrainOptions::quiet(),
        false,
    )
    .unwrap();
    for (x, y) in a.epochs.iter().zip(&b.epochs) {
        assert!(
            (x.train_loss - y.train_loss).abs() < 1e-5
                && (x.valid_loss - y.valid_loss).abs() < 1e-5,
            "{x:?} vs {y:?}"
        );
    }
}

#[test]
fn frozen_groups_early_stopping_and_divergence_work_on_a_user_model() {
    let data = digits();
    let tmp = tempfile::tempdir().unwrap();
    // A frozen layer keeps its initial weights: two frozen runs at different learning rates
    // end with the same `hidden` weights (and different `out` weights), a run without the
    // rule with other ones.
    let frozen = |lr: f64| Recipe {
        epochs: 2,
        lr,
        optim: kiln_optim::OptimConfig {
            groups: vec![GroupRule::frozen("hidden")],
            ..Default::default()
        },
        ..recipe()
    };
    let quiet = TrainOptions::quiet();
    let slow = run(
        &data,
        &frozen(1e-3),
        &tmp.path().join("slow"),
        &quiet,
        false,
    )
    .unwrap();
    let fast = run(
        &data,
        &frozen(1e-2),
        &tmp.path().join("fast"),
        &quiet,
        false,
    )
    .unwrap();
    let free = Recipe {
        optim: Default::default(),
        ..frozen(1e-2)
    };
    let free = run(&data, &free, &tmp.path().join("free"), &quiet, false).unwrap();
    assert_eq!(values(&slow.task.hidden), values(&fast.task.hidden));
    assert_ne!(values(&slow.task.out), values(&fast.task.out));
    assert_ne!(values(&free.task.hidden), values(&fast.task.hidden));

    // A rule naming no parameter is refused, naming the layers there are.
    let bad = Recipe {
        optim: kiln_optim::OptimConfig {
            groups: vec![GroupRule::frozen("encoder")],
            ..Default::default()
        },
        ..recipe()
    };
    let err = run(
        &data,
        &bad,
        &tmp.path().join("bad"),
        &TrainOptions::quiet(),
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("encoder") && err.contains("hidden"), "{err}");

    // Early stopping on the validation loss: an absurd min_delta stops after `patience`
    // epochs and restores the best (first) epoch's weights.
    let early = Recipe {
        epochs: 6,
        early_stopping: Some(EarlyStopping::new(2, 1e6)),
        monitor: Monitor::ValidLoss,
        ..recipe()
    };
    let e = run(
        &data,
        &early,
        &tmp.path().join("early"),
        &TrainOptions::quiet(),
        false,
    )
    .unwrap();
    assert_eq!(e.stopped_early_at, Some(3));
    assert_eq!((e.best_epoch, e.model_epoch), (Some(1), 1));

    // A NaN loss stops the run, naming the epoch and step.
    let err = run(
        &data,
        &recipe(),
        &tmp.path().join("nan"),
        &TrainOptions::quiet(),
        true,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Diverged {
                epoch: 1,
                step: Some(1),
                ..
            }
        ),
        "{err}"
    );
}

#[derive(Module, Debug)]
struct Regressor {
    linear: Linear,
}

impl Task for Regressor {
    type Batch = ImageBatch;
    type Output = RegressionOutput;

    fn forward(&self, batch: ImageBatch) -> RegressionOutput {
        let out = self.linear.forward(batch.images.flatten(1, 3));
        let [n, _] = out.dims();
        let target = batch.targets.float().reshape([n, 1]);
        let loss = (out.clone() - target.clone()).powi_scalar(2).reshape([n]);
        RegressionOutput::new(loss, out, target)
    }
}

#[test]
fn a_loss_only_task_cannot_monitor_accuracy() {
    let data = digits();
    let tmp = tempfile::tempdir().unwrap();
    let recipe = Recipe {
        monitor: Monitor::ValidAccuracy,
        ..recipe()
    };
    let normalizer = Normalizer::fit(&data.train);
    let err = fit(&recipe, tmp.path(), &TrainOptions::quiet(), |setup| {
        let batcher = ImageBatcher::new(data.train.shape(), normalizer);
        Ok((
            Regressor {
                linear: LinearConfig::new(64, 1).init(setup.device()),
            },
            setup.loaders(
                batcher.clone(),
                batcher,
                ImageDataset::new(data.train.clone()),
                ImageDataset::new(data.valid.clone()),
            ),
        ))
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("no accuracy"), "{err}");
}
