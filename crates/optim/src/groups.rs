//! Parameter groups: a learning rate per module path (e.g. a backbone slower than its head)
//! and frozen modules, on burn's `ParamGroup`, `ModuleLrScheduler` and `Module::freeze_group`.
//!
//! A parameter's path is its module path from the root the optimizer sees, joined with dots,
//! e.g. `model.Mlp.hidden.0.weight` for the first hidden layer of a Kiln MLP trained by
//! kiln-train (the trainer's task holds the model as `model`, the zoo's model enum adds its
//! variant, `Mlp`); [`param_paths`] lists them. A rule's `path` selects the parameters whose
//! path equals it or continues it after a dot (`model.Mlp.hidden.0` selects that layer's
//! weight and bias, not `hidden.01`). When several rules select a parameter, the
//! last one wins (burn's precedence).
//!
//! A rule may also select layers by index, Keras-style: `@N` is the model's layer N, `@A..B`
//! layers A to B-1, `@..B` the first B, `@A..` from A to the last; negative indices count from
//! the end (`@..-1`: every layer but the last). A layer is a module that owns parameters
//! directly (a Linear, a Conv2d, a norm), numbered in the order [`layers`] lists them;
//! [`resolve_layer_indices`] turns such rules into path rules for a given model.

use burn::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::module::{Module, ModuleVisitor, Param, ParamGroup};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::{EpochScheduler, Error, Result};

fn one() -> f64 {
    1.0
}

fn is_one(v: &f64) -> bool {
    *v == 1.0
}

/// One parameter group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRule {
    /// Module path (prefix at a dot boundary) selecting the group's parameters.
    pub path: String,
    /// Learning-rate multiplier of the group (1: the base rate; the schedule applies as well).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub lr_scale: f64,
    /// Frozen: the parameters get no gradient and no update, and the group's layers stay in
    /// inference mode (BatchNorm keeps its running statistics, dropout is off).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub frozen: bool,
}

impl GroupRule {
    /// A group trained at `scale` times the base learning rate.
    pub fn scaled(path: &str, scale: f64) -> Self {
        Self {
            path: path.to_string(),
            lr_scale: scale,
            frozen: false,
        }
    }

    /// A frozen group.
    pub fn frozen(path: &str) -> Self {
        Self {
            path: path.to_string(),
            lr_scale: 1.0,
            frozen: true,
        }
    }

    /// Parses `PATH=SCALE` (learning-rate multiplier) or `PATH=frozen`.
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = || {
            Error::Invalid(format!(
                "parameter group `{spec}`: expected PATH=SCALE (e.g. model.Mlp.hidden.0=0.1) or PATH=frozen"
            ))
        };
        let (path, value) = spec.split_once('=').ok_or_else(bad)?;
        let (path, value) = (path.trim(), value.trim());
        if path.is_empty() {
            return Err(bad());
        }
        let rule = if value == "frozen" {
            Self::frozen(path)
        } else {
            Self::scaled(path, value.parse().map_err(|_| bad())?)
        };
        rule.validate()?;
        Ok(rule)
    }

    /// Checks the multiplier (and the syntax of a layer-index selector).
    pub fn validate(&self) -> Result<()> {
        if let Some(spec) = self.path.strip_prefix('@') {
            LayerRange::parse(spec).map_err(|reason| {
                Error::Invalid(format!("parameter group `{}`: {reason}", self.path))
            })?;
        }
        if !(self.lr_scale.is_finite() && self.lr_scale >= 0.0) {
            return Err(Error::Invalid(format!(
                "parameter group `{}`: the learning-rate multiplier must be ≥ 0, found {}",
                self.path, self.lr_scale
            )));
        }
        Ok(())
    }

    /// Whether the parameter at `path` belongs to the group.
    pub fn selects(&self, path: &str) -> bool {
        path_under(path, &self.path)
    }

    /// The group as burn's `ParamGroup` (a regex anchored at a dot boundary).
    pub fn param_group(&self) -> ParamGroup {
        let pattern = format!("^{}(\\..*)?$", escape_regex(&self.path));
        ParamGroup::from_regex(&pattern).expect("an escaped path is a valid regex")
    }
}

