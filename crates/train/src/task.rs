use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;
use burn::train::ClassificationOutput;
use kiln_data::ImageBatch;
use kiln_models::{Classifier, ImageModel};

/// A zoo classifier trained with cross-entropy: the unit burn-train's `Learner` drives.
#[derive(Module, Debug)]
pub struct ClassificationTask {
    /// The model being trained.
    pub model: ImageModel,
}

impl ClassificationTask {
    /// Forward pass with the cross-entropy loss.
    pub fn forward_classification(&self, batch: ImageBatch) -> ClassificationOutput {
        let logits = self.model.forward(batch.images);
        let loss = match batch.soft_targets {
            Some(soft) => soft_cross_entropy(logits.clone(), soft),
            None => CrossEntropyLossConfig::new()
                .init(&logits.device())
                .forward(logits.clone(), batch.targets.clone()),
        };
        ClassificationOutput::new(loss, logits, batch.targets)
    }
}

/// Cross-entropy against label distributions (mixup / cutmix targets):
/// `mean over the batch of −Σ_k p_k · log softmax(z)_k`.
pub fn soft_cross_entropy(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let log_probs = log_softmax(logits, 1);
    (targets * log_probs).sum_dim(1).mean().neg()
}

/// Implements burn-train's `TrainStep` (forward, loss, backward) and `InferenceStep` (forward,
/// loss) for a task whose `$forward` method maps a batch to a `ClassificationOutput`.
macro_rules! supervised_steps {
    ($task:ty, $input:ty, $forward:ident) => {
        impl burn::train::TrainStep for $task {
            type Input = $input;
            type Output = burn::train::ClassificationOutput;

            fn step(&self, batch: $input) -> burn::train::TrainOutput<Self::Output> {
                let output = self.$forward(batch);
                burn::train::TrainOutput::new(self, output.loss.backward(), output)
            }
        }

        impl burn::train::InferenceStep for $task {
            type Input = $input;
            type Output = burn::train::ClassificationOutput;

            fn step(&self, batch: $input) -> Self::Output {
                self.$forward(batch)
            }
        }
    };
}
pub(crate) use supervised_steps;

supervised_steps!(ClassificationTask, ImageBatch, forward_classification);
