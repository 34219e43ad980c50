//! `cargo xtask`: project automation. It depends on no Kiln crate and not on burn, so `cargo
//! xtask ci` runs the format check and clippy before anything heavy is compiled. The commands
//! that build and call the libraries (`train`, `bench`, `compress-report`, `seeds`) are
//! `xtask-heavy`'s; this binary forwards them (`cargo run -p xtask-heavy -- ...`).

mod ci;

use std::process::{Command, ExitCode};

const USAGE: &str = "\
cargo xtask: Kiln's project automation

  cargo xtask ci [--tests-only]     what CI runs: fmt check, clippy with warnings denied, the tests
  cargo xtask train PRESET [..]     train a zoo preset with its default recipe
  cargo xtask bench [models|data|llm|serve|lora] [..]
                                    benchmarks (optionally --vs-torch PYTHON)
  cargo xtask compress-report RUN.. the compression table of run folders
  cargo xtask seeds RECIPE --seeds 1-3
                                    one of the README's comparisons over several seeds

`cargo xtask COMMAND --help` shows a command's options.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        None | Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some("ci") => ci::run(&args[1..]),
        Some("train" | "bench" | "compress-report" | "seeds") => forward(&args),
        Some(other) => Err(anyhow::anyhow!(
            "unknown command `{other}`; `cargo xtask --help` lists them"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a heavy command in `xtask-heavy`, passing its exit status on.
fn forward(args: &[String]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["run", "--quiet", "--package", "xtask-heavy", "--"])
        .args(args)
        .status()?;
    if !status.success() {
        anyhow::bail!("`xtask-heavy {}` failed ({status})", args.join(" "));
    }
    Ok(())
}
