//! EfficientNet-Lite (Tan & Le 2019; the "Lite" variants of TensorFlow's model garden): a
//! convolution stem, a stack of MBConv blocks (1x1 expansion, depthwise k x k, 1x1 linear
//! projection, residual when shape allows) and a 1x1 head convolution, global average
//! pooling, dropout and a linear classifier. Lite means ReLU6 instead of swish and no
//! squeeze-and-excitation; BatchNorm uses eps 1e-3; every convolution pads TensorFlow's "same"
//! way (burn's `PaddingConfig2d::Same`: total padding `(ceil(in/s)-1)·s + k - in`, the odd pixel
//! at the bottom/right, so stride-2 3x3 pads 0/1 and 5x5 pads 1/2 at 224x224).
//!
//! Checkpoints in the `efficientnet_pytorch` / `efficientnet-lite-pytorch` naming
//! (`_conv_stem`, `_blocks.N._expand_conv`, `_bn0`...) map onto Kiln's paths with
//! [`EFFICIENTNET_KEY_MAP`].

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d,
};
use burn::tensor::{Device, Tensor};
use kiln_core::ModelSummary;
use kiln_core::summary::{SummaryBuilder, mult_adds};
use serde::{Deserialize, Serialize};

use crate::common::{check_dropout, check_image_input, invalid, zeros4};
use crate::{Classifier, Result};

/// One stage of MBConv blocks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MbStage {
    /// Depthwise kernel size.
    pub kernel: usize,
    /// Stride of the stage's first block (the others use 1).
    pub stride: usize,
    /// Expansion ratio of the hidden width (1 = no expansion convolution).
    pub expand: usize,
    /// Output channels.
    pub channels: usize,
    /// Number of blocks.
    pub repeats: usize,
}

/// Configuration of an [`EfficientNet`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EfficientNetConfig {
    /// Input `[channels, height, width]` (any size works; this one is for summaries).
    pub input: [usize; 3],
    /// Stem output channels.
    pub stem_channels: usize,
    /// The MBConv stages.
    pub stages: Vec<MbStage>,
    /// Head convolution channels.
    pub head_channels: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Dropout before the classifier.
    #[serde(default)]
    pub dropout: f64,
    /// BatchNorm epsilon.
    pub bn_eps: f64,
}

impl EfficientNetConfig {
    /// EfficientNet-Lite0: 224x224 RGB, stem 32, seven stages (16 blocks), head 1280, 1000
    /// ImageNet classes, dropout 0.2 (4,652,008 weights + 42,016 BatchNorm statistics).
    pub fn lite0() -> Self {
        let s = |kernel, stride, expand, channels, repeats| MbStage {
            kernel,
            stride,
            expand,
            channels,
            repeats,
        };
        Self {
            input: [3, 224, 224],
            stem_channels: 32,
            stages: vec![
                s(3, 1, 1, 16, 1),
                s(3, 2, 6, 24, 2),
                s(5, 2, 6, 40, 2),
                s(3, 2, 6, 80, 3),
                s(5, 1, 6, 112, 3),
                s(5, 2, 6, 192, 4),
                s(3, 1, 6, 320, 1),
            ],
            head_channels: 1280,
            num_classes: 1000,
            dropout: 0.2,
            bn_eps: 1e-3,
        }
    }

    /// Checks the config.
    pub fn validate(&self) -> Result<()> {
        let name = "efficientnet";
        if self.input.contains(&0) {
            return Err(invalid(
                name,
                format!("input {:?} has a zero dimension", self.input),
            ));
        }
        for (what, v) in [
            ("stem_channels", self.stem_channels),
            ("head_channels", self.head_channels),
            ("num_classes", self.num_classes),
        ] {
            if v == 0 {
                return Err(invalid(name, format!("{what} must be at least 1")));
            }
        }
        if self.stages.is_empty() {
            return Err(invalid(name, "at least one MBConv stage is needed"));
        }
        for (i, s) in self.stages.iter().enumerate() {
            if s.kernel == 0 || s.stride == 0 || s.expand == 0 || s.channels == 0 || s.repeats == 0
            {
                return Err(invalid(
                    name,
                    format!(
                        "stage {i}: kernel, stride, expand, channels and repeats must be at least 1"
                    ),
                ));
            }
        }
        if !(self.bn_eps > 0.0 && self.bn_eps.is_finite()) {
            return Err(invalid(
                name,
                format!("bn_eps {} must be positive", self.bn_eps),
            ));
        }
        check_dropout(name, self.dropout)
    }

