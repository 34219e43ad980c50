//! Data-parallel training and inference steps on one machine's cores.
//!
//! burn's CPU backend runs most kernels of a small model's training step on one core (its
//! matrix products are too small to split well), so the second core idles. [`sharded_gradients`]
//! splits a batch into shards, runs forward and backward of each as a task on rayon's pool with a
//! forked replica of the model (the same parameter ids, separate autodiff graphs), and sums the
//! gradients: the result is the gradient of the mean loss over the whole batch, up to
//! floating-point summation order. [`TRAINING_SHARDS`] is fixed (not the core count), so a seeded
//! run computes the same thing on every machine.
//!
//! Only models whose training forward pass draws no random numbers and has no batch statistics
//! may be sharded: dropout masks drawn from two threads would interleave nondeterministically,
//! and batch normalisation would normalise each shard by its own statistics. The caller decides
//! (kiln-models' `ModelConfig::shardable`).
//!
//! Inference batches shard for every model ([`sharded_forward`]): without gradients, dropout
//! is off and batch normalisation uses its running statistics, so each sample's output does
//! not depend on the others.

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::Tensor;

/// Shards of a data-parallel training step.
pub const TRAINING_SHARDS: usize = 2;

/// The smallest batch worth sharding (each shard gets at least 16 samples).
pub const MIN_SHARDED_BATCH: usize = 32;

