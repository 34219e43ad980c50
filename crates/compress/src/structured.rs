//! Structured pruning: whole convolution channels and dense neurons removed by the norm of
//! their weights, the layers physically shrunk (a smaller config, smaller tensors), so the
//! model gets smaller and faster, not just sparser.
//!
//! For a convolution block, a channel's score is the L1 or L2 norm of its filter
//! (`weight[c, ..]`); removing it removes the filter, its bias and BatchNorm entries, and the
//! matching input slice of the next convolution (or the `H·W` rows of the first dense layer
//! that the flattening fed from it). For a hidden dense layer, a neuron's score is the norm of
//! its weight column; removing it removes the column, the bias entry and the next layer's
//! row. The output layer and the input are never pruned.
//!
//! For ViT-lite, each encoder layer loses whole attention heads and feed-forward neurons. A
//! head's score is the norm of everything it owns: its `d_k` columns of the query, key and
//! value projections (weights and biases) and its `d_k` rows of the output projection;
//! removing it removes all of them and the layer's head count drops (Michel et al. 2019,
//! "Are sixteen heads really better than one?", remove heads the same way, scored by
//! importance). A feed-forward neuron is scored and removed like a dense neuron
//! (`linear_inner` column and bias, `linear_outer` row). The residual width (`dim`), the patch
//! embedding, the norms and the classification head are kept.

use std::collections::BTreeMap;

use burn::tensor::Device;
use kiln_models::{ImageModel, ModelConfig};
use serde::{Deserialize, Serialize};

use crate::prune::replace_weights;
use crate::{Error, Result};

/// How a channel or neuron is scored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Norm {
    /// Sum of absolute weights (Li et al. 2017, "Pruning filters for efficient ConvNets").
    #[default]
    L1,
    /// Euclidean norm.
    L2,
}

/// Every float parameter of `model` by path, as a shape and values.
fn all_floats(model: &ImageModel) -> Result<BTreeMap<String, Dense>> {
    Ok(crate::prune::float_params(model)?
        .into_iter()
        .map(|w| (w.path, (w.shape, w.values)))
        .collect())
}

/// A tensor as a shape and row-major values.
type Dense = (Vec<usize>, Vec<f32>);

/// Keeps the indices `keep` of dimension `dim`.
fn select(t: &Dense, dim: usize, keep: &[usize]) -> Dense {
    let (shape, v) = t;
    let outer: usize = shape[..dim].iter().product();
    let inner: usize = shape[dim + 1..].iter().product();
    let n = shape[dim];
    let mut out = Vec::with_capacity(outer * keep.len() * inner);
    for o in 0..outer {
        for &k in keep {
            let start = (o * n + k) * inner;
            out.extend_from_slice(&v[start..start + inner]);
        }
    }
    let mut new_shape = shape.clone();
    new_shape[dim] = keep.len();
    (new_shape, out)
}

/// Norm of each index of dimension `dim`.
fn scores(t: &Dense, dim: usize, norm: Norm) -> Vec<f64> {
    let (shape, v) = t;
    let inner: usize = shape[dim + 1..].iter().product();
    let n = shape[dim];
    let mut s = vec![0f64; n];
    for (i, x) in v.iter().enumerate() {
        let k = (i / inner) % n;
        let x = *x as f64;
        s[k] += match norm {
            Norm::L1 => x.abs(),
            Norm::L2 => x * x,
        };
    }
    if norm == Norm::L2 {
        s.iter_mut().for_each(|x| *x = x.sqrt());
    }
    s
}

/// The `keep` highest-scoring indices, in increasing order.
fn top(scores: &[f64], keep: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut kept = order[..keep].to_vec();
    kept.sort_unstable();
    kept
}

/// Scores of groups of `size` consecutive indices, from per-index partial scores (L1 sums;
/// L2 norms combined as the root of the summed squares).
fn group_scores(parts: &[Vec<f64>], size: usize, norm: Norm) -> Vec<f64> {
    let n = parts[0].len() / size;
    (0..n)
        .map(|g| {
            let idx = g * size..(g + 1) * size;
            let total: f64 = parts
                .iter()
                .flat_map(|p| p[idx.clone()].iter())
                .map(|s| match norm {
                    Norm::L1 => *s,
                    Norm::L2 => s * s,
                })
                .sum();
            match norm {
                Norm::L1 => total,
                Norm::L2 => total.sqrt(),
            }
        })
        .collect()
}

