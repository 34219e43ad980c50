//! Transformer building blocks and two heads: [`TransformerClassifier`] (sequence
//! classification) and [`CausalLm`] (next-token prediction with [`CausalLm::generate`]).
//!
//! Attention, feed-forward and the encoder stack are burn-nn's `MultiHeadAttention`,
//! `PositionWiseFeedForward` and `TransformerEncoder` (pre-norm or post-norm, GELU, padding
//! and causal masks); Kiln adds token and position embeddings, pooling, heads, generation and
//! summaries.

use burn::module::Module;
use burn::nn::attention::generate_autoregressive_mask;
use burn::nn::transformer::{
    PositionWiseFeedForward, TransformerEncoder, TransformerEncoderConfig,
};
use burn::nn::{
    Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig,
    PositionalEncoding, PositionalEncodingConfig,
};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use kiln_core::summary::{SummaryBuilder, mult_adds};
use kiln_core::{ModelSummary, Seed};
use rand::RngExt;
use serde::{Deserialize, Serialize};

use crate::common::{check_dropout, check_token_input, invalid};
use crate::{Error, Result};

/// How token positions are encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Positions {
    /// A learned embedding per position.
    #[default]
    Learned,
    /// Fixed sinusoids (Vaswani et al. 2017).
    Sinusoidal,
}

/// The encoder stack shared by the transformer heads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderConfig {
    /// Vocabulary size (token ids are `0..vocab_size`).
    pub vocab_size: usize,
    /// Longest sequence the position encoding covers.
    pub max_len: usize,
    /// Model width.
    pub d_model: usize,
    /// Attention heads (`d_model` must be divisible by it).
    pub n_heads: usize,
    /// Encoder layers.
    pub n_layers: usize,
    /// Feed-forward width.
    pub d_ff: usize,
    /// Dropout (attention weights, residual branches, embeddings).
    #[serde(default)]
    pub dropout: f64,
    /// Pre-norm (LayerNorm before each sub-layer, GPT/ViT style) or post-norm (after, BERT
    /// style).
    #[serde(default = "yes")]
    pub norm_first: bool,
    /// Position encoding.
    #[serde(default)]
    pub positions: Positions,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
}

fn yes() -> bool {
    true
}

fn default_eps() -> f64 {
    1e-5
}

impl EncoderConfig {
    /// Checks the config.
    pub fn validate(&self, model: &str) -> Result<()> {
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("max_len", self.max_len),
            ("d_model", self.d_model),
            ("n_heads", self.n_heads),
            ("n_layers", self.n_layers),
            ("d_ff", self.d_ff),
        ] {
            if v == 0 {
                return Err(invalid(model, format!("{name} must be at least 1")));
            }
        }
        if !self.d_model.is_multiple_of(self.n_heads) {
            return Err(invalid(
                model,
                format!(
                    "d_model {} is not divisible by n_heads {}",
                    self.d_model, self.n_heads
                ),
            ));
        }
        if self.positions == Positions::Sinusoidal && !self.d_model.is_multiple_of(2) {
            return Err(invalid(
                model,
                format!(
                    "sinusoidal positions need an even d_model, found {}",
                    self.d_model
                ),
            ));
        }
        check_dropout(model, self.dropout)
    }

    fn init(&self, device: &Device) -> (TokenEmbedding, TransformerEncoder) {
        let embedding = TokenEmbedding {
            tokens: EmbeddingConfig::new(self.vocab_size, self.d_model).init(device),
            learned: (self.positions == Positions::Learned)
                .then(|| EmbeddingConfig::new(self.max_len, self.d_model).init(device)),
            sinusoidal: (self.positions == Positions::Sinusoidal).then(|| {
                PositionalEncodingConfig::new(self.d_model)
                    .with_max_sequence_size(self.max_len)
                    .init(device)
            }),
            max_len: self.max_len,
        };
        let encoder =
            TransformerEncoderConfig::new(self.d_model, self.d_ff, self.n_heads, self.n_layers)
                .with_dropout(self.dropout)
                .with_norm_first(self.norm_first)
                .with_layer_norm_eps(self.layer_norm_eps)
                .init(device);
        (embedding, encoder)
    }
}

