use std::path::PathBuf;

/// Errors raised by kiln-data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A gzip stream that does not decode.
    #[error("{path} is not a valid gzip file: {source}")]
    Gzip {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: std::io::Error,
    },
    /// A record (line) that does not have the expected content.
    #[error("{path}, line {line}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong and what was expected.
        reason: String,
    },
    /// A dataset name Kiln does not know.
    #[error("unknown dataset `{name}`; available datasets: {available}")]
    UnknownDataset {
        /// The name asked for.
        name: String,
        /// Comma-separated list of known datasets.
        available: String,
    },
    /// A dataset whose files are not in the data directory.
    #[error(
        "dataset `{dataset}` not found: put {files:?} in {dir} (or point --data-dir / KILN_DATA_DIR at the data folder that has them)"
    )]
    Missing {
        /// Dataset name.
        dataset: String,
        /// Where the files were looked for.
        dir: PathBuf,
        /// The files expected there.
        files: Vec<String>,
    },
    /// An image file that does not decode.
    #[error("cannot decode image {path}: {reason}")]
    Image {
        /// The file.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },
    /// A file whose content does not have the published digest.
    #[error(
        "{path} has content SHA-256 {found}, expected {expected}: the file is corrupt or not the published one"
    )]
    Checksum {
        /// The file.
        path: PathBuf,
        /// Published digest.
        expected: String,
        /// Digest found.
        found: String,
    },
    /// A dataset that is not in the data directory and could not be downloaded.
    #[error(
        "dataset `{dataset}` is not in {dir} and downloading it failed ({reason}); if this machine is offline, put {files:?} in {dir}"
    )]
    Download {
        /// Dataset name.
        dataset: String,
        /// Where the files belong.
        dir: PathBuf,
        /// The files missing there.
        files: Vec<String>,
        /// What each mirror answered.
        reason: String,
    },
    /// Arguments that cannot work (empty set, bad fraction...).
    #[error("invalid argument: {0}")]
    Invalid(String),
}

/// Result alias for kiln-data.
pub type Result<T, E = Error> = std::result::Result<T, E>;
