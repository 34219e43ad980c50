//! Llama-architecture LLMs from a GGUF file or a Hugging Face folder (`config.json` +
//! `model.safetensors` + `tokenizer.json`): the model, its tokenizer and its chat template.
//!
//! From GGUF, every weight is dequantized to f32 ([`crate::gguf`]) and llama.cpp's row
//! permutation of the query and key projections is undone, so the zoo's rotate-half RoPE
//! ([`kiln_models::llama`]) reproduces Hugging Face's logits; the byte-level BPE vocabulary,
//! merges and special tokens become a Hugging Face `tokenizers` tokenizer, and the Jinja chat
//! template a [`ChatTemplate`].

use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::{Device, Tensor, TensorData};
use kiln_data::text::TextTokenizer;
use kiln_models::llama::{Llama, LlamaBlock, LlamaConfig, RopeScaling};
use serde_json::json;

use crate::chat::ChatTemplate;
use crate::gguf::GgufFile;
use crate::{Error, Result};

/// A chat/generation model with everything needed to talk to it.
pub struct LlmBundle {
    /// The network.
    pub model: Llama,
    /// Its tokenizer.
    pub tokenizer: TextTokenizer,
    /// Its chat template (None when the file has none).
    pub template: Option<ChatTemplate>,
    /// Token ids that end a reply (EOS and, for chat, the template's end-of-turn token).
    pub stop_tokens: Vec<u32>,
    /// Where it came from.
    pub source: PathBuf,
    /// A short description (`GGUF v3, Q4_1/Q8_0 dequantized to f32`).
    pub format: String,
}

/// Loads a `.gguf` file or a Hugging Face Llama folder.
pub fn load(path: &Path, device: &Device) -> Result<LlmBundle> {
    if path.is_dir() {
        return load_hf_folder(path, device);
    }
    let gguf = GgufFile::open(path)?;
    load_gguf(&gguf, device)
}

/// The model, tokenizer and template of a parsed GGUF file.
pub fn load_gguf(gguf: &GgufFile, device: &Device) -> Result<LlmBundle> {
    let config = config_from_gguf(gguf)?;
    let model = model_from_gguf(gguf, &config, device)?;
    let ChatParts {
        tokenizer,
        template,
        stop_tokens,
    } = chat_parts_from_gguf(gguf)?;
    let mut types: Vec<&str> = gguf.tensors.iter().map(|t| t.ty.name()).collect();
    types.sort_unstable();
    types.dedup();
    Ok(LlmBundle {
        model,
        tokenizer,
        template,
        stop_tokens,
        source: gguf.source.clone(),
        format: format!(
            "GGUF v{}, {} dequantized to f32",
            gguf.version,
            types.join("/")
        ),
    })
}

/// What talking to a model needs besides its weights.
pub struct ChatParts {
    /// The tokenizer.
    pub tokenizer: TextTokenizer,
    /// The chat template, when the file has one.
    pub template: Option<ChatTemplate>,
    /// Token ids that end a reply.
    pub stop_tokens: Vec<u32>,
}

/// The tokenizer, chat template and stop tokens of a `.gguf` file, without building the
/// model (what preparing instruction data needs).
pub fn chat_parts_from_gguf(gguf: &GgufFile) -> Result<ChatParts> {
    let tokenizer = tokenizer_from_gguf(gguf)?;
    let token = |key: &str| -> Result<Option<String>> {
        match gguf.get(key).and_then(|v| v.as_u64()) {
            None => Ok(None),
            Some(id) => tokenizer
                .id_to_token(id as u32)
                .map(Some)
                .ok_or_else(|| bad(gguf, format!("`{key}` {id} is not a token id"))),
        }
    };
    let bos = token("tokenizer.ggml.bos_token_id")?.unwrap_or_default();
    let eos = token("tokenizer.ggml.eos_token_id")?.unwrap_or_default();
    let template = match gguf.get("tokenizer.chat_template").and_then(|v| v.as_str()) {
        Some(src) => Some(ChatTemplate::new(src, &bos, &eos)?),
        None => None,
    };
    let mut stop_tokens = Vec::new();
    if let Some(id) = gguf
        .get("tokenizer.ggml.eos_token_id")
        .and_then(|v| v.as_u64())
    {
        stop_tokens.push(id as u32);
    }
    for end in ["<|im_end|>", "<|eot_id|>", "<|end|>"] {
        if let Some(id) = tokenizer.token_to_id(end)
            && !stop_tokens.contains(&id)
        {
            stop_tokens.push(id);
        }
    }
    Ok(ChatParts {
        tokenizer,
        template,
        stop_tokens,
    })
}

