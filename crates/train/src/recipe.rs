//! [`Recipe`]: the settings every kind of run shares (epochs, batch size, optimizer and
//! clipping, parameter groups, schedule, plateau, early stopping, seed, device, validation
//! share, data-parallel shards), what [`fit`](crate::fit()) takes. Each kind of run's config
//! turns into one ([`crate::TrainConfig::recipe`] and the others), and the loop writes it to
//! the run folder as `recipe.toml` with every setting that changes results resolved.

use kiln_core::{DeviceSpec, Seed};
use kiln_optim::{OptimConfig, Plateau, Schedule};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The loop's settings, shared by every kind of run: one type flattened into each kind's
/// config (`#[serde(flatten)] recipe`), so every kind takes every setting under the same
/// TOML keys. It accepts keys of its own only; a config that flattens it rejects unknown keys
/// with [`NoOtherKeys`] (serde cannot combine `flatten` with `deny_unknown_fields`), and
/// [`Recipe::from_toml`] does so for a `recipe.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// Number of epochs.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Base learning rate (the schedule scales it per epoch).
    pub lr: f64,
    /// Optimizer, gradient clipping and parameter groups (default: Adam with PyTorch's
    /// settings, no clipping, one group).
    #[serde(default)]
    pub optim: OptimConfig,
    /// Learning-rate schedule (default: constant).
    #[serde(default)]
    pub schedule: Schedule,
    /// Reduce-on-plateau on the monitored value, composed with the schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plateau: Option<Plateau>,
    /// The validation value that decides the best epoch, early stopping and reduce-on-plateau.
    #[serde(default)]
    pub monitor: Monitor,
    /// Stop when the monitored value stops improving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStopping>,
    /// Master seed.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Device name (`cpu`, `ndarray`, `wgpu`...).
    #[serde(default)]
    pub device: DeviceSpec,
    /// Share of the training data held out for validation (what [`crate::Setup::valid_split`]
    /// carves, seeded by the run).
    #[serde(default = "kiln_data::split::default_valid_fraction")]
    pub valid_fraction: f64,
    /// Parts of a data-parallel training step for tasks that allow it ([`crate::Task::split`]);
    /// unset: `kiln_core::parallel::shards_for(batch_size)` (2 from 32 samples, or
    /// `KILN_TRAINING_SHARDS`), resolved and recorded in `recipe.toml` when a run starts, so
    /// a resumed or repeated run computes the same sums.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<usize>,
    /// Quantization-aware training: the forward pass sees the Linear and convolution weights
    /// fake-quantized to this many bits (2 to 8; straight-through gradients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qat_bits: Option<u8>,
    /// Pruned fine-tuning: exact-zero Linear and convolution weights get no gradient and stay
    /// zero.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_pruned: bool,
}

/// Settings given on top of a run's recipe, as text where the setting has a syntax (what the
/// command line passes): each one given replaces the recipe's. One type for every run kind, so
/// every kind takes every setting.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecipeOverrides {
    /// Number of epochs.
    pub epochs: Option<usize>,
    /// Mini-batch size.
    pub batch_size: Option<usize>,
    /// Base learning rate.
    pub lr: Option<f64>,
    /// Optimizer name (`sgd`, `momentum`, `nesterov`, `adam`, `adamw`, `rmsprop`).
    pub optimizer: Option<String>,
    /// Weight decay (L2; decoupled for AdamW).
    pub weight_decay: Option<f64>,
    /// Clip each parameter's gradient to this L2 norm.
    pub clip_norm: Option<f64>,
    /// Clip gradient elements to ± this.
    pub clip_value: Option<f64>,
    /// Schedule spec (see `kiln_optim::Schedule::parse`).
    pub schedule: Option<String>,
    /// Reduce-on-plateau spec `FACTOR:PATIENCE[:MIN_LR]`.
    pub plateau: Option<String>,
    /// Early-stopping spec `PATIENCE[:MIN_DELTA]`.
    pub early_stopping: Option<String>,
    /// `valid-loss` or `valid-accuracy`.
    pub monitor: Option<String>,
    /// Parameter-group rules (`PATH=SCALE`, `PATH=frozen`), added to the recipe's.
    pub groups: Vec<String>,
    /// Master seed.
    pub seed: Option<u64>,
    /// Device name.
    pub device: Option<String>,
    /// Share of the training data held out for validation.
    pub valid_fraction: Option<f64>,
    /// Parts of a data-parallel training step (1: whole batches).
    pub shards: Option<usize>,
}