fn escape_regex(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~ ".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[derive(Default)]
struct PathCollector {
    stack: Vec<String>,
    paths: Vec<String>,
}

impl ModuleVisitor for PathCollector {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.stack.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn visit_float<const D: usize>(&mut self, _param: &Param<Tensor<D>>) {
        self.paths.push(self.stack.join("."));
    }
}

/// A layer-index range (`N`, `A..B`, `..B`, `A..`; negative indices count from the end).
#[derive(Clone, Copy, Debug, PartialEq)]
struct LayerRange {
    start: Option<i64>,
    end: Option<i64>,
    single: bool,
}

impl LayerRange {
    fn parse(spec: &str) -> std::result::Result<Self, String> {
        let bad = || {
            format!(
                "a layer index must be @N, @A..B, @..B or @A.. (integers; negative counts from the end), found `@{spec}`"
            )
        };
        let int = |s: &str| -> std::result::Result<Option<i64>, String> {
            if s.is_empty() {
                Ok(None)
            } else {
                s.trim().parse().map(Some).map_err(|_| bad())
            }
        };
        match spec.split_once("..") {
            Some((a, b)) => Ok(Self {
                start: int(a)?,
                end: int(b)?,
                single: false,
            }),
            None if !spec.is_empty() => Ok(Self {
                start: int(spec)?,
                end: None,
                single: true,
            }),
            None => Err(bad()),
        }
    }

    /// The selected indices into `n` layers, or why the range does not fit.
    fn indices(&self, n: usize) -> std::result::Result<std::ops::Range<usize>, String> {
        let n_i = n as i64;
        let abs = |i: i64| if i < 0 { n_i + i } else { i };
        if self.single {
            let i = abs(self.start.unwrap_or(0));
            if !(0..n_i).contains(&i) {
                return Err(format!(
                    "layer {} does not exist (the model has {n} layers)",
                    self.start.unwrap_or(0)
                ));
            }
            return Ok(i as usize..i as usize + 1);
        }
        let start = abs(self.start.unwrap_or(0));
        let end = abs(self.end.unwrap_or(n_i));
        if start < 0 || end > n_i || start >= end {
            return Err(format!(
                "the range selects no layer of the model's {n} (indices 0..{n})"
            ));
        }
        Ok(start as usize..end as usize)
    }
}

/// The model's layers in order: the module paths that own parameters directly (a Linear, a
/// Conv2d, a norm), each once, in visiting order. Layer-index rules (`@N`) count in this list.
pub fn layers<M: Module>(module: &M) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for path in param_paths(module) {
        let layer = path.rsplit_once('.').map_or(path.as_str(), |(l, _)| l);
        if out.last().map(String::as_str) != Some(layer) {
            out.push(layer.to_string());
        }
    }
    out
}

/// Replaces each layer-index rule (`@..3=frozen`) by one path rule per selected layer of
/// `module` (same multiplier and frozen flag); path rules pass through. An index outside the
/// model is an error naming the rule and the number of layers.
pub fn resolve_layer_indices<M: Module>(module: &M, rules: &[GroupRule]) -> Result<Vec<GroupRule>> {
    if !rules.iter().any(|r| r.path.starts_with('@')) {
        return Ok(rules.to_vec());
    }
    let layers = layers(module);
    let mut out = Vec::with_capacity(rules.len());
    for rule in rules {
        let Some(spec) = rule.path.strip_prefix('@') else {
            out.push(rule.clone());
            continue;
        };
        let range = LayerRange::parse(spec)
            .and_then(|r| r.indices(layers.len()))
            .map_err(|reason| {
                Error::Invalid(format!("parameter group `{}`: {reason}", rule.path))
            })?;
        for layer in &layers[range] {
            out.push(GroupRule {
                path: layer.clone(),
                ..rule.clone()
            });
        }
    }
    Ok(out)
}

/// Whether the dotted parameter or module `path` is `prefix` or lies under it (prefix at a dot
/// boundary: `a.b.c` is under `a.b`, `a.bc` is not).
pub fn path_under(path: &str, prefix: &str) -> bool {
    path == prefix || (path.starts_with(prefix) && path[prefix.len()..].starts_with('.'))
}

