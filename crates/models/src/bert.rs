//! BERT encoder (Devlin et al. 2019), exactly as Hugging Face's `BertModel` computes it: word +
//! position + token-type embeddings, LayerNorm, then post-LayerNorm transformer layers with
//! exact (erf) GELU.
//!
//! The layers are burn-nn's `TransformerEncoder` with `norm_first = false`: its post-norm layer
//! computes `x = LN₁(x + Attn(x)); x = LN₂(x + FFN(x))`, which is BERT's layer, so no custom
//! attention is needed. Every Hugging Face checkpoint tensor maps one-to-one onto a Kiln
//! parameter of the same shape ([`HF_KEY_MAP`]; Linear weights are stored `[d_in, d_out]` in
//! burn, the transpose of PyTorch's `[d_out, d_in]`).

use burn::module::Module;
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};
use burn::tensor::{Bool, Device, Int, Tensor};
use kiln_core::ModelSummary;
use kiln_core::summary::SummaryBuilder;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::common::{check_dropout, check_token_input, invalid};
use crate::transformer::summarize_encoder;

/// BERT hyper-parameters, with the field names of Hugging Face's `config.json` (unknown fields
/// there are ignored, so a checkpoint's `config.json` parses as is).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden width.
    pub hidden_size: usize,
    /// Number of layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Position table size.
    pub max_position_embeddings: usize,
    /// Token-type table size.
    #[serde(default = "two")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "bert_eps")]
    pub layer_norm_eps: f64,
    /// Dropout on embeddings, attention weights and residual branches.
    #[serde(default = "bert_dropout")]
    pub hidden_dropout_prob: f64,
}

fn two() -> usize {
    2
}
fn bert_eps() -> f64 {
    1e-12
}
fn bert_dropout() -> f64 {
    0.1
}

impl BertConfig {
    /// all-MiniLM-L6-v2 (sentence-transformers): 6 layers, hidden 384, 12 heads.
    pub fn minilm_l6() -> Self {
        Self {
            vocab_size: 30522,
            hidden_size: 384,
            num_hidden_layers: 6,
            num_attention_heads: 12,
            intermediate_size: 1536,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_dropout_prob: 0.1,
        }
    }

    /// Parses a Hugging Face `config.json`.
    pub fn from_hf_json(text: &str) -> std::result::Result<Self, String> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if let Some(act) = value.get("hidden_act").and_then(|v| v.as_str())
            && act != "gelu"
        {
            return Err(format!(
                "hidden_act `{act}` is not supported (BertEncoder uses exact GELU)"
            ));
        }
        let config: BertConfig = serde_json::from_value(value).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    /// Checks the config.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if v == 0 {
                return Err(invalid("bert", format!("{name} must be at least 1")));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(invalid(
                "bert",
                format!(
                    "hidden_size {} is not divisible by num_attention_heads {}",
                    self.hidden_size, self.num_attention_heads
                ),
            ));
        }
        check_dropout("bert", self.hidden_dropout_prob)
    }

    /// Builds the encoder.
    pub fn init(&self, device: &Device) -> Result<BertEncoder> {
        self.validate()?;
        let d = self.hidden_size;
        Ok(BertEncoder {
            embeddings: BertEmbeddings {
                word_embeddings: EmbeddingConfig::new(self.vocab_size, d).init(device),
                position_embeddings: EmbeddingConfig::new(self.max_position_embeddings, d)
                    .init(device),
                token_type_embeddings: EmbeddingConfig::new(self.type_vocab_size, d).init(device),
                layer_norm: LayerNormConfig::new(d)
                    .with_epsilon(self.layer_norm_eps)
                    .init(device),
                dropout: DropoutConfig::new(self.hidden_dropout_prob).init(),
            },
            encoder: TransformerEncoderConfig::new(
                d,
                self.intermediate_size,
                self.num_attention_heads,
                self.num_hidden_layers,
            )
            .with_dropout(self.hidden_dropout_prob)
            .with_norm_first(false)
            .with_layer_norm_eps(self.layer_norm_eps)
            .init(device),
            max_len: self.max_position_embeddings,
        })
    }
}

