//! Pretrained weights into Kiln modules, through burn-store, checked key by key.
//!
//! A checkpoint is read with burn-store's `SafetensorsStore` or `PytorchStore` (tensors only:
//! the PyTorch reader unpickles tensor records and never executes code), its keys renamed by a
//! [`KeyMap`] (regex → replacement, like burn-store's `KeyRemapper`), and every tensor converted
//! from PyTorch's layout by burn-store's `PyTorchToBurnAdapter` (Linear weights transposed from
//! `[d_out, d_in]` to burn's `[d_in, d_out]`; norm `weight`/`bias` → `gamma`/`beta`). The
//! result is a [`LoadReport`] of applied / missing / unused / mismatched keys; a mismatched
//! shape is always an error, a missing key is one unless the caller allows partial loading
//! (e.g. a new head).

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{ApplyError, ApplyResult, KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter};
use burn::store::{PytorchStore, SafetensorsStore};
use serde::Serialize;

use crate::{Error, Result};

/// Checkpoint formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Format {
    /// Hugging Face safetensors.
    Safetensors,
    /// PyTorch `torch.save` zip archive (`.pt`, `.pth`, `.bin`).
    Pytorch,
}

impl Format {
    /// The format a file's extension names.
    pub fn of(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("safetensors") => Ok(Format::Safetensors),
            Some("pt" | "pth" | "bin") => Ok(Format::Pytorch),
            _ => Err(Error::UnknownFormat {
                path: path.to_path_buf(),
            }),
        }
    }
}

/// Key renaming rules, applied in order to every checkpoint key: `(regex, replacement)` with
/// `$1`-style groups.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyMap {
    /// The rules.
    pub rules: Vec<(String, String)>,
}

impl KeyMap {
    /// No renaming.
    pub fn identity() -> Self {
        Self::default()
    }

    /// Rules from `(checkpoint pattern, Kiln path)` pairs where `{N}` stands for a layer index
    /// (the form of [`kiln_models::bert::HF_KEY_MAP`]); `prefix` is an optional leading
    /// component of checkpoint keys (e.g. `bert.`).
    pub fn from_templates(pairs: &[(&str, &str)], optional_prefix: Option<&str>) -> Self {
        let prefix = optional_prefix.map_or(String::new(), |p| format!("(?:{})?", escape(p)));
        let rules = pairs
            .iter()
            .map(|(from, to)| {
                let pattern = format!("^{prefix}{}$", escape(from).replace(r"\{N\}", r"(\d+)"));
                (pattern, to.replace("{N}", "${1}"))
            })
            .collect();
        Self { rules }
    }

    /// The inverse of [`KeyMap::from_templates`], for exporting: Kiln paths → checkpoint names
    /// (`gamma`/`beta` accepted for `weight`/`bias`, since burn-store renames norm parameters
    /// to PyTorch's names before renaming keys).
    pub fn export_templates(pairs: &[(&str, &str)]) -> Self {
        let rules = pairs
            .iter()
            .map(|(theirs, ours)| {
                let mut pattern = escape(ours).replace(r"\{N\}", r"(\d+)");
                for (burn, torch) in [("gamma", "weight"), ("beta", "bias")] {
                    if let Some(stem) = pattern.strip_suffix(burn) {
                        pattern = format!("{stem}(?:{burn}|{torch})");
                    }
                }
                (format!("^{pattern}$"), theirs.replace("{N}", "${1}"))
            })
            .collect();
        Self { rules }
    }

    fn remapper(&self) -> Result<KeyRemapper> {
        KeyRemapper::from_patterns(self.rules.clone())
            .map_err(|e| Error::Invalid(format!("invalid key map pattern: {e}")))
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A tensor whose shape does not fit its parameter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// The model parameter path.
    pub key: String,
    /// The parameter's shape.
    pub expected: Vec<usize>,
    /// The checkpoint's, in burn's layout.
    pub found: Vec<usize>,
}

/// What loading a checkpoint did, key by key (model parameter paths).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LoadReport {
    /// The checkpoint.
    pub file: PathBuf,
    /// Its format.
    pub format: Format,
    /// Parameters set from the checkpoint.
    pub applied: Vec<String>,
    /// Parameters the checkpoint did not provide (kept at their initial values).
    pub missing: Vec<String>,
    /// Checkpoint tensors (after renaming) that match no parameter.
    pub unused: Vec<String>,
    /// Tensors of the wrong shape (not applied).
    pub mismatched: Vec<Mismatch>,
    /// Other per-tensor errors (not applied).
    pub errors: Vec<String>,
}

impl LoadReport {
    fn from_apply(file: &Path, format: Format, result: ApplyResult) -> Self {
        let mut mismatched = Vec::new();
        let mut errors = Vec::new();
        for e in result.errors {
            match e {
                ApplyError::ShapeMismatch {
                    path,
                    expected,
                    found,
                } => mismatched.push(Mismatch {
                    key: path,
                    expected: expected.to_vec(),
                    found: found.to_vec(),
                }),
                other => errors.push(other.to_string()),
            }
        }
        Self {
            file: file.to_path_buf(),
            format,
            applied: result.applied,
            missing: result.missing.into_iter().map(|(path, _)| path).collect(),
            unused: result.unused,
            mismatched,
            errors,
        }
    }

