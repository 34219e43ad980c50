//! LLM generation speed, measured the way `../shared/bench/llm_bench.py` measures Hugging Face
//! transformers: greedy decoding with the KV cache, `new_tokens` generated whatever the model
//! says (end tokens do not stop it), tokens per second over the whole `generate` call
//! (prompt pass included), median and best of `reps` after one warm-up; plus the prompt pass
//! alone (logits at every position, no cache) and the decode steps alone.

use std::ops::ControlFlow;
use std::time::Instant;

use burn::tensor::{Int, Tensor, TensorData};
use kiln_models::llama::{Llama, Sampler, SamplingConfig, generate};
use serde::{Deserialize, Serialize};

use crate::Result;

/// One prompt's measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlmMeasurement {
    /// `kiln`.
    pub fw: String,
    /// Worker threads.
    pub threads: usize,
    /// `plain` or `chat`.
    pub prompt: String,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Tokens generated per call.
    pub new_tokens: usize,
    /// Seconds of one forward pass over the prompt (no cache, logits at every position).
    pub prefill_s: f64,
    /// New tokens / seconds of the whole call, median over the repetitions.
    pub tokens_per_s_median: f64,
    /// The same, best repetition.
    pub tokens_per_s_best: f64,
    /// Decode steps only (after the prompt pass): tokens per second, median.
    pub decode_tokens_per_s_median: f64,
    /// The process's peak resident memory so far, bytes.
    pub peak_rss_bytes: Option<u64>,
}

/// Measures greedy generation of `new_tokens` after `prompt` (token ids).
pub fn measure(
    model: &Llama,
    name: &str,
    prompt: &[u32],
    new_tokens: usize,
    reps: usize,
) -> Result<LlmMeasurement> {
    let device = model.embed_tokens.weight.device();
    let mut cache = model.new_cache(prompt.len() + new_tokens + 1);
    let mut run = |n: usize| -> Result<(f64, f64)> {
        cache.clear();
        let mut sampler = Sampler::new(SamplingConfig::greedy())?;
        let started = Instant::now();
        let stats = generate(model, prompt, &mut cache, n, &[], &mut sampler, &mut |_| {
            ControlFlow::Continue(())
        })?;
        Ok((
            started.elapsed().as_secs_f64(),
            stats.new_tokens.saturating_sub(1) as f64 / stats.decode_seconds.max(1e-12),
        ))
    };
    run(8)?;
    let ids: Vec<i64> = prompt.iter().map(|&t| i64::from(t)).collect();
    let input = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, prompt.len()]), &device);
    let started = Instant::now();
    let logits = model.forward(input, None)?;
    let _ = logits.into_data();
    let prefill_s = started.elapsed().as_secs_f64();
    let mut totals = Vec::new();
    let mut decode = Vec::new();
    for _ in 0..reps.max(1) {
        let (total, d) = run(new_tokens)?;
        totals.push(new_tokens as f64 / total);
        decode.push(d);
    }
    totals.sort_by(f64::total_cmp);
    decode.sort_by(f64::total_cmp);
    Ok(LlmMeasurement {
        fw: "kiln".into(),
        threads: crate::worker_threads(),
        prompt: name.into(),
        prompt_tokens: prompt.len(),
        new_tokens,
        prefill_s,
        tokens_per_s_median: totals[totals.len() / 2],
        tokens_per_s_best: totals[totals.len() - 1],
        decode_tokens_per_s_median: decode[decode.len() / 2],
        peak_rss_bytes: crate::peak_rss_bytes(),
    })
}
