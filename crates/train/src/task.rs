use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};
use burn::train::ClassificationOutput;
use kiln_data::ImageBatch;
use kiln_models::{Classifier, ImageModel};

/// A zoo classifier trained with cross-entropy: the unit burn-train's `Learner` drives.
#[derive(Module, Debug)]
pub struct ClassificationTask {
    /// The model being trained.
    pub model: ImageModel,
    /// Pruned weights (exact zeros of Linear and convolution weights) get no gradient and stay
    /// zero (see [`mask_pruned_gradients`]).
    #[module(skip)]
    pub keep_pruned: bool,
    /// A frozen teacher whose softened outputs the model learns from (knowledge
    /// distillation); training steps only.
    #[module(skip)]
    pub teacher: Option<Teacher>,
    /// Quantization-aware training: bits of the fake-quantized weights of the forward pass.
    #[module(skip)]
    pub qat_bits: Option<u8>,
    /// Feature distillation: the trained projection from the model's features to the
    /// teacher's (not part of the saved model).
    pub projection: Option<burn::nn::Linear>,
    /// Shards of a training step, each run as a rayon task
    /// (`kiln_core::parallel::sharded_gradients`); 1 runs the batch whole. Only for models
    /// whose config is `shardable`; steps with a teacher or QAT always run whole.
    #[module(skip)]
    pub shards: usize,
}

/// Replaces Linear and convolution weights by their fake-quantized values with a
/// straight-through gradient: `w + (q(w) − w).detach()`, `q` the symmetric per-tensor grid of
/// `bits` bits with the tensor's largest magnitude as its range (burn's MinMax).
struct FakeQuant {
    stack: Vec<(String, String)>,
    levels: f64,
}

