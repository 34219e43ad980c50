//! Instruction data for adapting a chat LLM: conversations read from JSONL (`{"messages":
//! [...]}` or `{"prompt", "response"[, "system"]}` lines) or from a CSV file's prompt and
//! response columns, rendered through the model's own chat template and tokenized with the
//! loss on the assistant tokens only (the prompt tokens masked, as TRL's
//! `assistant_only_loss` does), padded into batches with attention masks, with a seeded
//! validation split. The fine-food reviews become an instruction task
//! ([`reviews_instructions`]).

use std::path::Path;

use serde::Deserialize;

use crate::chat::{ChatTemplate, Message};
use crate::{Error, Result};

/// One training conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversation {
    /// The messages; at least one is the assistant's (the ones the loss is on).
    pub messages: Vec<Message>,
}

#[derive(Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum Line {
    Messages {
        messages: Vec<Message>,
    },
    Pair {
        prompt: String,
        response: String,
        #[serde(default)]
        system: Option<String>,
    },
}

fn invalid(path: &Path, line: usize, reason: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{}:{line}: {reason}", path.display()))
}

impl Conversation {
    /// A prompt and its answer (with an optional system message first).
    pub fn pair(system: Option<&str>, prompt: &str, response: &str) -> Self {
        let mut messages = Vec::new();
        if let Some(s) = system {
            messages.push(Message::new("system", s));
        }
        messages.push(Message::new("user", prompt));
        messages.push(Message::new("assistant", response));
        Self { messages }
    }

    fn check(&self) -> std::result::Result<(), String> {
        if let Some(m) = self
            .messages
            .iter()
            .find(|m| !matches!(m.role.as_str(), "system" | "user" | "assistant"))
        {
            return Err(format!(
                "role `{}`: expected system, user or assistant",
                m.role
            ));
        }
        if !self.messages.iter().any(|m| m.role == "assistant") {
            return Err("no assistant message to learn from".into());
        }
        Ok(())
    }
}

/// Reads a JSONL file: each non-empty line `{"messages": [{"role", "content"}, ...]}` or
/// `{"prompt", "response"[, "system"]}`; an error names the file and line.
pub fn read_jsonl(path: &Path) -> Result<Vec<Conversation>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(line).map_err(|_| {
            invalid(
                path,
                i + 1,
                "expected {\"messages\": [...]} or {\"prompt\": ..., \"response\": ...}",
            )
        })?;
        let conversation = match parsed {
            Line::Messages { messages } => Conversation { messages },
            Line::Pair {
                prompt,
                response,
                system,
            } => Conversation::pair(system.as_deref(), &prompt, &response),
        };
        conversation
            .check()
            .map_err(|reason| invalid(path, i + 1, reason))?;
        out.push(conversation);
    }
    if out.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no conversations",
            path.display()
        )));
    }
    Ok(out)
}

/// Reads a CSV file's `prompt` and `response` columns as one conversation per row.
pub fn read_csv(path: &Path, prompt: &str, response: &str) -> Result<Vec<Conversation>> {
    let table = kiln_data::tabular::Table::read_csv(path)?;
    let (p, r) = (table.column(prompt)?, table.column(response)?);
    Ok(table
        .rows
        .iter()
        .map(|row| Conversation::pair(None, &row[p], &row[r]))
        .collect())
}

/// The question of the reviews instruction task.
pub const REVIEW_QUESTION: &str = "Is this review great or other? Answer with one word.";

/// The fine-food reviews as an instruction task: the user asks [`REVIEW_QUESTION`] about
/// the review, the assistant answers its label (`great` or `other`).
pub fn reviews_instructions(reviews: &kiln_data::text::LabelledTexts) -> Vec<Conversation> {
    reviews
        .texts
        .iter()
        .zip(&reviews.labels)
        .map(|(text, &label)| {
            Conversation::pair(
                None,
                &format!("{REVIEW_QUESTION}\n\nReview: {text}"),
                &reviews.classes[label],
            )
        })
        .collect()
}

