//! burn `Dataset` and `Batcher` for image classification, with augmentation in the data-loader
//! workers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderIterator};
use burn::data::dataset::{Dataset, DatasetError};
use burn::tensor::{Device, Int, Tensor, TensorData};
use kiln_core::Seed;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::ImageSet;
use crate::augment::Augment;

/// One image and its label.
#[derive(Clone, Debug)]
pub struct ImageItem {
    /// `[C, H, W]` pixels, row-major.
    pub pixels: Vec<f32>,
    /// Class index.
    pub label: usize,
    /// Position of the image in its dataset (seeds its augmentation).
    pub index: usize,
}

/// An [`ImageSet`] as a burn [`Dataset`].
#[derive(Clone, Debug)]
pub struct ImageDataset {
    set: Arc<ImageSet>,
}

impl ImageDataset {
    /// Wraps an image set.
    pub fn new(set: ImageSet) -> Self {
        Self { set: Arc::new(set) }
    }

    /// The underlying set.
    pub fn set(&self) -> &ImageSet {
        &self.set
    }
}

impl Dataset<ImageItem> for ImageDataset {
    fn get(&self, index: usize) -> Result<ImageItem, DatasetError> {
        Ok(ImageItem {
            pixels: self.set.image(index).to_vec(),
            label: self.set.labels[index],
            index,
        })
    }

    fn len(&self) -> usize {
        self.set.len()
    }
}

/// Per-channel standardisation `(x − mean[c]) / std[c]`, fitted on a training set only and
/// saved with a run so evaluation applies exactly the same transform.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalizer {
    /// Mean of each channel.
    pub mean: Vec<f32>,
    /// Standard deviation of each channel (never below 1e-6).
    pub std: Vec<f32>,
}