/// Token embedding plus position encoding. Module paths: `tokens`, `learned`.
#[derive(Module, Debug)]
pub struct TokenEmbedding {
    /// Token embedding table `[vocab_size, d_model]`.
    pub tokens: Embedding,
    /// Learned position table `[max_len, d_model]`, if positions are learned.
    pub learned: Option<Embedding>,
    sinusoidal: Option<PositionalEncoding>,
    #[module(skip)]
    max_len: usize,
}

impl TokenEmbedding {
    /// `[batch, seq]` token ids → `[batch, seq, d_model]`.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let [batch, seq] = tokens.dims();
        let x = self.tokens.forward(tokens.clone());
        match (&self.learned, &self.sinusoidal) {
            (Some(table), _) => {
                let positions = Tensor::<1, Int>::arange(0..seq as i64, &tokens.device())
                    .reshape([1, seq])
                    .expand([batch, seq]);
                x + table.forward(positions)
            }
            (_, Some(sin)) => sin.forward(x),
            _ => x,
        }
    }
}

/// The parts of one encoder layer (burn-nn's or ViT-lite's) that the summary lists.
pub(crate) struct LayerRows<'a, A> {
    /// Pre-norm (`norm_2`, attention, `norm_1`, feed-forward) or post-norm order.
    pub norm_first: bool,
    pub norm_1: &'a LayerNorm,
    pub norm_2: &'a LayerNorm,
    pub mha: &'a A,
    pub heads: usize,
    pub d_k: usize,
    pub pwff: &'a PositionWiseFeedForward,
}

impl<A: Module> LayerRows<'_, A> {
    /// Adds the layer's rows under `p`, in execution order, for an output of `shape`
    /// (`[n, len, d]`), with mult-adds from the layer's actual widths.
    pub(crate) fn add(&self, b: &mut SummaryBuilder, p: &str, shape: [usize; 3]) {
        let [n, len, d] = shape;
        let (rows, inner) = (n * len, self.heads * self.d_k);
        let [_, d_ff] = self.pwff.linear_inner.weight.dims();
        // Q, K, V and output projections, then scores and the weighted sum.
        let mha = 3 * mult_adds::linear(rows, d, inner)
            + mult_adds::linear(rows, inner, d)
            + mult_adds::attention(n, self.heads, len, len, self.d_k);
        let ffn = mult_adds::linear(rows, d, d_ff) + mult_adds::linear(rows, d_ff, d);
        let norm_2 = |b: &mut SummaryBuilder| {
            b.layer(format!("{p}.norm_2"), "LayerNorm", self.norm_2, &shape, 0)
        };
        if self.norm_first {
            norm_2(b);
        }
        b.layer(
            format!("{p}.mha"),
            "MultiHeadAttention",
            self.mha,
            &shape,
            mha,
        );
        b.layer(format!("{p}.norm_1"), "LayerNorm", self.norm_1, &shape, 0);
        b.layer(format!("{p}.pwff"), "FeedForward", self.pwff, &shape, ffn);
        if !self.norm_first {
            norm_2(b);
        }
    }
}

/// Adds the summary rows of an encoder stack and runs it.
pub(crate) fn summarize_encoder(
    b: &mut SummaryBuilder,
    prefix: &str,
    encoder: &TransformerEncoder,
    mut x: Tensor<3>,
    mask_pad: Option<Tensor<2, Bool>>,
    mask_attn: Option<Tensor<3, Bool>>,
) -> Tensor<3> {
    for (i, layer) in encoder.layers.iter().enumerate() {
        x = layer.forward(x, mask_pad.clone(), mask_attn.clone());
        LayerRows {
            norm_first: layer.norm_first,
            norm_1: &layer.norm_1,
            norm_2: &layer.norm_2,
            mha: &layer.mha,
            heads: layer.mha.n_heads,
            d_k: layer.mha.d_k,
            pwff: &layer.pwff,
        }
        .add(b, &format!("{prefix}.layers.{i}"), x.dims());
    }
    x
}

