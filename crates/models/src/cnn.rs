//! Configurable convolutional classifier: conv blocks (convolution, optional batch norm,
//! activation, optional pooling), then a dense head.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d,
};
use burn::tensor::{Device, Tensor};
use kiln_core::ModelSummary;
use kiln_core::summary::{SummaryBuilder, mult_adds};
use serde::{Deserialize, Serialize};

use crate::common::{
    Activation, Pool, check_dropout, check_image_input, conv_out, invalid, zeros4,
};
use crate::{Classifier, Result};

fn default_one() -> usize {
    1
}

/// One convolution block.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvBlockConfig {
    /// Output channels.
    pub channels: usize,
    /// Square kernel size.
    pub kernel: usize,
    /// Stride.
    #[serde(default = "default_one")]
    pub stride: usize,
    /// Zero padding on every side.
    #[serde(default)]
    pub padding: usize,
    /// Batch normalisation between the convolution and the activation.
    #[serde(default)]
    pub batch_norm: bool,
    /// Activation.
    #[serde(default)]
    pub activation: Activation,
    /// Pooling after the activation.
    #[serde(default)]
    pub pool: Pool,
}

impl ConvBlockConfig {
    /// A block with stride 1, no padding, no batch norm, ReLU and no pooling.
    pub fn new(channels: usize, kernel: usize) -> Self {
        Self {
            channels,
            kernel,
            stride: 1,
            padding: 0,
            batch_norm: false,
            activation: Activation::Relu,
            pool: Pool::None,
        }
    }

    /// Sets the padding.
    pub fn padding(mut self, padding: usize) -> Self {
        self.padding = padding;
        self
    }

    /// Sets the pooling.
    pub fn pool(mut self, pool: Pool) -> Self {
        self.pool = pool;
        self
    }

    /// Turns batch norm on.
    pub fn batch_norm(mut self) -> Self {
        self.batch_norm = true;
        self
    }
}

/// Configuration of a [`Cnn`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CnnConfig {
    /// Input `[channels, height, width]`.
    pub input: [usize; 3],
    /// Convolution blocks, in order.
    pub blocks: Vec<ConvBlockConfig>,
    /// Widths of the dense hidden layers after flattening.
    #[serde(default)]
    pub hidden: Vec<usize>,
    /// Number of classes.
    pub num_classes: usize,
    /// Activation of the dense hidden layers.
    #[serde(default)]
    pub activation: Activation,
    /// Dropout before every dense layer (0 disables it).
    #[serde(default)]
    pub dropout: f64,
}

impl CnnConfig {
    /// Output `[channels, height, width]` of every block, checking that each fits.
    pub fn block_shapes(&self) -> Result<Vec<[usize; 3]>> {
        let [mut c, mut h, mut w] = self.input;
        if c == 0 || h == 0 || w == 0 {
            return Err(invalid(
                "cnn",
                format!("input {:?} has a zero dimension", self.input),
            ));
        }
        let mut shapes = Vec::with_capacity(self.blocks.len());
        for (i, b) in self.blocks.iter().enumerate() {
            if b.channels == 0 || b.kernel == 0 || b.stride == 0 {
                return Err(invalid(
                    "cnn",
                    format!("blocks[{i}]: channels, kernel and stride must be at least 1"),
                ));
            }
            let (h_in, w_in) = (h, w);
            let too_small = || {
                invalid(
                    "cnn",
                    format!(
                        "blocks[{i}]: a {k}x{k} kernel (padding {p}) does not fit its {h_in}x{w_in} input",
                        k = b.kernel,
                        p = b.padding
                    ),
                )
            };
            h = conv_out(h, b.kernel, b.stride, 2 * b.padding).ok_or_else(too_small)?;
            w = conv_out(w, b.kernel, b.stride, 2 * b.padding).ok_or_else(too_small)?;
            c = b.channels;
            match b.pool {
                Pool::None => {}
                Pool::Max(k) | Pool::Avg(k) => {
                    let (h_in, w_in) = (h, w);
                    let bad = || {
                        invalid(
                            "cnn",
                            format!(
                                "blocks[{i}]: a {k}x{k} pool does not fit its {h_in}x{w_in} input"
                            ),
                        )
                    };
                    let (ph, pw) = (
                        conv_out(h, k, k, 0).ok_or_else(bad)?,
                        conv_out(w, k, k, 0).ok_or_else(bad)?,
                    );
                    h = ph;
                    w = pw;
                }
            }
            shapes.push([c, h, w]);
        }
        Ok(shapes)
    }

