//! Data pipelines on the real files: pixel statistics, tables, image folders, downloads and
//! augmented batching.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::tensor::Device;
use kiln_core::Seed;
use kiln_data::download::{self, MNIST, Policy, RemoteDataset};
use kiln_data::tabular::{self, Encoding, TableEncoder, TableSpec, Targets};
use kiln_data::{Augment, EpochCounter, ImageBatcher, ImageDataset, Normalizer, image_folder};

fn data_dir() -> PathBuf {
    let dir = kiln_data::data_dir::resolve(None);
    assert!(
        dir.join("mnist").is_dir(),
        "real datasets not found in {}: set KILN_DATA_DIR",
        dir.display()
    );
    dir
}

fn mean(values: &[f32]) -> f64 {
    values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len() as f64
}

#[test]
fn mnist_and_fashion_pixel_means_match_the_published_values() {
    let mnist = kiln_data::load_split_from("mnist", Seed(0), &data_dir()).unwrap();
    let all_train: Vec<f32> = mnist
        .train
        .pixels()
        .iter()
        .chain(mnist.valid.pixels())
        .copied()
        .collect();
    assert!((mean(&all_train) * 255.0 - 33.32).abs() < 0.01);
    let fashion = kiln_data::load_split_from("fashion-mnist", Seed(0), &data_dir()).unwrap();
    let all_train: Vec<f32> = fashion
        .train
        .pixels()
        .iter()
        .chain(fashion.valid.pixels())
        .copied()
        .collect();
    assert!((mean(&all_train) * 255.0 - 72.94).abs() < 0.01);
    assert_eq!(fashion.test.len(), 10_000);
    // The published split is kept; validation is 10% of the 60,000 training images,
    // stratified (600 per class).
    assert_eq!((fashion.train.len(), fashion.valid.len()), (54_000, 6_000));
    assert_eq!(fashion.valid.class_counts(), vec![600; 10]);
}

#[test]
fn shared_idx_files_have_the_published_content_digests() {
    download::verify(&MNIST, &data_dir().join("mnist")).unwrap();
    download::verify(&download::FASHION_MNIST, &data_dir().join("fashion-mnist")).unwrap();
}

/// Serves `body` to every request on a loopback port; returns the base URL.
fn serve(body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let header = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(header.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    format!("http://{addr}/")
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

#[test]
fn downloads_are_verified_and_renamed_into_place() {
    let labels = std::fs::read(data_dir().join("mnist/t10k-labels-idx1-ubyte.gz")).unwrap();
    let file = MNIST.files[3];
    assert_eq!(file.name, "t10k-labels-idx1-ubyte.gz");
    let files: &'static [download::RemoteFile] = Box::leak(Box::new([file]));

    // A mirror serving the right bytes: the file lands, verified.
    let good = RemoteDataset {
        name: "mnist",
        mirrors: Box::leak(Box::new([leak(serve(labels.clone()))])),
        files,
    };
    let dir = tempfile::tempdir().unwrap();
    let folder = download::ensure(&good, dir.path(), Policy::IfMissing).unwrap();
    assert_eq!(std::fs::read(folder.join(file.name)).unwrap(), labels);

    // A mirror serving corrupted bytes: a checksum error, and nothing left behind.
    let mut corrupt = labels.clone();
    let n = corrupt.len();
    corrupt.truncate(n - 10);
    let bad = RemoteDataset {
        mirrors: Box::leak(Box::new([leak(serve(corrupt))])),
        ..good
    };
    let dir = tempfile::tempdir().unwrap();
    let err = download::ensure(&bad, dir.path(), Policy::IfMissing)
        .unwrap_err()
        .to_string();
    assert!(err.contains("t10k-labels-idx1-ubyte.gz"), "{err}");
    assert!(err.contains("if this machine is offline, put"), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path().join("mnist"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "a failed download left {left:?}");

    // No network at all (a closed port): the error says which files to put where.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let offline = RemoteDataset {
        mirrors: Box::leak(Box::new([leak(format!("http://127.0.0.1:{port}/"))])),
        ..good
    };
    let err = download::ensure(&offline, dir.path(), Policy::IfMissing)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&dir.path().join("mnist").display().to_string()) && err.contains(file.name),
        "{err}"
    );
}

