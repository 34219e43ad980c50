//! `cargo xtask compress-report RUN...`: measures run folders with kiln-compress's table and
//! writes it as Markdown and JSON.

use std::path::PathBuf;

use anyhow::Context;

use crate::flags::CompressReportArgs;

pub fn run(args: CompressReportArgs) -> anyhow::Result<()> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for path in &args.runs {
        if path.join("config.toml").is_file() {
            dirs.push(path.clone());
            continue;
        }
        let mut inner: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("config.toml").is_file() && p.join("model.bpk").is_file())
            .collect();
        anyhow::ensure!(
            !inner.is_empty(),
            "{} is neither a run folder nor a folder of run folders",
            path.display()
        );
        inner.sort();
        dirs.extend(inner);
    }
    let rows = kiln_compress::report::compress_table(&dirs, args.data_dir.as_deref())?;
    let table = kiln_compress::report::markdown(&rows);
    print!("{table}");
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, &table).with_context(|| format!("writing {}", args.out.display()))?;
    let json = args.out.with_extension("json");
    std::fs::write(&json, serde_json::to_string_pretty(&rows)?)?;
    eprintln!("wrote {} and {}", args.out.display(), json.display());
    Ok(())
}