impl burn::module::ModuleMapper for FakeQuant {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.stack
            .push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
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

/// `model` with its weights fake-quantized to `bits` bits (straight-through gradients).
pub fn fake_quantized(model: ImageModel, bits: u8) -> ImageModel {
    use burn::module::Module;
    model.map(&mut FakeQuant {
        stack: Vec::new(),
        levels: ((1u32 << (bits - 1)) - 1) as f64,
    })
}

/// A frozen teacher for logit distillation.
#[derive(Clone, Debug)]
pub struct Teacher {
    /// The teacher, on the non-autodiff device (inference mode).
    pub model: std::sync::Arc<ImageModel>,
    /// Per-channel `(scale, shift)` turning the student's normalised images into the
    /// teacher's: `x_t = x_s · scale + shift`.
    pub renormalize: Vec<(f32, f32)>,
    /// Temperature T.
    pub temperature: f64,
    /// Weight α of the distillation term.
    pub alpha: f64,
    /// Weight β of the feature term.
    pub feature_weight: f64,
}

impl Teacher {
    /// The teacher's `(features, logits)` for the student's (autodiff) batch, as constants.
    fn features_and_logits(&self, images: &Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let x = images.clone().inner();
        let [_, c, _, _] = x.dims();
        let device = x.device();
        let (scale, shift): (Vec<f32>, Vec<f32>) = self.renormalize.iter().copied().unzip();
        let scale = Tensor::<1>::from_floats(scale.as_slice(), &device).reshape([1, c, 1, 1]);
        let shift = Tensor::<1>::from_floats(shift.as_slice(), &device).reshape([1, c, 1, 1]);
        let (features, logits) = self.model.forward_features(x * scale + shift);
        (Tensor::from_inner(features), Tensor::from_inner(logits))
    }
}

/// Per-sample distillation loss `α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1 − α)·CE(s, y)`
/// (`[n]`), with `student` and `teacher` logits `[n, classes]` and class `targets` `[n]`.
pub fn distillation_loss(
    student: Tensor<2>,
    teacher: Tensor<2>,
    targets: Tensor<1, Int>,
    temperature: f64,
    alpha: f64,
) -> Tensor<1> {
    let [n, _] = student.dims();
    let t = temperature;
    let log_p_teacher = log_softmax(teacher / t, 1);
    let log_p_student = log_softmax(student.clone() / t, 1);
    let kl = (log_p_teacher.clone().exp() * (log_p_teacher - log_p_student))
        .sum_dim(1)
        .reshape([n]);
    let hard = per_sample_cross_entropy(student, targets);
    kl * (alpha * t * t) + hard * (1.0 - alpha)
}

impl ClassificationTask {
    /// Forward pass with the cross-entropy loss of each sample (`[batch]`, see
    /// [`per_sample_cross_entropy`]); soft targets (mixup, cutmix, label smoothing) use
    /// `−Σ_k p_k · log softmax(z)_k`.
    pub fn forward_classification(&self, batch: ImageBatch) -> ClassificationOutput {
        classify(&self.model, batch)
    }
}

/// [`ClassificationTask::forward_classification`] of `model` (also the fake-quantized copy or a
/// shard's replica).
fn classify(model: &ImageModel, batch: ImageBatch) -> ClassificationOutput {
    let ImageBatch {
        images,
        targets,
        soft_targets,
    } = batch;
    classified(model.forward(images), targets, soft_targets)
}

/// The output of a classification step from the batch's `logits`.
fn classified(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    soft_targets: Option<Tensor<2>>,
) -> ClassificationOutput {
    let loss = match soft_targets {
        Some(soft) => {
            let [n, _] = logits.dims();
            (soft * log_softmax(logits.clone(), 1))
                .sum_dim(1)
                .reshape([n])
                .neg()
        }
        None => per_sample_cross_entropy(logits.clone(), targets.clone()),
    };
    ClassificationOutput::new(loss, logits, targets)
}

/// Cross-entropy of each row of `logits` (`[n, classes]`) against its class in `targets`
/// (`[n]`): `−log softmax(z)_target`, shape `[n]`.
///
/// Every Kiln task returns per-sample (or per-token) losses and lets the training step
/// minimise their mean: burn-train's `LossMetric` weights a batch by the length of its loss
/// tensor, so only per-sample losses make an epoch's loss the mean over its samples (a single
/// mean per batch would weigh a short last batch like a full one).
pub fn per_sample_cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let [n, _] = logits.dims();
    log_softmax(logits, 1)
        .gather(1, targets.reshape([n, 1]))
        .reshape([n])
        .neg()
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
        $crate::task::accuracy_metrics!($task);
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

/// Registers training and validation accuracy for a classification task.
macro_rules! accuracy_metrics {
    ($task:ty) => {
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
}
pub(crate) use accuracy_metrics;

impl burn::train::TrainStep for ClassificationTask {
    type Input = ImageBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: ImageBatch) -> burn::train::TrainOutput<ClassificationOutput> {
        let [n, _, _, _] = batch.images.dims();
        if self.shards > 1 && self.teacher.is_none() && self.qat_bits.is_none() && n > 1 {
            let mut out = self.sharded_step(batch, n);
            if self.keep_pruned {
                mask_pruned_gradients(self, &mut out.grads);
            }
            return out;
        }
        let qat_model = self
            .qat_bits
            .map(|bits| fake_quantized(self.model.clone(), bits));
        let model = qat_model.as_ref().unwrap_or(&self.model);
        let output = match &self.teacher {
            Some(teacher) => {
                let (t_features, t_logits) = teacher.features_and_logits(&batch.images);
                let (features, logits) = model.forward_features(batch.images);
                let mut loss = distillation_loss(
                    logits.clone(),
                    t_logits,
                    batch.targets.clone(),
                    teacher.temperature,
                    teacher.alpha,
                );
                if let Some(projection) = &self.projection {
                    let [n, _] = features.dims();
                    let hint = (projection.forward(features) - t_features)
                        .powi_scalar(2)
                        .mean_dim(1)
                        .reshape([n]);
                    loss = loss + hint * teacher.feature_weight;
                }
                ClassificationOutput::new(loss, logits, batch.targets)
            }
            None => classify(model, batch),
        };
        let grads = output.loss.clone().mean().backward();
        let mut out = burn::train::TrainOutput::new(self, grads, output);
        if self.keep_pruned {
            mask_pruned_gradients(self, &mut out.grads);
        }
        out
    }
}

impl ClassificationTask {
    /// A plain training step with the batch split into `shards` threads; the item holds the
    /// whole batch's losses, logits and targets (detached), as the unsharded step's would.
    fn sharded_step(
        &self,
        batch: ImageBatch,
        n: usize,
    ) -> burn::train::TrainOutput<ClassificationOutput> {
        let [_, c, h, w] = batch.images.dims();
        let shards: Vec<ImageBatch> = kiln_core::parallel::shard_ranges(n, self.shards)
            .into_iter()
            .map(|r| ImageBatch {
                images: batch.images.clone().slice([r.clone(), 0..c, 0..h, 0..w]),
                targets: batch.targets.clone().slice([r.clone()]),
                soft_targets: batch.soft_targets.as_ref().map(|s| {
                    let [_, k] = s.dims();
                    s.clone().slice([r.clone(), 0..k])
                }),
            })
            .collect();
        let (grads, outs) =
            kiln_core::parallel::sharded_gradients(&self.model, shards, n, |model, shard| {
                let out = classify(model, shard);
                (out.loss.clone(), out)
            });
        let (mut loss, mut output, mut targets) = (Vec::new(), Vec::new(), Vec::new());
        for out in outs {
            loss.push(out.loss.detach());
            output.push(out.output.detach());
            targets.push(out.targets);
        }
        burn::train::TrainOutput {
            grads,
            item: ClassificationOutput::new(
                Tensor::cat(loss, 0),
                Tensor::cat(output, 0),
                Tensor::cat(targets, 0),
            ),
        }
    }
}

impl burn::train::InferenceStep for ClassificationTask {
    type Input = ImageBatch;
    type Output = ClassificationOutput;

