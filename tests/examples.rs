//! Every example runs in its tiny mode (`KILN_EXAMPLE_TINY=1`) and passes its own checks, so
//! an example cannot rot. `cargo test` builds the examples before it runs any test; their
//! binaries sit in `target/<profile>/examples/`, beside this test's `deps/` folder.

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    profile_dir.join("examples").join(name)
}

fn run_tiny(name: &str, check: &str) {
    let path = example(name);
    assert!(path.is_file(), "{} not built", path.display());
    let out = Command::new(&path)
        .env("KILN_EXAMPLE_TINY", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name} failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains(check),
        "{name} printed no `{check}`:\n{stdout}"
    );
    eprintln!("{name}:\n{stdout}");
}

#[test]
fn linear_regression_matches_least_squares() {
    run_tiny("linear_regression", "check: MSE within 1%");
}

#[test]
fn table_regression_mlp_beats_the_linear_model() {
    run_tiny("table_regression", "check: the MLP beats");
}

#[test]
fn text_classification_learns() {
    run_tiny("text_classification", "check: the training loss fell");
}

#[test]
fn char_lm_beats_the_unigram_baseline_and_generates() {
    run_tiny("char_lm", "check: the model beats the unigram baseline");
}

#[test]
fn multitask_heads_learn_mnist() {
    run_tiny("multitask", "check: both heads");
}

#[test]
fn train_digits_reloads_its_run() {
    run_tiny("train_digits", "test accuracy");
}

#[test]
fn efficientnet_features_carry_fashion_mnist_classes() {
    run_tiny("efficientnet_fashion", "check: test accuracy above");
}

#[test]
fn minilm_reviews_probe_fine_tune_and_scratch() {
    run_tiny(
        "minilm_reviews",
        "check: the three stages ran on the 80 test reviews",
    );
}

#[test]
fn custom_model_resumes_exactly_after_a_kill() {
    run_tiny(
        "custom_model",
        "check: resumed after a kill = uninterrupted run",
    );
}