fn summarize_embedding(
    b: &mut SummaryBuilder,
    emb: &TokenEmbedding,
    tokens: Tensor<2, Int>,
) -> Tensor<3> {
    let x = emb.forward(tokens);
    let shape = x.dims();
    b.layer("embedding.tokens", "Embedding", &emb.tokens, &shape, 0);
    if let Some(table) = &emb.learned {
        b.layer("embedding.learned", "Embedding", table, &shape, 0);
    }
    if emb.sinusoidal.is_some() {
        b.op("embedding.sinusoidal", "SinusoidalPositions", &shape, 0);
    }
    x
}

/// Pooling of a sequence into one vector for classification.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// Mean over the non-padding tokens.
    #[default]
    Mean,
    /// The first token (a `[CLS]` token the tokenizer puts first).
    Cls,
}

/// Configuration of a [`TransformerClassifier`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformerClassifierConfig {
    /// The encoder stack.
    pub encoder: EncoderConfig,
    /// Number of classes.
    pub num_classes: usize,
    /// Pooling.
    #[serde(default)]
    pub pooling: Pooling,
}

impl TransformerClassifierConfig {
    /// Checks the config.
    pub fn validate(&self) -> Result<()> {
        self.encoder.validate("transformer-classifier")?;
        if self.num_classes == 0 {
            return Err(invalid(
                "transformer-classifier",
                "num_classes must be at least 1",
            ));
        }
        Ok(())
    }

    /// Builds the model.
    pub fn init(&self, device: &Device) -> Result<TransformerClassifier> {
        self.validate()?;
        let (embedding, encoder) = self.encoder.init(device);
        Ok(TransformerClassifier {
            embedding,
            encoder,
            norm: LayerNormConfig::new(self.encoder.d_model)
                .with_epsilon(self.encoder.layer_norm_eps)
                .init(device),
            head: LinearConfig::new(self.encoder.d_model, self.num_classes).init(device),
            pooling: self.pooling,
        })
    }
}

/// Sequence classifier: embeddings → encoder → LayerNorm → pooling → linear head.
/// Module paths: `embedding.*`, `encoder.layers.N.{mha,pwff,norm_1,norm_2}`, `norm`, `head`.
#[derive(Module, Debug)]
pub struct TransformerClassifier {
    /// Token and position embeddings.
    pub embedding: TokenEmbedding,
    /// The encoder stack.
    pub encoder: TransformerEncoder,
    /// Final LayerNorm.
    pub norm: LayerNorm,
    /// Classification head.
    pub head: Linear,
    #[module(skip)]
    pooling: Pooling,
}

/// `[batch, seq, d]` → `[batch, d]` by masked mean (`mask_pad` true at padding) or first token.
fn pool(x: Tensor<3>, pooling: Pooling, mask_pad: Option<Tensor<2, Bool>>) -> Tensor<2> {
    let [batch, seq, d] = x.dims();
    match pooling {
        Pooling::Cls => x.slice([0..batch, 0..1, 0..d]).reshape([batch, d]),
        Pooling::Mean => match mask_pad {
            None => x.mean_dim(1).reshape([batch, d]),
            Some(mask) => {
                let keep = mask.bool_not().float().reshape([batch, seq, 1]);
                let sum = (x * keep.clone()).sum_dim(1).reshape([batch, d]);
                let count = keep.sum_dim(1).reshape([batch, 1]).clamp_min(1.0);
                sum / count
            }
        },
    }
}

impl TransformerClassifier {
    /// `[batch, seq]` token ids (and an optional padding mask, true at padding) → logits
    /// `[batch, classes]`.
    pub fn forward(&self, tokens: Tensor<2, Int>, mask_pad: Option<Tensor<2, Bool>>) -> Tensor<2> {
        let x = self.embedding.forward(tokens);
        let mut input = burn::nn::transformer::TransformerEncoderInput::new(x);
        if let Some(mask) = mask_pad.clone() {
            input = input.mask_pad(mask);
        }
        let x = self.norm.forward(self.encoder.forward(input));
        self.head.forward(pool(x, self.pooling, mask_pad))
    }

