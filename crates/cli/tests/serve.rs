//! `kiln serve` as a user runs it: a real process on a loopback port, called by the official
//! `openai` Python package (installed from PyPI into a venv under the target directory on
//! first use), whose answers must be what `kiln generate`, `kiln chat` and `kiln embed` give
//! for the same inputs; then SIGTERM with a stream in flight, which must finish.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

const OPENAI: &str = "openai==3.51.0";

fn kiln() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
}

/// A Python with the pinned `openai` package (see [`common::python_with`]).
fn python() -> (PathBuf, Option<PathBuf>) {
    common::python_with(
        OPENAI,
        "import openai; assert openai.__version__ == '3.51.0'",
        "openai",
    )
}

/// `kiln serve ARGS --port 0`, and the URL it printed.
fn serve(args: &[&str]) -> (Child, String) {
    let mut child = kiln()
        .arg("serve")
        .args(args)
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("kiln serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("kiln serve printed `{line}`"))
        .to_string();
    (child, url)
}

fn stdout(cmd: &mut Command, stdin: Option<&str>) -> String {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_openai_client_gets_what_kiln_generate_chat_and_embed_give() {
    let (python, python_path) = python();
    let (mut server, url) = serve(&["--chat", "smollm2=smollm2", "--embedding", "minilm=minilm"]);
    let prompt = "The capital of France is";
    let question = "What is the capital of France?";
    let texts = [
        "A man is eating food.",
        "A cheetah chases its prey across a field.",
    ];
    let mut client = Command::new(&python);
    if let Some(dir) = &python_path {
        client.env("PYTHONPATH", dir);
    }
    let out = client
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/openai/client.py"
        ))
        .args([&url, "smollm2", "minilm", prompt, question, "12"])
        .arg(serde_json::to_string(&texts).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the openai client failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = |k: &str| {
        got[k]
            .as_str()
            .unwrap_or_else(|| panic!("{k}: {got}"))
            .to_string()
    };

    // Chat: `kiln chat` answers the same question with the same greedy reply.
    let chat = stdout(
        kiln().args([
            "chat",
            "--model",
            "smollm2",
            "--greedy",
            "--max-tokens",
            "12",
        ]),
        Some(&format!("{question}\n")),
    );
    assert_eq!(text("chat"), chat.trim_end_matches('\n'));
    assert!(!text("chat").is_empty());
    assert_eq!(text("stream"), text("chat"));
    assert!(
        got["stream_chunks"].as_u64().unwrap() >= 2,
        "streamed in pieces: {got}"
    );
    assert_eq!(got["stream_finish"], got["chat_finish"]);
    let usage = got["chat_usage"].as_array().unwrap();
    assert!(usage[0].as_u64().unwrap() > 10 && usage[1].as_u64().unwrap() <= 12);

    // Text completion: `kiln generate` prints the prompt and the same continuation.
    let generated = stdout(
        kiln().args([
            "generate",
            "--model",
            "smollm2",
            "--greedy",
            "--max-tokens",
            "12",
            prompt,
        ]),
        None,
    );
    assert_eq!(
        format!("{prompt}{}", text("completion")),
        generated.trim_end_matches('\n')
    );

    // Embeddings: `kiln embed` gives the same vectors (the client's base64 and floats).
    let embedded = stdout(kiln().args(["embed"]).args(texts), None);
    let cli: Vec<Vec<f64>> = embedded
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            serde_json::from_value(v["embedding"].clone()).unwrap()
        })
        .collect();
    assert_eq!(cli.len(), 2);
    for key in ["embeddings", "embeddings_float"] {
        let served: Vec<Vec<f64>> = serde_json::from_value(got[key].clone()).unwrap();
        assert_eq!(served.len(), 2);
        for (a, b) in served.iter().zip(&cli) {
            assert_eq!(a.len(), 384);
            let worst = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            assert!(worst < 1e-6, "{key}: differs from kiln embed by {worst}");
        }
    }
    assert_eq!(got["models"], serde_json::json!(["minilm", "smollm2"]));
    assert_eq!(got["missing_model_status"], 404);
    assert_eq!(got["invalid_status"], 422);

    // SIGTERM with a stream in flight: the stream finishes, then the process exits cleanly.
    let addr = url.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    let body = r#"{"model":"smollm2","messages":[{"role":"user","content":"Tell me about Paris."}],"temperature":0,"max_tokens":40,"stream":true}"#;
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut seen = String::new();
    while !seen.contains("data: ") {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "the stream ended early: {seen}"
        );
        seen.push_str(&line);
    }
    let terminated = unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    assert_eq!(terminated, 0);
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert!(
        rest.contains("data: [DONE]"),
        "the stream in flight was cut: {rest}"
    );
    assert!(rest.contains("\"finish_reason\":\""), "{rest}");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = server.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "kiln serve did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "kiln serve exited with {status}");
    assert!(std::net::TcpStream::connect(&addr).is_err());
}