    /// Validation: the batch split across the cores (`kiln_core::parallel::sharded_forward`;
    /// without gradients every model computes each sample on its own).
    fn step(&self, batch: ImageBatch) -> ClassificationOutput {
        let ImageBatch {
            images,
            targets,
            soft_targets,
        } = batch;
        let logits = kiln_core::parallel::sharded_forward(&self.model, images, |m, x| m.forward(x));
        classified(logits, targets, soft_targets)
    }
}

accuracy_metrics!(ClassificationTask);

/// The projection from `student`'s features to `teacher`'s for feature distillation (their
/// widths read from one forward pass on zeros of `input`), on `device`.
pub(crate) fn feature_projection(
    student: &ImageModel,
    teacher: &Teacher,
    input: [usize; 3],
    device: &burn::tensor::Device,
) -> burn::nn::Linear {
    let [c, h, w] = input;
    let width = |m: &ImageModel, d: &burn::tensor::Device| {
        m.forward_features(Tensor::zeros([1, c, h, w], d)).0.dims()[1]
    };
    let teacher_device = teacher
        .model
        .devices()
        .into_iter()
        .next()
        .unwrap_or_default();
    burn::nn::LinearConfig::new(
        width(student, device),
        width(&teacher.model, &teacher_device),
    )
    .init(device)
}

/// Loads the teacher run of `distill` for a student trained with `normalizer`, checking that
/// both predict the same classes from images with the same channels.
pub(crate) fn load_teacher(
    distill: &crate::config::Distill,
    normalizer: &kiln_data::Normalizer,
    student: &kiln_models::ModelConfig,
) -> crate::Result<Teacher> {
    let spec = crate::TrainConfig::load(&distill.teacher.join("config.toml"))?;
    let device = spec.device.device();
    let (teacher_config, teacher_norm, model) = crate::load_run(&distill.teacher, &device)?;
    if teacher_config.model.num_classes() != student.num_classes() {
        return Err(crate::Error::InvalidSetting(format!(
            "the teacher {} predicts {} classes, the student {}",
            distill.teacher.display(),
            teacher_config.model.num_classes(),
            student.num_classes()
        )));
    }
    if teacher_norm.mean.len() != normalizer.mean.len() {
        return Err(crate::Error::InvalidSetting(format!(
            "the teacher {} takes {}-channel images, the student {}",
            distill.teacher.display(),
            teacher_norm.mean.len(),
            normalizer.mean.len()
        )));
    }
    let renormalize = (0..normalizer.mean.len())
        .map(|c| {
            let (ms, ss) = (normalizer.mean[c], normalizer.std[c]);
            let (mt, st) = (teacher_norm.mean[c], teacher_norm.std[c]);
            (ss / st, (ms - mt) / st)
        })
        .collect();
    Ok(Teacher {
        model: std::sync::Arc::new(model),
        renormalize,
        temperature: distill.temperature,
        alpha: distill.alpha,
        feature_weight: distill.feature_weight,
    })
}

struct PrunedGradMask<'a> {
    stack: Vec<String>,
    grads: &'a mut burn::optim::GradientsParams,
}