/// Into how many shards a training batch of `batch_size` samples is split: [`TRAINING_SHARDS`]
/// from [`MIN_SHARDED_BATCH`] samples on, else 1. `KILN_TRAINING_SHARDS=N` overrides the
/// shard count (`1` turns sharding off, e.g. to compare).
pub fn shards_for(batch_size: usize) -> usize {
    let shards = std::env::var("KILN_TRAINING_SHARDS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(TRAINING_SHARDS)
        .max(1);
    if batch_size >= MIN_SHARDED_BATCH {
        shards
    } else {
        1
    }
}

/// The fewest samples of an inference shard.
pub const MIN_INFERENCE_SHARD: usize = 16;

/// Into how many shards an inference batch of `batch_size` samples is split for
/// [`sharded_forward`]: one per core (`std::thread::available_parallelism`), each of at least
/// [`MIN_INFERENCE_SHARD`] samples. Inference computes each sample on its own, so the count
/// changes nothing but speed. `KILN_INFERENCE_SHARDS=N` overrides the core count (`1` turns
/// sharding off).
pub fn inference_shards_for(batch_size: usize) -> usize {
    let cores = std::env::var("KILN_INFERENCE_SHARDS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    inference_shards(batch_size, cores)
}

/// [`inference_shards_for`] on `cores` cores.
fn inference_shards(batch_size: usize, cores: usize) -> usize {
    cores.min(batch_size / MIN_INFERENCE_SHARD).max(1)
}

/// The `[start, end)` sample ranges of `shards` near-equal shards of `batch_size` samples.
pub fn shard_ranges(batch_size: usize, shards: usize) -> Vec<std::ops::Range<usize>> {
    let shards = shards.clamp(1, batch_size.max(1));
    let per = batch_size / shards;
    let extra = batch_size % shards;
    let mut start = 0;
    (0..shards)
        .map(|i| {
            let len = per + usize::from(i < extra);
            let range = start..start + len;
            start += len;
            range
        })
        .collect()
}

/// Gradients of the mean of the per-sample losses over a batch of `batch_size` samples split
/// into `inputs` (one shard each), computed in parallel: `step(replica, shard)` returns the
/// shard's per-sample losses (shape `[shard_len]`) and whatever else the caller wants back
/// (logits for metrics, say). Each shard runs as a rayon task with a forked replica of
/// `model`. The gradients are keyed by `model`'s parameter ids, as
/// `GradientsParams::from_grads(mean_loss.backward(), model)` would be.
///
/// A panic in a shard is resumed on the calling thread.
pub fn sharded_gradients<M, I, O, F>(
    model: &M,
    inputs: Vec<I>,
    batch_size: usize,
    step: F,
) -> (GradientsParams, Vec<O>)
where
    M: Module + Send,
    I: Send,
    O: Send,
    F: Fn(&M, I) -> (Tensor<1>, O) + Sync,
{
    let device = model.devices().into_iter().next().unwrap_or_default();
    let scale = 1.0 / batch_size.max(1) as f32;
    // On rayon's pool, like `sharded_forward`.
    use rayon::prelude::*;
    let work: Vec<(M, I)> = inputs
        .into_iter()
        .map(|input| (model.clone().fork(&device), input))
        .collect();
    let results: Vec<(GradientsParams, O)> = work
        .into_par_iter()
        .map(|(replica, input)| {
            let (losses, out) = step(&replica, input);
            let grads = losses.sum().mul_scalar(scale).backward();
            (GradientsParams::from_grads(grads, &replica), out)
        })
        .collect();
    let mut accumulator = GradientsAccumulator::<M>::new();
    let mut outs = Vec::with_capacity(results.len());
    for (grads, out) in results {
        accumulator.accumulate(model, grads);
        outs.push(out);
    }
    (accumulator.grads(), outs)
}

/// `forward(model, x)` for a batch-first input `x`, with the batch split into
/// [`inference_shards_for`] near-equal parts each run as a rayon task with a clone of `model`,
/// the outputs concatenated along the batch dimension: what `forward(model, x)` computes, as
/// long as `forward` treats samples independently (an inference pass: no batch statistics, no
/// dropout). One shard runs on the calling thread.
///
/// burn's CPU backend splits only large matrix products across cores; sharding an inference
/// batch also puts the element-wise work, normalisations and small products of the other
/// shards on the other cores.
///
/// A panic in a shard is resumed on the calling thread (rayon's behaviour).
pub fn sharded_forward<M, F, const D: usize, const E: usize>(
    model: &M,
    x: Tensor<D>,
    forward: F,
) -> Tensor<E>
where
    M: Module + Send,
    F: Fn(&M, Tensor<D>) -> Tensor<E> + Sync,
{
    let shards = inference_shards_for(x.dims()[0]);
    forward_in_shards(model, x, shards, forward)
}

/// [`sharded_forward`] with `shards` shards.
fn forward_in_shards<M, F, const D: usize, const E: usize>(
    model: &M,
    x: Tensor<D>,
    shards: usize,
    forward: F,
) -> Tensor<E>
where
    M: Module + Send,
    F: Fn(&M, Tensor<D>) -> Tensor<E> + Sync,
{
    let ranges = shard_ranges(x.dims()[0], shards);
    if ranges.len() <= 1 {
        return forward(model, x);
    }
    // On rayon's pool, where burn-flex and gemm already run their parallel kernels: a shard
    // whose matrix products split across the cores shares them with the other shards instead
    // of competing with them (own threads made a large-product MLP twice slower).
    use rayon::prelude::*;
    let work: Vec<(M, Tensor<D>)> = ranges
        .into_iter()
        .map(|r| (model.clone(), x.clone().narrow(0, r.start, r.len())))
        .collect();
    let outs: Vec<Tensor<E>> = work
        .into_par_iter()
        .map(|(replica, part)| forward(&replica, part))
        .collect();
    Tensor::cat(outs, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::{Device, Distribution};

    #[test]
    fn shard_ranges_cover_the_batch() {
        assert_eq!(shard_ranges(64, 2), vec![0..32, 32..64]);
        assert_eq!(shard_ranges(7, 2), vec![0..4, 4..7]);
        assert_eq!(shard_ranges(1, 2), vec![0..1]);
        assert_eq!(shards_for(31), 1);
        assert_eq!(shards_for(64), TRAINING_SHARDS);
        assert_eq!(inference_shards(MIN_INFERENCE_SHARD * 2 - 1, 2), 1);
        assert_eq!(inference_shards(MIN_INFERENCE_SHARD * 2, 2), 2);
        assert_eq!(inference_shards(MIN_INFERENCE_SHARD * 3, 4), 3);
        assert_eq!(inference_shards(1 << 20, 4), 4);
        assert_eq!(inference_shards(1 << 20, 0), 1);
        assert_eq!(inference_shards(0, 2), 1);
    }

    #[derive(Module, Debug)]
    struct Net {
        a: Linear,
        b: Linear,
    }

    struct MaxDiff<'a>(&'a GradientsParams, &'a GradientsParams, f32);
    impl ModuleVisitor for MaxDiff<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let (a, b) = (
                self.0.get::<D>(p.id).unwrap(),
                self.1.get::<D>(p.id).unwrap(),
            );
            self.2 = self.2.max((a - b).abs().max().into_scalar());
        }
    }

    #[test]
    fn sharded_gradients_equal_the_whole_batchs() {
        // Draws from the backend RNG: not while another test seeds it.
        let _rng = crate::seed::exclusive_rng();
        let device = Device::flex().autodiff();
        let net = Net {
            a: LinearConfig::new(5, 8).init(&device),
            b: LinearConfig::new(8, 3).init(&device),
        };
        let x = Tensor::<2>::random([9, 5], Distribution::Normal(0.0, 1.0), &device);
        let losses = |net: &Net, x: Tensor<2>| -> Tensor<1> {
            let [n, _] = x.dims();
            let y = net
                .b
                .forward(burn::tensor::activation::relu(net.a.forward(x)));
            y.powi_scalar(2).sum_dim(1).reshape([n])
        };
        let whole = GradientsParams::from_grads(losses(&net, x.clone()).mean().backward(), &net);
        let shards = shard_ranges(9, 2)
            .into_iter()
            .map(|r| x.clone().slice([r, 0..5]))
            .collect();
        let (sharded, outs) = sharded_gradients(&net, shards, 9, |net, x| {
            let l = losses(net, x);
            (l.clone(), l.dims()[0])
        });
        assert_eq!(outs, vec![5, 4]);
        let mut diff = MaxDiff(&whole, &sharded, 0.0);
        net.visit(&mut diff);
        assert!(diff.2 < 1e-5, "max gradient difference {}", diff.2);
    }

    #[test]
    fn a_sharded_forward_pass_computes_the_whole_batchs() {
        let _rng = crate::seed::exclusive_rng();
        let device = Device::flex();
        let net = Net {
            a: LinearConfig::new(5, 8).init(&device),
            b: LinearConfig::new(8, 3).init(&device),
        };
        let x = Tensor::<2>::random([9, 5], Distribution::Normal(0.0, 1.0), &device);
        let forward = |net: &Net, x: Tensor<2>| net.b.forward(net.a.forward(x).tanh());
        let whole = forward(&net, x.clone());
        for shards in [1, 2, 3, 9, 20] {
            let sharded = forward_in_shards(&net, x.clone(), shards, forward);
            assert_eq!(sharded.dims(), [9, 3]);
            let diff: f32 = (sharded - whole.clone()).abs().max().into_scalar();
            assert!(diff < 1e-6, "{shards} shards: max difference {diff}");
        }
        // Row i of the output belongs to sample i: a batch with one odd sample.
        let odd = Tensor::cat(
            vec![x.clone().narrow(0, 0, 8), x.clone().narrow(0, 8, 1) * 3.0],
            0,
        );
        let out = forward_in_shards(&net, odd.clone(), 2, forward);
        let last = forward(&net, odd.narrow(0, 8, 1));
        let diff: f32 = (out.narrow(0, 8, 1) - last).abs().max().into_scalar();
        assert!(diff < 1e-6);
    }
}
