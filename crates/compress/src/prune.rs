//! Unstructured magnitude pruning (per layer or global) and sparsity reports.
//!
//! The prunable weights are those of `Linear` and convolution layers (biases, norms,
//! embeddings and positional tables are left alone, as in Han et al. 2015 and PyTorch's
//! `prune.global_unstructured` recipes). A pruned weight is an exact zero; fine-tuning with
//! `FineTune::keep_pruned` masks its gradient so it stays zero through optimizer steps, and
//! the saved weights hold the zeros.

use std::collections::BTreeMap;
use std::fmt;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One float parameter tensor, read to the host.
#[derive(Clone, Debug)]
pub(crate) struct Weight {
    pub path: String,
    /// The owning module's type (`Linear`, `Conv2d`, `BatchNorm`...).
    pub kind: String,
    /// A Linear or convolution `weight`: what pruning and quantization act on.
    pub prunable: bool,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

#[derive(Default)]
struct Collector {
    stack: Vec<(String, String)>,
    weights: Vec<Weight>,
    error: Option<Error>,
}

impl ModuleVisitor for Collector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.stack
            .push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let (name, container) = self.stack.last().cloned().unwrap_or_default();
        let path = self
            .stack
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(".");
        let tensor = param.val();
        // Quantized weights are read as the values they stand for.
        let tensor = if matches!(tensor.dtype(), burn::tensor::DType::QFloat(_)) {
            tensor.dequantize()
        } else {
            tensor
        };
        let shape = tensor.dims().to_vec();
        match tensor.into_data().convert::<f32>().try_to_vec::<f32>() {
            Ok(values) => self.weights.push(Weight {
                path,
                prunable: name == "weight" && kiln_models::is_weight_layer(&container),
                kind: container.trim_start_matches("Struct:").to_string(),
                shape,
                values,
            }),
            Err(e) => {
                self.error.get_or_insert(Error::Read {
                    path,
                    reason: format!("{e:?}"),
                });
            }
        }
    }
}

/// Every float parameter of `module` (running statistics included), in visiting order.
pub(crate) fn float_params<M: Module>(module: &M) -> Result<Vec<Weight>> {
    let mut collector = Collector::default();
    module.visit(&mut collector);
    match collector.error {
        Some(e) => Err(e),
        None => Ok(collector.weights),
    }
}

/// The prunable weights of `module`, in visiting order.
pub(crate) fn prunable_weights<M: Module>(module: &M) -> Result<Vec<Weight>> {
    Ok(float_params(module)?
        .into_iter()
        .filter(|w| w.prunable)
        .collect())
}

/// Replaces prunable weights by new values (same shapes), by path.
struct Replace {
    stack: Vec<String>,
    values: BTreeMap<String, Vec<f32>>,
}

impl ModuleMapper for Replace {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.stack.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.stack.join(".");
        match self.values.remove(&path) {
            Some(values) => param.map(|t| {
                let shape = t.dims();
                let new = Tensor::from_data(TensorData::new(values, shape), &t.device());
                // A parameter that trained before pruning trains after it.
                if t.is_require_grad() {
                    new.require_grad()
                } else {
                    new
                }
            }),
            None => param,
        }
    }
}

pub(crate) fn replace_weights<M: Module>(module: M, values: BTreeMap<String, Vec<f32>>) -> M {
    module.map(&mut Replace {
        stack: Vec::new(),
        values,
    })
}

/// Where the pruning threshold is computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Every layer loses the same fraction of its weights.
    #[default]
    Layer,
    /// One magnitude threshold over all prunable weights: layers with many small weights
    /// (large fully connected layers) lose more.
    Global,
}

fn check_sparsity(sparsity: f64) -> Result<()> {
    if !(0.0..1.0).contains(&sparsity) {
        return Err(Error::Invalid(format!(
            "sparsity must be in [0, 1) (the fraction of weights set to zero), found {sparsity}"
        )));
    }
    Ok(())
}

/// Zeroes the `k` smallest-magnitude values of `values` (ties broken by position).
fn zero_smallest(values: &mut [f32], k: usize) {
    if k == 0 {
        return;
    }
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].abs().total_cmp(&values[b].abs()).then(a.cmp(&b)));
    for &i in &order[..k.min(values.len())] {
        values[i] = 0.0;
    }
}

