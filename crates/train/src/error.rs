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
        "training diverged: the {split} loss is {value} at epoch {epoch}{}; {}lower the learning rate",
        step.map(|s| format!(", step {s}")).unwrap_or_default(),
        checkpoint.as_ref().map(|c| format!("the last good checkpoint is kept ({}); ", c.display())).unwrap_or_default()
    )]
    Diverged {
        /// `train` or `valid`.
        split: String,
        /// 1-based epoch.
        epoch: usize,
        /// 1-based optimisation step within the epoch (training loss only).
        step: Option<usize>,
        /// The non-finite value.
        value: f64,
        /// The last complete checkpoint's model file, if any.
        checkpoint: Option<PathBuf>,
    },
    /// The run paused as asked ([`crate::TrainOptions::pause_after`]); it can be resumed.
    #[error("training paused after epoch {epoch}; continue with `kiln train --resume {}`", run_dir.display())]
    Paused {
        /// The last epoch done (its checkpoint is written).
        epoch: usize,
        /// The run folder.
        run_dir: PathBuf,
    },
    /// A plot could not be drawn or written.
    #[error("cannot draw a plot: {0}")]
    Plot(String),
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
    /// A pretrained-weights error (kiln-transfer).
    #[error(transparent)]
    Transfer(#[from] kiln_transfer::Error),
}

/// Result alias for kiln-train.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
