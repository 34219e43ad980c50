//! The UCI optical handwritten digits: 1,797 images of 8x8 pixels (values 0..16), 10 classes.
//!
//! File format (as scikit-learn ships it): gzip-compressed CSV without header, one image per
//! line, 64 pixel values then the label. A copy is bundled in this crate (CC BY 4.0, UCI; see
//! `assets/README.md`).

use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;

use crate::{Error, ImageSet, Result};

/// Bytes of the bundled `digits.csv.gz`.
pub const BUNDLED: &[u8] = include_bytes!("../assets/digits.csv.gz");

const PIXELS: usize = 64;

/// Loads the copy of the dataset bundled with kiln-data.
pub fn load_bundled() -> Result<ImageSet> {
    parse_gz(Path::new("<bundled digits.csv.gz>"), BUNDLED)
}

/// Loads `digits.csv.gz` (or an uncompressed `.csv`) from `path`.
pub fn load(path: &Path) -> Result<ImageSet> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if path.extension().is_some_and(|e| e == "gz") {
        parse_gz(path, &bytes)
    } else {
        parse_csv(path, &bytes)
    }
}

fn parse_gz(path: &Path, bytes: &[u8]) -> Result<ImageSet> {
    let mut text = Vec::new();
    GzDecoder::new(bytes)
        .read_to_end(&mut text)
        .map_err(|source| Error::Gzip {
            path: path.to_path_buf(),
            source,
        })?;
    parse_csv(path, &text)
}

fn parse_csv(path: &Path, text: &[u8]) -> Result<ImageSet> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text);
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 1;
        let parse_err = |reason: String| Error::Parse {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let record = record.map_err(|e| parse_err(e.to_string()))?;
        if record.len() != PIXELS + 1 {
            return Err(parse_err(format!(
                "expected {} columns (64 pixels then the label), found {}",
                PIXELS + 1,
                record.len()
            )));
        }
        for (col, field) in record.iter().take(PIXELS).enumerate() {
            let v: f32 = field
                .trim()
                .parse()
                .map_err(|_| parse_err(format!("column {}: `{field}` is not a number", col + 1)))?;
            if !(0.0..=16.0).contains(&v) {
                return Err(parse_err(format!(
                    "column {}: pixel value {v} is outside 0..=16",
                    col + 1
                )));
            }
            pixels.push(v / 16.0);
        }
        let label_field = record[PIXELS].trim();
        let label: f32 = label_field
            .parse()
            .map_err(|_| parse_err(format!("label `{label_field}` is not a number")))?;
        if label.fract() != 0.0 || !(0.0..=9.0).contains(&label) {
            return Err(parse_err(format!("label {label} is not a digit 0..9")));
        }
        labels.push(label as usize);
    }
    if labels.is_empty() {
        return Err(Error::Parse {
            path: path.to_path_buf(),
            line: 0,
            reason: "no records".into(),
        });
    }
    ImageSet::new(
        pixels,
        labels,
        [1, 8, 8],
        (0..10).map(|d| d.to_string()).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_copy_has_the_published_shape_and_class_counts() {
        let set = load_bundled().unwrap();
        assert_eq!(set.len(), 1797);
        assert_eq!(set.pixels.len(), 1797 * 64);
        assert_eq!(set.shape, [1, 8, 8]);
        // Per-class counts as published by UCI / scikit-learn.
        assert_eq!(
            set.class_counts(),
            vec![178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
        );
        // First image of the file, row 0: 0,0,5,13,9,1,0,0 (of 16); label 0.
        let row: Vec<f32> = [0.0, 0.0, 5.0, 13.0, 9.0, 1.0, 0.0, 0.0]
            .iter()
            .map(|v| v / 16.0)
            .collect();
        assert_eq!(&set.image(0)[..8], row.as_slice());
        assert_eq!(set.labels[0], 0);
    }
}
