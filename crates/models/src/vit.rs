//! ViT-lite: a small Vision Transformer (Dosovitskiy et al. 2021): non-overlapping patches
//! embedded by a strided convolution, a class token, learned positions, a pre-norm encoder, a
//! final LayerNorm and a linear head on the class token.
//!
//! The encoder is Kiln's own ([`VitEncoder`]): the same math and parameter paths as burn-nn's
//! pre-norm `TransformerEncoder` (`encoder.layers.N.{norm_2, mha.{query,key,value,output},
//! norm_1, pwff.{linear_inner,linear_outer}}`), but each layer may keep its own number of
//! attention heads and feed-forward width, which is what structured pruning of heads and
//! neurons produces (burn's attention requires `heads · head_dim = d_model`).

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::transformer::{PositionWiseFeedForward, PositionWiseFeedForwardConfig};
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Distribution, Tensor};
use kiln_core::ModelSummary;
use kiln_core::summary::{SummaryBuilder, mult_adds};
use serde::{Deserialize, Serialize};

use crate::common::{check_dropout, check_image_input, invalid, zeros4};
use crate::transformer::LayerRows;
use crate::{Classifier, Result};

/// Configuration of a [`VitLite`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitConfig {
    /// Input `[channels, height, width]`.
    pub input: [usize; 3],
    /// Square patch size (must divide height and width).
    pub patch: usize,
    /// Embedding width.
    pub dim: usize,
    /// Encoder layers.
    pub depth: usize,
    /// Attention heads (must divide `dim`).
    pub heads: usize,
    /// Feed-forward width.
    pub mlp_dim: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Dropout in the encoder.
    #[serde(default)]
    pub dropout: f64,
    /// Attention heads kept in each layer (empty: `heads` everywhere). Each head is
    /// `dim / heads` wide; structured pruning writes this.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layer_heads: Vec<usize>,
    /// Feed-forward width of each layer (empty: `mlp_dim` everywhere); structured pruning
    /// writes this.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layer_mlp_dims: Vec<usize>,
}

impl VitConfig {
    /// `vit-lite`: 28x28x1, patch 4 (49 patches), dim 64, depth 4, heads 4, MLP 128 (the
    /// reference benchmark's ViT).
    pub fn vit_lite() -> Self {
        Self {
            input: [1, 28, 28],
            patch: 4,
            dim: 64,
            depth: 4,
            heads: 4,
            mlp_dim: 128,
            num_classes: 10,
            dropout: 0.0,
            layer_heads: Vec::new(),
            layer_mlp_dims: Vec::new(),
        }
    }

    /// Width of one attention head (`dim / heads`).
    pub fn head_dim(&self) -> usize {
        self.dim / self.heads.max(1)
    }

    /// Heads of layer `i`.
    pub fn heads_of(&self, i: usize) -> usize {
        self.layer_heads.get(i).copied().unwrap_or(self.heads)
    }

    /// Feed-forward width of layer `i`.
    pub fn mlp_dim_of(&self, i: usize) -> usize {
        self.layer_mlp_dims.get(i).copied().unwrap_or(self.mlp_dim)
    }

    /// `vit-lite-digits`: the same encoder on 8x8 digits with 2x2 patches (16 patches).
    pub fn vit_lite_digits() -> Self {
        Self {
            input: [1, 8, 8],
            patch: 2,
            ..Self::vit_lite()
        }
    }

    /// Number of patches.
    pub fn num_patches(&self) -> usize {
        (self.input[1] / self.patch.max(1)) * (self.input[2] / self.patch.max(1))
    }

