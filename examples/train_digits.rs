//! Train the MLP preset on the bundled UCI digits from Rust, then reload and evaluate it.
//!
//! `cargo run --example train_digits`

use kiln::train::{TrainConfig, TrainOptions, evaluate_run, train};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // This program owns its process: tune the allocator for burn's per-step buffers.
    kiln::core::allocator::tune();
    // The preset's recipe: MLP 64-128-64-10, Adam, 30 epochs, seed 42, flex CPU device.
    let mut config = TrainConfig::for_preset("mlp")?;
    config.recipe.epochs = 20;

    // Look at the model first: per-layer shapes, parameters, mult-adds.
    let model = config.model.init(&config.recipe.device.autodiff_device())?;
    println!("{}", model.summary("mlp", &[1, 1, 8, 8])?);

    // Train; the run folder gets config.toml, model.bpk, metrics.csv and report.json.
    let run_dir = std::env::temp_dir().join("kiln-example-digits");
    let report = train(&config, &run_dir, &TrainOptions::default())?;
    println!("test accuracy {:.2}%", 100.0 * report.test.accuracy);

    // Reload from disk: same accuracy.
    let reloaded = evaluate_run(&run_dir)?;
    assert_eq!(reloaded.correct, report.test.correct);
    Ok(())
}
