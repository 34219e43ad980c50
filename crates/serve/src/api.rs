//! The HTTP API's request and response bodies (OpenAI's shapes for chat, completions,
//! embeddings and models; Kiln's own for image classification), their checks, and the JSON
//! error every failure answers with. The OpenAPI document is derived from these types.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An error answer: OpenAI's `{"error": {"message", "type", "param", "code"}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The body of an [`ErrorBody`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// A sentence naming what and where.
    pub message: String,
    /// `invalid_request_error`, `not_found_error`, `rate_limit_error`, `timeout_error`,
    /// `server_error`, `unavailable_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, when one is.
    pub param: Option<String>,
    /// The HTTP status, as text.
    pub code: Option<String>,
}

/// A failed request: its status and error body.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The message.
    pub message: String,
    /// The field at fault.
    pub param: Option<String>,
}

impl ApiError {
    /// 422: a request field is missing, of the wrong type or out of range.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        let param = param.into();
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: message.into(),
            param: (!param.is_empty()).then_some(param),
        }
    }

    /// An error of `status` with no field.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            param: None,
        }
    }

    /// 404 for a model nobody serves (or not of the kind the route needs).
    pub fn unknown_model(name: &str, route_kind: &str, available: &[String]) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "no {route_kind} model named `{name}`; served: {}",
                if available.is_empty() {
                    "none".to_string()
                } else {
                    available.join(", ")
                }
            ),
            param: Some("model".into()),
        }
    }

    /// The error type OpenAI's clients know for this status.
    pub fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            404 => "not_found_error",
            408 | 504 => "timeout_error",
            429 => "rate_limit_error",
            503 => "unavailable_error",
            s if s >= 500 => "server_error",
            _ => "invalid_request_error",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                message: self.message.clone(),
                kind: self.kind().into(),
                param: self.param.clone(),
                code: Some(self.status.as_u16().to_string()),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

/// Parses a JSON body as `T`, naming the field at fault (`messages[0].role`) on error.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    from_value(&json_value(bytes)?)
}

/// Parses a completion request like [`parse_json`], the sampling settings checked first
/// (serde loses the field path inside a flattened struct, so they are read on their own).
pub fn parse_completion<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value = json_value(bytes)?;
    from_value::<SamplingParams>(&value)?;
    from_value::<T>(&value)
}

fn json_value(bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid("", format!("the body is not valid JSON: {e}")))
}

fn from_value<T: serde::de::DeserializeOwned>(value: &serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let inner = e.into_inner();
        let message = if path.is_empty() {
            format!("the body: {inner}")
        } else {
            format!("`{path}`: {inner}")
        };
        ApiError::invalid(path, message)
    })
}

/// A string or a list of strings (`stop`, `input`, `prompt`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The strings.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

/// One chat message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    #[schema(pattern = "^(system|user|assistant)$")]
    pub role: String,
    /// The text.
    pub content: String,
}

/// Settings shared by chat and text completions (OpenAI's names and defaults).
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct SamplingParams {
    /// Softmax temperature in [0, 2]; 0 picks the most likely token (default 1).
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass in (0, 1] (default 1: off).
    #[serde(default)]
    #[schema(exclusive_minimum = 0.0, maximum = 1.0)]
    pub top_p: Option<f64>,
    /// The most tokens to generate (default: the server's `default_max_tokens`).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub max_tokens: Option<u32>,
    /// The same as `max_tokens` (OpenAI's newer name for chat).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub max_completion_tokens: Option<u32>,
    /// Up to 4 strings that end the text (not included in it).
    #[serde(default)]
    pub stop: Option<OneOrMany>,
    /// Seed of the sampling (same seed, same settings, same prompt: the same text).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Number of choices; only 1 is supported.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1)]
    pub n: Option<u32>,
    /// Send the text as server-sent events, piece by piece, ending with `data: [DONE]`.
    #[serde(default)]
    pub stream: Option<bool>,
}

/// `POST /v1/chat/completions`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    /// A served chat model.
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// Sampling and length.
    #[serde(flatten)]
    pub params: SamplingParams,
}

/// `POST /v1/completions`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CompletionRequest {
    /// A served chat model.
    pub model: String,
    /// The text to continue (one string, or a list of exactly one).
    pub prompt: OneOrMany,
    /// Sampling and length.
    #[serde(flatten)]
    pub params: SamplingParams,
}

/// Token counts of a request.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    /// Tokens of the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    #[serde(default)]
    pub completion_tokens: usize,
    /// Their sum.
    pub total_tokens: usize,
}

/// The assistant's reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatChoice {
    /// 0.
    pub index: usize,
    /// The reply.
    pub message: ChatMessage,
    /// `stop` (end token or stop string) or `length` (the token budget or the timeout).
    pub finish_reason: String,
}

