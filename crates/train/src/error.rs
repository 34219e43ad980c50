use std::path::PathBuf;

/// Errors raised by kiln-train.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A run-folder file could not be read or written.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A run-folder file with unexpected content.
    #[error("{path}: {reason}")]
    BadRunFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Weights that do not load into the configured model.
    #[error("cannot load weights {path}: {reason}")]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// burn's explanation (missing key, shape mismatch...).
        reason: String,
    },
    /// A hyper-parameter that cannot work.
    #[error("invalid training setting: {0}")]
    InvalidSetting(String),
    /// The loss became NaN or infinite.
    #[error(
        "training diverged: the {split} loss of epoch {epoch} is {value}; lower the learning rate"
    )]
    Diverged {
        /// `train` or `valid`.
        split: String,
        /// 1-based epoch.
        epoch: usize,
        /// The non-finite value.
        value: f64,
    },
    /// burn-train stopped with an error.
    #[error("training failed: {0}")]
    Training(String),
    /// From kiln-core.
    #[error(transparent)]
    Core(#[from] kiln_core::Error),
    /// From kiln-models.
    #[error(transparent)]
    Models(#[from] kiln_models::Error),
    /// From kiln-data.
    #[error(transparent)]
    Data(#[from] kiln_data::Error),
    /// An optimizer or schedule error.
    #[error(transparent)]
    Optim(#[from] kiln_optim::Error),
}

/// Result alias for kiln-train.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
