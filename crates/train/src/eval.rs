use std::path::{Path, PathBuf};

use burn::tensor::Device;
use kiln_data::{ImageBatcher, ImageSet, Normalizer};
use kiln_models::{Classifier, ImageModel};
use serde::{Deserialize, Serialize};

use crate::error::io;
use crate::files::{RunFiles, load_weights_eagerly};
use crate::{Error, Result, TrainConfig};

/// Held-out evaluation of a classifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Correctly classified images.
    pub correct: usize,
    /// Images evaluated.
    pub total: usize,
    /// `correct / total`.
    pub accuracy: f64,
    /// Mean cross-entropy.
    pub loss: f64,
    /// Share of images whose class is among the 5 highest logits (all classes when there are
    /// fewer than 5).
    #[serde(default)]
    pub top5_accuracy: f64,
    /// Precision, recall and F1 of each class.
    #[serde(default)]
    pub per_class: Vec<ClassMetrics>,
    /// Unweighted mean of the per-class F1 scores.
    #[serde(default)]
    pub macro_f1: f64,
    /// `confusion[true][predicted]` counts.
    #[serde(default)]
    pub confusion: Vec<Vec<usize>>,
    /// Class names, indexed like the confusion matrix (the dataset's: Fashion-MNIST's
    /// clothing names, an image folder's sub-folders, a table's target values).
    #[serde(default)]
    pub classes: Vec<String>,
}

/// Precision, recall and F1 of one class (0 where undefined: no predictions or no images).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// Class index.
    pub class: usize,
    /// Class name (empty where the caller gave none).
    #[serde(default)]
    pub name: String,
    /// Images of this class.
    pub support: usize,
    /// Correct among those predicted as this class.
    pub precision: f64,
    /// Found among the images of this class.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
}

/// Per-class metrics and macro F1 from a confusion matrix (`confusion[true][predicted]`).
pub fn class_metrics(confusion: &[Vec<usize>]) -> (Vec<ClassMetrics>, f64) {
    let k = confusion.len();
    let per_class: Vec<ClassMetrics> = (0..k)
        .map(|c| {
            let tp = confusion[c][c] as f64;
            let support: usize = confusion[c].iter().sum();
            let predicted: usize = confusion.iter().map(|row| row[c]).sum();
            let ratio = |a: f64, b: usize| if b == 0 { 0.0 } else { a / b as f64 };
            let (precision, recall) = (ratio(tp, predicted), ratio(tp, support));
            let f1 = if precision + recall == 0.0 {
                0.0
            } else {
                2.0 * precision * recall / (precision + recall)
            };
            ClassMetrics {
                class: c,
                name: String::new(),
                support,
                precision,
                recall,
                f1,
            }
        })
        .collect();
    let macro_f1 = per_class.iter().map(|m| m.f1).sum::<f64>() / k.max(1) as f64;
    (per_class, macro_f1)
}

/// Evaluates any image classifier `model` (a zoo model or a user's burn module implementing
/// `kiln_models::Classifier`) on `set`, normalised with `normalizer`, on `device`:
/// accuracy, top-5, per-class precision/recall/F1, confusion matrix.
pub fn evaluate<M: Classifier + burn::module::Module>(
    model: &M,
    set: &ImageSet,
    normalizer: &Normalizer,
    batch_size: usize,
    device: &Device,
) -> Result<EvalReport> {
    evaluate_with(
        &|images| kiln_core::parallel::sharded_forward(model, images, |m, x| m.forward(x)),
        set,
        normalizer,
        batch_size,
        device,
    )
}

/// [`evaluate`] for any function from `[batch, C, H, W]` images to logits (a user's own
/// model: `&|images| model.forward(images)`). A model whose output width is not the set's
/// number of classes is an error (an image folder that gained a class since the model was
/// trained), never an index out of bounds.
pub fn evaluate_with(
    model: &dyn Fn(burn::tensor::Tensor<4>) -> burn::tensor::Tensor<2>,
    set: &ImageSet,
    normalizer: &Normalizer,
    batch_size: usize,
    device: &Device,
) -> Result<EvalReport> {
    let batcher = ImageBatcher::new(set.shape(), normalizer.clone());
    let indices: Vec<usize> = (0..set.len()).collect();
    let mut tally = Tally::new(set.classes().to_vec());
    for chunk in indices.chunks(batch_size.max(1)) {
        let batch = batcher.batch_indices(set, chunk, device);
        let labels: Vec<usize> = chunk.iter().map(|&i| set.labels()[i]).collect();
        tally.add(model(batch.images), &labels)?;
    }
    Ok(tally.report())
}

