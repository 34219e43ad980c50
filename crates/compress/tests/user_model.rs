//! Compression works on any burn module, not only the zoo's: a network defined here is
//! trained with `kiln_train::fit`, magnitude-pruned and fine-tuned with its zeros kept,
//! trained quantization-aware, and quantized to int8, on the bundled UCI digits.

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use burn::train::ClassificationOutput;
use kiln_compress::{Granularity, Scope, prune_magnitude, quantize_weights, sparsity_report};
use kiln_core::Seed;
use kiln_data::{ImageBatch, ImageBatcher, ImageDataset, Normalizer, SplitImageSet};
use kiln_train::{Recipe, Task, TrainOptions, fit, per_sample_cross_entropy};

#[derive(Module, Debug)]
struct TwoLayer {
    hidden: Linear,
    out: Linear,
}

impl TwoLayer {
    fn new(device: &Device) -> Self {
        Self {
            hidden: LinearConfig::new(64, 64).init(device),
            out: LinearConfig::new(64, 10).init(device),
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
        let loss = per_sample_cross_entropy(logits.clone(), batch.targets.clone());
        ClassificationOutput::new(loss, logits, batch.targets)
    }
}

fn train(
    data: &SplitImageSet,
    recipe: &Recipe,
    dir: &std::path::Path,
    start: Option<TwoLayer>,
) -> TwoLayer {
    let normalizer = Normalizer::fit(&data.train);
    fit(recipe, dir, &TrainOptions::quiet(), |setup| {
        let task = match start {
            // A fitted task comes back detached from autodiff: `train()` makes it trainable.
            Some(task) => task.train().fork(setup.device()),
            None => TwoLayer::new(setup.device()),
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
    .unwrap()
    .task
}

fn accuracy(model: &TwoLayer, data: &SplitImageSet) -> f64 {
    kiln_train::evaluate_with(
        &|images| model.logits(images),
        &data.test,
        &Normalizer::fit(&data.train),
        256,
        &model.devices()[0],
    )
    .unwrap()
    .accuracy
}

/// Indices of the exact zeros among all Linear weights.
struct Zeros(Vec<usize>, usize);

impl ModuleVisitor for Zeros {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if D != 2 {
            return;
        }
        let values = param.val().into_data().convert::<f32>();
        for v in values.try_to_vec::<f32>().unwrap() {
            if v == 0.0 {
                self.0.push(self.1);
            }
            self.1 += 1;
        }
    }
}

fn zeros(model: &TwoLayer) -> Vec<usize> {
    let mut z = Zeros(Vec::new(), 0);
    model.visit(&mut z);
    z.0
}

#[test]
fn a_user_model_is_pruned_fine_tuned_with_its_zeros_and_quantized() {
    let data = kiln_data::load_split("digits", Seed(42)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let recipe = Recipe {
        epochs: 6,
        lr: 3e-3,
        ..Recipe::default()
    };
    let dense = train(&data, &recipe, &tmp.path().join("dense"), None);
    let dense_accuracy = accuracy(&dense, &data);
    assert!(dense_accuracy > 0.93, "dense {dense_accuracy}");

    // 80% of the Linear weights (one global threshold), then 3 epochs with the zeros kept.
    let pruned = prune_magnitude(dense.clone(), 0.8, Scope::Global, &[]).unwrap();
    let report = sparsity_report(&pruned).unwrap();
    assert!((report.sparsity() - 0.8).abs() < 0.01, "{report}");
    let before = zeros(&pruned);
    let finetune = Recipe {
        epochs: 3,
        keep_pruned: true,
        ..recipe.clone()
    };
    let tuned = train(&data, &finetune, &tmp.path().join("tuned"), Some(pruned));
    assert_eq!(zeros(&tuned), before, "pruned weights must stay zero");
    let tuned_accuracy = accuracy(&tuned, &data);
    assert!(
        tuned_accuracy > dense_accuracy - 0.03,
        "pruned and fine-tuned {tuned_accuracy} vs dense {dense_accuracy}"
    );

    // Quantization-aware fine-tuning at 4 bits, then int8 weights.
    let qat = Recipe {
        epochs: 2,
        qat_bits: Some(4),
        ..recipe.clone()
    };
    let qat_tuned = train(&data, &qat, &tmp.path().join("qat"), Some(dense.clone()));
    let four_bit = kiln_train::fake_quantized(qat_tuned.clone(), 4);
    let qat_accuracy = accuracy(&four_bit, &data);
    assert!(
        qat_accuracy > dense_accuracy - 0.03,
        "QAT 4-bit {qat_accuracy}"
    );

    let (int8, tensors) = quantize_weights(dense, 8, Granularity::PerTensor, 100.0).unwrap();
    assert_eq!(tensors, 2, "both Linear weights, not the biases");
    let int8_accuracy = accuracy(&int8, &data);
    assert!(
        (int8_accuracy - dense_accuracy).abs() <= 0.01,
        "int8 {int8_accuracy} vs f32 {dense_accuracy}"
    );
}
