//! `kiln eval`: Reload a run folder and evaluate it on its dataset's test split (classifiers: accuracy

use super::prelude::*;

/// The arguments of `kiln eval`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Run folder written by `kiln train`.
    run_dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Where the datasets and models are.
    #[command(flatten)]
    data: DataDirArgs,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let Args {
        run_dir,
        format,
        data: DataDirArgs { data_dir },
    } = args;
    let data_dir = data_dir.as_deref();
    let report = match kiln_train::RunKind::of(&run_dir)? {
        kiln_train::RunKind::LanguageModel => {
            let t = kiln_train::lm::evaluate_lm_run(&run_dir, data_dir)?;
            match format {
                Format::Text => println!(
                    "test loss {:.4} nats/char ({:.3} bits/char, perplexity {:.2}), next-character accuracy {:.2}% on {} characters",
                    t.loss,
                    t.bits_per_token,
                    t.perplexity,
                    100.0 * t.accuracy,
                    t.tokens
                ),
                Format::Json => println!("{}", serde_json::to_string_pretty(&t)?),
            }
            return Ok(());
        }
        kiln_train::RunKind::TextClassifier => {
            kiln_train::text::evaluate_text_run(&run_dir, data_dir)?
        }
        kiln_train::RunKind::Classifier => kiln_train::evaluate_run_in(&run_dir, data_dir)?,
        kiln_train::RunKind::Regression => {
            let t = kiln_train::regression::evaluate_regression_run(&run_dir, data_dir)?;
            match format {
                Format::Text => println!(
                    "test R² {:.4}, RMSE {:.4}, MAE {:.4}, MSE {:.4} on {} rows",
                    t.r2, t.rmse, t.mae, t.mse, t.rows
                ),
                Format::Json => println!("{}", serde_json::to_string_pretty(&t)?),
            }
            return Ok(());
        }
        kiln_train::RunKind::LlmFinetune => {
            let t = kiln_train::llm::evaluate_llm_run(&run_dir, data_dir)?;
            match format {
                Format::Text => match &t {
                    Some(t) => println!("{}", serde_json::to_string_pretty(t)?),
                    None => println!(
                        "{} was fine-tuned on a user's file, which has no test split: its report.json has the validation loss",
                        run_dir.display()
                    ),
                },
                Format::Json => println!("{}", serde_json::to_string_pretty(&t)?),
            }
            return Ok(());
        }
        other => bail!(
            "{} holds a {other:?} run; its report.json has its held-out metrics",
            run_dir.display()
        ),
    };
    match format {
        Format::Text => {
            println!(
                "test accuracy {:.2}% ({}/{}), test loss {:.4}",
                100.0 * report.accuracy,
                report.correct,
                report.total,
                report.loss
            );
            println!(
                "top-5 accuracy {:.2}%, macro F1 {:.4}",
                100.0 * report.top5_accuracy,
                report.macro_f1
            );
            let width = report
                .per_class
                .iter()
                .map(|m| m.name.chars().count())
                .max()
                .unwrap_or(0)
                .max(5);
            println!("{:<width$}  support  precision  recall      f1", "class");
            for m in &report.per_class {
                let name = if m.name.is_empty() {
                    m.class.to_string()
                } else {
                    m.name.clone()
                };
                println!(
                    "{name:<width$}  {:>7}  {:>9.4}  {:>6.4}  {:>6.4}",
                    m.support, m.precision, m.recall, m.f1
                );
            }
        }
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(())
}
