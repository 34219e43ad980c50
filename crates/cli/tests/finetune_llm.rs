//! LoRA fine-tuning of a chat LLM as a user runs it: `kiln finetune --from smollm2` on a
//! JSONL instruction file built from real reviews, `kiln export` to GGUF (checked against the
//! spec by llama.cpp's own `gguf` Python package from PyPI) and to a Hugging Face folder, and
//! the run, its adapter folder on the base and every export answering the same greedy text in
//! `kiln generate`, `kiln chat` and `kiln serve`.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

mod common;

const GGUF: &str = "gguf==0.19.0";

fn kiln() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
}

/// Runs `kiln ARGS` (stdin piped from `input`), asserting it succeeds; its stdout.
fn ok(args: &[&str], input: Option<&str>) -> String {
    let mut child = kiln()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    if let Some(text) = input {
        stdin.write_all(text.as_bytes()).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kiln {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `kiln ARGS`, asserting it fails; its stderr.
fn fails(args: &[&str]) -> String {
    let out = kiln().args(args).output().unwrap();
    assert!(!out.status.success(), "kiln {args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

/// An instruction file from the first real training reviews: the question, the label.
fn write_jsonl(path: &Path, n: usize) {
    let data = kiln_data::data_dir::resolve(None);
    let file = data.join("text/fine-foods-reviews/train.csv");
    let mut reader = csv::Reader::from_path(&file).unwrap();
    let mut out = String::new();
    for row in reader.records().take(n) {
        let row = row.unwrap();
        let review: String = row[1].chars().take(300).collect();
        let line = serde_json::json!({"messages": [
            {"role": "user", "content": format!("Is this review great or other? Answer with one word.\n\nReview: {review}")},
            {"role": "assistant", "content": &row[2]},
        ]});
        out.push_str(&line.to_string());
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

/// `POST /v1/chat/completions` to `addr` with `body`; the response's JSON body.
fn post(addr: &str, body: &str) -> serde_json::Value {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let (_, json) = response.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(json).unwrap()
}

#[test]
fn lora_fine_tuning_exports_and_serves_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("reviews.jsonl");
    write_jsonl(&jsonl, 30);
    let run = dir.path().join("run");
    let (jsonl, run_s) = (jsonl.to_str().unwrap(), run.to_str().unwrap());

    // Bad requests are refused before any training, naming what is wrong.
    let common = ["finetune", "--from", "smollm2", "--dataset", jsonl];
    let err = fails(&[&common[..], &["--lora-rank", "4", "--targets", "qkv"]].concat());
    assert!(err.contains("unknown LoRA target `qkv`"), "{err}");
    let err = fails(&[&common[..], &["--full", "--lora-rank", "4"]].concat());
    assert!(err.contains("full fine-tuning"), "{err}");

    let printed = ok(
        &[
            &common[..],
            &[
                "--lora-rank",
                "4",
                "--targets",
                "q_proj,v_proj",
                "--max-len",
                "128",
                "--epochs",
                "1",
                "--lr",
                "2e-3",
                "--out",
                run_s,
                "--quiet",
            ],
        ]
        .concat(),
        None,
    );
    // q and v of 30 blocks at rank 4: 30 · 4 · ((576 + 576) + (576 + 192)).
    assert!(
        printed.contains("230400 trainable of 134515008 parameters"),
        "{printed}"
    );
    let adapter: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("adapter/adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(adapter["r"], 4);
    assert_eq!(
        adapter["target_modules"],
        serde_json::json!(["q_proj", "v_proj"])
    );
    assert_eq!(adapter["peft_type"], "LORA");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    let (base, tuned) = (
        report["base_valid_loss"].as_f64().unwrap(),
        report["epochs"][0]["valid_loss"].as_f64().unwrap(),
    );
    assert!(
        tuned < base,
        "valid loss {tuned} against the base model's {base}"
    );

    // Exports: GGUF in f32, f16 and Q8_0, and a Hugging Face folder; the f16 one from the
    // base model with the run's adapter folder merged (`--adapter`).
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let adapter_dir = path("run/adapter");
    for (format, ty, out) in [
        ("gguf", "f32", path("m-f32.gguf")),
        ("gguf", "q8_0", path("m-q8.gguf")),
        ("safetensors", "f32", path("hf")),
    ] {
        ok(
            &[
                "export", run_s, "--format", format, "--type", ty, "--out", &out,
            ],
            None,
        );
    }
    ok(
        &[
            "export",
            "smollm2",
            "--adapter",
            &adapter_dir,
            "--type",
            "f16",
            "--out",
            &path("m-f16.gguf"),
        ],
        None,
    );
    let err = fails(&["export", run_s, "--type", "q4", "--out", &path("x.gguf")]);
    assert!(err.contains("weight type `q4`"), "{err}");

    // llama.cpp's gguf package reads the Q8_0 file, every tensor where the spec puts it, and
    // dequantizes it to the f32 export's values within Q8_0's rounding.
    let (python, python_path) = common::python_with(GGUF, "import gguf, numpy", "gguf");
    let mut check = Command::new(python);
    check.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gguf/check.py"));
    check.args([path("m-q8.gguf"), path("m-f32.gguf")]);
    if let Some(p) = python_path {
        check.env("PYTHONPATH", p);
    }
    let out = check.output().unwrap();
    assert!(
        out.status.success(),
        "the gguf package rejects the export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let facts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(facts["tensors"], 272);
    assert_eq!(facts["types"]["Q8_0"], 211);
    assert_eq!(facts["tokens"], 49152);
    let err = facts["max_relative_error_vs_reference"].as_f64().unwrap();
    assert!(err > 0.0 && err < 1.0 / 200.0, "{facts}");

    // The run (adapters merged on load), its f32 exports and its f16 GGUF give the same
    // greedy text; Q8_0's rounding lets a long greedy continuation drift (its logits are
    // compared in kiln-train's tests), here the first words agree.
    let prompt = "Is this review great or other? Answer with one word.\n\nReview: Delicious and fresh, I buy it every week.";
    let generate = |model: &str| {
        ok(
            &[
                "generate",
                "--model",
                model,
                "--greedy",
                "--max-tokens",
                "12",
                prompt,
            ],
            None,
        )
    };
    let from_run = generate(run_s);
    assert!(from_run.len() > prompt.len(), "{from_run}");
    assert_eq!(generate(&path("m-f32.gguf")), from_run);
    assert_eq!(generate(&path("hf")), from_run);
    assert_eq!(generate(&path("m-f16.gguf")), from_run);
    // The adapter folder alone loads onto the base its adapter_config.json names.
    assert_eq!(generate(&adapter_dir), from_run);
    let err = fails(&[
        "generate",
        "--model",
        "smollm2",
        "--adapter",
        &path("no-such-adapter"),
        prompt,
    ]);
    assert!(
        err.contains("no-such-adapter") && err.contains("adapter_config.json"),
        "{err}"
    );
    let first_words = |s: &str| -> String {
        s[prompt.len()..]
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        first_words(&generate(&path("m-q8.gguf"))),
        first_words(&from_run)
    );

    // Chat (the base with the adapter merged) and serve (the run folder) answer with the
    // fine-tuned model, the same.
    // (One line: `kiln chat` takes each line of its input as a message.)
    let question = "Is this review great or other? Answer with one word. Review: Stale and tasteless, never again.";
    let chat = ok(
        &[
            "chat",
            "--model",
            "smollm2",
            "--adapter",
            &adapter_dir,
            "--greedy",
            "--max-tokens",
            "8",
        ],
        Some(&format!("{question}\n")),
    );
    let mut server = kiln()
        .args(["serve", "--chat", &format!("tuned={run_s}"), "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let addr = url.trim_start_matches("http://");
    // Wait until the model is loaded.
    let ready = std::time::Instant::now();
    loop {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET /ready HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        if r.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(ready.elapsed().as_secs() < 120, "not ready: {r}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let body = serde_json::json!({"model": "tuned", "temperature": 0, "max_tokens": 8,
        "messages": [{"role": "user", "content": question}]});
    let answer = post(addr, &body.to_string());
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(
        answer["choices"][0]["message"]["content"].as_str().unwrap(),
        chat.trim_end_matches('\n'),
        "{answer}"
    );
}
