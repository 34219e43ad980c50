//! The Llama architecture (Llama 2/3, SmolLM, TinyLlama, Mistral without sliding windows):
//! RMSNorm, rotary position embeddings (Hugging Face's rotate-half layout, theta and scaling
//! from the config), SwiGLU feed-forward, grouped-query attention, tied or separate output
//! embedding, and a preallocated [`KvCache`] for generation.
//!
//! Weights come from elsewhere (`kiln_transfer::llama` reads GGUF files and Hugging Face
//! folders); this module knows the math, the cache and sampling ([`Sampler`], [`generate`]).

use std::ops::ControlFlow;

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig, RmsNorm, RmsNormConfig};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData, activation};
use rand::RngExt;
use serde::{Deserialize, Serialize};

use crate::common::invalid;
use crate::{Error, Result};

const MODEL: &str = "llama";

/// How rotary frequencies are rescaled for contexts longer than the pretraining one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rope_type", rename_all = "lowercase")]
pub enum RopeScaling {
    /// Positions divided by `factor` (Hugging Face `linear`, GGUF `rope.scaling.type =
    /// linear`).
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// Llama 3.1's smooth per-frequency scaling (Hugging Face `llama3`).
    Llama3 {
        /// Scale of the low frequencies.
        factor: f64,
        /// Wavelength bound below which frequencies are scaled fully.
        low_freq_factor: f64,
        /// Wavelength bound above which they are kept.
        high_freq_factor: f64,
        /// The pretraining context.
        original_max_position_embeddings: usize,
    },
    /// One divisor per frequency (GGUF's `rope_freqs.weight` tensor, how llama.cpp stores
    /// Llama 3.1's scaling).
    Factors {
        /// `head_dim / 2` divisors.
        factors: Vec<f64>,
    },
}

/// A Llama model's shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Decoder blocks.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `num_heads`).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// RoPE scaling, if any.
    pub rope_scaling: Option<RopeScaling>,
    /// The longest context the model was trained for.
    pub max_position_embeddings: usize,
    /// Whether the output projection is the token embedding's transpose.
    pub tie_word_embeddings: bool,
}

/// The parts of a Hugging Face `config.json` a Llama model needs.
#[derive(Deserialize)]
struct HfConfig {
    #[serde(default)]
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    rope_theta: f64,
    #[serde(default)]
    rope_scaling: Option<serde_json::Value>,
    #[serde(default = "default_positions")]
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    hidden_act: Option<String>,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_positions() -> usize {
    2048
}

impl LlamaConfig {
    /// SmolLM2-135M's shape (30 blocks of width 576, 9 query and 3 key/value heads).
    pub fn smollm2_135m() -> Self {
        Self {
            vocab_size: 49_152,
            hidden_size: 576,
            intermediate_size: 1536,
            num_layers: 30,
            num_heads: 9,
            num_kv_heads: 3,
            head_dim: 64,
            rms_norm_eps: 1e-5,
            rope_theta: 100_000.0,
            rope_scaling: None,
            max_position_embeddings: 8192,
            tie_word_embeddings: true,
        }
    }

    /// The config of a Hugging Face `config.json` (`model_type` `llama` or `mistral`).
    pub fn from_hf_json(text: &str) -> Result<Self> {
        let hf: HfConfig =
            serde_json::from_str(text).map_err(|e| invalid(MODEL, format!("config.json: {e}")))?;
        if let Some(t) = &hf.model_type
            && !matches!(t.as_str(), "llama" | "mistral")
        {
            return Err(invalid(
                MODEL,
                format!("config.json: model_type `{t}` is not a Llama-architecture model"),
            ));
        }
        if let Some(act) = &hf.hidden_act
            && act != "silu"
        {
            return Err(invalid(
                MODEL,
                format!("config.json: hidden_act `{act}` (Llama's SwiGLU uses silu)"),
            ));
        }
        if hf.attention_bias || hf.mlp_bias {
            return Err(invalid(
                MODEL,
                "config.json: attention_bias or mlp_bias is set; Kiln's Llama has no biases",
            ));
        }
        let rope_scaling = match &hf.rope_scaling {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => {
                let kind = v
                    .get("rope_type")
                    .or_else(|| v.get("type"))
                    .and_then(|k| k.as_str())
                    .unwrap_or("");
                let num = |k: &str| {
                    v.get(k).and_then(|x| x.as_f64()).ok_or_else(|| {
                        invalid(
                            MODEL,
                            format!("config.json: rope_scaling `{kind}` lacks `{k}`"),
                        )
                    })
                };
                match kind {
                    "default" => None,
                    "linear" => Some(RopeScaling::Linear {
                        factor: num("factor")?,
                    }),
                    "llama3" => Some(RopeScaling::Llama3 {
                        factor: num("factor")?,
                        low_freq_factor: num("low_freq_factor")?,
                        high_freq_factor: num("high_freq_factor")?,
                        original_max_position_embeddings: num("original_max_position_embeddings")?
                            as usize,
                    }),
                    other => {
                        return Err(invalid(
                            MODEL,
                            format!(
                                "config.json: rope_scaling type `{other}` is not supported (default, linear and llama3 are)"
                            ),
                        ));
                    }
                }
            }
        };
        let config = Self {
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_layers: hf.num_hidden_layers,
            num_heads: hf.num_attention_heads,
            num_kv_heads: hf.num_key_value_heads.unwrap_or(hf.num_attention_heads),
            head_dim: hf
                .head_dim
                .unwrap_or(hf.hidden_size / hf.num_attention_heads.max(1)),
            rms_norm_eps: hf.rms_norm_eps,
            rope_theta: hf.rope_theta,
            rope_scaling,
            max_position_embeddings: hf.max_position_embeddings,
            tie_word_embeddings: hf.tie_word_embeddings,
        };
        config.check()?;
        Ok(config)
    }

