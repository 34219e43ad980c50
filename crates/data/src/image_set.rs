/// An in-memory labelled image set: `len · C · H · W` pixels (`f32`, row-major, NCHW) and one
/// class index per image.
///
/// Every reader scales pixels into `[0, 1]` (MNIST bytes / 255, UCI digits / 16, image files
/// / 255), so augmentation parameters such as a noise level or a fill value mean the same on
/// every dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    /// Pixels of all images, image after image, each `[C, H, W]`.
    pub pixels: Vec<f32>,
    /// Class index of each image.
    pub labels: Vec<usize>,
    /// `[channels, height, width]` of every image.
    pub shape: [usize; 3],
    /// Class names, indexed by label.
    pub classes: Vec<String>,
}

impl ImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of scalars in one image.
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Pixels of image `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// How many images each class has.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes()];
        for &l in &self.labels {
            counts[l] += 1;
        }
        counts
    }

    /// The first `n` images of each class (fewer where a class has fewer), in file order.
    pub fn first_per_class(&self, n: usize) -> ImageSet {
        let mut taken = vec![0usize; self.num_classes()];
        let indices: Vec<usize> = (0..self.len())
            .filter(|&i| {
                let l = self.labels[i];
                taken[l] += 1;
                taken[l] <= n
            })
            .collect();
        self.subset(&indices)
    }

    /// The images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> ImageSet {
        let mut pixels = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        ImageSet {
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            shape: self.shape,
            classes: self.classes.clone(),
        }
    }
}
