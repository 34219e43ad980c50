//! burn `Dataset` and `Batcher` for image classification, with augmentation in the data-loader
//! workers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderIterator};
use burn::data::dataset::{Dataset, DatasetError};
use burn::tensor::{Device, Int, Tensor, TensorData};
use kiln_core::Seed;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
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
/// starts (burn-train calls `iter` once per epoch, on the training thread).
///
/// With [`EpochLoader::reseeding`], it also reseeds the device's random generator (dropout and
/// other in-model randomness) from `(seed, epoch)` at the start of each pass, so a run resumed
/// after epoch `k` draws exactly what an uninterrupted run draws from epoch `k + 1` on.
pub struct EpochLoader<O> {
    inner: Arc<dyn DataLoader<O>>,
    epochs: EpochCounter,
    reseed: Option<(Seed, Device)>,
}

impl<O: 'static> EpochLoader<O> {
    /// Wraps `inner`; its batchers should hold clones of `epochs`. (Returns the wrapper as
    /// the trait object burn-train takes, which is all a caller does with it.)
    #[allow(clippy::new_ret_no_self)]
    pub fn new(inner: Arc<dyn DataLoader<O>>, epochs: EpochCounter) -> Arc<dyn DataLoader<O>> {
        Arc::new(Self {
            inner,
            epochs,
            reseed: None,
        })
    }

    /// Like [`EpochLoader::new`], and reseeds `device` from `seed` and the epoch at the start
    /// of every pass.
    pub fn reseeding(
        inner: Arc<dyn DataLoader<O>>,
        epochs: EpochCounter,
        seed: Seed,
        device: Device,
    ) -> Arc<dyn DataLoader<O>> {
        Arc::new(Self {
            inner,
            epochs,
            reseed: Some((seed, device)),
        })
    }

    fn wrap(
        &self,
        inner: Arc<dyn DataLoader<O>>,
        device: Option<&Device>,
    ) -> Arc<dyn DataLoader<O>> {
        let reseed = self
            .reseed
            .clone()
            .map(|(seed, old)| (seed, device.cloned().unwrap_or(old)));
        Arc::new(Self {
            inner,
            epochs: self.epochs.clone(),
            reseed,
        })
    }
}

impl<O: 'static> DataLoader<O> for EpochLoader<O> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<O> + 'a> {
        let epoch = self.epochs.advance();
        if let Some((seed, device)) = &self.reseed {
            Seed(seed.derive_keyed("device", &[epoch as u64])).apply(device);
        }
        self.inner.iter()
    }

    fn num_items(&self) -> usize {
        self.inner.num_items()
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<O>> {
        self.wrap(self.inner.to_device(device), Some(device))
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<O>> {
        self.wrap(self.inner.slice(start, end), None)
    }
}

/// A dataset visited in a fresh seeded order each epoch: the order of epoch `e` is the
/// permutation drawn from `(seed, e)`, whatever happened before. Unlike a loader that shuffles
/// from one running generator, a run resumed after epoch `k` sees the same batches in epoch
/// `k + 1` as an uninterrupted run. Load it without the loader's own shuffling.
pub struct EpochShuffled<D> {
    inner: D,
    seed: Seed,
    epochs: EpochCounter,
    order: RwLock<(usize, Arc<Vec<usize>>)>,
}

impl<D> EpochShuffled<D> {
    /// Shuffles `inner` per epoch of `epochs` (share the counter with the [`EpochLoader`]).
    pub fn new(inner: D, seed: Seed, epochs: EpochCounter) -> Self {
        Self {
            inner,
            seed,
            epochs,
            order: RwLock::new((usize::MAX, Arc::new(Vec::new()))),
        }
    }

    /// The visiting order of `epoch` over `len` items.
    pub fn order_of(seed: Seed, epoch: usize, len: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..len).collect();
        let mut rng = StdRng::seed_from_u64(seed.derive_keyed("shuffle", &[epoch as u64]));
        order.shuffle(&mut rng);
        order
    }

    fn current_order(&self, len: usize) -> Arc<Vec<usize>> {
        let epoch = self.epochs.get();
        {
            let cached = self.order.read().unwrap_or_else(|e| e.into_inner());
            if cached.0 == epoch {
                return cached.1.clone();
            }
        }
        let mut cached = self.order.write().unwrap_or_else(|e| e.into_inner());
        if cached.0 != epoch {
            *cached = (epoch, Arc::new(Self::order_of(self.seed, epoch, len)));
        }
        cached.1.clone()
    }
}

impl<I, D: Dataset<I>> Dataset<I> for EpochShuffled<D> {
    fn get(&self, index: usize) -> Result<I, DatasetError> {
        let len = self.inner.len();
        if index >= len {
            return self.inner.get(index);
        }
        let order = self.current_order(len);
        self.inner.get(order[index])
    }

    fn len(&self) -> usize {
        self.inner.len()
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
    smoothing: Option<(f32, usize)>,
}

impl ImageBatcher {
    /// A batcher for images of `shape` (`[C, H, W]`).
    pub fn new(shape: [usize; 3], normalizer: Normalizer) -> Self {
        Self {
            shape,
            normalizer,
            augmentation: None,
            smoothing: None,
        }
    }

    /// Label smoothing ε over `num_classes` (PyTorch's `label_smoothing`): every batch gets
    /// soft targets `(1 − ε)·t + ε/K`, where `t` is the one-hot label or the mixup/cutmix
    /// mixture.
    pub fn with_label_smoothing(mut self, epsilon: f32, num_classes: usize) -> Self {
        self.smoothing = (epsilon > 0.0).then_some((epsilon, num_classes));
        self
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
        let mut soft_targets: Option<Vec<f32>> = None;
        if let Some(aug) = &self.augmentation
            && let Some(mix) = aug.augment.mix()
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
            soft_targets = Some(soft);
        }
        if let Some((eps, k)) = self.smoothing {
            let mut soft = soft_targets.unwrap_or_else(|| {
                let mut onehot = vec![0f32; n * k];
                for (i, &label) in labels.iter().enumerate() {
                    onehot[i * k + label] = 1.0;
                }
                onehot
            });
            for p in &mut soft {
                *p = (1.0 - eps) * *p + eps / k as f32;
            }
            soft_targets = Some(soft);
        }
        let soft_targets = soft_targets.map(|soft| {
            let k = soft.len() / n.max(1);
            Tensor::from_data(TensorData::new(soft, [n, k]), device)
        });
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
        ImageSet::new(
            vec![0.0, 2.0, 4.0, 6.0, 1.0, 3.0, 5.0, 7.0],
            vec![0, 1],
            [1, 2, 2],
            vec!["a".into(), "b".into()],
        )
        .unwrap()
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
