//! LoRA adapters on their own, in Hugging Face PEFT's layout: a folder with
//! `adapter_config.json` (`r`, `lora_alpha`, `lora_dropout`, `target_modules`, the base
//! model) and `adapter_model.safetensors` (`base_model.model.model.layers.N.self_attn.q_proj
//! .lora_A.weight` `[r, in]` and `.lora_B.weight` `[out, r]`, so that `ΔW = (α/r)·B·A` in
//! PyTorch's `[out, in]` layout). A few megabytes beside the base model's hundreds; PEFT loads
//! the folder onto the same base, and [`merge_adapter`] applies it to a Kiln [`Llama`].

use std::collections::HashMap;
use std::path::Path;

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Tensor, TensorData};
use kiln_models::llama::{LORA_TARGETS, Llama};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// `adapter_config.json`: the fields of PEFT's `LoraConfig` that decide what the adapter
/// computes. Kiln merges plain LoRA (and rank-stabilised LoRA's scale); a file asking for more
/// (DoRA, per-module ranks or scales, a subset of layers, whole modules saved beside the
/// adapters, a regular expression for the targets) is refused by [`read_adapter_config`] rather
/// than merged wrongly. Fields PEFT writes that change nothing here are ignored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    /// Always `LORA`.
    pub peft_type: String,
    /// Always `CAUSAL_LM`.
    pub task_type: String,
    /// The rank.
    pub r: usize,
    /// The scale's numerator (the update is `lora_alpha / r · B·A`).
    pub lora_alpha: f64,
    /// Dropout on the adapters' input while training.
    #[serde(default)]
    pub lora_dropout: f64,
    /// The adapted projections (`q_proj`, `v_proj`, ...).
    #[serde(deserialize_with = "module_list")]
    pub target_modules: Vec<String>,
    /// The base model the adapter was trained on (a path or a model name; PEFT may leave it
    /// null).
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// Rank-stabilised LoRA: the update is scaled by `lora_alpha / √r` instead of `/ r`.
    #[serde(default)]
    pub use_rslora: bool,
    /// Always `none`: no bias is trained.
    #[serde(default = "none")]
    pub bias: String,
    /// Always false: weights are `[out, in]`.
    #[serde(default)]
    pub fan_in_fan_out: bool,
    /// Saved for inference.
    #[serde(default)]
    pub inference_mode: bool,
}

fn none() -> String {
    "none".into()
}

/// `target_modules` as a list of names; PEFT's other form, one string (a regular expression or
/// `all-linear`), is refused with what to write instead.
fn module_list<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<String>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(pattern) => Err(serde::de::Error::custom(format!(
            "target_modules is the pattern `{pattern}`; Kiln reads a list of projection names ({})",
            LORA_TARGETS.join(", ")
        ))),
        other => Vec::<String>::deserialize(other).map_err(serde::de::Error::custom),
    }
}

impl AdapterConfig {
    /// The factor of `B·A` in the merged weight: `lora_alpha / r`, or `lora_alpha / √r` for
    /// rank-stabilised LoRA.
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }

    /// What this adapter asks for that Kiln does not compute, if anything; `raw` is the whole
    /// `adapter_config.json`, for PEFT's options this struct does not name.
    fn unsupported(&self, raw: &serde_json::Value) -> Option<String> {
        if self.peft_type != "LORA" {
            return Some(format!("peft_type is {}, not LORA", self.peft_type));
        }
        if self.r == 0 {
            return Some("r is 0".into());
        }
        if self.bias != "none" {
            return Some(format!(
                "bias is `{}` (trained biases), not none",
                self.bias
            ));
        }
        if self.fan_in_fan_out {
            return Some("fan_in_fan_out is true (Conv1D weights), Llama's are Linear".into());
        }
        // PEFT's options that change what an adapter computes (left at their defaults, null,
        // false or empty, they change nothing).
        const CHANGES_THE_ADAPTER: [(&str, &str); 13] = [
            ("use_dora", "DoRA, weight-decomposed LoRA"),
            ("rank_pattern", "per-module ranks"),
            ("alpha_pattern", "per-module alphas"),
            ("layers_to_transform", "only some blocks adapted"),
            ("modules_to_save", "whole modules saved beside the adapters"),
            ("lora_bias", "a trained bias on lora_B"),
            ("use_qalora", "QA-LoRA's pooled input"),
            ("use_bdlora", "block-diagonal LoRA"),
            ("layer_replication", "replicated blocks"),
            ("trainable_token_indices", "trained embedding rows"),
            (
                "target_parameters",
                "adapted parameters besides the projections",
            ),
            (
                "alora_invocation_tokens",
                "activated LoRA (from an invocation token on)",
            ),
            ("exclude_modules", "modules excluded from the targets"),
        ];
        for (key, what) in CHANGES_THE_ADAPTER {
            let set = match raw.get(key) {
                None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(false)) => {
                    false
                }
                Some(serde_json::Value::Array(a)) => !a.is_empty(),
                Some(serde_json::Value::Object(o)) => !o.is_empty(),
                Some(_) => true,
            };
            if set {
                return Some(format!("{key} is {} ({what})", raw[key]));
            }
        }
        None
    }
}