/// The cross-entropy of one row of logits against class `truth` (computed in f64 from the
/// row's log-sum-exp) and the row's argmax (ties to the lower index).
pub(crate) fn nll_and_argmax(row: &[f32], truth: usize) -> (f64, usize) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = max
        + row
            .iter()
            .map(|&v| (v as f64 - max).exp())
            .sum::<f64>()
            .ln();
    let predicted = (0..row.len())
        .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
        .unwrap_or(0);
    (lse - row[truth] as f64, predicted)
}

/// Accumulates a classifier's held-out metrics batch by batch: accuracy, top-5, mean
/// cross-entropy, the confusion matrix.
pub(crate) struct Tally {
    k: usize,
    classes: Vec<String>,
    confusion: Vec<Vec<usize>>,
    correct: usize,
    top5: usize,
    total: usize,
    loss_sum: f64,
}

impl Tally {
    /// A tally over the classes named `classes`.
    pub(crate) fn new(classes: Vec<String>) -> Self {
        let num_classes = classes.len();
        Self {
            k: num_classes,
            classes,
            confusion: vec![vec![0; num_classes]; num_classes],
            correct: 0,
            top5: 0,
            total: 0,
            loss_sum: 0.0,
        }
    }

    /// Adds one batch of `[batch, classes]` logits with their true labels.
    pub(crate) fn add(&mut self, logits: burn::tensor::Tensor<2>, labels: &[usize]) -> Result<()> {
        let [n, width] = logits.dims();
        if width != self.k {
            return Err(Error::InvalidSetting(format!(
                "the model predicts {width} classes but the evaluation data has {}; was the dataset changed since the model was trained?",
                self.k
            )));
        }
        if n != labels.len() {
            return Err(Error::Training(format!(
                "{n} rows of logits for {} labels",
                labels.len()
            )));
        }
        let values = logits
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| Error::Training(format!("reading the evaluation logits: {e:?}")))?;
        if let Some(&bad) = labels.iter().find(|&&l| l >= width) {
            return Err(Error::InvalidSetting(format!(
                "label {bad} is out of range for a model of {width} classes"
            )));
        }
        for (row, &truth) in values.chunks(width.max(1)).zip(labels) {
            let (nll, predicted) = nll_and_argmax(row, truth);
            self.loss_sum += nll;
            // Ties go to the lower index, like argmax.
            let rank = row
                .iter()
                .enumerate()
                .filter(|&(j, &v)| v > row[truth] || (v == row[truth] && j < truth))
                .count();
            if predicted == truth {
                self.correct += 1;
            }
            if rank < 5 {
                self.top5 += 1;
            }
            self.confusion[truth][predicted] += 1;
            self.total += 1;
        }
        Ok(())
    }

    pub(crate) fn report(self) -> EvalReport {
        let total = self.total.max(1) as f64;
        let (mut per_class, macro_f1) = class_metrics(&self.confusion);
        for (m, name) in per_class.iter_mut().zip(&self.classes) {
            m.name = name.clone();
        }
        EvalReport {
            correct: self.correct,
            total: self.total,
            accuracy: self.correct as f64 / total,
            loss: self.loss_sum / total,
            top5_accuracy: self.top5 as f64 / total,
            per_class,
            macro_f1,
            confusion: self.confusion,
            classes: self.classes,
        }
    }
}

pub(crate) fn check_run_dir(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        return Err(Error::BadRunFile {
            path: dir.to_path_buf(),
            reason: "not a run folder (expected a directory written by `kiln train`)".into(),
        });
    }
    Ok(())
}