    /// Checks that the shape is one a Llama model can have.
    pub fn check(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("num_kv_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(invalid(MODEL, format!("{name} must be positive")));
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(invalid(
                MODEL,
                format!(
                    "{} query heads cannot share {} key/value heads evenly",
                    self.num_heads, self.num_kv_heads
                ),
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(invalid(
                MODEL,
                format!(
                    "head_dim {} must be even for rotary embeddings",
                    self.head_dim
                ),
            ));
        }
        if !(self.rms_norm_eps > 0.0 && self.rope_theta > 1.0) {
            return Err(invalid(
                MODEL,
                format!(
                    "rms_norm_eps {} must be positive and rope_theta {} above 1",
                    self.rms_norm_eps, self.rope_theta
                ),
            ));
        }
        if let Some(RopeScaling::Factors { factors }) = &self.rope_scaling
            && factors.len() != self.head_dim / 2
        {
            return Err(invalid(
                MODEL,
                format!(
                    "{} RoPE frequency factors for head_dim {} (expected {})",
                    factors.len(),
                    self.head_dim,
                    self.head_dim / 2
                ),
            ));
        }
        Ok(())
    }

    /// The model with freshly initialised weights (loaders overwrite them).
    pub fn init(&self, device: &Device) -> Result<Llama> {
        self.check()?;
        let (d, hd) = (self.hidden_size, self.head_dim);
        let linear = |i, o| LinearConfig::new(i, o).with_bias(false).init(device);
        let norm = || {
            RmsNormConfig::new(d)
                .with_epsilon(self.rms_norm_eps)
                .init(device)
        };
        let layers = (0..self.num_layers)
            .map(|_| LlamaBlock {
                input_norm: norm(),
                q_proj: linear(d, self.num_heads * hd),
                k_proj: linear(d, self.num_kv_heads * hd),
                v_proj: linear(d, self.num_kv_heads * hd),
                o_proj: linear(self.num_heads * hd, d),
                post_attention_norm: norm(),
                gate_proj: linear(d, self.intermediate_size),
                up_proj: linear(d, self.intermediate_size),
                down_proj: linear(self.intermediate_size, d),
            })
            .collect();
        Ok(Llama {
            embed_tokens: EmbeddingConfig::new(self.vocab_size, d).init(device),
            layers,
            norm: norm(),
            lm_head: linear(d, self.vocab_size),
            config: self.clone(),
            inv_freq: self.inv_freq(),
            lora_dropout: 0.0,
        })
    }

    /// The rotary inverse frequencies, scaling applied.
    pub fn inv_freq(&self) -> Vec<f64> {
        let half = self.head_dim / 2;
        let base: Vec<f64> = (0..half)
            .map(|i| 1.0 / self.rope_theta.powf(2.0 * i as f64 / self.head_dim as f64))
            .collect();
        match &self.rope_scaling {
            None => base,
            Some(RopeScaling::Linear { factor }) => base.iter().map(|f| f / factor).collect(),
            Some(RopeScaling::Factors { factors }) => {
                base.iter().zip(factors).map(|(f, s)| f / s).collect()
            }
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            }) => {
                let old = *original_max_position_embeddings as f64;
                let (low_wavelen, high_wavelen) = (old / low_freq_factor, old / high_freq_factor);
                base.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen > low_wavelen {
                            f / factor
                        } else if wavelen < high_wavelen {
                            f
                        } else {
                            let smooth = (old / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        }
    }

    /// Parameters (the tied output embedding counted once).
    pub fn num_params(&self) -> usize {
        let (d, hd, f) = (self.hidden_size, self.head_dim, self.intermediate_size);
        let attn = d * hd * (2 * self.num_heads + 2 * self.num_kv_heads);
        let block = attn + 3 * d * f + 2 * d;
        let embed = self.vocab_size * d;
        embed + self.num_layers * block + d + if self.tie_word_embeddings { 0 } else { embed }
    }

    /// Multiply-adds to process one token at context position `position` (the weight
    /// matrices, the attention over `position + 1` cached keys and the output projection).
    pub fn mult_adds_per_token(&self, position: usize) -> usize {
        let (d, hd, f) = (self.hidden_size, self.head_dim, self.intermediate_size);
        let weights = d * hd * (2 * self.num_heads + 2 * self.num_kv_heads) + 3 * d * f;
        let attention = 2 * self.num_heads * hd * (position + 1);
        self.num_layers * (weights + attention) + d * self.vocab_size
    }

    /// Bytes of f32 key/value cache per token of context.
    pub fn kv_cache_bytes_per_token(&self) -> usize {
        2 * self.num_layers * self.num_kv_heads * self.head_dim * 4
    }
}

/// One decoder block: pre-norm attention and pre-norm SwiGLU, both residual.
#[derive(Module, Debug)]
pub struct LlamaBlock {
    /// RMSNorm before attention.
    pub input_norm: RmsNorm,
    /// Query projection `[hidden, heads * head_dim]`.
    pub q_proj: Linear,
    /// Key projection `[hidden, kv_heads * head_dim]`.
    pub k_proj: Linear,
    /// Value projection.
    pub v_proj: Linear,
    /// Output projection.
    pub o_proj: Linear,
    /// RMSNorm before the feed-forward.
    pub post_attention_norm: RmsNorm,
    /// SwiGLU gate.
    pub gate_proj: Linear,
    /// SwiGLU up projection.
    pub up_proj: Linear,
    /// Down projection.
    pub down_proj: Linear,
}

/// A Llama decoder (its parameter paths mirror Hugging Face's without `model.`).
#[derive(Module, Debug)]
pub struct Llama {
    /// Token embedding `[vocab, hidden]`.
    pub embed_tokens: Embedding,
    /// The decoder blocks.
    pub layers: Vec<LlamaBlock>,
    /// Final RMSNorm.
    pub norm: RmsNorm,
    /// Output projection `[hidden, vocab]` (a contiguous copy of the embedding's transpose
    /// when the embeddings are tied: one layout for both kinds, and no transpose per token).
    pub lm_head: Linear,
    #[module(skip)]
    config: LlamaConfig,
    #[module(skip)]
    inv_freq: Vec<f64>,
    /// Dropout on the input of LoRA adapters while training (PEFT's `lora_dropout`).
    #[module(skip)]
    lora_dropout: f64,
}

/// The keys and values of every block for the tokens seen so far, in buffers allocated once
/// for `capacity` tokens; each step writes its rows in place.
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    len: usize,
    capacity: usize,
    batch: usize,
}

impl KvCache {
    /// An empty cache for `batch` sequences of up to `capacity` tokens.
    pub fn new(config: &LlamaConfig, batch: usize, capacity: usize, device: &Device) -> Self {
        let shape = [batch, config.num_kv_heads, capacity, config.head_dim];
        let layers = (0..config.num_layers)
            .map(|_| Some((Tensor::zeros(shape, device), Tensor::zeros(shape, device))))
            .collect();
        Self {
            layers,
            len: 0,
            capacity,
            batch,
        }
    }

    /// Tokens cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most tokens it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets the cached tokens (the buffers stay allocated).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Keeps only the first `len` tokens (e.g. to reuse a shared prompt prefix).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

fn rotate_half(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let [b, h, t, d] = x.dims();
    let x1 = x.clone().slice([0..b, 0..h, 0..t, 0..d / 2]);
    let x2 = x.clone().slice([0..b, 0..h, 0..t, d / 2..d]);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos.clone() + rotated * sin.clone()
}

/// `x · W` of a projection. A weight carrying a LoRA adapter (burn's `Module::apply_lora`)
/// is computed unmerged, `x · W₀ + s · (drop(x) · A) · B`, as PEFT does: the frozen base gets
/// no weight-sized gradient (burn's composed `W₀ + s·A·B` would compute one per step and
/// layer), and the adapter's input can take dropout while training.
fn project(linear: &Linear, x: Tensor<3>, dropout: f64) -> Tensor<3> {
    let Some(adapter) = linear.weight.adapter() else {
        return linear.forward(x);
    };
    let [b, t, d] = x.dims();
    let base = linear.weight.base();
    // A QLoRA base is stored quantized; the product needs its float values.
    let base = if base.dtype().is_float() {
        base
    } else {
        base.dequantize()
    };
    let d_out = base.dims()[1];
    let flat = x.reshape([b * t, d]);
    let low_in = if dropout > 0.0 && flat.device().is_autodiff() {
        let keep = 1.0 - dropout;
        flat.clone() * flat.random_like(burn::tensor::Distribution::Bernoulli(keep)) / keep
    } else {
        flat.clone()
    };
    let low = low_in
        .matmul(adapter.a.val())
        .matmul(adapter.b.val())
        .mul_scalar(adapter.scale);
    let mut y = flat.matmul(base) + low;
    if let Some(bias) = &linear.bias {
        y = y + bias.val().unsqueeze_dim(0);
    }
    y.reshape([b, t, d_out])
}

/// The projections LoRA can adapt, by their parameter names in a block (Hugging Face's and
/// PEFT's `target_modules` names).
pub const LORA_TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// The parameter group of the `targets` projections' weights in every block
/// (`layers.N.<target>.weight`), for `burn::module::Lora::set_param_group`.
pub fn lora_param_group(targets: &[String]) -> Result<burn::module::ParamGroup> {
    if targets.is_empty() {
        return Err(invalid(MODEL, "LoRA needs at least one target projection"));
    }
    if let Some(bad) = targets.iter().find(|t| !LORA_TARGETS.contains(&t.as_str())) {
        return Err(invalid(
            MODEL,
            format!(
                "unknown LoRA target `{bad}`: expected some of {}",
                LORA_TARGETS.join(", ")
            ),
        ));
    }
    let pattern = format!(r"^layers\.\d+\.({})\.weight$", targets.join("|"));
    burn::module::ParamGroup::from_regex(&pattern).map_err(|e| invalid(MODEL, format!("{e:?}")))
}

impl LlamaBlock {
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        x: Tensor<3>,
        config: &LlamaConfig,
        cos: &Tensor<4>,
        sin: &Tensor<4>,
        cache: Option<(&mut Option<(Tensor<4>, Tensor<4>)>, usize)>,
        mask: Option<&Tensor<4, Bool>>,
        dropout: f64,
    ) -> Tensor<3> {
        let [b, t, _] = x.dims();
        let (h, kv, hd) = (config.num_heads, config.num_kv_heads, config.head_dim);
        let g = h / kv;
        let normed = self.input_norm.forward(x.clone());
        let q = project(&self.q_proj, normed.clone(), dropout)
            .reshape([b, t, h, hd])
            .swap_dims(1, 2);
        let k = project(&self.k_proj, normed.clone(), dropout)
            .reshape([b, t, kv, hd])
            .swap_dims(1, 2);
        let v = project(&self.v_proj, normed, dropout)
            .reshape([b, t, kv, hd])
            .swap_dims(1, 2);
        let q = rotate_half(q, cos, sin);
        let k = rotate_half(k, cos, sin);
        let (k, v) = match cache {
            None => (k, v),
            Some((slot, start)) => {
                let (ck, cv) = slot.take().expect("a cache slot per layer");
                let end = start + t;
                let ck = ck.slice_assign([0..b, 0..kv, start..end, 0..hd], k);
                let cv = cv.slice_assign([0..b, 0..kv, start..end, 0..hd], v);
                let used = (
                    ck.clone().slice([0..b, 0..kv, 0..end, 0..hd]),
                    cv.clone().slice([0..b, 0..kv, 0..end, 0..hd]),
                );
                *slot = Some((ck, cv));
                used
            }
        };
        // Grouped-query attention without repeating keys: the g query heads that share a
        // key/value head become g·t query rows of that head.
        let q = q.reshape([b, kv, g * t, hd]);
        let out = attention(
            q,
            k,
            v,
            mask.cloned(),
            None,
            AttentionModuleOptions::default(),
        )
        .reshape([b, h, t, hd])
        .swap_dims(1, 2)
        .reshape([b, t, h * hd]);
        let x = x + project(&self.o_proj, out, dropout);
        let normed = self.post_attention_norm.forward(x.clone());
        let gate = activation::silu(project(&self.gate_proj, normed.clone(), dropout));
        let up = project(&self.up_proj, normed, dropout);
        x + project(&self.down_proj, gate * up, dropout)
    }
}

impl Llama {
    /// A model from its parts (how loaders build it), checked against `config`.
    pub fn from_parts(
        config: LlamaConfig,
        embed_tokens: Embedding,
        layers: Vec<LlamaBlock>,
        norm: RmsNorm,
        lm_head: Linear,
    ) -> Result<Self> {
        config.check()?;
        let (v, d) = (config.vocab_size, config.hidden_size);
        let q = config.num_heads * config.head_dim;
        let kv = config.num_kv_heads * config.head_dim;
        let f = config.intermediate_size;
        let mut bad = Vec::new();
        let mut want = |name: String, found: [usize; 2], expected: [usize; 2]| {
            if found != expected {
                bad.push(format!("{name} is {found:?}, expected {expected:?}"));
            }
        };
        want("embed_tokens".into(), embed_tokens.weight.dims(), [v, d]);
        want("lm_head".into(), lm_head.weight.dims(), [d, v]);
        want(
            "the layer count".into(),
            [layers.len(), 0],
            [config.num_layers, 0],
        );
        for (i, l) in layers.iter().enumerate() {
            want(format!("layers.{i}.q_proj"), l.q_proj.weight.dims(), [d, q]);
            want(
                format!("layers.{i}.k_proj"),
                l.k_proj.weight.dims(),
                [d, kv],
            );
            want(
                format!("layers.{i}.v_proj"),
                l.v_proj.weight.dims(),
                [d, kv],
            );
            want(format!("layers.{i}.o_proj"), l.o_proj.weight.dims(), [q, d]);
            want(
                format!("layers.{i}.gate_proj"),
                l.gate_proj.weight.dims(),
                [d, f],
            );
            want(
                format!("layers.{i}.up_proj"),
                l.up_proj.weight.dims(),
                [d, f],
            );
            want(
                format!("layers.{i}.down_proj"),
                l.down_proj.weight.dims(),
                [f, d],
            );
        }
        if let Some(first) = bad.first() {
            return Err(invalid(
                MODEL,
                format!("{first} ({} mismatches in all)", bad.len()),
            ));
        }
        let inv_freq = config.inv_freq();
        Ok(Self {
            embed_tokens,
            layers,
            norm,
            lm_head,
            config,
            inv_freq,
            lora_dropout: 0.0,
        })
    }

    /// Its config.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Attaches LoRA adapters (burn's [`burn::module::Lora`]: `A ~ N(0, 1/rank)`, `B = 0`, so
    /// the output is unchanged until training moves them) to the `targets` projections of every
    /// block, freezing every other parameter; `dropout` applies to the adapters' input while
    /// training. Merge them with `Module::materialize`.
    pub fn with_lora(
        self,
        rank: usize,
        alpha: f64,
        dropout: f64,
        targets: &[String],
    ) -> Result<Self> {
        if rank == 0 || !alpha.is_finite() || alpha <= 0.0 || !(0.0..1.0).contains(&dropout) {
            return Err(invalid(
                MODEL,
                format!(
                    "LoRA needs rank ≥ 1, alpha > 0 and dropout in [0, 1), found {rank}, {alpha} and {dropout}"
                ),
            ));
        }
        let group = lora_param_group(targets)?;
        let lora = burn::module::Lora::new(rank, alpha).set_param_group(group);
        let mut model = self.apply_lora(lora);
        model.lora_dropout = dropout;
        Ok(model)
    }

    /// QLoRA: as [`Llama::with_lora`], with the adapted projections' base weights stored
    /// quantized (burn's `QLora`: symmetric `bits`-bit integers, 8 or 4, one scale per block
    /// of up to 64 input rows of a column), dequantized in each product; the adapters stay f32.
    pub fn with_qlora(
        self,
        rank: usize,
        alpha: f64,
        dropout: f64,
        targets: &[String],
        bits: u8,
    ) -> Result<Self> {
        use burn::tensor::quantization::{
            Calibration, QuantScheme, QuantStore, QuantValue, ScaleDtype,
        };
        let value = match bits {
            8 => QuantValue::Q8S,
            4 => QuantValue::Q4S,
            other => {
                return Err(invalid(
                    MODEL,
                    format!("QLoRA quantizes base weights to 8 or 4 bits, not {other}"),
                ));
            }
        };
        // Every adapted projection has at least 64 input rows here (hidden sizes are
        // multiples of 64 in every Llama); others fall back to the largest divisor.
        let rows = self.config.hidden_size.min(self.config.intermediate_size);
        let block = (1..=64)
            .rev()
            .find(|b| rows.is_multiple_of(*b))
            .unwrap_or(1) as u8;
        let scheme = QuantScheme::default()
            .with_value(value)
            .with_store(QuantStore::Native)
            .per_block(vec![block, 1], ScaleDtype::F32);
        let group = lora_param_group(targets)?;
        let mut quantizer = burn::module::Quantizer::new(Calibration::MinMax, scheme);
        quantizer.set_param_group(group.clone());
        if rank == 0 || !alpha.is_finite() || alpha <= 0.0 || !(0.0..1.0).contains(&dropout) {
            return Err(invalid(
                MODEL,
                format!(
                    "LoRA needs rank ≥ 1, alpha > 0 and dropout in [0, 1), found {rank}, {alpha} and {dropout}"
                ),
            ));
        }
        let lora = burn::module::Lora::new(rank, alpha).set_param_group(group);
        let mut model = self.apply_qlora(burn::module::QLora::new(lora, quantizer));
        model.lora_dropout = dropout;
        Ok(model)
    }

    /// The adapter dropout set by [`Llama::with_lora`].
    pub fn lora_dropout(&self) -> f64 {
        self.lora_dropout
    }

    fn device(&self) -> Device {
        self.embed_tokens.weight.device()
    }

    /// The cos and sin tables `[1, 1, t, head_dim]` for positions `start..start + t`.
    fn rope_tables(&self, start: usize, t: usize) -> (Tensor<4>, Tensor<4>) {
        let hd = self.config.head_dim;
        let (mut cos, mut sin) = (Vec::with_capacity(t * hd), Vec::with_capacity(t * hd));
        for p in start..start + t {
            for half in 0..2 {
                let _ = half;
                for &f in &self.inv_freq {
                    let angle = p as f64 * f;
                    cos.push(angle.cos() as f32);
                    sin.push(angle.sin() as f32);
                }
            }
        }
        let device = self.device();
        (
            Tensor::from_data(TensorData::new(cos, [1, 1, t, hd]), &device),
            Tensor::from_data(TensorData::new(sin, [1, 1, t, hd]), &device),
        )
    }

    /// The final hidden states `[batch, t, hidden]` of `tokens` `[batch, t]`, which follow
    /// the `cache`'s tokens when there is a cache (and are appended to it).
    pub fn forward_hidden(
        &self,
        tokens: Tensor<2, Int>,
        mut cache: Option<&mut KvCache>,
    ) -> Result<Tensor<3>> {
        let [b, t] = tokens.dims();
        let start = cache.as_ref().map_or(0, |c| c.len);
        if t == 0 {
            return Err(invalid(MODEL, "a forward pass needs at least one token"));
        }
        if let Some(c) = &cache {
            if c.batch != b {
                return Err(invalid(
                    MODEL,
                    format!("the cache holds {} sequences, the input {b}", c.batch),
                ));
            }
            if start + t > c.capacity {
                return Err(Error::ContextLength {
                    needed: start + t,
                    limit: c.capacity,
                    what: "the KV cache".into(),
                });
            }
        }
        if start + t > self.config.max_position_embeddings {
            return Err(Error::ContextLength {
                needed: start + t,
                limit: self.config.max_position_embeddings,
                what: "the model's context".into(),
            });
        }
        let (cos, sin) = self.rope_tables(start, t);
        let end = start + t;
        let g = self.config.num_heads / self.config.num_kv_heads;
        // Causal mask over the g·t query rows of each key/value head (true = hidden); a
        // single new token sees every cached one and needs none.
        let mask = (t > 1).then(|| {
            let mut m = Vec::with_capacity(g * t * end);
            for _ in 0..g {
                for i in 0..t {
                    m.extend((0..end).map(|j| j > start + i));
                }
            }
            let kv = self.config.num_kv_heads;
            Tensor::<4, Bool>::from_data(TensorData::new(m, [1, 1, g * t, end]), &self.device())
                .expand([b, kv, g * t, end])
        });
        let mut x = self.embed_tokens.forward(tokens);
        for (i, layer) in self.layers.iter().enumerate() {
            let slot = cache.as_mut().map(|c| (&mut c.layers[i], start));
            x = layer.forward(
                x,
                &self.config,
                &cos,
                &sin,
                slot,
                mask.as_ref(),
                self.lora_dropout,
            );
        }
        if let Some(c) = cache {
            c.len = end;
        }
        Ok(self.norm.forward(x))
    }

    /// Logits `[batch, t, vocab]` at every position of `tokens` (after the cache's tokens,
    /// if any).
    pub fn forward(
        &self,
        tokens: Tensor<2, Int>,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor<3>> {
        Ok(self.lm_head.forward(self.forward_hidden(tokens, cache)?))
    }

    /// Logits `[batch, vocab]` of the last position only (what generation needs: the output
    /// projection runs once, not once per prompt token).
    pub fn forward_last(
        &self,
        tokens: Tensor<2, Int>,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor<2>> {
        let hidden = self.forward_hidden(tokens, cache)?;
        let [b, t, d] = hidden.dims();
        let last = hidden.slice([0..b, t - 1..t, 0..d]).reshape([b, d]);
        Ok(self.lm_head.forward(last))
    }

    /// A cache for one sequence of up to `capacity` tokens (at most the model's context).
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        KvCache::new(
            &self.config,
            1,
            capacity.min(self.config.max_position_embeddings),
            &self.device(),
        )
    }
}

/// How the next token is chosen, in Hugging Face's order: repetition penalty, temperature,
/// top-k, top-p, min-p. Temperature 0 is greedy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplingConfig {
    /// Softmax temperature; 0 picks the most likely token.
    pub temperature: f64,
    /// Keep only the k most likely tokens (None: all).
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches p (1: off).
    pub top_p: f64,
    /// Drop tokens less likely than `min_p` times the most likely one (0: off).
    pub min_p: f64,
    /// CTRL's repetition penalty on tokens already in the context (1: off): their positive
    /// logits are divided by it, negative ones multiplied.
    pub repetition_penalty: f64,
    /// Seed of the sampling.
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self::greedy()
    }
}

impl SamplingConfig {
    /// Always the most likely token.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: None,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            seed: 42,
        }
    }

