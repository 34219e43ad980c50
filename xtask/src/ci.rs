//! `cargo xtask ci`: the same checks as `.ci/run`.

use std::process::Command;

use anyhow::bail;

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("$ cargo {}", args.join(" "));
    let status = Command::new(cargo).args(args).status()?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// `ci [--tests-only]`.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let tests_only = match args {
        [] => false,
        [flag] if flag == "--tests-only" => true,
        _ => bail!(
            "cargo xtask ci takes only --tests-only, got `{}`",
            args.join(" ")
        ),
    };
    if !tests_only {
        cargo(&["fmt", "--all", "--", "--check"])?;
        cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])?;
    }
    cargo(&["test", "--workspace"])
}
