//! `cargo xtask bench llm`: SmolLM2's (or any Llama GGUF's) generation speed at 1 and 2
//! threads, each case in its own process, and with `--vs-torch PYTHON`
//! `../shared/bench/llm_bench.py` (Hugging Face transformers, float32, KV cache) alternately in
//! the same rounds; a Markdown table of medians and ratios with the CPU named.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use kiln_bench::llm::LlmMeasurement;
use kiln_transfer::chat::Message;
use serde_json::Value;

use crate::flags::BenchArgs;

const PLAIN: &str = "The capital of France is";
const QUESTION: &str = "What is the capital of France?";

fn model_path(args: &BenchArgs) -> anyhow::Result<std::path::PathBuf> {
    let data_dir = kiln_data::data_dir::resolve(args.data_dir.clone());
    Ok(kiln_transfer::llama::resolve_model(&args.llm, &data_dir)?)
}

/// `--case llm:THREADS`: both prompts in this process, one JSON line each.
pub fn run_case(args: &BenchArgs) -> anyhow::Result<()> {
    let path = model_path(args)?;
    let bundle = kiln_transfer::llama::load(&path, &burn::tensor::Device::flex())?;
    let chat = match &bundle.template {
        Some(t) => t.render(&[Message::new("user", QUESTION)], true)?,
        None => QUESTION.to_string(),
    };
    for (name, text) in [("plain", PLAIN), ("chat", chat.as_str())] {
        let ids = bundle.tokenizer.encode_plain(text)?;
        let m = kiln_bench::llm::measure(&bundle.model, name, &ids, args.new_tokens, args.reps)?;
        println!("{}", serde_json::to_string(&m)?);
    }
    Ok(())
}

fn kiln_round(args: &BenchArgs, threads: usize) -> anyhow::Result<Vec<LlmMeasurement>> {
    let out = Command::new(std::env::current_exe()?)
        .args(["bench", "llm", "--case", "llm"])
        .args(["--llm", &args.llm])
        .args(["--new-tokens", &args.new_tokens.to_string()])
        .args(["--reps", &args.reps.to_string()])
        .env("RAYON_NUM_THREADS", threads.to_string())
        .output()?;
    if !out.status.success() {
        bail!(
            "the Kiln LLM case failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}

fn torch_round(
    args: &BenchArgs,
    python: &Path,
    model: &Path,
    threads: usize,
) -> anyhow::Result<Value> {
    let wrapper = "import json, resource, runpy, sys\n\
        sys.argv = sys.argv[1:]\n\
        runpy.run_path(sys.argv[0], run_name='__main__')\n\
        print(json.dumps({'peak_rss_kb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))";
    let out = Command::new(python)
        .args(["-c", wrapper])
        .arg(&args.llm_script)
        .arg(threads.to_string())
        .arg(model)
        .arg(args.new_tokens.to_string())
        .arg(args.reps.to_string())
        .env("OMP_NUM_THREADS", threads.to_string())
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            args.llm_script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().filter(|l| l.starts_with('{'));
    let mut result: Value = serde_json::from_str(lines.next().context("no JSON from the script")?)?;
    if let Some(rss) = lines.next() {
        let rss: Value = serde_json::from_str(rss)?;
        result["peak_rss_kb"] = rss["peak_rss_kb"].clone();
    }
    Ok(result)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let model = model_path(&args)?;
    let threads: Vec<usize> = args
        .llm_threads
        .split(',')
        .map(|t| {
            t.trim()
                .parse()
                .context("--llm-threads wants numbers like 1,2")
        })
        .collect::<anyhow::Result<_>>()?;
    let rounds = args.rounds.max(1);
    let cpu = kiln_core::machine::cpu_description();
    println!(
        "LLM generation: {} | {rounds} round(s), {} new tokens, {} repetitions | {cpu}",
        model.display(),
        args.new_tokens,
        args.reps
    );
    let mut kiln: Vec<LlmMeasurement> = Vec::new();
    let mut torch: Vec<Value> = Vec::new();
    for round in 1..=rounds {
        for &t in &threads {
            for m in kiln_round(&args, t)? {
                println!(
                    "  round {round}: kiln {} threads {t}: {:.1} tokens/s ({:.1} decode-only), prefill {:.3}s",
                    m.prompt, m.tokens_per_s_median, m.decode_tokens_per_s_median, m.prefill_s
                );
                kiln.push(m);
            }
            if let Some(python) = &args.vs_torch {
                let r = torch_round(&args, python, &model, t)?;
                for p in ["plain", "chat"] {
                    println!(
                        "  round {round}: transformers {p} threads {t}: {} tokens/s, prefill {}s",
                        r[p]["tokens_per_s_median"], r[p]["prefill_s"]
                    );
                }
                torch.push(r);
            }
        }
    }
    let mut table = String::from(
        "| prompt | threads | Kiln tokens/s | transformers tokens/s | Kiln / transformers | Kiln decode steps only | Kiln prompt pass | transformers prompt pass | Kiln peak RSS | transformers peak RSS |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for p in ["plain", "chat"] {
        for &t in &threads {
            let ours: Vec<&LlmMeasurement> = kiln
                .iter()
                .filter(|m| m.prompt == p && m.threads == t)
                .collect();
            let k = median(ours.iter().map(|m| m.tokens_per_s_median).collect());
            let kp = median(ours.iter().map(|m| m.prefill_s).collect());
            let kd = median(ours.iter().map(|m| m.decode_tokens_per_s_median).collect());
            let n = ours.first().map_or(0, |m| m.prompt_tokens) as f64;
            let krss = ours
                .iter()
                .filter_map(|m| m.peak_rss_bytes)
                .max()
                .map_or("?".into(), |b| format!("{} MB", b / 1_000_000));
            let theirs: Vec<&Value> = torch.iter().filter(|r| r["threads"] == t).collect();
            let (h, hp, hrss) = if theirs.is_empty() {
                ("(not run)".to_string(), "".to_string(), "".to_string())
            } else {
                let h = median(
                    theirs
                        .iter()
                        .filter_map(|r| r[p]["tokens_per_s_median"].as_f64())
                        .collect(),
                );
                let hp = median(
                    theirs
                        .iter()
                        .filter_map(|r| r[p]["prefill_s"].as_f64())
                        .collect(),
                );
                let rss = theirs
                    .iter()
                    .filter_map(|r| r["peak_rss_kb"].as_u64())
                    .max()
                    .unwrap_or(0);
                (
                    format!("{h:.1}"),
                    format!("{hp:.3} s ({:.0} tokens/s)", n / hp),
                    format!("{} MB", rss / 1000),
                )
            };
            let ratio = h
                .parse::<f64>()
                .map_or(String::new(), |h| format!("**{:.2}x**", k / h));
            table.push_str(&format!(
                "| {p} | {t} | {k:.1} | {h} | {ratio} | {kd:.1} | {kp:.3} s ({:.0} tokens/s) | {hp} | {krss} | {hrss} |\n",
                n / kp
            ));
        }
    }
    println!(
        "\n{table}\n(greedy, {} new tokens whatever the model says, KV cache, float32 weights; tokens/s over the whole generate call, median of {rounds} rounds of the median of {} repetitions; {cpu})",
        args.new_tokens, args.reps
    );
    std::fs::create_dir_all(&args.out)?;
    let json = serde_json::json!({"cpu": cpu, "model": model, "rounds": rounds, "kiln": kiln, "transformers": torch});
    std::fs::write(
        args.out.join("llm.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    std::fs::write(args.out.join("llm.md"), &table)?;
    println!("report: {}", args.out.join("llm.{json,md}").display());
    Ok(())
}
