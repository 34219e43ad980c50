//! Seeded, composable image augmentation, in the spirit of torchvision's common transforms.
//!
//! An [`Augment`] is a list of [`Transform`]s applied **in the order written** to one `[C, H, W]`
//! image whose pixels are in `[0, 1]` (every Kiln image set uses that range), followed by an
//! optional batch-level [`BatchMix`] (mixup or cutmix) applied to the normalised batch. It is
//! usually written as a spec string:
//!
//! ```
//! # use kiln_data::augment::Augment;
//! let augment = Augment::parse("flip,rotate=15,scale=0.9..1.1,translate=0.1,erase=0.25,mixup=0.2")?;
//! assert_eq!(augment.transforms().len(), 5);
//! # Ok::<(), kiln_data::Error>(())
//! ```
//!
//! | spec | transform | torchvision equivalent |
//! |---|---|---|
//! | `flip[=P]`, `hflip[=P]` | horizontal flip with probability P (0.5) | `RandomHorizontalFlip` |
//! | `vflip[=P]` | vertical flip with probability P (0.5) | `RandomVerticalFlip` |
//! | `rotate=D` or `rotate=A..B` | rotation by a uniform angle in −D..D (or A..B) degrees, counter-clockwise, about the centre | `RandomRotation` |
//! | `scale=A..B` | zoom about the centre by a uniform factor in A..B | `RandomAffine(scale=)` |
//! | `translate=F` | shift by a whole number of pixels, up to F·width and F·height | `RandomAffine(translate=)` |
//! | `crop[=A..B]` | random resized crop: a box of A..B (0.08..1) of the area, aspect 3/4..4/3, resized back to the image size | `RandomResizedCrop` |
//! | `noise=S` | additive Gaussian noise with standard deviation S | `GaussianNoise` |
//! | `brightness=B` | multiply by a factor in 1−B..1+B | `ColorJitter(brightness=)` |
//! | `contrast=C` | blend with the mean grey by a factor in 1−C..1+C | `ColorJitter(contrast=)` |
//! | `erase[=P]` | random erasing with probability P (0.5): area 0.02..0.33, aspect 0.3..3.3, filled with the fill value | `RandomErasing` |
//! | `normalize=M/S` | `(x − M) / S`; several channels as `M1:M2:M3/S1:S2:S3` | `Normalize` |
//! | `fill=V` | the value for pixels that geometric transforms uncover (0) | `fill=` |
//! | `mixup=α` | mixup with λ ~ Beta(α, α) | timm `Mixup(mixup_alpha=)` |
//! | `cutmix=α` | cutmix with λ ~ Beta(α, α) | timm `Mixup(cutmix_alpha=)` |
//!
//! Pixel values stay in `[0, 1]`: noise, brightness and contrast clamp, as torchvision does for
//! float images.
//!
//! ## Geometry
//!
//! Rotation, scale, translation and the resized crop are affine maps. Consecutive ones are
//! composed into a single matrix and the image is resampled **once**, with bilinear
//! interpolation (torchvision resamples after each). Kiln does this itself, on its `[C, H, W]`
//! `f32` buffers, rather than through `imageproc`: imageproc's warps need an `image`
//! `ImageBuffer` per channel (a copy in and out for every image), bring `nalgebra` and a second
//! `rand`, and cannot compose several transforms into one resampling. burn-vision's
//! `Transform2D` works on whole batches on the training device, which is the opposite of what we
//! want (augmentation runs in the data-loader workers, see [`crate::ImageBatcher`]). Resizing
//! images read from files uses `image::imageops` (see [`crate::image_folder`]).
//!
//! ## Randomness
//!
//! Every random choice comes from the `StdRng` passed in. The batcher seeds it from the run's
//! seed, the epoch and the item's index in the dataset, so an item gets the same augmentation
//! for a given epoch whatever the number of workers or their scheduling.

