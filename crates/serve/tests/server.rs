//! The real server on a loopback port: every endpoint against the same models run in-process,
//! streaming, every error status, concurrent clients and batching, a client that disconnects,
//! shutdown with requests in flight, and a bounded random-request run with no 5xx.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::StreamExt;
use kiln_serve::{ModelKind, ModelSpec, ServeConfig, Server};
use serde_json::{Value, json};

fn data_dir() -> PathBuf {
    kiln_data::data_dir::resolve(None)
}

/// A digits MLP trained once for these tests (5 epochs, about 96% on the test split).
fn digits_run() -> &'static PathBuf {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep().join("digits");
        let mut config = kiln_train::TrainConfig::for_preset("mlp").unwrap();
        config.recipe.epochs = 5;
        let options = kiln_train::TrainOptions {
            quiet: true,
            ..Default::default()
        };
        kiln_train::train(&config, &dir, &options).unwrap();
        dir
    })
}

fn start(models: &[(ModelKind, &str)], tune: impl FnOnce(&mut ServeConfig)) -> Server {
    let mut config = ServeConfig {
        port: 0,
        models: models
            .iter()
            .map(|(kind, spec)| ModelSpec::parse(*kind, spec).unwrap())
            .collect(),
        ..ServeConfig::default()
    };
    tune(&mut config);
    let server = kiln_serve::start(config).unwrap();
    server.wait_ready(Duration::from_secs(600)).unwrap();
    server
}

/// SmolLM2 as `smollm2`, MiniLM as `minilm` and the digits run as `digits`.
fn start_all(tune: impl FnOnce(&mut ServeConfig)) -> Server {
    let run = digits_run().to_string_lossy().into_owned();
    start(
        &[
            (ModelKind::Chat, "smollm2=smollm2"),
            (ModelKind::Embedding, "minilm=minilm"),
            (ModelKind::Classifier, &format!("digits={run}")),
        ],
        tune,
    )
}