/// How Hugging Face BERT checkpoint keys map onto [`BertEncoder`] parameter paths: `(HF
/// pattern, Kiln path)`, where `{N}` is a layer index. Linear weights are transposed; LayerNorm
/// `weight`/`bias` are burn's `gamma`/`beta`. `embeddings.position_ids` (a constant) and the
/// `pooler.*` tensors have no counterpart: the encoder returns hidden states, pooling is the
/// caller's.
pub const HF_KEY_MAP: &[(&str, &str)] = &[
    (
        "embeddings.word_embeddings.weight",
        "embeddings.word_embeddings.weight",
    ),
    (
        "embeddings.position_embeddings.weight",
        "embeddings.position_embeddings.weight",
    ),
    (
        "embeddings.token_type_embeddings.weight",
        "embeddings.token_type_embeddings.weight",
    ),
    ("embeddings.LayerNorm.weight", "embeddings.layer_norm.gamma"),
    ("embeddings.LayerNorm.bias", "embeddings.layer_norm.beta"),
    (
        "encoder.layer.{N}.attention.self.query.weight",
        "encoder.layers.{N}.mha.query.weight",
    ),
    (
        "encoder.layer.{N}.attention.self.query.bias",
        "encoder.layers.{N}.mha.query.bias",
    ),
    (
        "encoder.layer.{N}.attention.self.key.weight",
        "encoder.layers.{N}.mha.key.weight",
    ),
    (
        "encoder.layer.{N}.attention.self.key.bias",
        "encoder.layers.{N}.mha.key.bias",
    ),
    (
        "encoder.layer.{N}.attention.self.value.weight",
        "encoder.layers.{N}.mha.value.weight",
    ),
    (
        "encoder.layer.{N}.attention.self.value.bias",
        "encoder.layers.{N}.mha.value.bias",
    ),
    (
        "encoder.layer.{N}.attention.output.dense.weight",
        "encoder.layers.{N}.mha.output.weight",
    ),
    (
        "encoder.layer.{N}.attention.output.dense.bias",
        "encoder.layers.{N}.mha.output.bias",
    ),
    (
        "encoder.layer.{N}.attention.output.LayerNorm.weight",
        "encoder.layers.{N}.norm_1.gamma",
    ),
    (
        "encoder.layer.{N}.attention.output.LayerNorm.bias",
        "encoder.layers.{N}.norm_1.beta",
    ),
    (
        "encoder.layer.{N}.intermediate.dense.weight",
        "encoder.layers.{N}.pwff.linear_inner.weight",
    ),
    (
        "encoder.layer.{N}.intermediate.dense.bias",
        "encoder.layers.{N}.pwff.linear_inner.bias",
    ),
    (
        "encoder.layer.{N}.output.dense.weight",
        "encoder.layers.{N}.pwff.linear_outer.weight",
    ),
    (
        "encoder.layer.{N}.output.dense.bias",
        "encoder.layers.{N}.pwff.linear_outer.bias",
    ),
    (
        "encoder.layer.{N}.output.LayerNorm.weight",
        "encoder.layers.{N}.norm_2.gamma",
    ),
    (
        "encoder.layer.{N}.output.LayerNorm.bias",
        "encoder.layers.{N}.norm_2.beta",
    ),
];

/// Maps one Hugging Face key to the Kiln path, or `None` for keys without a counterpart.
pub fn map_hf_key(key: &str) -> Option<String> {
    let key = key.strip_prefix("bert.").unwrap_or(key);
    for (hf, kiln) in HF_KEY_MAP {
        match hf.split_once("{N}") {
            None if *hf == key => return Some((*kiln).to_string()),
            None => {}
            Some((pre, post)) => {
                if let Some(rest) = key.strip_prefix(pre)
                    && let Some(index) = rest.strip_suffix(post)
                    && !index.is_empty()
                    && index.bytes().all(|b| b.is_ascii_digit())
                {
                    return Some(kiln.replace("{N}", index));
                }
            }
        }
    }
    None
}

/// BERT embeddings. Module paths follow Hugging Face's names.
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    /// Word-piece embedding table.
    pub word_embeddings: Embedding,
    /// Absolute position table.
    pub position_embeddings: Embedding,
    /// Segment (token type) table.
    pub token_type_embeddings: Embedding,
    /// LayerNorm over the summed embeddings.
    pub layer_norm: LayerNorm,
    dropout: Dropout,
}

/// The BERT encoder: `[batch, seq]` token ids → `[batch, seq, hidden]` hidden states.
#[derive(Module, Debug)]
pub struct BertEncoder {
    /// Embeddings.
    pub embeddings: BertEmbeddings,
    /// Post-norm transformer layers.
    pub encoder: TransformerEncoder,
    #[module(skip)]
    max_len: usize,
}

impl BertEncoder {
    fn embed(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Option<Tensor<2, Int>>,
    ) -> Tensor<3> {
        let [batch, seq] = input_ids.dims();
        let device = input_ids.device();
        let positions = Tensor::<1, Int>::arange(0..seq as i64, &device)
            .reshape([1, seq])
            .expand([batch, seq]);
        let types = token_type_ids.unwrap_or_else(|| Tensor::zeros([batch, seq], &device));
        let e = &self.embeddings;
        let x = e.word_embeddings.forward(input_ids)
            + e.position_embeddings.forward(positions)
            + e.token_type_embeddings.forward(types);
        e.dropout.forward(e.layer_norm.forward(x))
    }