use rand::RngExt;
use rand::rngs::StdRng;
use rand_distr::{Beta, Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One per-image transform (see the [module docs](self) for the spec syntax).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Transform {
    /// Mirror left-right with probability `p`.
    HorizontalFlip {
        /// Probability.
        p: f32,
    },
    /// Mirror top-bottom with probability `p`.
    VerticalFlip {
        /// Probability.
        p: f32,
    },
    /// Rotate counter-clockwise by a uniform angle in `min..=max` degrees.
    Rotate {
        /// Smallest angle (degrees).
        min: f32,
        /// Largest angle (degrees).
        max: f32,
    },
    /// Zoom about the centre by a uniform factor in `min..=max` (> 1 enlarges).
    Scale {
        /// Smallest factor.
        min: f32,
        /// Largest factor.
        max: f32,
    },
    /// Shift by whole pixels, up to `fraction` of the width and height each way.
    Translate {
        /// Largest shift as a fraction of the image size.
        fraction: f32,
    },
    /// Random resized crop: a box of `min..=max` of the area with aspect ratio 3/4..4/3,
    /// resized back to the image size.
    ResizedCrop {
        /// Smallest area fraction.
        min: f32,
        /// Largest area fraction.
        max: f32,
    },
    /// Additive Gaussian noise.
    Noise {
        /// Standard deviation.
        std: f32,
    },
    /// Multiply by a factor in `1 − delta..1 + delta`.
    Brightness {
        /// Largest relative change.
        delta: f32,
    },
    /// Blend with the mean grey by a factor in `1 − delta..1 + delta`.
    Contrast {
        /// Largest relative change.
        delta: f32,
    },
    /// Random erasing with probability `p` (area 0.02..0.33 of the image, aspect 0.3..3.3).
    Erase {
        /// Probability.
        p: f32,
    },
    /// `(x − mean[c]) / std[c]`.
    Normalize {
        /// Per-channel mean (one value for all channels, or one per channel).
        mean: Vec<f32>,
        /// Per-channel standard deviation.
        std: Vec<f32>,
    },
}

impl Transform {
    /// Checks the parameters (what [`Augment::parse`] checks of a spec): probabilities in
    /// 0..1, finite ranges written low..high, positive scale factors, fractions in 0..1,
    /// non-negative deviations, as many means as positive standard deviations.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Invalid(format!("augmentation {self:?}: {what}")));
        let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
        match self {
            Self::HorizontalFlip { p } | Self::VerticalFlip { p } | Self::Erase { p } => {
                if !(0.0..=1.0).contains(p) {
                    return bad("the probability must be in 0..1");
                }
            }
            Self::Rotate { min, max }
            | Self::Scale { min, max }
            | Self::ResizedCrop { min, max } => {
                if !finite(&[*min, *max]) || min > max {
                    return bad("the range must be finite and written low..high");
                }
                if matches!(self, Self::Scale { .. }) && *min <= 0.0 {
                    return bad("scale factors must be positive");
                }
                if matches!(self, Self::ResizedCrop { .. }) && (*min <= 0.0 || *max > 1.0) {
                    return bad("crop area fractions must be in 0..1");
                }
            }
            Self::Translate { fraction } => {
                if !(0.0..=1.0).contains(fraction) {
                    return bad("the fraction must be in 0..1");
                }
            }
            Self::Noise { std: d }
            | Self::Brightness { delta: d }
            | Self::Contrast { delta: d } => {
                if !(d.is_finite() && *d >= 0.0) {
                    return bad("the value must be finite and non-negative");
                }
            }
            Self::Normalize { mean, std } => {
                if mean.is_empty()
                    || mean.len() != std.len()
                    || !finite(mean)
                    || !std.iter().all(|s| s.is_finite() && *s > 0.0)
                {
                    return bad("give as many finite means as positive standard deviations");
                }
            }
        }
        Ok(())
    }
}

/// Batch-level mixing of images and labels (applied after normalisation). Built by
/// [`BatchMix::new`], which checks the Beta parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawBatchMix")]
pub struct BatchMix {
    mixup_alpha: Option<f32>,
    cutmix_alpha: Option<f32>,
}

#[derive(Deserialize)]
struct RawBatchMix {
    mixup_alpha: Option<f32>,
    cutmix_alpha: Option<f32>,
}

impl TryFrom<RawBatchMix> for BatchMix {
    type Error = Error;

    fn try_from(raw: RawBatchMix) -> Result<Self> {
        Self::new(raw.mixup_alpha, raw.cutmix_alpha)
    }
}

impl BatchMix {
    /// Mixup with Beta(α, α) and/or cutmix with Beta(α, α); at least one, each α positive
    /// and finite.
    pub fn new(mixup_alpha: Option<f32>, cutmix_alpha: Option<f32>) -> Result<Self> {
        if mixup_alpha.is_none() && cutmix_alpha.is_none() {
            return Err(Error::Invalid(
                "batch mixing needs a mixup or a cutmix parameter".into(),
            ));
        }
        for alpha in [mixup_alpha, cutmix_alpha].into_iter().flatten() {
            if !(alpha.is_finite() && alpha > 0.0) {
                return Err(Error::Invalid(format!(
                    "a mixup/cutmix Beta parameter must be positive and finite, found {alpha}"
                )));
            }
        }
        Ok(Self {
            mixup_alpha,
            cutmix_alpha,
        })
    }

    /// Mixup's Beta(α, α) parameter, when mixup is on.
    pub fn mixup_alpha(&self) -> Option<f32> {
        self.mixup_alpha
    }

    /// CutMix's Beta(α, α) parameter, when cutmix is on.
    pub fn cutmix_alpha(&self) -> Option<f32> {
        self.cutmix_alpha
    }
}

/// A full augmentation pipeline: per-image transforms, fill value, batch mixing. Built by
/// [`Augment::parse`] or [`Augment::new`], both of which check every parameter, so applying
/// one never fails.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawAugment")]
pub struct Augment {
    transforms: Vec<Transform>,
    fill: f32,
    mix: Option<BatchMix>,
}

#[derive(Deserialize)]
struct RawAugment {
    transforms: Vec<Transform>,
    fill: f32,
    mix: Option<BatchMix>,
}

impl TryFrom<RawAugment> for Augment {
    type Error = Error;

    fn try_from(raw: RawAugment) -> Result<Self> {
        Self::new(raw.transforms, raw.fill, raw.mix)
    }
}

fn spec_err(item: &str, expected: &str) -> Error {
    Error::Invalid(format!(
        "augmentation `{item}`: expected {expected} (e.g. `flip,rotate=15,scale=0.9..1.1`)"
    ))
}

fn number(item: &str, text: &str, expected: &str) -> Result<f32> {
    text.trim()
        .parse::<f32>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| spec_err(item, expected))
}

