/// Errors raised by kiln-models.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model name that the zoo does not have.
    #[error("unknown model `{name}`; available models: {available}")]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// Comma-separated list of the zoo's presets.
        available: String,
    },
    /// A configuration that cannot build a model.
    #[error("invalid {model} config: {reason}")]
    InvalidConfig {
        /// The model type.
        model: String,
        /// What is wrong and what was expected.
        reason: String,
    },
    /// A config file that could not be read or parsed.
    #[error("cannot read model config {path}: {reason}")]
    ConfigFile {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// More tokens than a context or cache holds.
    #[error("{needed} tokens do not fit in {what} ({limit} tokens)")]
    ContextLength {
        /// Tokens needed.
        needed: usize,
        /// Tokens available.
        limit: usize,
        /// Which limit.
        what: String,
    },
    /// Bad generation input (empty prompt, token outside the vocabulary, sampling settings).
    #[error("generation: {0}")]
    Generation(String),
    /// An error from kiln-core (e.g. an input shape the model cannot take).
    #[error(transparent)]
    Core(#[from] kiln_core::Error),
}

/// Result alias for kiln-models.
pub type Result<T, E = Error> = std::result::Result<T, E>;