    /// Checks the ranges.
    pub fn check(&self) -> Result<()> {
        let ok = self.temperature >= 0.0
            && self.temperature.is_finite()
            && self.top_k != Some(0)
            && self.top_p > 0.0
            && self.top_p <= 1.0
            && (0.0..1.0).contains(&self.min_p)
            && self.repetition_penalty > 0.0
            && self.repetition_penalty.is_finite();
        if ok {
            Ok(())
        } else {
            Err(Error::Generation(format!(
                "sampling needs temperature >= 0, top_k >= 1, top_p in (0, 1], min_p in [0, 1) and repetition_penalty > 0; found {self:?}"
            )))
        }
    }
}

/// Picks tokens from logits with a [`SamplingConfig`] and its own seeded random stream.
pub struct Sampler {
    config: SamplingConfig,
    rng: rand::rngs::StdRng,
}

impl Sampler {
    /// A sampler (checks the config).
    pub fn new(config: SamplingConfig) -> Result<Self> {
        config.check()?;
        let rng = kiln_core::Seed(config.seed).rng("sampling");
        Ok(Self { config, rng })
    }

    /// The next token from one row of logits, given the tokens so far (for the repetition
    /// penalty).
    pub fn pick(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let c = &self.config;
        if c.repetition_penalty != 1.0 {
            let p = c.repetition_penalty as f32;
            let mut seen = std::collections::HashSet::new();
            for &t in history {
                if let Some(l) = logits.get_mut(t as usize)
                    && seen.insert(t)
                {
                    *l = if *l > 0.0 { *l / p } else { *l * p };
                }
            }
        }
        let argmax = logits
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |best, (i, &v)| {
                if v > best.1 { (i, v) } else { best }
            })
            .0;
        if c.temperature == 0.0 {
            return argmax as u32;
        }
        let mut order: Vec<usize> = (0..logits.len()).collect();
        let k = c.top_k.unwrap_or(logits.len()).min(logits.len());
        if k < order.len() {
            order.select_nth_unstable_by(k - 1, |&a, &b| logits[b].total_cmp(&logits[a]));
            order.truncate(k);
        }
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        let max = f64::from(logits[order[0]]);
        let mut weights: Vec<f64> = order
            .iter()
            .map(|&i| ((f64::from(logits[i]) - max) / c.temperature).exp())
            .collect();
        if c.top_p < 1.0 {
            let total: f64 = weights.iter().sum();
            let (mut mass, mut keep) = (0.0, 0);
            while keep < weights.len() && mass < c.top_p * total {
                mass += weights[keep];
                keep += 1;
            }
            weights.truncate(keep.max(1));
            order.truncate(keep.max(1));
        }
        if c.min_p > 0.0 {
            // Relative to the most likely token (weights[0] is exp(0) = 1).
            let keep = weights.iter().take_while(|&&w| w >= c.min_p).count().max(1);
            weights.truncate(keep);
            order.truncate(keep);
        }
        let total: f64 = weights.iter().sum();
        let mut r = self.rng.random::<f64>() * total;
        for (w, &i) in weights.iter().zip(&order) {
            if r < *w {
                return i as u32;
            }
            r -= w;
        }
        order[order.len() - 1] as u32
    }
}

