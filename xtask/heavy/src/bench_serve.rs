//! `cargo xtask bench serve`: `kiln serve` under load on loopback, beside the same models run
//! in-process in this session. The server runs in a child process (its peak RSS is its own),
//! once with batching (max batch 32, 5 ms delay) and once without (max batch 1); the load
//! generator is `kiln_bench::serve`. Embeddings (all-MiniLM-L6-v2, one short text per
//! request), images (a digits MLP trained here in a second: the figure is the serving path,
//! decode and HTTP, more than the model) and chat (SmolLM2 greedy streams, 1, 4 and 16 at
//! once). A Markdown table with the CPU named goes to stdout and `OUT/serve.md`.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kiln_bench::serve::{LoadStats, chat_streams, post_load};
use serde_json::json;

use crate::flags::BenchArgs;

const LIMIT: Duration = Duration::from_secs(1800);

/// `--case serve:BATCH:RUN`: the server, printing its URL.
pub fn run_case(case: &str, args: &BenchArgs) -> anyhow::Result<()> {
    let mut parts = case.splitn(3, ':');
    let (_, batch, run) = (parts.next(), parts.next(), parts.next());
    let batch: usize = batch.context("serve case: batch")?.parse()?;
    let run = run.context("serve case: run folder")?;
    let mut models = vec![
        kiln_serve::ModelSpec::parse(kiln_serve::ModelKind::Embedding, "minilm=minilm")?,
        kiln_serve::ModelSpec::parse(kiln_serve::ModelKind::Classifier, &format!("digits={run}"))?,
    ];
    if batch > 1 {
        models.push(kiln_serve::ModelSpec::parse(
            kiln_serve::ModelKind::Chat,
            &format!("chat={}", args.llm),
        )?);
    }
    let config = kiln_serve::ServeConfig {
        port: 0,
        models,
        max_batch_size: batch,
        max_batch_delay_ms: if batch > 1 { 5 } else { 0 },
        generation_workers: 16,
        max_concurrent_requests: 256,
        data_dir: args.data_dir.clone(),
        ..kiln_serve::ServeConfig::default()
    };
    kiln_serve::run(config, |addr| println!("listening on http://{addr}"))?;
    Ok(())
}

struct ServerChild {
    child: Child,
    url: String,
}

impl ServerChild {
    fn start(batch: usize, run: &std::path::Path, args: &BenchArgs) -> anyhow::Result<Self> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["bench", "serve", "--case"])
            .arg(format!("serve:{batch}:{}", run.display()))
            .args(["--llm", &args.llm])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(d) = &args.data_dir {
            cmd.arg("--data-dir").arg(d);
        }
        let mut child = cmd.spawn()?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().context("server stdout")?)
            .read_line(&mut line)?;
        let Some(url) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            bail!("the server printed `{}`", line.trim());
        };
        Ok(Self {
            url: url.to_string(),
            child,
        })
    }

    /// Peak resident memory (VmHWM) in MiB.
    fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb / 1024.0)
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn digits_png(pixels: &[f32]) -> Vec<u8> {
    let grey: Vec<u8> = pixels.iter().map(|p| (p * 255.0).round() as u8).collect();
    let image = image::GrayImage::from_raw(8, 8, grey).expect("8x8 digits");
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("PNG encodes");
    out.into_inner()
}

