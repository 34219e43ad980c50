//! The HTTP server: routes, limits, model loading, start and graceful shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use futures_util::FutureExt;
use kiln_transfer::chat::Message;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use utoipa::OpenApi;

use crate::api::*;
use crate::batch::{BatchSettings, Batcher};
use crate::config::{ModelKind, ServeConfig};
use crate::generate::{Event, GenerationPool, Prompt};
use crate::metrics::Metrics;
use crate::{Error, Result};

type Embedder = Batcher<String, (Vec<f32>, usize)>;
type ClassifierQueue = Batcher<(Vec<u8>, usize), Vec<Prediction>>;

/// The loaded models by name.
#[derive(Default)]
struct Models {
    chat: BTreeMap<String, GenerationPool>,
    embedding: BTreeMap<String, Embedder>,
    classifier: BTreeMap<String, ClassifierQueue>,
}

struct AppState {
    config: ServeConfig,
    metrics: Arc<Metrics>,
    models: OnceLock<std::result::Result<Models, String>>,
    limiter: Arc<Semaphore>,
    started: u64,
    next_id: AtomicU64,
}

impl AppState {
    fn models(&self) -> std::result::Result<&Models, ApiError> {
        match self.models.get() {
            Some(Ok(m)) => Ok(m),
            Some(Err(e)) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the models failed to load: {e}"),
            )),
            None => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the models are still loading; GET /ready says when they are",
            )),
        }
    }

    fn names(&self, kind: ModelKind) -> Vec<String> {
        self.config
            .models
            .iter()
            .filter(|m| m.kind == kind)
            .map(|m| m.name.clone())
            .collect()
    }

    /// A slot among `max_concurrent_requests`, or 429.
    fn permit(&self) -> std::result::Result<OwnedSemaphorePermit, ApiError> {
        self.limiter.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "the server is handling its limit of {} requests; retry later",
                    self.config.max_concurrent_requests
                ),
            )
        })
    }

    fn id(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The body, or 413/400 naming why it could not be read.
fn body(body: std::result::Result<Bytes, BytesRejection>) -> std::result::Result<Bytes, ApiError> {
    body.map_err(|e| {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                "the request body is larger than the server's max_body_bytes",
            )
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, format!("reading the body: {e}"))
        }
    })
}

/// Runs `work` within the request timeout (504 past it).
async fn timed<T>(
    state: &AppState,
    work: impl Future<Output = std::result::Result<T, ApiError>>,
) -> std::result::Result<T, ApiError> {
    tokio::time::timeout(state.config.timeout(), work)
        .await
        .unwrap_or_else(|_| Err(timeout_error(state)))
}

fn timeout_error(state: &AppState) -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        format!(
            "the request took longer than the server's request_timeout_secs ({})",
            state.config.request_timeout_secs
        ),
    )
}

/// Liveness: 200 as long as the server answers.
#[utoipa::path(get, path = "/health", responses((status = 200, body = Status)))]
async fn health() -> axum::Json<Status> {
    axum::Json(Status {
        status: "ok".into(),
        error: None,
    })
}

/// Readiness: 200 once every model is loaded, 503 before (or if one failed).
#[utoipa::path(get, path = "/ready", responses((status = 200, body = Status), (status = 503, body = Status)))]
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let (status, body) = match state.models.get() {
        Some(Ok(_)) => (
            StatusCode::OK,
            Status {
                status: "ok".into(),
                error: None,
            },
        ),
        Some(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Status {
                status: "failed".into(),
                error: Some(e.clone()),
            },
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Status {
                status: "loading".into(),
                error: None,
            },
        ),
    };
    (status, axum::Json(body)).into_response()
}

/// Prometheus metrics (text exposition format 0.0.4).
#[utoipa::path(get, path = "/metrics", responses((status = 200, body = String, content_type = "text/plain")))]
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// The served models.
#[utoipa::path(get, path = "/v1/models", responses((status = 200, body = ModelList)))]
async fn models(State(state): State<Arc<AppState>>) -> axum::Json<ModelList> {
    axum::Json(ModelList {
        object: "list".into(),
        data: state
            .config
            .models
            .iter()
            .map(|m| ModelCard {
                id: m.name.clone(),
                object: "model".into(),
                created: state.started,
                owned_by: "kiln".into(),
                kind: m.kind.name().into(),
            })
            .collect(),
    })
}

/// The OpenAPI document of this API.
async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        ApiDoc::openapi().to_pretty_json().unwrap_or_default(),
    )
        .into_response()
}

