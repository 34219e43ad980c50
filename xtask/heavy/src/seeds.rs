//! `cargo xtask seeds RECIPE --seeds 1-3`: one of kiln-repro's recipes over several seeds.

use std::path::PathBuf;

use anyhow::Context;

use crate::flags::SeedsArgs;

pub fn run(args: SeedsArgs) -> anyhow::Result<()> {
    if args.recipe == "list" {
        for r in kiln_repro::RECIPES {
            println!(
                "{:<18} about {:>4.1} min a seed on 2 cores: {}",
                r.name, r.minutes_per_seed, r.about
            );
        }
        return Ok(());
    }
    let recipe = kiln_repro::recipe(&args.recipe)?;
    let seeds = kiln_train::seeds::parse_seeds(&args.seeds)?;
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from("runs/seeds").join(recipe.name));
    eprintln!(
        "{} over seeds {:?} -> {} (about {:.0} minutes on 2 cores)",
        recipe.name,
        seeds,
        out.display(),
        recipe.minutes_per_seed * seeds.len() as f64
    );
    let options = kiln_repro::Options {
        tiny: args.tiny,
        data_dir: args.data_dir,
        verbose: args.verbose,
    };
    let report = kiln_repro::run(recipe.name, seeds, &out, &options)
        .with_context(|| format!("recipe {}", recipe.name))?;
    print!("{}", report.markdown());
    eprintln!("wrote {}/summary.md and summary.json", out.display());
    Ok(())
}