    /// Summary for `[batch, seq]` token input.
    pub fn summary(&self, name: &str, input_shape: &[usize]) -> Result<ModelSummary> {
        check_token_input(
            "transformer-classifier",
            input_shape,
            self.embedding.max_len,
        )?;
        let device = self.head.weight.device();
        let mut b = SummaryBuilder::new(name, input_shape);
        let tokens = Tensor::<2, Int>::zeros([input_shape[0], input_shape[1]], &device);
        let x = summarize_embedding(&mut b, &self.embedding, tokens);
        let x = summarize_encoder(&mut b, "encoder", &self.encoder, x, None, None);
        let x = self.norm.forward(x);
        b.layer("norm", "LayerNorm", &self.norm, &x.dims(), 0);
        let x = pool(x, self.pooling, None);
        let kind = match self.pooling {
            Pooling::Mean => "MeanPool",
            Pooling::Cls => "ClsPool",
        };
        b.op("pool", kind, &x.dims(), 0);
        let [d_in, d_out] = self.head.weight.dims();
        let x = self.head.forward(x);
        b.layer(
            "head",
            "Linear",
            &self.head,
            &x.dims(),
            mult_adds::linear(input_shape[0], d_in, d_out),
        );
        Ok(b.finish(self))
    }
}

/// Configuration of a [`CausalLm`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CausalLmConfig {
    /// The decoder-only stack (`norm_first` is usual).
    pub encoder: EncoderConfig,
}

impl CausalLmConfig {
    /// Checks the config.
    pub fn validate(&self) -> Result<()> {
        self.encoder.validate("causal-lm")
    }

    /// Builds the model.
    pub fn init(&self, device: &Device) -> Result<CausalLm> {
        self.validate()?;
        let (embedding, encoder) = self.encoder.init(device);
        Ok(CausalLm {
            embedding,
            encoder,
            norm: LayerNormConfig::new(self.encoder.d_model)
                .with_epsilon(self.encoder.layer_norm_eps)
                .init(device),
            lm_head: LinearConfig::new(self.encoder.d_model, self.encoder.vocab_size).init(device),
            vocab_size: self.encoder.vocab_size,
        })
    }
}

/// How [`CausalLm::generate`] picks the next token.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Sampling {
    /// The most likely token.
    Greedy,
    /// Sample from `softmax(logits / temperature)`, optionally only among the `top_k` most
    /// likely tokens.
    Sample {
        /// Softmax temperature (> 0).
        temperature: f64,
        /// Keep only the k most likely tokens (None: all).
        top_k: Option<usize>,
    },
    /// Nucleus sampling (Holtzman et al. 2019): from `softmax(logits / temperature)` over the
    /// `top_k` most likely tokens (None: all), keep the smallest set of most likely tokens
    /// whose probability reaches `top_p`, renormalise and sample (Hugging Face's
    /// temperature → top-k → top-p order).
    Nucleus {
        /// Softmax temperature (> 0).
        temperature: f64,
        /// Keep only the k most likely tokens first (None: all).
        top_k: Option<usize>,
        /// Cumulative probability kept, in (0, 1].
        top_p: f64,
    },
}

impl Sampling {
    /// The sampling a command line describes: greedy when `temperature` is 0, else
    /// temperature sampling with optional top-k and top-p (1: off).
    pub fn from_settings(temperature: f64, top_k: Option<usize>, top_p: f64) -> Self {
        if temperature == 0.0 {
            Self::Greedy
        } else if top_p != 1.0 {
            // (Out-of-range values reach `generate`, which refuses them.)
            Self::Nucleus {
                temperature,
                top_k,
                top_p,
            }
        } else {
            Self::Sample { temperature, top_k }
        }
    }

