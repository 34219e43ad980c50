//! Ames house prices: a linear model against an MLP on a real table of 2,930 sales with
//! numeric and categorical columns, compared on the fixed held-out test split (R², RMSE in
//! dollars), both trained with Kiln's regression trainer (standardised target, Adam, the
//! validation loss watched each epoch).
//!
//! `cargo run --example table_regression` (60 epochs each; `KILN_EXAMPLE_TINY=1`: 12).

use kiln::train::TrainOptions;
use kiln::train::regression::{RegressionConfig, RegressionReport, train_regression};

fn fit(hidden: &[usize], epochs: usize) -> Result<RegressionReport, Box<dyn std::error::Error>> {
    let mut config = RegressionConfig::new("ames-housing");
    config.hidden = hidden.to_vec();
    config.dropout = if hidden.is_empty() { 0.0 } else { 0.1 };
    config.recipe.epochs = epochs;
    let dir = std::env::temp_dir().join(format!("kiln-example-ames-{}", hidden.len()));
    Ok(train_regression(&config, &dir, &TrainOptions::quiet())?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // This program owns its process: tune the allocator for burn's per-step buffers.
    kiln::core::allocator::tune();
    let tiny = std::env::var_os("KILN_EXAMPLE_TINY").is_some();
    let epochs = if tiny { 12 } else { 60 };
    let linear = fit(&[], epochs)?;
    let mlp = fit(&[128, 64], epochs)?;
    println!(
        "{} test houses ({} train, {} validation), {} encoded features, {epochs} epochs",
        mlp.test_size, mlp.train_size, mlp.valid_size, mlp.features
    );
    println!("model            R²      RMSE ($)   MAE ($)");
    for (name, r) in [
        ("training mean", &mlp.baseline),
        ("linear", &linear.test),
        ("MLP 128-64", &mlp.test),
    ] {
        println!("{name:<13} {:>6.3}  {:>10.0}  {:>8.0}", r.r2, r.rmse, r.mae);
    }
    assert!(
        mlp.test.r2 > linear.test.r2,
        "the MLP (R² {:.3}) should beat the linear model (R² {:.3})",
        mlp.test.r2,
        linear.test.r2
    );
    assert!(
        mlp.test.r2 > if tiny { 0.75 } else { 0.85 },
        "MLP R² {:.3}",
        mlp.test.r2
    );
    println!("check: the MLP beats the linear model on held-out R²");
    Ok(())
}