/// The answer of `POST /v1/chat/completions`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletion {
    /// `chatcmpl-N`.
    pub id: String,
    /// `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model.
    pub model: String,
    /// One choice.
    pub choices: Vec<ChatChoice>,
    /// Token counts.
    pub usage: Usage,
}

/// A piece of a streamed reply.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct ChatDelta {
    /// `assistant`, in the first chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// New text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// One streamed choice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatChunkChoice {
    /// 0.
    pub index: usize,
    /// The new piece.
    pub delta: ChatDelta,
    /// Set in the last chunk.
    pub finish_reason: Option<String>,
}

/// One server-sent event of a streamed chat completion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletionChunk {
    /// The same id in every chunk of a reply.
    pub id: String,
    /// `chat.completion.chunk`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model.
    pub model: String,
    /// One choice.
    pub choices: Vec<ChatChunkChoice>,
}

/// A text completion choice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CompletionChoice {
    /// The generated text (streamed: the new piece).
    pub text: String,
    /// 0.
    pub index: usize,
    /// Always null (log-probabilities are not returned).
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<serde_json::Value>,
    /// `stop` or `length`; null in a streamed chunk before the last.
    pub finish_reason: Option<String>,
}

/// The answer of `POST /v1/completions` (also each streamed chunk).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Completion {
    /// `cmpl-N`.
    pub id: String,
    /// `text_completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model.
    pub model: String,
    /// One choice.
    pub choices: Vec<CompletionChoice>,
    /// Token counts (absent from streamed chunks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// `POST /v1/embeddings`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingRequest {
    /// A served embedding model.
    pub model: String,
    /// The texts (one string or a list; at most the server's `max_batch_size` × 64).
    pub input: OneOrMany,
    /// `float` (default) or `base64` (little-endian f32 bytes, what OpenAI's Python client
    /// asks for).
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// Accepted for compatibility; must be the model's width when given.
    #[serde(default)]
    pub dimensions: Option<usize>,
    /// Accepted and ignored (OpenAI's end-user id).
    #[serde(default)]
    pub user: Option<String>,
}

/// An embedding vector, as floats or base64.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingVector {
    /// `encoding_format: float`.
    Float(Vec<f32>),
    /// `encoding_format: base64`.
    Base64(String),
}

/// One text's embedding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Embedding {
    /// `embedding`.
    pub object: String,
    /// Position of the text in `input`.
    pub index: usize,
    /// The (L2-normalised) vector.
    pub embedding: EmbeddingVector,
}

/// The answer of `POST /v1/embeddings`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingList {
    /// `list`.
    pub object: String,
    /// One per input, in order.
    pub data: Vec<Embedding>,
    /// The model.
    pub model: String,
    /// Token counts (`completion_tokens` 0).
    pub usage: Usage,
}

/// A served model in `GET /v1/models`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelCard {
    /// Its name.
    pub id: String,
    /// `model`.
    pub object: String,
    /// Unix seconds the server started.
    pub created: u64,
    /// `kiln`.
    pub owned_by: String,
    /// `chat`, `embedding` or `classifier`.
    pub kind: String,
}

/// The answer of `GET /v1/models`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelList {
    /// `list`.
    pub object: String,
    /// The models.
    pub data: Vec<ModelCard>,
}

/// `POST /v1/classify` with a JSON body (the raw-bytes form is `POST
/// /v1/classify?model=NAME&top_k=K` with an `image/*` body).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClassifyRequest {
    /// A served classifier.
    pub model: String,
    /// The image file (PNG or JPEG), base64 (standard alphabet; a `data:image/...;base64,`
    /// prefix is allowed).
    pub image: String,
    /// How many classes to return (default 5, at most the model's classes).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub top_k: Option<usize>,
}

/// The query of the raw-bytes form of `POST /v1/classify`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema, utoipa::IntoParams)]
pub struct ClassifyQuery {
    /// A served classifier.
    pub model: String,
    /// How many classes to return (default 5).
    #[serde(default)]
    pub top_k: Option<usize>,
}

/// One class of a classification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Prediction {
    /// Class name (the run's class names, else its index).
    pub label: String,
    /// Class index.
    pub index: usize,
    /// Softmax probability.
    pub probability: f32,
}

/// The answer of `POST /v1/classify`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Classification {
    /// The model.
    pub model: String,
    /// The most probable classes, most probable first.
    pub predictions: Vec<Prediction>,
}

/// `GET /health` and `GET /ready`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Status {
    /// `ok`, `loading` or `failed`.
    pub status: String,
    /// What failed to load, when something did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Checks completion settings (OpenAI's ranges) and returns them as Kiln's, with `max_tokens`