/// The OpenAPI document, derived from the handlers and types.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "kiln serve",
        description = "OpenAI-compatible inference API of Kiln: chat and text completions, embeddings, image classification."
    ),
    paths(
        health,
        ready,
        metrics,
        models,
        chat_completions,
        completions,
        embeddings,
        classify
    )
)]
pub struct ApiDoc;

/// Where a generation's text goes and how it is shaped.
struct Generation {
    id: String,
    model: String,
    chat: bool,
    prompt_tokens: usize,
    events: mpsc::UnboundedReceiver<Event>,
}

/// Queues a generation and waits for it to start (so a rejected prompt is a plain error
/// answer, not a broken stream).
async fn start_generation(
    state: &AppState,
    model: &str,
    prompt: Prompt,
    params: &SamplingParams,
    chat: bool,
) -> std::result::Result<Generation, ApiError> {
    let models = state.models()?;
    let Some(pool) = models.chat.get(model) else {
        return Err(ApiError::unknown_model(
            model,
            "chat",
            &state.names(ModelKind::Chat),
        ));
    };
    let options = generate_options(params, state.config.default_max_tokens)?;
    let (tx, mut events) = mpsc::unbounded_channel();
    let deadline = Instant::now() + state.config.timeout();
    pool.submit(prompt, options, deadline, tx);
    let first = tokio::time::timeout_at(deadline.into(), events.recv())
        .await
        .map_err(|_| timeout_error(state))?;
    match first {
        Some(Event::Started { prompt_tokens }) => Ok(Generation {
            id: state.id(if chat { "chatcmpl" } else { "cmpl" }),
            model: model.to_string(),
            chat,
            prompt_tokens,
            events,
        }),
        Some(Event::Failed(e)) => Err(e),
        _ => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the generation ended before it started",
        )),
    }
}

/// Collects a whole generation (non-streaming answer).
async fn finish_generation(
    state: &AppState,
    mut g: Generation,
) -> std::result::Result<Response, ApiError> {
    let mut text = String::new();
    loop {
        match g.events.recv().await {
            Some(Event::Text(t)) => text.push_str(&t),
            Some(Event::Done {
                finish,
                completion_tokens,
                timed_out,
            }) => {
                if timed_out {
                    return Err(timeout_error(state));
                }
                let usage = Usage {
                    prompt_tokens: g.prompt_tokens,
                    completion_tokens,
                    total_tokens: g.prompt_tokens + completion_tokens,
                };
                let created = now();
                return Ok(if g.chat {
                    axum::Json(ChatCompletion {
                        id: g.id,
                        object: "chat.completion".into(),
                        created,
                        model: g.model,
                        choices: vec![ChatChoice {
                            index: 0,
                            message: ChatMessage {
                                role: "assistant".into(),
                                content: text,
                            },
                            finish_reason: finish.into(),
                        }],
                        usage,
                    })
                    .into_response()
                } else {
                    axum::Json(Completion {
                        id: g.id,
                        object: "text_completion".into(),
                        created,
                        model: g.model,
                        choices: vec![CompletionChoice {
                            text,
                            index: 0,
                            logprobs: None,
                            finish_reason: Some(finish.into()),
                        }],
                        usage: Some(usage),
                    })
                    .into_response()
                });
            }
            Some(Event::Failed(e)) => return Err(e),
            Some(Event::Started { .. }) => {}
            None => {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the generation stopped without an answer",
                ));
            }
        }
    }
}

/// One streamed chunk as an SSE event.
fn chunk(
    g: &Generation,
    created: u64,
    text: Option<String>,
    first: bool,
    finish: Option<&str>,
) -> SseEvent {
    let json = if g.chat {
        serde_json::to_string(&ChatCompletionChunk {
            id: g.id.clone(),
            object: "chat.completion.chunk".into(),
            created,
            model: g.model.clone(),
            choices: vec![ChatChunkChoice {
                index: 0,
                delta: ChatDelta {
                    role: first.then(|| "assistant".to_string()),
                    content: text,
                },
                finish_reason: finish.map(str::to_string),
            }],
        })
    } else {
        serde_json::to_string(&Completion {
            id: g.id.clone(),
            object: "text_completion".into(),
            created,
            model: g.model.clone(),
            choices: vec![CompletionChoice {
                text: text.unwrap_or_default(),
                index: 0,
                logprobs: None,
                finish_reason: finish.map(str::to_string),
            }],
            usage: None,
        })
    };
    SseEvent::default().data(json.unwrap_or_default())
}

