//! Chat templates and text generation sessions over a [`LlmBundle`].
//!
//! [`ChatTemplate`] renders a model's Jinja chat template with minijinja, configured as
//! Hugging Face's `apply_chat_template` configures Jinja2 (`trim_blocks`, `lstrip_blocks`,
//! loop controls, `raise_exception`, Python string methods), so the prompt string is the one
//! the model was trained on. [`Generator`] turns text into a stream of text: it tokenizes,
//! runs [`kiln_models::llama::generate`] with the KV cache, decodes incrementally (never
//! emitting half a UTF-8 character), and stops at the model's end tokens or stop strings.
//! `kiln generate`, `kiln chat` and the server are front ends of it.

use std::ops::ControlFlow;

use kiln_models::llama::{GenerationStats, KvCache, Sampler, SamplingConfig, generate};
use serde::{Deserialize, Serialize};

use crate::llama::LlmBundle;
use crate::{Error, Result};

/// One chat message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Its text.
    pub content: String,
}

impl Message {
    /// A message from `role`.
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A model's Jinja chat template.
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
    source: String,
    bos: String,
    eos: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles `source`; `bos` and `eos` are the `bos_token` and `eos_token` it may use.
    pub fn new(source: &str, bos: &str, eos: &str) -> Result<Self> {
        let mut env = minijinja::Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| Error::Invalid(format!("chat template syntax: {e}")))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    message,
                ))
            },
        );
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| Error::Invalid(format!("the chat template does not compile: {e}")))?;
        Ok(Self {
            env,
            source: source.to_string(),
            bos: bos.into(),
            eos: eos.into(),
        })
    }

    /// The template's Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The `bos_token` it renders (may be empty).
    pub fn bos(&self) -> &str {
        &self.bos
    }

    /// The `eos_token` it renders (may be empty).
    pub fn eos(&self) -> &str {
        &self.eos
    }

    /// The prompt for `messages`, ending with the assistant's turn header when
    /// `add_generation_prompt`.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let template = self
            .env
            .get_template("chat")
            .map_err(|e| Error::Invalid(e.to_string()))?;
        template
            .render(minijinja::context! {
                messages => messages
                    .iter()
                    .map(|m| minijinja::context! { role => m.role.as_str(), content => m.content.as_str() })
                    .collect::<Vec<minijinja::Value>>(),
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos.as_str(),
                eos_token => self.eos.as_str(),
            })
            .map_err(|e| Error::Invalid(format!("rendering the chat template: {e}")))
    }
}

/// Settings of one generation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerateOptions {
    /// The most tokens to generate.
    pub max_new_tokens: usize,
    /// How tokens are picked.
    pub sampling: SamplingConfig,
    /// Strings that end the text (not included in it).
    pub stop: Vec<String>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 256,
            sampling: SamplingConfig::greedy(),
            stop: Vec::new(),
        }
    }
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end token or a stop string.
    Stop,
    /// The token budget.
    Length,
    /// The caller's callback.
    Cancelled,
}

/// The outcome of [`Generator::generate`].
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    /// The generated text (without the stop string or end token).
    pub text: String,
    /// The generated token ids (the end token included when one stopped it).
    pub tokens: Vec<u32>,
    /// Why it ended.
    pub finish: FinishReason,
    /// Token counts and timings.
    pub stats: GenerationStats,
}

/// Text in, streamed text out, over one model.
pub struct Generator<'a> {
    bundle: &'a LlmBundle,
    cache: KvCache,
    /// The tokens in `cache`, in order (a new prompt that starts with them reuses them).
    cached: Vec<u32>,
}

impl<'a> Generator<'a> {
    /// A generator with a KV cache for `context` tokens (capped at the model's context).
    pub fn new(bundle: &'a LlmBundle, context: usize) -> Self {
        Self {
            bundle,
            cache: bundle.model.new_cache(context),
            cached: Vec::new(),
        }
    }

    /// The bundle.
    pub fn bundle(&self) -> &LlmBundle {
        self.bundle
    }

    /// The chat prompt for `messages` (with the assistant header), through the model's
    /// template.
    pub fn chat_prompt(&self, messages: &[Message]) -> Result<String> {
        let template = self.bundle.template.as_ref().ok_or_else(|| {
            Error::Invalid(format!(
                "{} has no chat template; use plain generation",
                self.bundle.source.display()
            ))
        })?;
        template.render(messages, true)
    }