fn gguf_usize(gguf: &GgufFile, key: &str) -> Result<usize> {
    Ok(gguf.require_u64(key)? as usize)
}

fn gguf_f64(gguf: &GgufFile, key: &str, default: f64) -> Result<f64> {
    match gguf.get(key) {
        None => Ok(default),
        Some(v) => v.as_f64().ok_or_else(|| {
            bad(
                gguf,
                format!("metadata `{key}` is a {}, not a number", v.type_name()),
            )
        }),
    }
}

/// The model shape from `general.architecture` and its `<arch>.*` keys.
pub fn config_from_gguf(gguf: &GgufFile) -> Result<LlamaConfig> {
    let arch = gguf.require_str("general.architecture")?;
    if arch != "llama" {
        return Err(bad(
            gguf,
            format!(
                "architecture `{arch}` is not supported (Kiln runs `llama`-architecture GGUF files)"
            ),
        ));
    }
    let key = |k: &str| format!("{arch}.{k}");
    let hidden = gguf_usize(gguf, &key("embedding_length"))?;
    let heads = gguf_usize(gguf, &key("attention.head_count"))?;
    let kv_heads = match gguf.get(&key("attention.head_count_kv")) {
        Some(_) => gguf_usize(gguf, &key("attention.head_count_kv"))?,
        None => heads,
    };
    let vocab = match gguf.get(&key("vocab_size")) {
        Some(_) => gguf_usize(gguf, &key("vocab_size"))?,
        None => gguf.require_strings("tokenizer.ggml.tokens")?.len(),
    };
    let head_dim = match gguf.get(&key("rope.dimension_count")) {
        Some(_) => gguf_usize(gguf, &key("rope.dimension_count"))?,
        None => hidden / heads.max(1),
    };
    let rope_scaling = match gguf.get(&key("rope.scaling.type")).and_then(|v| v.as_str()) {
        None | Some("none") => None,
        Some("linear") => Some(RopeScaling::Linear {
            factor: gguf_f64(gguf, &key("rope.scaling.factor"), 1.0)?,
        }),
        Some(other) => {
            return Err(bad(
                gguf,
                format!(
                    "RoPE scaling `{other}` is not supported (linear is, and llama3 through rope_freqs.weight)"
                ),
            ));
        }
    };
    let rope_scaling = match gguf.tensors.iter().find(|t| t.name == "rope_freqs.weight") {
        Some(_) => {
            let (_, factors) = gguf.dequantize("rope_freqs.weight")?;
            Some(RopeScaling::Factors {
                factors: factors.into_iter().map(f64::from).collect(),
            })
        }
        None => rope_scaling,
    };
    let config = LlamaConfig {
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: gguf_usize(gguf, &key("feed_forward_length"))?,
        num_layers: gguf_usize(gguf, &key("block_count"))?,
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim,
        rms_norm_eps: gguf_f64(gguf, &key("attention.layer_norm_rms_epsilon"), 1e-5)?,
        rope_theta: gguf_f64(gguf, &key("rope.freq_base"), 10_000.0)?,
        rope_scaling,
        max_position_embeddings: gguf_usize(gguf, &key("context_length"))?,
        tie_word_embeddings: !gguf.tensors.iter().any(|t| t.name == "output.weight"),
    };
    config
        .check()
        .map_err(|e| gguf.error(format!("its metadata describe no valid model: {e}")))?;
    Ok(config)
}

/// Undoes llama.cpp's permutation of the rows of a query or key projection `[out, in]`:
/// within each head, GGUF row `2i + j` is Hugging Face row `j·(head_dim/2) + i`.
pub fn unpermute_rows(w: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    reorder_qk_rows(w, rows, cols, heads, false)
}

/// llama.cpp's row order of a query or key projection `[out, in]` (the inverse of
/// [`unpermute_rows`]), for writing GGUF files.
pub fn permute_rows(w: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    reorder_qk_rows(w, rows, cols, heads, true)
}

