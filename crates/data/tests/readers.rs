//! The digits reader on real files, and its errors on bad ones.

use std::io::Write;
use std::path::PathBuf;

use kiln_data::{Error, digits};

/// The project's data directory (`KILN_DATA_DIR`; `.cargo/config.toml` points it at the shared
/// real datasets).
fn data_dir() -> PathBuf {
    let dir = kiln_data::data_dir::resolve(None);
    assert!(
        dir.join("digits/digits.csv.gz").is_file(),
        "real datasets not found in {}: set KILN_DATA_DIR to the folder holding digits/, mnist/, ...",
        dir.display()
    );
    dir
}

#[test]
fn real_file_equals_bundled_copy() {
    let real = digits::load(&data_dir().join("digits/digits.csv.gz")).unwrap();
    let bundled = digits::load_bundled().unwrap();
    assert_eq!(real.len(), 1797);
    assert_eq!(real.pixels.len(), 1797 * 64);
    assert_eq!(real, bundled);
}

#[test]
fn split_is_stratified_and_reproducible() {
    let split = kiln_data::load_split("digits", kiln_core::Seed(42)).unwrap();
    assert_eq!(split.train.len() + split.test.len(), 1797);
    // round(0.2 * count) test images per class.
    let test_counts = split.test.class_counts();
    let all_counts = digits::load_bundled().unwrap().class_counts();
    for (t, a) in test_counts.iter().zip(&all_counts) {
        assert_eq!(*t, (*a as f64 * 0.2).round() as usize);
    }
    let again = kiln_data::load_split("digits", kiln_core::Seed(42)).unwrap();
    assert_eq!(again.test, split.test);
    let other = kiln_data::load_split("digits", kiln_core::Seed(43)).unwrap();
    assert_ne!(other.test, split.test);
}

#[test]
fn missing_file_names_the_path() {
    let err = digits::load(std::path::Path::new("/nonexistent/digits.csv.gz")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/nonexistent/digits.csv.gz"),
        "{err}"
    );
}

#[test]
fn corrupt_gzip_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("digits.csv.gz");
    let mut bytes = digits::BUNDLED.to_vec();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&path, bytes).unwrap();
    let err = digits::load(&path).unwrap_err();
    assert!(matches!(err, Error::Gzip { .. }), "{err:?}");
    assert!(
        err.to_string().contains("is not a valid gzip file"),
        "{err}"
    );
}

#[test]
fn wrong_column_count_names_line_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("digits.csv");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(f, "{}", vec!["0"; 65].join(",")).unwrap();
    writeln!(f, "{}", vec!["0"; 64].join(",")).unwrap();
    drop(f);
    let err = digits::load(&path).unwrap_err().to_string();
    assert!(err.contains("line 2"), "{err}");
    assert!(err.contains("expected 65 columns"), "{err}");
    assert!(err.contains("found 64"), "{err}");
}

#[test]
fn bad_values_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("digits.csv");
    let mut row = vec!["0"; 65];
    row[3] = "x";
    std::fs::write(&path, row.join(",")).unwrap();
    let err = digits::load(&path).unwrap_err().to_string();
    assert!(err.contains("column 4: `x` is not a number"), "{err}");
    let mut row = vec!["0"; 65];
    row[64] = "12";
    std::fs::write(&path, row.join(",")).unwrap();
    let err = digits::load(&path).unwrap_err().to_string();
    assert!(err.contains("label 12 is not a digit"), "{err}");
}

#[test]
fn unknown_dataset_lists_known_ones() {
    let err = kiln_data::load_split("imagenet", kiln_core::Seed(1))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "unknown dataset `imagenet`; available datasets: digits"
    );
}