    /// One line: counts of each kind.
    pub fn summary(&self) -> String {
        format!(
            "{}: {} applied, {} missing, {} unused, {} mismatched",
            self.file.display(),
            self.applied.len(),
            self.missing.len(),
            self.unused.len(),
            self.mismatched.len() + self.errors.len()
        )
    }
}

/// Loads the checkpoint at `path` into `model` (renaming keys with `keys`). Errors on a
/// corrupt file, any shape mismatch, and — unless `allow_partial` — any parameter the file
/// lacks.
pub fn load_weights<M: Module>(
    model: M,
    path: &Path,
    keys: &KeyMap,
    allow_partial: bool,
) -> Result<(M, LoadReport)> {
    let format = Format::of(path)?;
    if !path.is_file() {
        return Err(Error::Io {
            path: path.to_path_buf(),
            reason: "no such file".into(),
        });
    }
    let remapper = keys.remapper()?;
    let mut model = model;
    let result = match format {
        Format::Safetensors => {
            let mut store = SafetensorsStore::from_file(path)
                .remap(remapper)
                .with_from_adapter(PyTorchToBurnAdapter)
                .validate(false)
                .allow_partial(true);
            model.load_from(&mut store).map_err(|e| Error::Corrupt {
                path: path.to_path_buf(),
                format: "safetensors",
                reason: e.to_string(),
            })?
        }
        Format::Pytorch => {
            let mut store = PytorchStore::from_file(path)
                .remap(remapper)
                .validate(false)
                .allow_partial(true);
            model.load_from(&mut store).map_err(|e| Error::Corrupt {
                path: path.to_path_buf(),
                format: "PyTorch",
                reason: e.to_string(),
            })?
        }
    };
    let report = LoadReport::from_apply(path, format, result);
    check(&report, allow_partial)?;
    Ok((model, report))
}

/// Saves `model` as a safetensors file in PyTorch's layout (Linear weights transposed back,
/// norm `gamma`/`beta` → `weight`/`bias`) with its keys renamed by `keys` (e.g.
/// [`KeyMap::export_templates`]), written to a temporary file and renamed into place. Returns
/// the saved tensor names.
pub fn save_weights<M: Module>(model: &M, path: &Path, keys: &KeyMap) -> Result<Vec<String>> {
    let io = |e: &dyn std::fmt::Display| Error::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(|e| io(&e))?;
    }
    let tmp = path.with_extension("safetensors.tmp");
    let mut store = SafetensorsStore::from_file(&tmp)
        .with_to_adapter(burn::store::BurnToPyTorchAdapter)
        .remap(keys.remapper()?)
        .overwrite(true);
    model.save_into(&mut store).map_err(|e| io(&e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(&e))?;
    let bytes = std::fs::read(path).map_err(|e| io(&e))?;
    let header_len = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
        .ok_or_else(|| io(&"file too short"))?;
    let header: serde_json::Value = bytes
        .get(8..8 + header_len)
        .and_then(|h| serde_json::from_slice(h).ok())
        .ok_or_else(|| io(&"unreadable safetensors header"))?;
    let mut names: Vec<String> = header
        .as_object()
        .map(|o| o.keys().filter(|k| *k != "__metadata__").cloned().collect())
        .unwrap_or_default();
    names.sort();
    Ok(names)
}

fn check(report: &LoadReport, allow_partial: bool) -> Result<()> {
    if let Some(first) = report.mismatched.first() {
        return Err(Error::ShapeMismatch {
            path: report.file.clone(),
            key: first.key.clone(),
            expected: first.expected.clone(),
            found: first.found.clone(),
            others: report.mismatched.len() - 1,
        });
    }
    if let Some(first) = report.errors.first() {
        return Err(Error::Corrupt {
            path: report.file.clone(),
            format: match report.format {
                Format::Safetensors => "safetensors",
                Format::Pytorch => "PyTorch",
            },
            reason: first.clone(),
        });
    }
    if !allow_partial && !report.missing.is_empty() {
        return Err(Error::MissingKeys {
            path: report.file.clone(),
            keys: report.missing.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_become_anchored_regexes() {
        let map = KeyMap::from_templates(
            &[(
                "encoder.layer.{N}.output.dense.weight",
                "layers.{N}.out.weight",
            )],
            Some("bert."),
        );
        assert_eq!(
            map.rules[0],
            (
                r"^(?:bert\.)?encoder\.layer\.(\d+)\.output\.dense\.weight$".to_string(),
                "layers.${1}.out.weight".to_string()
            )
        );
        map.remapper().unwrap();
    }

    #[test]
    fn formats_come_from_the_extension() {
        assert_eq!(
            Format::of(Path::new("a.safetensors")).unwrap(),
            Format::Safetensors
        );
        assert_eq!(Format::of(Path::new("a.pth")).unwrap(), Format::Pytorch);
        let err = Format::of(Path::new("weights.h5")).unwrap_err();
        assert!(err.to_string().contains("weights.h5"), "{err}");
    }
}