    /// Builds the model.
    pub fn init(&self, device: &Device) -> Result<EfficientNet> {
        self.validate()?;
        let conv_bn = |c_in: usize, c_out: usize, k: usize, stride: usize, groups: usize| ConvBn {
            conv: Conv2dConfig::new([c_in, c_out], [k, k])
                .with_stride([stride, stride])
                .with_groups(groups)
                .with_padding(PaddingConfig2d::Same)
                .with_bias(false)
                .init(device),
            bn: BatchNormConfig::new(c_out)
                .with_epsilon(self.bn_eps)
                .init(device),
        };
        let mut blocks = Vec::new();
        let mut c_in = self.stem_channels;
        for stage in &self.stages {
            for r in 0..stage.repeats {
                let stride = if r == 0 { stage.stride } else { 1 };
                let hidden = c_in * stage.expand;
                blocks.push(MbConv {
                    expand: (stage.expand != 1).then(|| conv_bn(c_in, hidden, 1, 1, 1)),
                    depthwise: conv_bn(hidden, hidden, stage.kernel, stride, hidden),
                    project: conv_bn(hidden, stage.channels, 1, 1, 1),
                    residual: stride == 1 && c_in == stage.channels,
                });
                c_in = stage.channels;
            }
        }
        Ok(EfficientNet {
            stem: conv_bn(self.input[0], self.stem_channels, 3, 2, 1),
            blocks,
            head: conv_bn(c_in, self.head_channels, 1, 1, 1),
            dropout: DropoutConfig::new(self.dropout).init(),
            classifier: LinearConfig::new(self.head_channels, self.num_classes).init(device),
            input: self.input,
        })
    }
}

/// Regex key map from `efficientnet_pytorch`-style checkpoint names to [`EfficientNet`] paths:
/// `(pattern, replacement)`. Norm `weight`/`bias` become `gamma`/`beta` and `Linear` weights
/// are transposed by the loader (kiln-transfer); `num_batches_tracked` has no counterpart.
pub const EFFICIENTNET_KEY_MAP: &[(&str, &str)] = &[
    (r"^_conv_stem\.(.+)$", "stem.conv.$1"),
    (r"^_bn0\.(.+)$", "stem.bn.$1"),
    (
        r"^_blocks\.(\d+)\._expand_conv\.(.+)$",
        "blocks.$1.expand.conv.$2",
    ),
    (r"^_blocks\.(\d+)\._bn0\.(.+)$", "blocks.$1.expand.bn.$2"),
    (
        r"^_blocks\.(\d+)\._depthwise_conv\.(.+)$",
        "blocks.$1.depthwise.conv.$2",
    ),
    (r"^_blocks\.(\d+)\._bn1\.(.+)$", "blocks.$1.depthwise.bn.$2"),
    (
        r"^_blocks\.(\d+)\._project_conv\.(.+)$",
        "blocks.$1.project.conv.$2",
    ),
    (r"^_blocks\.(\d+)\._bn2\.(.+)$", "blocks.$1.project.bn.$2"),
    (r"^_conv_head\.(.+)$", "head.conv.$1"),
    (r"^_bn1\.(.+)$", "head.bn.$1"),
    (r"^_fc\.(.+)$", "classifier.$1"),
];

/// A bias-free convolution followed by BatchNorm.
#[derive(Module, Debug)]
pub struct ConvBn {
    /// The convolution.
    pub conv: Conv2d,
    /// Its BatchNorm.
    pub bn: BatchNorm,
}

impl ConvBn {
    fn forward(&self, x: Tensor<4>, relu6: bool) -> Tensor<4> {
        let x = self.bn.forward(self.conv.forward(x));
        if relu6 { x.clamp(0.0, 6.0) } else { x }
    }
}

/// An MBConv block: optional 1x1 expansion, depthwise convolution, 1x1 linear projection.
#[derive(Module, Debug)]
pub struct MbConv {
    /// 1x1 expansion (absent when the expansion ratio is 1).
    pub expand: Option<ConvBn>,
    /// Depthwise k x k convolution.
    pub depthwise: ConvBn,
    /// 1x1 projection (no activation).
    pub project: ConvBn,
    #[module(skip)]
    residual: bool,
}

impl MbConv {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut h = x.clone();
        if let Some(expand) = &self.expand {
            h = expand.forward(h, true);
        }
        let h = self.project.forward(self.depthwise.forward(h, true), false);
        if self.residual { h + x } else { h }
    }
}

/// EfficientNet(-Lite). Module paths: `stem`, `blocks.N.{expand,depthwise,project}`, `head`,
/// `classifier` (each `ConvBn` has `conv` and `bn`).
#[derive(Module, Debug)]
pub struct EfficientNet {
    /// 3x3 stride-2 stem.
    pub stem: ConvBn,
    /// MBConv blocks.
    pub blocks: Vec<MbConv>,
    /// 1x1 head convolution.
    pub head: ConvBn,
    /// Dropout before the classifier.
    pub dropout: Dropout,
    /// The classifier.
    pub classifier: Linear,
    #[module(skip)]
    input: [usize; 3],
}

