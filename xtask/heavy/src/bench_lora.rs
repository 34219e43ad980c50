//! `cargo xtask bench lora`: what LoRA saves against full fine-tuning of the same model
//! (SmolLM2-135M-Instruct): trainable parameters, optimizer state, peak memory and the time of
//! one training step (forward, backward, AdamW update) on the same batches of real
//! instruction data (fine-food reviews through the chat template, assistant-only loss). Each
//! case runs in its own child process, so its peak RSS (VmHWM) is its own. A Markdown table
//! with the CPU named goes to stdout and `OUT/lora.md`; `--smoke` runs two one-review steps per
//! case.

use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use burn::data::dataloader::batcher::Batcher;
use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::Device;
use kiln_train::Task;
use kiln_train::llm::{LlmBatcher, LlmTask, LoraSettings, trainable_params};
use serde::{Deserialize, Serialize};

use crate::flags::BenchArgs;

/// A LoRA's rank and adapted projections.
type LoraCase = (usize, Vec<String>);

/// The cases: a label and the LoRA, none for full fine-tuning.
fn cases() -> Vec<(&'static str, Option<LoraCase>)> {
    vec![
        (
            "LoRA r8, all 7 projections",
            Some((8, LoraSettings::default().targets)),
        ),
        (
            "LoRA r8, q_proj + v_proj",
            Some((8, vec!["q_proj".into(), "v_proj".into()])),
        ),
        ("full fine-tuning", None),
    ]
}

#[derive(Serialize, Deserialize)]
struct Measured {
    trainable: usize,
    total: usize,
    step_seconds: Vec<f64>,
    tokens_per_step: usize,
    peak_rss_mib: f64,
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// `--case lora:INDEX:STEPS:BATCH:LEN`: one case in this process, its JSON line on stdout.
pub fn run_case(case: &str, args: &BenchArgs) -> anyhow::Result<()> {
    let parts: Vec<&str> = case.split(':').collect();
    let [_, index, steps, batch, len] = parts[..] else {
        anyhow::bail!("lora case: expected lora:INDEX:STEPS:BATCH:LEN, got {case}");
    };
    let (index, steps, batch, len): (usize, usize, usize, usize) =
        (index.parse()?, steps.parse()?, batch.parse()?, len.parse()?);
    let (_, lora) = cases().into_iter().nth(index).context("lora case index")?;
    let data_dir = kiln_data::data_dir::resolve(args.data_dir.clone());
    let path = kiln_transfer::llama::resolve_model(&args.llm, &data_dir)?;
    let device = Device::flex().autodiff();
    kiln_core::Seed(1).apply(&device);
    let bundle = kiln_transfer::llama::load(&path, &device)?;
    let total = bundle.model.num_params() - bundle.model.lm_head.num_params();
    let template = bundle
        .template
        .as_ref()
        .context("the model has no chat template")?;
    let (train, _) = kiln_data::text::LabelledTexts::fine_food_reviews(&data_dir)?;
    // The first reviews whose conversation fits `len` tokens.
    let chats: Vec<_> = kiln_transfer::instruct::reviews_instructions(&train)
        .iter()
        .filter_map(|c| kiln_transfer::instruct::tokenize(template, &bundle.tokenizer, c, len).ok())
        .filter(|c| c.ids.len() < len)
        .take(steps * batch)
        .collect();
    anyhow::ensure!(
        chats.len() == steps * batch,
        "too few reviews fit {len} tokens"
    );
    let batcher = LlmBatcher {
        pad_id: bundle.tokenizer.pad_id(),
    };
    let model = match lora {
        Some((rank, targets)) => bundle
            .model
            .with_lora(rank, 2.0 * rank as f64, 0.05, &targets)?,
        None => bundle.model,
    };
    let trainable = trainable_params(&model);
    let mut task = LlmTask { model };
    let mut optim = AdamWConfig::new().init();
    let mut step_seconds = Vec::new();
    let mut tokens_per_step = 0;
    for items in chats.chunks(batch) {
        tokens_per_step = items.iter().map(|c| c.ids.len()).sum();
        let b = batcher.batch(items.to_vec(), &device);
        let started = Instant::now();
        let grads = task.forward(b).loss.mean().backward();
        let grads = GradientsParams::from_grads(grads, &task);
        task = optim.step(2e-4, task, grads);
        step_seconds.push(started.elapsed().as_secs_f64());
    }
    let m = Measured {
        trainable,
        total,
        step_seconds,
        tokens_per_step,
        peak_rss_mib: peak_rss_mib(),
    };
    println!("{}", serde_json::to_string(&m)?);
    Ok(())
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (steps, batch, len) = if args.smoke { (2, 1, 96) } else { (6, 8, 160) };
    let cpu = kiln_core::machine::cpu_description();
    let mut table = format!(
        "| case | trainable parameters | AdamW state | peak RSS | step (median of {} after 1 warm-up) | tokens/s |\n|---|---|---|---|---|---|\n",
        steps - 1
    );
    let mut rows = Vec::new();
    for (i, (label, _)) in cases().iter().enumerate() {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args([
            "bench",
            "lora",
            "--case",
            &format!("lora:{i}:{steps}:{batch}:{len}"),
        ]);
        cmd.args(["--llm", &args.llm]);
        if let Some(d) = &args.data_dir {
            cmd.arg("--data-dir").arg(d);
        }
        let out = cmd.output()?;
        anyhow::ensure!(
            out.status.success(),
            "case {label} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8(out.stdout)?;
        let m: Measured = serde_json::from_str(line.lines().last().unwrap_or_default())
            .with_context(|| format!("case {label} printed {line}"))?;
        let mut timed: Vec<f64> = m.step_seconds[1..].to_vec();
        timed.sort_by(f64::total_cmp);
        let median = timed[timed.len() / 2];
        rows.push((label.to_string(), median, m.peak_rss_mib));
        table.push_str(&format!(
            "| {label} | {} ({:.2}% of {}) | {:.1} MiB | {:.0} MiB | {:.2} s | {:.0} |\n",
            m.trainable,
            100.0 * m.trainable as f64 / m.total as f64,
            m.total,
            2.0 * 4.0 * m.trainable as f64 / (1024.0 * 1024.0),
            m.peak_rss_mib,
            median,
            m.tokens_per_step as f64 / median,
        ));
    }
    let full = rows
        .last()
        .map(|r| (r.1, r.2))
        .unwrap_or((f64::NAN, f64::NAN));
    let mut notes = format!(
        "\nBatches of {batch} real reviews (instruction format, up to {len} tokens each), f32 weights, burn-flex on {cpu}. Full fine-tuning of this tied-embedding model trains the output projection as its own copy of the embedding (Kiln keeps a `[hidden, vocab]` copy for speed), hence more parameters than the model has. Against full fine-tuning: {}.\n",
        rows[..rows.len() - 1]
            .iter()
            .map(|(l, t, m)| format!(
                "{l} steps {:.2}x faster with {:.2}x the peak memory",
                full.0 / t,
                m / full.1
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    if args.smoke {
        notes.push_str("(smoke run: two tiny steps per case, the figures mean nothing)\n");
    }
    println!("{table}{notes}");
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("lora.md"), format!("{table}{notes}"))?;
    Ok(())
}
