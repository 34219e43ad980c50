//! Layer computations Kiln does differently from burn-nn where that is measurably faster on
//! the CPU (see `docs/PERFORMANCE.md`).
//!
//! [`conv2d_cnhw`]: a stride-1, ungrouped, undilated convolution on activations laid out
//! `[channels, batch, height, width]` ("CNHW"), as explicit im2col (one shifted view of the
//! input per kernel tap, concatenated into `[taps · C, batch · H' · W']`) and **one** large
//! matrix multiply `[O, taps · C] × [taps · C, batch · H' · W']`, whose result is already the
//! next layer's CNHW input. It is written with burn tensor operations, so autodiff derives the
//! backward pass: two more large matrix multiplies (no per-image products and no batch
//! reduction) and slice scatters. burn's own convolution (NCHW) lowers to a 3-D convolution
//! with per-image products and layout copies; on the reference CNN the CNHW form trains
//! faster (measured in `docs/PERFORMANCE.md`). Max and average pooling, ReLU and the other
//! activations are layout-agnostic, so a whole stack of such convolutions runs in CNHW and
//! converts once at each end.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use burn::tensor::ops::PadMode;

/// Whether [`conv2d_cnhw`] computes `conv` itself (stride 1, one group, no dilation, explicit
/// or no padding) rather than handing it to burn.
pub fn cnhw_eligible(conv: &Conv2d) -> bool {
    !matches!(conv.padding, PaddingConfig2d::Same)
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.groups == 1
}

/// The convolution `conv` of CNHW activations `x` (`[C, batch, H, W]` → `[O, batch, H', W']`),
/// equal to burn's `conv.forward` on the NCHW layout. A convolution that is not
/// [`cnhw_eligible`] goes through burn's (with two layout swaps).
pub fn conv2d_cnhw(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let (top, left, bottom, right) = match conv.padding {
        PaddingConfig2d::Explicit(t, l, b, r) => (t, l, b, r),
        _ => (0, 0, 0, 0),
    };
    let [kh, kw] = conv.kernel_size;
    let [_, _, h, w] = x.dims();
    if !cnhw_eligible(conv) || h + top + bottom < kh || w + left + right < kw {
        return conv.forward(x.swap_dims(0, 1)).swap_dims(0, 1);
    }
    let x = if top + left + bottom + right > 0 {
        x.pad((left, right, top, bottom), PadMode::Constant(0.0))
    } else {
        x
    };
    let [channels, batch, height, width] = x.dims();
    let (oh, ow) = (height - kh + 1, width - kw + 1);
    // Columns `[kh·kw·C, batch·oh·ow]`, tap-major: row (i·kw + j)·C + c. The taps stay 4-D
    // views until `cat` writes them into one contiguous tensor, so no strided view is copied
    // just to be reshaped, forward or backward.
    let taps: Vec<Tensor<4>> = (0..kh)
        .flat_map(|i| (0..kw).map(move |j| (i, j)))
        .map(|(i, j)| {
            x.clone()
                .slice([0..channels, 0..batch, i..i + oh, j..j + ow])
        })
        .collect();
    let cols = Tensor::cat(taps, 0).reshape([kh * kw * channels, batch * oh * ow]);
    // Weight `[O, C, kh, kw]` → `[O, kh·kw·C]` in the same tap-major order.
    let [out, _, _, _] = conv.weight.dims();
    let weight = conv
        .weight
        .val()
        .permute([0, 2, 3, 1])
        .reshape([out, kh * kw * channels]);
    let y = weight.matmul(cols);
    let y = match &conv.bias {
        Some(b) => y + b.val().reshape([out, 1]),
        None => y,
    };
    y.reshape([out, batch, oh, ow])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Device, Distribution};

    fn max_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    #[test]
    fn cnhw_convolution_equals_burns_forward_and_backward() {
        let device = Device::flex().autodiff();
        for (c_in, c_out, k, pad, stride) in [
            (1, 32, 3, 0, 1),
            (32, 64, 3, 0, 1),
            (3, 8, 5, 2, 1),
            (4, 6, 1, 0, 1),
            (4, 6, 3, 1, 2),
        ] {
            let conv = Conv2dConfig::new([c_in, c_out], [k, k])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .with_stride([stride, stride])
                .init(&device);
            assert_eq!(cnhw_eligible(&conv), stride == 1);
            let x = Tensor::<4>::random([3, c_in, 13, 11], Distribution::Normal(0.0, 1.0), &device)
                .require_grad();
            let expected = conv.forward(x.clone());
            let got = conv2d_cnhw(&conv, x.clone().swap_dims(0, 1)).swap_dims(0, 1);
            assert_eq!(got.dims(), expected.dims());
            let case = format!("{c_in}->{c_out} k{k} pad {pad} stride {stride}");
            assert!(
                max_diff(expected.clone(), got.clone()) < 1e-4,
                "forward {case}"
            );
            // Gradients of a random weighted sum, for the input, the weight and the bias.
            let r = Tensor::<4>::random(got.dims(), Distribution::Normal(0.0, 1.0), &device);
            let g1 = (expected * r.clone()).sum().backward();
            let g2 = (got * r).sum().backward();
            let dx = max_diff(x.grad(&g1).unwrap(), x.grad(&g2).unwrap());
            assert!(dx < 1e-3, "input gradient {case}: {dx}");
            let w = conv.weight.val();
            let dw = max_diff(w.grad(&g1).unwrap(), w.grad(&g2).unwrap());
            assert!(dw < 1e-3, "weight gradient {case}: {dw}");
            let b = conv.bias.as_ref().unwrap().val();
            let db: f32 = (b.grad(&g1).unwrap() - b.grad(&g2).unwrap())
                .abs()
                .max()
                .into_scalar();
            assert!(db < 1e-3, "bias gradient {case}: {db}");
        }
    }
}
