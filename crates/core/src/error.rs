use std::path::PathBuf;

/// Errors raised by kiln-core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A device string that this build does not know or was not compiled with.
    #[error("unknown device `{name}`: {reason}; available devices in this build: {available}")]
    UnknownDevice {
        /// The string the user gave.
        name: String,
        /// Why it was rejected.
        reason: String,
        /// Comma-separated list of devices this build accepts.
        available: String,
    },
    /// A shape that does not fit what a layer or model expects.
    #[error("shape mismatch in {context}: expected {expected}, found {found:?}")]
    Shape {
        /// Where the shape was checked (layer path or input name).
        context: String,
        /// What was expected, in words.
        expected: String,
        /// The shape that was found.
        found: Vec<usize>,
    },
    /// A file could not be read or written.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// JSON (de)serialisation failed.
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
}

/// Result alias for kiln-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;