#[test]
fn ames_loads_with_one_hot_encoding_and_predicts_prices() {
    let (table, named) = tabular::load_named("ames-housing", &data_dir()).unwrap();
    assert_eq!((table.len(), table.columns.len()), (2930, 74));
    let numeric = (0..74).filter(|&c| table.is_numeric(c)).count();
    assert_eq!(
        numeric, 34,
        "34 numeric columns (with the target), 40 categorical"
    );
    let (train, test) = table.split(0.2, 7);
    assert_eq!((train.len(), test.len()), (2344, 586));
    let encoder = TableEncoder::fit(&table, &TableSpec::target(named.target), &train).unwrap();
    // 33 standardised numbers and one 0/1 column per category seen in training.
    let one_hot: usize = encoder
        .features
        .iter()
        .filter(|f| matches!(f, tabular::ColumnEncoder::Categorical { .. }))
        .map(|f| f.width())
        .sum();
    assert_eq!(encoder.width(), 33 + one_hot);
    assert!((270..=281).contains(&one_hot), "{one_hot}");
    assert_eq!(
        encoder.width(),
        309,
        "33 numbers and 276 categories seen in training"
    );
    let train_set = encoder.transform(&table, &train).unwrap();
    let test_set = encoder.transform(&table, &test).unwrap();
    // Standardisation fitted on the training rows: mean 0 there.
    let names = encoder.feature_names();
    let lot = names.iter().position(|n| n == "Lot_Frontage").unwrap();
    assert_eq!(names[0], "MS_SubClass=Duplex_All_Styles_and_Ages");
    let column: Vec<f32> = (0..train_set.len())
        .map(|i| train_set.row(i)[lot])
        .collect();
    assert!(mean(&column).abs() < 1e-5);

    // Real quality bar for the encoding: ridge regression on it explains most of the
    // held-out price variance.
    let (Targets::Values(y), Targets::Values(y_test)) = (&train_set.targets, &test_set.targets)
    else {
        panic!("Sale_Price is numeric, so this is regression")
    };
    let w = ridge(&train_set.features, y, encoder.width(), 10.0);
    let predict = |row: &[f32]| -> f64 {
        row.iter()
            .zip(&w[1..])
            .map(|(&x, wi)| f64::from(x) * wi)
            .sum::<f64>()
            + w[0]
    };
    let prices: Vec<f64> = y_test.iter().map(|&t| encoder.unscale_target(t)).collect();
    let price_mean = prices.iter().sum::<f64>() / prices.len() as f64;
    let (mut ss_res, mut ss_tot) = (0.0, 0.0);
    for (i, price) in prices.iter().enumerate() {
        let predicted = encoder.unscale_target(predict(test_set.row(i)) as f32);
        ss_res += (price - predicted).powi(2);
        ss_tot += (price - price_mean).powi(2);
    }
    let r2 = 1.0 - ss_res / ss_tot;
    assert!(r2 > 0.8, "held-out R² {r2:.3}");
    let _ = y;
}

/// Ridge regression with an intercept, by Cholesky on the normal equations (f64).
fn ridge(x: &[f32], y: &[f32], d: usize, lambda: f64) -> Vec<f64> {
    let n = y.len();
    let p = d + 1;
    let mut a = vec![0f64; p * p];
    let mut b = vec![0f64; p];
    for i in 0..n {
        let row: Vec<f64> = std::iter::once(1.0)
            .chain(x[i * d..(i + 1) * d].iter().map(|&v| f64::from(v)))
            .collect();
        for j in 0..p {
            b[j] += row[j] * f64::from(y[i]);
            for k in 0..p {
                a[j * p + k] += row[j] * row[k];
            }
        }
    }
    for j in 1..p {
        a[j * p + j] += lambda;
    }
    // Cholesky: a = L Lᵀ.
    let mut l = vec![0f64; p * p];
    for j in 0..p {
        let mut s = a[j * p + j];
        for k in 0..j {
            s -= l[j * p + k] * l[j * p + k];
        }
        l[j * p + j] = s.max(1e-12).sqrt();
        for i in j + 1..p {
            let mut s = a[i * p + j];
            for k in 0..j {
                s -= l[i * p + k] * l[j * p + k];
            }
            l[i * p + j] = s / l[j * p + j];
        }
    }
    let mut z = vec![0f64; p];
    for i in 0..p {
        let s: f64 = (0..i).map(|k| l[i * p + k] * z[k]).sum();
        z[i] = (b[i] - s) / l[i * p + i];
    }
    let mut w = vec![0f64; p];
    for i in (0..p).rev() {
        let s: f64 = (i + 1..p).map(|k| l[k * p + i] * w[k]).sum();
        w[i] = (z[i] - s) / l[i * p + i];
    }
    w
}

