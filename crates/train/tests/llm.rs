//! LoRA fine-tuning of SmolLM2-135M-Instruct on real data: adapters start at the base model
//! and are the only trained parameters; a short run on the fine-food reviews lowers the
//! validation loss of the answer tokens; its adapter, merged model and exports reload to the
//! same outputs; a killed run resumes.

use std::path::PathBuf;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use kiln_train::TrainOptions;
use kiln_train::llm::{LlmFinetuneConfig, LlmTest, LoraSettings, finetune_llm, load_llm_run};
use kiln_transfer::fetch::{SMOLLM2, cache_dir, locate};

fn smollm2() -> PathBuf {
    let data_dir = kiln_data::data_dir::resolve(None);
    locate(&SMOLLM2, &data_dir, &cache_dir()).unwrap_or_else(|e| panic!("{e}"))
}

fn logits(model: &kiln_models::llama::Llama, ids: &[u32]) -> Vec<f32> {
    let device = model.embed_tokens.weight.device();
    let t: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(t, [1, ids.len()]), &device);
    model
        .forward(tokens, None)
        .unwrap()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn adapters_start_at_the_base_model_and_are_all_that_trains() {
    let device = Device::flex().autodiff();
    let bundle = kiln_transfer::llama::load(&smollm2(), &device).unwrap();
    let ids = bundle
        .tokenizer
        .encode_plain("The weather today is")
        .unwrap();
    let before = logits(&bundle.model, &ids);
    let total = bundle.model.num_params();
    let all: Vec<String> = LoraSettings::default().targets;
    let adapted = bundle.model.clone().with_lora(8, 16.0, 0.0, &all).unwrap();
    // B = 0: the adapted model computes what the base does.
    assert!(max_diff(&before, &logits(&adapted, &ids)) < 1e-4);
    // r·(in + out) per projection: q 576+576, k and v 576+192, o 576+576, gate and up
    // 576+1536, down 1536+576; 30 blocks.
    let per_block = 8 * (1152 + 768 + 768 + 1152 + 2112 + 2112 + 2112);
    assert_eq!(kiln_train::llm::trainable_params(&adapted), 30 * per_block);
    assert_eq!(adapted.num_params(), total + 30 * per_block);
    // Only the attention projections: a smaller set.
    let qv = bundle
        .model
        .clone()
        .with_lora(4, 8.0, 0.0, &["q_proj".into(), "v_proj".into()])
        .unwrap();
    assert_eq!(
        kiln_train::llm::trainable_params(&qv),
        30 * 4 * (1152 + 768)
    );
    let bad = bundle.model.with_lora(8, 16.0, 0.0, &["qkv".into()]);
    assert!(
        bad.unwrap_err()
            .to_string()
            .contains("unknown LoRA target `qkv`")
    );
}

/// A model whose adapters moved: one AdamW step at a high rate on real reviews.
fn stepped(device: &Device) -> (kiln_transfer::llama::LlmBundle, kiln_models::llama::Llama) {
    use burn::data::dataloader::batcher::Batcher;
    use kiln_train::Task;
    let bundle = kiln_transfer::llama::load(&smollm2(), device).unwrap();
    // The adapters' A is drawn from the backend RNG: seeded, with no other test drawing in
    // between, the step (and every tolerance below) is the same each time.
    let _turn = kiln_core::seed::exclusive_rng();
    kiln_core::Seed(42).apply(device);
    let model = bundle
        .model
        .clone()
        .with_lora(4, 8.0, 0.0, &LoraSettings::default().targets)
        .unwrap();
    let template = bundle.template.as_ref().unwrap();
    let data_dir = kiln_data::data_dir::resolve(None);
    let (train, _) = kiln_data::text::LabelledTexts::fine_food_reviews(&data_dir).unwrap();
    let first = train.subset(&[0, 1, 2, 3]);
    let chats: Vec<_> = kiln_transfer::instruct::reviews_instructions(&first)
        .iter()
        .map(|c| kiln_transfer::instruct::tokenize(template, &bundle.tokenizer, c, 4096).unwrap())
        .collect();
    let batch = kiln_train::llm::LlmBatcher {
        pad_id: bundle.tokenizer.pad_id(),
    }
    .batch(chats, device);
    let task = kiln_train::llm::LlmTask { model };
    let grads = task.forward(batch).loss.mean().backward();
    let grads = burn::optim::GradientsParams::from_grads(grads, &task);
    let mut optim = burn::optim::AdamWConfig::new().init();
    let task = optim.step(1e-2, task, grads);
    (bundle, task.model)
}

