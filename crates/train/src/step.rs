//! What Kiln's loop trains: a [`Task`], any burn `Module` that turns a batch into per-sample
//! losses (and, for classifiers, logits). The loop wraps it in [`Stepper`], which implements
//! burn-train's `TrainStep`/`InferenceStep` and adds what applies to every module:
//! data-parallel shards, quantization-aware training (fake-quantized Linear and convolution
//! weights, straight-through gradients) and pruned fine-tuning (zero weights stay zero).

use std::ops::Range;

use burn::module::{Devices, Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Int, Tensor};
use burn::train::metric::{Adaptor, ItemLazy, LossInput};
use burn::train::{
    ClassificationOutput, InferenceStep, LearnerModel, RegressionOutput, SupervisedTraining,
    TrainOutput, TrainStep,
};

/// A model with its loss: what [`fit`](crate::fit()) trains.
///
/// Implement it on a burn `Module` that holds your model (and anything else the loss needs,
/// e.g. a frozen teacher marked `#[module(skip)]`). `forward` returns **per-sample** losses
/// (shape `[batch]`, or `[batch · positions]` for sequence models): the loop minimises their
/// mean, and burn-train's loss metric weighs each batch by that length, so an epoch's loss is
/// the mean over its samples.
///
/// ```
/// use burn::module::Module;
/// use burn::nn::{Linear, LinearConfig};
/// use burn::train::ClassificationOutput;
/// use kiln_data::ImageBatch;
/// use kiln_train::{Task, per_sample_cross_entropy};
///
/// #[derive(Module, Debug)]
/// struct Logistic {
///     linear: Linear,
/// }
///
/// impl Task for Logistic {
///     type Batch = ImageBatch;
///     type Output = ClassificationOutput;
///
///     fn forward(&self, batch: ImageBatch) -> ClassificationOutput {
///         let logits = self.linear.forward(batch.images.flatten(1, 3));
///         let loss = per_sample_cross_entropy(logits.clone(), batch.targets.clone());
///         ClassificationOutput::new(loss, logits, batch.targets)
///     }
/// }
/// # let _ = Logistic { linear: LinearConfig::new(64, 10).init(&burn::tensor::Device::flex()) };
/// ```
pub trait Task: Module + core::fmt::Display + 'static {
    /// One batch, as the data loader's batcher builds it.
    type Batch: Send + Sync + Clone + core::fmt::Debug + 'static;
    /// The step's output: burn's `ClassificationOutput` (loss and accuracy are tracked) or
    /// `RegressionOutput` (loss only).
    type Output: TaskOutput;

    /// The training forward pass: per-sample losses and whatever the metrics read.
    fn forward(&self, batch: Self::Batch) -> Self::Output;

    /// The validation forward pass (default: [`Task::forward`]; called on the module in
    /// inference mode, without gradients).
    fn forward_valid(&self, batch: Self::Batch) -> Self::Output {
        self.forward(batch)
    }

    /// Splits a training batch for a data-parallel step (each shard's forward and backward
    /// on its own core, gradients summed: see `kiln_core::parallel`). Return `None` (the
    /// default) unless the training forward pass treats samples independently and draws no
    /// random numbers (no dropout, no batch normalisation): only then do shards compute
    /// exactly what the whole batch does. [`Shards::of`] splits any [`Shard`] batch.
    fn split(&self, batch: &Self::Batch, shards: usize) -> Option<Shards<Self::Batch>> {
        let _ = (batch, shards);
        None
    }

    /// One training step: forward, mean loss, backward. The default runs the batch whole,
    /// or in `shards` parts when [`Task::split`] allows; override it for a step that needs
    /// more (calling [`train_step`] for the plain case).
    fn train_step(&self, batch: Self::Batch, shards: usize) -> TrainOutput<Self::Output> {
        train_step(self, batch, shards)
    }
}

/// [`Task::train_step`]'s default: the batch whole, or split into `shards` parallel parts
/// when the task allows it.
pub fn train_step<T: Task>(task: &T, batch: T::Batch, shards: usize) -> TrainOutput<T::Output> {
    if shards > 1
        && let Some(split) = task.split(&batch, shards)
        && split.parts.len() > 1
    {
        let (grads, outs) = kiln_core::parallel::sharded_gradients(
            task,
            split.parts,
            split.batch_len,
            |replica, part| {
                let out = replica.forward(part);
                (out.loss(), out)
            },
        );
        return TrainOutput {
            grads,
            item: T::Output::concat(outs),
        };
    }
    let output = task.forward(batch);
    let grads = output.loss().mean().backward();
    TrainOutput::new(task, grads, output)
}

/// A training batch split for a data-parallel step.
#[derive(Clone, Debug)]
pub struct Shards<B> {
    /// Samples in the whole batch (the mean loss divides by it).
    pub batch_len: usize,
    /// The parts, in order.
    pub parts: Vec<B>,
}