fn range(item: &str, text: &str, expected: &str) -> Result<(f32, f32)> {
    let (a, b) = match text.split_once("..") {
        Some((a, b)) => (number(item, a, expected)?, number(item, b, expected)?),
        None => {
            let v = number(item, text, expected)?;
            (v, v)
        }
    };
    if a > b {
        return Err(spec_err(item, "a range written low..high"));
    }
    Ok((a, b))
}

fn probability(item: &str, value: Option<&str>) -> Result<f32> {
    let p = match value {
        Some(v) => number(item, v, "a probability in 0..1")?,
        None => 0.5,
    };
    if !(0.0..=1.0).contains(&p) {
        return Err(spec_err(item, "a probability in 0..1"));
    }
    Ok(p)
}

fn floats(item: &str, text: &str) -> Result<Vec<f32>> {
    text.split(':')
        .map(|v| {
            number(
                item,
                v,
                "numbers such as 0.5/0.25 or 0.4:0.5:0.6/0.2:0.2:0.2",
            )
        })
        .collect()
}

impl Augment {
    /// A pipeline of `transforms` (applied in order), the `fill` value for uncovered and
    /// erased pixels, and optional batch mixing; every transform's parameters are checked
    /// ([`Transform::validate`]).
    pub fn new(transforms: Vec<Transform>, fill: f32, mix: Option<BatchMix>) -> Result<Self> {
        for t in &transforms {
            t.validate()?;
        }
        if !fill.is_finite() {
            return Err(Error::Invalid(format!(
                "the augmentation fill value must be finite, found {fill}"
            )));
        }
        Ok(Self {
            transforms,
            fill,
            mix,
        })
    }

    /// Per-image transforms, in order.
    pub fn transforms(&self) -> &[Transform] {
        &self.transforms
    }

    /// Value of pixels uncovered by geometric transforms and of erased boxes.
    pub fn fill(&self) -> f32 {
        self.fill
    }

    /// Mixup / cutmix, when on.
    pub fn mix(&self) -> Option<&BatchMix> {
        self.mix.as_ref()
    }

    /// Parses a spec such as `flip,rotate=15,scale=0.9..1.1,mixup=0.2` (see the
    /// [module docs](self)). An empty spec or `none` is no augmentation.
    pub fn parse(spec: &str) -> Result<Self> {
        let mut augment = Augment::default();
        let spec = spec.trim();
        if spec.is_empty() || spec == "none" {
            return Ok(augment);
        }
        for item in spec.split(',').map(str::trim) {
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (item, None),
            };
            let need = |expected: &str| value.ok_or_else(|| spec_err(item, expected));
            let transform = match name {
                "flip" | "hflip" => Transform::HorizontalFlip {
                    p: probability(item, value)?,
                },
                "vflip" => Transform::VerticalFlip {
                    p: probability(item, value)?,
                },
                "rotate" => {
                    let text = need("degrees, e.g. rotate=15 or rotate=-10..30")?;
                    let (min, max) = if text.contains("..") {
                        range(item, text, "degrees")?
                    } else {
                        let d = number(item, text, "degrees")?.abs();
                        (-d, d)
                    };
                    Transform::Rotate { min, max }
                }
                "scale" => {
                    let (min, max) = range(item, need("factors, e.g. scale=0.9..1.1")?, "factors")?;
                    if min <= 0.0 {
                        return Err(spec_err(item, "positive factors"));
                    }
                    Transform::Scale { min, max }
                }
                "translate" => {
                    let fraction =
                        number(item, need("a fraction, e.g. translate=0.1")?, "a fraction")?;
                    if !(0.0..=1.0).contains(&fraction) {
                        return Err(spec_err(item, "a fraction in 0..1"));
                    }
                    Transform::Translate { fraction }
                }
                "crop" => {
                    let (min, max) = match value {
                        Some(v) => range(item, v, "area fractions, e.g. crop=0.5..1")?,
                        None => (0.08, 1.0),
                    };
                    if min <= 0.0 || max > 1.0 {
                        return Err(spec_err(item, "area fractions in 0..1"));
                    }
                    Transform::ResizedCrop { min, max }
                }
                "noise" => {
                    let std = number(
                        item,
                        need("a standard deviation, e.g. noise=0.05")?,
                        "a standard deviation",
                    )?;
                    if std < 0.0 {
                        return Err(spec_err(item, "a non-negative standard deviation"));
                    }
                    Transform::Noise { std }
                }
                "brightness" | "contrast" => {
                    let delta = number(item, need("a factor, e.g. brightness=0.2")?, "a factor")?;
                    if delta < 0.0 {
                        return Err(spec_err(item, "a non-negative factor"));
                    }
                    if name == "brightness" {
                        Transform::Brightness { delta }
                    } else {
                        Transform::Contrast { delta }
                    }
                }
                "erase" | "cutout" => Transform::Erase {
                    p: probability(item, value)?,
                },
                "normalize" | "normalise" => {
                    let text = need("mean/std, e.g. normalize=0.13/0.31")?;
                    let (m, s) = text
                        .split_once('/')
                        .ok_or_else(|| spec_err(item, "mean/std, e.g. normalize=0.13/0.31"))?;
                    let (mean, std) = (floats(item, m)?, floats(item, s)?);
                    if mean.len() != std.len() || std.iter().any(|&s| s <= 0.0) {
                        return Err(spec_err(
                            item,
                            "as many means as positive standard deviations",
                        ));
                    }
                    Transform::Normalize { mean, std }
                }
                "fill" => {
                    augment.fill =
                        number(item, need("a pixel value, e.g. fill=0")?, "a pixel value")?;
                    continue;
                }
                "mixup" | "cutmix" => {
                    let alpha = number(
                        item,
                        need("a Beta parameter, e.g. mixup=0.2")?,
                        "a Beta parameter",
                    )?;
                    if alpha <= 0.0 {
                        return Err(spec_err(item, "a positive Beta parameter"));
                    }
                    let (mut mixup, mut cutmix) = augment
                        .mix
                        .as_ref()
                        .map_or((None, None), |m| (m.mixup_alpha, m.cutmix_alpha));
                    if name == "mixup" {
                        mixup = Some(alpha);
                    } else {
                        cutmix = Some(alpha);
                    }
                    augment.mix = Some(BatchMix::new(mixup, cutmix)?);
                    continue;
                }
                _ => {
                    return Err(Error::Invalid(format!(
                        "unknown augmentation `{name}`; known: flip, hflip, vflip, rotate, scale, translate, crop, noise, brightness, contrast, erase, normalize, fill, mixup, cutmix"
                    )));
                }
            };
            augment.transforms.push(transform);
        }
        Self::new(augment.transforms, augment.fill, augment.mix)
    }

    /// True when the pipeline changes nothing.
    pub fn is_identity(&self) -> bool {
        self.transforms.is_empty() && self.mix.is_none()
    }

    /// Applies the per-image transforms, in order, to one `[C, H, W]` image.
    pub fn apply(&self, pixels: &mut [f32], shape: [usize; 3], rng: &mut StdRng) {
        let mut pending: Option<Affine> = None;
        let mut scratch = Vec::new();
        for transform in &self.transforms {
            let [_, h, w] = shape;
            if let Some(map) = affine_of(transform, h, w, rng) {
                pending = Some(match pending {
                    Some(acc) => acc.then(&map),
                    None => map,
                });
                continue;
            }
            if let Some(map) = pending.take() {
                warp(pixels, shape, &map, self.fill, &mut scratch);
            }
            apply_pixelwise(transform, pixels, shape, self.fill, rng);
        }
        if let Some(map) = pending {
            warp(pixels, shape, &map, self.fill, &mut scratch);
        }
    }
}