    fn check(&self) -> Result<()> {
        let (temperature, top_k, top_p) = match *self {
            Self::Greedy => return Ok(()),
            Self::Sample { temperature, top_k } => (temperature, top_k, 1.0),
            Self::Nucleus {
                temperature,
                top_k,
                top_p,
            } => (temperature, top_k, top_p),
        };
        if !(temperature > 0.0 && temperature.is_finite())
            || top_k == Some(0)
            || !(top_p > 0.0 && top_p <= 1.0)
        {
            return Err(invalid(
                "causal-lm",
                format!(
                    "sampling needs temperature > 0, top_k >= 1 and top_p in (0, 1], found {temperature}, {top_k:?} and {top_p}"
                ),
            ));
        }
        Ok(())
    }
}

/// Decoder-only language model: embeddings → causally masked encoder → LayerNorm → LM head.
/// Module paths: `embedding.*`, `encoder.layers.N.*`, `norm`, `lm_head`.
#[derive(Module, Debug)]
pub struct CausalLm {
    /// Token and position embeddings.
    pub embedding: TokenEmbedding,
    /// The causally masked stack.
    pub encoder: TransformerEncoder,
    /// Final LayerNorm.
    pub norm: LayerNorm,
    /// Projection to vocabulary logits.
    pub lm_head: Linear,
    #[module(skip)]
    vocab_size: usize,
}

impl CausalLm {
    /// `[batch, seq]` token ids → next-token logits `[batch, seq, vocab]`; position `t` sees
    /// tokens `0..=t` only.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let [batch, seq] = tokens.dims();
        let device = tokens.device();
        let x = self.embedding.forward(tokens);
        let input = burn::nn::transformer::TransformerEncoderInput::new(x)
            .mask_attn(generate_autoregressive_mask(batch, seq, &device));
        self.lm_head
            .forward(self.norm.forward(self.encoder.forward(input)))
    }

    /// Longest context the model can see.
    pub fn max_len(&self) -> usize {
        self.embedding.max_len
    }

    /// Continues `prompt` by `max_new_tokens` tokens (the context is the last
    /// [`max_len`](Self::max_len) tokens). Sampling draws from a RNG seeded by `seed`, so the
    /// same seed gives the same text.
    pub fn generate(
        &self,
        prompt: &[usize],
        max_new_tokens: usize,
        sampling: Sampling,
        seed: Seed,
    ) -> Result<Vec<usize>> {
        self.generate_streaming(prompt, max_new_tokens, sampling, seed, &mut |_| true)
    }

    /// [`CausalLm::generate`], handing each new token to `on_token` as soon as it is chosen
    /// (for streaming to a terminal); `on_token` returning false stops the generation there.
    pub fn generate_streaming(
        &self,
        prompt: &[usize],
        max_new_tokens: usize,
        sampling: Sampling,
        seed: Seed,
        on_token: &mut dyn FnMut(usize) -> bool,
    ) -> Result<Vec<usize>> {
        if prompt.is_empty() {
            return Err(invalid(
                "causal-lm",
                "generation needs a prompt of at least one token",
            ));
        }
        if let Some(&bad) = prompt.iter().find(|&&t| t >= self.vocab_size) {
            return Err(invalid(
                "causal-lm",
                format!(
                    "prompt token {bad} is outside the vocabulary 0..{}",
                    self.vocab_size
                ),
            ));
        }
        sampling.check()?;
        let device = self.lm_head.weight.device();
        let mut rng = seed.rng("generate");
        let mut tokens = prompt.to_vec();
        for _ in 0..max_new_tokens {
            let start = tokens.len().saturating_sub(self.max_len());
            let context: Vec<i64> = tokens[start..].iter().map(|&t| t as i64).collect();
            let len = context.len();
            let input = Tensor::<2, Int>::from_data(TensorData::new(context, [1, len]), &device);
            let logits = self
                .forward(input)
                .slice([0..1, len - 1..len, 0..self.vocab_size]);
            let logits: Vec<f32> = logits
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| Error::InvalidConfig {
                    model: "causal-lm".into(),
                    reason: format!("reading logits: {e:?}"),
                })?;
            let next = pick(&logits, sampling, &mut rng);
            tokens.push(next);
            if !on_token(next) {
                break;
            }
        }
        Ok(tokens)
    }

    /// Summary for `[batch, seq]` token input.
    pub fn summary(&self, name: &str, input_shape: &[usize]) -> Result<ModelSummary> {
        check_token_input("causal-lm", input_shape, self.embedding.max_len)?;
        let device = self.lm_head.weight.device();
        let (n, seq) = (input_shape[0], input_shape[1]);
        let mut b = SummaryBuilder::new(name, input_shape);
        let tokens = Tensor::<2, Int>::zeros([n, seq], &device);
        let x = summarize_embedding(&mut b, &self.embedding, tokens);
        let mask = generate_autoregressive_mask(n, seq, &device);
        let x = summarize_encoder(&mut b, "encoder", &self.encoder, x, None, Some(mask));
        let x = self.norm.forward(x);
        b.layer("norm", "LayerNorm", &self.norm, &x.dims(), 0);
        let [d_in, d_out] = self.lm_head.weight.dims();
        let x = self.lm_head.forward(x);
        b.layer(
            "lm_head",
            "Linear",
            &self.lm_head,
            &x.dims(),
            mult_adds::linear(n * seq, d_in, d_out),
        );
        Ok(b.finish(self))
    }
}

