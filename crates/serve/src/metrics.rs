//! Prometheus metrics in the text exposition format, written here (a few counters and
//! histograms behind one mutex; no metrics crate needed): requests by route and status,
//! latency histograms by route, tokens generated, queue depth and batch sizes.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Latency bucket bounds in seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Batch-size bucket bounds.
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

#[derive(Clone, Debug, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], value: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len()];
        }
        for (c, b) in self.counts.iter_mut().zip(bounds) {
            if value <= *b {
                *c += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (c, b) in self.counts.iter().zip(bounds) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Debug, Default)]
struct Tables {
    requests: BTreeMap<(String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    batches: BTreeMap<String, Histogram>,
}

/// The server's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    tables: Mutex<Tables>,
    tokens: AtomicU64,
    prompt_tokens: AtomicU64,
    queue: AtomicI64,
    active_generations: AtomicI64,
}

impl Metrics {
    /// Counts a finished request of `route` (the route pattern) with `status`, taking
    /// `seconds` to its response head.
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        *t.requests.entry((route.to_string(), status)).or_default() += 1;
        t.latency
            .entry(route.to_string())
            .or_default()
            .observe(&LATENCY_BUCKETS, seconds);
    }

    /// Records a batch of `size` inputs run by `model`.
    pub fn batch(&self, model: &str, size: usize) {
        let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        t.batches
            .entry(model.to_string())
            .or_default()
            .observe(&BATCH_BUCKETS, size as f64);
    }

    /// Counts generated and prompt tokens.
    pub fn tokens(&self, prompt: usize, generated: usize) {
        self.prompt_tokens
            .fetch_add(prompt as u64, Ordering::Relaxed);
        self.tokens.fetch_add(generated as u64, Ordering::Relaxed);
    }

    /// Adds `delta` to the number of queued inputs (waiting for a batch or a generation
    /// worker).
    pub fn queue(&self, delta: i64) {
        self.queue.fetch_add(delta, Ordering::Relaxed);
    }

    /// The number of queued inputs.
    pub fn queue_depth(&self) -> i64 {
        self.queue.load(Ordering::Relaxed)
    }

    /// Adds `delta` to the generations being decoded.
    pub fn active(&self, delta: i64) {
        self.active_generations.fetch_add(delta, Ordering::Relaxed);
    }

    /// Requests counted so far with `route` and `status`.
    pub fn count(&self, route: &str, status: u16) -> u64 {
        let t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        t.requests
            .get(&(route.to_string(), status))
            .copied()
            .unwrap_or(0)
    }

    /// The Prometheus text.
    pub fn render(&self) -> String {
        let t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        out.push_str("# HELP kiln_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE kiln_requests_total counter\n");
        for ((route, status), n) in &t.requests {
            let _ = writeln!(
                out,
                "kiln_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP kiln_request_duration_seconds Time to the response head, by route.\n");
        out.push_str("# TYPE kiln_request_duration_seconds histogram\n");
        for (route, h) in &t.latency {
            h.write(
                &mut out,
                "kiln_request_duration_seconds",
                &format!("route=\"{route}\""),
                &LATENCY_BUCKETS,
            );
        }
        out.push_str("# HELP kiln_batch_size Inputs per embedding/classification batch.\n");
        out.push_str("# TYPE kiln_batch_size histogram\n");
        for (model, h) in &t.batches {
            h.write(
                &mut out,
                "kiln_batch_size",
                &format!("model=\"{model}\""),
                &BATCH_BUCKETS,
            );
        }
        let gauges = [
            (
                "kiln_generated_tokens_total",
                "counter",
                "Tokens generated.",
                self.tokens.load(Ordering::Relaxed) as i64,
            ),
            (
                "kiln_prompt_tokens_total",
                "counter",
                "Prompt tokens of generations.",
                self.prompt_tokens.load(Ordering::Relaxed) as i64,
            ),
            (
                "kiln_queue_depth",
                "gauge",
                "Inputs waiting for a batch or a generation worker.",
                self.queue_depth(),
            ),
            (
                "kiln_active_generations",
                "gauge",
                "Generations being decoded.",
                self.active_generations.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_has_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.request("/v1/embeddings", 200, 0.02);
        m.request("/v1/embeddings", 200, 3.0);
        m.request("/v1/embeddings", 422, 0.001);
        m.batch("minilm", 3);
        m.tokens(5, 7);
        let text = m.render();
        assert!(text.contains("kiln_requests_total{route=\"/v1/embeddings\",status=\"200\"} 2"));
        assert!(text.contains(
            "kiln_request_duration_seconds_bucket{route=\"/v1/embeddings\",le=\"0.025\"} 2"
        ));
        assert!(text.contains(
            "kiln_request_duration_seconds_bucket{route=\"/v1/embeddings\",le=\"+Inf\"} 3"
        ));
        assert!(text.contains("kiln_batch_size_bucket{model=\"minilm\",le=\"2\"} 0"));
        assert!(text.contains("kiln_batch_size_bucket{model=\"minilm\",le=\"4\"} 1"));
        assert!(text.contains("kiln_generated_tokens_total 7"));
        assert_eq!(m.count("/v1/embeddings", 422), 1);
    }
}