/// A source-from-output map in centred pixel coordinates: `src = m · dst + t`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Affine {
    m: [[f64; 2]; 2],
    t: [f64; 2],
}

impl Affine {
    /// The map of "`self`, then `next`": the output of `next` samples `self`'s output, which
    /// samples the input, so `src = self(next(dst))`.
    fn then(&self, next: &Affine) -> Affine {
        let a = &self.m;
        let b = &next.m;
        Affine {
            m: [
                [
                    a[0][0] * b[0][0] + a[0][1] * b[1][0],
                    a[0][0] * b[0][1] + a[0][1] * b[1][1],
                ],
                [
                    a[1][0] * b[0][0] + a[1][1] * b[1][0],
                    a[1][0] * b[0][1] + a[1][1] * b[1][1],
                ],
            ],
            t: [
                a[0][0] * next.t[0] + a[0][1] * next.t[1] + self.t[0],
                a[1][0] * next.t[0] + a[1][1] * next.t[1] + self.t[1],
            ],
        }
    }
}

fn uniform(rng: &mut StdRng, min: f32, max: f32) -> f64 {
    if min == max {
        return f64::from(min);
    }
    rng.random_range(f64::from(min)..=f64::from(max))
}

/// The source-from-output map of a geometric transform, `None` for pixel-wise ones.
fn affine_of(transform: &Transform, h: usize, w: usize, rng: &mut StdRng) -> Option<Affine> {
    let (hf, wf) = (h as f64, w as f64);
    match *transform {
        Transform::Rotate { min, max } => {
            let theta = uniform(rng, min, max).to_radians();
            let (s, c) = theta.sin_cos();
            // Counter-clockwise on screen (y points down): the output at (u, v) samples the
            // input at R(θ)·(u, v) with R = [[c, −s], [s, c]].
            Some(Affine {
                m: [[c, -s], [s, c]],
                t: [0.0, 0.0],
            })
        }
        Transform::Scale { min, max } => {
            let k = 1.0 / uniform(rng, min, max);
            Some(Affine {
                m: [[k, 0.0], [0.0, k]],
                t: [0.0, 0.0],
            })
        }
        Transform::Translate { fraction } => {
            let max_dx = (f64::from(fraction) * wf).round() as i64;
            let max_dy = (f64::from(fraction) * hf).round() as i64;
            let dx = rng.random_range(-max_dx..=max_dx) as f64;
            let dy = rng.random_range(-max_dy..=max_dy) as f64;
            Some(Affine {
                m: [[1.0, 0.0], [0.0, 1.0]],
                t: [-dx, -dy],
            })
        }
        Transform::ResizedCrop { min, max } => {
            let (top, left, ch, cw) = crop_box(rng, h, w, min, max);
            // Output pixel centre x + 0.5 maps to left + (x + 0.5)·cw/w in the input.
            Some(Affine {
                m: [[cw / wf, 0.0], [0.0, ch / hf]],
                t: [left + cw / 2.0 - wf / 2.0, top + ch / 2.0 - hf / 2.0],
            })
        }
        _ => None,
    }
}

