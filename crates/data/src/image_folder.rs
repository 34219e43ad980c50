//! Image folders: one sub-folder per class holding PNG or JPEG files (torchvision's
//! `ImageFolder` layout), decoded with the `image` crate and resized with `image::imageops`
//! (bilinear).
//!
//! ```text
//! flowers/
//!   daisy/   001.jpg 002.png ...
//!   tulip/   ...
//! ```
//!
//! Classes are the sub-folder names in sorted order. A folder that has `train/` and `test/`
//! sub-folders (each in that layout, with an optional `valid/` or `val/`) keeps that split;
//! otherwise [`load_split`] holds out a fixed, stratified 20% for testing (the same for every
//! run) and validation images from the rest.

use std::path::{Path, PathBuf};

#[cfg(feature = "image")]
use image::imageops::FilterType;
#[cfg(feature = "image")]
use image::{DynamicImage, GenericImageView};
use serde::{Deserialize, Serialize};

use crate::{Error, ImageSet, Result, SplitImageSet};

/// Colour handling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Channels {
    /// One grey channel (ITU-R 601-2 luma).
    Grey,
    /// Three channels, red, green, blue.
    #[default]
    Rgb,
}

impl Channels {
    /// Number of channels.
    pub fn count(self) -> usize {
        match self {
            Channels::Grey => 1,
            Channels::Rgb => 3,
        }
    }
}

/// How an image is brought to the target size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resize {
    /// Resize the shorter side to fit, then crop the centre (torchvision
    /// `Resize(min(h, w))` + `CenterCrop((h, w))`): no distortion.
    #[default]
    ShorterSideThenCentreCrop,
    /// Resize both sides to the target, distorting the aspect ratio.
    Stretch,
    /// The ImageNet evaluation transform `Resize(shorter_side)` + `CenterCrop((h, w))` on a
    /// PIL image: the shorter side becomes `shorter_side` and the longer one
    /// `round(shorter_side · long / short)` (640x427 → 384x256), with Pillow's bilinear filter
    /// reproduced bit for bit ([`pil_bilinear`]); then the centre is cut with torchvision's
    /// rounding.
    ResizeThenCentreCrop {
        /// Length of the shorter side after resizing (e.g. 256 for a 224 crop).
        shorter_side: usize,
    },
}

/// Options of an image folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderOptions {
    /// Target `[height, width]`.
    pub size: [usize; 2],
    /// Grey or RGB.
    pub channels: Channels,
    /// Resizing policy.
    pub resize: Resize,
}

/// Parses an image size written `HxW` (e.g. `28x28`), both sides positive.
pub fn parse_size(text: &str) -> std::result::Result<[usize; 2], String> {
    let (h, w) = text
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("expected HxW such as 28x28, found `{text}`"))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("expected HxW with positive sizes, found `{text}`"))
    };
    Ok([parse(h)?, parse(w)?])
}

const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        entries.push(entry.map_err(io_err(dir))?.path());
    }
    entries.sort();
    Ok(entries)
}

/// Without the `image` feature, decoding is an error naming the file.
#[cfg(not(feature = "image"))]
pub fn load_image(path: &Path, _options: &FolderOptions) -> Result<Vec<f32>> {
    Err(Error::Image {
        path: path.to_path_buf(),
        reason: "this build of kiln-data decodes no images (its `image` feature is off)".into(),
    })
}

