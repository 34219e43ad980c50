//! ViT-lite: a small Vision Transformer (Dosovitskiy et al. 2021): non-overlapping patches
//! embedded by a strided convolution, a class token, learned positions, a pre-norm encoder
//! (burn-nn's `TransformerEncoder`), a final LayerNorm and a linear head on the class token.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Distribution, Tensor};
use kiln_core::ModelSummary;
use kiln_core::summary::{SummaryBuilder, mult_adds};
use serde::{Deserialize, Serialize};

use crate::common::{check_dropout, check_image_input, invalid, zeros4};
use crate::transformer::summarize_encoder;
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
        }
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
            encoder: TransformerEncoderConfig::new(self.dim, self.mlp_dim, self.heads, self.depth)
                .with_dropout(self.dropout)
                .with_norm_first(true)
                .init(device),
            norm: LayerNormConfig::new(self.dim).init(device),
            head: LinearConfig::new(self.dim, self.num_classes).init(device),
            input: self.input,
        })
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
    pub encoder: TransformerEncoder,
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
        let x = self
            .encoder
            .forward(TransformerEncoderInput::new(self.tokens(images)));
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
        let x = summarize_encoder(&mut b, "encoder", &self.encoder, x, None, None);
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
