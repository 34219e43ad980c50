//! The files of a run folder: their names, atomic writes, the per-epoch metrics table, and
//! weights read whole. A leaf module: every kind of run and the training loop use it, it uses
//! none of them.

use std::path::{Path, PathBuf};

use burn::module::Module;
use serde::{Deserialize, Serialize};

use crate::error::io;
use crate::{Error, Result};

/// Names of the three records of a checkpoint (`<name>-<epoch>.bpk`).
pub(crate) const RECORDS: [&str; 3] = ["model", "optim", "scheduler"];

/// The checkpoint folder of a run.
pub(crate) fn checkpoint_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoint")
}

/// The file of one record of one epoch.
pub(crate) fn checkpoint_file(run_dir: &Path, record: &str, epoch: usize) -> PathBuf {
    checkpoint_dir(run_dir).join(format!("{record}-{epoch}.bpk"))
}

/// Epochs with all three records present, ascending.
pub(crate) fn complete_checkpoints(run_dir: &Path) -> Vec<usize> {
    let Ok(entries) = std::fs::read_dir(checkpoint_dir(run_dir)) else {
        return Vec::new();
    };
    let mut epochs: Vec<usize> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("model-")?
                .strip_suffix(".bpk")?
                .parse()
                .ok()
        })
        .filter(|&epoch| {
            RECORDS
                .iter()
                .all(|r| checkpoint_file(run_dir, r, epoch).is_file())
        })
        .collect();
    epochs.sort_unstable();
    epochs
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent()
        && let Ok(dir) = std::fs::File::open(dir)
    {
        // Persist the rename itself; not every platform can sync a directory.
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Saves a trained module as `path` (burnpack), naming the file on failure.
pub fn save_module<M: Module>(module: M, path: &Path) -> Result<()> {
    module.save_file(path).map_err(|e| Error::Weights {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Paths of the files in a run folder.
pub(crate) struct RunFiles {
    pub config: PathBuf,
    pub model: PathBuf,
    pub normalizer: PathBuf,
    pub metrics: PathBuf,
    pub report: PathBuf,
}

impl RunFiles {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            config: dir.join("config.toml"),
            model: dir.join("model.bpk"),
            normalizer: dir.join("normalizer.json"),
            metrics: dir.join("metrics.csv"),
            report: dir.join("report.json"),
        }
    }
}

/// Loads burnpack weights into `model`, reading the whole file first. (burn's file loader
/// maps tensors lazily onto the file and reads each on first use: a model whose file is then
/// replaced or deleted would read the wrong bytes or fail later, far from the cause.)
pub(crate) fn load_weights_eagerly<M: Module>(model: M, path: &Path) -> Result<M> {
    model
        .try_load_record(read_record(path)?)
        .map_err(|e| Error::Weights {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

/// A burnpack record read whole from `path` (see [`load_weights_eagerly`]).
pub(crate) fn read_record(path: &Path) -> Result<burn::store::ModuleRecord> {
    let weights_error = |reason: String| Error::Weights {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| weights_error(e.to_string()))?;
    burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| weights_error(e.to_string()))
}

const METRICS_HEADER: &str = "epoch,lr,train_loss,train_accuracy,valid_loss,valid_accuracy,seconds";

/// Writes the per-epoch metrics (atomically: a reader never sees half a file).
pub(crate) fn write_metrics_csv(path: &Path, epochs: &[EpochMetrics]) -> Result<()> {
    let mut text = format!("{METRICS_HEADER}\n");
    for m in epochs {
        text.push_str(&format!(
            "{},{},{},{},{},{},{:.3}\n",
            m.epoch,
            m.lr,
            m.train_loss,
            m.train_accuracy,
            m.valid_loss,
            m.valid_accuracy,
            m.seconds
        ));
    }
    crate::files::write_atomic(path, text.as_bytes()).map_err(io(path))
}

/// Reads a `metrics.csv` written by [`write_metrics_csv`] (values round-trip exactly).
pub(crate) fn read_metrics_csv(path: &Path) -> Result<Vec<EpochMetrics>> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let bad = |line: usize, reason: String| Error::BadRunFile {
        path: path.to_path_buf(),
        reason: format!("line {line}: {reason}"),
    };
    let mut lines = text.lines();
    if lines.next() != Some(METRICS_HEADER) {
        return Err(bad(1, format!("expected the header `{METRICS_HEADER}`")));
    }
    lines
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let fields: Vec<&str> = line.split(',').collect();
            if fields.len() != 7 {
                return Err(bad(
                    i + 2,
                    format!("expected 7 fields, found {}", fields.len()),
                ));
            }
            let num = |k: usize| -> Result<f64> {
                fields[k]
                    .parse()
                    .map_err(|_| bad(i + 2, format!("`{}` is not a number", fields[k])))
            };
            Ok(EpochMetrics {
                epoch: fields[0]
                    .parse()
                    .map_err(|_| bad(i + 2, format!("`{}` is not an epoch", fields[0])))?,
                lr: num(1)?,
                train_loss: num(2)?,
                train_accuracy: num(3)?,
                valid_loss: num(4)?,
                valid_accuracy: num(5)?,
                seconds: num(6)?,
            })
        })
        .collect()
}

/// Removes the files of an earlier run in the same folder that a new run must not leave
/// behind (a stale `report.json` would claim the new run finished).
pub(crate) fn remove_stale(paths: &[&Path]) -> Result<()> {
    for path in paths {
        if path.exists() {
            std::fs::remove_file(path).map_err(io(path))?;
        }
    }
    Ok(())
}

/// Reads a run folder's `config.toml` as the config type of its kind of run.
pub(crate) fn read_run_config<T: serde::de::DeserializeOwned>(run_dir: &Path) -> Result<T> {
    read_toml(&run_dir.join("config.toml"))
}

/// Reads a TOML file as `T`, naming the file on failure.
pub(crate) fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    toml::from_str(&text).map_err(|e| Error::BadRunFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Reads a JSON file as `T`, naming the file on failure.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(|e| Error::BadRunFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Writes `value` as TOML, atomically.
pub(crate) fn write_toml<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = toml::to_string(value).expect("Kiln's run configs always serialise to TOML");
    write_atomic(path, text.as_bytes()).map_err(io(path))
}

/// Writes `value` as pretty JSON, atomically (a crash leaves the old file or the new one,
/// never half a report).
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_string_pretty(value).expect("Kiln's run files always serialise");
    crate::files::write_atomic(path, json.as_bytes()).map_err(io(path))
}

/// Metrics of one epoch (accuracies as fractions in 0..=1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Training accuracy (NaN for tasks without one, e.g. regression: `null` in JSON).
    #[serde(deserialize_with = "nan_if_null")]
    pub train_accuracy: f64,
    /// Mean validation loss.
    pub valid_loss: f64,
    /// Validation accuracy (NaN for tasks without one).
    #[serde(deserialize_with = "nan_if_null")]
    pub valid_accuracy: f64,
    /// Wall-clock seconds of the epoch (train and validation).
    pub seconds: f64,
    /// Learning rate of the epoch (the base group's).
    #[serde(default)]
    pub lr: f64,
}

/// serde_json writes a NaN as `null`; read it back as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(<Option<f64> as serde::Deserialize>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// A dataset named on a command line, as a run's config records it: a file given by path is
/// made absolute (so `kiln eval` and `--resume` find it from anywhere), a name stays a name.
pub fn dataset_reference(dataset: &str) -> Result<String> {
    if Path::new(dataset).is_file() {
        let absolute = std::path::absolute(dataset).map_err(io(dataset))?;
        return Ok(absolute.to_string_lossy().into_owned());
    }
    Ok(dataset.to_string())
}
