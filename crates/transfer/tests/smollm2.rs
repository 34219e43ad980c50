//! SmolLM2-135M-Instruct from its GGUF (`kiln fetch smollm2`) against the Hugging Face
//! references in `<data>/models/smollm2-135m-instruct`: logits at every position, greedy
//! continuations with and without the KV cache, the tokenizer and the chat template.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::OnceLock;

use burn::tensor::{Device, Int, Tensor, TensorData};
use kiln_models::llama::{KvCache, Sampler, SamplingConfig, generate};
use kiln_transfer::chat::{FinishReason, GenerateOptions, Generator, Message};
use kiln_transfer::fetch::{SMOLLM2, cache_dir, locate};
use kiln_transfer::llama::LlmBundle;

fn data_dir() -> PathBuf {
    kiln_data::data_dir::resolve(None)
}

fn reference_dir() -> PathBuf {
    data_dir().join("models/smollm2-135m-instruct")
}

fn reference() -> serde_json::Value {
    let text = std::fs::read_to_string(reference_dir().join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn bundle() -> &'static LlmBundle {
    static BUNDLE: OnceLock<LlmBundle> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        let path = locate(&SMOLLM2, &data_dir(), &cache_dir()).unwrap_or_else(|e| panic!("{e}"));
        kiln_transfer::llama::load(&path, &Device::flex()).unwrap()
    })
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn tokens(ids: &[u32]) -> Tensor<2, Int> {
    let v: Vec<i64> = ids.iter().map(|&x| i64::from(x)).collect();
    Tensor::from_data(TensorData::new(v, [1, ids.len()]), &Device::flex())
}

