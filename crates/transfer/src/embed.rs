//! Sentence embeddings with a sentence-transformers BERT checkpoint (e.g. all-MiniLM-L6-v2):
//! WordPiece tokens → [`BertEncoder`] → mean over real tokens (the attention mask) → L2
//! normalisation, as sentence-transformers' `Transformer` + `Pooling(mean)` + `Normalize`
//! modules compute it.
//!
//! ```no_run
//! use kiln_transfer::SentenceEmbedder;
//! let device = burn::tensor::Device::flex();
//! let (embedder, _report) =
//!     SentenceEmbedder::from_dir("models/all-MiniLM-L6-v2".as_ref(), &device).unwrap();
//! let e = embedder.embed(&["A cat.", "A dog sleeps on the sofa."]).unwrap();
//! assert_eq!(e.dims(), [2, 384]);
//! ```

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use kiln_data::text::TextTokenizer;
use kiln_models::bert::{BertConfig, BertEncoder, HF_KEY_MAP};

use crate::import::{KeyMap, LoadReport, load_weights};
use crate::{Error, Result};

/// How token states become one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over real tokens (padding excluded).
    Mean,
    /// The first (`[CLS]`) token.
    Cls,
}

/// The Hugging Face BERT key map (with an optional `bert.` prefix) for [`load_weights`].
pub fn bert_key_map() -> KeyMap {
    KeyMap::from_templates(HF_KEY_MAP, Some("bert."))
}

/// Kiln's `BertEncoder` paths → Hugging Face BERT names, for [`crate::save_weights`].
pub fn bert_export_key_map() -> KeyMap {
    KeyMap::export_templates(HF_KEY_MAP)
}

/// A BERT sentence embedder.
#[derive(Debug)]
pub struct SentenceEmbedder {
    encoder: BertEncoder,
    tokenizer: TextTokenizer,
    max_len: usize,
    pooling: Pooling,
    normalize: bool,
    device: Device,
}

/// Ids and masks of a tokenized batch.
#[derive(Clone, Debug)]
pub struct TokenizedBatch {
    /// Token ids of each text (with `[CLS]`/`[SEP]`, truncated), unpadded.
    pub ids: Vec<Vec<u32>>,
    /// `[batch, longest]` ids, padded with the pad id.
    pub input_ids: Tensor<2, Int>,
    /// `[batch, longest]` true at padding.
    pub mask_pad: Tensor<2, Bool>,
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn json(path: &Path) -> Result<serde_json::Value> {
    serde_json::from_str(&read(path)?).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        reason: format!("not valid JSON: {e}"),
    })
}

impl SentenceEmbedder {
    /// Loads a sentence-transformers folder: `config.json` (BERT), `model.safetensors` (or
    /// `pytorch_model.bin`), `tokenizer.json`, and when present `sentence_bert_config.json`
    /// (`max_seq_length`, default 512 capped by the position table), `1_Pooling/config.json`
    /// (mean or CLS) and `modules.json` (L2 normalisation when it lists `Normalize`).
    pub fn from_dir(dir: &Path, device: &Device) -> Result<(Self, LoadReport)> {
        let config_path = dir.join("config.json");
        let config =
            BertConfig::from_hf_json(&read(&config_path)?).map_err(|reason| Error::Config {
                path: config_path.clone(),
                reason,
            })?;
        let weights = [dir.join("model.safetensors"), dir.join("pytorch_model.bin")]
            .into_iter()
            .find(|p| p.is_file())
            .ok_or_else(|| Error::Io {
                path: dir.join("model.safetensors"),
                reason: "no model.safetensors or pytorch_model.bin in the folder".into(),
            })?;
        let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"))?;
        let mut max_len = config.max_position_embeddings;
        let st_config = dir.join("sentence_bert_config.json");
        if st_config.is_file()
            && let Some(n) = json(&st_config)?["max_seq_length"].as_u64()
        {
            max_len = max_len.min(n as usize);
        }
        let mut pooling = Pooling::Mean;
        let pooling_config = dir.join("1_Pooling/config.json");
        if pooling_config.is_file() {
            let v = json(&pooling_config)?;
            let on = |k: &str| v[k].as_bool().unwrap_or(false);
            pooling = match (on("pooling_mode_mean_tokens"), on("pooling_mode_cls_token")) {
                (true, false) => Pooling::Mean,
                (false, true) => Pooling::Cls,
                _ => {
                    return Err(Error::Config {
                        path: pooling_config,
                        reason: "only mean or CLS pooling (exactly one) is supported".into(),
                    });
                }
            };
        }
        let modules = dir.join("modules.json");
        let normalize = modules.is_file() && read(&modules)?.contains("models.Normalize");
        let encoder = config.init(device)?;
        let (encoder, report) = load_weights(encoder, &weights, &bert_key_map(), false)?;
        Ok((
            Self {
                encoder,
                tokenizer,
                max_len,
                pooling,
                normalize,
                device: device.clone(),
            },
            report,
        ))
    }

