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
    /// A GGUF file that does not parse or lacks what the model needs.
    #[error(transparent)]
    Gguf(#[from] kiln_gguf::Error),
    /// A pretrained model that is neither in the data directory nor in the model cache.
    #[error("model `{model}` is not here (looked in {}); fetch it with `{command}`", looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" and "))]
    NotFetched {
        /// Its name.
        model: String,
        /// Where it was looked for.
        looked: Vec<PathBuf>,
        /// The command that fetches it.
        command: String,
    },
    /// Downloading a model failed.
    #[error("fetching `{model}`: {reason}")]
    Fetch {
        /// Its name.
        model: String,
        /// Why.
        reason: String,
    },
    /// A downloaded file whose digest is not the pinned one.
    #[error("{path}: SHA-256 {found}, expected {expected} (corrupt download or a changed upload)")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The pinned digest.
        expected: String,
        /// The file's.
        found: String,
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