/// The PEFT name prefix of a block's projection.
fn peft_prefix(layer: usize, target: &str) -> String {
    let group = if matches!(target, "q_proj" | "k_proj" | "v_proj" | "o_proj") {
        "self_attn"
    } else {
        "mlp"
    };
    format!("base_model.model.model.layers.{layer}.{group}.{target}")
}

/// The projection `target` of block `layer`.
fn projection_mut<'m>(model: &'m mut Llama, layer: usize, target: &str) -> &'m mut Linear {
    let l = &mut model.layers[layer];
    match target {
        "q_proj" => &mut l.q_proj,
        "k_proj" => &mut l.k_proj,
        "v_proj" => &mut l.v_proj,
        "o_proj" => &mut l.o_proj,
        "gate_proj" => &mut l.gate_proj,
        "up_proj" => &mut l.up_proj,
        _ => &mut l.down_proj,
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn f32s<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Invalid(format!("reading an adapter factor: {e:?}")))
}

/// Writes the LoRA adapters attached to `model` (by `Llama::with_lora`) to `dir` in PEFT's
/// layout; `base` names the base model in `adapter_config.json`. An error when the model
/// carries no adapter.
pub fn save_adapter(model: &Llama, dir: &Path, base: &str) -> Result<AdapterConfig> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut targets: Vec<String> = Vec::new();
    let mut rank_alpha: Option<(usize, f64)> = None;
    let mut model = model.clone();
    for layer in 0..model.layers.len() {
        for target in LORA_TARGETS {
            let linear = projection_mut(&mut model, layer, target);
            let Some(adapter) = linear.weight.adapter() else {
                continue;
            };
            let a = adapter.a.val();
            let b = adapter.b.val();
            let [d_in, r] = a.dims();
            let [_, d_out] = b.dims();
            rank_alpha.get_or_insert((r, adapter.scale * r as f64));
            if !targets.iter().any(|t| t == target) {
                targets.push(target.to_string());
            }
            let prefix = peft_prefix(layer, target);
            let bytes = |v: Vec<f32>| v.iter().flat_map(|x| x.to_le_bytes()).collect();
            tensors.push((
                format!("{prefix}.lora_A.weight"),
                vec![r, d_in],
                bytes(f32s(a.transpose())?),
            ));
            tensors.push((
                format!("{prefix}.lora_B.weight"),
                vec![d_out, r],
                bytes(f32s(b.transpose())?),
            ));
        }
    }
    let Some((r, alpha)) = rank_alpha else {
        return Err(Error::Invalid(
            "the model carries no LoRA adapter to save".into(),
        ));
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::Invalid(format!("adapter tensor `{name}`: {e}")))
        })
        .collect::<Result<_>>()?;
    let file = dir.join("adapter_model.safetensors");
    let bytes = safetensors::serialize(views, None)
        .map_err(|e| Error::Invalid(format!("serialising {}: {e}", file.display())))?;
    std::fs::write(&file, bytes).map_err(io(&file))?;
    let config = AdapterConfig {
        peft_type: "LORA".into(),
        task_type: "CAUSAL_LM".into(),
        r,
        lora_alpha: alpha,
        lora_dropout: model.lora_dropout(),
        target_modules: targets,
        base_model_name_or_path: Some(base.into()),
        use_rslora: false,
        bias: none(),
        fan_in_fan_out: false,
        inference_mode: true,
    };
    let path = dir.join("adapter_config.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&config).expect("the config serialises"),
    )
    .map_err(io(&path))?;
    Ok(config)
}