fn per_second(n: usize, t: Instant) -> f64 {
    n as f64 / t.elapsed().as_secs_f64()
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    use base64::Engine;
    let smoke = args.smoke;
    let n = if smoke { 16 } else { 512 };
    let concurrency = if smoke { 4 } else { 32 };
    let max_tokens = if smoke { 4 } else { 48 };
    let streams: &[usize] = if smoke { &[1, 2] } else { &[1, 4, 16] };
    let dir = tempfile_dir()?;
    let run = dir.join("digits");
    let mut config = kiln_train::TrainConfig::for_preset("mlp")?;
    config.recipe.epochs = 5;
    let options = kiln_train::TrainOptions {
        quiet: true,
        data_dir: args.data_dir.clone(),
        ..Default::default()
    };
    kiln_train::train(&config, &run, &options)?;
    let data_dir = kiln_data::data_dir::resolve(args.data_dir.clone());
    let digits = kiln_data::load_split_from("digits", kiln_core::Seed(42), &data_dir)?;
    let pngs: Vec<Vec<u8>> = (0..n)
        .map(|i| digits_png(digits.test.image(i % digits.test.len())))
        .collect();
    let texts: Vec<String> = (0..n)
        .map(|i| {
            format!("Request {i}: the quick brown fox jumps over the lazy dog near the river bank.")
        })
        .collect();

    // In-process: one input at a time, and batches of 32.
    let device = burn::tensor::Device::flex();
    let (embedder, _) = kiln_transfer::SentenceEmbedder::from_dir(
        &kiln_transfer::embed::minilm_dir(&data_dir),
        &device,
    )?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let t = Instant::now();
    for text in &refs {
        embedder.embed_vectors(&[text])?;
    }
    let embed_single = per_second(n, t);
    let t = Instant::now();
    for chunk in refs.chunks(32) {
        embedder.embed_vectors(chunk)?;
    }
    let embed_batched = per_second(n, t);
    let classifier = kiln_train::ImageClassifier::load(&run, &device)?;
    let t = Instant::now();
    for png in &pngs {
        classifier.top_k(&[classifier.decode(png, "png")?], 5)?;
    }
    let image_single = per_second(n, t);
    let t = Instant::now();
    for chunk in pngs.chunks(32) {
        let pixels = chunk
            .iter()
            .map(|p| classifier.decode(p, "png"))
            .collect::<Result<Vec<_>, _>>()?;
        classifier.top_k(&pixels, 5)?;
    }
    let image_batched = per_second(n, t);
    drop(embedder);
    drop(classifier);
    let bundle = kiln_transfer::llama::load(
        &kiln_transfer::llama::resolve_model(&args.llm, &data_dir)?,
        &device,
    )?;
    let mut generator = kiln_transfer::chat::Generator::new(&bundle, 2048);
    let prompt = generator.chat_prompt(&[kiln_transfer::chat::Message::new(
        "user",
        "Write a short story about a lighthouse keeper, number 0.",
    )])?;
    let t = Instant::now();
    let g = generator.generate(
        &prompt,
        &kiln_transfer::chat::GenerateOptions {
            max_new_tokens: max_tokens,
            ..Default::default()
        },
        &mut |_| std::ops::ControlFlow::Continue(()),
    )?;
    let chat_in_process = g.tokens.len() as f64 / t.elapsed().as_secs_f64();
    drop(generator);
    drop(bundle);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let embed_bodies = || -> Vec<serde_json::Value> {
        texts
            .iter()
            .map(|t| json!({"model": "minilm", "input": t}))
            .collect()
    };
    let image_bodies = || -> Vec<serde_json::Value> {
        pngs.iter()
            .map(|p| json!({"model": "digits", "image": base64::engine::general_purpose::STANDARD.encode(p), "top_k": 5}))
            .collect()
    };
    let mut served: Vec<(String, LoadStats)> = Vec::new();
    let mut rss = Vec::new();
    for batch in [1usize, 32] {
        let server = ServerChild::start(batch, &run, &args)?;
        let url = server.url.clone();
        let label = if batch > 1 {
            "batched (≤32, 5 ms)"
        } else {
            "unbatched"
        };
        let (e, i) = runtime
            .block_on(async {
                let e = post_load(
                    &format!("{url}/v1/embeddings"),
                    embed_bodies(),
                    concurrency,
                    n,
                    LIMIT,
                )
                .await?;
                let i = post_load(
                    &format!("{url}/v1/classify"),
                    image_bodies(),
                    concurrency,
                    n,
                    LIMIT,
                )
                .await?;
                Ok::<_, String>((e, i))
            })
            .map_err(anyhow::Error::msg)?;
        served.push((format!("embeddings, {label}"), e));
        served.push((format!("images, {label}"), i));
        if batch > 1 {
            for &s in streams {
                let c = runtime
                    .block_on(chat_streams(
                        &format!("{url}/v1/chat/completions"),
                        "chat",
                        s,
                        max_tokens,
                        LIMIT,
                    ))
                    .map_err(anyhow::Error::msg)?;
                served.push((format!("chat, {s} stream(s)"), c));
            }
        }
        rss.push((label, server.peak_rss_mib()));
    }

    let cpu = kiln_core::machine::cpu_description();
    let find = |k: &str| served.iter().find(|(l, _)| l == k).map(|(_, s)| s.clone());
    let mut table = String::from(
        "| load | requests | concurrency | items/s | p50 ms | p99 ms | in-process items/s | served / in-process |\n|---|---|---|---|---|---|---|---|\n",
    );
    for (label, s) in &served {
        let reference = if label.starts_with("embeddings") {
            if label.contains("unbatched") {
                embed_single
            } else {
                embed_batched
            }
        } else if label.starts_with("images") {
            if label.contains("unbatched") {
                image_single
            } else {
                image_batched
            }
        } else {
            chat_in_process
        };
        table.push_str(&format!(
            "| {label} | {} | {} | {:.1} | {:.0} | {:.0} | {:.1} | {:.2} |\n",
            s.requests,
            s.concurrency,
            s.items_per_second,
            s.p50_ms,
            s.p99_ms,
            reference,
            s.items_per_second / reference
        ));
    }
    let gain = |kind: &str| -> Option<f64> {
        Some(
            find(&format!("{kind}, batched (≤32, 5 ms)"))?.items_per_second
                / find(&format!("{kind}, unbatched"))?.items_per_second,
        )
    };
    let mut notes = format!(
        "\nBatching gain (served batched / served unbatched): embeddings {:.2}x, images {:.2}x. In-process references: one input per call for the unbatched rows, batches of 32 for the batched rows, one greedy stream for chat ({chat_in_process:.1} tokens/s). Chat items are streamed pieces (tokens), {max_tokens} per stream; first piece p50: {}. Peak RSS of the server process: {}. {cpu}.\n",
        gain("embeddings").unwrap_or(f64::NAN),
        gain("images").unwrap_or(f64::NAN),
        served
            .iter()
            .filter_map(|(l, s)| Some(format!("{l} {:.0} ms", s.first_piece_p50_ms?)))
            .collect::<Vec<_>>()
            .join(", "),
        rss.iter()
            .map(|(l, m)| format!("{l} {}", m.map_or("?".into(), |m| format!("{m:.0} MiB"))))
            .collect::<Vec<_>>()
            .join(", "),
    );
    if smoke {
        notes.push_str("(smoke run: too few requests for the figures to mean anything)\n");
    }
    println!("{table}{notes}");
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("serve.md"), format!("{table}{notes}"))?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("kiln-bench-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
