//! Concurrent generation: each chat model has `generation_workers` threads, each with its own
//! KV cache over the shared weights, taking requests from one queue in arrival order. The
//! workers decode at the same time (the OS and the tensor backend's thread pool share the
//! cores among them), so a long generation holds one worker and never blocks the others; a
//! request waits only when every worker is busy. Text goes back piece by piece; a client
//! that disconnects (its receiver dropped) or a passed deadline stops its generation at the
//! next piece.

use std::ops::ControlFlow;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::http::StatusCode;
use kiln_transfer::chat::{FinishReason, GenerateOptions, Generator, Message};
use kiln_transfer::llama::LlmBundle;
use tokio::sync::mpsc::UnboundedSender;

use crate::api::ApiError;
use crate::metrics::Metrics;

/// What to continue.
#[derive(Clone, Debug)]
pub enum Prompt {
    /// A conversation, rendered through the model's chat template.
    Chat(Vec<Message>),
    /// Plain text.
    Text(String),
}

/// What a generation sends back, in order: `Started`, any number of `Text`, then `Done`; or
/// one `Failed`.
#[derive(Clone, Debug)]
pub enum Event {
    /// The prompt was accepted (its token count).
    Started {
        /// Prompt tokens.
        prompt_tokens: usize,
    },
    /// New text.
    Text(String),
    /// The end.
    Done {
        /// `stop` or `length`.
        finish: &'static str,
        /// Tokens generated.
        completion_tokens: usize,
        /// The deadline passed.
        timed_out: bool,
    },
    /// The request could not be served.
    Failed(ApiError),
}

struct Job {
    prompt: Prompt,
    options: GenerateOptions,
    deadline: Instant,
    events: UnboundedSender<Event>,
}

/// A chat model's queue and workers.
pub struct GenerationPool {
    tx: Sender<Job>,
    metrics: Arc<Metrics>,
}

impl GenerationPool {
    /// Starts `workers` threads over `bundle`, each with a KV cache of `context` tokens.
    pub fn spawn(
        name: &str,
        bundle: Arc<LlmBundle>,
        workers: usize,
        context: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let context = context.min(bundle.model.config().max_position_embeddings);
        for i in 0..workers {
            let (bundle, rx, metrics) = (bundle.clone(), rx.clone(), metrics.clone());
            std::thread::Builder::new()
                .name(format!("kiln-gen-{name}-{i}"))
                .spawn(move || work(&bundle, &rx, context, &metrics))
                .expect("the OS starts a thread");
        }
        Self { tx, metrics }
    }

    /// Queues a generation; its events arrive on `events`.
    pub fn submit(
        &self,
        prompt: Prompt,
        options: GenerateOptions,
        deadline: Instant,
        events: UnboundedSender<Event>,
    ) {
        self.metrics.queue(1);
        let job = Job {
            prompt,
            options,
            deadline,
            events,
        };
        if let Err(e) = self.tx.send(job) {
            self.metrics.queue(-1);
            let _ = e.0.events.send(Event::Failed(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the model's generation workers are not running",
            )));
        }
    }
}

fn work(bundle: &LlmBundle, rx: &Mutex<Receiver<Job>>, context: usize, metrics: &Metrics) {
    let mut generator = Generator::new(bundle, context);
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        metrics.queue(-1);
        if job.events.is_closed() {
            continue;
        }
        metrics.active(1);
        let events = job.events.clone();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run(&mut generator, job, context, metrics)
        }));
        metrics.active(-1);
        if outcome.is_err() {
            // The cache may be half-written: start the next request afresh.
            generator = Generator::new(bundle, context);
            let _ = events.send(Event::Failed(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the generation failed",
            )));
        }
    }
}

fn run(generator: &mut Generator<'_>, job: Job, context: usize, metrics: &Metrics) {
    let fail = |e: ApiError| {
        let _ = job.events.send(Event::Failed(e));
    };
    let text = match &job.prompt {
        Prompt::Text(t) => t.clone(),
        Prompt::Chat(messages) => match generator.chat_prompt(messages) {
            Ok(t) => t,
            Err(e) => return fail(ApiError::invalid("messages", e.to_string())),
        },
    };
    let ids = match generator.bundle().tokenizer.encode_plain(&text) {
        Ok(ids) => ids,
        Err(e) => return fail(ApiError::invalid("prompt", e.to_string())),
    };
    if ids.is_empty() {
        return fail(ApiError::invalid("prompt", "the prompt is empty"));
    }
    if ids.len() >= context {
        return fail(ApiError::invalid(
            if matches!(job.prompt, Prompt::Chat(_)) {
                "messages"
            } else {
                "prompt"
            },
            format!(
                "the prompt has {} tokens; the server's context holds {context} (prompt and reply)",
                ids.len()
            ),
        ));
    }
    let mut options = job.options.clone();
    let room = context - ids.len();
    options.max_new_tokens = options.max_new_tokens.min(room);
    let _ = job.events.send(Event::Started {
        prompt_tokens: ids.len(),
    });
    let mut timed_out = false;
    let result = generator.generate_ids(&ids, &options, &mut |piece| {
        if Instant::now() > job.deadline {
            timed_out = true;
            return ControlFlow::Break(());
        }
        match job.events.send(Event::Text(piece.to_string())) {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        }
    });
    match result {
        Ok(g) => {
            metrics.tokens(ids.len(), g.tokens.len());
            let finish = match g.finish {
                FinishReason::Stop => "stop",
                FinishReason::Length | FinishReason::Cancelled => "length",
            };
            let _ = job.events.send(Event::Done {
                finish,
                completion_tokens: g.tokens.len(),
                timed_out,
            });
        }
        Err(e) => fail(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        )),
    }
}