/// Reads `dir/adapter_config.json`.
pub fn read_adapter_config(dir: &Path) -> Result<AdapterConfig> {
    let path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let bad = |e: serde_json::Error| Error::Config {
        path: path.clone(),
        reason: e.to_string(),
    };
    let raw: serde_json::Value = serde_json::from_str(&text).map_err(bad)?;
    let config: AdapterConfig = serde_json::from_value(raw.clone()).map_err(bad)?;
    if let Some(what) = config.unsupported(&raw) {
        return Err(Error::Config {
            path,
            reason: format!(
                "Kiln merges plain LoRA adapters (rank-stabilised too) on all blocks; this one: {what}"
            ),
        });
    }
    Ok(config)
}

/// `model` with the PEFT adapter in `dir` merged into its weights (`W ← W + (α/r)·ΔW` for
/// each adapted projection). Every adapted projection must exist with matching shapes, and
/// every tensor of the file must be used.
pub fn merge_adapter(mut model: Llama, dir: &Path) -> Result<Llama> {
    let config = read_adapter_config(dir)?;
    let file = dir.join("adapter_model.safetensors");
    let bytes = std::fs::read(&file).map_err(io(&file))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| Error::Corrupt {
        path: file.clone(),
        format: "safetensors",
        reason: e.to_string(),
    })?;
    let mut unused: HashMap<String, ()> = st
        .names()
        .into_iter()
        .map(|n| (n.to_string(), ()))
        .collect();
    let scale = config.scale();
    let device = model.embed_tokens.weight.device();
    for target in &config.target_modules {
        if !LORA_TARGETS.contains(&target.as_str()) {
            return Err(Error::Config {
                path: dir.join("adapter_config.json"),
                reason: format!(
                    "target module `{target}` is not a Llama projection ({})",
                    LORA_TARGETS.join(", ")
                ),
            });
        }
        for layer in 0..model.layers.len() {
            let prefix = peft_prefix(layer, target);
            let mut read = |suffix: &str| -> Result<(Vec<usize>, Vec<f32>)> {
                let name = format!("{prefix}.{suffix}");
                let view = st.tensor(&name).map_err(|_| Error::MissingKeys {
                    path: file.clone(),
                    keys: vec![name.clone()],
                })?;
                unused.remove(&name);
                let data = view.data();
                let v = match view.dtype() {
                    safetensors::Dtype::F32 => data
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                    safetensors::Dtype::F16 => data
                        .chunks_exact(2)
                        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                        .collect(),
                    safetensors::Dtype::BF16 => data
                        .chunks_exact(2)
                        .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                        .collect(),
                    other => {
                        return Err(Error::Corrupt {
                            path: file.clone(),
                            format: "safetensors",
                            reason: format!(
                                "`{name}` is {other:?}; Kiln reads F32, F16 and BF16 adapters"
                            ),
                        });
                    }
                };
                Ok((view.shape().to_vec(), v))
            };
            let (a_shape, a) = read("lora_A.weight")?;
            let (b_shape, b) = read("lora_B.weight")?;
            let linear = projection_mut(&mut model, layer, target);
            let w = linear.weight.val();
            let [d_in, d_out] = w.dims();
            if a_shape != [config.r, d_in] || b_shape != [d_out, config.r] {
                return Err(Error::ShapeMismatch {
                    path: file.clone(),
                    key: format!("{prefix}.lora_A/lora_B"),
                    expected: vec![config.r, d_in, d_out, config.r],
                    found: [a_shape, b_shape].concat(),
                    others: 0,
                });
            }
            // PEFT's A [r, in] and B [out, r] are burn's a = Aᵀ [in, r] and b = Bᵀ [r, out].
            let a = Tensor::<2>::from_data(TensorData::new(a, [config.r, d_in]), &device);
            let b = Tensor::<2>::from_data(TensorData::new(b, [d_out, config.r]), &device);
            let delta = a.transpose().matmul(b.transpose()).mul_scalar(scale);
            linear.weight = Param::from_tensor(w + delta);
        }
    }
    if let Some(extra) = unused.keys().next() {
        return Err(Error::Corrupt {
            path: file,
            format: "safetensors",
            reason: format!(
                "`{extra}` is no adapter of the target modules {:?} ({} unused tensors)",
                config.target_modules,
                unused.len()
            ),
        });
    }
    Ok(model)
}