/// The dotted path of every float parameter of `module`, in visiting order.
pub fn param_paths<M: Module>(module: &M) -> Vec<String> {
    let mut collector = PathCollector::default();
    module.visit(&mut collector);
    collector.paths
}

/// Checks every rule selects at least one parameter of `module` (an unknown path is an error
/// naming it and listing the module's top-level paths), then freezes the frozen groups.
/// Layer-index rules must be resolved first ([`resolve_layer_indices`]).
pub fn apply_groups<M: Module>(module: M, rules: &[GroupRule]) -> Result<M> {
    let paths = param_paths(&module);
    for rule in rules {
        rule.validate()?;
        if rule.path.starts_with('@') {
            return Err(Error::Invalid(format!(
                "parameter group `{}`: resolve layer indices against the model first (kiln_optim::resolve_layer_indices)",
                rule.path
            )));
        }
        if !paths.iter().any(|p| rule.selects(p)) {
            let mut layers: Vec<&str> = paths
                .iter()
                .map(|p| p.rsplit_once('.').map_or(p.as_str(), |(layer, _)| layer))
                .collect();
            layers.dedup();
            return Err(Error::Invalid(format!(
                "parameter group `{}` matches no parameter; the model's layers are: {}",
                rule.path,
                layers.join(", ")
            )));
        }
    }
    let mut module = module;
    for rule in rules.iter().filter(|r| r.frozen) {
        module = module.freeze_group(rule.param_group());
    }
    Ok(module)
}

/// burn's `ModuleLrScheduler` running `base` for every parameter and a copy of it, from
/// `lr_scale` × its base rate, for each non-frozen group whose multiplier is not 1.
pub fn module_scheduler(
    base: EpochScheduler,
    base_lr: f64,
    rules: &[GroupRule],
) -> ModuleLrScheduler {
    let mut scheduler = ModuleLrScheduler::new(base.clone());
    for rule in rules.iter().filter(|r| !r.frozen && r.lr_scale != 1.0) {
        scheduler = scheduler.with_group(
            rule.param_group(),
            base.clone().with_base(base_lr * rule.lr_scale),
        );
    }
    scheduler
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_select_at_dot_boundaries() {
        let rule = GroupRule::parse("model.layers.1=0.1").unwrap();
        assert_eq!(rule, GroupRule::scaled("model.layers.1", 0.1));
        assert!(rule.selects("model.layers.1.weight"));
        assert!(!rule.selects("model.layers.10.weight"));
        let group = rule.param_group();
        let id = burn::module::ParamId::new();
        assert!(group.matches(&id, Some("model.layers.1.bias")));
        assert!(!group.matches(&id, Some("model.layers.10.bias")));
        assert!(GroupRule::parse("model.head=frozen").unwrap().frozen);
        for bad in [
            "model",
            "=0.1",
            "x=-1",
            "x=fast",
            "@=frozen",
            "@a..2=frozen",
            "@1..x=0.1",
        ] {
            assert!(GroupRule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn layer_indices_resolve_to_the_models_layers_in_order() {
        let layers: Vec<String> = ["l.0", "l.1", "l.2", "head"].map(String::from).to_vec();
        let pick = |spec: &str| -> std::result::Result<Vec<String>, String> {
            let range = LayerRange::parse(spec)?.indices(layers.len())?;
            Ok(layers[range].to_vec())
        };
        assert_eq!(pick("..3").unwrap(), ["l.0", "l.1", "l.2"]);
        assert_eq!(pick("..-1").unwrap(), ["l.0", "l.1", "l.2"]);
        assert_eq!(pick("1").unwrap(), ["l.1"]);
        assert_eq!(pick("-1").unwrap(), ["head"]);
        assert_eq!(pick("2..").unwrap(), ["l.2", "head"]);
        assert_eq!(pick("1..3").unwrap(), ["l.1", "l.2"]);
        for out_of_range in ["4", "-5", "3..2", "..5", "..-4"] {
            let err = pick(out_of_range).unwrap_err();
            assert!(err.contains("4"), "{out_of_range}: {err}");
        }
    }
}