/// Magnitude pruning: sets the smallest-magnitude weights of `module`'s Linear and
/// convolution layers to zero so that a fraction `sparsity` of them is zero (weights already
/// zero count as pruned), per layer or with one global threshold. With `only` non-empty,
/// only the layers under those paths are pruned, written as kiln-train's parameter groups
/// write them (`model.Mlp.hidden.0`; the `model.` of the trainer's task may be left out).
pub fn prune_magnitude<M: Module>(
    module: M,
    sparsity: f64,
    scope: Scope,
    only: &[String],
) -> Result<M> {
    check_sparsity(sparsity)?;
    // The trainer's paths start at its task, which holds the model as `model`.
    let only: Vec<String> = only
        .iter()
        .map(|p| p.strip_prefix("model.").unwrap_or(p).to_string())
        .collect();
    let only = only.as_slice();
    let all = prunable_weights(&module)?;
    let under = |path: &str, prefix: &str| {
        path == prefix || (path.starts_with(prefix) && path[prefix.len()..].starts_with('.'))
    };
    for p in only {
        if !all.iter().any(|w| under(&w.path, p)) {
            return Err(Error::UnknownLayer {
                path: p.clone(),
                available: all
                    .iter()
                    .map(|w| format!("model.{}", w.path.trim_end_matches(".weight")))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    let mut weights: Vec<Weight> = all
        .into_iter()
        .filter(|w| only.is_empty() || only.iter().any(|p| under(&w.path, p)))
        .collect();
    match scope {
        Scope::Layer => {
            for w in &mut weights {
                let k = (sparsity * w.values.len() as f64).round() as usize;
                zero_smallest(&mut w.values, k);
            }
        }
        Scope::Global => {
            let mut all: Vec<(f32, usize, usize)> = weights
                .iter()
                .enumerate()
                .flat_map(|(l, w)| {
                    w.values
                        .iter()
                        .enumerate()
                        .map(move |(i, v)| (v.abs(), l, i))
                })
                .collect();
            let k = (sparsity * all.len() as f64).round() as usize;
            if k > 0 {
                all.select_nth_unstable_by(k - 1, |a, b| {
                    a.0.total_cmp(&b.0).then((a.1, a.2).cmp(&(b.1, b.2)))
                });
                for &(_, l, i) in &all[..k] {
                    weights[l].values[i] = 0.0;
                }
            }
        }
    }
    let values = weights.into_iter().map(|w| (w.path, w.values)).collect();
    Ok(replace_weights(module, values))
}

/// The zeros of one prunable layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSparsity {
    /// Parameter path of the weight (e.g. `Mlp.hidden.0.weight`).
    pub path: String,
    /// `Linear`, `Conv2d`...
    pub kind: String,
    /// Weight shape.
    pub shape: Vec<usize>,
    /// Weights.
    pub params: usize,
    /// Of which exactly zero.
    pub zeros: usize,
}

impl LayerSparsity {
    /// Fraction of zero weights.
    pub fn sparsity(&self) -> f64 {
        self.zeros as f64 / self.params.max(1) as f64
    }
}

/// Zeros per prunable layer and in total.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SparsityReport {
    /// Per layer, in model order.
    pub layers: Vec<LayerSparsity>,
    /// All parameters of the model (prunable weights, biases, norms...).
    pub total_params: usize,
}

impl SparsityReport {
    /// Prunable weights.
    pub fn prunable(&self) -> usize {
        self.layers.iter().map(|l| l.params).sum()
    }

    /// Zero weights.
    pub fn zeros(&self) -> usize {
        self.layers.iter().map(|l| l.zeros).sum()
    }

    /// Fraction of the prunable weights that are zero.
    pub fn sparsity(&self) -> f64 {
        self.zeros() as f64 / self.prunable().max(1) as f64
    }

    /// Non-zero parameters of the whole model.
    pub fn remaining_params(&self) -> usize {
        self.total_params - self.zeros()
    }

    /// How many times fewer non-zero weights than the dense prunable weights.
    pub fn compression(&self) -> f64 {
        self.prunable() as f64 / (self.prunable() - self.zeros()).max(1) as f64
    }
}

impl fmt::Display for SparsityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<32} {:<8} {:>16} {:>10} {:>10} {:>9}",
            "layer", "kind", "shape", "weights", "remaining", "sparsity"
        )?;
        for l in &self.layers {
            writeln!(
                f,
                "{:<32} {:<8} {:>16} {:>10} {:>10} {:>8.2}%",
                l.path.trim_end_matches(".weight"),
                l.kind,
                format!("{:?}", l.shape),
                l.params,
                l.params - l.zeros,
                100.0 * l.sparsity()
            )?;
        }
        writeln!(
            f,
            "{:<32} {:<8} {:>16} {:>10} {:>10} {:>8.2}%",
            "total (prunable)",
            "",
            "",
            self.prunable(),
            self.prunable() - self.zeros(),
            100.0 * self.sparsity()
        )?;
        write!(
            f,
            "all parameters: {} ({} non-zero, {:.1}x fewer prunable weights)",
            self.total_params,
            self.remaining_params(),
            self.compression()
        )
    }
}