/// torchvision's `RandomResizedCrop.get_params`: `(top, left, height, width)`.
fn crop_box(rng: &mut StdRng, h: usize, w: usize, min: f32, max: f32) -> (f64, f64, f64, f64) {
    let area = (h * w) as f64;
    let (log_lo, log_hi) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
    for _ in 0..10 {
        let target = area * uniform(rng, min, max);
        let aspect = rng.random_range(log_lo..=log_hi).exp();
        let cw = (target * aspect).sqrt().round() as usize;
        let ch = (target / aspect).sqrt().round() as usize;
        if cw > 0 && cw <= w && ch > 0 && ch <= h {
            let top = rng.random_range(0..=h - ch);
            let left = rng.random_range(0..=w - cw);
            return (top as f64, left as f64, ch as f64, cw as f64);
        }
    }
    // Fallback: the whole image (its aspect ratio is within 3/4..4/3 for square images).
    (0.0, 0.0, h as f64, w as f64)
}

/// Resamples every channel through `map` with bilinear interpolation; samples that fall
/// outside the image read `fill`.
fn warp(pixels: &mut [f32], shape: [usize; 3], map: &Affine, fill: f32, scratch: &mut Vec<f32>) {
    let [c, h, w] = shape;
    let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    scratch.clear();
    scratch.extend_from_slice(pixels);
    let plane = h * w;
    for y in 0..h {
        let v = y as f64 - cy;
        for x in 0..w {
            let u = x as f64 - cx;
            let sx = map.m[0][0] * u + map.m[0][1] * v + map.t[0] + cx;
            let sy = map.m[1][0] * u + map.m[1][1] * v + map.t[1] + cy;
            // Snap to the grid when within rounding error, so exact maps (flips by rotation,
            // integer shifts) copy pixels exactly.
            let snap = |s: f64| {
                let r = s.round();
                if (s - r).abs() < 1e-9 { r } else { s }
            };
            let (sx, sy) = (snap(sx), snap(sy));
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = ((sx - x0) as f32, (sy - y0) as f32);
            let (x0, y0) = (x0 as i64, y0 as i64);
            for ch in 0..c {
                let src = &scratch[ch * plane..(ch + 1) * plane];
                let at = |yy: i64, xx: i64| {
                    if yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w {
                        src[yy as usize * w + xx as usize]
                    } else {
                        fill
                    }
                };
                let value = if fx == 0.0 && fy == 0.0 {
                    at(y0, x0)
                } else {
                    let top = at(y0, x0) * (1.0 - fx) + at(y0, x0 + 1) * fx;
                    let bottom = at(y0 + 1, x0) * (1.0 - fx) + at(y0 + 1, x0 + 1) * fx;
                    top * (1.0 - fy) + bottom * fy
                };
                pixels[ch * plane + y * w + x] = value;
            }
        }
    }
}

fn apply_pixelwise(
    transform: &Transform,
    pixels: &mut [f32],
    shape: [usize; 3],
    fill: f32,
    rng: &mut StdRng,
) {
    let [c, h, w] = shape;
    let plane = h * w;
    match transform {
        Transform::HorizontalFlip { p } => {
            if rng.random::<f32>() < *p {
                for row in pixels.chunks_mut(w) {
                    row.reverse();
                }
            }
        }
        Transform::VerticalFlip { p } => {
            if rng.random::<f32>() < *p {
                for channel in pixels.chunks_mut(plane) {
                    for y in 0..h / 2 {
                        let (a, b) = channel.split_at_mut((h - 1 - y) * w);
                        a[y * w..(y + 1) * w].swap_with_slice(&mut b[..w]);
                    }
                }
            }
        }
        Transform::Noise { std } => {
            if *std > 0.0 {
                // `Transform::validate` admits only finite, non-negative deviations.
                if let Ok(normal) = Normal::new(0.0f32, *std) {
                    for v in pixels.iter_mut() {
                        *v = (*v + normal.sample(rng)).clamp(0.0, 1.0);
                    }
                }
            }
        }
        Transform::Brightness { delta } => {
            let f = uniform(rng, (1.0 - delta).max(0.0), 1.0 + delta) as f32;
            for v in pixels.iter_mut() {
                *v = (*v * f).clamp(0.0, 1.0);
            }
        }
        Transform::Contrast { delta } => {
            let f = uniform(rng, (1.0 - delta).max(0.0), 1.0 + delta) as f32;
            // torchvision: the mean of the grey-scale image (ITU-R 601-2 luma for RGB).
            let mean = if c == 3 {
                let (r, g, b) = (
                    &pixels[..plane],
                    &pixels[plane..2 * plane],
                    &pixels[2 * plane..],
                );
                (0..plane)
                    .map(|i| 0.299 * r[i] + 0.587 * g[i] + 0.114 * b[i])
                    .sum::<f32>()
                    / plane as f32
            } else {
                pixels.iter().sum::<f32>() / pixels.len() as f32
            };
            for v in pixels.iter_mut() {
                *v = (mean + f * (*v - mean)).clamp(0.0, 1.0);
            }
        }
        Transform::Erase { p } => {
            if rng.random::<f32>() >= *p {
                return;
            }
            // torchvision's RandomErasing.get_params.
            let area = plane as f64;
            let (log_lo, log_hi) = (0.3f64.ln(), 3.3f64.ln());
            for _ in 0..10 {
                let target = area * rng.random_range(0.02..=0.33);
                let aspect = rng.random_range(log_lo..=log_hi).exp();
                let eh = (target * aspect).sqrt().round() as usize;
                let ew = (target / aspect).sqrt().round() as usize;
                if eh == 0 || ew == 0 || eh >= h || ew >= w {
                    continue;
                }
                let top = rng.random_range(0..=h - eh);
                let left = rng.random_range(0..=w - ew);
                for ch in 0..c {
                    for y in top..top + eh {
                        let row = ch * plane + y * w;
                        pixels[row + left..row + left + ew].fill(fill);
                    }
                }
                return;
            }
        }
        Transform::Normalize { mean, std } => {
            for (ch, channel) in pixels.chunks_mut(plane).enumerate() {
                let (m, s) = (mean[ch.min(mean.len() - 1)], std[ch.min(std.len() - 1)]);
                for v in channel {
                    *v = (*v - m) / s;
                }
            }
        }
        Transform::Rotate { .. }
        | Transform::Scale { .. }
        | Transform::Translate { .. }
        | Transform::ResizedCrop { .. } => unreachable!("geometric transforms are warped"),
    }
}