#[test]
fn merged_saved_and_exported_models_compute_what_the_adapted_one_does() {
    let device = Device::flex().autodiff();
    let (bundle, adapted) = stepped(&device);
    let ids = bundle
        .tokenizer
        .encode_plain("Is this review great or other?")
        .unwrap();
    let base = logits(&bundle.model.valid(), &ids);
    let unmerged = logits(&adapted.valid(), &ids);
    // The step moved the model (else every comparison below is vacuous).
    assert!(
        max_diff(&base, &unmerged) > 1e-2,
        "{}",
        max_diff(&base, &unmerged)
    );
    // burn's merge: W₀ + s·A·B as one weight.
    let merged = adapted.valid().materialize();
    let d = max_diff(&unmerged, &logits(&merged, &ids));
    // (f32 rounding: one merged weight against two products, ~1e-5 relative to logits of ~20.)
    assert!(d < 1e-3, "merged: {d}");
    // The PEFT adapter folder, merged into a freshly loaded base.
    let dir = tempfile::tempdir().unwrap();
    let config =
        kiln_transfer::adapter::save_adapter(&adapted, &dir.path().join("a"), "smollm2").unwrap();
    assert_eq!((config.r, config.lora_alpha), (4, 8.0));
    assert_eq!(config.target_modules.len(), 7);
    let fresh = kiln_transfer::llama::load(&smollm2(), &Device::flex())
        .unwrap()
        .model;
    let loaded = kiln_transfer::adapter::merge_adapter(fresh, &dir.path().join("a")).unwrap();
    assert!(max_diff(&unmerged, &logits(&loaded, &ids)) < 1e-3);
    // Exports in f32 reload to the same logits; in Q8_0 to nearly the same.
    let out = kiln_transfer::llama::LlmBundle {
        model: merged,
        ..kiln_transfer::llama::load(&smollm2(), &Device::flex()).unwrap()
    };
    use kiln_transfer::export::{WeightType, save_gguf, save_hf_folder};
    save_gguf(&out, &dir.path().join("m.gguf"), WeightType::F32, "test").unwrap();
    save_gguf(&out, &dir.path().join("q.gguf"), WeightType::Q8_0, "test").unwrap();
    save_hf_folder(&out, &dir.path().join("hf"), WeightType::F32).unwrap();
    for name in ["m.gguf", "hf", "q.gguf"] {
        let back = kiln_transfer::llama::load(&dir.path().join(name), &Device::flex()).unwrap();
        let got = logits(&back.model, &ids);
        if name == "q.gguf" {
            // 8-bit blocks (an error of at most max|x|/254 per weight): at every position the
            // token the Q8_0 model likes best is the f32 model's best, or one the f32 model
            // scores within 0.5 of its best (a near tie, which rounding may flip: on an AVX-512
            // Xeon one position's two best tokens are that close), and the logits agree to
            // within 5% (relative L2).
            let vocab = bundle.model.config().vocab_size;
            let best = |row: &[f32]| -> usize {
                (0..row.len())
                    .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                    .unwrap()
            };
            let mut exact = 0;
            for (q, f) in got.chunks(vocab).zip(unmerged.chunks(vocab)) {
                let (tq, tf) = (best(q), best(f));
                exact += usize::from(tq == tf);
                assert!(
                    f[tf] - f[tq] < 0.5,
                    "q8_0 prefers token {tq} ({}) to {tf} ({})",
                    f[tq],
                    f[tf]
                );
            }
            assert!(exact + 1 >= ids.len(), "{exact} of {} positions", ids.len());
            let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            let diff: Vec<f32> = got.iter().zip(&unmerged).map(|(a, b)| a - b).collect();
            let rel = norm(&diff) / norm(&unmerged);
            assert!(rel < 0.05, "q8_0: relative error {rel}");
        } else {
            let d = max_diff(&unmerged, &got);
            assert!(d < 1e-3, "{name}: logits differ by {d}");
        }
        // The tokenizer and template come back too.
        assert_eq!(
            back.tokenizer
                .encode_plain("Is this review great or other?")
                .unwrap(),
            ids
        );
        assert_eq!(back.stop_tokens, bundle.stop_tokens);
    }
    peft_adapters_as_peft_writes_them(&dir.path().join("a"), (&base, &unmerged), &ids);
    // A wrong adapter folder is refused, naming the tensor.
    std::fs::write(dir.path().join("a/adapter_model.safetensors"), b"garbage").unwrap();
    let fresh = kiln_transfer::llama::load(&smollm2(), &Device::flex())
        .unwrap()
        .model;
    let err = kiln_transfer::adapter::merge_adapter(fresh, &dir.path().join("a")).unwrap_err();
    assert!(
        err.to_string().contains("adapter_model.safetensors"),
        "{err}"
    );
}