/// Streams a generation as server-sent events ending with `data: [DONE]`. Dropping the
/// stream (the client went away) drops the receiver, which stops the generation.
fn stream_generation(g: Generation, permit: OwnedSemaphorePermit) -> Response {
    let created = now();
    let opening = chunk(&g, created, g.chat.then(String::new), true, None);
    enum Phase {
        Open(SseEvent),
        Body,
        Done,
        End,
    }
    let stream = futures_util::stream::unfold(
        (g, Phase::Open(opening), permit),
        move |(mut g, phase, permit)| async move {
            match phase {
                Phase::Open(opening) => Some((
                    Ok::<_, std::convert::Infallible>(opening),
                    (g, Phase::Body, permit),
                )),
                Phase::Body => loop {
                    match g.events.recv().await {
                        Some(Event::Text(t)) => {
                            let e = chunk(&g, created, Some(t), false, None);
                            return Some((Ok(e), (g, Phase::Body, permit)));
                        }
                        Some(Event::Done {
                            finish, timed_out, ..
                        }) => {
                            let e = if timed_out {
                                SseEvent::default().data(
                                    serde_json::to_string(
                                        &ApiError::new(
                                            StatusCode::GATEWAY_TIMEOUT,
                                            "the generation passed the server's request timeout",
                                        )
                                        .body(),
                                    )
                                    .unwrap_or_default(),
                                )
                            } else {
                                chunk(&g, created, None, false, Some(finish))
                            };
                            return Some((Ok(e), (g, Phase::Done, permit)));
                        }
                        Some(Event::Failed(err)) => {
                            let e = SseEvent::default()
                                .data(serde_json::to_string(&err.body()).unwrap_or_default());
                            return Some((Ok(e), (g, Phase::Done, permit)));
                        }
                        Some(Event::Started { .. }) => continue,
                        None => {
                            return Some((
                                Ok(SseEvent::default().data("[DONE]")),
                                (g, Phase::End, permit),
                            ));
                        }
                    }
                },
                Phase::Done => Some((
                    Ok(SseEvent::default().data("[DONE]")),
                    (g, Phase::End, permit),
                )),
                Phase::End => None,
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

async fn generation_route(
    state: Arc<AppState>,
    model: String,
    prompt: Prompt,
    params: SamplingParams,
    chat: bool,
) -> std::result::Result<Response, ApiError> {
    let permit = state.permit()?;
    let g = start_generation(&state, &model, prompt, &params, chat).await?;
    if params.stream.unwrap_or(false) {
        Ok(stream_generation(g, permit))
    } else {
        let answer = timed(&state, finish_generation(&state, g)).await;
        drop(permit);
        answer
    }
}

/// OpenAI's chat completions: the conversation through the model's chat template.
#[utoipa::path(
    post, path = "/v1/chat/completions", request_body = ChatCompletionRequest,
    responses(
        (status = 200, description = "the reply, or with `stream: true` server-sent `ChatCompletionChunk`s ending with `data: [DONE]`", body = ChatCompletion),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)
    )
)]
async fn chat_completions(
    State(state): State<Arc<AppState>>,
    raw: std::result::Result<Bytes, BytesRejection>,
) -> std::result::Result<Response, ApiError> {
    let req: ChatCompletionRequest = parse_completion(&body(raw)?)?;
    check_messages(&req.messages)?;
    let messages = req
        .messages
        .iter()
        .map(|m| Message::new(&m.role, &m.content))
        .collect();
    generation_route(state, req.model, Prompt::Chat(messages), req.params, true).await
}

/// OpenAI's (legacy) text completions: the prompt continued as plain text.
#[utoipa::path(
    post, path = "/v1/completions", request_body = CompletionRequest,
    responses(
        (status = 200, description = "the completion, or with `stream: true` server-sent `Completion` chunks ending with `data: [DONE]`", body = Completion),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)
    )
)]
async fn completions(
    State(state): State<Arc<AppState>>,
    raw: std::result::Result<Bytes, BytesRejection>,
) -> std::result::Result<Response, ApiError> {
    let req: CompletionRequest = parse_completion(&body(raw)?)?;
    let mut prompts = req.prompt.into_vec();
    if prompts.len() != 1 {
        return Err(ApiError::invalid(
            "prompt",
            format!(
                "`prompt` must be one string (or a list of one), found {}",
                prompts.len()
            ),
        ));
    }
    let prompt = prompts.remove(0);
    generation_route(state, req.model, Prompt::Text(prompt), req.params, false).await
}