/// The outcome of mixing a batch: each image `i` is a blend of image `i` and image
/// `partner[i] = n − 1 − i` (the batch reversed, as timm does) with weight `lambda` on its own.
#[derive(Clone, Debug, PartialEq)]
pub struct Mixed {
    /// Weight of each image's own label.
    pub lambda: f32,
    /// Which method was applied.
    pub method: MixMethod,
}

/// Mixup or cutmix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MixMethod {
    /// Pixel-wise blend.
    Mixup,
    /// A box pasted from the partner.
    Cutmix,
}

impl BatchMix {
    /// Mixes `pixels` (`n` images of `shape`) in place and returns the label weight. When both
    /// mixup and cutmix are on, each batch uses one of them with probability 1/2.
    pub fn apply(
        &self,
        pixels: &mut [f32],
        n: usize,
        shape: [usize; 3],
        rng: &mut StdRng,
    ) -> Mixed {
        let method = match (self.mixup_alpha, self.cutmix_alpha) {
            (Some(_), Some(_)) => {
                if rng.random::<bool>() {
                    MixMethod::Cutmix
                } else {
                    MixMethod::Mixup
                }
            }
            (None, Some(_)) => MixMethod::Cutmix,
            _ => MixMethod::Mixup,
        };
        let alpha = match method {
            MixMethod::Mixup => self.mixup_alpha,
            MixMethod::Cutmix => self.cutmix_alpha,
        }
        .unwrap_or(1.0);
        // `BatchMix::new` admits only positive, finite parameters.
        let lambda = Beta::new(alpha, alpha).map_or(1.0, |beta| beta.sample(rng));
        let len: usize = shape.iter().product();
        let original = pixels.to_vec();
        let partner = |i: usize| &original[(n - 1 - i) * len..(n - i) * len];
        match method {
            MixMethod::Mixup => {
                for i in 0..n {
                    let other = partner(i);
                    for (v, o) in pixels[i * len..(i + 1) * len].iter_mut().zip(other) {
                        *v = lambda * *v + (1.0 - lambda) * o;
                    }
                }
                Mixed { lambda, method }
            }
            MixMethod::Cutmix => {
                let [c, h, w] = shape;
                // timm's rand_bbox: a box of (1 − λ) of the area, centred uniformly, clipped.
                let ratio = (1.0 - lambda).sqrt();
                let (bh, bw) = ((h as f32 * ratio) as i64, (w as f32 * ratio) as i64);
                let cy = rng.random_range(0..h as i64);
                let cx = rng.random_range(0..w as i64);
                let (y0, y1) = (
                    (cy - bh / 2).max(0) as usize,
                    (cy + bh / 2).min(h as i64) as usize,
                );
                let (x0, x1) = (
                    (cx - bw / 2).max(0) as usize,
                    (cx + bw / 2).min(w as i64) as usize,
                );
                for i in 0..n {
                    let other = partner(i);
                    for ch in 0..c {
                        for y in y0..y1 {
                            let row = ch * h * w + y * w;
                            pixels[i * len + row + x0..i * len + row + x1]
                                .copy_from_slice(&other[row + x0..row + x1]);
                        }
                    }
                }
                let pasted = ((y1 - y0) * (x1 - x0)) as f32 / (h * w) as f32;
                Mixed {
                    lambda: 1.0 - pasted,
                    method,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    /// A 3x3 ramp 0..8 scaled into [0, 1].
    fn ramp() -> Vec<f32> {
        (0..9).map(|v| v as f32 / 8.0).collect()
    }

    fn run(spec: &str, pixels: &[f32], shape: [usize; 3]) -> Vec<f32> {
        let mut out = pixels.to_vec();
        Augment::parse(spec)
            .unwrap()
            .apply(&mut out, shape, &mut rng());
        out
    }

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    fn scaled(values: &[u8]) -> Vec<f32> {
        values.iter().map(|&v| f32::from(v) / 8.0).collect()
    }

    #[test]
    fn horizontal_flip_mirrors_rows() {
        let out = run("flip=1", &ramp(), [1, 3, 3]);
        assert_eq!(out, scaled(&[2, 1, 0, 5, 4, 3, 8, 7, 6]));
        assert_eq!(run("flip=0", &ramp(), [1, 3, 3]), ramp());
    }

    #[test]
    fn vertical_flip_mirrors_columns_of_every_channel() {
        let two: Vec<f32> = ramp().iter().chain(ramp().iter()).copied().collect();
        let out = run("vflip=1", &two, [2, 3, 3]);
        let expected = scaled(&[6, 7, 8, 3, 4, 5, 0, 1, 2]);
        assert_eq!(&out[..9], expected.as_slice());
        assert_eq!(&out[9..], expected.as_slice());
    }

    #[test]
    fn rotation_by_90_degrees_is_transpose_then_flip() {
        // Counter-clockwise: out[y][x] = in[x][w − 1 − y].
        let out = run("rotate=90..90", &ramp(), [1, 3, 3]);
        assert!(
            close(&out, &scaled(&[2, 5, 8, 1, 4, 7, 0, 3, 6])),
            "{out:?}"
        );
        // Four quarter turns are the identity; 180 degrees is both flips.
        let half = run("rotate=180..180", &ramp(), [1, 3, 3]);
        assert!(close(&half, &run("flip=1,vflip=1", &ramp(), [1, 3, 3])));
        // Non-square images: a 2x4 image rotated by 180 degrees.
        let rect: Vec<f32> = (0..8).map(|v| v as f32 / 8.0).collect();
        let out = run("rotate=180..180", &rect, [1, 2, 4]);
        let mut reversed = rect.clone();
        reversed.reverse();
        assert!(close(&out, &reversed));
    }

    #[test]
    fn rotation_uncovers_fill() {
        // 45 degrees on a 3x3 image: corners sample outside the image and read the fill value.
        let out = run("fill=0.5,rotate=45..45", &[1.0; 9], [1, 3, 3]);
        assert_eq!(out[4], 1.0, "the centre stays");
        assert!(
            out[0] < 1.0 && out[0] >= 0.5,
            "a corner mixes in the fill: {}",
            out[0]
        );
    }

    #[test]
    fn consecutive_affines_compose_into_one_resampling() {
        let one = run("rotate=90..90,rotate=90..90", &ramp(), [1, 3, 3]);
        let two = run("rotate=180..180", &ramp(), [1, 3, 3]);
        assert!(close(&one, &two));
        // A zoom of 2 then 0.5 is the identity (it would blur if resampled twice).
        let img: Vec<f32> = (0..16).map(|v| (v as f32 * 0.37).sin().abs()).collect();
        assert!(close(
            &run("scale=2..2,scale=0.5..0.5", &img, [1, 4, 4]),
            &img
        ));
    }

    #[test]
    fn zoom_samples_about_the_centre() {
        // Zooming a 1x5 ramp by 2 about its centre (index 2): out[x] = in[2 + (x − 2)/2].
        let row: Vec<f32> = (0..5).map(|v| v as f32 / 4.0).collect();
        let out = run("scale=2..2", &row, [1, 1, 5]);
        let expected: Vec<f32> = [1.0, 1.5, 2.0, 2.5, 3.0].iter().map(|v| v / 4.0).collect();
        assert!(close(&out, &expected), "{out:?}");
    }

    #[test]
    fn translation_shifts_by_whole_pixels_with_fill() {
        // With fraction 1/3 on a 1x3 row the shift is −1, 0 or +1; every outcome is an exact
        // copy shifted, with the fill value coming in.
        let row = vec![0.25, 0.5, 0.75];
        for seed in 0..20 {
            let mut out = row.clone();
            Augment::parse("fill=1,translate=0.34").unwrap().apply(
                &mut out,
                [1, 1, 3],
                &mut StdRng::seed_from_u64(seed),
            );
            assert!(
                out == row || out == vec![1.0, 0.25, 0.5] || out == vec![0.5, 0.75, 1.0],
                "{out:?}"
            );
        }
    }

    #[test]
    fn resized_crop_of_the_whole_image_is_the_identity_and_crops_stay_in_range() {
        let img: Vec<f32> = (0..64).map(|v| v as f32 / 63.0).collect();
        // At full area every box but 8x8 overflows, and the fallback is the whole image too.
        assert!(close(&run("crop=1..1", &img, [1, 8, 8]), &img));
        let out = run("crop=0.25..0.25", &img, [1, 8, 8]);
        assert_ne!(out, img);
        // A crop resized back up keeps the ramp ordered along rows (values only grow).
        for row in out.chunks(8) {
            assert!(row.windows(2).all(|p| p[0] <= p[1] + 1e-6), "{row:?}");
        }
        let (lo, hi) = (
            out.iter().cloned().fold(1.0, f32::min),
            out.iter().cloned().fold(0.0, f32::max),
        );
        assert!(lo >= 0.0 && hi <= 1.0 && hi - lo < 1.0);
    }

    #[test]
    fn noise_brightness_and_contrast_follow_their_formulas() {
        let img = vec![0.5f32; 100];
        let noisy = run("noise=0.1", &img, [1, 10, 10]);
        let mean = noisy.iter().sum::<f32>() / 100.0;
        let var = noisy.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 99.0;
        assert!(
            (mean - 0.5).abs() < 0.05 && (var.sqrt() - 0.1).abs() < 0.03,
            "{mean} {var}"
        );
        // brightness=0 and contrast=0 are the identity; contrast keeps the mean.
        assert_eq!(run("brightness=0,contrast=0", &ramp(), [1, 3, 3]), ramp());
        let c = run("contrast=0.5", &ramp(), [1, 3, 3]);
        let m = c.iter().sum::<f32>() / 9.0;
        assert!((m - 0.5).abs() < 1e-5);
        let b = run("brightness=0.5", &[0.4; 4], [1, 2, 2]);
        assert!(b.iter().all(|&v| (0.2..=0.6).contains(&v) && v == b[0]));
    }

    #[test]
    fn erase_fills_one_box() {
        let img = vec![1.0f32; 100];
        let out = run("fill=0,erase=1", &img, [1, 10, 10]);
        let erased = out.iter().filter(|&&v| v == 0.0).count();
        assert!((2..=33).contains(&erased), "{erased}");
        assert_eq!(run("erase=0", &img, [1, 10, 10]), img);
    }

    #[test]
    fn normalize_uses_per_channel_statistics() {
        let out = run(
            "normalize=0.5:0.25/0.5:0.25",
            &[1.0, 1.0, 0.5, 0.75],
            [2, 1, 2],
        );
        assert_eq!(out, vec![1.0, 1.0, 1.0, 2.0]);
    }

    #[test]
    fn same_seed_same_output_and_seeds_differ() {
        let img: Vec<f32> = (0..784).map(|v| (v % 28) as f32 / 27.0).collect();
        let spec = "flip,rotate=15,scale=0.9..1.1,translate=0.1,noise=0.05,erase=0.5";
        let a = run(spec, &img, [1, 28, 28]);
        assert_eq!(a, run(spec, &img, [1, 28, 28]));
        let mut other = img.clone();
        Augment::parse(spec)
            .unwrap()
            .apply(&mut other, [1, 28, 28], &mut StdRng::seed_from_u64(8));
        assert_ne!(a, other);
    }

    #[test]
    fn mixup_and_cutmix_blend_with_the_reversed_batch() {
        let shape = [1, 4, 4];
        let batch: Vec<f32> = [0.0f32; 16]
            .iter()
            .chain([1.0f32; 16].iter())
            .copied()
            .collect();
        let mix = BatchMix {
            mixup_alpha: Some(0.4),
            cutmix_alpha: None,
        };
        let mut px = batch.clone();
        let mixed = mix.apply(&mut px, 2, shape, &mut rng());
        assert_eq!(mixed.method, MixMethod::Mixup);
        // Image 0 (zeros) takes 1 − λ of image 1 (ones).
        assert!(
            px[..16]
                .iter()
                .all(|&v| (v - (1.0 - mixed.lambda)).abs() < 1e-6)
        );
        assert!(px[16..].iter().all(|&v| (v - mixed.lambda).abs() < 1e-6));

        let cut = BatchMix {
            mixup_alpha: None,
            cutmix_alpha: Some(1.0),
        };
        let mut px = batch.clone();
        let mixed = cut.apply(&mut px, 2, shape, &mut rng());
        assert_eq!(mixed.method, MixMethod::Cutmix);
        // λ is the share of pixels each image keeps.
        let kept = px[..16].iter().filter(|&&v| v == 0.0).count() as f32 / 16.0;
        assert!(
            (kept - mixed.lambda).abs() < 1e-6,
            "{kept} {}",
            mixed.lambda
        );
    }

    #[test]
    fn bad_specs_name_the_item() {
        for (spec, needle) in [
            ("rotate", "rotate"),
            ("scale=1.1..0.9", "low..high"),
            ("flip=2", "probability"),
            ("blur=3", "unknown augmentation `blur`"),
            ("noise=abc", "noise=abc"),
            ("mixup=0", "positive"),
        ] {
            let err = Augment::parse(spec).unwrap_err().to_string();
            assert!(err.contains(needle), "{spec}: {err}");
        }
        assert!(Augment::parse("none").unwrap().is_identity());
    }

    #[test]
    fn constructors_and_deserialisation_check_what_parse_checks() {
        let bad = [
            Transform::HorizontalFlip { p: 1.5 },
            Transform::Rotate {
                min: 10.0,
                max: -10.0,
            },
            Transform::Scale { min: 0.0, max: 1.0 },
            Transform::ResizedCrop { min: 0.5, max: 1.2 },
            Transform::Noise { std: f32::NAN },
            Transform::Normalize {
                mean: vec![],
                std: vec![],
            },
            Transform::Normalize {
                mean: vec![0.5],
                std: vec![0.0],
            },
        ];
        for t in bad {
            assert!(Augment::new(vec![t.clone()], 0.0, None).is_err(), "{t:?}");
        }
        assert!(BatchMix::new(Some(0.0), None).is_err());
        assert!(BatchMix::new(None, None).is_err());
        let good = Augment::parse("flip,noise=0.1,mixup=0.2").unwrap();
        assert_eq!(good.transforms().len(), 2);
        assert_eq!(good.mix().and_then(BatchMix::mixup_alpha), Some(0.2));
        // A config file cannot smuggle in what the constructors refuse.
        let json = serde_json::to_string(&good).unwrap();
        assert_eq!(serde_json::from_str::<Augment>(&json).unwrap(), good);
        let broken = json.replace("0.1", "-0.1");
        assert!(
            serde_json::from_str::<Augment>(&broken).is_err(),
            "{broken}"
        );
    }
}
