/// An in-memory labelled image set: `len · C · H · W` pixels (`f32`, row-major, NCHW) and one
/// class index per image.
///
/// Every image reader scales pixels into `[0, 1]` (MNIST bytes / 255, UCI digits / 16, image
/// files / 255), so augmentation parameters such as a noise level or a fill value mean the
/// same on every image dataset (tables, as `[1, 1, features]` sets, hold standardised
/// features).
///
/// The fields are private so that every set keeps its invariants, checked by
/// [`ImageSet::new`]: `len · C · H · W` finite pixels, a label below the number of classes for
/// every image, no empty dimension.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    pub(crate) pixels: Vec<f32>,
    pub(crate) labels: Vec<usize>,
    pub(crate) shape: [usize; 3],
    pub(crate) classes: Vec<String>,
}

impl ImageSet {
    /// A set of `labels.len()` images of `shape` (`[C, H, W]`), `pixels` image after image,
    /// with class names indexed by label. An error unless the pixel count matches, every
    /// pixel is finite, every label names a class, and no dimension is zero.
    pub fn new(
        pixels: Vec<f32>,
        labels: Vec<usize>,
        shape: [usize; 3],
        classes: Vec<String>,
    ) -> crate::Result<Self> {
        let bad = |reason: String| Err(crate::Error::Invalid(format!("image set: {reason}")));
        if shape.contains(&0) {
            return bad(format!(
                "an image shape of {shape:?} has an empty dimension"
            ));
        }
        let per_image: usize = shape.iter().product();
        if pixels.len() != labels.len() * per_image {
            return bad(format!(
                "{} pixels for {} images of {shape:?} ({} expected)",
                pixels.len(),
                labels.len(),
                labels.len() * per_image
            ));
        }
        if let Some(i) = labels.iter().position(|&l| l >= classes.len()) {
            return bad(format!(
                "image {i} has label {} but there are {} classes",
                labels[i],
                classes.len()
            ));
        }
        if let Some(i) = pixels.iter().position(|p| !p.is_finite()) {
            return bad(format!(
                "pixel {} of image {} is {}",
                i % per_image,
                i / per_image,
                pixels[i]
            ));
        }
        Ok(Self {
            pixels,
            labels,
            shape,
            classes,
        })
    }

    /// The same images under other labels and class names (e.g. a coarser task: "is it ≥ 5"),
    /// checked like [`ImageSet::new`].
    pub fn relabel(&self, labels: Vec<usize>, classes: Vec<String>) -> crate::Result<Self> {
        if labels.len() != self.len() {
            return Err(crate::Error::Invalid(format!(
                "image set: {} new labels for {} images",
                labels.len(),
                self.len()
            )));
        }
        Self::new(self.pixels.clone(), labels, self.shape, classes)
    }

    /// Pixels of all images, image after image, each `[C, H, W]`.
    pub fn pixels(&self) -> &[f32] {
        &self.pixels
    }

    /// Class index of each image.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// `[channels, height, width]` of every image.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Class names, indexed by label.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_constructor_refuses_sets_that_would_panic_later() {
        let classes = || vec!["a".to_string(), "b".to_string()];
        let ok = ImageSet::new(vec![0.0; 8], vec![0, 1], [1, 2, 2], classes()).unwrap();
        assert_eq!((ok.len(), ok.class_counts()), (2, vec![1, 1]));
        let err = |r: crate::Result<ImageSet>| r.unwrap_err().to_string();
        assert!(
            err(ImageSet::new(
                vec![0.0; 7],
                vec![0, 1],
                [1, 2, 2],
                classes()
            ))
            .contains("7 pixels")
        );
        assert!(
            err(ImageSet::new(
                vec![0.0; 8],
                vec![0, 2],
                [1, 2, 2],
                classes()
            ))
            .contains("label 2")
        );
        assert!(
            err(ImageSet::new(vec![], vec![], [1, 0, 2], classes())).contains("empty dimension")
        );
        let mut nan = vec![0.0; 8];
        nan[5] = f32::NAN;
        assert!(
            err(ImageSet::new(nan, vec![0, 1], [1, 2, 2], classes()))
                .contains("pixel 1 of image 1")
        );
        assert!(err(ok.relabel(vec![0, 3], classes())).contains("label 3"));
        assert!(err(ok.relabel(vec![0], classes())).contains("1 new labels"));
        assert_eq!(
            ok.relabel(vec![1, 1], classes()).unwrap().class_counts(),
            vec![0, 2]
        );
    }
}