fn reorder_qk_rows(w: &[f32], rows: usize, cols: usize, heads: usize, to_gguf: bool) -> Vec<f32> {
    let hd = rows / heads;
    let half = hd / 2;
    let mut out = vec![0.0; w.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let gguf = h * hd + 2 * i + j;
                let hf = h * hd + j * half + i;
                let (to, from) = if to_gguf { (gguf, hf) } else { (hf, gguf) };
                out[to * cols..(to + 1) * cols].copy_from_slice(&w[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

/// `[rows, cols]` row-major → `[cols, rows]` row-major.
fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; w.len()];
    const B: usize = 32;
    for r0 in (0..rows).step_by(B) {
        for c0 in (0..cols).step_by(B) {
            for r in r0..(r0 + B).min(rows) {
                for c in c0..(c0 + B).min(cols) {
                    out[c * rows + r] = w[r * cols + c];
                }
            }
        }
    }
    out
}

/// Where [`model_from_weights`] gets each weight: its row-major shape and values by Hugging
/// Face name.
pub type WeightSource<'a> = dyn FnMut(&str) -> Result<(Vec<usize>, Vec<f32>)> + 'a;

/// Builds the model from weights given as row-major `[out, in]` matrices (PyTorch's layout)
/// and vectors, by Hugging Face name without `model.` (`layers.3.self_attn.q_proj.weight`);
/// `get` returns the shape and values and fails for a missing name.
pub fn model_from_weights(
    config: &LlamaConfig,
    get: &mut WeightSource<'_>,
    source: &Path,
    device: &Device,
) -> Result<Llama> {
    let mut fetch = |name: &str, expected: &[usize]| -> Result<Vec<f32>> {
        let (shape, values) = get(name)?;
        if shape != expected {
            return Err(Error::ShapeMismatch {
                path: source.to_path_buf(),
                key: name.into(),
                expected: expected.to_vec(),
                found: shape,
                others: 0,
            });
        }
        Ok(values)
    };
    let (d, hd, f, v) = (
        config.hidden_size,
        config.head_dim,
        config.intermediate_size,
        config.vocab_size,
    );
    let linear = |w: Vec<f32>, out: usize, inp: usize| Linear {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(transpose(&w, out, inp), [inp, out]),
            device,
        )),
        bias: None,
    };
    let norm = |w: Vec<f32>| RmsNorm {
        gamma: Param::from_tensor(Tensor::from_data(TensorData::new(w, [d]), device)),
        epsilon: config.rms_norm_eps,
    };
    let (q_out, kv_out) = (config.num_heads * hd, config.num_kv_heads * hd);
    // No capacity from the metadata: a file claiming a billion layers fails at its first
    // missing tensor, not in an allocation.
    let mut layers = Vec::new();
    for i in 0..config.num_layers {
        let p = |s: &str| format!("layers.{i}.{s}");
        layers.push(LlamaBlock {
            input_norm: norm(fetch(&p("input_layernorm.weight"), &[d])?),
            q_proj: linear(fetch(&p("self_attn.q_proj.weight"), &[q_out, d])?, q_out, d),
            k_proj: linear(
                fetch(&p("self_attn.k_proj.weight"), &[kv_out, d])?,
                kv_out,
                d,
            ),
            v_proj: linear(
                fetch(&p("self_attn.v_proj.weight"), &[kv_out, d])?,
                kv_out,
                d,
            ),
            o_proj: linear(fetch(&p("self_attn.o_proj.weight"), &[d, q_out])?, d, q_out),
            post_attention_norm: norm(fetch(&p("post_attention_layernorm.weight"), &[d])?),
            gate_proj: linear(fetch(&p("mlp.gate_proj.weight"), &[f, d])?, f, d),
            up_proj: linear(fetch(&p("mlp.up_proj.weight"), &[f, d])?, f, d),
            down_proj: linear(fetch(&p("mlp.down_proj.weight"), &[d, f])?, d, f),
        });
    }
    let embed = fetch("embed_tokens.weight", &[v, d])?;
    let lm_head = if config.tie_word_embeddings {
        linear(embed.clone(), v, d)
    } else {
        linear(fetch("lm_head.weight", &[v, d])?, v, d)
    };
    let embed_tokens = Embedding {
        weight: Param::from_tensor(Tensor::from_data(TensorData::new(embed, [v, d]), device)),
    };
    let norm = norm(fetch("norm.weight", &[d])?);
    Ok(Llama::from_parts(
        config.clone(),
        embed_tokens,
        layers,
        norm,
        lm_head,
    )?)
}

