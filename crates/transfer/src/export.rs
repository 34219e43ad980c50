//! Saving a Llama model for the tools people deploy with: a Hugging Face folder
//! (`config.json`, `model.safetensors` with Llama key names, `tokenizer.json`,
//! `tokenizer_config.json` with the chat template) and a GGUF file (llama.cpp's names, the
//! query/key rows permuted as llama.cpp expects, F32/F16/Q8_0 matrices, the tokenizer and
//! chat template as `tokenizer.*` metadata). A model carrying LoRA adapters is saved merged
//! (each weight's effective value `W₀ + s·A·B`). [`crate::llama::load`] reads both back.

use std::path::Path;

use burn::nn::Linear;
use burn::tensor::Tensor;
use kiln_gguf::{GgmlType, GgufWriter, Value};
use kiln_models::llama::{Llama, LlamaConfig, RopeScaling};
use serde_json::json;

use crate::llama::LlmBundle;
use crate::{Error, Result};

/// How exported weight matrices are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightType {
    /// 32-bit floats (exact).
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16 (safetensors only).
    Bf16,
    /// ggml's 8-bit blocks of 32 with an f16 scale (GGUF only).
    Q8_0,
}

impl std::str::FromStr for WeightType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "f32" => Self::F32,
            "f16" => Self::F16,
            "bf16" => Self::Bf16,
            "q8_0" | "q8" => Self::Q8_0,
            other => {
                return Err(Error::Invalid(format!(
                    "weight type `{other}`: expected f32, f16, bf16 (safetensors) or q8_0 (GGUF)"
                )));
            }
        })
    }
}

/// One exported tensor: Hugging Face name (without `model.`), row-major shape (`[out, in]`
/// for a matrix, PyTorch's layout), values.
pub struct HfTensor {
    /// `layers.0.self_attn.q_proj.weight`.
    pub name: String,
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Values.
    pub values: Vec<f32>,
}

fn values<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Invalid(format!("reading a weight: {e:?}")))
}

/// A Linear's effective `[in, out]` weight as PyTorch's `[out, in]`.
fn matrix(name: String, linear: &Linear) -> Result<HfTensor> {
    let w = linear.weight.val();
    let [inp, out] = w.dims();
    let v = values(w.transpose())?;
    Ok(HfTensor {
        name,
        shape: vec![out, inp],
        values: v,
    })
}

/// Every weight of `model` by Hugging Face name, LoRA adapters merged. The output
/// projection is included only when it is not the token embedding's transpose.
pub fn hf_tensors(model: &Llama) -> Result<Vec<HfTensor>> {
    let mut out = Vec::new();
    let norm = |name: String, gamma: &burn::module::Param<Tensor<1>>| -> Result<HfTensor> {
        let v = values(gamma.val())?;
        Ok(HfTensor {
            name,
            shape: vec![v.len()],
            values: v,
        })
    };
    let embed = model.embed_tokens.weight.val();
    let embed_shape = embed.dims().to_vec();
    let embed_values = values(embed)?;
    let head = matrix("lm_head.weight".into(), &model.lm_head)?;
    let tied = head.shape == embed_shape && head.values == embed_values;
    out.push(HfTensor {
        name: "embed_tokens.weight".into(),
        shape: embed_shape,
        values: embed_values,
    });
    for (i, l) in model.layers.iter().enumerate() {
        let p = |s: &str| format!("layers.{i}.{s}");
        out.push(norm(p("input_layernorm.weight"), &l.input_norm.gamma)?);
        out.push(matrix(p("self_attn.q_proj.weight"), &l.q_proj)?);
        out.push(matrix(p("self_attn.k_proj.weight"), &l.k_proj)?);
        out.push(matrix(p("self_attn.v_proj.weight"), &l.v_proj)?);
        out.push(matrix(p("self_attn.o_proj.weight"), &l.o_proj)?);
        out.push(norm(
            p("post_attention_layernorm.weight"),
            &l.post_attention_norm.gamma,
        )?);
        out.push(matrix(p("mlp.gate_proj.weight"), &l.gate_proj)?);
        out.push(matrix(p("mlp.up_proj.weight"), &l.up_proj)?);
        out.push(matrix(p("mlp.down_proj.weight"), &l.down_proj)?);
    }
    out.push(norm("norm.weight".into(), &model.norm.gamma)?);
    if !tied {
        out.push(head);
    }
    Ok(out)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Hugging Face's `config.json` for `config` (`tied`: whether the export shares the output
/// projection with the embedding).
pub fn hf_config_json(config: &LlamaConfig, tied: bool, bundle: &LlmBundle) -> Result<String> {
    let rope_scaling = match &config.rope_scaling {
        None => serde_json::Value::Null,
        Some(RopeScaling::Linear { factor }) => json!({"rope_type": "linear", "factor": factor}),
        Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        }) => json!({"rope_type": "llama3", "factor": factor, "low_freq_factor": low_freq_factor,
            "high_freq_factor": high_freq_factor,
            "original_max_position_embeddings": original_max_position_embeddings}),
        Some(RopeScaling::Factors { .. }) => {
            return Err(Error::Invalid(
                "the model's RoPE scaling is a table of per-frequency factors (from a GGUF rope_freqs tensor), which config.json cannot express: export it as GGUF".into(),
            ));
        }
    };
    let id = |token: Option<&str>| {
        token
            .and_then(|t| bundle.tokenizer.token_to_id(t))
            .map_or(serde_json::Value::Null, |i| json!(i))
    };
    let template = bundle.template.as_ref();
    Ok(serde_json::to_string_pretty(&json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": config.rms_norm_eps,
        "rope_theta": config.rope_theta,
        "rope_scaling": rope_scaling,
        "max_position_embeddings": config.max_position_embeddings,
        "tie_word_embeddings": tied,
        "attention_bias": false,
        "mlp_bias": false,
        "bos_token_id": id(template.map(|t| t.bos())),
        "eos_token_id": id(template.map(|t| t.eos())),
        "torch_dtype": "float32",
    }))
    .expect("JSON values serialise"))
}