/// defaulting to `default_max_tokens` and no seed meaning a fresh one.
pub fn generate_options(
    params: &SamplingParams,
    default_max_tokens: usize,
) -> Result<kiln_transfer::chat::GenerateOptions, ApiError> {
    let temperature = params.temperature.unwrap_or(1.0);
    if !(temperature.is_finite() && (0.0..=2.0).contains(&temperature)) {
        return Err(ApiError::invalid(
            "temperature",
            format!("`temperature` must be in [0, 2], found {temperature}"),
        ));
    }
    let top_p = params.top_p.unwrap_or(1.0);
    if !(top_p.is_finite() && top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::invalid(
            "top_p",
            format!("`top_p` must be in (0, 1], found {top_p}"),
        ));
    }
    if let Some(n) = params.n
        && n != 1
    {
        return Err(ApiError::invalid(
            "n",
            format!("only `n` = 1 is supported, found {n}"),
        ));
    }
    let (field, max) = match (params.max_completion_tokens, params.max_tokens) {
        (Some(m), _) => ("max_completion_tokens", Some(m)),
        (None, m) => ("max_tokens", m),
    };
    if max == Some(0) {
        return Err(ApiError::invalid(
            field,
            format!("`{field}` must be at least 1"),
        ));
    }
    let stop = params
        .stop
        .clone()
        .map(OneOrMany::into_vec)
        .unwrap_or_default();
    if stop.len() > 4 {
        return Err(ApiError::invalid(
            "stop",
            format!("`stop` takes at most 4 strings, found {}", stop.len()),
        ));
    }
    if stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            "stop",
            "`stop` strings must not be empty",
        ));
    }
    let seed = params.seed.unwrap_or_else(fresh_seed);
    let greedy = temperature == 0.0;
    Ok(kiln_transfer::chat::GenerateOptions {
        max_new_tokens: max.map_or(default_max_tokens, |m| m as usize),
        sampling: kiln_models::llama::SamplingConfig {
            temperature: if greedy { 0.0 } else { temperature },
            top_k: None,
            top_p,
            min_p: 0.0,
            repetition_penalty: 1.0,
            seed,
        },
        stop,
    })
}

/// A seed for a request that gives none (OpenAI samples afresh each time).
fn fresh_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// Checks chat messages: at least one, roles `system`/`user`/`assistant`.
pub fn check_messages(messages: &[ChatMessage]) -> Result<(), ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "`messages` must hold at least one message",
        ));
    }
    for (i, m) in messages.iter().enumerate() {
        if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
            return Err(ApiError::invalid(
                format!("messages[{i}].role"),
                format!(
                    "`messages[{i}].role` must be system, user or assistant, found `{}`",
                    m.role
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_name_the_field() {
        let e = parse_json::<ChatCompletionRequest>(br#"{"model":"m","messages":[{"role":1}]}"#)
            .unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = parse_completion::<ChatCompletionRequest>(
            br#"{"model":"m","messages":[],"temperature":"hot"}"#,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"), "{e:?}");
        let e = parse_json::<ChatCompletionRequest>(b"{not json").unwrap_err();
        assert!(e.message.contains("not valid JSON"));
        let e = parse_json::<ChatCompletionRequest>(br#"{"messages":[]}"#).unwrap_err();
        assert!(e.message.contains("model"), "{e:?}");
    }

    #[test]
    fn sampling_settings_are_checked() {
        let ok = SamplingParams {
            temperature: Some(0.0),
            max_tokens: Some(5),
            stop: Some(OneOrMany::One("\n".into())),
            ..Default::default()
        };
        let options = generate_options(&ok, 256).unwrap();
        assert_eq!(options.max_new_tokens, 5);
        assert_eq!(options.sampling.temperature, 0.0);
        assert_eq!(options.stop, vec!["\n".to_string()]);
        for (bad, field) in [
            (
                SamplingParams {
                    temperature: Some(3.0),
                    ..Default::default()
                },
                "temperature",
            ),
            (
                SamplingParams {
                    top_p: Some(0.0),
                    ..Default::default()
                },
                "top_p",
            ),
            (
                SamplingParams {
                    n: Some(2),
                    ..Default::default()
                },
                "n",
            ),
            (
                SamplingParams {
                    max_tokens: Some(0),
                    ..Default::default()
                },
                "max_tokens",
            ),
            (
                SamplingParams {
                    stop: Some(OneOrMany::Many(vec!["a".into(); 5])),
                    ..Default::default()
                },
                "stop",
            ),
        ] {
            assert_eq!(
                generate_options(&bad, 10).unwrap_err().param.as_deref(),
                Some(field)
            );
        }
    }
}