/// OpenAI's embeddings; inputs of concurrent requests share batches.
#[utoipa::path(
    post, path = "/v1/embeddings", request_body = EmbeddingRequest,
    responses(
        (status = 200, body = EmbeddingList),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)
    )
)]
async fn embeddings(
    State(state): State<Arc<AppState>>,
    raw: std::result::Result<Bytes, BytesRejection>,
) -> std::result::Result<Response, ApiError> {
    let req: EmbeddingRequest = parse_json(&body(raw)?)?;
    let _permit = state.permit()?;
    let models = state.models()?;
    let Some(queue) = models.embedding.get(&req.model) else {
        return Err(ApiError::unknown_model(
            &req.model,
            "embedding",
            &state.names(ModelKind::Embedding),
        ));
    };
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "encoding_format",
                format!("`encoding_format` must be float or base64, found `{other}`"),
            ));
        }
    };
    let inputs = req.input.into_vec();
    let most = state.config.max_batch_size * 64;
    if inputs.is_empty() || inputs.len() > most {
        return Err(ApiError::invalid(
            "input",
            format!(
                "`input` must hold 1 to {most} texts, found {}",
                inputs.len()
            ),
        ));
    }
    let results = timed(&state, async { Ok(queue.submit(inputs).await) }).await?;
    let mut data = Vec::with_capacity(results.len());
    let mut tokens = 0;
    for (index, r) in results.into_iter().enumerate() {
        let (vector, n) = r?;
        if let Some(d) = req.dimensions
            && d != vector.len()
        {
            return Err(ApiError::invalid(
                "dimensions",
                format!(
                    "model `{}` gives {} dimensions, not {d}",
                    req.model,
                    vector.len()
                ),
            ));
        }
        tokens += n;
        let embedding = if base64 {
            let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
            EmbeddingVector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
        } else {
            EmbeddingVector::Float(vector)
        };
        data.push(Embedding {
            object: "embedding".into(),
            index,
            embedding,
        });
    }
    Ok(axum::Json(EmbeddingList {
        object: "list".into(),
        data,
        model: req.model,
        usage: Usage {
            prompt_tokens: tokens,
            completion_tokens: 0,
            total_tokens: tokens,
        },
    })
    .into_response())
}

/// Image classification with a trained run's model: a JSON body with a base64 image, or the
/// image bytes themselves (`Content-Type: image/...` or `application/octet-stream`) with
/// `?model=NAME&top_k=K`. Images of concurrent requests share batches.
#[utoipa::path(
    post, path = "/v1/classify", request_body = ClassifyRequest, params(ClassifyQuery),
    responses(
        (status = 200, body = Classification),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)
    )
)]
async fn classify(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: std::result::Result<Query<ClassifyQuery>, axum::extract::rejection::QueryRejection>,
    raw: std::result::Result<Bytes, BytesRejection>,
) -> std::result::Result<Response, ApiError> {
    let bytes = body(raw)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let raw_image =
        content_type.starts_with("image/") || content_type.starts_with("application/octet-stream");
    let (model, image, top_k) = if raw_image {
        let Query(q) =
            query.map_err(|e| ApiError::invalid("", format!("the query: {}", e.body_text())))?;
        (q.model, bytes.to_vec(), q.top_k)
    } else {
        let req: ClassifyRequest = parse_json(&bytes)?;
        let text = req.image.trim();
        let text = match text.split_once(";base64,") {
            Some((prefix, rest)) if prefix.starts_with("data:") => rest,
            _ => text,
        };
        let image = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| ApiError::invalid("image", format!("`image` is not base64: {e}")))?;
        (req.model, image, req.top_k)
    };
    let top_k = top_k.unwrap_or(5);
    if top_k == 0 {
        return Err(ApiError::invalid("top_k", "`top_k` must be at least 1"));
    }
    let _permit = state.permit()?;
    let models = state.models()?;
    let Some(queue) = models.classifier.get(&model) else {
        return Err(ApiError::unknown_model(
            &model,
            "classifier",
            &state.names(ModelKind::Classifier),
        ));
    };
    let mut results = timed(&state, async {
        Ok(queue.submit(vec![(image, top_k)]).await)
    })
    .await?;
    let predictions = results.pop().unwrap_or_else(|| {
        Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no result",
        ))
    })?;
    Ok(axum::Json(Classification { model, predictions }).into_response())
}