/// Decodes one image file and converts it to `[C, H, W]` pixels in `[0, 1]` of the target
/// size.
#[cfg(feature = "image")]
pub fn load_image(path: &Path, options: &FolderOptions) -> Result<Vec<f32>> {
    let image = image::open(path).map_err(|e| Error::Image {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(to_pixels(&image, options))
}

/// Resizes and converts a decoded image (see [`load_image`]).
#[cfg(feature = "image")]
pub fn to_pixels(image: &DynamicImage, options: &FolderOptions) -> Vec<f32> {
    let [th, tw] = options.size;
    let (w, h) = image.dimensions();
    let resized = match options.resize {
        Resize::Stretch => image.resize_exact(tw as u32, th as u32, FilterType::Triangle),
        Resize::ShorterSideThenCentreCrop => {
            // Scale so both sides cover the target, then cut the centre.
            let scale = (tw as f64 / w as f64).max(th as f64 / h as f64);
            let (nw, nh) = (
                ((w as f64 * scale).round() as u32).max(tw as u32),
                ((h as f64 * scale).round() as u32).max(th as u32),
            );
            let scaled = if (nw, nh) == (w, h) {
                image.clone()
            } else {
                image.resize_exact(nw, nh, FilterType::Triangle)
            };
            let (left, top) = ((nw - tw as u32) / 2, (nh - th as u32) / 2);
            scaled.crop_imm(left, top, tw as u32, th as u32)
        }
        Resize::ResizeThenCentreCrop { shorter_side } => {
            let s = shorter_side as f64;
            let (nw, nh) = if w <= h {
                (s, (s * h as f64 / w as f64).round())
            } else {
                ((s * w as f64 / h as f64).round(), s)
            };
            let (nw, nh) = ((nw as u32).max(tw as u32), (nh as u32).max(th as u32));
            // Pillow's bilinear filter, bit for bit, as torchvision applies it to PIL images.
            let scaled = match options.channels {
                Channels::Grey => {
                    let grey = image.to_luma8();
                    let raw = pil_bilinear(grey.as_raw(), 1, [w, h], [nw, nh]);
                    DynamicImage::ImageLuma8(
                        image::GrayImage::from_raw(nw, nh, raw).expect("buffer size"),
                    )
                }
                Channels::Rgb => {
                    let rgb = image.to_rgb8();
                    let raw = pil_bilinear(rgb.as_raw(), 3, [w, h], [nw, nh]);
                    DynamicImage::ImageRgb8(
                        image::RgbImage::from_raw(nw, nh, raw).expect("buffer size"),
                    )
                }
            };
            // torchvision: int(round((size - crop) / 2)), rounding half to even.
            let offset = |size: u32, crop: usize| {
                let half = (size as f64 - crop as f64) / 2.0;
                half.round_ties_even() as u32
            };
            scaled.crop_imm(offset(nw, tw), offset(nh, th), tw as u32, th as u32)
        }
    };
    let plane = th * tw;
    match options.channels {
        Channels::Grey => resized
            .to_luma8()
            .into_raw()
            .into_iter()
            .map(|v| f32::from(v) / 255.0)
            .collect(),
        Channels::Rgb => {
            let rgb = resized.to_rgb8().into_raw();
            let mut out = vec![0f32; 3 * plane];
            for (i, px) in rgb.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    out[c * plane + i] = f32::from(px[c]) / 255.0;
                }
            }
            out
        }
    }
}

/// Pillow's fixed-point precision for 8-bit resampling (`32 - 8 - 2` bits).
const PIL_PRECISION_BITS: u32 = 22;

/// Pillow's per-output-pixel filter bounds and fixed-point weights for one axis
/// (`precompute_coeffs` + `normalize_coeffs_8bpc` in Pillow's `Resample.c`, bilinear filter).
fn pil_coefficients(in_size: u32, out_size: u32) -> (Vec<(usize, usize)>, Vec<Vec<i32>>) {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // bilinear support 1.0, widened when shrinking
    let mut bounds = Vec::with_capacity(out_size as usize);
    let mut weights = Vec::with_capacity(out_size as usize);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let count = xmax.saturating_sub(xmin);
        let mut k: Vec<f64> = (0..count)
            .map(|x| {
                let t = ((x + xmin) as f64 - center + 0.5) / filterscale;
                (1.0 - t.abs()).max(0.0)
            })
            .collect();
        let total: f64 = k.iter().sum();
        if total != 0.0 {
            k.iter_mut().for_each(|v| *v /= total);
        }
        let one = f64::from(1u32 << PIL_PRECISION_BITS);
        weights.push(
            k.iter()
                .map(|&v| {
                    if v < 0.0 {
                        (-0.5 + v * one) as i32
                    } else {
                        (0.5 + v * one) as i32
                    }
                })
                .collect(),
        );
        bounds.push((xmin, count));
    }
    (bounds, weights)
}

