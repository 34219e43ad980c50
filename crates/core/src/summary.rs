//! Model summaries in the style of Keras' `model.summary()` and torchinfo.
//!
//! burn has no forward hooks, so a model describes itself: its `summary` method runs one
//! forward pass on a zero input, layer by layer, and reports each leaf layer to a
//! [`SummaryBuilder`] with the layer's output shape and mult-adds. Parameter counts and the
//! trainable flag are read from the layer module itself with a [`ModuleVisitor`], and the
//! totals from the whole model, so they always equal burn's own
//! [`Module::num_params`](burn::module::Module::num_params).
//!
//! ## Mult-adds (multiply-accumulate operations for one forward pass)
//!
//! The formulas, also exposed as functions in [`mult_adds`]:
//!
//! | layer | mult-adds |
//! |---|---|
//! | Linear `d_in → d_out` on `N` rows | `N · d_in · d_out` |
//! | Conv2d, output `C_out × H_out × W_out`, kernel `k_h × k_w`, `groups` | `N · C_out · H_out · W_out · (C_in / groups) · k_h · k_w` |
//! | scaled dot-product attention, `h` heads, query length `L_q`, key length `L_k`, head dim `d` | `N · h · L_q · L_k · d · 2` (scores `QKᵀ` and `softmax · V`) |
//!
//! Bias additions, activations, normalisation and pooling are not multiply-accumulates and
//! count zero, as in torchinfo.

use std::fmt;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// One row of a summary: a leaf layer of the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerRow {
    /// Module path, e.g. `layers.0.linear`.
    pub path: String,
    /// Layer type, e.g. `Linear`.
    pub kind: String,
    /// Output shape for the summary's input shape.
    pub output_shape: Vec<usize>,
    /// Number of parameters (scalars) owned by this layer.
    pub params: usize,
    /// How many of them are trainable.
    pub trainable_params: usize,
    /// Multiply-accumulate operations of one forward pass.
    pub mult_adds: u64,
    /// How many parameters are not exactly zero (a pruned model's summary; see
    /// [`ModelSummary::with_nonzero_params`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonzero_params: Option<usize>,
}

impl LayerRow {
    /// `yes`, `no`, `partial`, or `-` for a layer without parameters.
    pub fn trainable_label(&self) -> &'static str {
        match (self.params, self.trainable_params) {
            (0, _) => "-",
            (p, t) if p == t => "yes",
            (_, 0) => "no",
            _ => "partial",
        }
    }
}

/// A complete model summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    /// Model name (preset or type).
    pub model: String,
    /// Input shape the summary was computed for (batch first).
    pub input_shape: Vec<usize>,
    /// Leaf layers in forward order.
    pub layers: Vec<LayerRow>,
    /// All parameters of the model (equals burn's `num_params`).
    pub total_params: usize,
    /// Parameters that receive gradients.
    pub trainable_params: usize,
    /// Frozen parameters.
    pub non_trainable_params: usize,
    /// Mult-adds of one forward pass over the whole input batch.
    pub total_mult_adds: u64,
    /// Bytes taken by the parameters.
    pub param_bytes: u64,
    /// Bytes of the input tensor (f32).
    pub input_bytes: u64,
    /// Bytes of all layer outputs of one forward pass (f32), as torchinfo's "forward pass size".
    pub forward_bytes: u64,
    /// Parameters that are not exactly zero, when counted ([`ModelSummary::with_nonzero_params`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonzero_params: Option<usize>,
}

impl ModelSummary {
    /// Adds non-zero counts (pruned models): `params` lists every parameter tensor as
    /// `(path, non-zero values)`, with paths as the summary's rows name layers (e.g.
    /// `hidden.0.weight` under the row `hidden.0`). The text table gains a "Non-zero" column
    /// and a total.
    pub fn with_nonzero_params(mut self, params: &[(String, usize)]) -> Self {
        for row in &mut self.layers {
            let under = |p: &str| p.starts_with(&row.path) && p[row.path.len()..].starts_with('.');
            row.nonzero_params = Some(
                params
                    .iter()
                    .filter(|(p, _)| under(p))
                    .map(|(_, n)| n)
                    .sum(),
            );
        }
        self.nonzero_params = Some(params.iter().map(|(_, n)| n).sum());
        self
    }

    /// The summary as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a summary always serialises")
    }
}

/// Counts parameters and trainable parameters of a module.
#[derive(Default)]
struct ParamCounter {
    params: usize,
    trainable: usize,
    bytes: u64,
}

impl ModuleVisitor for ParamCounter {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let tensor = param.val();
        let n = tensor.shape().num_elements();
        self.params += n;
        self.bytes += (n * tensor.dtype().size()) as u64;
        if tensor.is_require_grad() {
            self.trainable += n;
        }
    }
}

