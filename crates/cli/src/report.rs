//! What the commands print.

use std::path::Path;

use anyhow::{Context, Result};

/// The N of `--head classes=N`.
pub(crate) fn head_classes(spec: &str) -> Result<usize> {
    spec.strip_prefix("classes=")
        .and_then(|n| n.parse::<usize>().ok())
        .with_context(|| format!("--head `{spec}`: expected classes=N"))
}

pub(crate) fn print_train_report(report: &kiln_train::TrainReport) {
    println!(
        "test accuracy {:.2}% ({}/{}), test loss {:.4} (weights of epoch {}); trained in {:.1}s; run folder {}",
        100.0 * report.test.accuracy,
        report.test.correct,
        report.test.total,
        report.test.loss,
        report.model_epoch,
        report.train_seconds,
        report.run_dir.display()
    );
}

pub(crate) fn print_lm_report(report: &kiln_train::lm::LmReport) {
    let t = &report.test;
    println!(
        "test loss {:.4} nats/char ({:.3} bits/char, perplexity {:.2}) on {} characters; unigram baseline {:.4}; validation loss {:.4}; trained in {:.1}s; run folder {}",
        t.loss,
        t.bits_per_token,
        t.perplexity,
        t.tokens,
        report.unigram_baseline,
        report.valid_loss,
        report.train_seconds,
        report.run_dir.display()
    );
    println!("sample: {}", report.sample);
}

pub(crate) fn print_text_report(report: &kiln_train::text::TextReport, run_dir: &Path) {
    println!(
        "test accuracy {:.2}% ({}/{}), macro F1 {:.4} on {} texts; trained in {:.1}s; run folder {}",
        100.0 * report.test.accuracy,
        report.test.correct,
        report.test.total,
        report.test.macro_f1,
        report.test_size,
        report.train_seconds,
        run_dir.display()
    );
}

/// The one-line result of a run of any kind.
pub(crate) fn print_run_report(report: &kiln_train::RunReport, run_dir: &Path) {
    match report {
        kiln_train::RunReport::Classifier(r) => print_train_report(r),
        kiln_train::RunReport::LanguageModel(r) => print_lm_report(r),
        kiln_train::RunReport::TextClassifier(r) => print_text_report(r, run_dir),
        kiln_train::RunReport::Regression(r) => print_regression_report(r, run_dir),
        kiln_train::RunReport::MultiTask(r) => {
            for head in &r.heads {
                println!(
                    "head {}: test accuracy {:.2}% ({}/{}), macro F1 {:.4}",
                    head.name,
                    100.0 * head.test.accuracy,
                    head.test.correct,
                    head.test.total,
                    head.test.macro_f1
                );
            }
            println!(
                "trained in {:.1}s; run folder {}",
                r.train_seconds,
                run_dir.display()
            );
        }
        kiln_train::RunReport::LlmFinetune(r) => {
            print_llm_report(r);
            println!("run folder {}", run_dir.display());
        }
    }
}

/// What an LLM fine-tuning run measured.
pub(crate) fn print_llm_report(report: &kiln_train::llm::LlmReport) {
    use kiln_train::llm::LlmTest;
    if let Some(last) = report.epochs.last() {
        println!(
            "valid loss {:.4} (next-token accuracy {:.2}%) after {} epochs on {} items; {} trainable of {} parameters; trained in {:.1}s",
            last.valid_loss,
            100.0 * last.valid_accuracy,
            report.epochs.len(),
            report.train_size,
            report.trainable_params,
            report.base_params,
            report.train_seconds
        );
    }
    if let Some(base) = report.base_valid_loss {
        println!("valid loss of the base model before fine-tuning: {base:.4}");
    }
    match &report.test {
        Some(LlmTest::Choices { n, base, tuned, .. }) => {
            if let Some(b) = base {
                println!(
                    "test accuracy before fine-tuning (zero-shot): {:.2}% ± {:.2} ({}/{n})",
                    100.0 * b.accuracy,
                    100.0 * b.standard_error,
                    b.correct
                );
            }
            println!(
                "test accuracy after: {:.2}% ± {:.2} ({}/{n})",
                100.0 * tuned.accuracy,
                100.0 * tuned.standard_error,
                tuned.correct
            );
        }
        Some(LlmTest::Text {
            tokens,
            chars,
            base,
            tuned,
        }) => {
            if let Some(b) = base {
                println!(
                    "held-out text before fine-tuning: perplexity {:.3} per token, {:.4} bits per character",
                    b.perplexity, b.bits_per_char
                );
            }
            println!(
                "held-out text after: perplexity {:.3} per token, {:.4} bits per character ({tokens} tokens, {chars} characters)",
                tuned.perplexity, tuned.bits_per_char
            );
        }
        None => {}
    }
}

pub(crate) fn print_regression_report(
    report: &kiln_train::regression::RegressionReport,
    run_dir: &Path,
) {
    println!(
        "test R² {:.4}, RMSE {:.4}, MAE {:.4} on {} rows (predicting the training mean: RMSE {:.4}, MAE {:.4}); run folder {}",
        report.test.r2,
        report.test.rmse,
        report.test.mae,
        report.test.rows,
        report.baseline.rmse,
        report.baseline.mae,
        run_dir.display()
    );
}