fn pil_clip8(v: i64) -> u8 {
    (v >> PIL_PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes interleaved 8-bit pixels (`channels` per pixel, `[width, height]`) with Pillow's
/// bilinear (antialiased when shrinking) filter, reproducing `Image.resize(..., BILINEAR)`
/// exactly: horizontal pass first, 22-bit fixed-point weights, rounding as Pillow does.
pub fn pil_bilinear(src: &[u8], channels: usize, from: [u32; 2], to: [u32; 2]) -> Vec<u8> {
    let ([w, h], [nw, nh]) = (from, to);
    let (w, h, nw, nh) = (w as usize, h as usize, nw as usize, nh as usize);
    let half = 1i64 << (PIL_PRECISION_BITS - 1);
    // Horizontal pass over every source row.
    let horizontal = if nw != w {
        let (bounds, weights) = pil_coefficients(w as u32, nw as u32);
        let mut out = vec![0u8; nw * h * channels];
        for y in 0..h {
            let row = &src[y * w * channels..(y + 1) * w * channels];
            for (xx, ((xmin, count), k)) in bounds.iter().zip(&weights).enumerate() {
                for c in 0..channels {
                    let mut acc = half;
                    for x in 0..*count {
                        acc += i64::from(row[(xmin + x) * channels + c]) * i64::from(k[x]);
                    }
                    out[(y * nw + xx) * channels + c] = pil_clip8(acc);
                }
            }
        }
        out
    } else {
        src.to_vec()
    };
    if nh == h {
        return horizontal;
    }
    let (bounds, weights) = pil_coefficients(h as u32, nh as u32);
    let mut out = vec![0u8; nw * nh * channels];
    for (yy, ((ymin, count), k)) in bounds.iter().zip(&weights).enumerate() {
        for x in 0..nw * channels {
            let mut acc = half;
            for y in 0..*count {
                acc += i64::from(horizontal[(ymin + y) * nw * channels + x]) * i64::from(k[y]);
            }
            out[yy * nw * channels + x] = pil_clip8(acc);
        }
    }
    out
}

/// Reads a folder with one sub-folder of PNG/JPEG images per class. Other files are ignored;
/// an unreadable image, an empty class folder or a folder without class folders is an error
/// naming the path.
pub fn load_folder(dir: &Path, options: &FolderOptions) -> Result<ImageSet> {
    if options.size.contains(&0) {
        return Err(Error::Invalid(format!(
            "image size {}x{} must be at least 1x1",
            options.size[0], options.size[1]
        )));
    }
    let class_dirs: Vec<PathBuf> = sorted_entries(dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
    if class_dirs.is_empty() {
        return Err(Error::Invalid(format!(
            "{} has no class folders: expected one sub-folder of PNG/JPEG images per class",
            dir.display()
        )));
    }
    let [h, w] = options.size;
    let c = options.channels.count();
    let mut set = ImageSet {
        pixels: Vec::new(),
        labels: Vec::new(),
        shape: [c, h, w],
        classes: Vec::new(),
    };
    for (label, class_dir) in class_dirs.iter().enumerate() {
        let name = class_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let files: Vec<PathBuf> = sorted_entries(class_dir)?
            .into_iter()
            .filter(|p| {
                p.is_file()
                    && p.extension().is_some_and(|e| {
                        EXTENSIONS.contains(&e.to_string_lossy().to_lowercase().as_str())
                    })
            })
            .collect();
        if files.is_empty() {
            return Err(Error::Invalid(format!(
                "class folder {} holds no PNG or JPEG images",
                class_dir.display()
            )));
        }
        for file in files {
            set.pixels.extend(load_image(&file, options)?);
            set.labels.push(label);
        }
        set.classes.push(name);
    }
    Ok(set)
}

/// Loads an image folder as train, validation and test sets:
///
/// - `dir/train` and `dir/test` when both exist (with the same classes); then `dir/valid`
///   (or `dir/val`) is the validation set when it exists, else `valid_fraction` of
///   `dir/train` is held out (stratified, by `seed`);
/// - otherwise `dir` itself: a fixed 20% test split ([`crate::split::dataset_split`], the
///   same for every run), then `valid_fraction` of the rest by `seed`.
pub fn load_split(
    dir: &Path,
    options: &FolderOptions,
    valid_fraction: f64,
    seed: kiln_core::Seed,
) -> Result<SplitImageSet> {
    let name = dir.display().to_string();
    let (train_dir, test_dir) = (dir.join("train"), dir.join("test"));
    if train_dir.is_dir() && test_dir.is_dir() {
        let train = load_folder(&train_dir, options)?;
        let test = load_folder(&test_dir, options)?;
        same_classes(&train, &train_dir, &test, &test_dir)?;
        let valid_dir = ["valid", "val"]
            .iter()
            .map(|v| dir.join(v))
            .find(|d| d.is_dir());
        if let Some(valid_dir) = valid_dir {
            let valid = load_folder(&valid_dir, options)?;
            same_classes(&train, &train_dir, &valid, &valid_dir)?;
            return Ok(SplitImageSet {
                name,
                train,
                valid,
                test,
            });
        }
        return SplitImageSet::carve(name, train, test, valid_fraction, seed);
    }
    let all = load_folder(dir, options)?;
    let h = crate::split::holdout(all.labels(), valid_fraction, seed.derive("valid"))?;
    Ok(SplitImageSet {
        name,
        train: all.subset(&h.train),
        valid: all.subset(&h.valid),
        test: all.subset(&h.test),
    })
}

fn same_classes(a: &ImageSet, a_dir: &Path, b: &ImageSet, b_dir: &Path) -> Result<()> {
    if a.classes() == b.classes() {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "{} and {} have different class folders ({} vs {})",
        a_dir.display(),
        b_dir.display(),
        a.classes().join(", "),
        b.classes().join(", ")
    )))
}

#[cfg(all(test, feature = "image"))]
mod tests {
    use image::{GrayImage, Luma, Rgb, RgbImage};

    use super::*;

    fn grey(size: [usize; 2]) -> FolderOptions {
        FolderOptions {
            size,
            channels: Channels::Grey,
            resize: Resize::Stretch,
        }
    }

    #[test]
    fn reads_classes_in_order_and_converts_channels() {
        let dir = tempfile::tempdir().unwrap();
        for (class, value) in [("b", 255u8), ("a", 0u8)] {
            std::fs::create_dir(dir.path().join(class)).unwrap();
            let img = RgbImage::from_pixel(4, 2, Rgb([value, 0, value / 2]));
            img.save(dir.path().join(class).join("x.png")).unwrap();
        }
        std::fs::write(dir.path().join("a").join("notes.txt"), "ignored").unwrap();
        let options = FolderOptions {
            size: [2, 4],
            channels: Channels::Rgb,
            resize: Resize::Stretch,
        };
        let set = load_folder(dir.path(), &options).unwrap();
        assert_eq!(set.classes, ["a", "b"]);
        assert_eq!(set.labels, [0, 1]);
        assert_eq!(set.shape, [3, 2, 4]);
        let b = set.image(1);
        assert!(b[..8].iter().all(|&v| v == 1.0) && b[8..16].iter().all(|&v| v == 0.0));
        assert!(b[16..].iter().all(|&v| (v - 127.0 / 255.0).abs() < 1e-6));
    }

    #[test]
    fn bilinear_resizing_matches_pillow_exactly() {
        // Pillow 13: Image.fromarray(a).resize(size, Image.BILINEAR) of a 7x5 grey image.
        let a: Vec<u8> = (0..35u32).map(|i| (i * 37 % 256) as u8).collect();
        assert_eq!(
            pil_bilinear(&a, 1, [7, 5], [3, 2]),
            [35, 114, 193, 41, 120, 199]
        );
        let up = [
            1, 21, 47, 73, 99, 125, 151, 177, 203, 223, 4, 24, 50, 76, 102, 128, 154, 180, 206,
            226, 8, 28, 54, 80, 106, 132, 158, 184, 210, 230, 11, 31, 57, 83, 109, 135, 161, 187,
            213, 233,
        ];
        assert_eq!(pil_bilinear(&a, 1, [7, 5], [10, 4]), up);
        // Interleaved channels are filtered independently.
        let rgb: Vec<u8> = a.iter().flat_map(|&v| [v, 255 - v, 7]).collect();
        let out = pil_bilinear(&rgb, 3, [7, 5], [3, 2]);
        let red: Vec<u8> = out.iter().step_by(3).copied().collect();
        assert_eq!(red, [35, 114, 193, 41, 120, 199]);
        assert!(out.iter().skip(2).step_by(3).all(|&v| v == 7));
    }

    #[test]
    fn centre_crop_keeps_the_middle() {
        // A 6x2 grey image whose middle two columns are white, cropped to 2x2.
        let dir = tempfile::tempdir().unwrap();
        let img = GrayImage::from_fn(6, 2, |x, _| Luma([if x == 2 || x == 3 { 255 } else { 0 }]));
        let path = dir.path().join("wide.png");
        img.save(&path).unwrap();
        let options = FolderOptions {
            resize: Resize::ShorterSideThenCentreCrop,
            ..grey([2, 2])
        };
        assert_eq!(load_image(&path, &options).unwrap(), vec![1.0; 4]);
    }

    #[test]
    fn errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_folder(dir.path(), &grey([2, 2]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no class folders"), "{err}");
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        let err = load_folder(dir.path(), &grey([2, 2]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("empty") && err.contains("no PNG or JPEG"),
            "{err}"
        );
        std::fs::write(dir.path().join("empty").join("broken.png"), b"not a png").unwrap();
        let err = load_folder(dir.path(), &grey([2, 2]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("broken.png"), "{err}");
    }
}
