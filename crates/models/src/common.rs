//! Pieces shared by the zoo's models.

use burn::tensor::Tensor;
use kiln_core::Error as CoreError;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Activation functions selectable from configs (`"relu"`, `"gelu"`, ...).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    /// max(0, x).
    #[default]
    Relu,
    /// Gaussian error linear unit (exact, erf form).
    Gelu,
    /// Hyperbolic tangent.
    Tanh,
    /// Logistic sigmoid.
    Sigmoid,
    /// x · sigmoid(x).
    Silu,
}

impl Activation {
    /// The layer name shown in summaries.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "ReLU",
            Activation::Gelu => "GELU",
            Activation::Tanh => "Tanh",
            Activation::Sigmoid => "Sigmoid",
            Activation::Silu => "SiLU",
        }
    }

    /// Applies the activation.
    pub fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        use burn::tensor::activation as act;
        match self {
            Activation::Relu => act::relu(x),
            Activation::Gelu => act::gelu(x),
            Activation::Tanh => act::tanh(x),
            Activation::Sigmoid => act::sigmoid(x),
            Activation::Silu => act::silu(x),
        }
    }
}

/// Spatial pooling after a convolution block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pool {
    /// No pooling.
    #[default]
    None,
    /// Max pooling with a square window of this size (stride = window).
    Max(usize),
    /// Average pooling with a square window of this size (stride = window).
    Avg(usize),
}

/// Output size of a convolution or pooling window along one axis (PyTorch's formula):
/// `floor((input + pad_total − kernel) / stride) + 1`, or `None` when the window does not fit.
pub fn conv_out(input: usize, kernel: usize, stride: usize, pad_total: usize) -> Option<usize> {
    let padded = input + pad_total;
    if kernel == 0 || stride == 0 || padded < kernel {
        return None;
    }
    Some((padded - kernel) / stride + 1)
}

pub(crate) fn invalid(model: &str, reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        model: model.into(),
        reason: reason.into(),
    }
}

pub(crate) fn check_dropout(model: &str, dropout: f64) -> Result<()> {
    if !(0.0..1.0).contains(&dropout) {
        return Err(invalid(
            model,
            format!("dropout must be in [0, 1), found {dropout}"),
        ));
    }
    Ok(())
}

/// Checks an image input shape `[batch, channels, height, width]` against what a model expects.
pub(crate) fn check_image_input(model: &str, shape: &[usize], chw: [usize; 3]) -> Result<()> {
    if shape.len() != 4 || shape[1..] != chw || shape[0] == 0 {
        return Err(CoreError::Shape {
            context: format!("{model} input"),
            expected: format!("[batch, {}, {}, {}]", chw[0], chw[1], chw[2]),
            found: shape.to_vec(),
        }
        .into());
    }
    Ok(())
}

/// Checks a token input shape `[batch, sequence]` against a model's maximum length.
pub(crate) fn check_token_input(model: &str, shape: &[usize], max_len: usize) -> Result<()> {
    if shape.len() != 2 || shape[0] == 0 || shape[1] == 0 || shape[1] > max_len {
        return Err(CoreError::Shape {
            context: format!("{model} input"),
            expected: format!("[batch, sequence] token ids with 1 <= sequence <= {max_len}"),
            found: shape.to_vec(),
        }
        .into());
    }
    Ok(())
}

/// The zero tensor of an image input shape.
pub(crate) fn zeros4(shape: &[usize], device: &burn::tensor::Device) -> Tensor<4> {
    Tensor::zeros([shape[0], shape[1], shape[2], shape[3]], device)
}

/// Whether a burn module of this container type (as `ModuleVisitor::enter_module` names it,
/// e.g. `Struct:Linear`) is a Linear or convolution layer: the layers whose `weight` pruning,
/// quantization and their gradient masks act on (not norms, embeddings or positional tables).
pub fn is_weight_layer(container_type: &str) -> bool {
    matches!(
        container_type,
        "Struct:Linear" | "Struct:Conv1d" | "Struct:Conv2d" | "Struct:Conv3d"
    )
}