    /// Checks the config without building anything.
    pub fn validate(&self) -> Result<()> {
        self.block_shapes()?;
        if self.num_classes == 0 {
            return Err(invalid("cnn", "num_classes must be at least 1"));
        }
        if let Some(i) = self.hidden.iter().position(|&h| h == 0) {
            return Err(invalid(
                "cnn",
                format!("hidden[{i}] is 0; every layer needs a width of at least 1"),
            ));
        }
        check_dropout("cnn", self.dropout)
    }

    /// Builds the model on `device`.
    pub fn init(&self, device: &Device) -> Result<Cnn> {
        self.validate()?;
        let shapes = self.block_shapes()?;
        let mut in_channels = self.input[0];
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for b in &self.blocks {
            let conv = Conv2dConfig::new([in_channels, b.channels], [b.kernel, b.kernel])
                .with_stride([b.stride, b.stride])
                .with_padding(PaddingConfig2d::Explicit(
                    b.padding, b.padding, b.padding, b.padding,
                ))
                .init(device);
            blocks.push(ConvBlock {
                conv,
                norm: b
                    .batch_norm
                    .then(|| BatchNormConfig::new(b.channels).init(device)),
                max_pool: match b.pool {
                    Pool::Max(k) => Some(MaxPool2dConfig::new([k, k]).init()),
                    _ => None,
                },
                avg_pool: match b.pool {
                    Pool::Avg(k) => Some(AvgPool2dConfig::new([k, k]).init()),
                    _ => None,
                },
                activation: b.activation,
            });
            in_channels = b.channels;
        }
        let flat = shapes
            .last()
            .map_or(self.input.iter().product(), |s| s.iter().product());
        let mut hidden = Vec::with_capacity(self.hidden.len());
        let mut width = flat;
        for &h in &self.hidden {
            hidden.push(LinearConfig::new(width, h).init(device));
            width = h;
        }
        Ok(Cnn {
            blocks,
            hidden,
            output: LinearConfig::new(width, self.num_classes).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            activation: self.activation,
            input: self.input,
        })
    }

    /// LeNet-5 for 28x28 grey images (LeCun et al. 1998 layout: 6 and 16 channels of 5x5
    /// convolutions, dense 120-84-10), with ReLU and max pooling as it is usually trained today;
    /// the first convolution pads by 2 so 28x28 input plays the role of the original 32x32.
    pub fn lenet5() -> Self {
        Self {
            input: [1, 28, 28],
            blocks: vec![
                ConvBlockConfig::new(6, 5).padding(2).pool(Pool::Max(2)),
                ConvBlockConfig::new(16, 5).pool(Pool::Max(2)),
            ],
            hidden: vec![120, 84],
            num_classes: 10,
            activation: Activation::Relu,
            dropout: 0.0,
        }
    }

    /// The usual small MNIST CNN (and the reference benchmark's `cnn`): two 3x3 conv blocks
    /// with 32 and 64 channels, ReLU and 2x2 max pooling, then dense 1600-128-10.
    pub fn cnn_small() -> Self {
        Self {
            input: [1, 28, 28],
            blocks: vec![
                ConvBlockConfig::new(32, 3).pool(Pool::Max(2)),
                ConvBlockConfig::new(64, 3).pool(Pool::Max(2)),
            ],
            hidden: vec![128],
            num_classes: 10,
            activation: Activation::Relu,
            dropout: 0.0,
        }
    }
}