/// The GGUF name of a Hugging Face parameter name (without `model.`).
pub(crate) fn gguf_name(hf: &str) -> String {
    if let Some(rest) = hf.strip_prefix("layers.") {
        let (i, part) = rest.split_once('.').unwrap_or((rest, ""));
        let part = match part {
            "input_layernorm.weight" => "attn_norm.weight",
            "self_attn.q_proj.weight" => "attn_q.weight",
            "self_attn.k_proj.weight" => "attn_k.weight",
            "self_attn.v_proj.weight" => "attn_v.weight",
            "self_attn.o_proj.weight" => "attn_output.weight",
            "post_attention_layernorm.weight" => "ffn_norm.weight",
            "mlp.gate_proj.weight" => "ffn_gate.weight",
            "mlp.up_proj.weight" => "ffn_up.weight",
            "mlp.down_proj.weight" => "ffn_down.weight",
            other => other,
        };
        return format!("blk.{i}.{part}");
    }
    match hf {
        "embed_tokens.weight" => "token_embd.weight",
        "norm.weight" => "output_norm.weight",
        "lm_head.weight" => "output.weight",
        other => other,
    }
    .to_string()
}

/// The network of a GGUF file (weights dequantized to f32, Q/K rows unpermuted).
pub fn model_from_gguf(gguf: &GgufFile, config: &LlamaConfig, device: &Device) -> Result<Llama> {
    let mut get = |hf: &str| -> Result<(Vec<usize>, Vec<f32>)> {
        let (shape, values) = gguf.dequantize(&gguf_name(hf))?;
        let heads = if hf.ends_with("q_proj.weight") {
            Some(config.num_heads)
        } else if hf.ends_with("k_proj.weight") {
            Some(config.num_kv_heads)
        } else {
            None
        };
        match (heads, shape.as_slice()) {
            (Some(h), &[rows, cols]) if rows % h == 0 && (rows / h) % 2 == 0 => {
                let values = unpermute_rows(&values, rows, cols, h);
                Ok((shape, values))
            }
            _ => Ok((shape, values)),
        }
    };
    model_from_weights(config, &mut get, &gguf.source, device)
}

/// A Hugging Face `tokenizers` tokenizer from the GGUF's byte-level BPE vocabulary
/// (`tokenizer.ggml.model = gpt2`): tokens, merges, token types (control tokens become
/// special added tokens) and the pre-tokenizer named by `tokenizer.ggml.pre`.
pub fn tokenizer_from_gguf(gguf: &GgufFile) -> Result<TextTokenizer> {
    let model = gguf.require_str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(bad(
            gguf,
            format!(
                "tokenizer model `{model}` is not supported (Kiln builds byte-level BPE, `gpt2`, tokenizers from GGUF; use a Hugging Face folder with tokenizer.json for others)"
            ),
        ));
    }
    let tokens = gguf.require_strings("tokenizer.ggml.tokens")?;
    let merges = gguf.require_strings("tokenizer.ggml.merges")?;
    let types: Vec<u64> = match gguf.get("tokenizer.ggml.token_type") {
        None => vec![1; tokens.len()],
        Some(v) => v
            .as_array()
            .ok_or_else(|| gguf.error("`tokenizer.ggml.token_type` is not an array"))?
            .iter()
            .map(|t| t.as_u64().unwrap_or(1))
            .collect(),
    };
    if types.len() != tokens.len() {
        return Err(bad(
            gguf,
            format!("{} token types for {} tokens", types.len(), tokens.len()),
        ));
    }
    let pre = gguf
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.as_str())
        .unwrap_or("default");
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let pre_tokenizer = match pre {
        "smollm" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level]}),
        "gpt2" | "default" => byte_level,
        other => {
            return Err(bad(
                gguf,
                format!(
                    "pre-tokenizer `{other}` is not supported (smollm, gpt2 and default are; use a Hugging Face folder with tokenizer.json)"
                ),
            ));
        }
    };
    let mut vocab = serde_json::Map::with_capacity(tokens.len());
    for (id, t) in tokens.iter().enumerate() {
        vocab.insert((*t).to_string(), json!(id));
    }
    let merges: Vec<serde_json::Value> = merges
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .map(|(a, b)| json!([a, b]))
                .ok_or_else(|| bad(gguf, format!("merge {i} `{m}` is not two tokens")))
        })
        .collect::<Result<_>>()?;
    // Control (3) and user-defined (4) tokens are matched before BPE, as Hugging Face's
    // added tokens; control tokens are special.
    let added: Vec<serde_json::Value> = types
        .iter()
        .enumerate()
        .filter(|(_, t)| matches!(t, 3 | 4))
        .map(|(id, &t)| {
            json!({"id": id, "content": tokens[id], "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": t == 4, "special": t == 3})
        })
        .collect();
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": merges},
    });
    Ok(TextTokenizer::from_json(&spec.to_string(), &gguf.source)?)
}

