//! `cargo xtask bench data`: how fast Kiln turns MNIST into batches, with and without the full
//! augmentation pipeline, next to one training step of the `cnn-small` preset, measured in the
//! same process (warm-up, then the median of several rounds).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::Dataset;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::Device;
use kiln_core::Seed;
use kiln_data::{
    Augment, EpochCounter, EpochLoader, ImageBatch, ImageBatcher, ImageDataset, Normalizer,
};
use kiln_models::Classifier;
use serde::Serialize;

use crate::flags::BenchArgs;

/// The augmentation the benchmark calls "full": every per-image transform plus mixup.
pub const FULL_PIPELINE: &str = "flip,rotate=15,scale=0.9..1.1,translate=0.1,crop=0.8..1,noise=0.05,brightness=0.2,contrast=0.2,erase=0.25,mixup=0.2";

#[derive(Serialize)]
struct Row {
    what: String,
    unit: &'static str,
    median: f64,
    min: f64,
    max: f64,
}

fn summarise(what: impl Into<String>, unit: &'static str, mut values: Vec<f64>) -> Row {
    values.sort_by(f64::total_cmp);
    Row {
        what: what.into(),
        unit,
        median: values[values.len() / 2],
        min: values[0],
        max: values[values.len() - 1],
    }
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.suite == "llm" && args.case.is_some() {
        return crate::bench_llm::run_case(&args);
    }
    if let (Some(case), "lora") = (&args.case, args.suite.as_str()) {
        return crate::bench_lora::run_case(case, &args);
    }
    if let (Some(case), "serve") = (&args.case, args.suite.as_str()) {
        return crate::bench_serve::run_case(case, &args);
    }
    if let Some(case) = &args.case {
        return crate::bench_models::run_one(case, &args);
    }
    match args.suite.as_str() {
        "models" => crate::bench_models::run(args),
        "data" => run_data(args),
        "llm" => crate::bench_llm::run(args),
        "serve" => crate::bench_serve::run(args),
        "lora" => crate::bench_lora::run(args),
        other => {
            anyhow::bail!(
                "unknown benchmark suite `{other}`; available: models, data, llm, serve, lora"
            )
        }
    }
}

fn run_data(args: BenchArgs) -> anyhow::Result<()> {
    let rounds = args.rounds.max(1);
    let data = kiln_data::load_split("mnist", Seed(0)).context("loading MNIST")?;
    let train = data.train.first_per_class(args.images / 10);
    let n = train.len();
    let batch_size = 64;
    let normalizer = Normalizer::fit(&train);
    let device = Device::flex();
    let dataset = ImageDataset::new(train.clone());
    let plain = ImageBatcher::new(train.shape(), normalizer.clone());
    let full = plain.clone().with_augment(
        Augment::parse(FULL_PIPELINE)?,
        Seed(1),
        EpochCounter::starting_at(1),
        10,
    );
    let mut rows = Vec::new();

    // Batching on the calling thread: items → augmented, normalised burn tensors.
    for (name, batcher) in [
        ("batch, no augmentation", &plain),
        ("batch, full augmentation", &full),
    ] {
        let mut rates = Vec::new();
        for round in 0..=rounds {
            let started = Instant::now();
            let indices: Vec<usize> = (0..n).collect();
            for chunk in indices.chunks(batch_size) {
                let items = chunk.iter().map(|&i| dataset.get(i).unwrap()).collect();
                let batch: ImageBatch = batcher.batch(items, &device);
                std::hint::black_box(batch);
            }
            if round > 0 {
                rates.push(n as f64 / started.elapsed().as_secs_f64());
            }
        }
        rows.push(summarise(format!("{name} (1 thread)"), "images/s", rates));
    }

    // Through burn's multi-threaded DataLoader, as training uses it.
    for workers in [1usize, 2] {
        let epochs = EpochCounter::default();
        let batcher =
            plain
                .clone()
                .with_augment(Augment::parse(FULL_PIPELINE)?, Seed(1), epochs.clone(), 10);
        let loader: Arc<dyn DataLoader<ImageBatch>> = EpochLoader::new(
            DataLoaderBuilder::new(batcher)
                .batch_size(batch_size)
                .shuffle(7)
                .num_workers(workers)
                .set_device(device.clone())
                .build(dataset.clone()),
            epochs,
        );
        let mut rates = Vec::new();
        for round in 0..=rounds {
            let started = Instant::now();
            let mut count = 0;
            for batch in loader.iter() {
                count += batch?.images.dims()[0];
            }
            if round > 0 {
                rates.push(count as f64 / started.elapsed().as_secs_f64());
            }
        }
        rows.push(summarise(
            format!("DataLoader, full augmentation, {workers} worker(s)"),
            "images/s",
            rates,
        ));
    }

    // One optimisation step of cnn-small on a batch of 64 (forward, backward, Adam).
    let ad_device = device.clone().autodiff();
    Seed(0).apply(&ad_device);
    let mut model = kiln_models::preset("cnn-small")?
        .config
        .init_image(&ad_device)?;
    let mut optim = AdamConfig::new().init();
    let indices: Vec<usize> = (0..batch_size).collect();
    let batch = plain.batch_indices(&train, &indices, &ad_device);
    let loss_fn = CrossEntropyLossConfig::new().init(&ad_device);
    let mut step_ms = Vec::new();
    for round in 0..=rounds * 2 {
        let started = Instant::now();
        let logits = model.forward(batch.images.clone());
        let loss = loss_fn.forward(logits, batch.targets.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-3, model, grads);
        // Read the loss back so the step has really finished.
        std::hint::black_box(loss.into_data());
        if round > 0 {
            step_ms.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    rows.push(summarise(
        "cnn-small training step, batch 64",
        "ms",
        step_ms,
    ));

    let batch_ms = 1e3 * batch_size as f64 / rows[1].median;
    println!(
        "MNIST data pipeline, {n} images, batch {batch_size}, {rounds} rounds after a warm-up (median [min..max]):"
    );
    for row in &rows {
        println!(
            "  {:<52} {:>12.1} {} [{:.1}..{:.1}]",
            row.what, row.median, row.unit, row.min, row.max
        );
    }
    println!(
        "  => one fully augmented batch of {batch_size} takes {batch_ms:.2} ms on one thread, {:.1}% of a cnn-small training step ({:.1} ms)",
        100.0 * batch_ms / rows[4].median,
        rows[4].median
    );
    std::fs::create_dir_all(&args.out)?;
    let path = args.out.join("data.json");
    std::fs::write(&path, serde_json::to_string_pretty(&rows)?)?;
    println!("report: {}", path.display());
    Ok(())
}