/// The sparsity of every prunable layer of `module`.
pub fn sparsity_report<M: Module>(module: &M) -> Result<SparsityReport> {
    let layers = prunable_weights(module)?
        .into_iter()
        .map(|w| LayerSparsity {
            zeros: w.values.iter().filter(|v| **v == 0.0).count(),
            params: w.values.len(),
            path: w.path,
            kind: w.kind,
            shape: w.shape,
        })
        .collect();
    Ok(SparsityReport {
        layers,
        total_params: module.num_params(),
    })
}

/// The sparsity of step `step` (1-based) of `steps` in Zhu & Gupta's gradual schedule
/// (2017): `s_final · (1 − (1 − step/steps)³)`: large steps first, small ones near the end.
pub fn gradual_sparsity(final_sparsity: f64, step: usize, steps: usize) -> f64 {
    let t = (step as f64 / steps.max(1) as f64).min(1.0);
    final_sparsity * (1.0 - (1.0 - t).powi(3))
}

/// The model summary of a zoo image model with its non-zero parameters per layer (a pruned
/// model's remaining weights), for the input `[1, channels, height, width]`.
pub fn pruned_summary(
    model: &kiln_models::ImageModel,
    name: &str,
    input: [usize; 3],
) -> Result<kiln_core::ModelSummary> {
    let [c, h, w] = input;
    let summary = kiln_models::Classifier::summary(model, name, &[1, c, h, w])?;
    // Parameter paths start with the model type (`Mlp.hidden.0.weight`); the summary's rows
    // are relative to it (`hidden.0`).
    let counts: Vec<(String, usize)> = float_params(model)?
        .into_iter()
        .map(|w| {
            let path = w
                .path
                .split_once('.')
                .map_or(w.path.clone(), |(_, rest)| rest.into());
            (path, w.values.iter().filter(|v| **v != 0.0).count())
        })
        .collect();
    Ok(summary.with_nonzero_params(&counts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smallest_magnitudes_go_first() {
        let mut v = vec![0.5, -0.1, 0.3, -0.7, 0.05, 0.2];
        zero_smallest(&mut v, 3);
        assert_eq!(v, vec![0.5, 0.0, 0.3, -0.7, 0.0, 0.0]);
        let mut w = vec![1.0, 2.0];
        zero_smallest(&mut w, 0);
        assert_eq!(w, vec![1.0, 2.0]);
    }

    #[test]
    fn the_gradual_schedule_ends_at_the_target() {
        assert_eq!(gradual_sparsity(0.9, 0, 4), 0.0);
        assert!((gradual_sparsity(0.9, 4, 4) - 0.9).abs() < 1e-12);
        let s: Vec<f64> = (1..=4).map(|i| gradual_sparsity(0.9, i, 4)).collect();
        assert!(s.windows(2).all(|w| w[1] > w[0]), "{s:?}");
        assert!(s[0] > 0.5, "large steps first: {s:?}");
    }
}