impl<B: Shard> Shards<B> {
    /// `batch` cut into `shards` near-equal parts along its first dimension.
    pub fn of(batch: &B, shards: usize) -> Self {
        let batch_len = batch.len();
        Self {
            batch_len,
            parts: kiln_core::parallel::shard_ranges(batch_len, shards)
                .into_iter()
                .map(|r| batch.slice(r))
                .collect(),
        }
    }
}

/// A batch that can be cut along its samples.
pub trait Shard: Sized {
    /// Samples in the batch.
    fn len(&self) -> usize;
    /// Whether the batch is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Samples `range` of the batch.
    fn slice(&self, range: Range<usize>) -> Self;
}

fn rows<const D: usize>(t: &Tensor<D>, range: Range<usize>) -> Tensor<D> {
    t.clone().narrow(0, range.start, range.len())
}

fn int_rows<const D: usize>(t: &Tensor<D, Int>, range: Range<usize>) -> Tensor<D, Int> {
    t.clone().narrow(0, range.start, range.len())
}

impl Shard for kiln_data::ImageBatch {
    fn len(&self) -> usize {
        self.images.dims()[0]
    }

    fn slice(&self, range: Range<usize>) -> Self {
        Self {
            images: rows(&self.images, range.clone()),
            targets: int_rows(&self.targets, range.clone()),
            soft_targets: self.soft_targets.as_ref().map(|s| rows(s, range)),
        }
    }
}

impl Shard for kiln_data::tabular::RegressionBatch {
    fn len(&self) -> usize {
        self.features.dims()[0]
    }

    fn slice(&self, range: Range<usize>) -> Self {
        Self {
            features: rows(&self.features, range.clone()),
            targets: rows(&self.targets, range),
        }
    }
}

/// What a training or validation step returns: burn-train's output types, with the metrics
/// the loop tracks for them.
pub trait TaskOutput: ItemLazy + Adaptor<LossInput> + 'static {
    /// Whether the output carries class predictions (then the loop tracks accuracy and a run
    /// may monitor it).
    const ACCURACY: bool;

    /// Per-sample losses.
    fn loss(&self) -> Tensor<1>;

    /// The outputs of a batch's shards as one output of the whole batch (detached).
    fn concat(parts: Vec<Self>) -> Self;

    /// Registers the output's metrics beyond loss and learning rate.
    fn register<M>(training: SupervisedTraining<M>) -> SupervisedTraining<M>
    where
        M: LearnerModel + TrainStep<Output = Self> + InferenceStep<Output = Self>;
}

/// Shards' tensors as one, detached from their graphs (the step's gradients are already taken).
fn cat_detached<const D: usize>(parts: impl Iterator<Item = Tensor<D>>) -> Tensor<D> {
    Tensor::cat(parts.map(Tensor::detach).collect(), 0)
}

impl TaskOutput for ClassificationOutput {
    const ACCURACY: bool = true;

    fn loss(&self) -> Tensor<1> {
        self.loss.clone()
    }

    fn concat(parts: Vec<Self>) -> Self {
        ClassificationOutput::new(
            cat_detached(parts.iter().map(|p| p.loss.clone())),
            cat_detached(parts.iter().map(|p| p.output.clone())),
            Tensor::cat(parts.into_iter().map(|p| p.targets).collect(), 0),
        )
    }

    fn register<M>(training: SupervisedTraining<M>) -> SupervisedTraining<M>
    where
        M: LearnerModel + TrainStep<Output = Self> + InferenceStep<Output = Self>,
    {
        training
            .metric_train_numeric(burn::train::metric::AccuracyMetric::new())
            .metric_valid_numeric(burn::train::metric::AccuracyMetric::new())
    }
}

impl TaskOutput for RegressionOutput {
    const ACCURACY: bool = false;

    fn loss(&self) -> Tensor<1> {
        self.loss.clone()
    }

    fn concat(parts: Vec<Self>) -> Self {
        RegressionOutput::new(
            cat_detached(parts.iter().map(|p| p.loss.clone())),
            cat_detached(parts.iter().map(|p| p.output.clone())),
            cat_detached(parts.iter().map(|p| p.targets.clone())),
        )
    }

    fn register<M>(training: SupervisedTraining<M>) -> SupervisedTraining<M>
    where
        M: LearnerModel + TrainStep<Output = Self> + InferenceStep<Output = Self>,
    {
        training
    }
}

/// A [`Task`] as burn-train's learner model, with the loop's per-run step settings. The
/// wrapper is transparent to burn's module machinery: parameter paths, records and
/// checkpoints are the task's own.
#[derive(Clone, Debug)]
pub(crate) struct Stepper<T> {
    pub task: T,
    /// Shards of a training step (1: whole).
    pub shards: usize,
    /// Quantization-aware training: the forward pass sees Linear and convolution weights
    /// fake-quantized to this many bits.
    pub qat_bits: Option<u8>,
    /// Exact-zero Linear and convolution weights get no gradient (pruned fine-tuning).
    pub keep_pruned: bool,
}

