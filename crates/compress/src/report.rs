//! The compression table: one row per run folder (dense, pruned, quantized, distilled), with
//! what a user weighs: file size, parameters, sparsity, test accuracy, inference speed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One run folder, measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Model name in the run's config.
    pub model: String,
    /// Dataset.
    pub dataset: String,
    /// `dense`, `magnitude (global)`, `structured`, `int8 per-tensor`, `distilled (T=4, α=0.9)`...
    pub method: String,
    /// Size of `model.bpk` in bytes.
    pub bytes: u64,
    /// Parameters.
    pub params: usize,
    /// Non-zero parameters.
    pub nonzero: usize,
    /// Fraction of the prunable weights that are zero.
    pub sparsity: f64,
    /// Test accuracy (re-evaluated from the folder).
    pub accuracy: f64,
    /// Inference samples/s (batch 256, median of 10, measured now).
    pub samples_per_sec: f64,
}

/// How a run folder was made, from its `quantize.json` / `prune.json` (absent: not that
/// method; present but unreadable: an error naming the file, never a wrong label).
fn method(dir: &Path, config: &kiln_train::TrainConfig) -> Result<String> {
    fn read<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> Result<Option<T>> {
        let path = dir.join(name);
        if !path.exists() {
            return Ok(None);
        }
        let bad = |reason: String| Error::BadReport {
            path: path.clone(),
            reason,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| bad(e.to_string()))
    }
    if let Some(q) = read::<crate::QuantizeReport>(dir, "quantize.json")? {
        let granularity = match q.config.granularity {
            crate::Granularity::PerTensor => "per-tensor",
            crate::Granularity::PerChannel => "per-channel",
        };
        return Ok(format!("int{} {granularity}", q.config.bits));
    }
    if let Some(p) = read::<crate::PruneReport>(dir, "prune.json")? {
        let c = &p.config;
        let method = match c.method {
            crate::Method::Magnitude => "magnitude",
            crate::Method::Structured => "structured",
            crate::Method::StructuredL2 => "structured-l2",
        };
        let scope = match (c.method, c.scope) {
            (crate::Method::Magnitude, crate::Scope::Layer) => ", layer",
            (crate::Method::Magnitude, crate::Scope::Global) => ", global",
            _ => "",
        };
        return Ok(format!(
            "{method} {:.0}%{scope}, {}x{} ft",
            100.0 * c.sparsity,
            c.iterations,
            c.finetune_epochs
        ));
    }
    if let Some(d) = &config.distill {
        return Ok(format!("distilled (T={}, α={})", d.temperature, d.alpha));
    }
    Ok("dense".into())
}

/// Measures every run folder of `dirs` (test accuracy re-evaluated, speed measured now, one
/// after the other on this machine).
pub fn compress_table(dirs: &[PathBuf], data_dir: Option<&Path>) -> Result<Vec<Row>> {
    let mut rows = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let spec = kiln_train::TrainConfig::load(&dir.join("config.toml"))?;
        let device = spec.recipe.device.device();
        let (config, normalizer, model) = kiln_train::load_run(dir, &device)?;
        let sparsity = crate::sparsity_report(&model)?;
        let accuracy = kiln_train::evaluate_run_in(dir, data_dir)?.accuracy;
        let input = kiln_train::run_input_shape(&config, &normalizer)?;
        rows.push(Row {
            run_dir: dir.clone(),
            model: config.name.clone(),
            dataset: config.dataset.clone(),
            method: method(dir, &config)?,
            bytes: std::fs::metadata(dir.join("model.bpk"))
                .map_err(|e| Error::Write {
                    path: dir.join("model.bpk"),
                    reason: e.to_string(),
                })?
                .len(),
            params: sparsity.total_params,
            nonzero: sparsity.remaining_params(),
            sparsity: sparsity.sparsity(),
            accuracy,
            samples_per_sec: crate::speed::inference_throughput(&model, input, &device),
        });
    }
    Ok(rows)
}

/// The rows as a Markdown table.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| run | model | dataset | method | model.bpk bytes | params | non-zero | sparsity | test accuracy | infer samples/s |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.1}% | {:.2}% | {:.0} |\n",
            r.run_dir.file_name().map_or_else(
                || r.run_dir.display().to_string(),
                |n| n.to_string_lossy().into_owned()
            ),
            r.model,
            r.dataset,
            r.method,
            r.bytes,
            r.params,
            r.nonzero,
            100.0 * r.sparsity,
            100.0 * r.accuracy,
            r.samples_per_sec
        ));
    }
    out
}
