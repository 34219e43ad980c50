//! The backend's f32 `exp`, GELU (value and gradient) and softmax against f64 references, and its
//! 2x2 max pooling against the same maximum taken another way.
//!
//! Kiln builds burn-flex with vectorised versions of these (vendor/README.md); these tests pin
//! their accuracy so that a change of backend or patch cannot make them silently worse.

use burn::tensor::activation::{gelu, softmax};
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Distribution, Tensor, TensorData};

fn pool_2x2(x: Tensor<4>) -> Tensor<4> {
    max_pool2d(x, MaxPoolOptions::new([2, 2]).with_stride([2, 2]))
}

fn grid(lo: f32, hi: f32, step: f32) -> Vec<f32> {
    let n = ((hi - lo) / step) as usize;
    (0..=n).map(|i| lo + i as f32 * step).collect()
}

fn values(t: Tensor<1>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

fn tensor(xs: &[f32], device: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(xs.to_vec(), [xs.len()]), device)
}

/// Φ(x) in f64 through erfc, accurate in both tails.
fn normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

fn normal_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Largest absolute and relative errors (relative only where the reference exceeds 1e-30).
fn errors(xs: &[f32], got: &[f32], reference: impl Fn(f64) -> f64) -> (f64, f64, f32) {
    let (mut abs, mut rel, mut worst) = (0f64, 0f64, 0f32);
    for (&x, &g) in xs.iter().zip(got) {
        let r = reference(x as f64);
        let e = (g as f64 - r).abs();
        abs = abs.max(e);
        if r.abs() > 1e-30 && e / r.abs() > rel {
            rel = e / r.abs();
            worst = x;
        }
    }
    (abs, rel, worst)
}

#[test]
fn exp_is_within_two_ulp_of_f64_exp_over_the_normal_range() {
    let device = Device::flex();
    // Odd step so that the grid does not sit on round numbers only.
    let xs = grid(-87.0, 88.5, 0.003_7);
    // Contiguous tensor (in-place path) and a strided view (allocating path).
    let got = values(tensor(&xs, &device).exp());
    let (_, rel, worst) = errors(&xs, &got, f64::exp);
    assert!(rel < 2.4e-7, "exp: relative error {rel:e} at {worst}");
    let pairs = tensor(&xs[..xs.len() / 2 * 2], &device).reshape([xs.len() / 2, 2]);
    let strided: Vec<f32> = pairs
        .transpose()
        .exp()
        .transpose()
        .into_data()
        .try_into_vec()
        .unwrap();
    assert_eq!(&strided[..], &got[..strided.len()]);

    let edges = [
        f32::INFINITY,
        f32::NEG_INFINITY,
        89.0,
        1000.0,
        -104.0,
        -1000.0,
        0.0,
    ];
    let got = values(tensor(&edges, &device).exp());
    assert_eq!(got[..2], [f32::INFINITY, 0.0]);
    assert_eq!(got[2..4], [f32::INFINITY, f32::INFINITY]);
    assert!(got[4] < 1e-44 && got[5] == 0.0, "{got:?}");
    assert_eq!(got[6], 1.0);
    assert!(values(tensor(&[f32::NAN], &device).exp())[0].is_nan());
}

#[test]
fn gelu_and_its_gradient_match_the_exact_gelu() {
    let device = Device::flex().autodiff();
    let xs = grid(-9.0, 9.0, 0.000_71);
    let x = tensor(&xs, &device).require_grad();
    let y = gelu(x.clone());
    let got = values(y.clone());
    let grads = y.sum().backward();
    let dy = values(x.grad(&grads).unwrap());

    let (abs, rel, worst) = errors(&xs, &got, |x| x * normal_cdf(x));
    assert!(abs < 1e-6, "gelu: absolute error {abs:e}");
    assert!(rel < 2e-5, "gelu: relative error {rel:e} at {worst}");
    // The derivative crosses zero near x = -0.7518, where only an absolute bound means much.
    let derivative = |x: f64| normal_cdf(x) + x * normal_pdf(x);
    for (&x, &d) in xs.iter().zip(&dy) {
        let r = derivative(x as f64);
        let e = (d as f64 - r).abs();
        assert!(e < 2e-5 * r.abs() + 1e-7, "gelu'({x}) = {d}, expected {r}");
    }

    let edges = values(gelu(tensor(
        &[f32::INFINITY, -30.0, 30.0, 0.0, f32::NAN],
        &Device::flex(),
    )));
    assert_eq!(edges[..4], [f32::INFINITY, 0.0, 30.0, 0.0]);
    assert!(edges[4].is_nan());
}

#[test]
fn softmax_matches_the_f64_softmax() {
    let device = Device::flex();
    let xs = grid(-40.0, 40.0, 0.013);
    let rows = xs.len() / 50;
    let xs = &xs[..rows * 50];
    let got = values(softmax(tensor(xs, &device).reshape([rows, 50]), 1).reshape([rows * 50]));
    for (row, out) in xs.chunks(50).zip(got.chunks(50)) {
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
        let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
        for (&x, &y) in row.iter().zip(out) {
            let expected = (x as f64 - max).exp() / sum;
            assert!(
                (y as f64 - expected).abs() <= 1e-6 * expected + 1e-12,
                "softmax: {y} for {expected}"
            );
        }
    }
}

/// `max_pool2d` with a 2x2 window and stride 2 against the maximum over the window axes of a
/// reshaped view, value and gradient (ties have probability zero with normal inputs).
#[test]
fn two_by_two_max_pooling_matches_a_reshaped_maximum() {
    let device = Device::flex().autodiff();
    for [n, c, h, w] in [[2, 3, 8, 6], [3, 2, 7, 9], [1, 1, 2, 2]] {
        let x = Tensor::<4>::random([n, c, h, w], Distribution::Normal(0.0, 1.0), &device)
            .require_grad();
        let (h2, w2) = (h / 2, w / 2);
        let pooled = pool_2x2(x.clone());
        let reference = x
            .clone()
            .slice([0..n, 0..c, 0..h2 * 2, 0..w2 * 2])
            .reshape([n, c, h2, 2, w2, 2])
            .max_dim(5)
            .max_dim(3)
            .reshape([n, c, h2, w2]);
        assert_eq!(pooled.dims(), [n, c, h2, w2]);
        let diff: f32 = (pooled.clone() - reference.clone())
            .abs()
            .max()
            .into_scalar();
        assert_eq!(diff, 0.0, "{n}x{c}x{h}x{w}: values differ");
        let r = Tensor::<4>::random([n, c, h2, w2], Distribution::Normal(0.0, 1.0), &device);
        let g1 = (pooled * r.clone()).sum().backward();
        let g2 = (reference * r).sum().backward();
        let diff: f32 = (x.grad(&g1).unwrap() - x.grad(&g2).unwrap())
            .abs()
            .max()
            .into_scalar();
        assert!(diff < 1e-6, "{n}x{c}x{h}x{w}: gradients differ by {diff}");
    }
    // A NaN wins its window, as in PyTorch.
    let x = Tensor::<4>::from_data(
        TensorData::new(vec![1.0f32, f32::NAN, 3.0, 2.0], [1, 1, 2, 2]),
        &Device::flex(),
    );
    let pooled: Vec<f32> = pool_2x2(x).into_data().try_into_vec().unwrap();
    assert!(pooled[0].is_nan());
}