    /// Checks the config.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("patch", self.patch),
            ("dim", self.dim),
            ("depth", self.depth),
            ("heads", self.heads),
            ("mlp_dim", self.mlp_dim),
            ("num_classes", self.num_classes),
        ] {
            if v == 0 {
                return Err(invalid("vit-lite", format!("{name} must be at least 1")));
            }
        }
        let [c, h, w] = self.input;
        if c == 0 || h == 0 || w == 0 {
            return Err(invalid(
                "vit-lite",
                format!("input {:?} has a zero dimension", self.input),
            ));
        }
        if !h.is_multiple_of(self.patch) || !w.is_multiple_of(self.patch) {
            return Err(invalid(
                "vit-lite",
                format!(
                    "patch size {} does not divide the {h}x{w} image",
                    self.patch
                ),
            ));
        }
        if !self.dim.is_multiple_of(self.heads) {
            return Err(invalid(
                "vit-lite",
                format!("dim {} is not divisible by heads {}", self.dim, self.heads),
            ));
        }
        for (name, per_layer, max) in [
            ("layer_heads", &self.layer_heads, self.heads),
            ("layer_mlp_dims", &self.layer_mlp_dims, usize::MAX),
        ] {
            if per_layer.is_empty() {
                continue;
            }
            if per_layer.len() != self.depth {
                return Err(invalid(
                    "vit-lite",
                    format!(
                        "{name} has {} entries, expected one per layer ({})",
                        per_layer.len(),
                        self.depth
                    ),
                ));
            }
            if let Some(bad) = per_layer.iter().find(|&&v| v == 0 || v > max) {
                return Err(invalid(
                    "vit-lite",
                    format!("{name} entry {bad} is outside 1..={max}"),
                ));
            }
        }
        check_dropout("vit-lite", self.dropout)
    }

    /// Builds the model.
    pub fn init(&self, device: &Device) -> Result<VitLite> {
        self.validate()?;
        let p = self.patch;
        Ok(VitLite {
            patch_embed: Conv2dConfig::new([self.input[0], self.dim], [p, p])
                .with_stride([p, p])
                .init(device),
            cls_token: Param::from_tensor(Tensor::random(
                [1, 1, self.dim],
                Distribution::Normal(0.0, 0.02),
                device,
            )),
            pos_embed: Param::from_tensor(Tensor::random(
                [1, self.num_patches() + 1, self.dim],
                Distribution::Normal(0.0, 0.02),
                device,
            )),
            encoder: VitEncoder {
                layers: (0..self.depth)
                    .map(|i| self.init_layer(i, device))
                    .collect(),
            },
            norm: LayerNormConfig::new(self.dim).init(device),
            head: LinearConfig::new(self.dim, self.num_classes).init(device),
            input: self.input,
        })
    }
}

impl VitConfig {
    fn init_layer(&self, i: usize, device: &Device) -> VitLayer {
        let (heads, d_k) = (self.heads_of(i), self.head_dim());
        let inner = heads * d_k;
        // burn-nn's defaults for attention and feed-forward (Kaiming uniform, gain 1/sqrt(3)).
        let linear = |d_in, d_out| LinearConfig::new(d_in, d_out).init(device);
        VitLayer {
            mha: HeadAttention {
                query: linear(self.dim, inner),
                key: linear(self.dim, inner),
                value: linear(self.dim, inner),
                output: linear(inner, self.dim),
                dropout: DropoutConfig::new(self.dropout).init(),
                n_heads: heads,
                d_k,
            },
            pwff: PositionWiseFeedForwardConfig::new(self.dim, self.mlp_dim_of(i))
                .with_dropout(self.dropout)
                .init(device),
            norm_1: LayerNormConfig::new(self.dim).init(device),
            norm_2: LayerNormConfig::new(self.dim).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
        }
    }
}

/// Multi-head self-attention whose heads need not fill `d_model`: `query`, `key`, `value` map
/// `d_model → heads · d_k`, `output` maps back. Same math as burn-nn's `MultiHeadAttention`
/// without masks: `softmax(Q Kᵀ / √d_k) V`.
#[derive(Module, Debug)]
pub struct HeadAttention {
    /// Query projection `[d_model, heads · d_k]`.
    pub query: Linear,
    /// Key projection.
    pub key: Linear,
    /// Value projection.
    pub value: Linear,
    /// Output projection `[heads · d_k, d_model]`.
    pub output: Linear,
    /// Dropout on the attention weights.
    pub dropout: Dropout,
    /// Number of heads.
    #[module(skip)]
    pub n_heads: usize,
    /// Width of one head.
    #[module(skip)]
    pub d_k: usize,
}

impl HeadAttention {
    /// `[batch, len, d_model] → [batch, len, d_model]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [batch, len, _] = x.dims();
        let (h, d_k) = (self.n_heads, self.d_k);
        let split = |t: Tensor<3>| t.reshape([batch, len, h, d_k]).swap_dims(1, 2);
        // Scaling Q (len · d_k values per head) is cheaper than scaling the len² scores.
        let q = split(
            self.query
                .forward(x.clone())
                .mul_scalar(1.0 / (d_k as f32).sqrt()),
        );
        let k = split(self.key.forward(x.clone()));
        let v = split(self.value.forward(x));
        let weights = self.dropout.forward(softmax(q.matmul(k.transpose()), 3));
        let context = weights
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([batch, len, h * d_k]);
        self.output.forward(context)
    }
}