    /// Continues `prompt` (special tokens such as `<|im_start|>` in it are recognised),
    /// calling `on_text` with each new piece of text as soon as it is complete UTF-8 and
    /// cannot be the start of a stop string; `on_text` may cancel with `Break`.
    pub fn generate(
        &mut self,
        prompt: &str,
        options: &GenerateOptions,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Generation> {
        let ids = self.bundle.tokenizer.encode_plain(prompt)?;
        self.generate_ids(&ids, options, on_text)
    }

    /// [`Generator::generate`] from token ids. The longest prefix the prompt shares with the
    /// tokens already in the KV cache (the previous turns of a chat) is not computed again.
    pub fn generate_ids(
        &mut self,
        prompt: &[u32],
        options: &GenerateOptions,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Generation> {
        let shared = self
            .cached
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count()
            .min(prompt.len().saturating_sub(1));
        self.cache.truncate(shared);
        self.cached.truncate(shared);
        let result = self.run(prompt, options, on_text);
        match &result {
            Ok(g) => {
                self.cached = prompt.to_vec();
                self.cached
                    .extend_from_slice(&g.tokens[..g.tokens.len().saturating_sub(1)]);
                if self.cached.len() != self.cache.len() {
                    self.cache.clear();
                    self.cached.clear();
                }
            }
            Err(_) => {
                self.cache.clear();
                self.cached.clear();
            }
        }
        result
    }

    fn run(
        &mut self,
        prompt: &[u32],
        options: &GenerateOptions,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Generation> {
        let mut sampler = Sampler::new(options.sampling.clone())?;
        let stops = &self.bundle.stop_tokens;
        let tokenizer = &self.bundle.tokenizer;
        let mut tokens: Vec<u32> = Vec::new();
        // `emitted` bytes of the decoded text have gone to `on_text`.
        let mut emitted = 0usize;
        let mut text = String::new();
        let mut finish = FinishReason::Length;
        let mut failure: Option<Error> = None;
        let stats = generate(
            &self.bundle.model,
            prompt,
            &mut self.cache,
            options.max_new_tokens,
            stops,
            &mut sampler,
            &mut |token| {
                tokens.push(token);
                if stops.contains(&token) {
                    finish = FinishReason::Stop;
                    return ControlFlow::Break(());
                }
                let content: Vec<u32> = tokens
                    .iter()
                    .copied()
                    .filter(|t| !stops.contains(t))
                    .collect();
                text = match tokenizer.decode(&content) {
                    Ok(t) => t,
                    Err(e) => {
                        failure = Some(e.into());
                        return ControlFlow::Break(());
                    }
                };
                if let Some(at) = options
                    .stop
                    .iter()
                    .filter(|s| !s.is_empty())
                    .filter_map(|s| text.find(s.as_str()))
                    .min()
                {
                    text.truncate(at);
                    finish = FinishReason::Stop;
                    if at > emitted {
                        let _ = on_text(&text[emitted..]);
                        emitted = at;
                    }
                    return ControlFlow::Break(());
                }
                // Hold back an incomplete character (the byte-level decoder shows it as
                // U+FFFD) and any tail that could begin a stop string.
                let mut ready = text.len();
                if text.ends_with('\u{FFFD}') {
                    ready = text.trim_end_matches('\u{FFFD}').len();
                }
                for s in &options.stop {
                    for k in (1..s.len()).rev() {
                        if s.is_char_boundary(k) && text[..ready].ends_with(&s[..k]) {
                            ready -= k;
                            break;
                        }
                    }
                }
                if ready > emitted && text.is_char_boundary(ready) {
                    let flow = on_text(&text[emitted..ready]);
                    emitted = ready;
                    if flow.is_break() {
                        finish = FinishReason::Cancelled;
                        return ControlFlow::Break(());
                    }
                }
                ControlFlow::Continue(())
            },
        )?;
        if let Some(e) = failure {
            return Err(e);
        }
        if finish != FinishReason::Cancelled && emitted < text.len() {
            let _ = on_text(&text[emitted..]);
        }
        Ok(Generation {
            text,
            tokens,
            finish,
            stats,
        })
    }
}