impl burn::module::ModuleVisitor for PrunedGradMask<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.stack.push(format!("{name}\0{container_type}"));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{ModuleVisitor, Param};
    use burn::optim::GradientsParams;
    use burn::tensor::{Device, Distribution};
    use burn::train::TrainStep;

    struct MaxDiff<'a>(&'a GradientsParams, &'a GradientsParams, f32, usize);
    impl ModuleVisitor for MaxDiff<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let a = self
                .0
                .get::<D>(p.id)
                .expect("a gradient for every parameter");
            let b = self
                .1
                .get::<D>(p.id)
                .expect("a sharded gradient for every parameter");
            self.2 = self.2.max((a - b).abs().max().into_scalar());
            self.3 += 1;
        }
    }

    #[test]
    fn a_sharded_step_computes_the_whole_batchs_step() {
        // Draws from the backend RNG: not while another test seeds it.
        let _rng = kiln_core::seed::exclusive_rng();
        let device = Device::flex().autodiff();
        for preset in ["cnn-small", "vit-lite"] {
            let config = kiln_models::preset(preset).unwrap().config;
            assert!(config.shardable());
            let task = |shards| ClassificationTask {
                model: config.init_image(&device).unwrap(),
                keep_pruned: false,
                teacher: None,
                qat_bits: None,
                projection: None,
                shards,
            };
            let whole = task(1);
            let mut sharded = task(2);
            sharded.model = whole.model.clone();
            for soft in [false, true] {
                let batch = || ImageBatch {
                    images: Tensor::random([7, 1, 28, 28], Distribution::Normal(0.0, 1.0), &device)
                        .detach(),
                    targets: Tensor::<1, Int>::from_ints([0, 1, 2, 3, 4, 5, 6], &device),
                    soft_targets: soft.then(|| {
                        burn::tensor::activation::softmax(
                            Tensor::random([7, 10], Distribution::Normal(0.0, 1.0), &device),
                            1,
                        )
                    }),
                };
                let b = batch();
                let copy = ImageBatch {
                    images: b.images.clone(),
                    targets: b.targets.clone(),
                    soft_targets: b.soft_targets.clone(),
                };
                let a = TrainStep::step(&whole, b);
                let s = TrainStep::step(&sharded, copy);
                let mut diff = MaxDiff(&a.grads, &s.grads, 0.0, 0);
                whole.visit(&mut diff);
                assert!(
                    diff.3 > 5 && diff.2 < 1e-5,
                    "{preset}: {} params, {}",
                    diff.3,
                    diff.2
                );
                let loss_diff: f32 = (a.item.loss - s.item.loss).abs().max().into_scalar();
                assert!(
                    loss_diff < 1e-5,
                    "{preset}: per-sample losses differ by {loss_diff}"
                );
                assert_eq!(s.item.output.dims(), [7, 10]);
            }
        }
    }
}