impl RecipeOverrides {
    /// `recipe` with the given settings replaced (each parsed and checked, an error naming
    /// the setting when it does not parse).
    pub fn apply(&self, recipe: &mut Recipe) -> Result<()> {
        if let Some(e) = self.epochs {
            recipe.epochs = e;
        }
        if let Some(b) = self.batch_size {
            recipe.batch_size = b;
        }
        if let Some(l) = self.lr {
            recipe.lr = l;
        }
        if let Some(name) = &self.optimizer {
            recipe.optim.optimizer = kiln_optim::OptimizerConfig::from_name(name)?;
        }
        if let Some(lambda) = self.weight_decay {
            recipe.optim.optimizer = recipe.optim.optimizer.clone().with_weight_decay(lambda);
        }
        if self.clip_norm.is_some() && self.clip_value.is_some() {
            return Err(Error::InvalidSetting(
                "clip by norm or by value, not both".into(),
            ));
        }
        if let Some(v) = self.clip_norm {
            recipe.optim.clip = Some(kiln_optim::Clip::Norm(v));
        }
        if let Some(v) = self.clip_value {
            recipe.optim.clip = Some(kiln_optim::Clip::Value(v));
        }
        if let Some(spec) = &self.schedule {
            recipe.schedule = Schedule::parse(spec)?;
        }
        if let Some(spec) = &self.plateau {
            recipe.plateau = Some(Plateau::parse(spec)?);
        }
        if let Some(spec) = &self.early_stopping {
            recipe.early_stopping = Some(EarlyStopping::parse(spec)?);
        }
        if let Some(m) = &self.monitor {
            recipe.monitor = Monitor::parse(m)?;
        }
        for spec in &self.groups {
            recipe
                .optim
                .groups
                .push(kiln_optim::GroupRule::parse(spec)?);
        }
        if let Some(s) = self.seed {
            recipe.seed = s;
        }
        if let Some(d) = &self.device {
            recipe.device = DeviceSpec::parse(d)?;
        }
        if let Some(f) = self.valid_fraction {
            recipe.valid_fraction = f;
        }
        if let Some(n) = self.shards {
            recipe.shards = Some(n);
        }
        recipe.validate()
    }
}

/// The keys of a config left after its fields and its flattened [`Recipe`] took theirs: any
/// left is an error naming it (a typo such as `epoch = 3` must not train with a default).
/// The last field of every config, `#[serde(flatten, skip_serializing)]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoOtherKeys;

impl<'de> Deserialize<'de> for NoOtherKeys {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let keys =
            std::collections::BTreeMap::<String, serde::de::IgnoredAny>::deserialize(deserializer)?;
        match keys.keys().next() {
            None => Ok(Self),
            Some(key) => Err(serde::de::Error::custom(format!(
                "unknown setting `{key}`{}",
                if keys.len() > 1 {
                    format!(
                        " (and {})",
                        keys.keys()
                            .skip(1)
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                } else {
                    String::new()
                }
            ))),
        }
    }
}

/// A `recipe.toml`: a recipe and no other key.
#[derive(Deserialize)]
pub(crate) struct RecipeFile {
    #[serde(flatten)]
    pub(crate) recipe: Recipe,
    #[serde(flatten)]
    _rest: NoOtherKeys,
}

/// `recipe()` and `set_recipe()` for a run config whose `recipe` field is its flattened
/// [`Recipe`], for kinds that take neither QAT nor pruned fine-tuning (`validate_loop` checks
/// that, for the kind's `validate`).
macro_rules! loop_settings {
    ($config:ty, $kind:literal) => {
        impl $config {
            /// The loop's settings of this run (what [`crate::fit()`] takes).
            pub fn recipe(&self) -> $crate::Recipe {
                self.recipe.clone()
            }

            /// Takes `recipe`'s settings (e.g. a recipe with command-line overrides
            /// applied).
            pub fn set_recipe(&mut self, recipe: $crate::Recipe) -> $crate::Result<()> {
                $crate::recipe::plain_loop(&recipe, $kind)?;
                self.recipe = recipe;
                Ok(())
            }
        }
    };
}
pub(crate) use loop_settings;

