//! The errors of starting and running a server (a bad request is not one of these: it is an
//! HTTP answer, see `api::ApiError`).

use std::path::PathBuf;

/// What can go wrong starting or running `kiln serve`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad setting.
    #[error("serve config: {0}")]
    Config(String),
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// `host:port`.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// A model could not be loaded.
    #[error("model `{name}` ({path}): {reason}")]
    Model {
        /// Its name.
        name: String,
        /// Where it was looked for.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The server stopped with an error.
    #[error("server: {0}")]
    Server(String),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