/// PEFT's own files for the adapter Kiln saved in `saved`: its `adapter_config.json` with the
/// fields PEFT 0.21.2 writes (the base named by its Hub id), rank-stabilised scaling, the factors
/// in bfloat16. Merged onto the base they compute what the same bf16-rounded factors in f32
/// with plain scaling do, and the adapted model's logits within bf16's rounding; what Kiln
/// does not compute (DoRA, a pattern of targets, saved whole modules) is refused. `logits`:
/// the base model's and the adapted model's.
fn peft_adapters_as_peft_writes_them(
    saved: &std::path::Path,
    (base_logits, unmerged): (&[f32], &[f32]),
    ids: &[u32],
) {
    use safetensors::Dtype;
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(saved.join("adapter_config.json")).unwrap())
            .unwrap();
    let (r, alpha) = (
        config["r"].as_f64().unwrap(),
        config["lora_alpha"].as_f64().unwrap(),
    );
    let bytes = std::fs::read(saved.join("adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    // Each factor rounded to bf16: as bf16 bytes, and the same values as f32 bytes.
    let mut bf16 = Vec::new();
    let mut f32s = Vec::new();
    for (name, view) in st.tensors() {
        let rounded: Vec<half::bf16> = view
            .data()
            .chunks_exact(4)
            .map(|c| half::bf16::from_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect();
        let b: Vec<u8> = rounded.iter().flat_map(|x| x.to_le_bytes()).collect();
        let f: Vec<u8> = rounded
            .iter()
            .flat_map(|x| x.to_f32().to_le_bytes())
            .collect();
        bf16.push((name.clone(), view.shape().to_vec(), b));
        f32s.push((name, view.shape().to_vec(), f));
    }
    let write = |dir: &std::path::Path,
                 dtype: Dtype,
                 tensors: &[(String, Vec<usize>, Vec<u8>)],
                 config: &serde_json::Value| {
        std::fs::create_dir_all(dir).unwrap();
        let views: Vec<_> = tensors
            .iter()
            .map(|(n, s, b)| {
                (
                    n.clone(),
                    safetensors::tensor::TensorView::new(dtype, s.clone(), b).unwrap(),
                )
            })
            .collect();
        std::fs::write(
            dir.join("adapter_model.safetensors"),
            safetensors::serialize(views, None).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.join("adapter_config.json"), config.to_string()).unwrap();
    };
    let root = saved.parent().unwrap();
    // Every field PEFT 0.21.2's `save_pretrained` writes for a LoRA on these projections.
    let peft = serde_json::json!({
        "alora_invocation_tokens": null, "alpha_pattern": {}, "arrow_config": null,
        "auto_mapping": null,
        "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct", "bias": "none",
        "corda_config": null, "ensure_weight_tying": false, "eva_config": null,
        "exclude_modules": null, "fan_in_fan_out": false, "inference_mode": true,
        "init_lora_weights": true, "kasa_config": null, "layer_replication": null,
        "layers_pattern": null, "layers_to_transform": null, "loftq_config": {},
        // rsLoRA scales by alpha/√r: this alpha gives the saved adapter's alpha/r.
        "lora_alpha": alpha / r.sqrt(), "lora_bias": false, "lora_dropout": 0.05,
        "lora_ga_config": null, "megatron_config": null, "megatron_core": "megatron.core",
        "modules_to_save": null, "monteclora_config": null, "peft_type": "LORA",
        "peft_version": "0.21.2", "qalora_group_size": 16, "r": r as usize,
        "rank_pattern": {}, "revision": null, "target_modules": config["target_modules"],
        "target_parameters": null, "task_type": "CAUSAL_LM", "trainable_token_indices": null,
        "use_bdlora": null, "use_dora": false, "use_qalora": false, "use_rslora": true,
        "velora_config": null
    });
    write(&root.join("peft"), Dtype::BF16, &bf16, &peft);
    write(&root.join("rounded"), Dtype::F32, &f32s, &config);
    let data_dir = kiln_data::data_dir::resolve(None);
    let base = kiln_transfer::llama::load(&smollm2(), &Device::flex()).unwrap();
    // (A bundle's template does not clone; `with_adapter` needs only the model.)
    let bundle = || kiln_transfer::llama::LlmBundle {
        model: base.model.clone(),
        tokenizer: base.tokenizer.clone(),
        template: None,
        stop_tokens: base.stop_tokens.clone(),
        source: base.source.clone(),
        format: base.format.clone(),
    };
    let from_peft = kiln_train::llm::with_adapter(bundle(), &root.join("peft")).unwrap();
    let from_rounded =
        kiln_transfer::adapter::merge_adapter(base.model.clone(), &root.join("rounded")).unwrap();
    let (peft_logits, rounded) = (logits(&from_peft.model, ids), logits(&from_rounded, ids));
    assert!(
        max_diff(&peft_logits, &rounded) < 1e-4,
        "{}",
        max_diff(&peft_logits, &rounded)
    );
    // bf16 keeps 8 bits of each factor (a relative error of at most 2⁻⁹): the merged update
    // moves the logits as the f32 one does, to within 1% of how far it moves them (0.18%
    // measured). (A wrong scale, α/r against α/√r here, would be off by half of it.)
    let (d, moved) = (
        max_diff(&peft_logits, unmerged),
        max_diff(base_logits, unmerged),
    );
    assert!(
        d > 0.0 && d < 0.01 * moved,
        "bf16 factors: logits differ by {d}; the adapter moves them by {moved}"
    );
    assert!(from_peft.format.contains("LoRA r4"), "{}", from_peft.format);
    // Its base is a Hub id Kiln does not fetch: named as the model alone, it says what to do.
    let err = kiln_train::llm::load_chat_model(
        root.join("peft").to_str().unwrap(),
        &data_dir,
        &Device::flex(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("HuggingFaceTB/SmolLM2-135M-Instruct") && err.contains("--adapter"),
        "{err}"
    );
    // Kiln's own adapter folder names `smollm2` and loads alone.
    let alone =
        kiln_train::llm::load_chat_model(saved.to_str().unwrap(), &data_dir, &Device::flex())
            .unwrap();
    assert!(max_diff(&logits(&alone.model, ids), unmerged) < 1e-3);
    for (key, value, says) in [
        ("use_dora", serde_json::json!(true), "use_dora"),
        (
            "target_modules",
            serde_json::json!("all-linear"),
            "all-linear",
        ),
        ("modules_to_save", serde_json::json!(["lm_head"]), "lm_head"),
        ("lora_bias", serde_json::json!(true), "lora_bias"),
        (
            "layers_to_transform",
            serde_json::json!([0, 1]),
            "layers_to_transform",
        ),
    ] {
        let mut bad = peft.clone();
        bad[key] = value;
        std::fs::write(root.join("peft/adapter_config.json"), bad.to_string()).unwrap();
        let err = kiln_train::llm::with_adapter(bundle(), &root.join("peft"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(says) && err.contains("adapter_config.json"),
            "{key}: {err}"
        );
    }
}

fn tiny_config(dataset: &str) -> LlmFinetuneConfig {
    let mut config = LlmFinetuneConfig::lora("smollm2", dataset);
    config.max_len = 96;
    config.max_train = Some(24);
    config.max_valid = Some(8);
    config.max_test = Some(16);
    config.recipe.lr = 1e-3;
    config.recipe.epochs = 2;
    config
}

#[test]
fn a_paused_lora_run_resumes_and_learns_the_answer() {
    let run = tempfile::tempdir().unwrap();
    let mut config = tiny_config("fine-foods-reviews");
    config.max_test = Some(8);
    config.recipe.valid_fraction = 0.3;
    config.recipe.lr = 2e-3;
    config.recipe.schedule = kiln_optim::Schedule::Constant;
    let paused = TrainOptions {
        pause_after: Some(1),
        ..TrainOptions::quiet()
    };
    let err = finetune_llm(&config, run.path(), &paused).unwrap_err();
    assert!(matches!(err, kiln_train::Error::Paused { .. }), "{err}");
    assert!(!run.path().join("adapter").exists());
    let report = match kiln_train::resume_run(run.path(), &TrainOptions::quiet()).unwrap() {
        kiln_train::RunReport::LlmFinetune(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(report.epochs.len(), 2);
    assert_eq!((report.train_size, report.valid_size), (24, 8));
    // The answer tokens: the base model does not answer in one word, the tuned one does.
    let base = report.base_valid_loss.unwrap();
    let tuned = report.epochs[1].valid_loss;
    assert!(
        tuned < 0.5 * base,
        "valid loss {tuned} against the base model's {base}: {:#?}",
        report.epochs
    );
    let Some(LlmTest::Choices { n, base, tuned, .. }) = &report.test else {
        panic!("{:?}", report.test)
    };
    assert_eq!(*n, 8);
    assert!(base.is_some() && tuned.correct <= 8);
    // The run reloads merged; its adapter is a few MB beside the 540 MB base.
    let bundle = load_llm_run(run.path(), None, &Device::flex()).unwrap();
    assert!(
        bundle.format.contains("LoRA r8 merged"),
        "{}",
        bundle.format
    );
    let size = std::fs::metadata(run.path().join("adapter/adapter_model.safetensors"))
        .unwrap()
        .len();
    assert!(size < 10_000_000, "{size}");
}

#[test]
fn qlora_trains_adapters_over_8_bit_base_weights() {
    use burn::data::dataloader::batcher::Batcher;
    use kiln_train::Task;
    let device = Device::flex().autodiff();
    let bundle = kiln_transfer::llama::load(&smollm2(), &device).unwrap();
    let ids = bundle
        .tokenizer
        .encode_plain("The weather today is")
        .unwrap();
    let base = logits(&bundle.model.valid(), &ids);
    let all = LoraSettings::default().targets;
    let q = bundle
        .model
        .clone()
        .with_qlora(8, 16.0, 0.0, &all, 8)
        .unwrap();
    assert_eq!(kiln_train::llm::trainable_params(&q), 2_442_240);
    // The projections' weights are stored as integers now.
    assert!(!q.layers[0].q_proj.weight.base().dtype().is_float());
    let got = logits(&q.valid(), &ids);
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let diff: Vec<f32> = got.iter().zip(&base).map(|(a, b)| a - b).collect();
    let rel = norm(&diff) / norm(&base);
    assert!(rel < 0.05, "8-bit base: relative error {rel}");
    // Training moves the adapters and lowers the loss of a real batch.
    let template = bundle.template.as_ref().unwrap();
    let data_dir = kiln_data::data_dir::resolve(None);
    let (train, _) = kiln_data::text::LabelledTexts::fine_food_reviews(&data_dir).unwrap();
    let chats: Vec<_> = kiln_transfer::instruct::reviews_instructions(&train.subset(&[0, 1, 2, 3]))
        .iter()
        .map(|c| kiln_transfer::instruct::tokenize(template, &bundle.tokenizer, c, 4096).unwrap())
        .collect();
    let batcher = kiln_train::llm::LlmBatcher {
        pad_id: bundle.tokenizer.pad_id(),
    };
    let mut task = kiln_train::llm::LlmTask { model: q };
    let mut optim = burn::optim::AdamWConfig::new().init();
    let mut losses = Vec::new();
    for _ in 0..3 {
        let out = task.forward(batcher.batch(chats.clone(), &device));
        let loss = out.loss.mean();
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &task);
        task = optim.step(1e-3, task, grads);
    }
    assert!(losses[2] < 0.7 * losses[0], "{losses:?}");
}