/// Writes `bundle` as a Hugging Face folder in `dir` (created): `config.json`,
/// `model.safetensors` (`model.`-prefixed Llama names; F32, F16 or BF16), `tokenizer.json`,
/// `tokenizer_config.json` (chat template, bos and eos tokens).
pub fn save_hf_folder(bundle: &LlmBundle, dir: &Path, ty: WeightType) -> Result<()> {
    let dtype = match ty {
        WeightType::F32 => safetensors::Dtype::F32,
        WeightType::F16 => safetensors::Dtype::F16,
        WeightType::Bf16 => safetensors::Dtype::BF16,
        WeightType::Q8_0 => {
            return Err(Error::Invalid(
                "safetensors holds f32, f16 or bf16 weights; q8_0 is for GGUF".into(),
            ));
        }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tensors = hf_tensors(&bundle.model)?;
    let tied = !tensors.iter().any(|t| t.name == "lm_head.weight");
    let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|t| {
            let bytes: Vec<u8> = match dtype {
                safetensors::Dtype::F16 => t
                    .values
                    .iter()
                    .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                    .collect(),
                safetensors::Dtype::BF16 => t
                    .values
                    .iter()
                    .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
                    .collect(),
                _ => t.values.iter().flat_map(|x| x.to_le_bytes()).collect(),
            };
            let name = if t.name == "lm_head.weight" {
                t.name
            } else {
                format!("model.{}", t.name)
            };
            (name, t.shape, bytes)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = encoded
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(dtype, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::Invalid(format!("tensor `{name}`: {e}")))
        })
        .collect::<Result<_>>()?;
    let weights = dir.join("model.safetensors");
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::Invalid(format!("serialising {}: {e}", weights.display())))?;
    write_atomic(&weights, &bytes)?;
    let config = hf_config_json(bundle.model.config(), tied, bundle)?;
    write_atomic(&dir.join("config.json"), config.as_bytes())?;
    write_atomic(
        &dir.join("tokenizer.json"),
        bundle.tokenizer.to_json()?.as_bytes(),
    )?;
    let mut tc = json!({"model_max_length": bundle.model.config().max_position_embeddings});
    if let Some(t) = &bundle.template {
        tc["chat_template"] = json!(t.source());
        tc["bos_token"] = json!(t.bos());
        tc["eos_token"] = json!(t.eos());
    }
    write_atomic(
        &dir.join("tokenizer_config.json"),
        serde_json::to_string_pretty(&tc)
            .expect("JSON values serialise")
            .as_bytes(),
    )
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).map_err(io(path))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// GGUF's name of a Hugging Face parameter (`layers.3.mlp.up_proj.weight` → `blk.3.ffn_up.weight`).
pub fn gguf_tensor_name(hf: &str) -> String {
    crate::llama::gguf_name(hf)
}