/// A tokenized conversation: `loss_mask[i]` says whether `ids[i]` is a target (an
/// assistant token, its end-of-turn token included), predicted from `ids[..i]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizedChat {
    /// Token ids of the whole rendered conversation.
    pub ids: Vec<u32>,
    /// True at the assistant tokens.
    pub loss_mask: Vec<bool>,
}

impl TokenizedChat {
    /// How many tokens the loss is on.
    pub fn targets(&self) -> usize {
        self.loss_mask.iter().filter(|&&m| m).count()
    }
}

/// Renders `conversation` through `template` and tokenizes it with `tokenizer`, marking the
/// assistant tokens: each assistant turn is the tokens between the conversation up to it
/// rendered with the generation prompt and the conversation including it. Longer than
/// `max_len` tokens: truncated at the end (an error if no assistant token is left).
pub fn tokenize(
    template: &ChatTemplate,
    tokenizer: &kiln_data::text::TextTokenizer,
    conversation: &Conversation,
    max_len: usize,
) -> Result<TokenizedChat> {
    conversation.check().map_err(Error::Invalid)?;
    let messages = &conversation.messages;
    let full = tokenizer.encode_plain(&template.render(messages, false)?)?;
    let mut loss_mask = vec![false; full.len()];
    for (i, m) in messages.iter().enumerate() {
        if m.role != "assistant" {
            continue;
        }
        let before = tokenizer.encode_plain(&template.render(&messages[..i], true)?)?;
        let through = tokenizer.encode_plain(&template.render(&messages[..=i], false)?)?;
        if !full.starts_with(&through) || !through.starts_with(&before) {
            return Err(Error::Invalid(format!(
                "the chat template's rendering of turn {} does not tokenize as a prefix of the conversation (a template that rewrites earlier turns)",
                i + 1
            )));
        }
        for mask in &mut loss_mask[before.len()..through.len()] {
            *mask = true;
        }
    }
    let mut ids = full;
    if ids.len() > max_len {
        ids.truncate(max_len);
        loss_mask.truncate(max_len);
    }
    let chat = TokenizedChat { ids, loss_mask };
    if chat.targets() == 0 {
        return Err(Error::Invalid(format!(
            "no assistant token within the first {max_len} tokens"
        )));
    }
    Ok(chat)
}

/// A padded batch of tokenized conversations, row-major `[rows, len]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaddedBatch {
    /// Rows and length (the longest conversation).
    pub shape: [usize; 2],
    /// Input ids, padded with the pad id.
    pub ids: Vec<u32>,
    /// True at real tokens (attention), false at padding.
    pub attention: Vec<bool>,
    /// The next-token target of each position (`ids` shifted left), or `None` where the loss
    /// is off (prompt tokens, padding, the last position).
    pub targets: Vec<Option<u32>>,
}

/// Pads `chats` to the longest, with next-token targets on the assistant tokens only.
pub fn pad(chats: &[TokenizedChat], pad_id: u32) -> PaddedBatch {
    let len = chats.iter().map(|c| c.ids.len()).max().unwrap_or(0);
    let rows = chats.len();
    let mut batch = PaddedBatch {
        shape: [rows, len],
        ids: vec![pad_id; rows * len],
        attention: vec![false; rows * len],
        targets: vec![None; rows * len],
    };
    for (r, c) in chats.iter().enumerate() {
        let row = r * len;
        for (t, &id) in c.ids.iter().enumerate() {
            batch.ids[row + t] = id;
            batch.attention[row + t] = true;
            if t + 1 < c.ids.len() && c.loss_mask[t + 1] {
                batch.targets[row + t] = Some(c.ids[t + 1]);
            }
        }
    }
    batch
}

/// Splits `conversations` into training and validation parts (`valid_fraction` of them,
/// drawn by `seed`).
pub fn split(
    conversations: Vec<Conversation>,
    valid_fraction: f64,
    seed: u64,
) -> Result<(Vec<Conversation>, Vec<Conversation>)> {
    let (train, valid) =
        kiln_data::split::validation_split(&vec![0; conversations.len()], valid_fraction, seed)?;
    let pick = |idx: &[usize]| idx.iter().map(|&i| conversations[i].clone()).collect();
    Ok((pick(&train), pick(&valid)))
}