fn count<M: Module>(module: &M) -> ParamCounter {
    let mut counter = ParamCounter::default();
    module.visit(&mut counter);
    counter
}

/// Collects rows while a model runs its summary forward pass.
#[derive(Debug)]
pub struct SummaryBuilder {
    model: String,
    input_shape: Vec<usize>,
    layers: Vec<LayerRow>,
}

impl SummaryBuilder {
    /// Starts a summary for `model` on an input of `input_shape` (batch first).
    pub fn new(model: impl Into<String>, input_shape: &[usize]) -> Self {
        Self {
            model: model.into(),
            input_shape: input_shape.to_vec(),
            layers: Vec::new(),
        }
    }

    /// Records a leaf layer: its path, type, output shape and mult-adds. Parameters and the
    /// trainable flag are read from `module`.
    pub fn layer<M: Module>(
        &mut self,
        path: impl Into<String>,
        kind: impl Into<String>,
        module: &M,
        output_shape: &[usize],
        mult_adds: u64,
    ) {
        let counted = count(module);
        self.layers.push(LayerRow {
            path: path.into(),
            kind: kind.into(),
            output_shape: output_shape.to_vec(),
            params: counted.params,
            trainable_params: counted.trainable,
            mult_adds,
            nonzero_params: None,
        });
    }

    /// Records a layer without parameters (activation, pooling, reshape, dropout...).
    pub fn op(
        &mut self,
        path: impl Into<String>,
        kind: impl Into<String>,
        output_shape: &[usize],
        mult_adds: u64,
    ) {
        self.layers.push(LayerRow {
            path: path.into(),
            kind: kind.into(),
            output_shape: output_shape.to_vec(),
            params: 0,
            trainable_params: 0,
            mult_adds,
            nonzero_params: None,
        });
    }

    /// Finishes the summary; totals are counted over the whole `model`.
    pub fn finish<M: Module>(self, model: &M) -> ModelSummary {
        let counted = count(model);
        let elems = |shape: &[usize]| shape.iter().product::<usize>() as u64;
        ModelSummary {
            total_params: counted.params,
            trainable_params: counted.trainable,
            non_trainable_params: counted.params - counted.trainable,
            total_mult_adds: self.layers.iter().map(|l| l.mult_adds).sum(),
            param_bytes: counted.bytes,
            input_bytes: elems(&self.input_shape) * 4,
            forward_bytes: self.layers.iter().map(|l| elems(&l.output_shape) * 4).sum(),
            nonzero_params: None,
            model: self.model,
            input_shape: self.input_shape,
            layers: self.layers,
        }
    }
}

/// Mult-add formulas (see the module docs).
pub mod mult_adds {
    /// Linear layer `d_in → d_out` applied to `rows` rows: `rows · d_in · d_out`.
    pub fn linear(rows: usize, d_in: usize, d_out: usize) -> u64 {
        rows as u64 * d_in as u64 * d_out as u64
    }

    /// 2-D convolution: `batch · C_out · H_out · W_out · (C_in / groups) · k_h · k_w`.
    pub fn conv2d(
        batch: usize,
        channels_in: usize,
        channels_out: usize,
        out_hw: [usize; 2],
        kernel: [usize; 2],
        groups: usize,
    ) -> u64 {
        batch as u64
            * channels_out as u64
            * (out_hw[0] * out_hw[1]) as u64
            * (channels_in / groups.max(1)) as u64
            * (kernel[0] * kernel[1]) as u64
    }

    /// Scaled dot-product attention core (without the projections):
    /// `batch · heads · L_q · L_k · head_dim · 2`.
    pub fn attention(
        batch: usize,
        heads: usize,
        len_q: usize,
        len_k: usize,
        head_dim: usize,
    ) -> u64 {
        2 * batch as u64 * heads as u64 * len_q as u64 * len_k as u64 * head_dim as u64
    }
}

/// `1234567` → `"1,234,567"`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn shape_str(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}

fn megabytes(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / 1e6)
}