/// The `tokenizer.ggml.*` metadata of a byte-level BPE tokenizer (its `tokenizer.json`):
/// tokens by id, merges, token types (special added tokens are control, 3; other added tokens
/// user-defined, 4; the rest normal, 1) and the pre-tokenizer's llama.cpp name.
fn tokenizer_metadata(bundle: &LlmBundle, w: &mut GgufWriter) -> Result<()> {
    let spec: serde_json::Value = serde_json::from_str(&bundle.tokenizer.to_json()?)
        .map_err(|e| Error::Invalid(format!("the tokenizer's JSON: {e}")))?;
    let model = &spec["model"];
    if model["type"] != "BPE" {
        return Err(Error::Invalid(format!(
            "GGUF export writes byte-level BPE tokenizers; this one is {}",
            model["type"]
        )));
    }
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| Error::Invalid("the tokenizer has no BPE vocabulary".into()))?;
    let mut tokens = vec![None; bundle.tokenizer.vocab_size()];
    for (token, id) in vocab {
        let id = id.as_u64().unwrap_or(u64::MAX) as usize;
        if let Some(slot) = tokens.get_mut(id) {
            *slot = Some(token.clone());
        }
    }
    let mut types = vec![1u32; tokens.len()];
    for added in spec["added_tokens"].as_array().into_iter().flatten() {
        let id = added["id"].as_u64().unwrap_or(u64::MAX) as usize;
        if let (Some(slot), Some(content)) = (tokens.get_mut(id), added["content"].as_str()) {
            *slot = Some(content.to_string());
            types[id] = if added["special"].as_bool() == Some(true) {
                3
            } else {
                4
            };
        }
    }
    let tokens: Vec<Value> = tokens
        .into_iter()
        .enumerate()
        .map(|(id, t)| {
            t.map(Value::String)
                .ok_or_else(|| Error::Invalid(format!("token id {id} has no token")))
        })
        .collect::<Result<_>>()?;
    let merges: Vec<Value> = model["merges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| match m {
            serde_json::Value::String(s) => Ok(Value::String(s.clone())),
            serde_json::Value::Array(pair) if pair.len() == 2 => Ok(Value::String(format!(
                "{} {}",
                pair[0].as_str().unwrap_or_default(),
                pair[1].as_str().unwrap_or_default()
            ))),
            other => Err(Error::Invalid(format!("a BPE merge is {other}"))),
        })
        .collect::<Result<_>>()?;
    let pre = &spec["pre_tokenizer"];
    let pre_name = if pre["type"] == "ByteLevel" {
        "gpt2"
    } else if pre["type"] == "Sequence"
        && pre["pretokenizers"].as_array().is_some_and(|p| {
            p.len() == 2
                && p[0]["type"] == "Digits"
                && p[0]["individual_digits"] == true
                && p[1]["type"] == "ByteLevel"
        })
    {
        "smollm"
    } else {
        return Err(Error::Invalid(format!(
            "the tokenizer's pre-tokenizer {pre} has no llama.cpp name Kiln knows (ByteLevel → gpt2, Digits + ByteLevel → smollm)"
        )));
    };
    w.set("tokenizer.ggml.model", Value::String("gpt2".into()));
    w.set("tokenizer.ggml.pre", Value::String(pre_name.into()));
    w.set("tokenizer.ggml.tokens", Value::Array(tokens));
    w.set(
        "tokenizer.ggml.token_type",
        Value::Array(types.into_iter().map(|t| Value::I32(t as i32)).collect()),
    );
    w.set("tokenizer.ggml.merges", Value::Array(merges));
    let id = |t: &str| bundle.tokenizer.token_to_id(t);
    if let Some(t) = &bundle.template {
        if let Some(bos) = id(t.bos()) {
            w.set("tokenizer.ggml.bos_token_id", Value::U32(bos));
        }
        if let Some(eos) = id(t.eos()) {
            w.set("tokenizer.ggml.eos_token_id", Value::U32(eos));
        }
        w.set(
            "tokenizer.chat_template",
            Value::String(t.source().to_string()),
        );
    } else if let Some(&eos) = bundle.stop_tokens.first() {
        w.set("tokenizer.ggml.eos_token_id", Value::U32(eos));
    }
    w.set(
        "tokenizer.ggml.padding_token_id",
        Value::U32(bundle.tokenizer.pad_id()),
    );
    w.set("tokenizer.ggml.add_bos_token", Value::Bool(false));
    Ok(())
}