impl EfficientNet {
    /// `[batch, head_channels]` pooled features (what a new head is trained on).
    pub fn features(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = self.stem.forward(images, true);
        for block in &self.blocks {
            x = block.forward(x);
        }
        let x = self.head.forward(x, true);
        let [b, c, _, _] = x.dims();
        x.mean_dim(3).mean_dim(2).reshape([b, c])
    }

    /// Replaces the classifier with a freshly initialised one for `num_classes` classes.
    pub fn with_new_head(mut self, num_classes: usize, device: &Device) -> Self {
        let [d_in, _] = self.classifier.weight.dims();
        self.classifier = LinearConfig::new(d_in, num_classes).init(device);
        self
    }
}

impl Classifier for EfficientNet {
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.classifier
            .forward(self.dropout.forward(self.features(images)))
    }

    fn forward_features(&self, images: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let features = self.features(images);
        let logits = self
            .classifier
            .forward(self.dropout.forward(features.clone()));
        (features, logits)
    }

    fn summary(&self, name: &str, input_shape: &[usize]) -> Result<ModelSummary> {
        // Any spatial size works ("same" padding follows it); the channels must match.
        if input_shape.len() != 4 || input_shape[1] != self.input[0] || input_shape.contains(&0) {
            check_image_input("efficientnet", input_shape, self.input)?;
        }
        let n = input_shape[0];
        let device = self.classifier.weight.device();
        let mut b = SummaryBuilder::new(name, input_shape);
        let conv_row =
            |b: &mut SummaryBuilder, path: String, cb: &ConvBn, x: &Tensor<4>, y: &Tensor<4>| {
                let [_, c_in, _, _] = x.dims();
                let [_, c_out, oh, ow] = y.dims();
                let [_, _, kh, kw] = cb.conv.weight.dims();
                b.layer(
                    format!("{path}.conv"),
                    "Conv2d",
                    &cb.conv,
                    &y.dims(),
                    mult_adds::conv2d(n, c_in, c_out, [oh, ow], [kh, kw], cb.conv.groups),
                );
                b.layer(format!("{path}.bn"), "BatchNorm2d", &cb.bn, &y.dims(), 0);
            };
        let x = zeros4(input_shape, &device);
        let mut y = self.stem.forward(x.clone(), true);
        conv_row(&mut b, "stem".into(), &self.stem, &x, &y);
        for (i, block) in self.blocks.iter().enumerate() {
            let input = y.clone();
            let mut h = y.clone();
            if let Some(expand) = &block.expand {
                let out = expand.forward(h.clone(), true);
                conv_row(&mut b, format!("blocks.{i}.expand"), expand, &h, &out);
                h = out;
            }
            let out = block.depthwise.forward(h.clone(), true);
            conv_row(
                &mut b,
                format!("blocks.{i}.depthwise"),
                &block.depthwise,
                &h,
                &out,
            );
            let proj = block.project.forward(out.clone(), false);
            conv_row(
                &mut b,
                format!("blocks.{i}.project"),
                &block.project,
                &out,
                &proj,
            );
            y = if block.residual { proj + input } else { proj };
        }
        let out = self.head.forward(y.clone(), true);
        conv_row(&mut b, "head".into(), &self.head, &y, &out);
        let [_, c, _, _] = out.dims();
        b.op("pool", "AdaptiveAvgPool2d", &[n, c], 0);
        let [d_in, d_out] = self.classifier.weight.dims();
        b.layer(
            "classifier",
            "Linear",
            &self.classifier,
            &[n, d_out],
            mult_adds::linear(n, d_in, d_out),
        );
        Ok(b.finish(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lite0_has_the_reference_parameter_count_and_shapes() {
        let device = Device::flex();
        let model = EfficientNetConfig::lite0().init(&device).unwrap();
        // Every float tensor of the reference checkpoint: 4,652,008 weights plus 42,016
        // BatchNorm running statistics (burn counts those too).
        assert_eq!(model.num_params(), 4_694_024);
        assert_eq!(model.blocks.len(), 16);
        let logits = model.forward(Tensor::zeros([1, 3, 224, 224], &device));
        assert_eq!(logits.dims(), [1, 1000]);
        // Any input size: "same" padding follows it.
        assert_eq!(
            model
                .features(Tensor::zeros([2, 3, 97, 64], &device))
                .dims(),
            [2, 1280]
        );
    }

    #[test]
    fn invalid_configs_are_named() {
        let mut c = EfficientNetConfig::lite0();
        c.stages[2].kernel = 0;
        assert!(c.validate().unwrap_err().to_string().contains("stage 2"));
        let mut c = EfficientNetConfig::lite0();
        c.bn_eps = 0.0;
        assert!(c.validate().is_err());
    }
}
