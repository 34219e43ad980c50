//! Dynamic batching (the Triton/TorchServe knobs): inputs that arrive together run as one
//! batch of at most `max_batch_size`, the first input waiting at most `max_delay` for others.
//! One worker thread per model owns the model, so models need not be `Send`.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::api::ApiError;
use crate::metrics::Metrics;

struct Job<I, O> {
    input: I,
    reply: oneshot::Sender<Result<O, ApiError>>,
}

/// The sending side of a model's batch worker.
pub struct Batcher<I, O> {
    name: String,
    tx: Sender<Job<I, O>>,
    metrics: Arc<Metrics>,
}

/// Batching settings.
#[derive(Clone, Copy, Debug)]
pub struct BatchSettings {
    /// The most inputs a batch takes.
    pub max_batch_size: usize,
    /// How long the first input waits for others.
    pub max_delay: Duration,
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the worker thread of model `name`: `load` builds the model on that thread (its
    /// result goes to `loaded`), then `run` computes each batch (one result per input, in
    /// order). A panic in `run` fails that batch's inputs with a 500, and the worker goes
    /// on.
    pub fn spawn<M, L, R>(
        name: &str,
        settings: BatchSettings,
        metrics: Arc<Metrics>,
        load: L,
        loaded: Sender<(String, Result<(), String>)>,
        run: R,
    ) -> Self
    where
        L: FnOnce() -> Result<M, String> + Send + 'static,
        R: Fn(&M, Vec<I>) -> Vec<Result<O, ApiError>> + Send + 'static,
    {
        let (tx, rx) = channel::<Job<I, O>>();
        let thread_name = name.to_string();
        let thread_metrics = metrics.clone();
        std::thread::Builder::new()
            .name(format!("kiln-batch-{name}"))
            .spawn(move || {
                let model = match load() {
                    Ok(m) => {
                        let _ = loaded.send((thread_name.clone(), Ok(())));
                        m
                    }
                    Err(e) => {
                        let _ = loaded.send((thread_name.clone(), Err(e)));
                        return;
                    }
                };
                drop(loaded);
                work(&thread_name, &model, &rx, settings, &thread_metrics, &run);
            })
            .expect("the OS starts a thread");
        Self {
            name: name.to_string(),
            tx,
            metrics,
        }
    }

    /// Runs `inputs` (each queued on its own, so they may share batches with other
    /// requests' inputs) and waits for all their results.
    pub async fn submit(&self, inputs: Vec<I>) -> Vec<Result<O, ApiError>> {
        let mut waits = Vec::with_capacity(inputs.len());
        for input in inputs {
            let (reply, wait) = oneshot::channel();
            self.metrics.queue(1);
            if self.tx.send(Job { input, reply }).is_err() {
                self.metrics.queue(-1);
                waits.push(None);
            } else {
                waits.push(Some(wait));
            }
        }
        let mut out = Vec::with_capacity(waits.len());
        for wait in waits {
            let gone = || {
                ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    format!("model `{}` is not running", self.name),
                )
            };
            out.push(match wait {
                Some(w) => w.await.unwrap_or_else(|_| Err(gone())),
                None => Err(gone()),
            });
        }
        out
    }
}

fn work<M, I, O, R>(
    name: &str,
    model: &M,
    rx: &Receiver<Job<I, O>>,
    settings: BatchSettings,
    metrics: &Metrics,
    run: &R,
) where
    R: Fn(&M, Vec<I>) -> Vec<Result<O, ApiError>>,
{
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        let deadline = Instant::now() + settings.max_delay;
        while jobs.len() < settings.max_batch_size {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = if left.is_zero() {
                rx.try_recv().map_err(|_| RecvTimeoutError::Timeout)
            } else {
                rx.recv_timeout(left)
            };
            match next {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        metrics.queue(-(jobs.len() as i64));
        // Inputs whose client is gone are not computed.
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        metrics.batch(name, jobs.len());
        let (inputs, replies): (Vec<I>, Vec<_>) =
            jobs.into_iter().map(|j| (j.input, j.reply)).unzip();
        let n = replies.len();
        let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(model, inputs)))
            .unwrap_or_else(|_| {
                (0..n)
                    .map(|_| {
                        Err(ApiError::new(
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                            format!("model `{name}` failed on this batch"),
                        ))
                    })
                    .collect()
            });
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}