/// One pre-norm encoder layer: `x + mha(norm_2(x))`, then `x + pwff(norm_1(x))` (burn-nn's
/// names and order).
#[derive(Module, Debug)]
pub struct VitLayer {
    /// Self-attention.
    pub mha: HeadAttention,
    /// Feed-forward (Linear, GELU, Linear).
    pub pwff: PositionWiseFeedForward,
    /// LayerNorm before the feed-forward.
    pub norm_1: LayerNorm,
    /// LayerNorm before the attention.
    pub norm_2: LayerNorm,
    /// Dropout on both residual branches.
    pub dropout: Dropout,
}

impl VitLayer {
    /// `[batch, len, d_model] → [batch, len, d_model]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.clone()
            + self
                .dropout
                .forward(self.mha.forward(self.norm_2.forward(x)));
        x.clone()
            + self
                .dropout
                .forward(self.pwff.forward(self.norm_1.forward(x)))
    }
}

/// The stack of [`VitLayer`]s.
#[derive(Module, Debug)]
pub struct VitEncoder {
    /// The layers, input first.
    pub layers: Vec<VitLayer>,
}

impl VitEncoder {
    /// Runs every layer.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.layers.iter().fold(x, |x, layer| layer.forward(x))
    }
}

/// ViT-lite. Module paths: `patch_embed`, `cls_token`, `pos_embed`,
/// `encoder.layers.N.{norm_2,mha,norm_1,pwff}`, `norm`, `head`.
#[derive(Module, Debug)]
pub struct VitLite {
    /// Patch embedding (kernel = stride = patch).
    pub patch_embed: Conv2d,
    /// Class token `[1, 1, dim]`.
    pub cls_token: Param<Tensor<3>>,
    /// Positions `[1, patches + 1, dim]`.
    pub pos_embed: Param<Tensor<3>>,
    /// Pre-norm encoder.
    pub encoder: VitEncoder,
    /// Final LayerNorm.
    pub norm: LayerNorm,
    /// Classification head on the class token.
    pub head: Linear,
    #[module(skip)]
    input: [usize; 3],
}

impl VitLite {
    fn tokens(&self, images: Tensor<4>) -> Tensor<3> {
        let x = self.patch_embed.forward(images);
        let [batch, dim, gh, gw] = x.dims();
        let x = x.reshape([batch, dim, gh * gw]).swap_dims(1, 2);
        let cls = self.cls_token.val().expand([batch, 1, dim]);
        Tensor::cat(vec![cls, x], 1) + self.pos_embed.val()
    }

    fn head_on_cls(&self, x: Tensor<3>) -> Tensor<2> {
        let [batch, _, dim] = x.dims();
        let cls = x.slice([0..batch, 0..1, 0..dim]).reshape([batch, dim]);
        self.head.forward(cls)
    }
}

