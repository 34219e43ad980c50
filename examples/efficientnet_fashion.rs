//! Few-label image transfer: EfficientNet-Lite0 ImageNet features on Fashion-MNIST with only
//! 100 labelled training images per class (1,000 in all), a new linear head trained on the
//! frozen features (linear probing), evaluated on the Fashion-MNIST test set.
//!
//! `cargo run --example efficientnet_fashion [RESOLUTION] [TEST_PER_CLASS] [INVERT] [SEEDS]`
//! (defaults 112, 1000 = the whole test set, 0, 1-5). Images are upscaled (bilinear) from
//! 28x28 to RESOLUTION, copied to three channels and scaled like the network's ImageNet
//! inputs, (p - 127) / 128; INVERT=1 makes the garments dark on white, like product photos.
//!
//! Each seed draws its 100 images per class exactly as `kiln train cnn-small --dataset
//! fashion-mnist --train-per-class 100 --seed S` does (the first 100 of each class after the
//! seed's validation split; `cargo xtask seeds fashion-transfer` trains the from-scratch and
//! MNIST-pretrained models on the same images), and seeds the head's initialisation; the
//! network's features are the same for every seed. It prints each seed's accuracy and their
//! mean ± sd (`kiln_train::seeds::Summary`).
//!
//! `KILN_EXAMPLE_TINY=1`: 10 training and 5 test images per class at 64x64, seeds 1 and 2, a
//! check that the features carry the classes (accuracy well above the 10% of chance).

use std::time::Instant;

use kiln::burn::module::Module;
use kiln::burn::nn::LinearConfig;
use kiln::burn::nn::loss::CrossEntropyLossConfig;
use kiln::burn::optim::{AdamConfig, GradientsParams};
use kiln::burn::tensor::module::interpolate;
use kiln::burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use kiln::burn::tensor::{Device, Int, Tensor, TensorData};
use kiln::data::ImageSet;
use kiln::data::idx::{FASHION_CLASSES, Split, load_dir};
use kiln::train::TrainConfig;
use kiln::train::seeds::{Summary, parse_seeds};
use kiln::transfer::vision::{ImageNetClassifier, efficientnet_lite0_dir};

fn features(
    net: &ImageNetClassifier,
    set: &ImageSet,
    resolution: usize,
    invert: bool,
    device: &Device,
) -> Tensor<2> {
    let started = Instant::now();
    let n = set.len();
    let mut parts = Vec::new();
    for start in (0..n).step_by(50) {
        let end = (start + 50).min(n);
        let pixels: Vec<f32> = set.pixels()[start * 784..end * 784]
            .iter()
            .map(|&p| {
                let p = if invert { 1.0 - p } else { p };
                (p * 255.0 - 127.0) / 128.0
            })
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(pixels, [end - start, 1, 28, 28]), device);
        let x = interpolate(
            x,
            InterpolateOptions::new(InterpolateMode::Bilinear)
                .with_align_corners(false)
                .with_output_size([resolution, resolution]),
        )
        .repeat_dim(1, 3);
        parts.push(net.model.features(x));
        if (end / 50) % 20 == 0 || end == n {
            eprintln!(
                "  features {end} / {n} ({:.0}s)",
                started.elapsed().as_secs_f64()
            );
        }
    }
    Tensor::cat(parts, 0)
}