/// Counts every request by route pattern and status, and turns a panic in a handler into a
/// 500 answer (the server keeps serving).
async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let start = Instant::now();
    let response = std::panic::AssertUnwindSafe(next.run(request))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the request failed inside the server",
            )
            .into_response()
        });
    state.metrics.request(
        &route,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such route; GET /openapi.json lists them",
    )
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/classify", post(classify))
        .fallback(not_found)
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "this route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Loads every model (each on its own worker threads) and records the outcome.
fn load_models(state: Arc<AppState>) {
    let config = &state.config;
    let data_dir = kiln_data::data_dir::resolve(config.data_dir.clone());
    let settings = BatchSettings {
        max_batch_size: config.max_batch_size,
        max_delay: Duration::from_millis(config.max_batch_delay_ms),
    };
    let mut models = Models::default();
    let (loaded, reports) = std::sync::mpsc::channel();
    let mut waiting = 0;
    let mut failure: Option<String> = None;
    for spec in &config.models {
        let name = spec.name.clone();
        let path = spec.path.clone();
        match spec.kind {
            ModelKind::Chat => {
                let device = burn::tensor::Device::flex();
                // A .gguf file, a Hugging Face folder, a fetched model's name or a fine-tuned
                // LLM run folder (adapters merged).
                let found =
                    kiln_train::llm::load_chat_model(&path.to_string_lossy(), &data_dir, &device);
                match found {
                    Ok(bundle) => {
                        let pool = GenerationPool::spawn(
                            &name,
                            Arc::new(bundle),
                            config.generation_workers,
                            config.context,
                            state.metrics.clone(),
                        );
                        models.chat.insert(name, pool);
                    }
                    Err(e) => {
                        failure.get_or_insert(format!("model `{name}` ({}): {e}", path.display()));
                    }
                }
            }
            ModelKind::Embedding => {
                let dir = if path.exists() {
                    path.clone()
                } else if matches!(path.to_str(), Some("minilm" | "all-MiniLM-L6-v2")) {
                    kiln_transfer::embed::minilm_dir(&data_dir)
                } else {
                    path.clone()
                };
                waiting += 1;
                let queue = Batcher::spawn(
                    &name,
                    settings,
                    state.metrics.clone(),
                    move || {
                        kiln_transfer::embed::SentenceEmbedder::from_dir(
                            &dir,
                            &burn::tensor::Device::flex(),
                        )
                        .map(|(m, _)| m)
                        .map_err(|e| format!("{}: {e}", dir.display()))
                    },
                    loaded.clone(),
                    |model, texts: Vec<String>| embed_batch(model, &texts),
                );
                models.embedding.insert(name, queue);
            }
            ModelKind::Classifier => {
                waiting += 1;
                let queue = Batcher::spawn(
                    &name,
                    settings,
                    state.metrics.clone(),
                    move || {
                        kiln_train::ImageClassifier::load(&path, &burn::tensor::Device::flex())
                            .map_err(|e| format!("{}: {e}", path.display()))
                    },
                    loaded.clone(),
                    |model, images: Vec<(Vec<u8>, usize)>| classify_batch(model, images),
                );
                models.classifier.insert(name, queue);
            }
        }
    }
    drop(loaded);
    for _ in 0..waiting {
        match reports.recv() {
            Ok((name, Err(e))) => {
                failure.get_or_insert(format!("model `{name}`: {e}"));
            }
            Ok(_) => {}
            Err(_) => {
                failure.get_or_insert("a model's worker stopped while loading".into());
            }
        }
    }
    let _ = state.models.set(match failure {
        None => Ok(models),
        Some(e) => Err(e),
    });
}

fn embed_batch(
    model: &kiln_transfer::embed::SentenceEmbedder,
    texts: &[String],
) -> Vec<std::result::Result<(Vec<f32>, usize), ApiError>> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let out = model
        .embed_vectors(&refs)
        .and_then(|v| Ok((v, model.token_counts(&refs)?)));
    match out {
        Ok((vectors, counts)) => vectors.into_iter().zip(counts).map(Ok).collect(),
        Err(e) => texts
            .iter()
            .map(|_| Err(ApiError::invalid("input", e.to_string())))
            .collect(),
    }
}

