//! The backend's f32 `exp` and GELU (value and gradient) against f64 references.
//!
//! Kiln builds burn-flex with vectorised versions of these (vendor/README.md); these tests pin
//! their accuracy so that a change of backend or patch cannot make them silently worse.

use burn::tensor::activation::gelu;
use burn::tensor::{Device, Tensor, TensorData};

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