impl<T: Task> Module for Stepper<T> {
    fn collect_devices(&self, devices: Devices) -> Devices {
        self.task.collect_devices(devices)
    }

    fn fork(self, device: &Device) -> Self {
        Self {
            task: self.task.fork(device),
            ..self
        }
    }

    fn to_device(self, device: &Device) -> Self {
        Self {
            task: self.task.to_device(device),
            ..self
        }
    }

    fn train(self) -> Self {
        Self {
            task: self.task.train(),
            ..self
        }
    }

    fn valid(&self) -> Self {
        Self {
            task: self.task.valid(),
            shards: self.shards,
            qat_bits: self.qat_bits,
            keep_pruned: self.keep_pruned,
        }
    }

    fn materialize(self) -> Self {
        Self {
            task: self.task.materialize(),
            ..self
        }
    }

    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        self.task.visit(visitor)
    }

    fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        Self {
            task: self.task.map(mapper),
            ..self
        }
    }
}

impl<T: Task> core::fmt::Display for Stepper<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(&self.task, f)
    }
}

impl<T: Task> TrainStep for Stepper<T> {
    type Input = T::Batch;
    type Output = T::Output;

    fn step(&self, batch: T::Batch) -> TrainOutput<T::Output> {
        let mut out = match self.qat_bits {
            Some(bits) => {
                // The task with fake-quantized weights computes the loss; the gradients are
                // the float parameters' (straight through the rounding).
                let quantized = fake_quantized(self.task.clone(), bits);
                let output = quantized.forward(batch);
                let grads = output.loss().mean().backward();
                TrainOutput::new(&self.task, grads, output)
            }
            None => self.task.train_step(batch, self.shards),
        };
        if self.keep_pruned {
            mask_pruned_gradients(&self.task, &mut out.grads);
        }
        out
    }
}

impl<T: Task> InferenceStep for Stepper<T> {
    type Input = T::Batch;
    type Output = T::Output;

    fn step(&self, batch: T::Batch) -> T::Output {
        self.task.forward_valid(batch)
    }
}

/// Replaces Linear and convolution weights by their fake-quantized values with a
/// straight-through gradient: `w + (q(w) − w).detach()`, `q` the symmetric per-tensor grid of
/// `bits` bits with the tensor's largest magnitude as its range (burn's MinMax).
struct FakeQuant {
    stack: Vec<(String, String)>,
    levels: f64,
}

impl ModuleMapper for FakeQuant {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.stack
            .push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let quantized = self.stack.last().is_some_and(|(name, container)| {
            name == "weight" && kiln_models::is_weight_layer(container)
        });
        if !quantized || D < 2 {
            return param;
        }
        let levels = self.levels;
        param.map(|w| {
            let scale = w.clone().detach().abs().max().clamp_min(1e-12) / levels;
            let scale = scale.reshape([1; D]);
            let q = (w.clone().detach() / scale.clone())
                .round()
                .clamp(-levels, levels)
                * scale;
            w.clone() + (q - w).detach()
        })
    }
}

/// `module` with the weights of its Linear and convolution layers (any module's, found by
/// burn's `ModuleMapper`) fake-quantized to `bits` bits (straight-through gradients).
pub fn fake_quantized<M: Module>(module: M, bits: u8) -> M {
    module.map(&mut FakeQuant {
        stack: Vec::new(),
        levels: ((1u32 << (bits - 1)) - 1) as f64,
    })
}

struct PrunedGradMask<'a> {
    stack: Vec<String>,
    grads: &'a mut burn::optim::GradientsParams,
}

impl ModuleVisitor for PrunedGradMask<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.stack.push(format!("{name}\0{container_type}"));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let weight = self
            .stack
            .last()
            .and_then(|s| s.split_once('\0'))
            .is_some_and(|(name, container)| {
                name == "weight" && kiln_models::is_weight_layer(container)
            });
        if !weight {
            return;
        }
        if let Some(grad) = self.grads.remove::<D>(param.id) {
            let device = grad.device();
            let keep = param.val().not_equal_elem(0.0).float().to_device(&device);
            self.grads.register(param.id, grad * keep);
        }
    }
}

/// Zeroes the gradient of every exact-zero element of `module`'s Linear and convolution
/// weights (the ones pruning zeroes; biases, norms, embeddings and class tokens train freely),
/// so pruned weights stay zero through optimizer steps: with a zero gradient from the start of
/// a run, SGD (with momentum), Adam and AdamW (decoupled decay of a zero weight) all leave them
/// at zero. This is the gradient side of PyTorch's `prune` re-parameterisation
/// (`weight = weight_orig * mask`), with the mask read from the weights themselves.
pub fn mask_pruned_gradients<M: Module>(module: &M, grads: &mut burn::optim::GradientsParams) {
    module.visit(&mut PrunedGradMask {
        stack: Vec::new(),
        grads,
    });
}
