//! `kiln serve`: an OpenAI-compatible HTTP server (axum + tokio) for any mix of chat LLMs
//! (GGUF or Hugging Face Llama, see `kiln_transfer::llama`), sentence-embedding models
//! (all-MiniLM-L6-v2) and trained image-classification run folders, each under a name.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/chat/completions` | OpenAI chat completions; `stream: true` sends server-sent events ending with `data: [DONE]` |
//! | `POST /v1/completions` | OpenAI text completions (plain continuation), streaming too |
//! | `POST /v1/embeddings` | OpenAI embeddings (`float` or `base64`) |
//! | `GET /v1/models` | the served models |
//! | `POST /v1/classify` | image (base64 in JSON, or the bytes) → top-k labels and probabilities |
//! | `GET /health`, `GET /ready` | liveness; readiness (503 until every model is loaded) |
//! | `GET /metrics` | Prometheus text: requests by route and status, latency histograms, tokens, queue depth, batch sizes |
//! | `GET /openapi.json` | the OpenAPI document, derived from the handlers and types by utoipa |
//!
//! Embedding and classification inputs that arrive together run as one batch
//! ([`config::ServeConfig::max_batch_size`], [`config::ServeConfig::max_batch_delay_ms`]);
//! generations run concurrently on `generation_workers` threads per chat model, each with
//! its own KV cache ([`generate`]). Errors are OpenAI-shaped JSON: 422 naming the field for a
//! malformed body or a bad parameter, 404 for an unknown model or route, 413 over
//! `max_body_bytes`, 429 over `max_concurrent_requests`, 503 while loading, 504 past
//! `request_timeout_secs`; a panic inside a request is a 500 and the server keeps serving.
//! A client that disconnects mid-stream stops its generation. Shutdown (Ctrl-C, SIGTERM or
//! [`Server::shutdown`]) finishes the requests in flight.
//!
//! ```no_run
//! use kiln_serve::{ModelKind, ModelSpec, ServeConfig};
//! let config = ServeConfig {
//!     port: 0,
//!     models: vec![ModelSpec::parse(ModelKind::Chat, "smollm2=smollm2")?],
//!     ..ServeConfig::default()
//! };
//! let server = kiln_serve::start(config)?;
//! server.wait_ready(std::time::Duration::from_secs(120))?;
//! println!("listening on {}", server.url());
//! server.shutdown()?;
//! # Ok::<(), kiln_serve::Error>(())
//! ```

pub mod api;
pub mod batch;
pub mod config;
mod error;
pub mod generate;
pub mod metrics;
mod server;

pub use config::{ModelKind, ModelSpec, ServeConfig};
pub use error::{Error, Result};
pub use server::{ApiDoc, Server, run, start};
