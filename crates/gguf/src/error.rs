//! The error type of kiln-gguf.

use std::path::PathBuf;

/// What can go wrong reading a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be read.
    #[error("cannot read {path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file does not parse, or lacks what was asked of it.
    #[error("{path}: invalid GGUF at byte {offset}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The byte offset of the problem (0 when it is about the whole file).
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;