impl Normalizer {
    /// Fits channel means and standard deviations on `set` (computed in f64).
    pub fn fit(set: &ImageSet) -> Self {
        let [c, h, w] = set.shape;
        let plane = h * w;
        let mut sum = vec![0f64; c];
        let mut sq = vec![0f64; c];
        for i in 0..set.len() {
            for (ch, values) in set.image(i).chunks(plane).enumerate() {
                for &v in values {
                    sum[ch] += f64::from(v);
                    sq[ch] += f64::from(v) * f64::from(v);
                }
            }
        }
        let n = (set.len() * plane).max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(s, m)| ((s / n - m * m).max(0.0).sqrt() as f32).max(1e-6))
            .collect();
        Self {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
        }
    }

    /// The identity transform for `channels` channels.
    pub fn identity(channels: usize) -> Self {
        Self {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    /// Applies the transform in place to one `[C, H, W]` image.
    pub fn apply(&self, pixels: &mut [f32]) {
        let plane = pixels.len() / self.mean.len();
        for (ch, values) in pixels.chunks_mut(plane).enumerate() {
            let (m, s) = (self.mean[ch], self.std[ch]);
            for v in values {
                *v = (*v - m) / s;
            }
        }
    }
}

/// A batch of images and class targets.
#[derive(Clone, Debug)]
pub struct ImageBatch {
    /// `[batch, C, H, W]`, normalised.
    pub images: Tensor<4>,
    /// `[batch]` class indices (after mixup/cutmix: the label with the larger weight).
    pub targets: Tensor<1, Int>,
    /// `[batch, classes]` label distributions when mixup or cutmix mixed the batch.
    pub soft_targets: Option<Tensor<2>>,
}

/// The current epoch, shared between a training loop's data loader ([`EpochLoader`]) and the
/// batchers in its workers, so augmentation differs from epoch to epoch yet stays seeded.
#[derive(Clone, Debug, Default)]
pub struct EpochCounter(Arc<AtomicUsize>);

impl EpochCounter {
    /// A counter at `epoch` (0 before the first pass; set it to `k` to resume after epoch `k`).
    pub fn starting_at(epoch: usize) -> Self {
        Self(Arc::new(AtomicUsize::new(epoch)))
    }

    /// The epoch of the pass in progress (1-based once a pass started).
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    fn advance(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// A burn [`DataLoader`] that advances an [`EpochCounter`] each time a pass over the data
/// starts (burn-train calls `iter` once per epoch).
pub struct EpochLoader<O> {
    inner: Arc<dyn DataLoader<O>>,
    epochs: EpochCounter,
}

impl<O: 'static> EpochLoader<O> {
    /// Wraps `inner`; its batchers should hold clones of `epochs`.
    pub fn new(inner: Arc<dyn DataLoader<O>>, epochs: EpochCounter) -> Arc<dyn DataLoader<O>> {
        Arc::new(Self { inner, epochs })
    }
}

impl<O: 'static> DataLoader<O> for EpochLoader<O> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<O> + 'a> {
        self.epochs.advance();
        self.inner.iter()
    }

    fn num_items(&self) -> usize {
        self.inner.num_items()
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<O>> {
        EpochLoader::new(self.inner.to_device(device), self.epochs.clone())
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<O>> {
        EpochLoader::new(self.inner.slice(start, end), self.epochs.clone())
    }
}

#[derive(Clone, Debug)]
struct Augmentation {
    augment: Arc<Augment>,
    seed: Seed,
    epochs: EpochCounter,
    num_classes: usize,
}

/// Stacks [`ImageItem`]s into an [`ImageBatch`]: augments each image (when set up with
/// [`ImageBatcher::with_augment`]), normalises it, then mixes the batch (mixup/cutmix).
///
/// burn's `DataLoader` calls the batcher in its worker threads, so augmentation never runs on
/// the training thread. Each image's random draws are seeded by the run seed, the epoch and the
/// image's dataset index: the same seed gives the same augmented epoch whatever the number of
/// workers.
#[derive(Clone, Debug)]
pub struct ImageBatcher {
    shape: [usize; 3],
    normalizer: Normalizer,
    augmentation: Option<Augmentation>,
}

impl ImageBatcher {
    /// A batcher for images of `shape` (`[C, H, W]`).
    pub fn new(shape: [usize; 3], normalizer: Normalizer) -> Self {
        Self {
            shape,
            normalizer,
            augmentation: None,
        }
    }

    /// Augments training batches with `augment`, seeded by `seed`, the epoch in `epochs` and
    /// each item's index. Mixup/cutmix targets are distributions over `num_classes`.
    pub fn with_augment(
        mut self,
        augment: Augment,
        seed: Seed,
        epochs: EpochCounter,
        num_classes: usize,
    ) -> Self {
        self.augmentation = (!augment.is_identity()).then(|| Augmentation {
            augment: Arc::new(augment),
            seed,
            epochs,
            num_classes,
        });
        self
    }

    /// Builds a batch directly from an image set's indices (used by evaluation).
    pub fn batch_indices(&self, set: &ImageSet, indices: &[usize], device: &Device) -> ImageBatch {
        let items = indices
            .iter()
            .map(|&i| ImageItem {
                pixels: set.image(i).to_vec(),
                label: set.labels[i],
                index: i,
            })
            .collect();
        self.batch(items, device)
    }
}

impl Batcher<ImageItem, ImageBatch> for ImageBatcher {
    fn batch(&self, items: Vec<ImageItem>, device: &Device) -> ImageBatch {
        let [c, h, w] = self.shape;
        let n = items.len();
        let mut pixels = Vec::with_capacity(n * c * h * w);
        let mut labels = Vec::with_capacity(n);
        let mut first_index = 0;
        for (k, mut item) in items.into_iter().enumerate() {
            if let Some(aug) = &self.augmentation {
                let key = aug
                    .seed
                    .derive_keyed("augment", &[aug.epochs.get() as u64, item.index as u64]);
                aug.augment.apply(
                    &mut item.pixels,
                    self.shape,
                    &mut StdRng::seed_from_u64(key),
                );
            }
            if k == 0 {
                first_index = item.index;
            }
            self.normalizer.apply(&mut item.pixels);
            pixels.extend_from_slice(&item.pixels);
            labels.push(item.label);
        }
        let mut soft_targets = None;
        if let Some(aug) = &self.augmentation
            && let Some(mix) = &aug.augment.mix
            && n > 1
        {
            let key = aug.seed.derive_keyed(
                "mix",
                &[aug.epochs.get() as u64, first_index as u64, n as u64],
            );
            let mixed = mix.apply(&mut pixels, n, self.shape, &mut StdRng::seed_from_u64(key));
            let k = aug.num_classes;
            let mut soft = vec![0f32; n * k];
            let mut hard = Vec::with_capacity(n);
            for i in 0..n {
                let (own, partner) = (labels[i], labels[n - 1 - i]);
                soft[i * k + own] += mixed.lambda;
                soft[i * k + partner] += 1.0 - mixed.lambda;
                hard.push(if mixed.lambda >= 0.5 { own } else { partner });
            }
            labels = hard;
            soft_targets = Some(Tensor::from_data(TensorData::new(soft, [n, k]), device));
        }
        let labels: Vec<i64> = labels.into_iter().map(|l| l as i64).collect();
        ImageBatch {
            images: Tensor::from_data(TensorData::new(pixels, [n, c, h, w]), device),
            targets: Tensor::from_data(TensorData::new(labels, [n]), device),
            soft_targets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ImageSet {
        ImageSet {
            pixels: vec![0.0, 2.0, 4.0, 6.0, 1.0, 3.0, 5.0, 7.0],
            labels: vec![0, 1],
            shape: [1, 2, 2],
            classes: vec!["a".into(), "b".into()],
        }
    }

    #[test]
    fn normalizer_fits_mean_and_std() {
        let norm = Normalizer::fit(&tiny());
        assert!((norm.mean[0] - 3.5).abs() < 1e-6);
        // population std of 0..=7 is sqrt(5.25)
        assert!((norm.std[0] - 5.25f32.sqrt()).abs() < 1e-6);
        let mut px = vec![3.5, 3.5 + 5.25f32.sqrt(), 0.0, 0.0];
        norm.apply(&mut px);
        assert!((px[0]).abs() < 1e-6 && (px[1] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn batcher_stacks_images_and_labels() {
        let set = tiny();
        let device = Device::flex();
        let batch = ImageBatcher::new([1, 2, 2], Normalizer::identity(1)).batch_indices(
            &set,
            &[1, 0],
            &device,
        );
        assert_eq!(batch.images.dims(), [2, 1, 2, 2]);
        assert_eq!(
            batch.images.into_data().try_to_vec::<f32>().unwrap(),
            vec![1.0, 3.0, 5.0, 7.0, 0.0, 2.0, 4.0, 6.0]
        );
        assert_eq!(
            batch
                .targets
                .into_data()
                .convert::<i64>()
                .try_to_vec::<i64>()
                .unwrap(),
            vec![1, 0]
        );
    }
}