/// Checks `recipe` for a kind of run that takes neither QAT nor pruned fine-tuning (`kind`
/// names it in the error), then every setting.
pub(crate) fn plain_loop(recipe: &Recipe, kind: &str) -> Result<()> {
    if recipe.qat_bits.is_some() || recipe.keep_pruned {
        return Err(Error::InvalidSetting(format!(
            "QAT bits and pruned fine-tuning are not settings of {kind}"
        )));
    }
    recipe.validate()
}

/// Whether `value` is its type's default (configs leave such settings out of their TOML).
pub(crate) fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

fn default_seed() -> u64 {
    Seed::default().0
}

impl Default for Recipe {
    /// 10 epochs of 64 at 1e-3 with Adam, constant rate, seed 42, CPU, 10% validation.
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 64,
            lr: 1e-3,
            optim: OptimConfig::default(),
            schedule: Schedule::Constant,
            plateau: None,
            monitor: Monitor::default(),
            early_stopping: None,
            seed: default_seed(),
            device: DeviceSpec::default(),
            valid_fraction: kiln_data::split::DEFAULT_VALID_FRACTION,
            shards: None,
            qat_bits: None,
            keep_pruned: false,
        }
    }
}

impl Recipe {
    /// Checks every setting.
    pub fn validate(&self) -> Result<()> {
        check_schedule(self.epochs, self.batch_size, self.lr)?;
        kiln_data::split::check_valid_fraction(self.valid_fraction)?;
        self.optim.optimizer.validate()?;
        self.schedule.validate()?;
        if let Some(plateau) = &self.plateau {
            plateau.validate()?;
        }
        if let Some(early) = &self.early_stopping {
            early.validate()?;
        }
        for rule in &self.optim.groups {
            rule.validate()?;
        }
        if self.shards == Some(0) {
            return Err(Error::InvalidSetting(
                "a training step needs at least 1 shard".into(),
            ));
        }
        if let Some(bits) = self.qat_bits
            && !(2..=8).contains(&bits)
        {
            return Err(Error::InvalidSetting(format!(
                "quantization-aware training takes 2 to 8 bits, found {bits}"
            )));
        }
        Ok(())
    }

    /// The shard count a run with this recipe uses (see [`Recipe::shards`]).
    pub fn resolved_shards(&self) -> usize {
        self.shards
            .unwrap_or_else(|| kiln_core::parallel::shards_for(self.batch_size))
    }

    /// Reads a recipe from TOML, rejecting keys that are not settings.
    pub fn from_toml(text: &str) -> std::result::Result<Self, toml::de::Error> {
        toml::from_str::<RecipeFile>(text).map(|file| file.recipe)
    }

    /// The recipe as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("recipes always serialise to TOML")
    }
}

/// The validation value a run watches (best checkpoint, early stopping, reduce-on-plateau).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Monitor {
    /// Mean validation loss (lower is better).
    #[default]
    ValidLoss,
    /// Validation accuracy (higher is better).
    ValidAccuracy,
}

impl Monitor {
    /// Parses `valid-loss` / `loss` or `valid-accuracy` / `accuracy`.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "valid-loss" | "loss" => Ok(Self::ValidLoss),
            "valid-accuracy" | "accuracy" => Ok(Self::ValidAccuracy),
            other => Err(Error::InvalidSetting(format!(
                "unknown monitor `{other}`: expected valid-loss or valid-accuracy"
            ))),
        }
    }

    /// The watched value of one epoch.
    pub fn value(self, metrics: &crate::EpochMetrics) -> f64 {
        match self {
            Self::ValidLoss => metrics.valid_loss,
            Self::ValidAccuracy => metrics.valid_accuracy,
        }
    }

    /// Whether a lower value is better.
    pub fn lower_is_better(self) -> bool {
        self == Self::ValidLoss
    }

    /// Whether `value` improves on `best` by more than `min_delta` (Keras' rule).
    pub fn improves(self, value: f64, best: Option<f64>, min_delta: f64) -> bool {
        if !value.is_finite() {
            return false;
        }
        match best {
            None => true,
            Some(best) if self.lower_is_better() => value < best - min_delta,
            Some(best) => value > best + min_delta,
        }
    }
}