impl fmt::Display for ModelSummary {
    /// Fixed-width text in the Keras/torchinfo layout.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nonzero = self.layers.iter().any(|l| l.nonzero_params.is_some());
        let mut headers = vec![
            "Layer (path)",
            "Type",
            "Output shape",
            "Param #",
            "Trainable",
            "Mult-adds",
        ];
        if nonzero {
            headers.insert(4, "Non-zero");
        }
        let rows: Vec<Vec<String>> = self
            .layers
            .iter()
            .map(|l| {
                let mut row = vec![
                    l.path.clone(),
                    l.kind.clone(),
                    shape_str(&l.output_shape),
                    thousands(l.params as u64),
                    l.trainable_label().to_string(),
                    thousands(l.mult_adds),
                ];
                if nonzero {
                    row.insert(4, thousands(l.nonzero_params.unwrap_or(0) as u64));
                }
                row
            })
            .collect();
        let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        let width = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
        let heavy = "=".repeat(width);
        let light = "-".repeat(width);
        // Text columns left-aligned, numeric columns right-aligned.
        let numeric = |h: &str| matches!(h, "Param #" | "Non-zero" | "Mult-adds");
        let line = |f: &mut fmt::Formatter<'_>, cells: &[&str]| -> fmt::Result {
            let mut text = String::new();
            for (i, ((cell, w), h)) in cells.iter().zip(&widths).zip(&headers).enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                if numeric(h) {
                    text.push_str(&format!("{cell:>w$}"));
                } else {
                    text.push_str(&format!("{cell:<w$}"));
                }
            }
            writeln!(f, "{text}")
        };
        writeln!(f, "{heavy}")?;
        writeln!(
            f,
            "Model: {}    Input shape: {}",
            self.model,
            shape_str(&self.input_shape)
        )?;
        writeln!(f, "{heavy}")?;
        line(f, &headers)?;
        writeln!(f, "{light}")?;
        for row in &rows {
            let cells: Vec<&str> = row.iter().map(String::as_str).collect();
            line(f, &cells)?;
        }
        writeln!(f, "{heavy}")?;
        writeln!(f, "Total params: {}", thousands(self.total_params as u64))?;
        if let Some(n) = self.nonzero_params {
            writeln!(
                f,
                "Non-zero params: {} ({:.1}% of the total)",
                thousands(n as u64),
                100.0 * n as f64 / self.total_params.max(1) as f64
            )?;
        }
        writeln!(
            f,
            "Trainable params: {}",
            thousands(self.trainable_params as u64)
        )?;
        writeln!(
            f,
            "Non-trainable params: {}",
            thousands(self.non_trainable_params as u64)
        )?;
        writeln!(f, "Total mult-adds: {}", thousands(self.total_mult_adds))?;
        writeln!(f, "{light}")?;
        writeln!(f, "Input size (MB): {}", megabytes(self.input_bytes))?;
        writeln!(
            f,
            "Forward pass size (MB): {}",
            megabytes(self.forward_bytes)
        )?;
        writeln!(f, "Params size (MB): {}", megabytes(self.param_bytes))?;
        writeln!(
            f,
            "Estimated total size (MB): {}",
            megabytes(self.input_bytes + self.forward_bytes + self.param_bytes)
        )?;
        write!(f, "{heavy}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LinearConfig;
    use burn::tensor::Device;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn linear_mult_adds_by_hand() {
        // 32 rows through a 784 -> 300 linear layer: 32 * 784 * 300 = 7,526,400.
        assert_eq!(mult_adds::linear(32, 784, 300), 7_526_400);
        // Conv 1 -> 6 channels, 5x5 kernel, 24x24 output, batch 1: 6*24*24*1*25 = 86,400.
        assert_eq!(mult_adds::conv2d(1, 1, 6, [24, 24], [5, 5], 1), 86_400);
        // Attention, 4 heads, 50 tokens, head dim 16: 2 * 4 * 50 * 50 * 16 = 320,000.
        assert_eq!(mult_adds::attention(1, 4, 50, 50, 16), 320_000);
    }

    #[test]
    fn rows_count_params_and_trainability() {
        let _rng = crate::seed::exclusive_rng();
        let device = Device::flex().autodiff();
        let layer = LinearConfig::new(4, 3).init(&device);
        let mut builder = SummaryBuilder::new("one", &[2, 4]);
        builder.layer(
            "linear",
            "Linear",
            &layer,
            &[2, 3],
            mult_adds::linear(2, 4, 3),
        );
        let summary = builder.finish(&layer);
        assert_eq!(summary.layers[0].params, 15);
        assert_eq!(summary.layers[0].trainable_label(), "yes");
        assert_eq!(summary.total_params, layer.num_params());
        assert_eq!(summary.total_mult_adds, 24);
        assert_eq!(summary.param_bytes, 60);

        let frozen = layer.clone().no_grad();
        let mut builder = SummaryBuilder::new("one", &[2, 4]);
        builder.layer("linear", "Linear", &frozen, &[2, 3], 24);
        let summary = builder.finish(&frozen);
        assert_eq!(summary.layers[0].trainable_label(), "no");
        assert_eq!(summary.non_trainable_params, 15);
    }
}
