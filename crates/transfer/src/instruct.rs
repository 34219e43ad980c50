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

/// A padded batch as tensors on `device`: the input ids `[rows, len]`, the flat positions
/// (`row · len + t`) that have a target, and those targets.
pub fn batch_tensors(
    batch: &PaddedBatch,
    device: &burn::tensor::Device,
) -> (
    burn::tensor::Tensor<2, burn::tensor::Int>,
    burn::tensor::Tensor<1, burn::tensor::Int>,
    burn::tensor::Tensor<1, burn::tensor::Int>,
) {
    use burn::tensor::{Tensor, TensorData};
    let ids: Vec<i64> = batch.ids.iter().map(|&i| i64::from(i)).collect();
    let (positions, targets): (Vec<i64>, Vec<i64>) = batch
        .targets
        .iter()
        .enumerate()
        .filter_map(|(p, t)| t.map(|t| (p as i64, i64::from(t))))
        .unzip();
    let n = positions.len();
    (
        Tensor::from_data(TensorData::new(ids, batch.shape), device),
        Tensor::from_data(TensorData::new(positions, [n]), device),
        Tensor::from_data(TensorData::new(targets, [n]), device),
    )
}

/// The next-token logits `[n, vocab]` at the flat `positions` of `tokens` `[rows, len]`
/// (right-padded: the causal mask keeps padding out of every real position). The output
/// projection runs on those positions only.
pub fn logits_at(
    model: &kiln_models::llama::Llama,
    tokens: burn::tensor::Tensor<2, burn::tensor::Int>,
    positions: burn::tensor::Tensor<1, burn::tensor::Int>,
) -> Result<burn::tensor::Tensor<2>> {
    let hidden = model.forward_hidden(tokens, None)?;
    let [b, t, d] = hidden.dims();
    let rows = hidden.reshape([b * t, d]).select(0, positions);
    Ok(model.lm_head.forward(rows))
}

/// Total negative log-likelihood (nats) and number of target tokens of `chats` under
/// `model`, in batches of `batch_size` (inference: no gradients are kept).
pub fn total_nll(
    model: &kiln_models::llama::Llama,
    chats: &[TokenizedChat],
    pad_id: u32,
    batch_size: usize,
) -> Result<(f64, usize)> {
    use burn::tensor::activation::log_softmax;
    let device = model.embed_tokens.weight.device();
    let (mut nll, mut count) = (0.0, 0);
    let mut order: Vec<usize> = (0..chats.len()).collect();
    order.sort_by_key(|&i| chats[i].ids.len());
    for group in order.chunks(batch_size.max(1)) {
        let picked: Vec<TokenizedChat> = group.iter().map(|&i| chats[i].clone()).collect();
        let batch = pad(&picked, pad_id);
        let (tokens, positions, targets) = batch_tensors(&batch, &device);
        let n = targets.dims()[0];
        if n == 0 {
            continue;
        }
        let logits = logits_at(model, tokens, positions)?;
        let picked = log_softmax(logits, 1).gather(1, targets.reshape([n, 1]));
        let sum: f64 = picked
            .sum()
            .into_data()
            .convert::<f64>()
            .try_to_vec::<f64>()
            .map_err(|e| Error::Invalid(format!("reading a loss: {e:?}")))?[0];
        nll -= sum;
        count += n;
    }
    Ok((nll, count))
}

/// For each prompt (a conversation without its answer), the log-probability of each of
/// `choices` as the assistant's reply, summed over the choice's tokens: what scoring a
/// multiple-choice question by likelihood computes (as lm-evaluation-harness does). Rows are
/// batched by length, right-padded.
pub fn choice_logprobs(
    model: &kiln_models::llama::Llama,
    template: &ChatTemplate,
    tokenizer: &kiln_data::text::TextTokenizer,
    prompts: &[Vec<Message>],
    choices: &[&str],
    batch_size: usize,
) -> Result<Vec<Vec<f64>>> {
    use burn::tensor::activation::log_softmax;
    let device = model.embed_tokens.weight.device();
    let choice_ids: Vec<Vec<u32>> = choices
        .iter()
        .map(|c| Ok(tokenizer.encode_plain(c)?))
        .collect::<Result<_>>()?;
    if choice_ids.iter().any(|c| c.is_empty()) {
        return Err(Error::Invalid("a choice tokenizes to no token".into()));
    }
    let prompt_ids: Vec<Vec<u32>> = prompts
        .iter()
        .map(|m| Ok(tokenizer.encode_plain(&template.render(m, true)?)?))
        .collect::<Result<_>>()?;
    // Each (prompt, choice) row: the prompt then the choice, the choice's tokens targets.
    let mut rows: Vec<(usize, usize, TokenizedChat)> = Vec::new();
    let single = choice_ids.iter().all(|c| c.len() == 1);
    for (p, ids) in prompt_ids.iter().enumerate() {
        if single {
            // One row per prompt: the next-token distribution after it scores every choice.
            let mut mask = vec![false; ids.len()];
            mask.push(true);
            let mut row = ids.clone();
            row.push(choice_ids[0][0]);
            rows.push((
                p,
                usize::MAX,
                TokenizedChat {
                    ids: row,
                    loss_mask: mask,
                },
            ));
        } else {
            for (c, choice) in choice_ids.iter().enumerate() {
                let mut row = ids.clone();
                row.extend(choice);
                let mut mask = vec![false; ids.len()];
                mask.extend(std::iter::repeat_n(true, choice.len()));
                rows.push((
                    p,
                    c,
                    TokenizedChat {
                        ids: row,
                        loss_mask: mask,
                    },
                ));
            }
        }
    }
    let mut out = vec![vec![0.0; choices.len()]; prompts.len()];
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| rows[i].2.ids.len());
    let pad_id = tokenizer.pad_id();
    let read = |t: burn::tensor::Tensor<2>| -> Result<Vec<f64>> {
        t.into_data()
            .convert::<f64>()
            .try_to_vec::<f64>()
            .map_err(|e| Error::Invalid(format!("reading log-probabilities: {e:?}")))
    };
    for group in order.chunks(batch_size.max(1)) {
        let picked: Vec<TokenizedChat> = group.iter().map(|&i| rows[i].2.clone()).collect();
        let batch = pad(&picked, pad_id);
        let (tokens, positions, targets) = batch_tensors(&batch, &device);
        let logp = log_softmax(logits_at(model, tokens, positions)?, 1);
        if single {
            let vocab = logp.dims()[1];
            let values = read(logp)?;
            for (k, &i) in group.iter().enumerate() {
                let p = rows[i].0;
                for (c, ids) in choice_ids.iter().enumerate() {
                    out[p][c] = values[k * vocab + ids[0] as usize];
                }
            }
        } else {
            let n = targets.dims()[0];
            let values = read(logp.gather(1, targets.reshape([n, 1])))?;
            // The targets come row by row, each row's choice tokens in order.
            let mut at = 0;
            for &i in group {
                let (p, c, chat) = &rows[i];
                let k = chat.targets();
                out[*p][*c] = values[at..at + k].iter().sum();
                at += k;
            }
        }
    }
    Ok(out)
}
