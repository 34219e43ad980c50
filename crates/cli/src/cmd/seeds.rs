//! `kiln seeds`: Run a `kiln train`, `finetune`, `distill` or `regress` command once per seed and

use clap::Parser;

use super::prelude::*;

/// The arguments of `kiln seeds`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Seeds: a list (1,2,3), a range (1-5) or both.
    seeds: String,
    /// Folder of the per-seed runs and the summary.
    #[arg(long)]
    out: PathBuf,
    /// The command to repeat, after `--`, without --seed and --out (kiln sets them).
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let Args {
        seeds,
        out,
        command,
    } = args;
    let sub = command.first().map(String::as_str).unwrap_or_default();
    anyhow::ensure!(
        matches!(sub, "train" | "finetune" | "distill" | "regress"),
        "kiln seeds repeats train, finetune, distill or regress, not `{sub}`"
    );
    if let Some(flag) = command.iter().find(|a| {
        ["--seed", "--out", "--resume"]
            .iter()
            .any(|f| *a == f || a.starts_with(&format!("{f}=")))
    }) {
        bail!("kiln seeds sets --seed and --out for each seed itself; drop `{flag}`");
    }
    let seeds = kiln_train::seeds::parse_seeds(&seeds)?;
    let argv = |seed: u64, run_dir: &Path| {
        let mut argv = vec!["kiln".to_string()];
        argv.extend(command.iter().cloned());
        argv.extend([
            "--seed".into(),
            seed.to_string(),
            "--out".into(),
            run_dir.display().to_string(),
            "--quiet".into(),
        ]);
        argv
    };
    // A typo fails now, not after the first seed's run.
    crate::Cli::try_parse_from(argv(0, Path::new("run")))?;
    let recipe = format!("kiln {}", command.join(" "));
    let report = kiln_train::seeds::SeedSweep::new(&recipe, seeds, &out).run(
        |seed, dir| -> Result<kiln_train::seeds::Metrics> {
            let run_dir = dir.join("run");
            println!("seed {seed}: {}", run_dir.display());
            crate::run(crate::Cli::try_parse_from(argv(seed, &run_dir))?)?;
            Ok(kiln_train::seeds::test_metrics(&run_dir)?)
        },
    )?;
    println!("{}", report.markdown());
    println!("wrote {}", out.join("summary.md").display());
    Ok(())
}