/// A Hugging Face folder: `config.json`, `model.safetensors` (Llama key names, with or
/// without `model.`), `tokenizer.json` and, if present, `tokenizer_config.json`'s
/// `chat_template`, `bos_token` and `eos_token`.
pub fn load_hf_folder(dir: &Path, device: &Device) -> Result<LlmBundle> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|e| Error::Io {
            path,
            reason: e.to_string(),
        })
    };
    let config = LlamaConfig::from_hf_json(&read("config.json")?).map_err(|e| Error::Config {
        path: dir.join("config.json"),
        reason: e.to_string(),
    })?;
    let weights_path = dir.join("model.safetensors");
    let bytes = std::fs::read(&weights_path).map_err(|e| Error::Io {
        path: weights_path.clone(),
        reason: e.to_string(),
    })?;
    let tensors = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| Error::Corrupt {
        path: weights_path.clone(),
        format: "safetensors",
        reason: e.to_string(),
    })?;
    let mut get = |name: &str| -> Result<(Vec<usize>, Vec<f32>)> {
        let view = tensors
            .tensor(&format!("model.{name}"))
            .or_else(|_| tensors.tensor(name))
            .map_err(|_| Error::MissingKeys {
                path: weights_path.clone(),
                keys: vec![format!("model.{name}")],
            })?;
        let values = safetensors_f32(&view).ok_or_else(|| Error::Corrupt {
            path: weights_path.clone(),
            format: "safetensors",
            reason: format!(
                "`{name}` is {:?}; Kiln reads F32, F16 and BF16",
                view.dtype()
            ),
        })?;
        Ok((view.shape().to_vec(), values))
    };
    let model = model_from_weights(&config, &mut get, &weights_path, device)?;
    let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"))?;
    let tc: serde_json::Value = match read("tokenizer_config.json") {
        Ok(text) => serde_json::from_str(&text).map_err(|e| Error::Config {
            path: dir.join("tokenizer_config.json"),
            reason: e.to_string(),
        })?,
        Err(_) => json!({}),
    };
    let special = |k: &str| {
        tc.get(k)
            .and_then(|v| {
                v.as_str()
                    .or_else(|| v.get("content").and_then(|c| c.as_str()))
            })
            .unwrap_or("")
            .to_string()
    };
    let (bos, eos) = (special("bos_token"), special("eos_token"));
    let template = match tc.get("chat_template").and_then(|v| v.as_str()) {
        Some(src) => Some(ChatTemplate::new(src, &bos, &eos)?),
        None => None,
    };
    let mut stop_tokens: Vec<u32> = tokenizer.token_to_id(&eos).into_iter().collect();
    for end in ["<|im_end|>", "<|eot_id|>", "<|end|>"] {
        if let Some(id) = tokenizer.token_to_id(end)
            && !stop_tokens.contains(&id)
        {
            stop_tokens.push(id);
        }
    }
    Ok(LlmBundle {
        model,
        tokenizer,
        template,
        stop_tokens,
        source: dir.to_path_buf(),
        format: "Hugging Face safetensors".into(),
    })
}

fn safetensors_f32(view: &safetensors::tensor::TensorView<'_>) -> Option<Vec<f32>> {
    use safetensors::Dtype;
    let data = view.data();
    Some(match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

/// What `--model SPEC` names: an existing `.gguf` file or Hugging Face folder, or the name
/// of a model Kiln fetches (`smollm2`), found in the data directory or the model cache
/// ([`crate::fetch::locate`]).
pub fn resolve_model(spec: &str, data_dir: &Path) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    if let Ok(model) = crate::fetch::model(spec) {
        return crate::fetch::locate(model, data_dir, &crate::fetch::cache_dir());
    }
    Err(Error::Invalid(format!(
        "--model `{spec}` is neither a .gguf file, a Hugging Face folder, nor a model Kiln fetches ({})",
        crate::fetch::MODELS
            .iter()
            .map(|m| m.name)
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// The model shape of a `.gguf` file or Hugging Face folder, without building the model.
pub fn load_config(path: &Path) -> Result<LlamaConfig> {
    if path.is_dir() {
        let file = path.join("config.json");
        let text = std::fs::read_to_string(&file).map_err(|e| Error::Io {
            path: file.clone(),
            reason: e.to_string(),
        })?;
        return LlamaConfig::from_hf_json(&text).map_err(|e| Error::Config {
            path: file,
            reason: e.to_string(),
        });
    }
    config_from_gguf(&GgufFile::open(path)?)
}

fn bad(gguf: &GgufFile, reason: String) -> Error {
    gguf.error(reason).into()
}