fn digits_png(pixels: &[f32]) -> Vec<u8> {
    let grey: Vec<u8> = pixels.iter().map(|p| (p * 255.0).round() as u8).collect();
    let image = image::GrayImage::from_raw(8, 8, grey).unwrap();
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// The body of a GET as text.
async fn get_text(client: &reqwest::Client, url: &str) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let r = client.post(url).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The text of a streamed completion: (pieces, finish reason, saw `[DONE]`).
async fn stream(client: &reqwest::Client, url: &str, body: &Value) -> (Vec<String>, String, bool) {
    let r = client.post(url).json(body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = r.text().await.unwrap();
    let mut pieces = Vec::new();
    let (mut finish, mut done) = (String::new(), false);
    for data in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        let choice = &v["choices"][0];
        let piece = choice["delta"]["content"]
            .as_str()
            .or(choice["text"].as_str())
            .unwrap_or("");
        if !piece.is_empty() {
            pieces.push(piece.to_string());
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            finish = f.to_string();
        }
    }
    (pieces, finish, done)
}

fn greedy(bundle: &kiln_transfer::llama::LlmBundle, prompt: &str, max: usize) -> String {
    let mut generator = kiln_transfer::chat::Generator::new(bundle, 2048);
    let options = kiln_transfer::chat::GenerateOptions {
        max_new_tokens: max,
        ..Default::default()
    };
    generator
        .generate(prompt, &options, &mut |_| {
            std::ops::ControlFlow::Continue(())
        })
        .unwrap()
        .text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_like_the_models_in_process() {
    let server = start_all(|c| {
        c.max_batch_delay_ms = 20;
        c.max_concurrent_requests = 256;
    });
    let url = server.url();
    let client = reqwest::Client::new();

    for route in ["/health", "/ready"] {
        let r = client.get(format!("{url}{route}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{route}");
    }
    let models: Value =
        serde_json::from_str(&get_text(&client, &format!("{url}/v1/models")).await).unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["smollm2", "minilm", "digits"]);
    let doc: Value =
        serde_json::from_str(&get_text(&client, &format!("{url}/openapi.json")).await).unwrap();
    for path in [
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/models",
        "/v1/classify",
        "/health",
        "/ready",
        "/metrics",
    ] {
        assert!(doc["paths"][path].is_object(), "OpenAPI lacks {path}");
    }
    assert!(doc["components"]["schemas"]["ChatCompletionRequest"].is_object());

    // Embeddings: the served vectors are the in-process model's, floats and base64 alike,
    // and concurrent requests share batches.
    let (embedder, _) = kiln_transfer::SentenceEmbedder::from_dir(
        &kiln_transfer::embed::minilm_dir(&data_dir()),
        &burn::tensor::Device::flex(),
    )
    .unwrap();
    let texts = [
        "A man is eating food.",
        "A cheetah chases its prey.",
        "Paris is in France.",
    ];
    let local = embedder.embed_vectors(&texts).unwrap();
    let (status, v) = post(
        &client,
        &format!("{url}/v1/embeddings"),
        &json!({"model": "minilm", "input": texts}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (_, b64) = post(
        &client,
        &format!("{url}/v1/embeddings"),
        &json!({"model": "minilm", "input": texts, "encoding_format": "base64"}),
    )
    .await;
    for (i, expect) in local.iter().enumerate() {
        let got: Vec<f32> = serde_json::from_value(v["data"][i]["embedding"].clone()).unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64["data"][i]["embedding"].as_str().unwrap())
            .unwrap();
        let decoded: Vec<f32> = bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(got, decoded);
        let worst = got
            .iter()
            .zip(expect)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-5, "text {i}: {worst}");
    }
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() >= 15);
    let together = futures_util::future::join_all((0..8).map(|i| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            post(
                &client,
                &format!("{url}/v1/embeddings"),
                &json!({"model": "minilm", "input": format!("sentence number {i}")}),
            )
            .await
        }
    }))
    .await;
    assert!(together.iter().all(|(s, _)| *s == 200));

    // Classification: JSON with base64 and raw bytes give the in-process classifier's answer;
    // the served model is accurate on real test digits.
    let classifier =
        kiln_train::ImageClassifier::load(digits_run(), &burn::tensor::Device::flex()).unwrap();
    let data = kiln_data::load_split("digits", kiln_core::Seed(42)).unwrap();
    let mut correct = 0;
    let n = 100;
    let answers = futures_util::future::join_all((0..n).map(|i| {
        let (client, url) = (client.clone(), url.clone());
        let png = digits_png(data.test.image(i));
        async move {
            let body = json!({"model": "digits", "image": base64::engine::general_purpose::STANDARD.encode(&png), "top_k": 3});
            (png, post(&client, &format!("{url}/v1/classify"), &body).await)
        }
    }))
    .await;
    for (i, (png, (status, v))) in answers.into_iter().enumerate() {
        assert_eq!(status, 200, "{v}");
        let top = &v["predictions"];
        assert_eq!(top.as_array().unwrap().len(), 3);
        let local = classifier
            .top_k(&[classifier.decode(&png, "png").unwrap()], 3)
            .unwrap();
        assert_eq!(top[0]["index"].as_u64().unwrap() as usize, local[0][0].0);
        assert!((top[0]["probability"].as_f64().unwrap() - local[0][0].1 as f64).abs() < 1e-5);
        assert_eq!(top[0]["label"], data.test.classes()[local[0][0].0]);
        if local[0][0].0 == data.test.labels()[i] {
            correct += 1;
        }
    }
    assert!(
        correct >= 90,
        "{correct}/{n} test digits right through the server"
    );
    let png = digits_png(data.test.image(0));
    let raw = client
        .post(format!("{url}/v1/classify?model=digits&top_k=2"))
        .header("content-type", "image/png")
        .body(png)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 200);
    let raw: Value = raw.json().await.unwrap();
    assert_eq!(raw["predictions"].as_array().unwrap().len(), 2);

    // Chat and completions: greedy answers equal the in-process generator's; streamed pieces
    // add up to the same text and end with [DONE].
    let bundle = kiln_transfer::llama::load(
        &kiln_transfer::llama::resolve_model("smollm2", &data_dir()).unwrap(),
        &burn::tensor::Device::flex(),
    )
    .unwrap();
    let messages = [kiln_transfer::chat::Message::new(
        "user",
        "What is the capital of France?",
    )];
    let prompt = kiln_transfer::chat::Generator::new(&bundle, 2048)
        .chat_prompt(&messages)
        .unwrap();
    let expected = greedy(&bundle, &prompt, 16);
    let chat = json!({"model": "smollm2", "messages": [{"role": "user", "content": "What is the capital of France?"}], "temperature": 0, "max_tokens": 16});
    let (status, v) = post(&client, &format!("{url}/v1/chat/completions"), &chat).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], expected);
    assert_eq!(v["object"], "chat.completion");
    let mut streamed = chat.clone();
    streamed["stream"] = json!(true);
    let (pieces, finish, done) =
        stream(&client, &format!("{url}/v1/chat/completions"), &streamed).await;
    assert!(done && pieces.len() > 1);
    assert_eq!(pieces.concat(), expected);
    assert_eq!(finish, v["choices"][0]["finish_reason"].as_str().unwrap());
    let text = "Once upon a time";
    let expected = greedy(&bundle, text, 10);
    let (status, v) = post(
        &client,
        &format!("{url}/v1/completions"),
        &json!({"model": "smollm2", "prompt": text, "temperature": 0, "max_tokens": 10}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["text"], expected);
    assert_eq!(v["usage"]["completion_tokens"], 10);
    let (pieces, finish, done) = stream(&client, &format!("{url}/v1/completions"), &json!({"model": "smollm2", "prompt": text, "temperature": 0, "max_tokens": 10, "stream": true})).await;
    assert!(done);
    assert_eq!((pieces.concat(), finish.as_str()), (expected, "length"));
    // Same seed, same sampled text.
    let sampled =
        json!({"model": "smollm2", "prompt": text, "temperature": 0.9, "seed": 7, "max_tokens": 8});
    let a = post(&client, &format!("{url}/v1/completions"), &sampled)
        .await
        .1;
    let b = post(&client, &format!("{url}/v1/completions"), &sampled)
        .await
        .1;
    assert_eq!(a["choices"][0]["text"], b["choices"][0]["text"]);

    // Four concurrent streams: every one has its first piece before any of them ends (no
    // request waits for another's whole generation).
    let t0 = Instant::now();
    let runs = futures_util::future::join_all((0..4).map(|i| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let body = json!({"model": "smollm2", "prompt": format!("Story {i}:"), "temperature": 0, "max_tokens": 24, "stream": true});
            let r = client.post(format!("{url}/v1/completions")).json(&body).send().await.unwrap();
            let mut chunks = r.bytes_stream();
            let mut first = None;
            let mut all = String::new();
            while let Some(c) = chunks.next().await {
                let c = String::from_utf8_lossy(&c.unwrap()).into_owned();
                if first.is_none() && c.contains("\"text\":\"") && !c.contains("\"text\":\"\"") {
                    first = Some(t0.elapsed());
                }
                all.push_str(&c);
            }
            (first.unwrap(), t0.elapsed(), all.contains("[DONE]"))
        }
    }))
    .await;
    let first_end = runs.iter().map(|r| r.1).min().unwrap();
    for (first, _, done) in &runs {
        assert!(*done);
        assert!(
            *first < first_end,
            "a stream started only after another ended: {runs:?}"
        );
    }

    // A client that disconnects mid-stream: its generation stops.
    let before = metric(&client, &url, "kiln_generated_tokens_total").await;
    {
        let body = json!({"model": "smollm2", "prompt": "A long story:", "temperature": 0, "max_tokens": 1000, "stream": true});
        let r = client
            .post(format!("{url}/v1/completions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let mut chunks = r.bytes_stream();
        for _ in 0..3 {
            chunks.next().await.unwrap().unwrap();
        }
    }
    let start = Instant::now();
    while metric(&client, &url, "kiln_active_generations").await > 0.0 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the generation went on"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let used = metric(&client, &url, "kiln_generated_tokens_total").await - before;
    assert!(
        used < 200.0,
        "{used} tokens generated for a client that left after 3 chunks"
    );

    // Metrics counted all of it.
    let text = get_text(&client, &format!("{url}/metrics")).await;
    assert!(
        text.contains("kiln_requests_total{route=\"/v1/classify\",status=\"200\"} 101"),
        "{text}"
    );
    assert!(text.contains("kiln_request_duration_seconds_bucket{route=\"/v1/embeddings\""));
    assert!(text.contains("kiln_batch_size_count{model=\"digits\"}"));
    let batches = metric(&client, &url, "kiln_batch_size_count{model=\"digits\"}").await;
    assert!(
        batches < 101.0,
        "101 concurrent images ran in {batches} batches: no batching"
    );
    assert_eq!(metric(&client, &url, "kiln_queue_depth").await, 0.0);

    // Shutdown with a stream in flight: it finishes, then the port is closed.
    let body = json!({"model": "smollm2", "prompt": "Hello", "temperature": 0, "max_tokens": 20, "stream": true});
    let r = client
        .post(format!("{url}/v1/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let stopping = tokio::task::spawn_blocking(move || server.shutdown());
    let rest = r.text().await.unwrap();
    assert!(rest.contains("[DONE]"), "{rest}");
    stopping.await.unwrap().unwrap();
    assert!(client.get(format!("{url}/health")).send().await.is_err());
}

async fn metric(client: &reqwest::Client, url: &str, name: &str) -> f64 {
    let text = get_text(client, &format!("{url}/metrics")).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_right_status_and_name_the_field() {
    let run = digits_run().to_string_lossy().into_owned();
    let server = start(
        &[
            (ModelKind::Chat, "smollm2=smollm2"),
            (ModelKind::Classifier, &format!("digits={run}")),
        ],
        |c| {
            c.max_body_bytes = 4096;
            c.max_concurrent_requests = 2;
            c.generation_workers = 1;
            c.context = 512;
            c.request_timeout_secs = 2.0;
        },
    );
    let url = server.url();
    let client = reqwest::Client::new();
    let chat = format!("{url}/v1/chat/completions");
    let cases: Vec<(&str, String, u16, Option<&str>)> = vec![
        ("/v1/chat/completions", "{\"model\": ".into(), 422, None),
        ("/v1/chat/completions", r#"{"messages": []}"#.into(), 422, None),
        ("/v1/chat/completions", r#"{"model": "smollm2", "messages": [{"role": "user", "content": 3}]}"#.into(), 422, Some("messages[0].content")),
        ("/v1/chat/completions", r#"{"model": "smollm2", "messages": [{"role": "robot", "content": "x"}]}"#.into(), 422, Some("messages[0].role")),
        ("/v1/chat/completions", r#"{"model": "smollm2", "messages": []}"#.into(), 422, Some("messages")),
        ("/v1/chat/completions", r#"{"model": "smollm2", "messages": [{"role": "user", "content": "x"}], "temperature": -1}"#.into(), 422, Some("temperature")),
        ("/v1/chat/completions", r#"{"model": "smollm2", "messages": [{"role": "user", "content": "x"}], "n": 3}"#.into(), 422, Some("n")),
        ("/v1/chat/completions", r#"{"model": "smollm2", "messages": [{"role": "user", "content": "x"}], "max_tokens": "many"}"#.into(), 422, Some("max_tokens")),
        ("/v1/chat/completions", r#"{"model": "gpt-5", "messages": [{"role": "user", "content": "x"}]}"#.into(), 404, Some("model")),
        ("/v1/completions", r#"{"model": "smollm2", "prompt": ["a", "b"]}"#.into(), 422, Some("prompt")),
        ("/v1/completions", r#"{"model": "digits", "prompt": "a"}"#.into(), 404, Some("model")),
        ("/v1/embeddings", r#"{"model": "smollm2", "input": "a"}"#.into(), 404, Some("model")),
        ("/v1/classify", r#"{"model": "digits", "image": "%%%"}"#.into(), 422, Some("image")),
        ("/v1/classify", r#"{"model": "digits", "image": "aGVsbG8="}"#.into(), 422, Some("image")),
        ("/v1/classify", r#"{"model": "digits", "image": "aGVsbG8=", "top_k": 0}"#.into(), 422, Some("top_k")),
        ("/v1/nothing", "{}".into(), 404, None),
        ("/v1/embeddings", format!(r#"{{"model": "x", "input": "{}"}}"#, "a".repeat(5000)), 413, None),
    ];
    for (route, body, status, param) in &cases {
        let r = client
            .post(format!("{url}{route}"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let got = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(got, *status, "{route} {body:.80}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
        if let Some(p) = param {
            assert_eq!(v["error"]["param"], *p, "{route} {body:.80}: {v}");
        }
    }
    let r = client
        .get(format!("{url}/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);

    // A prompt longer than the context (512 tokens here) is refused before any generation.
    let long = "word ".repeat(600);
    let (status, v) = post(
        &client,
        &format!("{url}/v1/completions"),
        &json!({"model": "smollm2", "prompt": long, "max_tokens": 1}),
    )
    .await;
    assert_eq!(
        (status, v["error"]["param"].as_str()),
        (422, Some("prompt")),
        "{v}"
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("512"),
        "{v}"
    );

    // Past the timeout (2 s; the ~480 tokens asked for would take longer): 504.
    let (status, v) = post(&client, &chat, &json!({"model": "smollm2", "messages": [{"role": "user", "content": "Write a long essay."}], "temperature": 0, "max_tokens": 2000})).await;
    assert_eq!(status, 504, "{v}");
    assert_eq!(v["error"]["type"], "timeout_error");

    // Over the concurrency limit: 429 (two slow streams hold both slots).
    let hold = json!({"model": "smollm2", "prompt": "Count:", "temperature": 0, "max_tokens": 60, "stream": true});
    let a = client
        .post(format!("{url}/v1/completions"))
        .json(&hold)
        .send()
        .await
        .unwrap();
    let b = tokio::spawn(
        client
            .post(format!("{url}/v1/completions"))
            .json(&hold)
            .send(),
    );
    let mut tries = 0;
    let (status, v) = loop {
        // The second stream is queued behind the one worker but holds its slot.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = post(
            &client,
            &format!("{url}/v1/classify"),
            &json!({"model": "digits", "image": "aGVsbG8="}),
        )
        .await;
        tries += 1;
        if r.0 == 429 || tries == 30 {
            break r;
        }
    };
    assert_eq!(status, 429);
    assert_eq!(v["error"]["type"], "rate_limit_error");
    drop(a);
    drop(b);
    // ...and the server serves on after all of it.
    let start = Instant::now();
    loop {
        let r = client.get(format!("{url}/v1/models")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let (s, _) = post(&client, &format!("{url}/v1/classify"), &json!({"model": "digits", "image": base64::engine::general_purpose::STANDARD.encode(digits_png(&[0.5; 64]))})).await;
        if s == 200 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "still {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::task::spawn_blocking(move || server.shutdown())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruned_and_quantized_run_folders_are_served_like_they_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    let options = kiln_train::TrainOptions {
        quiet: true,
        ..Default::default()
    };
    let pruned = dir.path().join("pruned");
    let quantized = dir.path().join("int8");
    kiln_compress::prune_run(
        digits_run(),
        &pruned,
        &kiln_compress::PruneConfig::one_shot(0.5, kiln_compress::Scope::Global),
        &options,
    )
    .unwrap();
    kiln_compress::quantize_run(
        digits_run(),
        &quantized,
        &kiln_compress::QuantizeConfig::default(),
        &options,
    )
    .unwrap();
    let specs: Vec<String> = [("pruned", &pruned), ("int8", &quantized)]
        .iter()
        .map(|(name, path)| format!("{name}={}", path.display()))
        .collect();
    let server = start(
        &[
            (ModelKind::Classifier, &specs[0]),
            (ModelKind::Classifier, &specs[1]),
        ],
        |_| {},
    );
    let (url, client) = (server.url(), reqwest::Client::new());
    let data = kiln_data::load_split("digits", kiln_core::Seed(42)).unwrap();
    for (name, path) in [("pruned", &pruned), ("int8", &quantized)] {
        let local = kiln_train::ImageClassifier::load(path, &burn::tensor::Device::flex()).unwrap();
        let mut correct = 0;
        for i in 0..60 {
            let png = digits_png(data.test.image(i));
            let image = base64::engine::general_purpose::STANDARD.encode(&png);
            let (status, v) = post(
                &client,
                &format!("{url}/v1/classify"),
                &json!({"model": name, "image": image, "top_k": 1}),
            )
            .await;
            assert_eq!(status, 200, "{name}: {v}");
            let expected = local
                .top_k(&[local.decode(&png, "png").unwrap()], 1)
                .unwrap()[0][0];
            assert_eq!(
                v["predictions"][0]["index"].as_u64().unwrap() as usize,
                expected.0,
                "{name}"
            );
            assert!(
                (v["predictions"][0]["probability"].as_f64().unwrap() - expected.1 as f64).abs()
                    < 1e-6
            );
            correct += usize::from(expected.0 == data.test.labels()[i]);
        }
        assert!(
            correct >= 51,
            "{name}: {correct}/60 test digits right through the server"
        );
    }
    tokio::task::spawn_blocking(move || server.shutdown())
        .await
        .unwrap()
        .unwrap();
}

/// A small seeded generator (xorshift) for the random-request run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn random_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 2 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(rng.next() as i64),
        3 => json!([-1e308, -1.0, 0.0, 0.5, 1.0, 2.0, 1e308][rng.below(7)]),
        4 => json!(
            [
                "",
                "user",
                "smollm2",
                "minilm",
                "digits",
                "\u{0}",
                "é漢",
                "a".repeat(300).as_str()
            ][rng.below(8)]
        ),
        5 => json!(rng.below(5000)),
        6 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let keys = [
                "model",
                "messages",
                "prompt",
                "input",
                "image",
                "role",
                "content",
                "temperature",
                "top_p",
                "max_tokens",
                "stop",
                "seed",
                "n",
                "stream",
                "top_k",
                "encoding_format",
                "dimensions",
            ];
            Value::Object(
                (0..rng.below(5))
                    .map(|_| {
                        (
                            keys[rng.below(keys.len())].to_string(),
                            random_value(rng, depth + 1),
                        )
                    })
                    .collect(),
            )
        }
    }
}

/// Mutates a valid request: a field replaced, removed or added, or the text cut or garbled.
fn mutate(rng: &mut Rng, valid: &Value) -> Vec<u8> {
    let mut v = valid.clone();
    let obj = v.as_object_mut().unwrap();
    let keys: Vec<String> = obj.keys().cloned().collect();
    match rng.below(6) {
        0 => {
            let k = &keys[rng.below(keys.len())];
            obj.insert(k.clone(), random_value(rng, 0));
        }
        1 => {
            obj.remove(&keys[rng.below(keys.len())]);
        }
        2 => {
            let extra = random_value(rng, 0);
            if let Value::Object(m) = extra {
                obj.extend(m);
            }
        }
        3 => {
            let text = v.to_string();
            return text.as_bytes()[..rng.below(text.len())].to_vec();
        }
        4 => {
            let mut bytes = v.to_string().into_bytes();
            for _ in 0..3 {
                let i = rng.below(bytes.len());
                bytes[i] = rng.next() as u8;
            }
            return bytes;
        }
        _ => return serde_json::to_vec(&random_value(rng, 0)).unwrap(),
    }
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_random_requests_get_no_5xx() {
    let server = start_all(|c| {
        c.default_max_tokens = 2;
        c.context = 64;
        c.max_body_bytes = 64 << 10;
    });
    let url = server.url();
    let client = reqwest::Client::new();
    let png = base64::engine::general_purpose::STANDARD.encode(digits_png(&[0.25; 64]));
    let valid = [
        (
            "/v1/chat/completions",
            json!({"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "temperature": 0.5, "stream": false}),
        ),
        (
            "/v1/completions",
            json!({"model": "smollm2", "prompt": "Hi", "max_tokens": 2, "stop": ["\n"], "seed": 1}),
        ),
        (
            "/v1/embeddings",
            json!({"model": "minilm", "input": ["a", "b"], "encoding_format": "float"}),
        ),
        (
            "/v1/classify",
            json!({"model": "digits", "image": png, "top_k": 2}),
        ),
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let start = Instant::now();
    let n = 2000;
    for i in 0..n {
        let (route, body) = &valid[i % valid.len()];
        let bytes = mutate(&mut rng, body);
        let r = client
            .post(format!("{url}{route}"))
            .header("content-type", "application/json")
            .body(bytes.clone())
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "request {i} to {route} failed: {e}\n{}",
                    String::from_utf8_lossy(&bytes)
                )
            });
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert!(
            status < 500,
            "request {i}: {route} {} -> {status} {text}",
            String::from_utf8_lossy(&bytes)
        );
        *statuses.entry(status).or_default() += 1;
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "the run is bounded in time"
        );
    }
    eprintln!(
        "{n} random requests: statuses {statuses:?} in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    assert!(
        statuses.get(&200).is_some_and(|&c| c > 50) && statuses.get(&422).is_some_and(|&c| c > 500),
        "{statuses:?}"
    );
    let r = client.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    tokio::task::spawn_blocking(move || server.shutdown())
        .await
        .unwrap()
        .unwrap();
}
