//! IDX files (LeCun's MNIST format), raw or gzip-compressed, and the MNIST / Fashion-MNIST
//! datasets built from them.
//!
//! An IDX file is a big-endian header (two zero bytes, a type byte, the number of dimensions,
//! then each dimension as a `u32`) followed by the data. Images are `0x08` (unsigned byte) with
//! 3 dimensions, labels `0x08` with 1.

use std::path::{Path, PathBuf};

use crate::{Error, ImageSet, Result};

/// A decoded IDX array of unsigned bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct IdxArray {
    /// Dimensions from the header.
    pub dims: Vec<usize>,
    /// The data, row-major.
    pub data: Vec<u8>,
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Parse {
        path: path.to_path_buf(),
        line: 0,
        reason: reason.into(),
    }
}

/// Reads an IDX file of unsigned bytes (gzip when the name ends in `.gz`), validating the magic
/// number, the dimension count and the data length.
pub fn read_idx(path: &Path, expected_dims: usize) -> Result<IdxArray> {
    let bytes = crate::read_maybe_gz(path)?;
    parse_idx(path, &bytes, expected_dims)
}

/// Parses IDX bytes (see [`read_idx`]).
pub fn parse_idx(path: &Path, bytes: &[u8], expected_dims: usize) -> Result<IdxArray> {
    if bytes.len() < 4 {
        return Err(bad(
            path,
            format!("{} bytes is too short for an IDX header", bytes.len()),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(
            path,
            format!(
                "bad IDX magic {:02x}{:02x}{:02x}{:02x}: the first two bytes must be zero",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(bad(
            path,
            format!("IDX type 0x{:02x} is not unsigned bytes (0x08)", bytes[2]),
        ));
    }
    let n_dims = bytes[3] as usize;
    if n_dims != expected_dims {
        return Err(bad(
            path,
            format!("expected an IDX array of {expected_dims} dimensions, found {n_dims}"),
        ));
    }
    let header = 4 + 4 * n_dims;
    if bytes.len() < header {
        return Err(bad(path, "truncated IDX header"));
    }
    let dims: Vec<usize> = (0..n_dims)
        .map(|i| {
            let b = &bytes[4 + 4 * i..8 + 4 * i];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    // Three u32 dimensions can overflow usize: such a header cannot describe this file.
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            bad(
                path,
                format!("header {dims:?} describes more bytes than any file can hold"),
            )
        })?;
    let found = bytes.len() - header;
    if found != expected {
        return Err(bad(
            path,
            format!("header {dims:?} promises {expected} bytes of data, found {found}"),
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Which split of an IDX dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// 60,000 training images.
    Train,
    /// 10,000 test images.
    Test,
}

/// The file names of a split, gzip-compressed as distributed.
pub fn file_names(split: Split) -> [&'static str; 2] {
    match split {
        Split::Train => ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"],
        Split::Test => ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"],
    }
}

/// The ten Fashion-MNIST class names.
pub const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Loads one split of an MNIST-format dataset from `dir` (which holds the four `.gz` files).
/// Pixels are scaled to `0..=1`. When files are missing, the error says which files to put
/// where.
pub fn load_dir(dataset: &str, dir: &Path, split: Split, classes: &[&str]) -> Result<ImageSet> {
    let [images_name, labels_name] = file_names(split);
    let images_path = dir.join(images_name);
    let labels_path = dir.join(labels_name);
    let missing: Vec<PathBuf> = [&images_path, &labels_path]
        .into_iter()
        .filter(|p| !p.is_file())
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(Error::Missing {
            dataset: dataset.to_string(),
            dir: dir.to_path_buf(),
            files: file_names(Split::Train)
                .iter()
                .chain(file_names(Split::Test).iter())
                .map(|s| s.to_string())
                .collect(),
        });
    }
    let images = read_idx(&images_path, 3)?;
    let labels = read_idx(&labels_path, 1)?;
    if images.dims[0] != labels.dims[0] {
        return Err(bad(
            &labels_path,
            format!(
                "{} labels for {} images in {}",
                labels.dims[0],
                images.dims[0],
                images_path.display()
            ),
        ));
    }
    if let Some(&l) = labels.data.iter().find(|&&l| l as usize >= classes.len()) {
        return Err(bad(
            &labels_path,
            format!("label {l} is outside 0..{}", classes.len()),
        ));
    }
    let (h, w) = (images.dims[1], images.dims[2]);
    ImageSet::new(
        images.data.iter().map(|&p| f32::from(p) / 255.0).collect(),
        labels.data.iter().map(|&l| l as usize).collect(),
        [1, h, w],
        classes.iter().map(|s| s.to_string()).collect(),
    )
    .map_err(|e| Error::Invalid(format!("{dataset} in {}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_whose_product_overflows_are_an_error() {
        // Found by the `idx` fuzz target: 0x04797979 · 0x79797979 · 0x79797979 overflows.
        let mut bytes = header(&[0x0479_7979, 0x7979_7979, 0x7979_7979]);
        bytes.extend_from_slice(&[0x79, 0x55, 0x01, 0x00]);
        let err = parse_idx(Path::new("x.idx"), &bytes, 3)
            .unwrap_err()
            .to_string();
        assert!(err.contains("more bytes than any file can hold"), "{err}");
    }

    fn header(dims: &[u32]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b
    }

    #[test]
    fn parses_a_tiny_array() {
        let mut bytes = header(&[2, 2, 3]);
        bytes.extend(0..12u8);
        let a = parse_idx(Path::new("x"), &bytes, 3).unwrap();
        assert_eq!(a.dims, vec![2, 2, 3]);
        assert_eq!(a.data, (0..12).collect::<Vec<u8>>());
    }

    #[test]
    fn rejects_bad_headers() {
        let p = Path::new("f.idx");
        let mut bytes = header(&[2, 2]);
        bytes.extend([1, 2, 3]);
        let err = parse_idx(p, &bytes, 2).unwrap_err().to_string();
        assert!(err.contains("promises 4 bytes of data, found 3"), "{err}");
        let err = parse_idx(p, &[1, 0, 8, 1], 1).unwrap_err().to_string();
        assert!(err.contains("bad IDX magic"), "{err}");
        let err = parse_idx(p, &[0, 0, 0x0d, 1, 0, 0, 0, 0], 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("IDX type 0x0d"), "{err}");
        let err = parse_idx(p, &header(&[1]), 3).unwrap_err().to_string();
        assert!(
            err.contains("expected an IDX array of 3 dimensions, found 1"),
            "{err}"
        );
    }
}