/// What one [`generate`] call did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenerationStats {
    /// Prompt tokens processed (in one batched forward pass).
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub new_tokens: usize,
    /// Seconds of the prompt's forward pass.
    pub prompt_seconds: f64,
    /// Seconds of the token-by-token steps.
    pub decode_seconds: f64,
    /// Whether generation stopped at a stop token (else at the token budget or the callback).
    pub stopped_at_eos: bool,
}

/// Continues `context`, whose first `cache.len()` tokens are already in `cache` (none for a
/// fresh cache; a chat reuses the previous turns'): one forward pass over the rest, then one
/// cached step per new token, up to `max_new_tokens` or a token of `stop_tokens` (which is
/// passed to `on_token` but not fed back). `on_token` sees every new token and can stop
/// early with `ControlFlow::Break`. The cache then holds `context` and every new token but
/// the last. The repetition penalty sees the whole context.
pub fn generate(
    model: &Llama,
    context: &[u32],
    cache: &mut KvCache,
    max_new_tokens: usize,
    stop_tokens: &[u32],
    sampler: &mut Sampler,
    on_token: &mut dyn FnMut(u32) -> ControlFlow<()>,
) -> Result<GenerationStats> {
    let vocab = model.config.vocab_size;
    if context.is_empty() {
        return Err(Error::Generation("the prompt has no tokens".into()));
    }
    if cache.len() >= context.len() {
        return Err(Error::Generation(format!(
            "the cache already holds {} tokens, the context has {}: nothing to continue",
            cache.len(),
            context.len()
        )));
    }
    if let Some(&bad) = context.iter().find(|&&t| t as usize >= vocab) {
        return Err(Error::Generation(format!(
            "prompt token {bad} is outside the vocabulary 0..{vocab}"
        )));
    }
    let prompt = &context[cache.len()..];
    let needed = context.len() + max_new_tokens.saturating_sub(1);
    if needed > cache.capacity() {
        return Err(Error::ContextLength {
            needed,
            limit: cache.capacity(),
            what: "the KV cache (prompt + new tokens)".into(),
        });
    }
    let device = model.device();
    let ids = |t: &[u32]| {
        let v: Vec<i64> = t.iter().map(|&x| i64::from(x)).collect();
        Tensor::<2, Int>::from_data(TensorData::new(v, [1, t.len()]), &device)
    };
    let mut history = context.to_vec();
    let mut stats = GenerationStats {
        prompt_tokens: prompt.len(),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let mut logits = model.forward_last(ids(prompt), Some(cache))?;
    stats.prompt_seconds = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    for step in 0..max_new_tokens {
        let mut row: Vec<f32> = logits
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| Error::Generation(format!("reading logits: {e:?}")))?;
        let next = sampler.pick(&mut row, &history);
        stats.new_tokens += 1;
        let flow = on_token(next);
        if stop_tokens.contains(&next) {
            stats.stopped_at_eos = true;
            break;
        }
        if flow.is_break() || step + 1 == max_new_tokens {
            break;
        }
        history.push(next);
        logits = model.forward_last(ids(&[next]), Some(cache))?;
    }
    stats.decode_seconds = started.elapsed().as_secs_f64();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> LlamaConfig {
        LlamaConfig {
            vocab_size: 50,
            hidden_size: 16,
            intermediate_size: 24,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 4,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: None,
            max_position_embeddings: 32,
            tie_word_embeddings: false,
        }
    }

    fn sampler(c: SamplingConfig) -> Sampler {
        Sampler::new(c).unwrap()
    }

    fn counts(c: SamplingConfig, logits: &[f32], history: &[u32], n: usize) -> Vec<usize> {
        let mut s = sampler(c);
        let mut seen = vec![0; logits.len()];
        for _ in 0..n {
            seen[s.pick(&mut logits.to_vec(), history) as usize] += 1;
        }
        seen
    }

    #[test]
    fn sampling_filters_follow_their_definitions() {
        // Probabilities 0.5, 0.25, 0.15, 0.1 at temperature 1.
        let logits: Vec<f32> = [0.5f32, 0.25, 0.15, 0.1].iter().map(|p| p.ln()).collect();
        let base = SamplingConfig {
            temperature: 1.0,
            ..SamplingConfig::greedy()
        };
        assert_eq!(
            sampler(SamplingConfig::greedy()).pick(&mut logits.clone(), &[]),
            0
        );
        let top2 = counts(
            SamplingConfig {
                top_k: Some(2),
                ..base.clone()
            },
            &logits,
            &[],
            3000,
        );
        assert_eq!((top2[2], top2[3]), (0, 0), "{top2:?}");
        // 0.5 + 0.25 reaches top_p 0.7: two tokens.
        let nucleus = counts(
            SamplingConfig {
                top_p: 0.7,
                ..base.clone()
            },
            &logits,
            &[],
            3000,
        );
        assert_eq!((nucleus[2], nucleus[3]), (0, 0), "{nucleus:?}");
        // min_p 0.25: tokens below 0.25 · 0.5 = 0.125 go (only the last).
        let min_p = counts(
            SamplingConfig {
                min_p: 0.25,
                ..base.clone()
            },
            &logits,
            &[],
            3000,
        );
        assert!(min_p[2] > 0 && min_p[3] == 0, "{min_p:?}");
        // Plain sampling follows the probabilities (within 4 sd of 3000 draws).
        let all = counts(base.clone(), &logits, &[], 3000);
        assert!(
            (all[0] as f64 - 1500.0).abs() < 4.0 * (3000.0f64 * 0.25).sqrt(),
            "{all:?}"
        );
        // The same seed repeats itself.
        assert_eq!(
            counts(base.clone(), &logits, &[], 50),
            counts(base, &logits, &[], 50)
        );
    }

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative_logits() {
        let c = SamplingConfig {
            repetition_penalty: 2.0,
            ..SamplingConfig::greedy()
        };
        // Token 0 (logit 3) was seen: 3 / 2 = 1.5 < 2, so token 1 wins.
        let mut logits = vec![3.0, 2.0, -1.0];
        assert_eq!(sampler(c.clone()).pick(&mut logits, &[0, 0]), 1);
        assert_eq!(
            logits,
            vec![1.5, 2.0, -1.0],
            "applied once per distinct token"
        );
        let mut logits = vec![-1.0, -1.5, -3.0];
        sampler(c).pick(&mut logits, &[0]);
        assert_eq!(logits[0], -2.0);
    }

    #[test]
    fn rope_scaling_rescales_the_frequencies() {
        let mut c = LlamaConfig::smollm2_135m();
        let base = c.inv_freq();
        assert!((base[1] - 100_000f64.powf(-2.0 / 64.0)).abs() < 1e-15);
        c.rope_scaling = Some(RopeScaling::Linear { factor: 4.0 });
        assert!(
            c.inv_freq()
                .iter()
                .zip(&base)
                .all(|(s, b)| (s * 4.0 - b).abs() < 1e-15)
        );
        c.rope_scaling = Some(RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        });
        let scaled = c.inv_freq();
        // Wavelengths under 8192 / 4 are kept, over 8192 divided by 8, between blended.
        for (s, b) in scaled.iter().zip(&base) {
            let wavelen = 2.0 * std::f64::consts::PI / b;
            if wavelen < 2048.0 {
                assert_eq!(s, b);
            } else if wavelen > 8192.0 {
                assert!((s * 8.0 - b).abs() < 1e-15);
            } else {
                assert!(*s < *b && *s > b / 8.0);
            }
        }
    }

    #[test]
    fn cached_steps_equal_the_full_forward_pass_and_limits_are_errors() {
        let device = Device::flex();
        let model = tiny().init(&device).unwrap();
        let ids: Vec<i64> = vec![3, 14, 15, 9, 2, 6];
        let all = |v: &[i64]| {
            Tensor::<2, Int>::from_data(TensorData::new(v.to_vec(), [1, v.len()]), &device)
        };
        let full: Vec<f32> = model
            .forward(all(&ids), None)
            .unwrap()
            .into_data()
            .try_to_vec()
            .unwrap();
        let mut cache = model.new_cache(8);
        // A prompt of 3 tokens, then one token at a time.
        let mut got: Vec<f32> = model
            .forward(all(&ids[..3]), Some(&mut cache))
            .unwrap()
            .into_data()
            .try_to_vec()
            .unwrap();
        for &t in &ids[3..] {
            let step: Vec<f32> = model
                .forward(all(&[t]), Some(&mut cache))
                .unwrap()
                .into_data()
                .try_to_vec()
                .unwrap();
            got.extend(step);
        }
        assert_eq!(cache.len(), 6);
        let max = got
            .iter()
            .zip(&full)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(max < 1e-5, "cached vs full: {max}");
        let e = model
            .forward(all(&[1, 2, 3]), Some(&mut cache))
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("9 tokens do not fit in the KV cache (8 tokens)"),
            "{e}"
        );
        let e = model.forward(all(&[1; 33]), None).unwrap_err();
        assert!(
            e.to_string().contains("the model's context (32 tokens)"),
            "{e}"
        );
        let mut bad = tiny();
        bad.num_kv_heads = 3;
        assert!(bad.init(&device).is_err());
    }

    #[test]
    fn hugging_face_config_json() {
        let json = r#"{"model_type": "llama", "vocab_size": 100, "hidden_size": 32,
            "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 500000.0,
            "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
            "max_position_embeddings": 131072, "tie_word_embeddings": true}"#;
        let c = LlamaConfig::from_hf_json(json).unwrap();
        assert_eq!(
            (c.head_dim, c.num_kv_heads, c.max_position_embeddings),
            (8, 2, 131_072)
        );
        assert!(matches!(c.rope_scaling, Some(RopeScaling::Llama3 { .. })));
        let gpt2 = json.replace("\"llama\"", "\"gpt2\"");
        assert!(
            LlamaConfig::from_hf_json(&gpt2)
                .unwrap_err()
                .to_string()
                .contains("gpt2")
        );
        let yarn = json.replace("llama3", "yarn");
        assert!(
            LlamaConfig::from_hf_json(&yarn)
                .unwrap_err()
                .to_string()
                .contains("yarn")
        );
    }
}
