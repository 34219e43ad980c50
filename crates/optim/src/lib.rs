//! # kiln-optim
//!
//! Optimizers as serde configs over burn's own (`burn::optim`), with **PyTorch's defaults and
//! update rules**, gradient clipping, and per-epoch learning-rate schedules.
//!
//! ```
//! use kiln_optim::{Clip, OptimConfig, OptimizerConfig};
//! let config = OptimConfig {
//!     optimizer: OptimizerConfig::sgd_momentum(0.9, true),
//!     clip: Some(Clip::Norm(1.0)),
//!     groups: vec![],
//! };
//! let optimizer = config.init()?; // a burn `ModuleOptimizer`, ready for `Learner::new`
//! # Ok::<(), kiln_optim::Error>(())
//! ```
//!
//! ## Update rules (α is the learning rate, g the gradient, t the step from 1)
//!
//! | optimizer | rule |
//! |---|---|
//! | SGD | `w ← w − α·g` |
//! | momentum γ | `v ← γ·v + g` (`v₁ = g`), `w ← w − α·v` |
//! | Nesterov | as momentum, then `w ← w − α·(g + γ·v)` |
//! | weight decay λ (SGD, Adam, RMSprop) | `g ← g + λ·w` first (L2, as `torch.optim` does) |
//! | Adam | `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`, `m̂ = m/(1−β1ᵗ)`, `v̂ = v/(1−β2ᵗ)`, `w ← w − α·m̂/(√v̂ + ε)` |
//! | AdamW | Adam's step plus decoupled decay: `w ← w − α·λ·w − α·m̂/(√v̂ + ε)` |
//! | RMSprop | `s ← ρ·s + (1−ρ)·g²`, `w ← w − α·g/(√s + ε)` (momentum μ: `b ← μ·b + g/(√s + ε)`, `w ← w − α·b`) |
//!
//! **Textbook momentum.** Many texts write `v ← γ·v + α·g, w ← w − v`. With a constant α
//! the two forms give the same weights: by induction `v_textbook = α·v_torch` (true at t = 1,
//! `v₁ = α·g`, and `γ·α·v_torch + α·g = α·(γ·v_torch + g)`), so both subtract the same
//! `α·v_torch`. They differ only when α changes between steps (a schedule): PyTorch's form,
//! used here, applies the new α to the whole velocity at once.
//!
//! ## Where burn's definitions differ, and the mapping
//!
//! - burn's `MomentumConfig` defaults to dampening 0.1 (`v ← γ·v + 0.9·g`); PyTorch's and
//!   Kiln's is 0.
//! - burn's Adam, AdamW and RMSprop default to ε = 1e-5; PyTorch's and Kiln's is 1e-8.
//! - burn's AdamW defaults to λ = 1e-4; PyTorch's and Kiln's is 0.01.
//! - burn's RMSprop defaults to momentum 0.9; PyTorch's and Kiln's is 0.
//!
//! Kiln sets every field explicitly, so the configs above are the whole truth.
//!
//! ## Gradient clipping
//! [`Clip::Norm`] rescales each parameter's gradient to L2 norm at most the limit; [`Clip::Value`]
//! clamps each element to `[−limit, limit]` (burn's `GradientClipping`, applied per parameter
//! tensor before the update).

mod groups;
mod schedule;

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer, RmsPropConfig, SgdConfig};
use serde::{Deserialize, Serialize};

pub use groups::{
    GroupRule, apply_groups, layers, module_scheduler, param_paths, path_under,
    resolve_layer_indices,
};
pub use schedule::{EpochScheduler, Plateau, PlateauTracker, Schedule};

/// Errors raised by kiln-optim.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting out of its range.
    #[error("invalid optimizer setting: {0}")]
    Invalid(String),
}

/// Result alias for kiln-optim.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_eps() -> f64 {
    1e-8
}
fn default_adamw_decay() -> f64 {
    0.01
}
fn default_alpha() -> f64 {
    0.99
}