/// Picks a token from one row of logits.
fn pick(logits: &[f32], sampling: Sampling, rng: &mut impl rand::Rng) -> usize {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                if v > best.1 { (i, v) } else { best }
            })
            .0
    };
    match sampling {
        Sampling::Greedy => argmax(),
        Sampling::Sample { temperature, top_k }
        | Sampling::Nucleus {
            temperature, top_k, ..
        } => {
            let mut order: Vec<usize> = (0..logits.len()).collect();
            order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
            order.truncate(top_k.unwrap_or(logits.len()).min(logits.len()));
            let max = f64::from(logits[order[0]]);
            let mut weights: Vec<f64> = order
                .iter()
                .map(|&i| ((f64::from(logits[i]) - max) / temperature).exp())
                .collect();
            if let Sampling::Nucleus { top_p, .. } = sampling {
                // The smallest prefix (most likely first) whose probability reaches top_p.
                let total: f64 = weights.iter().sum();
                let (mut mass, mut keep) = (0.0, 0);
                while keep < weights.len() && mass < top_p * total {
                    mass += weights[keep];
                    keep += 1;
                }
                weights.truncate(keep.max(1));
                order.truncate(keep.max(1));
            }
            let total: f64 = weights.iter().sum();
            let mut r = rng.random::<f64>() * total;
            for (w, &i) in weights.iter().zip(&order) {
                if r < *w {
                    return i;
                }
                r -= w;
            }
            order[order.len() - 1]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nucleus_sampling_keeps_the_smallest_set_reaching_top_p() {
        // Probabilities 0.5, 0.3, 0.15, 0.05 (temperature 1).
        let logits: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
        let mut rng = Seed(3).rng("test");
        let mut seen = [0usize; 4];
        let nucleus = Sampling::Nucleus {
            temperature: 1.0,
            top_k: None,
            top_p: 0.75,
        };
        for _ in 0..4000 {
            seen[pick(&logits, nucleus, &mut rng)] += 1;
        }
        // 0.5 + 0.3 reaches 0.75: only the first two, in ratio 5:3.
        assert_eq!((seen[2], seen[3]), (0, 0), "{seen:?}");
        let share = seen[0] as f64 / 4000.0;
        assert!((share - 0.625).abs() < 0.03, "{seen:?}");
        // top_p 1 keeps everything; a tiny top_p is greedy.
        let tiny = Sampling::Nucleus {
            temperature: 1.0,
            top_k: None,
            top_p: 1e-6,
        };
        assert!((0..50).all(|_| pick(&logits, tiny, &mut rng) == 0));
        assert!(Sampling::from_settings(0.0, None, 0.9) == Sampling::Greedy);
        let bad = Sampling::Nucleus {
            temperature: 1.0,
            top_k: None,
            top_p: 1.5,
        };
        assert!(bad.check().is_err());
    }

    fn small(positions: Positions) -> EncoderConfig {
        EncoderConfig {
            vocab_size: 20,
            max_len: 16,
            d_model: 16,
            n_heads: 4,
            n_layers: 2,
            d_ff: 32,
            dropout: 0.0,
            norm_first: true,
            positions,
            layer_norm_eps: 1e-5,
        }
    }

    fn ids(values: &[i64], device: &Device) -> Tensor<2, Int> {
        Tensor::from_data(TensorData::new(values.to_vec(), [1, values.len()]), device)
    }

    #[test]
    fn causal_lm_does_not_look_ahead() {
        let device = Device::flex();
        let lm = CausalLmConfig {
            encoder: small(Positions::Learned),
        }
        .init(&device)
        .unwrap();
        let a = lm.forward(ids(&[1, 2, 3, 4], &device));
        let b = lm.forward(ids(&[1, 2, 3, 9], &device));
        assert_eq!(a.dims(), [1, 4, 20]);
        let first3 = |t: Tensor<3>| {
            t.slice([0..1, 0..3, 0..20])
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let last = |t: Tensor<3>| {
            t.slice([0..1, 3..4, 0..20])
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        assert_eq!(
            first3(a.clone()),
            first3(b.clone()),
            "changing token 3 changed earlier positions"
        );
        assert_ne!(last(a), last(b));
    }

    #[test]
    fn generation_is_seeded() {
        let device = Device::flex();
        let lm = CausalLmConfig {
            encoder: small(Positions::Sinusoidal),
        }
        .init(&device)
        .unwrap();
        let sample = Sampling::Sample {
            temperature: 1.5,
            top_k: Some(10),
        };
        let a = lm.generate(&[1, 2], 12, sample, Seed(1)).unwrap();
        assert_eq!(a.len(), 14);
        assert_eq!(&a[..2], &[1, 2]);
        assert_eq!(a, lm.generate(&[1, 2], 12, sample, Seed(1)).unwrap());
        assert_ne!(a, lm.generate(&[1, 2], 12, sample, Seed(2)).unwrap());
        let greedy = lm.generate(&[1, 2], 20, Sampling::Greedy, Seed(1)).unwrap();
        assert_eq!(
            greedy,
            lm.generate(&[1, 2], 20, Sampling::Greedy, Seed(9)).unwrap()
        );
        assert!(a.iter().all(|&t| t < 20));
        let err = lm
            .generate(&[25], 1, Sampling::Greedy, Seed(1))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("prompt token 25 is outside the vocabulary 0..20"),
            "{err}"
        );
    }

    #[test]
    fn top_k_one_is_greedy() {
        let logits = [0.1, 2.0, -1.0, 1.9];
        let mut rng = Seed(3).rng("t");
        for _ in 0..20 {
            assert_eq!(
                pick(
                    &logits,
                    Sampling::Sample {
                        temperature: 5.0,
                        top_k: Some(1)
                    },
                    &mut rng
                ),
                1
            );
        }
        assert_eq!(pick(&logits, Sampling::Greedy, &mut rng), 1);
    }

    #[test]
    fn padding_does_not_change_mean_pooled_logits() {
        let device = Device::flex();
        let clf = TransformerClassifierConfig {
            encoder: small(Positions::Learned),
            num_classes: 3,
            pooling: Pooling::Mean,
        }
        .init(&device)
        .unwrap();
        let plain = clf.forward(ids(&[4, 5, 6], &device), None);
        let mask = Tensor::<2, Bool>::from_data(
            TensorData::new(vec![false, false, false, true, true], [1, 5]),
            &device,
        );
        let padded = clf.forward(ids(&[4, 5, 6, 0, 0], &device), Some(mask));
        let a = plain.into_data().try_to_vec::<f32>().unwrap();
        let b = padded.into_data().try_to_vec::<f32>().unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-4, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn heads_must_divide_width() {
        let mut config = small(Positions::Learned);
        config.d_model = 18;
        let err = CausalLmConfig { encoder: config }
            .init(&Device::flex())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("d_model 18 is not divisible by n_heads 4"),
            "{err}"
        );
    }
}