/// Writes `bundle` as a GGUF v3 file at `path`: `llama.*` hyper-parameters, the tokenizer and
/// chat template, matrices as `ty` (F32, F16 or Q8_0), norms in F32; `name` becomes
/// `general.name`.
pub fn save_gguf(bundle: &LlmBundle, path: &Path, ty: WeightType, name: &str) -> Result<()> {
    let ggml = match ty {
        WeightType::F32 => GgmlType::F32,
        WeightType::F16 => GgmlType::F16,
        WeightType::Q8_0 => GgmlType::Q8_0,
        WeightType::Bf16 => {
            return Err(Error::Invalid(
                "GGUF export writes f32, f16 or q8_0 weights".into(),
            ));
        }
    };
    let config = bundle.model.config();
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String("llama".into()));
    w.set("general.name", Value::String(name.into()));
    w.set("general.alignment", Value::U32(32));
    // llama.cpp's file types: 0 all F32, 1 mostly F16, 7 mostly Q8_0.
    let file_type = match ggml {
        GgmlType::F16 => 1,
        GgmlType::Q8_0 => 7,
        _ => 0,
    };
    w.set("general.file_type", Value::U32(file_type));
    let u = |v: usize| Value::U32(v as u32);
    w.set("llama.vocab_size", u(config.vocab_size));
    w.set("llama.context_length", u(config.max_position_embeddings));
    w.set("llama.embedding_length", u(config.hidden_size));
    w.set("llama.feed_forward_length", u(config.intermediate_size));
    w.set("llama.block_count", u(config.num_layers));
    w.set("llama.attention.head_count", u(config.num_heads));
    w.set("llama.attention.head_count_kv", u(config.num_kv_heads));
    w.set("llama.rope.dimension_count", u(config.head_dim));
    w.set(
        "llama.attention.layer_norm_rms_epsilon",
        Value::F32(config.rms_norm_eps as f32),
    );
    w.set("llama.rope.freq_base", Value::F32(config.rope_theta as f32));
    let gguf_err = |e: String| Error::Invalid(format!("{}: {e}", path.display()));
    match &config.rope_scaling {
        None => {}
        Some(RopeScaling::Linear { factor }) => {
            w.set("llama.rope.scaling.type", Value::String("linear".into()));
            w.set("llama.rope.scaling.factor", Value::F32(*factor as f32));
        }
        Some(_) => {
            // llama.cpp reads per-frequency scaling as `rope_freqs.weight`: the factor by
            // which each inverse frequency is divided.
            let plain = LlamaConfig {
                rope_scaling: None,
                ..config.clone()
            };
            let factors: Vec<f32> = plain
                .inv_freq()
                .iter()
                .zip(config.inv_freq())
                .map(|(p, s)| (p / s) as f32)
                .collect();
            w.add_tensor(
                "rope_freqs.weight",
                &[factors.len()],
                &factors,
                GgmlType::F32,
            )
            .map_err(gguf_err)?;
        }
    }
    tokenizer_metadata(bundle, &mut w)?;
    for t in hf_tensors(&bundle.model)? {
        let heads = if t.name.ends_with("q_proj.weight") {
            Some(config.num_heads)
        } else if t.name.ends_with("k_proj.weight") {
            Some(config.num_kv_heads)
        } else {
            None
        };
        let values = match heads {
            Some(h) => crate::llama::permute_rows(&t.values, t.shape[0], t.shape[1], h),
            None => t.values,
        };
        let tensor_ty = if t.shape.len() == 1 {
            GgmlType::F32
        } else {
            ggml
        };
        w.add_tensor(&gguf_tensor_name(&t.name), &t.shape, &values, tensor_ty)
            .map_err(gguf_err)?;
    }
    w.write(path)?;
    Ok(())
}
