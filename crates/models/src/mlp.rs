//! Multi-layer perceptron.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use kiln_core::summary::{SummaryBuilder, mult_adds};
use kiln_core::{Error as CoreError, ModelSummary};
use serde::{Deserialize, Serialize};

use crate::common::Activation;
use crate::{Classifier, Error, Result};

/// Configuration of an [`Mlp`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpConfig {
    /// Number of input features (`channels · height · width` of the images).
    pub input_size: usize,
    /// Widths of the hidden layers, in order.
    pub hidden_sizes: Vec<usize>,
    /// Number of classes.
    pub output_size: usize,
    /// Activation after every hidden layer.
    #[serde(default)]
    pub activation: Activation,
    /// Dropout probability after every hidden activation (0 disables it).
    #[serde(default)]
    pub dropout: f64,
}

impl MlpConfig {
    /// A config with ReLU and no dropout.
    pub fn new(input_size: usize, hidden_sizes: &[usize], output_size: usize) -> Self {
        Self {
            input_size,
            hidden_sizes: hidden_sizes.to_vec(),
            output_size,
            activation: Activation::Relu,
            dropout: 0.0,
        }
    }

    /// Sets the activation.
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Sets the dropout probability.
    pub fn with_dropout(mut self, dropout: f64) -> Self {
        self.dropout = dropout;
        self
    }

    /// Checks the config without building anything.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Error::InvalidConfig {
            model: "mlp".into(),
            reason,
        };
        if self.input_size == 0 {
            return Err(invalid("input_size must be at least 1".into()));
        }
        if self.output_size == 0 {
            return Err(invalid("output_size must be at least 1".into()));
        }
        if let Some(i) = self.hidden_sizes.iter().position(|&h| h == 0) {
            return Err(invalid(format!(
                "hidden_sizes[{i}] is 0; every layer needs a width of at least 1"
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(invalid(format!(
                "dropout must be in [0, 1), found {}",
                self.dropout
            )));
        }
        Ok(())
    }

    /// Builds the model on `device` (parameters drawn from the device's seeded RNG).
    pub fn init(&self, device: &Device) -> Result<Mlp> {
        self.validate()?;
        let mut hidden = Vec::with_capacity(self.hidden_sizes.len());
        let mut width = self.input_size;
        for &h in &self.hidden_sizes {
            hidden.push(LinearConfig::new(width, h).init(device));
            width = h;
        }
        Ok(Mlp {
            hidden,
            output: LinearConfig::new(width, self.output_size).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            activation: self.activation,
            input_size: self.input_size,
        })
    }
}

/// A multi-layer perceptron: flatten → (Linear → activation → dropout)* → Linear.
///
/// Module paths: `hidden.0`, `hidden.1`, ..., `output`.
#[derive(Module, Debug)]
pub struct Mlp {
    /// Hidden layers.
    pub hidden: Vec<Linear>,
    /// Output (logits) layer.
    pub output: Linear,
    dropout: Dropout,
    #[module(skip)]
    activation: Activation,
    #[module(skip)]
    input_size: usize,
}

impl Mlp {
    /// Forward pass on flat features `[batch, input_size]`.
    pub fn forward_flat(&self, x: Tensor<2>) -> Tensor<2> {
        let mut x = x;
        for layer in &self.hidden {
            x = self
                .dropout
                .forward(self.activation.apply(layer.forward(x)));
        }
        self.output.forward(x)
    }

    /// Number of input features.
    pub fn input_size(&self) -> usize {
        self.input_size
    }

    fn check_input(&self, shape: &[usize]) -> Result<()> {
        let features: usize = shape.iter().skip(1).product();
        if shape.len() != 4 || features != self.input_size {
            return Err(CoreError::Shape {
                context: "mlp input".into(),
                expected: format!(
                    "[batch, channels, height, width] with channels·height·width = {}",
                    self.input_size
                ),
                found: shape.to_vec(),
            }
            .into());
        }
        Ok(())
    }
}

impl Classifier for Mlp {
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward_flat(images.flatten(1, 3))
    }

    fn forward_features(&self, images: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let mut x = images.flatten(1, 3);
        for layer in &self.hidden {
            x = self
                .dropout
                .forward(self.activation.apply(layer.forward(x)));
        }
        (x.clone(), self.output.forward(x))
    }

    fn summary(&self, name: &str, input_shape: &[usize]) -> Result<ModelSummary> {
        self.check_input(input_shape)?;
        let batch = input_shape[0];
        let device = self.output.weight.device();
        let mut b = SummaryBuilder::new(name, input_shape);
        let mut x: Tensor<2> = Tensor::<4>::zeros(
            [
                input_shape[0],
                input_shape[1],
                input_shape[2],
                input_shape[3],
            ],
            &device,
        )
        .flatten(1, 3);
        b.op("flatten", "Flatten", &x.dims(), 0);
        for (i, layer) in self.hidden.iter().enumerate() {
            let [d_in, d_out] = layer.weight.dims();
            x = layer.forward(x);
            b.layer(
                format!("hidden.{i}"),
                "Linear",
                layer,
                &x.dims(),
                mult_adds::linear(batch, d_in, d_out),
            );
            x = self.activation.apply(x);
            b.op(
                format!("hidden.{i}.act"),
                self.activation.name(),
                &x.dims(),
                0,
            );
            if self.dropout.prob > 0.0 {
                x = self.dropout.forward(x);
                b.op(format!("hidden.{i}.dropout"), "Dropout", &x.dims(), 0);
            }
        }
        let [d_in, d_out] = self.output.weight.dims();
        let x = self.output.forward(x);
        b.layer(
            "output",
            "Linear",
            &self.output,
            &x.dims(),
            mult_adds::linear(batch, d_in, d_out),
        );
        Ok(b.finish(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_shape_and_param_count() {
        let device = Device::flex();
        let mlp = MlpConfig::new(784, &[300, 100], 10).init(&device).unwrap();
        // LeNet-300-100: 784*300+300 + 300*100+100 + 100*10+10 = 266,610 parameters.
        assert_eq!(mlp.num_params(), 266_610);
        let out = mlp.forward(Tensor::zeros([3, 1, 28, 28], &device));
        assert_eq!(out.dims(), [3, 10]);
    }

    #[test]
    fn invalid_configs_are_errors() {
        let device = Device::flex();
        let err = MlpConfig::new(0, &[4], 2)
            .init(&device)
            .unwrap_err()
            .to_string();
        assert!(err.contains("input_size must be at least 1"), "{err}");
        let err = MlpConfig::new(4, &[4, 0], 2)
            .init(&device)
            .unwrap_err()
            .to_string();
        assert!(err.contains("hidden_sizes[1] is 0"), "{err}");
        let err = MlpConfig::new(4, &[4], 2)
            .with_dropout(1.5)
            .init(&device)
            .unwrap_err()
            .to_string();
        assert!(err.contains("dropout must be in [0, 1)"), "{err}");
    }

    #[test]
    fn summary_rejects_wrong_input_shape() {
        let device = Device::flex();
        let mlp = MlpConfig::new(64, &[8], 10).init(&device).unwrap();
        let err = mlp.summary("mlp", &[1, 1, 28, 28]).unwrap_err().to_string();
        assert!(err.contains("channels·height·width = 64"), "{err}");
        assert!(err.contains("[1, 1, 28, 28]"), "{err}");
    }
}