/// Writes a run folder holding `model` (a model derived from a run: pruned, quantized,
/// distilled...) with the `config` and `normalizer` it runs under, so that [`load_run`],
/// [`evaluate_run`] and `kiln eval` / `predict` take it like a trained run. The weights are
/// written last, to a temporary file renamed into place.
pub fn save_run(
    dir: &Path,
    config: &TrainConfig,
    normalizer: &Normalizer,
    model: &ImageModel,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let files = RunFiles::new(dir);
    config.save(&files.config)?;
    crate::files::write_json(&files.normalizer, normalizer)?;
    crate::files::remove_stale(&[&files.report, &files.metrics])?;
    let partial = dir.join("model.partial.bpk");
    crate::files::save_module(model.clone(), &partial)?;
    std::fs::rename(&partial, &files.model).map_err(io(&files.model))
}

/// Loads a run folder's config, normaliser and trained model onto `device`.
pub fn load_run(dir: &Path, device: &Device) -> Result<(TrainConfig, Normalizer, ImageModel)> {
    check_run_dir(dir)?;
    let files = RunFiles::new(dir);
    let config = TrainConfig::load(&files.config)?;
    let text = std::fs::read_to_string(&files.normalizer).map_err(io(&files.normalizer))?;
    let normalizer: Normalizer = serde_json::from_str(&text).map_err(|e| Error::BadRunFile {
        path: files.normalizer.clone(),
        reason: e.to_string(),
    })?;
    if !files.model.is_file() {
        return Err(Error::Weights {
            path: files.model.clone(),
            reason: "file not found".into(),
        });
    }
    let model = config.model.init_image(device)?;
    let model = load_weights_eagerly(model, &files.model)?;
    Ok((config, normalizer, model))
}

/// The train, validation and test images of a run's dataset, as its config selects them
/// (validation share and per-class limits included), read from `data_dir` (else
/// `KILN_DATA_DIR`, else the user cache). The test images are the dataset's fixed split; the
/// validation images are drawn from the training part by the run's seed.
pub fn load_data(
    config: &TrainConfig,
    data_dir: Option<&Path>,
) -> Result<kiln_data::SplitImageSet> {
    let dir = kiln_data::data_dir::resolve(data_dir.map(Path::to_path_buf));
    let mut data = kiln_data::load_dataset(
        &config.dataset,
        kiln_core::Seed(config.recipe.seed),
        &dir,
        &config.data,
        config.recipe.valid_fraction,
    )?;
    if let Some(n) = config.train_per_class {
        data.train = data.train.first_per_class(n);
    }
    if let Some(n) = config.test_per_class {
        data.test = data.test.first_per_class(n);
    }
    Ok(data)
}

/// Reloads a run folder and evaluates it on its dataset's held-out test split (the dataset's
/// fixed split, never seen in training or validation), reading data from the default data
/// directory.
pub fn evaluate_run(dir: &Path) -> Result<EvalReport> {
    evaluate_run_in(dir, None)
}

/// [`evaluate_run`] with an explicit data directory.
pub fn evaluate_run_in(dir: &Path, data_dir: Option<&Path>) -> Result<EvalReport> {
    evaluate_run_split(dir, data_dir, EvalSplit::Test)
}

/// Which part of a run's dataset to evaluate on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvalSplit {
    /// The validation images the run held out from its training data (the ones its early
    /// stopping and best-epoch choice saw).
    Valid,
    /// The dataset's fixed test split.
    #[default]
    Test,
}

impl std::str::FromStr for EvalSplit {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "valid" | "validation" => Ok(Self::Valid),
            "test" => Ok(Self::Test),
            other => Err(Error::InvalidSetting(format!(
                "unknown split `{other}`: use `valid` or `test`"
            ))),
        }
    }
}

/// Refuses a run trained before test splits became fixed (its `report.json` has no
/// `valid_size`): on a dataset without a published split, today's test split overlaps the
/// images it trained on, so its accuracy would be silently optimistic. MNIST and
/// Fashion-MNIST kept their published test sets and stay evaluable.
fn check_split_era(dir: &Path, config: &TrainConfig) -> Result<()> {
    let path = RunFiles::new(dir).report;
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let Ok(report) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Ok(());
    };
    let published = matches!(config.dataset.as_str(), "mnist" | "fashion-mnist");
    if report.get("valid_size").is_none() && !published {
        return Err(Error::BadRunFile {
            path,
            reason: format!(
                "this run was trained before Kiln's test splits became fixed (2026-12-01): on `{}` today's test split includes images it trained on; retrain it",
                config.dataset
            ),
        });
    }
    Ok(())
}