    /// Builds an embedder from parts.
    pub fn new(
        encoder: BertEncoder,
        tokenizer: TextTokenizer,
        max_len: usize,
        pooling: Pooling,
        normalize: bool,
    ) -> Self {
        let device = encoder.devices().into_iter().next().unwrap_or_default();
        Self {
            max_len: max_len.min(encoder.max_len()),
            encoder,
            tokenizer,
            pooling,
            normalize,
            device,
        }
    }

    /// The encoder.
    pub fn encoder(&self) -> &BertEncoder {
        &self.encoder
    }

    /// The same embedder truncating texts to `max_len` tokens (at most the position table).
    pub fn with_max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len.clamp(2, self.encoder.max_len());
        self
    }

    /// The longest token sequence (longer texts are truncated, keeping `[SEP]`).
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Tokenizes `texts`, padded to the longest.
    pub fn tokenize(&self, texts: &[&str]) -> Result<TokenizedBatch> {
        if texts.is_empty() {
            return Err(Error::Invalid("no texts to embed".into()));
        }
        let mut ids = Vec::with_capacity(texts.len());
        for text in texts {
            let mut t = self.tokenizer.encode(text)?;
            if t.len() > self.max_len {
                let last = *t.last().unwrap_or(&0);
                t.truncate(self.max_len);
                if let Some(end) = t.last_mut() {
                    *end = last;
                }
            }
            ids.push(t);
        }
        let longest = ids.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let batch = texts.len();
        let mut flat = Vec::with_capacity(batch * longest);
        let mut pad = Vec::with_capacity(batch * longest);
        for t in &ids {
            for i in 0..longest {
                flat.push(
                    t.get(i)
                        .map_or(self.tokenizer.pad_id() as i64, |&v| v as i64),
                );
                pad.push(i >= t.len());
            }
        }
        Ok(TokenizedBatch {
            input_ids: Tensor::from_data(TensorData::new(flat, [batch, longest]), &self.device),
            mask_pad: Tensor::from_data(TensorData::new(pad, [batch, longest]), &self.device),
            ids,
        })
    }

    /// `[texts, hidden]` sentence embeddings (unit length when the model normalises), in
    /// batches of 32 texts.
    pub fn embed(&self, texts: &[&str]) -> Result<Tensor<2>> {
        if texts.is_empty() {
            return Err(Error::Invalid("no texts to embed".into()));
        }
        let parts = texts
            .chunks(32)
            .map(|chunk| self.embed_batch(chunk))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(parts, 0))
    }

    /// The number of tokens of each text as the model sees it (with `[CLS]`/`[SEP]`,
    /// truncated to [`SentenceEmbedder::max_len`]).
    pub fn token_counts(&self, texts: &[&str]) -> Result<Vec<usize>> {
        texts
            .iter()
            .map(|t| Ok(self.tokenizer.encode(t)?.len().min(self.max_len)))
            .collect()
    }

    /// The embeddings of `texts` as one vector per text.
    pub fn embed_vectors(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        rows(self.embed(texts)?)
    }

    /// The cosine similarity of every pair of `texts` (`[i][j]`, 1 on the diagonal), what
    /// `kiln embed --similarity` prints: the embeddings scaled to unit length, then their
    /// dot products.
    pub fn similarities(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let e = l2_normalize(self.embed(texts)?);
        rows(e.clone().matmul(e.transpose()))
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Tensor<2>> {
        let batch = self.tokenize(texts)?;
        let hidden = self
            .encoder
            .forward(batch.input_ids, None, Some(batch.mask_pad.clone()));
        let pooled = match self.pooling {
            Pooling::Mean => mean_pool(hidden, batch.mask_pad),
            Pooling::Cls => {
                let [b, _, d] = hidden.dims();
                hidden.slice([0..b, 0..1, 0..d]).reshape([b, d])
            }
        };
        Ok(if self.normalize {
            l2_normalize(pooled)
        } else {
            pooled
        })
    }
}

/// Mean of `hidden` `[batch, seq, d]` over the positions where `mask_pad` `[batch, seq]` is
/// false.
pub fn mean_pool(hidden: Tensor<3>, mask_pad: Tensor<2, Bool>) -> Tensor<2> {
    let [b, s, d] = hidden.dims();
    let keep = mask_pad.bool_not().float().reshape([b, s, 1]);
    let summed = (hidden * keep.clone()).sum_dim(1).reshape([b, d]);
    let count = keep.sum_dim(1).reshape([b, 1]).clamp_min(1e-9);
    summed / count
}

/// Rows scaled to unit L2 norm (PyTorch's `F.normalize`, eps 1e-12).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// The rows of a `[n, d]` tensor.
fn rows(t: Tensor<2>) -> Result<Vec<Vec<f32>>> {
    let [_, d] = t.dims();
    let values: Vec<f32> = t
        .into_data()
        .convert::<f32>()
        .try_to_vec()
        .map_err(|e| Error::Invalid(format!("reading embeddings: {e:?}")))?;
    Ok(values.chunks(d.max(1)).map(<[f32]>::to_vec).collect())
}

/// Where a sentence-transformers folder is expected under a data directory.
pub fn minilm_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("models").join("all-MiniLM-L6-v2")
}