    /// Hidden states for `input_ids` `[batch, seq]`, optional `token_type_ids` (zeros if
    /// absent) and optional padding mask (true at padding, i.e. `attention_mask == 0`).
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Option<Tensor<2, Int>>,
        mask_pad: Option<Tensor<2, Bool>>,
    ) -> Tensor<3> {
        let x = self.embed(input_ids, token_type_ids);
        let mut input = TransformerEncoderInput::new(x);
        if let Some(mask) = mask_pad {
            input = input.mask_pad(mask);
        }
        self.encoder.forward(input)
    }

    /// Longest sequence the position table covers.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Summary for `[batch, seq]` token input.
    pub fn summary(&self, name: &str, input_shape: &[usize]) -> Result<ModelSummary> {
        check_token_input("bert", input_shape, self.max_len)?;
        let device = self.embeddings.layer_norm.gamma.device();
        let mut b = SummaryBuilder::new(name, input_shape);
        let ids = Tensor::<2, Int>::zeros([input_shape[0], input_shape[1]], &device);
        let x = self.embed(ids, None);
        let shape = x.dims();
        let e = &self.embeddings;
        b.layer(
            "embeddings.word_embeddings",
            "Embedding",
            &e.word_embeddings,
            &shape,
            0,
        );
        b.layer(
            "embeddings.position_embeddings",
            "Embedding",
            &e.position_embeddings,
            &shape,
            0,
        );
        b.layer(
            "embeddings.token_type_embeddings",
            "Embedding",
            &e.token_type_embeddings,
            &shape,
            0,
        );
        b.layer(
            "embeddings.layer_norm",
            "LayerNorm",
            &e.layer_norm,
            &shape,
            0,
        );
        summarize_encoder(&mut b, "encoder", &self.encoder, x, None, None);
        Ok(b.finish(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_keys_map() {
        assert_eq!(
            map_hf_key("encoder.layer.5.attention.self.query.weight").as_deref(),
            Some("encoder.layers.5.mha.query.weight")
        );
        assert_eq!(
            map_hf_key("bert.embeddings.LayerNorm.bias").as_deref(),
            Some("embeddings.layer_norm.beta")
        );
        assert_eq!(map_hf_key("encoder.layer.x.output.dense.bias"), None);
        assert_eq!(map_hf_key("pooler.dense.weight"), None);
        assert_eq!(map_hf_key("embeddings.position_ids"), None);
    }

    #[test]
    fn hf_config_parses() {
        let text = r#"{"vocab_size": 100, "hidden_size": 12, "num_hidden_layers": 1,
            "num_attention_heads": 3, "intermediate_size": 24, "max_position_embeddings": 16,
            "hidden_act": "gelu", "model_type": "bert"}"#;
        let config = BertConfig::from_hf_json(text).unwrap();
        assert_eq!(config.layer_norm_eps, 1e-12);
        let text = text.replace("\"gelu\"", "\"relu\"");
        assert!(
            BertConfig::from_hf_json(&text)
                .unwrap_err()
                .contains("hidden_act `relu`")
        );
        let text = text
            .replace("\"relu\"", "\"gelu\"")
            .replace("\"num_attention_heads\": 3", "\"num_attention_heads\": 5");
        assert!(
            BertConfig::from_hf_json(&text)
                .unwrap_err()
                .contains("not divisible")
        );
    }
}

/// A sequence classifier on a (pretrained) BERT encoder: mean of the hidden states over the
/// non-padding tokens (the sentence-transformers pooling), dropout, then a linear head. Module
/// paths: `encoder.*` (as [`BertEncoder`]), `head`.
#[derive(Module, Debug)]
pub struct BertClassifier {
    /// The encoder.
    pub encoder: BertEncoder,
    /// Classification layer, `[hidden, classes]`.
    pub head: burn::nn::Linear,
    dropout: Dropout,
}

impl BertClassifier {
    /// A new, randomly initialised head of `num_classes` on `encoder` (dropout `dropout` before
    /// it).
    pub fn new(encoder: BertEncoder, num_classes: usize, dropout: f64) -> Self {
        let device = encoder.embeddings.layer_norm.gamma.device();
        let hidden = encoder.embeddings.word_embeddings.weight.dims()[1];
        Self {
            head: burn::nn::LinearConfig::new(hidden, num_classes).init(&device),
            encoder,
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    /// Classes the head predicts.
    pub fn num_classes(&self) -> usize {
        self.head.weight.dims()[1]
    }

    /// `[batch, classes]` logits for `input_ids` `[batch, seq]` (true in `mask_pad` at padding).
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        mask_pad: Option<Tensor<2, Bool>>,
    ) -> Tensor<2> {
        let [b, s] = input_ids.dims();
        let device = input_ids.device();
        let mask = mask_pad.unwrap_or_else(|| Tensor::<2, Int>::zeros([b, s], &device).bool());
        let hidden = self.encoder.forward(input_ids, None, Some(mask.clone()));
        let d = hidden.dims()[2];
        let keep = mask.bool_not().float().reshape([b, s, 1]);
        let summed = (hidden * keep.clone()).sum_dim(1).reshape([b, d]);
        let pooled = summed / keep.sum_dim(1).reshape([b, 1]).clamp_min(1e-9);
        self.head.forward(self.dropout.forward(pooled))
    }
}