/// Reloads a run folder and evaluates it on one part of its dataset.
pub fn evaluate_run_split(
    dir: &Path,
    data_dir: Option<&Path>,
    split: EvalSplit,
) -> Result<EvalReport> {
    check_run_dir(dir)?;
    let spec = TrainConfig::load(&RunFiles::new(dir).config)?.recipe.device;
    let device = spec.device();
    let (config, normalizer, model) = load_run(dir, &device)?;
    check_split_era(dir, &config)?;
    let data = load_data(&config, data_dir)?;
    let set = match split {
        EvalSplit::Valid => &data.valid,
        EvalSplit::Test => &data.test,
    };
    evaluate(
        &model,
        set,
        &normalizer,
        config.recipe.batch_size.max(256),
        &device,
    )
}

/// The `[channels, height, width]` a run's model takes: the configured image size, else the
/// model's own input (an MLP's `input_size` is taken as square images of the normaliser's
/// channels).
pub fn run_input_shape(config: &TrainConfig, normalizer: &Normalizer) -> Result<[usize; 3]> {
    use kiln_models::ModelConfig;
    let channels = normalizer.mean.len().max(1);
    if let Some([h, w]) = config.data.image_size {
        return Ok([channels, h, w]);
    }
    match &config.model {
        ModelConfig::Cnn(c) => Ok(c.input),
        ModelConfig::VitLite(c) => Ok(c.input),
        ModelConfig::Efficientnet(c) => Ok(c.input),
        ModelConfig::Mlp(c) => {
            let side = ((c.input_size / channels) as f64).sqrt().round() as usize;
            if side * side * channels == c.input_size {
                Ok([channels, side, side])
            } else {
                Err(Error::InvalidSetting(format!(
                    "the MLP takes {} features, not square {channels}-channel images",
                    c.input_size
                )))
            }
        }
        other => Err(Error::InvalidSetting(format!(
            "a {} model does not take images",
            other.kind()
        ))),
    }
}

/// A run folder's image classifier, ready to serve: its model, input normalisation, input
/// shape and class names (from `report.json` when the run wrote one, else the class
/// indices). Images are decoded and resized like image folders (shorter side, centre crop).
pub struct ImageClassifier {
    model: ImageModel,
    normalizer: Normalizer,
    shape: [usize; 3],
    classes: Vec<String>,
    device: Device,
}

impl std::fmt::Debug for ImageClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageClassifier")
            .field("shape", &self.shape)
            .field("classes", &self.classes.len())
            .finish()
    }
}