/// Early stopping (Keras' `EarlyStopping`): stop once `patience` epochs passed without the
/// monitored value improving by more than `min_delta`; optionally end on the best epoch's
/// weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    /// Epochs without improvement before stopping (at least 1).
    pub patience: usize,
    /// Smallest change that counts as an improvement (in the monitored value's units;
    /// accuracies are fractions).
    #[serde(default)]
    pub min_delta: f64,
    /// Save the best epoch's weights as the run's model (default true).
    #[serde(default = "yes")]
    pub restore_best: bool,
}

fn yes() -> bool {
    true
}

impl EarlyStopping {
    /// Stops after `patience` epochs without improvement, restoring the best weights.
    pub fn new(patience: usize, min_delta: f64) -> Self {
        Self {
            patience,
            min_delta,
            restore_best: true,
        }
    }

    /// Parses `PATIENCE[:MIN_DELTA]` (`3`, `3:0.001`), what `--early-stopping` takes, and
    /// checks it.
    pub fn parse(spec: &str) -> Result<Self> {
        let (patience, delta) = spec.split_once(':').unwrap_or((spec, "0"));
        let parsed = patience.trim().parse().ok().zip(delta.trim().parse().ok());
        let Some((patience, min_delta)) = parsed else {
            return Err(Error::InvalidSetting(format!(
                "early stopping `{spec}`: expected PATIENCE[:MIN_DELTA], e.g. 3:0.001"
            )));
        };
        let stopping = Self::new(patience, min_delta);
        stopping.validate()?;
        Ok(stopping)
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.patience == 0 || !(self.min_delta.is_finite() && self.min_delta >= 0.0) {
            return Err(Error::InvalidSetting(format!(
                "early stopping needs patience ≥ 1 and min_delta ≥ 0, found patience {} and min_delta {}",
                self.patience, self.min_delta
            )));
        }
        Ok(())
    }
}

/// Checks the settings every training run shares: at least one epoch, a batch of at least one,
/// a positive finite learning rate.
pub(crate) fn check_schedule(epochs: usize, batch_size: usize, lr: f64) -> Result<()> {
    if epochs == 0 {
        return Err(Error::InvalidSetting("epochs must be at least 1".into()));
    }
    if batch_size == 0 {
        return Err(Error::InvalidSetting(
            "batch size must be at least 1".into(),
        ));
    }
    if !(lr.is_finite() && lr > 0.0) {
        return Err(Error::InvalidSetting(format!(
            "learning rate must be a positive number, found {lr}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_stopping_specs() {
        assert_eq!(
            EarlyStopping::parse("3").unwrap(),
            EarlyStopping::new(3, 0.0)
        );
        assert_eq!(
            EarlyStopping::parse(" 5 : 0.01").unwrap(),
            EarlyStopping::new(5, 0.01)
        );
        for bad in ["", "x", "3:y", "0", "2:-1", "2:inf"] {
            let e = EarlyStopping::parse(bad).unwrap_err().to_string();
            assert!(e.contains("early stopping"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_recipe_round_trips_and_names_bad_settings() {
        let recipe = Recipe {
            early_stopping: Some(EarlyStopping::new(2, 0.01)),
            shards: Some(2),
            ..Recipe::default()
        };
        let back: Recipe = toml::from_str(&recipe.to_toml()).unwrap();
        assert_eq!(back, recipe);
        let minimal = Recipe::from_toml("epochs = 3\nbatch_size = 8\nlr = 0.01").unwrap();
        assert_eq!((minimal.seed, minimal.valid_fraction), (42, 0.1));
        for (bad, needle) in [
            (
                Recipe {
                    epochs: 0,
                    ..Recipe::default()
                },
                "epochs",
            ),
            (
                Recipe {
                    shards: Some(0),
                    ..Recipe::default()
                },
                "shard",
            ),
            (
                Recipe {
                    qat_bits: Some(9),
                    ..Recipe::default()
                },
                "bits",
            ),
            (
                Recipe {
                    valid_fraction: 1.0,
                    ..Recipe::default()
                },
                "valid",
            ),
        ] {
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
        let typo = Recipe::from_toml("epochs = 3\nbatch_size = 8\nlr = 0.01\nepoch = 2");
        assert!(
            typo.unwrap_err()
                .to_string()
                .contains("unknown setting `epoch`")
        );
    }
}