/// An optimizer and its hyper-parameters (the learning rate lives in the schedule).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case", deny_unknown_fields)]
pub enum OptimizerConfig {
    /// Stochastic gradient descent, with optional (Nesterov) momentum.
    Sgd {
        /// Momentum γ (0: plain SGD).
        #[serde(default)]
        momentum: f64,
        /// Nesterov momentum.
        #[serde(default)]
        nesterov: bool,
        /// L2 weight decay λ.
        #[serde(default)]
        weight_decay: f64,
    },
    /// Adam (Kingma & Ba) with L2 weight decay.
    Adam {
        /// β1.
        #[serde(default = "default_beta1")]
        beta1: f64,
        /// β2.
        #[serde(default = "default_beta2")]
        beta2: f64,
        /// ε.
        #[serde(default = "default_eps")]
        epsilon: f64,
        /// L2 weight decay λ.
        #[serde(default)]
        weight_decay: f64,
    },
    /// AdamW (Loshchilov & Hutter): Adam with decoupled weight decay.
    #[serde(rename = "adamw")]
    AdamW {
        /// β1.
        #[serde(default = "default_beta1")]
        beta1: f64,
        /// β2.
        #[serde(default = "default_beta2")]
        beta2: f64,
        /// ε.
        #[serde(default = "default_eps")]
        epsilon: f64,
        /// Decoupled weight decay λ.
        #[serde(default = "default_adamw_decay")]
        weight_decay: f64,
    },
    /// RMSprop (Hinton).
    #[serde(rename = "rmsprop")]
    RmsProp {
        /// Smoothing constant ρ.
        #[serde(default = "default_alpha")]
        alpha: f64,
        /// ε.
        #[serde(default = "default_eps")]
        epsilon: f64,
        /// Momentum μ.
        #[serde(default)]
        momentum: f64,
        /// Centred variant (normalise by the gradient's estimated variance).
        #[serde(default)]
        centered: bool,
        /// L2 weight decay λ.
        #[serde(default)]
        weight_decay: f64,
    },
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self::adam()
    }
}

impl OptimizerConfig {
    /// Plain SGD.
    pub fn sgd() -> Self {
        Self::Sgd {
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }

    /// SGD with momentum γ (Nesterov when `nesterov`).
    pub fn sgd_momentum(momentum: f64, nesterov: bool) -> Self {
        Self::Sgd {
            momentum,
            nesterov,
            weight_decay: 0.0,
        }
    }

    /// Adam with PyTorch's defaults (β 0.9, 0.999, ε 1e-8).
    pub fn adam() -> Self {
        Self::Adam {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.0,
        }
    }

    /// AdamW with PyTorch's defaults (λ 0.01).
    pub fn adamw() -> Self {
        Self::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.01,
        }
    }

    /// RMSprop with PyTorch's defaults (ρ 0.99, ε 1e-8, no momentum).
    pub fn rmsprop() -> Self {
        Self::RmsProp {
            alpha: 0.99,
            epsilon: 1e-8,
            momentum: 0.0,
            centered: false,
            weight_decay: 0.0,
        }
    }

    /// Parses a command-line name: `sgd`, `momentum`, `nesterov`, `adam`, `adamw`, `rmsprop`.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "sgd" => Self::sgd(),
            "momentum" => Self::sgd_momentum(0.9, false),
            "nesterov" => Self::sgd_momentum(0.9, true),
            "adam" => Self::adam(),
            "adamw" => Self::adamw(),
            "rmsprop" => Self::rmsprop(),
            other => {
                return Err(Error::Invalid(format!(
                    "unknown optimizer `{other}`; available: sgd, momentum, nesterov, adam, adamw, rmsprop"
                )));
            }
        })
    }

    /// The same optimizer with weight decay λ (L2 for SGD, Adam and RMSprop; decoupled for
    /// AdamW).
    pub fn with_weight_decay(mut self, lambda: f64) -> Self {
        match &mut self {
            Self::Sgd { weight_decay, .. }
            | Self::Adam { weight_decay, .. }
            | Self::AdamW { weight_decay, .. }
            | Self::RmsProp { weight_decay, .. } => *weight_decay = lambda,
        }
        self
    }

    /// Checks every hyper-parameter's range.
    pub fn validate(&self) -> Result<()> {
        let check = |ok: bool, what: &str, value: f64| {
            if ok && value.is_finite() {
                Ok(())
            } else {
                Err(Error::Invalid(format!("{what} out of range: {value}")))
            }
        };
        match *self {
            Self::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => {
                check(
                    (0.0..1.0).contains(&momentum),
                    "momentum (0 ≤ γ < 1)",
                    momentum,
                )?;
                check(weight_decay >= 0.0, "weight decay", weight_decay)?;
                if nesterov && momentum == 0.0 {
                    return Err(Error::Invalid("Nesterov needs a momentum above 0".into()));
                }
            }
            Self::Adam {
                beta1,
                beta2,
                epsilon,
                weight_decay,
            }
            | Self::AdamW {
                beta1,
                beta2,
                epsilon,
                weight_decay,
            } => {
                check((0.0..1.0).contains(&beta1), "beta1 (0 ≤ β1 < 1)", beta1)?;
                check((0.0..1.0).contains(&beta2), "beta2 (0 ≤ β2 < 1)", beta2)?;
                check(epsilon > 0.0, "epsilon", epsilon)?;
                check(weight_decay >= 0.0, "weight decay", weight_decay)?;
            }
            Self::RmsProp {
                alpha,
                epsilon,
                momentum,
                weight_decay,
                ..
            } => {
                check((0.0..1.0).contains(&alpha), "alpha (0 ≤ ρ < 1)", alpha)?;
                check(epsilon > 0.0, "epsilon", epsilon)?;
                check((0.0..1.0).contains(&momentum), "momentum", momentum)?;
                check(weight_decay >= 0.0, "weight decay", weight_decay)?;
            }
        }
        Ok(())
    }
}

