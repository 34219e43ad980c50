//! [`ServeConfig`]: what `kiln serve` serves and under which limits, from a TOML file and/or
//! command-line flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What a served model is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// A chat/generation LLM (a `.gguf` file, a Hugging Face Llama folder, or a name `kiln
    /// fetch` knows, e.g. `smollm2`): `/v1/chat/completions` and `/v1/completions`.
    Chat,
    /// A sentence-embedding model folder (all-MiniLM-L6-v2 layout): `/v1/embeddings`.
    Embedding,
    /// A trained image-classification run folder (trained, fine-tuned, pruned or quantized):
    /// `/v1/classify`.
    Classifier,
}

impl ModelKind {
    /// `chat`, `embedding` or `classifier`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Embedding => "embedding",
            Self::Classifier => "classifier",
        }
    }
}

/// One served model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// The name clients give as `model`.
    pub name: String,
    /// What it is.
    pub kind: ModelKind,
    /// Where it is (see [`ModelKind`]).
    pub path: PathBuf,
}

impl ModelSpec {
    /// Parses `NAME=PATH` (a bare `PATH` is named after its file or folder stem).
    pub fn parse(kind: ModelKind, text: &str) -> Result<Self> {
        let (name, path) = match text.split_once('=') {
            Some((name, path)) => (name.trim().to_string(), PathBuf::from(path.trim())),
            None => {
                let path = PathBuf::from(text.trim());
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (name, path)
            }
        };
        if name.is_empty() || path.as_os_str().is_empty() {
            return Err(Error::Config(format!(
                "`{text}`: expected NAME=PATH for a {} model",
                kind.name()
            )));
        }
        Ok(Self { name, kind, path })
    }
}

/// Everything `kiln serve` takes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Address to listen on.
    pub host: String,
    /// Port (0: any free one; the server reports which).
    pub port: u16,
    /// The models, each under its name.
    #[serde(rename = "model")]
    pub models: Vec<ModelSpec>,
    /// Largest request body in bytes (larger: 413).
    pub max_body_bytes: usize,
    /// Requests handled at once over all `/v1` routes (more: 429).
    pub max_concurrent_requests: usize,
    /// Generations decoded at once per chat model, each on its own thread with its own KV
    /// cache (the threads share the weights and the cores); the others wait in the queue.
    pub generation_workers: usize,
    /// KV-cache length of each generation worker in tokens (prompt + reply; at most the
    /// model's context).
    pub context: usize,
    /// Default `max_tokens` of a completion that gives none.
    pub default_max_tokens: usize,
    /// Seconds a request may take; past it a generation stops (504 unless streaming, where
    /// the stream ends with an error event) and other requests get 504.
    pub request_timeout_secs: f64,
    /// Embedding and classification inputs run as one batch of at most this many.
    pub max_batch_size: usize,
    /// How long the first input of a batch waits for others, in milliseconds (0: no
    /// waiting, only what is already queued is batched).
    pub max_batch_delay_ms: u64,
    /// Compute threads of the tensor backend (0: one per core). The thread pool is the
    /// process's: `kiln serve` sets it before loading the models; a Rust caller of
    /// [`crate::start`] sets its own (rayon's global pool).
    pub threads: usize,
    /// Where datasets and models are (for model names such as `smollm2` and `minilm`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            models: Vec::new(),
            max_body_bytes: 8 << 20,
            max_concurrent_requests: 64,
            generation_workers: 4,
            context: 2048,
            default_max_tokens: 256,
            request_timeout_secs: 300.0,
            max_batch_size: 32,
            max_batch_delay_ms: 5,
            threads: 0,
            data_dir: None,
        }
    }
}

impl ServeConfig {
    /// Reads a TOML config (`[[model]]` tables with `name`, `kind`, `path`).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let config: Self =
            toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the limits and that model names are unique.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("max_body_bytes", self.max_body_bytes),
            ("max_concurrent_requests", self.max_concurrent_requests),
            ("generation_workers", self.generation_workers),
            ("context", self.context),
            ("default_max_tokens", self.default_max_tokens),
            ("max_batch_size", self.max_batch_size),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(Error::Config(format!("{name} must be at least 1")));
            }
        }
        if !(self.request_timeout_secs.is_finite() && self.request_timeout_secs > 0.0) {
            return Err(Error::Config(format!(
                "request_timeout_secs must be a positive number, found {}",
                self.request_timeout_secs
            )));
        }
        for (i, m) in self.models.iter().enumerate() {
            if m.name.is_empty() {
                return Err(Error::Config(format!("model {} has an empty name", i + 1)));
            }
            if self.models[..i].iter().any(|o| o.name == m.name) {
                return Err(Error::Config(format!(
                    "two models are named `{}`; names must be unique",
                    m.name
                )));
            }
        }
        Ok(())
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.request_timeout_secs)
    }

    /// `host:port`.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_file_reads_and_bad_ones_are_named() {
        let text = r#"
port = 9000
max_batch_size = 8
[[model]]
name = "chat"
kind = "chat"
path = "smollm2"
[[model]]
name = "digits"
kind = "classifier"
path = "runs/digits"
"#;
        let config: ServeConfig = toml::from_str(text).unwrap();
        config.validate().unwrap();
        assert_eq!((config.port, config.max_batch_size), (9000, 8));
        assert_eq!(config.models[1].kind, ModelKind::Classifier);
        assert!(toml::from_str::<ServeConfig>("prot = 1").is_err());
        let twice = ServeConfig {
            models: vec![config.models[0].clone(), config.models[0].clone()],
            ..ServeConfig::default()
        };
        assert!(twice.validate().unwrap_err().to_string().contains("`chat`"));
        let spec =
            ModelSpec::parse(ModelKind::Embedding, "minilm=models/all-MiniLM-L6-v2").unwrap();
        assert_eq!(spec.name, "minilm");
        assert_eq!(
            ModelSpec::parse(ModelKind::Classifier, "runs/digits")
                .unwrap()
                .name,
            "digits"
        );
        assert!(ModelSpec::parse(ModelKind::Chat, "=x").is_err());
    }
}
