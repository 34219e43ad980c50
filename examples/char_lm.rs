//! A character language model trained on Jane Austen (five novels; *Persuasion* held out as
//! the test text), compared with the unigram baseline in bits per character, then asked to
//! continue a sentence, streamed as it is sampled.
//!
//! `cargo run --example char_lm` (the preset's recipe: 2 epochs over the five novels, a long
//! run on 2 cores); `KILN_EXAMPLE_TINY=1`: 640 windows of 64 characters, 1 epoch.

use std::io::Write;

use kiln::models::transformer::Sampling;
use kiln::train::TrainOptions;
use kiln::train::lm::{LmTrainConfig, generate_from_run, train_lm};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // This program owns its process: tune the allocator for burn's per-step buffers.
    kiln::core::allocator::tune();
    let tiny = std::env::var_os("KILN_EXAMPLE_TINY").is_some();
    let mut config = LmTrainConfig::for_preset("char-lm")?;
    if tiny {
        config.seq_len = 64;
        config.recipe.epochs = 1;
        config.recipe.lr = 3e-3;
        config.max_train_windows = Some(640);
        config.max_valid_windows = Some(64);
    }
    let dir = std::env::temp_dir().join("kiln-example-char-lm");
    let report = train_lm(&config, &dir, &TrainOptions::default())?;
    let ln2 = std::f64::consts::LN_2;
    println!(
        "Persuasion: {:.3} bits/char (perplexity {:.2}) against {:.3} for the unigram baseline",
        report.test.bits_per_token,
        report.test.perplexity,
        report.unigram_baseline / ln2
    );
    print!("generated: It is a truth universally acknowledged");
    let text = generate_from_run(
        &dir,
        "It is a truth universally acknowledged",
        200,
        Sampling::Nucleus {
            temperature: 0.8,
            top_k: None,
            top_p: 0.95,
        },
        kiln::core::Seed(7),
        &mut |piece| {
            print!("{piece}");
            std::io::stdout().flush().is_ok()
        },
    )?;
    println!();
    assert_eq!(text.chars().count(), 200);
    assert!(
        report.test.loss < report.unigram_baseline,
        "the model ({:.3} nats/char) does not beat the unigram baseline ({:.3})",
        report.test.loss,
        report.unigram_baseline
    );
    println!("check: the model beats the unigram baseline on the held-out novel");
    Ok(())
}