/// Gradient clipping, applied to each parameter's gradient before the update.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Clip {
    /// Rescale to L2 norm at most this.
    Norm(f64),
    /// Clamp every element to ±this.
    Value(f64),
}

impl Clip {
    fn burn(self) -> GradientClippingConfig {
        match self {
            Clip::Norm(v) => GradientClippingConfig::Norm(v as f32),
            Clip::Value(v) => GradientClippingConfig::Value(v as f32),
        }
    }
}

/// An optimizer with its optional gradient clipping.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OptimConfig {
    /// The optimizer.
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    /// Gradient clipping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip: Option<Clip>,
    /// Parameter groups: per-module learning-rate multipliers and frozen modules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupRule>,
}

impl OptimConfig {
    /// Builds burn's module optimizer.
    pub fn init(&self) -> Result<ModuleOptimizer> {
        self.optimizer.validate()?;
        if let Some(Clip::Norm(v) | Clip::Value(v)) = self.clip
            && !(v.is_finite() && v > 0.0)
        {
            return Err(Error::Invalid(format!(
                "gradient clipping limit must be positive, found {v}"
            )));
        }
        let clip = self.clip.map(Clip::burn);
        let decay = |l: f64| (l > 0.0).then(|| WeightDecayConfig::new(l as f32));
        Ok(match self.optimizer {
            OptimizerConfig::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => SgdConfig::new()
                .with_momentum((momentum > 0.0).then_some(MomentumConfig {
                    momentum,
                    dampening: 0.0,
                    nesterov,
                }))
                .with_weight_decay(decay(weight_decay))
                .with_gradient_clipping(clip)
                .init(),
            OptimizerConfig::Adam {
                beta1,
                beta2,
                epsilon,
                weight_decay,
            } => AdamConfig::new()
                .with_beta_1(beta1 as f32)
                .with_beta_2(beta2 as f32)
                .with_epsilon(epsilon as f32)
                .with_weight_decay(decay(weight_decay))
                .with_grad_clipping(clip)
                .init(),
            OptimizerConfig::AdamW {
                beta1,
                beta2,
                epsilon,
                weight_decay,
            } => AdamWConfig::new()
                .with_beta_1(beta1 as f32)
                .with_beta_2(beta2 as f32)
                .with_epsilon(epsilon as f32)
                .with_weight_decay(weight_decay as f32)
                .with_grad_clipping(clip)
                .init(),
            OptimizerConfig::RmsProp {
                alpha,
                epsilon,
                momentum,
                centered,
                weight_decay,
            } => RmsPropConfig::new()
                .with_alpha(alpha as f32)
                .with_epsilon(epsilon as f32)
                .with_momentum(momentum as f32)
                .with_centered(centered)
                .with_weight_decay(decay(weight_decay))
                .with_grad_clipping(clip)
                .init(),
        })
    }
}
