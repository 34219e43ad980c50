//! The error type of kiln-compress.

/// Everything that can go wrong compressing a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting outside its range (sparsity, iterations...).
    #[error("invalid compression setting: {0}")]
    Invalid(String),
    /// A layer path that names no prunable layer of the model.
    #[error("no prunable layer `{path}`; the model's prunable layers are: {available}")]
    UnknownLayer {
        /// The path asked for.
        path: String,
        /// The model's prunable layers.
        available: String,
    },
    /// A tensor that could not be read back from the device.
    #[error("reading `{path}`: {reason}")]
    Read {
        /// The parameter.
        path: String,
        /// Why.
        reason: String,
    },
    /// A weight with NaN or infinite values, which has no quantization range.
    #[error(
        "`{path}` has {count} non-finite values (NaN or infinite) among {total}; it cannot be quantized"
    )]
    NotFinite {
        /// The parameter.
        path: String,
        /// How many of its values are NaN or infinite.
        count: usize,
        /// How many values it has.
        total: usize,
    },
    /// From kiln-train (run folders, fine-tuning, evaluation).
    #[error(transparent)]
    Train(#[from] kiln_train::Error),
    /// From the zoo.
    #[error(transparent)]
    Model(#[from] kiln_models::Error),
    /// A compression report of a run folder (`prune.json`, `quantize.json`) that exists but
    /// cannot be read.
    #[error("cannot read {path}: {reason}")]
    BadReport {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// A report that could not be written.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;
