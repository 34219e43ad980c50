//! A load generator for `kiln serve` on loopback: JSON requests at a fixed concurrency, or
//! concurrent chat streams; throughput and p50/p99 latency. Every run is bounded by its
//! request count and a time limit.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What one load run measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadStats {
    /// Requests sent (all answered 200; anything else is an error).
    pub requests: usize,
    /// Concurrent clients.
    pub concurrency: usize,
    /// Wall-clock seconds of the whole run.
    pub seconds: f64,
    /// Requests per second.
    pub requests_per_second: f64,
    /// Items (inputs, or generated pieces for chat) per second.
    pub items_per_second: f64,
    /// Median request latency, milliseconds (chat: to the last piece).
    pub p50_ms: f64,
    /// 99th-percentile request latency, milliseconds.
    pub p99_ms: f64,
    /// Median time to the first streamed piece, milliseconds (chat only).
    pub first_piece_p50_ms: Option<f64>,
}

/// The `q` quantile (nearest rank) of `values`, in milliseconds.
pub fn quantile_ms(values: &mut [Duration], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort();
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1].as_secs_f64() * 1e3
}

/// Sends `bodies` to `url` as JSON POSTs, `concurrency` at a time; each answer must be 200.
/// `items` is how many inputs the bodies hold in all.
pub async fn post_load(
    url: &str,
    bodies: Vec<Value>,
    concurrency: usize,
    items: usize,
    limit: Duration,
) -> Result<LoadStats, String> {
    let client = reqwest::Client::new();
    let n = bodies.len();
    let start = Instant::now();
    let mut latencies = Vec::with_capacity(n);
    let mut answers = futures_util::stream::iter(bodies.into_iter().map(|body| {
        let client = client.clone();
        async move {
            let t = Instant::now();
            let r = client
                .post(url)
                .json(&body)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = r.status();
            let text = r.text().await.map_err(|e| e.to_string())?;
            if !status.is_success() {
                return Err(format!("{url}: {status} {text}"));
            }
            Ok(t.elapsed())
        }
    }))
    .buffer_unordered(concurrency);
    while let Some(a) = answers.next().await {
        latencies.push(a?);
        if start.elapsed() > limit {
            return Err(format!(
                "the load run passed its {} s limit",
                limit.as_secs()
            ));
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(LoadStats {
        requests: n,
        concurrency,
        seconds,
        requests_per_second: n as f64 / seconds,
        items_per_second: items as f64 / seconds,
        p50_ms: quantile_ms(&mut latencies, 0.5),
        p99_ms: quantile_ms(&mut latencies, 0.99),
        first_piece_p50_ms: None,
    })
}

/// `streams` concurrent streamed chat completions of `max_tokens` greedy tokens each
/// (different prompts); items are streamed pieces (one token each, but for held-back
/// incomplete characters).
pub async fn chat_streams(
    url: &str,
    model: &str,
    streams: usize,
    max_tokens: usize,
    limit: Duration,
) -> Result<LoadStats, String> {
    let client = reqwest::Client::new();
    let start = Instant::now();
    let runs = futures_util::future::join_all((0..streams).map(|i| {
        let client = client.clone();
        let body = serde_json::json!({
            "model": model,
            "messages": [{"role": "user", "content": format!("Write a short story about a lighthouse keeper, number {i}.")}],
            "temperature": 0,
            "max_tokens": max_tokens,
            "stream": true,
        });
        async move {
            let t = Instant::now();
            let r = client.post(url).json(&body).send().await.map_err(|e| e.to_string())?;
            if !r.status().is_success() {
                return Err(format!("{url}: {}", r.status()));
            }
            let mut bytes = r.bytes_stream();
            let (mut first, mut pieces, mut text) = (None, 0usize, String::new());
            while let Some(chunk) = bytes.next().await {
                text.push_str(&String::from_utf8_lossy(&chunk.map_err(|e| e.to_string())?));
                let now = text.matches("\"content\":\"").count().saturating_sub(1);
                if now > pieces && first.is_none() {
                    first = Some(t.elapsed());
                }
                pieces = pieces.max(now);
                if t.elapsed() > limit {
                    return Err("a stream passed the time limit".into());
                }
            }
            if !text.contains("[DONE]") {
                return Err("a stream ended without [DONE]".into());
            }
            Ok((t.elapsed(), first.unwrap_or_default(), pieces))
        }
    }))
    .await;
    let seconds = start.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    let mut firsts = Vec::new();
    let mut pieces = 0;
    for r in runs {
        let (l, f, p) = r?;
        latencies.push(l);
        firsts.push(f);
        pieces += p;
    }
    Ok(LoadStats {
        requests: streams,
        concurrency: streams,
        seconds,
        requests_per_second: streams as f64 / seconds,
        items_per_second: pieces as f64 / seconds,
        p50_ms: quantile_ms(&mut latencies, 0.5),
        p99_ms: quantile_ms(&mut latencies, 0.99),
        first_piece_p50_ms: Some(quantile_ms(&mut firsts, 0.5)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(quantile_ms(&mut v, 0.5), 50.0);
        assert_eq!(quantile_ms(&mut v, 0.99), 99.0);
        assert_eq!(quantile_ms(&mut [Duration::from_millis(7)], 0.99), 7.0);
    }
}