/// One convolution block. Module paths: `conv`, `norm`.
#[derive(Module, Debug)]
pub struct ConvBlock {
    /// The convolution.
    pub conv: Conv2d,
    /// Optional batch normalisation.
    pub norm: Option<BatchNorm>,
    max_pool: Option<MaxPool2d>,
    avg_pool: Option<AvgPool2d>,
    #[module(skip)]
    activation: Activation,
}

impl ConvBlock {
    fn forward_conv(&self, x: Tensor<4>) -> Tensor<4> {
        self.conv.forward(x)
    }

    fn forward_rest(&self, x: Tensor<4>) -> Tensor<4> {
        let x = match &self.norm {
            Some(norm) => norm.forward(x),
            None => x,
        };
        let x = self.activation.apply(x);
        self.pool(x)
    }

    fn pool(&self, x: Tensor<4>) -> Tensor<4> {
        match (&self.max_pool, &self.avg_pool) {
            (Some(p), _) => p.forward(x),
            (_, Some(p)) => p.forward(x),
            _ => x,
        }
    }

    /// Forward pass of the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_rest(self.forward_conv(x))
    }
}

/// A convolutional classifier. Module paths: `blocks.N.conv`, `blocks.N.norm`, `hidden.N`,
/// `output`.
#[derive(Module, Debug)]
pub struct Cnn {
    /// Convolution blocks.
    pub blocks: Vec<ConvBlock>,
    /// Dense hidden layers.
    pub hidden: Vec<Linear>,
    /// Output layer.
    pub output: Linear,
    dropout: Dropout,
    #[module(skip)]
    activation: Activation,
    #[module(skip)]
    input: [usize; 3],
}

impl Cnn {
    /// Whether the convolution stack runs in the CNHW layout: every convolution is
    /// [`cnhw_eligible`](crate::ops::cnhw_eligible) and no block has a batch norm (which
    /// normalises over axis 1). `KILN_NCHW_CONV=1` forces burn's NCHW convolution, for
    /// benchmarks.
    fn runs_cnhw(&self) -> bool {
        std::env::var_os("KILN_NCHW_CONV").is_none()
            && self
                .blocks
                .iter()
                .all(|b| b.norm.is_none() && crate::ops::cnhw_eligible(&b.conv))
    }
}