fn labels(set: &ImageSet, device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = set.labels().iter().map(|&l| l as i64).collect();
    Tensor::from_data(TensorData::new(v, [set.len()]), device)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let tiny = std::env::var_os("KILN_EXAMPLE_TINY").is_some();
    let resolution: usize = args
        .get(1)
        .map_or(Ok(if tiny { 64 } else { 112 }), |a| a.parse())?;
    let test_per_class: usize = args
        .get(2)
        .map_or(Ok(if tiny { 5 } else { 1000 }), |a| a.parse())?;
    let invert = args.get(3).is_some_and(|a| a == "1");
    let seeds = parse_seeds(
        args.get(4)
            .map_or(if tiny { "1,2" } else { "1-5" }, String::as_str),
    )?;
    let train_per_class = if tiny { 10 } else { 100 };
    kiln::core::allocator::tune();
    let data_dir = kiln::data::data_dir::resolve(None);
    let fashion = data_dir.join("fashion-mnist");
    let test = load_dir("fashion-mnist", &fashion, Split::Test, &FASHION_CLASSES)?
        .first_per_class(test_per_class);
    let device = Device::flex();
    kiln::core::Seed(42).apply(&device);
    let (net, _) =
        ImageNetClassifier::efficientnet_lite0(&efficientnet_lite0_dir(&data_dir), None, &device)?;
    let started = Instant::now();
    let x_test = features(&net, &test, resolution, invert, &device);
    let mut accuracies = Vec::new();
    for &seed in &seeds {
        // The training images `kiln train ... --train-per-class N --seed SEED` uses.
        let mut config = TrainConfig::for_preset("cnn-small")?;
        (config.dataset, config.recipe.seed) = ("fashion-mnist".into(), seed);
        config.train_per_class = Some(train_per_class);
        let train = kiln::train::load_data(&config, Some(&data_dir))?.train;
        let x_train = features(&net, &train, resolution, invert, &device);

        // Standardise with the training features' statistics, then logistic regression with
        // weight decay (full batch, Adam).
        let mean = x_train.clone().mean_dim(0);
        let std = x_train.clone().var(0).sqrt().clamp_min(1e-6);
        let (x_train, x_seed_test) = (
            (x_train - mean.clone()) / std.clone(),
            (x_test.clone() - mean) / std,
        );
        kiln::core::Seed(seed).apply(&device);
        let ad = device.clone().autodiff();
        let (x, y) = (x_train.to_device(&ad), labels(&train, &ad));
        let mut head = LinearConfig::new(x.dims()[1], 10).init(&ad);
        let mut optim = AdamConfig::new()
            .with_weight_decay(Some(kiln::burn::optim::decay::WeightDecayConfig::new(1e-2)))
            .init();
        let loss_fn = CrossEntropyLossConfig::new().init(&ad);
        for _ in 0..300 {
            let loss = loss_fn.forward(head.forward(x.clone()), y.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &head);
            head = optim.step(1e-3, head, grads);
        }
        let predicted = head
            .valid()
            .forward(x_seed_test)
            .argmax(1)
            .flatten::<1>(0, 1);
        let correct: i64 = predicted
            .equal(labels(&test, &device))
            .int()
            .sum()
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()?[0];
        let accuracy = correct as f64 / test.len() as f64;
        println!(
            "seed {seed}: EfficientNet-Lite0 features ({resolution}x{resolution}{}) + linear head, {} labels: test accuracy {:.2}% ({correct}/{})",
            if invert { ", inverted" } else { "" },
            train.len(),
            100.0 * accuracy,
            test.len()
        );
        accuracies.push(accuracy);
    }
    let percent: Vec<f64> = accuracies.iter().map(|a| 100.0 * a).collect();
    let summary = Summary::of(&percent)?;
    println!(
        "EfficientNet-Lite0 features + linear head over {} seeds: {:.2} ± {:.2}% (min {:.2}, max {:.2}); {:.0}s in all",
        seeds.len(),
        summary.mean,
        summary.sd.unwrap_or(0.0),
        summary.min,
        summary.max,
        started.elapsed().as_secs_f64()
    );
    let bar = if tiny { 0.3 } else { 0.75 };
    for (seed, accuracy) in seeds.iter().zip(&accuracies) {
        assert!(
            *accuracy > bar,
            "seed {seed}: accuracy {accuracy} at or below {bar}"
        );
    }
    println!(
        "check: test accuracy above {:.0}% on every seed",
        100.0 * bar
    );
    Ok(())
}