impl ImageClassifier {
    /// Loads the run folder `dir` (trained, fine-tuned, pruned or quantized) on `device`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let (config, normalizer, model) = load_run(dir, device)?;
        let shape = run_input_shape(&config, &normalizer)?;
        let num_classes = config.model.num_classes();
        let report = RunFiles::new(dir).report;
        let named = std::fs::read_to_string(&report)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|v| {
                serde_json::from_value::<Vec<String>>(v.get("test")?.get("classes")?.clone()).ok()
            })
            .filter(|names| names.len() == num_classes);
        let classes = named.unwrap_or_else(|| (0..num_classes).map(|i| i.to_string()).collect());
        Ok(Self {
            model,
            normalizer,
            shape,
            classes,
            device: device.clone(),
        })
    }

    /// `[channels, height, width]` of the model's input.
    pub fn input_shape(&self) -> [usize; 3] {
        self.shape
    }

    /// The class names, by index.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    fn folder_options(&self) -> kiln_data::image_folder::FolderOptions {
        use kiln_data::image_folder::{Channels, FolderOptions, Resize};
        FolderOptions {
            size: [self.shape[1], self.shape[2]],
            channels: if self.shape[0] == 1 {
                Channels::Grey
            } else {
                Channels::Rgb
            },
            resize: Resize::default(),
        }
    }

    /// Decodes an encoded image (PNG, JPEG...) into the model's normalised input pixels;
    /// `what` names it in the error.
    pub fn decode(&self, bytes: &[u8], what: &str) -> Result<Vec<f32>> {
        let image = image::load_from_memory(bytes).map_err(|e| {
            Error::InvalidSetting(format!("{what} is not an image this build decodes: {e}"))
        })?;
        let mut pixels = kiln_data::image_folder::to_pixels(&image, &self.folder_options());
        self.normalizer.apply(&mut pixels);
        Ok(pixels)
    }

    /// Decodes an image file like [`ImageClassifier::decode`].
    pub fn decode_file(&self, path: &Path) -> Result<Vec<f32>> {
        let mut pixels = kiln_data::image_folder::load_image(path, &self.folder_options())?;
        self.normalizer.apply(&mut pixels);
        Ok(pixels)
    }

    /// The `k` most probable classes `(index, probability)` of each image (pixels from
    /// [`ImageClassifier::decode`]), computed as one batch.
    pub fn top_k(&self, images: &[Vec<f32>], k: usize) -> Result<Vec<Vec<(usize, f32)>>> {
        use burn::tensor::{Tensor, TensorData, activation::softmax};
        let [c, h, w] = self.shape;
        if images.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(bad) = images.iter().find(|p| p.len() != c * h * w) {
            return Err(Error::InvalidSetting(format!(
                "an image of {} values for a model that takes {c}x{h}x{w}",
                bad.len()
            )));
        }
        let n = images.len();
        let x: Tensor<4> =
            Tensor::from_data(TensorData::new(images.concat(), [n, c, h, w]), &self.device);
        let logits = self.model.forward(x);
        let k = k.clamp(1, logits.dims()[1]);
        let (probs, indices) = softmax(logits, 1).topk_with_indices(k, 1);
        let read = |e| Error::InvalidSetting(format!("reading probabilities: {e:?}"));
        let probs: Vec<f32> = probs.into_data().try_to_vec().map_err(read)?;
        let indices: Vec<i64> = indices
            .into_data()
            .convert::<i64>()
            .try_to_vec()
            .map_err(read)?;
        Ok(indices
            .chunks(k)
            .zip(probs.chunks(k))
            .map(|(i, p)| {
                i.iter()
                    .map(|&i| i as usize)
                    .zip(p.iter().copied())
                    .collect()
            })
            .collect())
    }
}

/// Classifies image files (PNG/JPEG, resized and centre-cropped like image folders) with a
/// run's model: for each image the `k` most probable classes as `(class index, probability)`.
pub fn predict_images(dir: &Path, images: &[PathBuf], k: usize) -> Result<Vec<Vec<(usize, f32)>>> {
    let classifier = ImageClassifier::load(dir, &Device::flex())?;
    let mut out = Vec::with_capacity(images.len());
    for path in images {
        let pixels = classifier.decode_file(path)?;
        out.extend(classifier.top_k(&[pixels], k)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_recall_and_f1_from_a_confusion_matrix() {
        // Class 0: 3 images, 2 found; class 1: 1 image, found, plus one false positive.
        let confusion = vec![vec![2, 1], vec![0, 1]];
        let (per_class, macro_f1) = class_metrics(&confusion);
        assert_eq!(per_class[0].support, 3);
        assert_eq!(
            (per_class[0].precision, per_class[0].recall),
            (1.0, 2.0 / 3.0)
        );
        assert_eq!((per_class[1].precision, per_class[1].recall), (0.5, 1.0));
        let f1_0 = 2.0 * (2.0 / 3.0) / (1.0 + 2.0 / 3.0);
        let f1_1 = 2.0 * 0.5 / 1.5;
        assert!((per_class[0].f1 - f1_0).abs() < 1e-12);
        assert!((macro_f1 - (f1_0 + f1_1) / 2.0).abs() < 1e-12);
        // A class never predicted and never present: zeros, not NaN.
        let (empty, _) = class_metrics(&[vec![1, 0], vec![0, 0]]);
        assert_eq!(empty[1].f1, 0.0);
    }
}