impl Classifier for Cnn {
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward_features(images).1
    }

    fn forward_features(&self, images: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let mut x = images;
        if self.runs_cnhw() {
            // The whole stack in `[C, batch, H, W]` (see `ops::conv2d_cnhw`): pooling and the
            // activation do not care which of the two leading axes is the batch.
            x = x.swap_dims(0, 1);
            for block in &self.blocks {
                x = block.forward_rest(crate::ops::conv2d_cnhw(&block.conv, x));
            }
            x = x.swap_dims(0, 1);
        } else {
            for block in &self.blocks {
                x = block.forward(x);
            }
        }
        let mut x: Tensor<2> = x.flatten(1, 3);
        for layer in &self.hidden {
            x = self
                .activation
                .apply(layer.forward(self.dropout.forward(x)));
        }
        (x.clone(), self.output.forward(self.dropout.forward(x)))
    }

    fn summary(&self, name: &str, input_shape: &[usize]) -> Result<ModelSummary> {
        check_image_input("cnn", input_shape, self.input)?;
        let n = input_shape[0];
        let device = self.output.weight.device();
        let mut b = SummaryBuilder::new(name, input_shape);
        let mut x = zeros4(input_shape, &device);
        for (i, block) in self.blocks.iter().enumerate() {
            let [c_out, c_in_per_group, kh, kw] = block.conv.weight.dims();
            x = block.forward_conv(x);
            let [_, _, oh, ow] = x.dims();
            let groups = block.conv.groups;
            b.layer(
                format!("blocks.{i}.conv"),
                "Conv2d",
                &block.conv,
                &x.dims(),
                mult_adds::conv2d(
                    n,
                    c_in_per_group * groups,
                    c_out,
                    [oh, ow],
                    [kh, kw],
                    groups,
                ),
            );
            if let Some(norm) = &block.norm {
                x = norm.forward(x);
                b.layer(
                    format!("blocks.{i}.norm"),
                    "BatchNorm2d",
                    norm,
                    &x.dims(),
                    0,
                );
            }
            x = block.activation.apply(x);
            b.op(
                format!("blocks.{i}.act"),
                block.activation.name(),
                &x.dims(),
                0,
            );
            let kind = match (&block.max_pool, &block.avg_pool) {
                (Some(_), _) => Some("MaxPool2d"),
                (_, Some(_)) => Some("AvgPool2d"),
                _ => None,
            };
            if let Some(kind) = kind {
                x = block.pool(x);
                b.op(format!("blocks.{i}.pool"), kind, &x.dims(), 0);
            }
        }
        let mut x: Tensor<2> = x.flatten(1, 3);
        b.op("flatten", "Flatten", &x.dims(), 0);
        for (i, layer) in self.hidden.iter().enumerate() {
            let [d_in, d_out] = layer.weight.dims();
            x = self.activation.apply(layer.forward(x));
            b.layer(
                format!("hidden.{i}"),
                "Linear",
                layer,
                &x.dims(),
                mult_adds::linear(n, d_in, d_out),
            );
            b.op(
                format!("hidden.{i}.act"),
                self.activation.name(),
                &x.dims(),
                0,
            );
        }
        let [d_in, d_out] = self.output.weight.dims();
        let x = self.output.forward(x);
        b.layer(
            "output",
            "Linear",
            &self.output,
            &x.dims(),
            mult_adds::linear(n, d_in, d_out),
        );
        Ok(b.finish(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn presets_have_the_published_parameter_counts() {
        let device = Device::flex();
        // LeNet-5: 156 + 2,416 + 48,120 + 10,164 + 850 = 61,706.
        assert_eq!(
            CnnConfig::lenet5().init(&device).unwrap().num_params(),
            61_706
        );
        // cnn-small (= the reference benchmark's CNN): 320 + 18,496 + 204,928 + 1,290.
        assert_eq!(
            CnnConfig::cnn_small().init(&device).unwrap().num_params(),
            225_034
        );
    }

    #[test]
    fn output_shape() {
        let device = Device::flex();
        let cnn = CnnConfig::cnn_small().init(&device).unwrap();
        assert_eq!(
            cnn.forward(Tensor::zeros([2, 1, 28, 28], &device)).dims(),
            [2, 10]
        );
    }

    #[test]
    fn blocks_that_do_not_fit_are_errors() {
        let mut config = CnnConfig::cnn_small();
        config.input = [1, 8, 8];
        config.blocks.push(ConvBlockConfig::new(8, 3));
        let err = config.init(&Device::flex()).unwrap_err().to_string();
        assert!(
            err.contains("blocks[1]: a 2x2 pool does not fit its 1x1 input"),
            "{err}"
        );
    }

    #[test]
    fn batch_norm_uses_batch_statistics_in_training_and_running_ones_in_eval() {
        let device = Device::flex().autodiff();
        let mut config = CnnConfig::cnn_small();
        config.input = [1, 6, 6];
        config.blocks = vec![ConvBlockConfig::new(2, 1).batch_norm()];
        config.hidden = vec![];
        let cnn = config.init(&device).unwrap();
        let norm = cnn.blocks[0].norm.as_ref().unwrap();
        let x = Tensor::<4>::random([4, 2, 6, 6], Distribution::Normal(3.0, 2.0), &device);
        // Training mode: each channel of the output is standardised over the batch.
        let train_out = norm.forward(x.clone());
        let mean = train_out.clone().mean().into_scalar::<f32>();
        assert!(mean.abs() < 1e-4, "training-mode output mean {mean}");
        // Eval mode with fresh running statistics (mean 0 after one update of momentum 0.1 toward
        // ~3): the output is not re-centred on the batch.
        let eval_norm = norm.valid();
        let eval_out = eval_norm.forward(x.clone().without_autodiff());
        let eval_mean = eval_out.mean().into_scalar::<f32>();
        assert!(
            eval_mean > 1.0,
            "eval-mode output mean {eval_mean} should follow running stats"
        );
    }
}