#[test]
fn every_shared_table_loads() {
    for named in tabular::TABLES {
        let (table, _) = tabular::load_named(named.name, &data_dir()).unwrap();
        let (train, test) = table.split(0.2, 1);
        let spec = TableSpec {
            encoding: Encoding::Index,
            ..TableSpec::target(named.target)
        };
        let encoder = TableEncoder::fit(&table, &spec, &train).unwrap();
        let set = encoder.transform(&table, &test).unwrap();
        assert_eq!(set.len(), test.len(), "{}", named.name);
        assert!(set.features.iter().all(|v| v.is_finite()), "{}", named.name);
    }
    let (iris, _) = tabular::load_named("iris", &data_dir()).unwrap();
    assert_eq!(iris.len(), 150);
    assert_eq!(iris.columns[0], "sepal_length");
    let (diabetes, _) = tabular::load_named("diabetes", &data_dir()).unwrap();
    assert_eq!((diabetes.len(), diabetes.columns.len()), (442, 11));
    // Classification tables become [1, 1, features] image sets: a fixed stratified 20% test
    // split, then 10% of the rest for validation by the run's seed.
    let split = kiln_data::load_split_from("iris", Seed(3), &data_dir()).unwrap();
    assert_eq!(
        (split.train.len(), split.valid.len(), split.test.len()),
        (108, 12, 30)
    );
    assert_eq!(split.train.shape(), [1, 1, 4]);
    assert_eq!(split.test.class_counts(), vec![10, 10, 10]);
    assert_eq!(split.valid.class_counts(), vec![4, 4, 4]);
    assert_eq!(split.train.classes(), ["setosa", "versicolor", "virginica"]);
    // Another seed: the same test rows (the fixed split's, see `split::holdout`), other
    // validation rows. (The encoded values differ: the standardisation is fitted on each
    // run's training rows.)
    let (table, _) = tabular::load_named("iris", &data_dir()).unwrap();
    let labels = table.class_labels("target").unwrap();
    let h3 = kiln_data::split::holdout(&labels, 0.1, Seed(3).derive("valid")).unwrap();
    let h4 = kiln_data::split::holdout(&labels, 0.1, Seed(4).derive("valid")).unwrap();
    assert_eq!(h3.test, h4.test);
    assert_ne!(h3.valid, h4.valid);
    let other = kiln_data::load_split_from("iris", Seed(4), &data_dir()).unwrap();
    assert_eq!(other.test.labels(), split.test.labels());
    // No test row reaches train or valid, for any seed: the rows are distinct points here
    // (iris has one duplicated row, which the fixed split may put anywhere, so compare the
    // multiset sizes rather than the values).
    let rows = |s: &kiln_data::ImageSet| {
        (0..s.len())
            .map(|i| s.image(i).iter().map(|v| v.to_bits()).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    for seed in 0..5 {
        let s = kiln_data::load_split_from("iris", Seed(seed), &data_dir()).unwrap();
        let mut seen = rows(&s.train);
        seen.extend(rows(&s.valid));
        seen.extend(rows(&s.test));
        assert_eq!(seen.len(), 150);
        let test = rows(&s.test);
        let leaked = rows(&s.train)
            .into_iter()
            .chain(rows(&s.valid))
            .filter(|r| test.contains(r))
            .count();
        assert!(
            leaked <= 1,
            "seed {seed}: {leaked} test rows in train/valid"
        );
    }
}

#[test]
fn an_image_folder_of_mnist_pngs_reads_back_the_idx_pixels() {
    let mnist = kiln_data::load_split_from("mnist", Seed(0), &data_dir()).unwrap();
    let few = mnist.test.first_per_class(3);
    let dir = tempfile::tempdir().unwrap();
    for i in 0..few.len() {
        let class_dir = dir.path().join(&few.classes()[few.labels()[i]]);
        std::fs::create_dir_all(&class_dir).unwrap();
        let bytes: Vec<u8> = few
            .image(i)
            .iter()
            .map(|&p| (p * 255.0).round() as u8)
            .collect();
        image::GrayImage::from_raw(28, 28, bytes)
            .unwrap()
            .save(class_dir.join(format!("{i:03}.png")))
            .unwrap();
    }
    let options = image_folder::FolderOptions {
        size: [28, 28],
        channels: image_folder::Channels::Grey,
        resize: image_folder::Resize::default(),
    };
    let set = image_folder::load_folder(dir.path(), &options).unwrap();
    assert_eq!(set.class_counts(), vec![3; 10]);
    // Files are read class by class in name order, which is few's order sorted by label.
    let mut order: Vec<usize> = (0..few.len()).collect();
    order.sort_by_key(|&i| (few.labels()[i], i));
    assert_eq!(set, few.subset(&order));
    // Through the generic loader, as `--dataset <folder> --image-size 28x28 --grey`.
    let data = kiln_data::load_dataset(
        dir.path().to_str().unwrap(),
        Seed(1),
        &data_dir(),
        &kiln_data::DataOptions {
            image_size: Some([28, 28]),
            channels: image_folder::Channels::Grey,
            ..Default::default()
        },
        0.5,
    )
    .unwrap();
    // 3 images a class: 1 for the fixed test split, then half of the other 2 for validation.
    assert_eq!(
        (data.train.len(), data.valid.len(), data.test.len()),
        (10, 10, 10)
    );
}

#[test]
fn augmented_batches_are_seeded_by_epoch_and_index_and_mix_labels() {
    let digits = kiln_data::load_split_from("digits", Seed(0), &data_dir()).unwrap();
    let set = digits.train.first_per_class(2);
    let dataset = ImageDataset::new(set.clone());
    let epochs = EpochCounter::starting_at(1);
    let batcher = ImageBatcher::new(set.shape(), Normalizer::identity(1)).with_augment(
        Augment::parse("rotate=20,translate=0.1,noise=0.05,mixup=0.4").unwrap(),
        Seed(5),
        epochs.clone(),
        10,
    );
    let device = Device::flex();
    let items = || (0..8).map(|i| dataset.get(i).unwrap()).collect::<Vec<_>>();
    let pixels = |b: kiln_data::ImageBatch| b.images.into_data().try_to_vec::<f32>().unwrap();
    let a = batcher.batch(items(), &device);
    let soft = a.soft_targets.clone().expect("mixup gives soft targets");
    let soft = soft.into_data().try_to_vec::<f32>().unwrap();
    for row in soft.chunks(10) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    let a = pixels(a);
    assert_eq!(
        a,
        pixels(batcher.batch(items(), &device)),
        "same epoch, same batch"
    );
    // Item order within a batch does not change an item's own augmentation draw (checked
    // without mixup, which pairs items by position).
    let plain = ImageBatcher::new(set.shape(), Normalizer::identity(1)).with_augment(
        Augment::parse("rotate=20,noise=0.05").unwrap(),
        Seed(5),
        epochs.clone(),
        10,
    );
    let one = pixels(plain.batch(vec![dataset.get(3).unwrap()], &device));
    let many = pixels(plain.batch(items(), &device));
    assert_eq!(one, many[3 * 64..4 * 64]);
    let original: Vec<f32> = set.image(3).to_vec();
    assert_ne!(one, original, "the image was augmented");
    // The next epoch draws differently.
    let loader_epochs = EpochCounter::starting_at(2);
    let next = ImageBatcher::new(set.shape(), Normalizer::identity(1)).with_augment(
        Augment::parse("rotate=20,noise=0.05").unwrap(),
        Seed(5),
        loader_epochs,
        10,
    );
    assert_ne!(
        one,
        pixels(next.batch(vec![dataset.get(3).unwrap()], &device))
    );
}
