//! The error type of kiln-transfer.

use std::path::PathBuf;

/// Everything that can go wrong loading, checking or using pretrained weights.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file is missing or unreadable.
    #[error("cannot read {path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A weights file that does not parse (truncated, corrupt, not that format).
    #[error("{path} is not a valid {format} file: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// `safetensors` or `PyTorch`.
        format: &'static str,
        /// The parser's message.
        reason: String,
    },
    /// The file's extension names no supported format.
    #[error("{path}: unknown weights format (expected .safetensors, .pt, .pth or .bin)")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// Parameters of the model the file does not provide.
    #[error(
        "{path} lacks {count} parameter(s) the model needs, e.g. {first}{hint} (wrong architecture? pass allow_partial to keep their initial values)",
        count = keys.len(),
        first = keys.first().map_or("", String::as_str),
        hint = if keys.len() > 1 { format!(", {}", keys[1..keys.len().min(4)].join(", ")) } else { String::new() }
    )]
    MissingKeys {
        /// The file.
        path: PathBuf,
        /// Model parameter paths with no tensor in the file.
        keys: Vec<String>,
    },
    /// A tensor whose shape differs from the parameter's.
    #[error("{path}: tensor for `{key}` has shape {found:?}, the model expects {expected:?}{more}",
        more = if *others > 0 { format!(" ({others} more mismatched)") } else { String::new() })]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// The model parameter path.
        key: String,
        /// The parameter's shape.
        expected: Vec<usize>,
        /// The file's (after the PyTorch → burn transpose of Linear weights).
        found: Vec<usize>,
        /// How many other tensors mismatch.
        others: usize,
    },
    /// A config file that does not parse or describes an unsupported model.
    #[error("{path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Bad input to an API call.
    #[error("{0}")]
    Invalid(String),
    /// From the zoo.
    #[error(transparent)]
    Model(#[from] kiln_models::Error),
    /// From the data crate (tokenizers, images).
    #[error(transparent)]
    Data(#[from] kiln_data::Error),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;
