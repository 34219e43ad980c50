//! Inference throughput, for before/after reports (not a benchmark harness: `cargo xtask
//! bench` is; this gives a compression report its speed column on the same machine, measured
//! back to back).

use std::time::Instant;

use burn::tensor::{Device, Tensor};
use kiln_models::{Classifier, ImageModel};

/// Samples per second of `model`'s forward pass (no autodiff) on batches of 256 zero images
/// of `input` `[channels, height, width]`: 2 warm-up passes, then the median of 10, each
/// synchronised by reading one value back.
pub fn inference_throughput(model: &ImageModel, input: [usize; 3], device: &Device) -> f64 {
    let batch = 256;
    let [c, h, w] = input;
    let x = Tensor::<4>::zeros([batch, c, h, w], device);
    let mut times = Vec::with_capacity(10);
    for i in 0..12 {
        let started = Instant::now();
        let y = model.forward(x.clone());
        let _ = y.slice([0..1, 0..1]).into_data();
        if i >= 2 {
            times.push(started.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    batch as f64 / times[times.len() / 2]
}
