//! `cargo xtask bench [models]`: every case in its own process (so peak memory is the case's),
//! each round running every case once and, with `--vs-torch`, the PyTorch reference right
//! after Kiln's case of the same model and mode. The measuring lives in `kiln-bench`.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use kiln_bench::{Case, Measurement, Mode, REFERENCE_MODELS, TorchMeasurement};
use kiln_core::DeviceSpec;

use crate::flags::BenchArgs;

/// Runs `MODEL:MODE:DEVICE` in this process and prints the measurement as one JSON line.
pub fn run_one(case: &str, args: &BenchArgs) -> anyhow::Result<()> {
    let parts: Vec<&str> = case.split(':').collect();
    let [model, mode, device] = parts[..] else {
        bail!("--case wants MODEL:MODE:DEVICE, got `{case}`");
    };
    let case = Case {
        model: model.into(),
        mode: mode.parse().map_err(anyhow::Error::msg)?,
        device: DeviceSpec::parse(device)?,
        batch: None,
        steps: args.steps,
        warmup: args.warmup,
    };
    let m = kiln_bench::run_case(&case)?;
    println!("{}", serde_json::to_string(&m)?);
    Ok(())
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn models(spec: &str) -> anyhow::Result<Vec<String>> {
    let reference: Vec<String> = REFERENCE_MODELS
        .iter()
        .map(|(a, _)| a.to_string())
        .collect();
    Ok(match spec {
        "reference" => reference,
        "all" => {
            let mut all = reference;
            for p in kiln_models::presets() {
                if !REFERENCE_MODELS.iter().any(|(_, preset)| *preset == p.name) {
                    all.push(p.name.to_string());
                }
            }
            all
        }
        other => {
            let names = list(other);
            for name in &names {
                kiln_models::preset(kiln_bench::preset_name(name))?;
            }
            names
        }
    })
}

fn last_json_line(stdout: &[u8]) -> Option<&str> {
    std::str::from_utf8(stdout)
        .ok()?
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
}

fn kiln_case(
    args: &BenchArgs,
    model: &str,
    mode: Mode,
    device: &str,
) -> anyhow::Result<Measurement> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(["bench", "--case", &format!("{model}:{mode}:{device}")])
        .args(["--steps", &args.steps.to_string()])
        .args(["--warmup", &args.warmup.to_string()]);
    if let Some(t) = args.threads {
        cmd.env("RAYON_NUM_THREADS", t.to_string());
    }
    let out = cmd.output()?;
    if !out.status.success() {
        bail!(
            "benchmark case {model}:{mode}:{device} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let line = last_json_line(&out.stdout).context("the case printed no JSON line")?;
    Ok(serde_json::from_str(line)?)
}

/// Runs the reference script under `python`, adding the process's peak memory.
fn torch_case(
    args: &BenchArgs,
    python: &Path,
    model: &str,
    mode: Mode,
) -> anyhow::Result<TorchMeasurement> {
    let threads = args
        .threads
        .unwrap_or_else(kiln_bench::worker_threads)
        .to_string();
    let wrapper = "import json, resource, runpy, sys\n\
        sys.argv = sys.argv[1:]\n\
        runpy.run_path(sys.argv[0], run_name='__main__')\n\
        print(json.dumps({'peak_rss_kb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))";
    let script = args.torch_script.display().to_string();
    let out = Command::new(python)
        .args(["-c", wrapper, &script, &threads, model, &mode.to_string()])
        .args([args.steps.to_string(), args.warmup.to_string()])
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "{} {script} failed: {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().filter(|l| l.starts_with('{'));
    let result = lines
        .next()
        .context("torch_bench.py printed no JSON line")?;
    let mut m: TorchMeasurement = serde_json::from_str(result)?;
    if let Some(rss) = lines.next() {
        let v: serde_json::Value = serde_json::from_str(rss)?;
        m.peak_rss_bytes = v["peak_rss_kb"].as_u64().map(|kb| kb * 1024);
    }
    Ok(m)
}

/// Whether `python` can import torch; the reason when it cannot.
fn torch_available(python: &Path, script: &Path) -> Result<String, String> {
    if !script.is_file() {
        return Err(format!(
            "the reference script {} is missing",
            script.display()
        ));
    }
    let out = Command::new(python)
        .args(["-c", "import torch; print(torch.__version__)"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{} cannot import torch (install it with `{} -m pip install torch`)",
            python.display(),
            python.display()
        ))
    }
}

pub fn run(mut args: BenchArgs) -> anyhow::Result<()> {
    if args.smoke {
        args.rounds = 1;
        args.steps = 2;
        args.warmup = 1;
    }
    let models = models(&args.models)?;
    let modes: Vec<Mode> = list(&args.modes)
        .iter()
        .map(|m| m.parse().map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<_>>()?;
    let devices: Vec<String> = match &args.devices {
        Some(d) => list(d),
        None => kiln_core::available_devices()
            .into_iter()
            .filter(|d| !d.starts_with("wgpu") && *d != "cpu")
            .map(String::from)
            .collect(),
    };
    for d in &devices {
        DeviceSpec::parse(d)?;
    }
    let torch = match &args.vs_torch {
        Some(python) => match torch_available(python, &args.torch_script) {
            Ok(version) => {
                println!("PyTorch {version} via {}", python.display());
                Some(python.clone())
            }
            Err(reason) => {
                println!("skipping the PyTorch comparison: {reason}");
                None
            }
        },
        None => None,
    };
    let threads = args.threads.unwrap_or_else(kiln_bench::worker_threads);
    println!(
        "{} round(s) of {} model(s) x {:?} x {:?}, {} warm-up + {} timed steps, {threads} thread(s)",
        args.rounds,
        models.len(),
        modes,
        devices,
        args.warmup,
        args.steps
    );
    let mut kiln = Vec::new();
    let mut torch_runs = Vec::new();
    for round in 1..=args.rounds {
        for model in &models {
            for &mode in &modes {
                let preset = kiln_models::preset(kiln_bench::preset_name(model))?;
                if mode == Mode::Train && preset.config.kind() == "bert" {
                    continue;
                }
                for device in &devices {
                    let m = kiln_case(&args, model, mode, device)?;
                    println!(
                        "  round {round}: {model:<24} {mode} {:<8} {:>10.1} samples/s",
                        m.backend, m.samples_per_s
                    );
                    kiln.push(m);
                }
                let is_reference = REFERENCE_MODELS.iter().any(|(a, _)| a == model);
                if let (Some(python), true) = (&torch, is_reference) {
                    let t = torch_case(&args, python, model, mode)?;
                    println!(
                        "  round {round}: {model:<24} {mode} {:<8} {:>10.1} samples/s",
                        t.backend, t.samples_per_s
                    );
                    torch_runs.push(t);
                }
            }
        }
    }
    let rows = kiln_bench::summarize(&kiln, &torch_runs);
    let table = kiln_bench::markdown(&rows);
    println!("\n{table}");
    std::fs::create_dir_all(&args.out)?;
    let json = serde_json::json!({
        "threads": threads,
        "rounds": args.rounds,
        "steps": args.steps,
        "warmup": args.warmup,
        "summary": rows,
        "kiln": kiln,
        "torch": torch_runs,
    });
    std::fs::write(
        args.out.join("models.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    std::fs::write(args.out.join("models.csv"), kiln_bench::csv(&rows))?;
    std::fs::write(args.out.join("models.md"), table)?;
    println!(
        "report: {}",
        args.out.join("models.{json,csv,md}").display()
    );
    Ok(())
}
