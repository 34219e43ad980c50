use burn::module::Module;
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
    /// Forward pass with the cross-entropy loss of each sample (`[batch]`; the training step
    /// minimises their mean). Per-sample losses let burn-train's `LossMetric` weight each
    /// batch by its size: with one mean per batch it would weigh a short last batch as much as
    /// a full one, and the epoch's loss would not be the mean over the samples.
    pub fn forward_classification(&self, batch: ImageBatch) -> ClassificationOutput {
        let logits = self.model.forward(batch.images);
        let [n, _] = logits.dims();
        let log_probs = log_softmax(logits.clone(), 1);
        let loss = match batch.soft_targets {
            Some(soft) => (soft * log_probs).sum_dim(1).reshape([n]).neg(),
            None => log_probs
                .gather(1, batch.targets.clone().reshape([n, 1]))
                .reshape([n])
                .neg(),
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
        $crate::task::supervised_steps!($task, $input, $forward, burn::train::ClassificationOutput);
        impl $crate::fit::TaskMetrics for $task {
            fn register(
                training: burn::train::SupervisedTraining<Self>,
            ) -> burn::train::SupervisedTraining<Self> {
                training
                    .metric_train_numeric(burn::train::metric::AccuracyMetric::new())
                    .metric_valid_numeric(burn::train::metric::AccuracyMetric::new())
            }
        }
    };
    ($task:ty, $input:ty, $forward:ident, $output:ty) => {
        impl burn::train::TrainStep for $task {
            type Input = $input;
            type Output = $output;

            fn step(&self, batch: $input) -> burn::train::TrainOutput<Self::Output> {
                let output = self.$forward(batch);
                // The mean over the batch (a no-op for a task that already returns it).
                let grads = output.loss.clone().mean().backward();
                burn::train::TrainOutput::new(self, grads, output)
            }
        }

        impl burn::train::InferenceStep for $task {
            type Input = $input;
            type Output = $output;

            fn step(&self, batch: $input) -> Self::Output {
                self.$forward(batch)
            }
        }
    };
}
pub(crate) use supervised_steps;

supervised_steps!(ClassificationTask, ImageBatch, forward_classification);