fn classify_batch(
    model: &kiln_train::ImageClassifier,
    images: Vec<(Vec<u8>, usize)>,
) -> Vec<std::result::Result<Vec<Prediction>, ApiError>> {
    let decoded: Vec<_> = images
        .iter()
        .map(|(bytes, _)| {
            model
                .decode(bytes, "`image`")
                .map_err(|e| ApiError::invalid("image", e.to_string()))
        })
        .collect();
    let good: Vec<Vec<f32>> = decoded
        .iter()
        .filter_map(|d| d.as_ref().ok().cloned())
        .collect();
    let most = images.iter().map(|(_, k)| *k).max().unwrap_or(1);
    let mut tops = match model.top_k(&good, most) {
        Ok(t) => t.into_iter(),
        Err(e) => {
            return images
                .iter()
                .map(|_| {
                    Err(ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        e.to_string(),
                    ))
                })
                .collect();
        }
    };
    decoded
        .into_iter()
        .zip(images)
        .map(|(d, (_, k))| {
            d?;
            let top = tops.next().unwrap_or_default();
            Ok(top
                .into_iter()
                .take(k)
                .map(|(index, probability)| Prediction {
                    label: model
                        .classes()
                        .get(index)
                        .cloned()
                        .unwrap_or_else(|| index.to_string()),
                    index,
                    probability,
                })
                .collect())
        })
        .collect()
}

/// A running server (see [`start`]).
pub struct Server {
    addr: SocketAddr,
    state: Arc<AppState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Server {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until every model is loaded (an error naming the model that failed, or the
    /// timeout).
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            match self.state.models.get() {
                Some(Ok(_)) => return Ok(()),
                Some(Err(e)) => return Err(Error::Server(format!("loading the models: {e}"))),
                None if start.elapsed() > timeout => {
                    return Err(Error::Server(format!(
                        "the models were not loaded after {:.0} s",
                        timeout.as_secs_f64()
                    )));
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }

    /// Stops accepting connections, finishes the requests in flight (streams included), and
    /// returns once the server has stopped.
    pub fn shutdown(mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.join()
    }

    /// Waits for the server to stop (after [`Server::shutdown`] from elsewhere, or a signal
    /// when started by [`run`]).
    pub fn join(mut self) -> Result<()> {
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::Server("the server thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds `config`'s address and serves on a thread of its own; the models load in the
/// background (`GET /ready` is 503 until they are, see [`Server::wait_ready`]).
pub fn start(config: ServeConfig) -> Result<Server> {
    start_with_signal(config, false)
}

fn start_with_signal(config: ServeConfig, signals: bool) -> Result<Server> {
    config.validate()?;
    let address = config.address();
    let listener = std::net::TcpListener::bind(&address).map_err(|source| Error::Bind {
        address: address.clone(),
        source,
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| Error::Bind {
            address: address.clone(),
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| Error::Bind { address, source })?;
    let state = Arc::new(AppState {
        limiter: Arc::new(Semaphore::new(config.max_concurrent_requests)),
        config,
        metrics: Arc::new(Metrics::default()),
        models: OnceLock::new(),
        started: now(),
        next_id: AtomicU64::new(1),
    });
    let loader = state.clone();
    std::thread::Builder::new()
        .name("kiln-serve-load".into())
        .spawn(move || load_models(loader))
        .map_err(|e| Error::Server(format!("starting the loader: {e}")))?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = router(state.clone());
    let thread = std::thread::Builder::new()
        .name("kiln-serve".into())
        .spawn(move || -> Result<()> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| Error::Server(format!("starting the runtime: {e}")))?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)
                    .map_err(|e| Error::Server(format!("listening: {e}")))?;
                let stop = async move {
                    if signals {
                        tokio::select! {
                            _ = rx => {}
                            _ = shutdown_signal() => {}
                        }
                    } else {
                        let _ = rx.await;
                    }
                };
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
                    .map_err(|e| Error::Server(e.to_string()))
            })
        })
        .map_err(|e| Error::Server(format!("starting the server thread: {e}")))?;
    Ok(Server {
        addr,
        state,
        shutdown: Some(tx),
        thread: Some(thread),
    })
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// What `kiln serve` does: starts the server, calls `on_ready` with its address once every
/// model is loaded, and serves until Ctrl-C or SIGTERM, finishing the requests in flight.
pub fn run(config: ServeConfig, on_ready: impl FnOnce(SocketAddr)) -> Result<()> {
    let server = start_with_signal(config, true)?;
    server.wait_ready(Duration::from_secs(3600))?;
    on_ready(server.addr());
    server.join()
}
