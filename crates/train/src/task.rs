use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};
use burn::train::ClassificationOutput;
use kiln_data::ImageBatch;
use kiln_models::{Classifier, ImageModel};

use crate::step::{Shards, Task};

/// A zoo classifier trained with cross-entropy (a [`Task`]; pruned fine-tuning and QAT are
/// the loop's, see [`crate::Recipe`]).
#[derive(Module, Debug)]
pub struct ClassificationTask {
    /// The model being trained.
    pub model: ImageModel,
    /// A frozen teacher whose softened outputs the model learns from (knowledge
    /// distillation); training steps only.
    #[module(skip)]
    pub teacher: Option<Teacher>,
    /// Feature distillation: the trained projection from the model's features to the
    /// teacher's (not part of the saved model).
    pub projection: Option<burn::nn::Linear>,
    /// Whether a training batch may be split across threads: the model's config is
    /// `shardable` (no dropout, no batch norm) and there is no teacher.
    #[module(skip)]
    pub shardable: bool,
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

impl Task for ClassificationTask {
    type Batch = ImageBatch;
    type Output = ClassificationOutput;

    /// Cross-entropy (soft targets under mixup, cutmix and label smoothing), or with a
    /// teacher the distillation loss (plus the feature hint when there is a projection).
    fn forward(&self, batch: ImageBatch) -> ClassificationOutput {
        let Some(teacher) = &self.teacher else {
            return classify(&self.model, batch);
        };
        let (t_features, t_logits) = teacher.features_and_logits(&batch.images);
        let (features, logits) = self.model.forward_features(batch.images);
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

    /// Validation: the plain classification loss, the batch split across the cores
    /// (`kiln_core::parallel::sharded_forward`; without gradients every model computes each
    /// sample on its own).
    fn forward_valid(&self, batch: ImageBatch) -> ClassificationOutput {
        let ImageBatch {
            images,
            targets,
            soft_targets,
        } = batch;
        let logits = kiln_core::parallel::sharded_forward(&self.model, images, |m, x| m.forward(x));
        classified(logits, targets, soft_targets)
    }

    fn split(&self, batch: &ImageBatch, shards: usize) -> Option<Shards<ImageBatch>> {
        (self.shardable && self.teacher.is_none()).then(|| Shards::of(batch, shards))
    }
}

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
    let device = spec.recipe.device.device();
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{ModuleVisitor, Param};
    use burn::optim::GradientsParams;
    use burn::tensor::{Device, Distribution};

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
            let whole = ClassificationTask {
                model: config.init_image(&device).unwrap(),
                teacher: None,
                projection: None,
                shardable: true,
            };
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
                let a = whole.train_step(b, 1);
                let s = whole.train_step(copy, 2);
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