fn kept_count(n: usize, fraction: f64) -> usize {
    ((n as f64 * (1.0 - fraction)).round() as usize).clamp(1, n)
}

struct Tensors {
    values: BTreeMap<String, Dense>,
}

impl Tensors {
    fn get(&self, path: &str) -> Result<&Dense> {
        self.values
            .get(path)
            .ok_or_else(|| Error::Invalid(format!("the model has no parameter `{path}`")))
    }

    fn select(&mut self, path: &str, dim: usize, keep: &[usize]) -> Result<()> {
        let t = select(self.get(path)?, dim, keep);
        self.values.insert(path.to_string(), t);
        Ok(())
    }

    /// Selects in every existing path of `paths` (optional bias / norm entries).
    fn select_optional(&mut self, paths: &[String], keep: &[usize]) -> Result<()> {
        for p in paths {
            if self.values.contains_key(p) {
                self.select(p, 0, keep)?;
            }
        }
        Ok(())
    }
}

/// Removes the fraction `fraction` (in [0, 1)) of the channels of every convolution block and
/// of the neurons of every hidden dense layer of an MLP or CNN, or of the attention heads and
/// feed-forward neurons of every ViT-lite encoder layer, by `norm`, returning the smaller model
/// and its config. Other architectures are an error naming them.
pub fn prune_structured(
    model: ImageModel,
    config: &ModelConfig,
    fraction: f64,
    norm: Norm,
    device: &Device,
) -> Result<(ImageModel, ModelConfig)> {
    if !(0.0..1.0).contains(&fraction) {
        return Err(Error::Invalid(format!(
            "the fraction of channels to remove must be in [0, 1), found {fraction}"
        )));
    }
    let mut t = Tensors {
        values: all_floats(&model)?,
    };
    let mut config = config.clone();
    match &mut config {
        ModelConfig::Mlp(c) => {
            let dense: Vec<String> = (0..c.hidden_sizes.len())
                .map(|i| format!("Mlp.hidden.{i}"))
                .chain(["Mlp.output".to_string()])
                .collect();
            for i in 0..c.hidden_sizes.len() {
                let w = format!("{}.weight", dense[i]);
                let keep = top(
                    &scores(t.get(&w)?, 1, norm),
                    kept_count(c.hidden_sizes[i], fraction),
                );
                t.select(&w, 1, &keep)?;
                t.select_optional(&[format!("{}.bias", dense[i])], &keep)?;
                t.select(&format!("{}.weight", dense[i + 1]), 0, &keep)?;
                c.hidden_sizes[i] = keep.len();
            }
        }
        ModelConfig::Cnn(c) => {
            let shapes = c.block_shapes()?;
            let dense: Vec<String> = (0..c.hidden.len())
                .map(|i| format!("Cnn.hidden.{i}"))
                .chain(["Cnn.output".to_string()])
                .collect();
            #[allow(clippy::needless_range_loop)] // `i` also names the block's path.
            for i in 0..c.blocks.len() {
                let block = format!("Cnn.blocks.{i}");
                let w = format!("{block}.conv.weight");
                let keep = top(
                    &scores(t.get(&w)?, 0, norm),
                    kept_count(c.blocks[i].channels, fraction),
                );
                t.select(&w, 0, &keep)?;
                let per_channel: Vec<String> = ["conv.bias", "norm.gamma", "norm.beta"]
                    .iter()
                    .chain(&["norm.running_mean", "norm.running_var"])
                    .map(|p| format!("{block}.{p}"))
                    .collect();
                t.select_optional(&per_channel, &keep)?;
                if i + 1 < c.blocks.len() {
                    t.select(&format!("Cnn.blocks.{}.conv.weight", i + 1), 1, &keep)?;
                } else {
                    // The flattening is channel-major: channel k feeds rows k·H·W .. (k+1)·H·W.
                    let [_, h, w] = shapes[i];
                    let rows: Vec<usize> = keep
                        .iter()
                        .flat_map(|&k| k * h * w..(k + 1) * h * w)
                        .collect();
                    t.select(&format!("{}.weight", dense[0]), 0, &rows)?;
                }
                c.blocks[i].channels = keep.len();
            }
            for i in 0..c.hidden.len() {
                let w = format!("{}.weight", dense[i]);
                let keep = top(
                    &scores(t.get(&w)?, 1, norm),
                    kept_count(c.hidden[i], fraction),
                );
                t.select(&w, 1, &keep)?;
                t.select_optional(&[format!("{}.bias", dense[i])], &keep)?;
                t.select(&format!("{}.weight", dense[i + 1]), 0, &keep)?;
                c.hidden[i] = keep.len();
            }
        }
        ModelConfig::VitLite(c) => {
            let d_k = c.head_dim();
            let (mut heads, mut mlp_dims) = (Vec::new(), Vec::new());
            for i in 0..c.depth {
                let layer = format!("VitLite.encoder.layers.{i}");
                let mha = |p: &str| format!("{layer}.mha.{p}");
                // Heads: q/k/v columns (weights [dim, h·d_k], biases [h·d_k]) and output rows.
                let mut parts = Vec::new();
                for proj in ["query", "key", "value"] {
                    parts.push(scores(t.get(&mha(&format!("{proj}.weight")))?, 1, norm));
                    if let Ok(b) = t.get(&mha(&format!("{proj}.bias"))) {
                        parts.push(scores(b, 0, norm));
                    }
                }
                parts.push(scores(t.get(&mha("output.weight"))?, 0, norm));
                let head_keep = top(
                    &group_scores(&parts, d_k, norm),
                    kept_count(c.heads_of(i), fraction),
                );
                let cols: Vec<usize> = head_keep
                    .iter()
                    .flat_map(|&h| h * d_k..(h + 1) * d_k)
                    .collect();
                for proj in ["query", "key", "value"] {
                    t.select(&mha(&format!("{proj}.weight")), 1, &cols)?;
                    t.select_optional(&[mha(&format!("{proj}.bias"))], &cols)?;
                }
                t.select(&mha("output.weight"), 0, &cols)?;
                heads.push(head_keep.len());

                let inner = format!("{layer}.pwff.linear_inner");
                let keep = top(
                    &scores(t.get(&format!("{inner}.weight"))?, 1, norm),
                    kept_count(c.mlp_dim_of(i), fraction),
                );
                t.select(&format!("{inner}.weight"), 1, &keep)?;
                t.select_optional(&[format!("{inner}.bias")], &keep)?;
                t.select(&format!("{layer}.pwff.linear_outer.weight"), 0, &keep)?;
                mlp_dims.push(keep.len());
            }
            c.layer_heads = heads;
            c.layer_mlp_dims = mlp_dims;
        }
        other => {
            return Err(Error::Invalid(format!(
                "structured pruning supports MLP, CNN and ViT-lite models, not `{}`",
                other.kind()
            )));
        }
    }
    let smaller = config.init_image(device)?;
    for (path, (shape, _)) in &all_floats(&smaller)? {
        match t.values.get(path) {
            Some((s, _)) if s == shape => {}
            found => {
                return Err(Error::Invalid(format!(
                    "structured pruning produced {:?} for `{path}`, the smaller model expects {shape:?}",
                    found.map(|f| &f.0)
                )));
            }
        }
    }
    let values = t.values.into_iter().map(|(k, (_, v))| (k, v)).collect();
    Ok((replace_weights(smaller, values), config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_and_scores_follow_the_dimension() {
        // 2 x 3, row-major.
        let t = (vec![2, 3], vec![1.0, -2.0, 3.0, -4.0, 5.0, -6.0]);
        assert_eq!(
            select(&t, 1, &[0, 2]),
            (vec![2, 2], vec![1.0, 3.0, -4.0, -6.0])
        );
        assert_eq!(select(&t, 0, &[1]), (vec![1, 3], vec![-4.0, 5.0, -6.0]));
        assert_eq!(scores(&t, 1, Norm::L1), vec![5.0, 7.0, 9.0]);
        assert_eq!(scores(&t, 0, Norm::L1), vec![6.0, 15.0]);
        let l2 = scores(&t, 0, Norm::L2);
        assert!((l2[0] - 14f64.sqrt()).abs() < 1e-12);
        assert_eq!(top(&[0.5, 3.0, 1.0, 2.0], 2), vec![1, 3]);
        assert_eq!(kept_count(10, 0.75), 3);
        assert_eq!(kept_count(2, 0.9), 1);
        // Two groups of two: L1 sums, L2 combines norms.
        let parts = vec![vec![1.0, 2.0, 3.0, 4.0], vec![0.5, 0.5, 0.0, 0.0]];
        assert_eq!(group_scores(&parts, 2, Norm::L1), vec![4.0, 7.0]);
        let l2 = group_scores(&parts, 2, Norm::L2);
        assert!((l2[0] - 5.5f64.sqrt()).abs() < 1e-12 && (l2[1] - 5.0).abs() < 1e-12);
    }
}
