//! `cargo xtask train <preset>`: the preset's default recipe through kiln-train.

use anyhow::Context;
use kiln_train::{TrainConfig, TrainOptions};

use crate::flags::TrainArgs;

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let (model, note) = kiln_train::offline_preset(&args.model, args.dataset.as_deref());
    if let Some(note) = note {
        println!("{note}");
    }
    let mut config = TrainConfig::for_preset(&model)?;
    if let Some(epochs) = args.epochs {
        config.recipe.epochs = epochs;
    }
    if let Some(seed) = args.seed {
        config.recipe.seed = seed;
    }
    if let Some(dataset) = args.dataset {
        config.adapt_model = dataset != config.dataset;
        config.dataset = dataset;
    }
    if args.augment.is_some() {
        config.augment = args.augment;
    }
    config.data.target = args.target;
    config.data.image_size = args.image_size;
    if args.grey {
        config.data.channels = kiln_data::image_folder::Channels::Grey;
    }
    let out = args
        .out
        .unwrap_or_else(|| kiln_train::default_run_dir(&config.name));
    println!(
        "training {} on {}{} ({} epochs, batch {}, lr {}, seed {}, device {}) -> {}",
        config.name,
        config.dataset,
        config
            .augment
            .as_deref()
            .map(|a| format!(" with augmentation {a}"))
            .unwrap_or_default(),
        config.recipe.epochs,
        config.recipe.batch_size,
        config.recipe.lr,
        config.recipe.seed,
        config.recipe.device,
        out.display()
    );
    let report = kiln_train::train(
        &config,
        &out,
        &TrainOptions {
            quiet: false,
            data_dir: args.data_dir,
            ..TrainOptions::default()
        },
    )
    .with_context(|| format!("training {}", config.name))?;
    println!(
        "held-out test accuracy {:.2}% ({}/{}) after {:.1}s of training; run folder {} (reload with `cargo run -p kiln-cli -- eval {}`)",
        100.0 * report.test.accuracy,
        report.test.correct,
        report.test.total,
        report.train_seconds,
        out.display(),
        out.display()
    );
    Ok(())
}
