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
    assert_eq!(real.pixels().len(), 1797 * 64);
    assert_eq!(real, bundled);
}

#[test]
fn digits_test_split_is_fixed_and_validation_comes_from_the_training_part() {
    let all = digits::load_bundled().unwrap();
    let split = kiln_data::load_split("digits", kiln_core::Seed(42)).unwrap();
    assert_eq!(
        split.train.len() + split.valid.len() + split.test.len(),
        1797
    );
    assert_eq!(split.test.len(), 359);
    // round(0.2 * count) test images per class, and 10% of the rest for validation.
    let all_counts = all.class_counts();
    for (c, &a) in all_counts.iter().enumerate() {
        let t = (a as f64 * 0.2).round() as usize;
        assert_eq!(split.test.class_counts()[c], t);
        assert_eq!(
            split.valid.class_counts()[c],
            ((a - t) as f64 * 0.1).round() as usize
        );
    }
    // The test images are the fixed split's items, whatever the run's seed.
    let (rest, test) = kiln_data::split::dataset_split(all.labels());
    assert_eq!(split.test, all.subset(&test));
    let again = kiln_data::load_split("digits", kiln_core::Seed(42)).unwrap();
    assert_eq!((&again.train, &again.valid), (&split.train, &split.valid));
    for seed in [0, 43, 7_000] {
        let other = kiln_data::load_split("digits", kiln_core::Seed(seed)).unwrap();
        assert_eq!(other.test, split.test, "seed {seed}");
        assert_ne!(other.valid, split.valid, "seed {seed}");
        // Train and validation are the same 1,438 images, divided differently.
        let h = kiln_data::split::holdout(all.labels(), 0.1, kiln_core::Seed(seed).derive("valid"))
            .unwrap();
        assert_eq!(other.valid, all.subset(&h.valid));
        assert_eq!(other.train, all.subset(&h.train));
        let mut both: Vec<usize> = h.train.iter().chain(&h.valid).copied().collect();
        both.sort_unstable();
        assert_eq!(both, rest, "no test index in train or valid (seed {seed})");
    }
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
        "unknown dataset `imagenet`; available datasets: digits, mnist, fashion-mnist, iris, wine, breast-cancer, diabetes, boston-housing, ames-housing, concrete, a .csv file or an image folder"
    );
}

#[test]
fn mnist_has_the_published_sizes_and_class_counts() {
    let split = kiln_data::load_split_from("mnist", kiln_core::Seed(0), &data_dir()).unwrap();
    // The published 60,000 training images, 10% of each class held out for validation.
    assert_eq!(
        (split.train.len(), split.valid.len(), split.test.len()),
        (54_000, 6_000, 10_000)
    );
    assert_eq!(split.train.shape(), [1, 28, 28]);
    assert_eq!(split.train.pixels().len(), 54_000 * 784);
    let published = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949];
    let both: Vec<usize> = split
        .train
        .class_counts()
        .iter()
        .zip(split.valid.class_counts())
        .map(|(t, v)| t + v)
        .collect();
    assert_eq!(both, published);
    let valid: Vec<usize> = published
        .iter()
        .map(|&n| (n as f64 * 0.1).round() as usize)
        .collect();
    assert_eq!(split.valid.class_counts(), valid);
    assert_eq!(
        split.test.class_counts(),
        vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    // Pixels are scaled to 0..=1.
    assert!(
        split
            .train
            .pixels()
            .iter()
            .all(|&p| (0.0..=1.0).contains(&p))
    );
    let few = split.train.first_per_class(7);
    assert_eq!(few.class_counts(), vec![7; 10]);
}

#[test]
fn fashion_mnist_is_balanced() {
    let split =
        kiln_data::load_split_from("fashion-mnist", kiln_core::Seed(0), &data_dir()).unwrap();
    assert_eq!(split.train.class_counts(), vec![5400; 10]);
    assert_eq!(split.valid.class_counts(), vec![600; 10]);
    assert_eq!(split.test.class_counts(), vec![1000; 10]);
    assert_eq!(split.train.classes()[9], "Ankle boot");
}

#[test]
fn missing_mnist_says_which_files_to_put_where() {
    use kiln_data::download::{MNIST, Policy, ensure};
    let dir = tempfile::tempdir().unwrap();
    let err = ensure(&MNIST, dir.path(), Policy::Never)
        .unwrap_err()
        .to_string();
    assert!(err.contains("dataset `mnist` not found"), "{err}");
    assert!(err.contains("train-images-idx3-ubyte.gz"), "{err}");
    assert!(
        err.contains(&dir.path().join("mnist").display().to_string()),
        "{err}"
    );
}

#[test]
fn truncated_idx_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mnist = dir.path().join("mnist");
    std::fs::create_dir(&mnist).unwrap();
    for name in [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ] {
        std::fs::copy(data_dir().join("mnist").join(name), mnist.join(name)).unwrap();
    }
    let labels = mnist.join("t10k-labels-idx1-ubyte.gz");
    let bytes = std::fs::read(&labels).unwrap();
    std::fs::write(&labels, &bytes[..bytes.len() - 100]).unwrap();
    let err = kiln_data::load_split_from("mnist", kiln_core::Seed(0), dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("t10k-labels-idx1-ubyte.gz"), "{err}");
}
