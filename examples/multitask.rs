//! Multi-task learning on MNIST: one shared MLP backbone, two heads trained together on a
//! weighted sum of cross-entropies, the digit (10 classes, weight 1) and "is it at least 5"
//! (2 classes, weight 0.5), each evaluated on the 10,000 test images.
//!
//! `cargo run --example multitask` (3 epochs); `KILN_EXAMPLE_TINY=1`: 1 epoch.

use kiln::train::TrainOptions;
use kiln::train::multitask::{Head, MultiTaskConfig, train_multitask};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // This program owns its process: tune the allocator for burn's per-step buffers.
    kiln::core::allocator::tune();
    let tiny = std::env::var_os("KILN_EXAMPLE_TINY").is_some();
    let mut config = MultiTaskConfig::new(
        "mnist",
        vec![
            Head::new("digit", (0..10).collect(), 1.0),
            Head::new(
                "at-least-5",
                (0..10).map(|d| usize::from(d >= 5)).collect(),
                0.5,
            ),
        ],
    );
    config.recipe.epochs = if tiny { 1 } else { 3 };
    let dir = std::env::temp_dir().join("kiln-example-multitask");
    let report = train_multitask(&config, &dir, &TrainOptions::default())?;
    for head in &report.heads {
        println!(
            "{:<11} test accuracy {:.2}% ({}/{}), macro F1 {:.4}",
            head.name,
            100.0 * head.test.accuracy,
            head.test.correct,
            head.test.total,
            head.test.macro_f1
        );
    }
    let bar = if tiny { 0.94 } else { 0.97 };
    for head in &report.heads {
        assert!(
            head.test.accuracy > bar,
            "{} head: {}",
            head.name,
            head.test.accuracy
        );
    }
    println!(
        "check: both heads above {:.0}% on the test set",
        100.0 * bar
    );
    Ok(())
}
