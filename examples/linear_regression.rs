//! The classic first model: linear regression fitted by gradient descent, checked against the
//! closed-form least-squares solution on the same data.
//!
//! Data: 100 points `x` uniform in [0, 1)², `y = 3·x1 + 2·x2 + ε` with `ε ~ N(0, 1)` (seeded).
//! Model: burn's `Linear` 2 → 1, MSE loss, Adam (lr 0.01), 1,000 full-batch epochs.
//!
//! What to expect, honestly: the noise has variance 1, so no model of `x` can reach a mean
//! squared error much below 1 on this data: the least-squares fit, the best any linear model
//! can do on these 100 points, leaves an MSE of about 1 (a little less, since it also fits
//! some of the noise). An MSE like 0.01 would mean the model predicts the noise, which is
//! impossible for a function of `x`. With 100 noisy points the least-squares weights
//! themselves are only within a few tenths of 3 and 2 (their standard error is about
//! `1 / sqrt(100 · var(x)) ≈ 0.35`); gradient descent should land on them, not on 3 and 2.
//!
//! `cargo run --example linear_regression` (the full run; `KILN_EXAMPLE_TINY=1` is the same
//! here, it takes well under a second).

use kiln::burn::module::Module;
use kiln::burn::nn::LinearConfig;
use kiln::burn::nn::loss::{MseLoss, Reduction};
use kiln::burn::optim::{AdamConfig, GradientsParams, Optimizer};
use kiln::burn::tensor::{Device, Tensor, TensorData};
use rand::RngExt;
use rand_distr::{Distribution, Normal};

const N: usize = 100;

/// Least squares for `y ≈ w1·x1 + w2·x2 + b` by the normal equations (3x3, solved by
/// Gaussian elimination in f64): `[w1, w2, b]`.
fn least_squares(x: &[[f64; 2]], y: &[f64]) -> [f64; 3] {
    let mut a = [[0f64; 4]; 3];
    for (xi, &yi) in x.iter().zip(y) {
        let row = [xi[0], xi[1], 1.0];
        for r in 0..3 {
            for c in 0..3 {
                a[r][c] += row[r] * row[c];
            }
            a[r][3] += row[r] * yi;
        }
    }
    for col in 0..3 {
        let pivot = (col..3)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap_or(col);
        a.swap(col, pivot);
        for r in 0..3 {
            if r != col {
                let f = a[r][col] / a[col][col];
                for c in col..4 {
                    a[r][c] -= f * a[col][c];
                }
            }
        }
    }
    [a[0][3] / a[0][0], a[1][3] / a[1][1], a[2][3] / a[2][2]]
}

fn mse(x: &[[f64; 2]], y: &[f64], [w1, w2, b]: [f64; 3]) -> f64 {
    x.iter()
        .zip(y)
        .map(|(xi, yi)| (w1 * xi[0] + w2 * xi[1] + b - yi).powi(2))
        .sum::<f64>()
        / y.len() as f64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The data, from one seeded generator.
    let seed = kiln::core::Seed(42);
    let mut rng = seed.rng("data");
    let noise = Normal::new(0.0, 1.0)?;
    let x: Vec<[f64; 2]> = (0..N)
        .map(|_| [rng.random::<f64>(), rng.random::<f64>()])
        .collect();
    let y: Vec<f64> = x
        .iter()
        .map(|p| 3.0 * p[0] + 2.0 * p[1] + noise.sample(&mut rng))
        .collect();

    // The model and its training loop, on the CPU backend with autodiff.
    let device = Device::flex().autodiff();
    seed.apply(&device);
    let xs = Tensor::<2>::from_data(
        TensorData::new(x.iter().flatten().map(|&v| v as f32).collect(), [N, 2]),
        &device,
    );
    let ys = Tensor::<2>::from_data(
        TensorData::new(y.iter().map(|&v| v as f32).collect(), [N, 1]),
        &device,
    );
    let mut model = LinearConfig::new(2, 1).init(&device);
    let mut optimizer = AdamConfig::new().init();
    let loss_fn = MseLoss::new();
    for epoch in 1..=1000 {
        let loss = loss_fn.forward(model.forward(xs.clone()), ys.clone(), Reduction::Mean);
        if epoch % 250 == 0 {
            println!("epoch {epoch:>4}: MSE {:.4}", loss.clone().into_scalar());
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(0.01, model, grads);
    }

    // Learned parameters (burn's Linear weight is [d_in, d_out]).
    let model = model.valid();
    let w: Vec<f32> = model.weight.val().into_data().convert::<f32>().to_vec()?;
    let b: Vec<f32> = model
        .bias
        .as_ref()
        .map(|b| b.val().into_data().convert::<f32>().to_vec())
        .transpose()?
        .unwrap_or_else(|| vec![0.0]);
    let learned = [f64::from(w[0]), f64::from(w[1]), f64::from(b[0])];
    let exact = least_squares(&x, &y);
    let (mse_learned, mse_exact) = (mse(&x, &y, learned), mse(&x, &y, exact));
    println!("                 w1       w2        b      MSE");
    println!(
        "true          3.0000   2.0000   0.0000   (noise variance 1)"
    );
    println!(
        "least squares {:>6.4}   {:>6.4}  {:>7.4}   {:.4}",
        exact[0], exact[1], exact[2], mse_exact
    );
    println!(
        "Adam, 1,000   {:>6.4}   {:>6.4}  {:>7.4}   {:.4}",
        learned[0], learned[1], learned[2], mse_learned
    );

    // The checks that make this example fail if something is wrong.
    let ratio = mse_learned / mse_exact;
    assert!(
        (1.0..1.01).contains(&ratio),
        "gradient descent's MSE {mse_learned:.5} is not within 1% of the least-squares {mse_exact:.5}"
    );
    for (l, e) in learned.iter().zip(&exact) {
        assert!((l - e).abs() < 0.05, "learned {learned:?} vs least squares {exact:?}");
    }
    assert!(
        (0.7..1.3).contains(&mse_exact),
        "least-squares MSE {mse_exact} far from the noise variance"
    );
    println!("check: MSE within 1% of the least-squares optimum (ratio {ratio:.5})");
    Ok(())
}