/// The reference logits `[n, vocab]` of a prompt.
fn reference_logits(prompt: &str) -> (Vec<u32>, Vec<f32>) {
    let bytes = std::fs::read(reference_dir().join("reference_logits.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let input = st.tensor(&format!("{prompt}.input_ids")).unwrap();
    let input: Vec<u32> = match input.dtype() {
        safetensors::Dtype::I64 => input
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
            .collect(),
        other => panic!("input ids as {other:?}"),
    };
    let logits = st
        .tensor(&format!("{prompt}.logits_all_positions"))
        .unwrap();
    let values = logits
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (input, values)
}

#[test]
fn logits_at_every_position_match_transformers() {
    let model = &bundle().model;
    for prompt in ["plain", "chat"] {
        let (input, want) = reference_logits(prompt);
        let got: Vec<f32> = model
            .forward(tokens(&input), None)
            .unwrap()
            .into_data()
            .try_to_vec()
            .unwrap();
        assert_eq!(got.len(), want.len(), "{prompt}");
        let max = max_abs_diff(&got, &want);
        eprintln!(
            "{prompt}: {} positions, max |Δ logit| {max:.2e}",
            input.len()
        );
        assert!(max < 1e-3, "{prompt}: max abs difference {max}");
    }
}

fn greedy(prompt: &[u32], n: usize, stop: &[u32]) -> Vec<u32> {
    let model = &bundle().model;
    let mut cache = model.new_cache(256);
    let mut sampler = Sampler::new(SamplingConfig::greedy()).unwrap();
    let mut out = Vec::new();
    generate(model, prompt, &mut cache, n, stop, &mut sampler, &mut |t| {
        out.push(t);
        ControlFlow::Continue(())
    })
    .unwrap();
    out
}

#[test]
fn greedy_continuations_match_transformers() {
    let r = &reference()["prompts"];
    let plain = ids(&r["plain"]["input_ids"]);
    assert_eq!(
        greedy(&plain, 20, &[]),
        ids(&r["plain"]["greedy20_ids_ignore_eos"])
    );
    // The chat reply up to <|im_end|> (id 2): "The capital of France is Paris."
    let chat = ids(&r["chat"]["input_ids"]);
    assert_eq!(
        greedy(&chat, 20, &[2]),
        ids(&r["chat"]["hf_generate20_ids"])
    );
}

#[test]
fn cached_decoding_equals_full_recomputation() {
    let model = &bundle().model;
    let r = &reference()["prompts"];
    let mut sequence = ids(&r["plain"]["input_ids"]);
    let n = sequence.len();
    let mut cache = KvCache::new(model.config(), 1, 64, &Device::flex());
    let mut cached = Vec::new();
    let mut last = model
        .forward_last(tokens(&sequence), Some(&mut cache))
        .unwrap();
    for step in 0..8 {
        let row: Vec<f32> = last.into_data().try_to_vec().unwrap();
        // Recompute the whole sequence without a cache: same logits for its last position.
        let full: Vec<f32> = model
            .forward_last(tokens(&sequence), None)
            .unwrap()
            .into_data()
            .try_to_vec()
            .unwrap();
        let max = max_abs_diff(&row, &full);
        assert!(max < 1e-3, "step {step}: cached vs full {max}");
        let next = row
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0 as u32;
        cached.push(next);
        sequence.push(next);
        last = model
            .forward_last(tokens(&[next]), Some(&mut cache))
            .unwrap();
    }
    assert_eq!(cache.len(), n + 8);
    assert_eq!(
        cached,
        ids(&r["plain"]["greedy20_ids_ignore_eos"])[..8].to_vec()
    );
}

#[test]
fn tokenizer_from_gguf_matches_the_hugging_face_tokenizer() {
    let hf =
        kiln_data::text::TextTokenizer::from_file(&reference_dir().join("tokenizer.json")).unwrap();
    let ours = &bundle().tokenizer;
    let texts = [
        "The capital of France is",
        "Hello, world! How's it going?",
        "Ünïcödé: 日本語のテキスト, emoji 🙂👍🏽, Ελληνικά, русский",
        "fn main() {\n    println!(\"{}\", 1 + 2);\n}\n",
        "Digits 1234567890 and 3.14159, 2026-12-01, $1,000,000",
        "tabs\tand  double  spaces   and\n\n\nnewlines    ",
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
        "<|endoftext|> special tokens mid-text <|im_end|>",
        "   leading spaces",
        "",
    ];
    for text in texts {
        assert_eq!(
            ours.encode_plain(text).unwrap(),
            hf.encode_plain(text).unwrap(),
            "{text:?}"
        );
    }
    let r = &reference()["prompts"];
    for p in ["plain", "chat"] {
        let text = r[p]["text"].as_str().unwrap();
        assert_eq!(ours.encode_plain(text).unwrap(), ids(&r[p]["input_ids"]));
    }
    assert_eq!(ours.vocab_size(), 49_152);
    assert_eq!(
        ours.decode(&ids(&r["plain"]["greedy20_ids_ignore_eos"]))
            .unwrap(),
        r["plain"]["greedy20_text_ignore_eos"].as_str().unwrap()
    );
}

#[test]
fn chat_template_renders_what_apply_chat_template_does() {
    let template = bundle()
        .template
        .as_ref()
        .expect("the GGUF has a chat template");
    let r = &reference()["prompts"];
    // No system message: the template adds SmolLM's default one.
    let one = template
        .render(
            &[Message::new("user", "What is the capital of France?")],
            true,
        )
        .unwrap();
    assert_eq!(one, r["chat"]["text"].as_str().unwrap());
    // The same template from the Hugging Face tokenizer_config.json renders identically.
    let tc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(reference_dir().join("tokenizer_config.json")).unwrap(),
    )
    .unwrap();
    let hf = kiln_transfer::chat::ChatTemplate::new(
        tc["chat_template"].as_str().unwrap(),
        "<|im_start|>",
        "<|im_end|>",
    )
    .unwrap();
    let turns = [
        Message::new("system", "You answer in one word."),
        Message::new("user", "Capital of Italy?"),
        Message::new("assistant", "Rome."),
        Message::new("user", "And of Spain?"),
    ];
    let multi = template.render(&turns, true).unwrap();
    assert_eq!(
        multi,
        "<|im_start|>system\nYou answer in one word.<|im_end|>\n<|im_start|>user\nCapital of Italy?<|im_end|>\n<|im_start|>assistant\nRome.<|im_end|>\n<|im_start|>user\nAnd of Spain?<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(hf.render(&turns, true).unwrap(), multi);
    assert_eq!(
        template.render(&turns, false).unwrap(),
        multi.trim_end_matches("<|im_start|>assistant\n")
    );
}

#[test]
fn chat_generation_streams_the_reply_and_stops_at_im_end() {
    let mut generator = Generator::new(bundle(), 512);
    let prompt = generator
        .chat_prompt(&[Message::new("user", "What is the capital of France?")])
        .unwrap();
    let mut streamed = String::new();
    let g = generator
        .generate(&prompt, &GenerateOptions::default(), &mut |piece| {
            streamed.push_str(piece);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(g.text, "The capital of France is Paris.");
    assert_eq!(streamed, g.text);
    assert_eq!(g.finish, FinishReason::Stop);
    assert_eq!(g.stats.prompt_tokens, 37);

    // A stop string ends the text before it, and nothing past it is streamed.
    let options = GenerateOptions {
        stop: vec![" Paris".into()],
        ..GenerateOptions::default()
    };
    let mut streamed = String::new();
    let g = generator
        .generate(&prompt, &options, &mut |piece| {
            streamed.push_str(piece);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(
        (g.text.as_str(), streamed.as_str()),
        ("The capital of France is", "The capital of France is")
    );
}

#[test]
fn same_seed_same_text_different_seeds_differ() {
    let mut generator = Generator::new(bundle(), 512);
    let sample = |generator: &mut Generator, seed| {
        let options = GenerateOptions {
            max_new_tokens: 24,
            sampling: SamplingConfig {
                temperature: 1.0,
                top_k: Some(50),
                top_p: 0.95,
                min_p: 0.0,
                repetition_penalty: 1.0,
                seed,
            },
            stop: Vec::new(),
        };
        generator
            .generate("Once upon a time", &options, &mut |_| {
                ControlFlow::Continue(())
            })
            .unwrap()
            .tokens
    };
    let a = sample(&mut generator, 1);
    assert_eq!(a, sample(&mut generator, 1));
    let b = sample(&mut generator, 2);
    let c = sample(&mut generator, 3);
    assert!(a != b || a != c, "three seeds gave the same 24 tokens");
}

#[test]
fn bad_generation_input_is_an_error() {
    let model = &bundle().model;
    let mut cache = model.new_cache(16);
    let mut sampler = Sampler::new(SamplingConfig::greedy()).unwrap();
    let mut run = |prompt: &[u32], n| {
        generate(model, prompt, &mut cache, n, &[], &mut sampler, &mut |_| {
            ControlFlow::Continue(())
        })
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    assert!(run(&[], 4).contains("no tokens"));
    assert!(run(&[49_152], 4).contains("outside the vocabulary"));
    let e = run(&[1; 10], 10);
    assert!(e.contains("19 tokens do not fit in the KV cache"), "{e}");
    let bad = SamplingConfig {
        top_p: 0.0,
        ..SamplingConfig::greedy()
    };
    assert!(Sampler::new(bad).is_err());
}

/// A Hugging Face folder (config.json, model.safetensors with `model.` keys, tokenizer.json,
/// tokenizer_config.json) holding the GGUF's weights in PyTorch's layout loads to the same
/// logits and the same chat prompt.
#[test]
fn hugging_face_folder_gives_the_same_model() {
    use kiln_transfer::gguf::GgufFile;
    let path = locate(&SMOLLM2, &data_dir(), &cache_dir()).unwrap();
    let gguf = GgufFile::open(&path).unwrap();
    let config = kiln_transfer::llama::config_from_gguf(&gguf).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(reference_dir().join(f), dir.path().join(f)).unwrap();
    }
    // GGUF names → Hugging Face names, Q/K rows back in Hugging Face's order.
    let mut names = vec![
        (
            "token_embd.weight".to_string(),
            "model.embed_tokens.weight".to_string(),
        ),
        ("output_norm.weight".into(), "model.norm.weight".into()),
    ];
    let parts = [
        ("attn_norm", "input_layernorm"),
        ("attn_q", "self_attn.q_proj"),
        ("attn_k", "self_attn.k_proj"),
        ("attn_v", "self_attn.v_proj"),
        ("attn_output", "self_attn.o_proj"),
        ("ffn_norm", "post_attention_layernorm"),
        ("ffn_gate", "mlp.gate_proj"),
        ("ffn_up", "mlp.up_proj"),
        ("ffn_down", "mlp.down_proj"),
    ];
    for i in 0..config.num_layers {
        for (g, hf) in parts {
            names.push((
                format!("blk.{i}.{g}.weight"),
                format!("model.layers.{i}.{hf}.weight"),
            ));
        }
    }
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (g, hf) in names {
        let (shape, mut values) = gguf.dequantize(&g).unwrap();
        let heads = if g.ends_with("attn_q.weight") {
            Some(config.num_heads)
        } else if g.ends_with("attn_k.weight") {
            Some(config.num_kv_heads)
        } else {
            None
        };
        if let Some(h) = heads {
            values = kiln_transfer::llama::unpermute_rows(&values, shape[0], shape[1], h);
        }
        tensors.push((
            hf,
            shape,
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.path().join("model.safetensors")).unwrap();
    drop(tensors);

    let hf = kiln_transfer::llama::load(dir.path(), &Device::flex()).unwrap();
    assert_eq!(hf.model.config(), &config);
    let (input, want) = reference_logits("chat");
    let got: Vec<f32> = hf
        .model
        .forward(tokens(&input), None)
        .unwrap()
        .into_data()
        .try_to_vec()
        .unwrap();
    let max = max_abs_diff(&got, &want);
    assert!(max < 1e-3, "Hugging Face folder: max abs difference {max}");
    let messages = [Message::new("user", "What is the capital of France?")];
    assert_eq!(
        hf.template
            .as_ref()
            .unwrap()
            .render(&messages, true)
            .unwrap(),
        bundle()
            .template
            .as_ref()
            .unwrap()
            .render(&messages, true)
            .unwrap()
    );
    assert_eq!(hf.stop_tokens, vec![2]);
}

#[test]
fn a_chat_reuses_its_cached_turns_and_answers_as_a_fresh_generator_does() {
    let options = GenerateOptions {
        max_new_tokens: 40,
        ..GenerateOptions::default()
    };
    let quiet = &mut |_: &str| ControlFlow::Continue(());
    let mut warm = Generator::new(bundle(), 512);
    let mut turns = vec![Message::new("user", "What is the capital of France?")];
    let first = warm.chat_prompt(&turns).unwrap();
    let reply = warm.generate(&first, &options, quiet).unwrap();
    turns.push(Message::new("assistant", &reply.text));
    turns.push(Message::new("user", "And of Italy?"));
    let second = warm.chat_prompt(&turns).unwrap();
    let reused = warm.generate(&second, &options, quiet).unwrap();
    let mut cold = Generator::new(bundle(), 512);
    let fresh = cold.generate(&second, &options, quiet).unwrap();
    let total = bundle().tokenizer.encode_plain(&second).unwrap().len();
    assert_eq!(fresh.stats.prompt_tokens, total);
    assert!(
        reused.stats.prompt_tokens < total - 30,
        "only {} of {total} prompt tokens reused",
        total - reused.stats.prompt_tokens
    );
    assert_eq!(reused.tokens, fresh.tokens);
    assert_eq!(reused.text, fresh.text);
    eprintln!("second turn: {:?}", reused.text);
}
