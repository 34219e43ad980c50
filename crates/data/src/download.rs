//! Downloading datasets that are not in the data directory, with checksum verification.
//!
//! Each [`RemoteDataset`] lists its files, the mirrors to try in order, and the SHA-256 of
//! each file's **decoded** bytes (after gunzip): mirrors and distributions recompress the
//! `.gz` files (Debian's Fashion-MNIST does), so the digest of the content is the one that
//! identifies the data. A download is written to a temporary file and renamed into place only
//! once its digest matches; a mismatch or a network failure leaves nothing behind and ends in
//! an error that says which files to put where.
//!
//! Set `KILN_OFFLINE=1` (or use [`Policy::Never`]) to never touch the network.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Environment variable that forbids downloads when set to anything but `0` or empty.
pub const OFFLINE_ENV: &str = "KILN_OFFLINE";

/// One file of a remote dataset.
#[derive(Clone, Copy, Debug)]
pub struct RemoteFile {
    /// File name (also the last part of its URL).
    pub name: &'static str,
    /// SHA-256 of the decoded (gunzipped) content, lower-case hex.
    pub sha256: &'static str,
}

/// A dataset that can be downloaded.
#[derive(Clone, Copy, Debug)]
pub struct RemoteDataset {
    /// Dataset name (the sub-folder of the data directory).
    pub name: &'static str,
    /// Base URLs, tried in order (each ends with `/`).
    pub mirrors: &'static [&'static str],
    /// Its files.
    pub files: &'static [RemoteFile],
}

/// MNIST, from the mirror torchvision uses, then LeCun's original site.
pub const MNIST: RemoteDataset = RemoteDataset {
    name: "mnist",
    mirrors: &[
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ],
    files: &[
        RemoteFile {
            name: "train-images-idx3-ubyte.gz",
            sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        },
        RemoteFile {
            name: "train-labels-idx1-ubyte.gz",
            sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        },
        RemoteFile {
            name: "t10k-images-idx3-ubyte.gz",
            sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        },
        RemoteFile {
            name: "t10k-labels-idx1-ubyte.gz",
            sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
    ],
};

/// Fashion-MNIST, from Zalando's bucket.
pub const FASHION_MNIST: RemoteDataset = RemoteDataset {
    name: "fashion-mnist",
    mirrors: &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    files: &[
        RemoteFile {
            name: "train-images-idx3-ubyte.gz",
            sha256: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        },
        RemoteFile {
            name: "train-labels-idx1-ubyte.gz",
            sha256: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        },
        RemoteFile {
            name: "t10k-images-idx3-ubyte.gz",
            sha256: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        },
        RemoteFile {
            name: "t10k-labels-idx1-ubyte.gz",
            sha256: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
    ],
};

/// The remote dataset called `name`, if Kiln can download it.
pub fn remote(name: &str) -> Option<&'static RemoteDataset> {
    [&MNIST, &FASHION_MNIST]
        .into_iter()
        .find(|d| d.name == name)
}

/// Whether missing files may be downloaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Download missing files (unless `KILN_OFFLINE` is set).
    IfMissing,
    /// Never download; missing files are an error.
    Never,
}

impl Policy {
    /// `IfMissing` unless `KILN_OFFLINE` is set.
    pub fn from_env() -> Self {
        match std::env::var(OFFLINE_ENV) {
            Ok(v) if !v.is_empty() && v != "0" => Policy::Never,
            _ => Policy::IfMissing,
        }
    }
}

/// SHA-256 (hex) of `bytes` after gunzip when they are gzip, else of the bytes themselves.
pub fn content_sha256(bytes: &[u8]) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut decoder = GzDecoder::new(bytes);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = decoder.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    } else {
        hasher.update(bytes);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Checks every file of `dataset` in `dir` against its digest.
pub fn verify(dataset: &RemoteDataset, dir: &Path) -> Result<()> {
    for file in dataset.files {
        let path = dir.join(file.name);
        let bytes = std::fs::read(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let found = content_sha256(&bytes).map_err(|source| Error::Gzip {
            path: path.clone(),
            source,
        })?;
        if found != file.sha256 {
            return Err(Error::Checksum {
                path,
                expected: file.sha256.into(),
                found,
            });
        }
    }
    Ok(())
}

/// Makes sure `<data_dir>/<dataset>/` holds every file of `dataset`, downloading the missing
/// ones (verified, then renamed into place) when `policy` allows. Returns the folder.
pub fn ensure(dataset: &RemoteDataset, data_dir: &Path, policy: Policy) -> Result<PathBuf> {
    let dir = data_dir.join(dataset.name);
    let missing: Vec<&RemoteFile> = dataset
        .files
        .iter()
        .filter(|f| !dir.join(f.name).is_file())
        .collect();
    if missing.is_empty() {
        return Ok(dir);
    }
    let names = || missing.iter().map(|f| f.name.to_string()).collect();
    if policy == Policy::Never {
        return Err(Error::Missing {
            dataset: dataset.name.into(),
            dir,
            files: names(),
        });
    }
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    for file in &missing {
        let mut failures = Vec::new();
        let mut done = false;
        for mirror in dataset.mirrors {
            let url = format!("{mirror}{}", file.name);
            match fetch_verified(&url, file, &dir) {
                Ok(()) => {
                    done = true;
                    break;
                }
                Err(e) => failures.push(format!("{url}: {e}")),
            }
        }
        if !done {
            return Err(Error::Download {
                dataset: dataset.name.into(),
                dir,
                files: names(),
                reason: failures.join("; "),
            });
        }
    }
    Ok(dir)
}

/// Without the `download` feature: no network; the caller's error names the files to place.
#[cfg(not(feature = "download"))]
fn fetch_verified(url: &str, _file: &RemoteFile, _dir: &Path) -> std::result::Result<(), String> {
    Err(format!(
        "not fetched from {url}: this build of kiln-data has no network download (its `download` feature is off)"
    ))
}

/// Downloads `url`, checks its digest and renames it to `dir/<file>`.
#[cfg(feature = "download")]
fn fetch_verified(url: &str, file: &RemoteFile, dir: &Path) -> std::result::Result<(), String> {
    use std::io::Write;
    use std::time::Duration;
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(10))
        .timeout(Duration::from_secs(600))
        .build();
    let response = agent.get(url).call().map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    response
        .into_reader()
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading the response: {e}"))?;
    let found = content_sha256(&bytes).map_err(|e| format!("not a valid gzip file: {e}"))?;
    if found != file.sha256 {
        return Err(format!(
            "checksum mismatch: content SHA-256 {found}, expected {}",
            file.sha256
        ));
    }
    let target = dir.join(file.name);
    let temp = dir.join(format!(".{}.part", file.name));
    let write = || -> std::io::Result<()> {
        let mut out = std::fs::File::create(&temp)?;
        out.write_all(&bytes)?;
        out.sync_all()?;
        std::fs::rename(&temp, &target)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        format!("writing {}: {e}", target.display())
    })
}