impl Classifier for VitLite {
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward_features(images).1
    }

    fn forward_features(&self, images: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let x = self.encoder.forward(self.tokens(images));
        let x = self.norm.forward(x);
        let [batch, _, dim] = x.dims();
        let cls = x.slice([0..batch, 0..1, 0..dim]).reshape([batch, dim]);
        (cls.clone(), self.head.forward(cls))
    }

    fn summary(&self, name: &str, input_shape: &[usize]) -> Result<ModelSummary> {
        check_image_input("vit-lite", input_shape, self.input)?;
        let n = input_shape[0];
        let device = self.head.weight.device();
        let mut b = SummaryBuilder::new(name, input_shape);
        let images = zeros4(input_shape, &device);
        let patches = self.patch_embed.forward(images.clone());
        let [_, dim, gh, gw] = patches.dims();
        let [_, c_in, kh, kw] = self.patch_embed.weight.dims();
        b.layer(
            "patch_embed",
            "Conv2d",
            &self.patch_embed,
            &patches.dims(),
            mult_adds::conv2d(n, c_in, dim, [gh, gw], [kh, kw], 1),
        );
        let x = self.tokens(images);
        b.layer("cls_token", "ClassToken", &self.cls_token, &[n, 1, dim], 0);
        b.layer(
            "pos_embed",
            "PositionEmbedding",
            &self.pos_embed,
            &x.dims(),
            0,
        );
        let mut x = x;
        for (i, layer) in self.encoder.layers.iter().enumerate() {
            x = layer.forward(x);
            LayerRows {
                norm_first: true,
                norm_1: &layer.norm_1,
                norm_2: &layer.norm_2,
                mha: &layer.mha,
                heads: layer.mha.n_heads,
                d_k: layer.mha.d_k,
                pwff: &layer.pwff,
            }
            .add(&mut b, &format!("encoder.layers.{i}"), x.dims());
        }
        let x = self.norm.forward(x);
        b.layer("norm", "LayerNorm", &self.norm, &x.dims(), 0);
        let [d_in, d_out] = self.head.weight.dims();
        let x = self.head_on_cls(x);
        b.layer(
            "head",
            "Linear",
            &self.head,
            &x.dims(),
            mult_adds::linear(n, d_in, d_out),
        );
        Ok(b.finish(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vit_lite_matches_the_reference_parameter_count() {
        let device = Device::flex();
        // patch 1,088 + cls 64 + pos 3,200 + 4 x 33,472 + norm 128 + head 650 = 139,018.
        let vit = VitConfig::vit_lite().init(&device).unwrap();
        assert_eq!(vit.num_params(), 139_018);
        assert_eq!(
            vit.forward(Tensor::zeros([2, 1, 28, 28], &device)).dims(),
            [2, 10]
        );
        let digits = VitConfig::vit_lite_digits().init(&device).unwrap();
        assert_eq!(
            digits.forward(Tensor::zeros([3, 1, 8, 8], &device)).dims(),
            [3, 10]
        );
    }

    #[test]
    fn the_encoder_computes_what_burns_pre_norm_encoder_computes() {
        use burn::nn::transformer::{TransformerEncoderConfig, TransformerEncoderInput};
        let device = Device::flex();
        let config = VitConfig::vit_lite();
        let burn_enc = TransformerEncoderConfig::new(64, 128, 4, 2)
            .with_dropout(0.0)
            .with_norm_first(true)
            .init(&device);
        let mut ours = VitEncoder {
            layers: (0..2).map(|i| config.init_layer(i, &device)).collect(),
        };
        for (mine, theirs) in ours.layers.iter_mut().zip(&burn_enc.layers) {
            mine.mha.query = theirs.mha.query.clone();
            mine.mha.key = theirs.mha.key.clone();
            mine.mha.value = theirs.mha.value.clone();
            mine.mha.output = theirs.mha.output.clone();
            mine.pwff = theirs.pwff.clone();
            mine.norm_1 = theirs.norm_1.clone();
            mine.norm_2 = theirs.norm_2.clone();
        }
        let x = Tensor::<3>::random([3, 50, 64], Distribution::Normal(0.0, 1.0), &device);
        let expected = burn_enc.forward(TransformerEncoderInput::new(x.clone()));
        let got = ours.forward(x);
        let diff: f32 = (expected - got).abs().max().into_scalar();
        assert!(diff < 1e-5, "max difference {diff}");
    }

    #[test]
    fn per_layer_heads_and_widths_build_smaller_layers() {
        let device = Device::flex();
        let mut config = VitConfig::vit_lite();
        config.layer_heads = vec![4, 3, 2, 1];
        config.layer_mlp_dims = vec![128, 96, 64, 8];
        let vit = config.init(&device).unwrap();
        assert_eq!(vit.encoder.layers[3].mha.query.weight.dims(), [64, 16]);
        assert_eq!(vit.encoder.layers[3].mha.output.weight.dims(), [16, 64]);
        assert_eq!(
            vit.encoder.layers[2].pwff.linear_inner.weight.dims(),
            [64, 64]
        );
        let x = Tensor::zeros([2, 1, 28, 28], &device);
        assert_eq!(vit.forward(x).dims(), [2, 10]);
        let summary = vit.summary("vit", &[2, 1, 28, 28]).unwrap();
        assert_eq!(summary.total_params, vit.num_params());

        config.layer_heads = vec![4, 5, 2, 1];
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("layer_heads entry 5 is outside 1..=4"),
            "{err}"
        );
        config.layer_heads = vec![4, 4];
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("2 entries, expected one per layer (4)"),
            "{err}"
        );
    }

    #[test]
    fn invalid_configs_are_named() {
        let mut config = VitConfig::vit_lite();
        config.patch = 5;
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("patch size 5 does not divide the 28x28 image"),
            "{err}"
        );
        let mut config = VitConfig::vit_lite();
        config.heads = 3;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("dim 64 is not divisible by heads 3"), "{err}");
    }
}
