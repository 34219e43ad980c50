//! Each optimizer, three steps on a two-element weight with a known constant gradient, against
//! the update rule written out by hand in f64 (to 1e-6).

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use kiln_optim::{Clip, OptimConfig, OptimizerConfig};

#[derive(Module, Debug)]
struct Weight {
    w: Param<Tensor<1>>,
}

const W0: [f64; 2] = [1.0, -1.0];
const G: [f64; 2] = [0.5, -2.0];
const LR: f64 = 0.1;
const STEPS: usize = 3;

/// Runs the real optimizer: the loss `Σ g·w` has gradient `g` whatever `w` is.
fn run(config: OptimConfig) -> Vec<f64> {
    let device = Device::flex().autodiff();
    let tensor = |v: [f64; 2]| {
        Tensor::<1>::from_data(
            TensorData::new(v.iter().map(|&x| x as f32).collect::<Vec<_>>(), [2]),
            &device,
        )
    };
    let mut model = Weight {
        w: Param::from_tensor(tensor(W0)),
    };
    let mut optim = config.init().unwrap();
    let g = tensor(G);
    for _ in 0..STEPS {
        let loss = (model.w.val() * g.clone()).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(LR, model, grads);
    }
    model
        .w
        .val()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect()
}

/// Runs `update(t, w, g, state) -> new w` by hand, element by element.
fn by_hand(mut update: impl FnMut(usize, usize, f64, f64) -> f64) -> Vec<f64> {
    let mut w = W0.to_vec();
    for t in 1..=STEPS {
        for i in 0..2 {
            w[i] = update(t, i, w[i], G[i]);
        }
    }
    w
}

fn assert_close(found: &[f64], expected: &[f64], what: &str) {
    for (f, e) in found.iter().zip(expected) {
        assert!(
            (f - e).abs() < 1e-6,
            "{what}: found {found:?}, expected {expected:?}"
        );
    }
}

fn plain(optimizer: OptimizerConfig) -> OptimConfig {
    OptimConfig {
        optimizer,
        clip: None,
        groups: vec![],
    }
}

#[test]
fn sgd() {
    let expected = by_hand(|_, _, w, g| w - LR * g);
    assert_close(&run(plain(OptimizerConfig::sgd())), &expected, "sgd");
    // Three steps of w ← w − α·g: 1 − 3·0.1·0.5 = 0.85, −1 + 3·0.1·2 = −0.4.
    assert_close(&expected, &[0.85, -0.4], "sgd by hand");
}

#[test]
fn sgd_with_weight_decay() {
    let lambda = 0.1;
    let expected = by_hand(|_, _, w, g| w - LR * (g + lambda * w));
    let config = OptimizerConfig::Sgd {
        momentum: 0.0,
        nesterov: false,
        weight_decay: lambda,
    };
    assert_close(&run(plain(config)), &expected, "sgd + weight decay");
}

#[test]
fn momentum_and_nesterov() {
    let gamma = 0.9;
    for nesterov in [false, true] {
        let mut v = [0.0f64; 2];
        let expected = by_hand(|t, i, w, g| {
            v[i] = if t == 1 { g } else { gamma * v[i] + g };
            let step = if nesterov { g + gamma * v[i] } else { v[i] };
            w - LR * step
        });
        let found = run(plain(OptimizerConfig::sgd_momentum(gamma, nesterov)));
        assert_close(
            &found,
            &expected,
            if nesterov { "nesterov" } else { "momentum" },
        );
    }
    // The textbook form v ← γ·v + α·g, w ← w − v gives the same weights for a constant α.
    let mut v = [0.0f64; 2];
    let textbook = by_hand(|_, i, w, g| {
        v[i] = gamma * v[i] + LR * g;
        w - v[i]
    });
    assert_close(
        &run(plain(OptimizerConfig::sgd_momentum(gamma, false))),
        &textbook,
        "textbook momentum",
    );
}

/// burn keeps hyper-parameters as `f32`; the hand computation uses the same rounded values
/// (0.99 as f32 is 0.99000001, enough to move three RMSprop steps by 1e-6).
fn f32_rounded(v: f64) -> f64 {
    f64::from(v as f32)
}

/// Adam by hand, in f32 like the optimizer: its bias corrections `1 − β2ᵗ` ≈ 0.001 cancel
/// most significant digits, so an f64 reference differs from any f32 implementation by ~1e-6
/// once the gradient changes between steps (L2 decay).
fn adam_by_hand(decoupled: f64, l2: f64) -> Vec<f64> {
    let (b1, b2, eps, lr) = (0.9f32, 0.999f32, 1e-8f32, LR as f32);
    let (decoupled, l2) = (decoupled as f32, l2 as f32);
    let (mut m, mut v) = ([0.0f32; 2], [0.0f32; 2]);
    by_hand(|t, i, w, g| {
        let w = w as f32;
        let g = g as f32 + l2 * w;
        m[i] = b1 * m[i] + (1.0 - b1) * g;
        v[i] = b2 * v[i] + (1.0 - b2) * g * g;
        let m_hat = m[i] / (1.0 - b1.powi(t as i32));
        let v_hat = v[i] / (1.0 - b2.powi(t as i32));
        f64::from(w - lr * decoupled * w - lr * m_hat / (v_hat.sqrt() + eps))
    })
}

#[test]
fn adam() {
    assert_close(
        &run(plain(OptimizerConfig::adam())),
        &adam_by_hand(0.0, 0.0),
        "adam",
    );
    // With a constant gradient m̂ = g and v̂ = g², so every step moves by α·sign(g) (to f32
    // rounding of the bias corrections).
    let hand = adam_by_hand(0.0, 0.0);
    assert!(
        (hand[0] - 0.7).abs() < 1e-5 && (hand[1] + 0.7).abs() < 1e-5,
        "{hand:?}"
    );
    let l2 = OptimizerConfig::Adam {
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-8,
        weight_decay: 0.05,
    };
    assert_close(&run(plain(l2)), &adam_by_hand(0.0, 0.05), "adam + L2");
}

#[test]
fn adamw() {
    assert_close(
        &run(plain(OptimizerConfig::adamw())),
        &adam_by_hand(0.01, 0.0),
        "adamw",
    );
}

#[test]
fn rmsprop() {
    let (rho, eps) = (f32_rounded(0.99), f32_rounded(1e-8));
    let mut s = [0.0f64; 2];
    let expected = by_hand(|_, i, w, g| {
        s[i] = rho * s[i] + (1.0 - rho) * g * g;
        w - LR * g / (s[i].sqrt() + eps)
    });
    assert_close(
        &run(plain(OptimizerConfig::rmsprop())),
        &expected,
        "rmsprop",
    );
}

#[test]
fn gradient_clipping_by_value_and_norm() {
    let by_value = by_hand(|_, _, w, g| w - LR * g.clamp(-1.0, 1.0));
    let config = OptimConfig {
        optimizer: OptimizerConfig::sgd(),
        clip: Some(Clip::Value(1.0)),
        groups: vec![],
    };
    assert_close(&run(config), &by_value, "clip by value");
    let norm = (G[0] * G[0] + G[1] * G[1]).sqrt();
    let by_norm = by_hand(|_, _, w, g| w - LR * g / norm);
    let config = OptimConfig {
        optimizer: OptimizerConfig::sgd(),
        clip: Some(Clip::Norm(1.0)),
        groups: vec![],
    };
    assert_close(&run(config), &by_norm, "clip by norm");
}

#[test]
fn bad_settings_are_named() {
    let err = OptimizerConfig::from_name("lbfgs2")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown optimizer `lbfgs2`") && err.contains("adamw"),
        "{err}"
    );
    let bad = OptimConfig {
        optimizer: OptimizerConfig::sgd_momentum(1.5, false),
        clip: None,
        groups: vec![],
    };
    assert!(bad.init().is_err());
    let bad = OptimConfig {
        optimizer: OptimizerConfig::sgd(),
        clip: Some(Clip::Norm(0.0)),
        groups: vec![],
    };
    let err = bad.init().err().expect("a zero clipping limit is an error");
    assert!(err.to_string().contains("clipping"), "{err}");
    // Configs round-trip through TOML-like serde (JSON here).
    let config = OptimConfig {
        optimizer: OptimizerConfig::adamw(),
        clip: Some(Clip::Norm(1.0)),
        groups: vec![],
    };
    let json = serde_json::to_string(&config).unwrap();
    assert_eq!(serde_json::from_str::<OptimConfig>(&json).unwrap(), config);
}
