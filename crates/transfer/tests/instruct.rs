//! Instruction data through SmolLM2-135M-Instruct's real tokenizer and chat template: the
//! loss is on the assistant tokens exactly, batches pad with masks, readers name bad lines.

use std::path::PathBuf;

use kiln_transfer::chat::Message;
use kiln_transfer::fetch::{SMOLLM2, cache_dir, locate};
use kiln_transfer::instruct::{self, Conversation};
use kiln_transfer::llama::{ChatParts, chat_parts_from_gguf};

fn parts() -> ChatParts {
    let data_dir = kiln_data::data_dir::resolve(None);
    let path: PathBuf = locate(&SMOLLM2, &data_dir, &cache_dir()).unwrap_or_else(|e| panic!("{e}"));
    let gguf = kiln_gguf::GgufFile::open(&path).unwrap();
    chat_parts_from_gguf(&gguf).unwrap()
}

#[test]
fn the_loss_is_on_the_assistant_tokens_and_their_end_of_turn() {
    let ChatParts {
        tokenizer,
        template,
        ..
    } = parts();
    let template = template.expect("SmolLM2 has a chat template");
    let conversation = Conversation {
        messages: vec![
            Message::new("system", "Be brief."),
            Message::new("user", "Capital of France?"),
            Message::new("assistant", "Paris."),
            Message::new("user", "And of Italy?"),
            Message::new("assistant", "Rome."),
        ],
    };
    let chat = instruct::tokenize(&template, &tokenizer, &conversation, 4096).unwrap();
    assert_eq!(chat.ids.len(), chat.loss_mask.len());
    // The marked tokens decode to exactly the two answers, each with its end of turn.
    let mut spans = Vec::new();
    let mut current = Vec::new();
    for (id, on) in chat.ids.iter().zip(&chat.loss_mask) {
        if *on {
            current.push(*id);
        } else if !current.is_empty() {
            spans.push(tokenizer.decode(&std::mem::take(&mut current)).unwrap());
        }
    }
    if !current.is_empty() {
        spans.push(tokenizer.decode(&current).unwrap());
    }
    let end = tokenizer.token_to_id("<|im_end|>").unwrap();
    assert_eq!(spans.len(), 2, "{spans:?}");
    for (span, answer) in spans.iter().zip(["Paris.", "Rome."]) {
        assert!(span.starts_with(answer), "{span:?}");
    }
    let ends = chat
        .ids
        .iter()
        .zip(&chat.loss_mask)
        .filter(|(id, on)| **id == end && **on)
        .count();
    assert_eq!(ends, 2, "each answer's <|im_end|> is a target");
    // Nothing of the prompt is a target: the whole rendered prompt before the first answer
    // is masked.
    let prompt = tokenizer
        .encode_plain(&template.render(&conversation.messages[..2], true).unwrap())
        .unwrap();
    assert!(chat.loss_mask[..prompt.len()].iter().all(|m| !m));
    assert!(chat.loss_mask[prompt.len()]);

    // Padding: targets are the next token where it is an assistant token, nothing else.
    let short = instruct::tokenize(
        &template,
        &tokenizer,
        &Conversation::pair(None, "Hi", "Hello!"),
        4096,
    )
    .unwrap();
    let pad = tokenizer.pad_id();
    let batch = instruct::pad(&[chat.clone(), short.clone()], pad);
    let [rows, len] = batch.shape;
    assert_eq!((rows, len), (2, chat.ids.len()));
    let row1 = &batch.targets[len..2 * len];
    assert_eq!(row1.iter().flatten().count(), short.targets());
    assert!(batch.attention[len + short.ids.len()..].iter().all(|a| !a));
    assert_eq!(batch.ids[2 * len - 1], pad);
    let targets0: Vec<u32> = batch.targets[..len].iter().flatten().copied().collect();
    let marked: Vec<u32> = chat
        .ids
        .iter()
        .zip(&chat.loss_mask)
        .filter(|(_, m)| **m)
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(targets0, marked);

    // Truncation keeps what fits, and refuses a conversation left without an answer.
    let cut = instruct::tokenize(&template, &tokenizer, &conversation, prompt.len() + 2).unwrap();
    assert_eq!(cut.targets(), 2);
    assert!(instruct::tokenize(&template, &tokenizer, &conversation, prompt.len()).is_err());
}

#[test]
fn readers_take_messages_pairs_and_csv_columns_and_name_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("chats.jsonl");
    std::fs::write(
        &jsonl,
        concat!(
            r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}"#,
            "\n\n",
            r#"{"prompt": "2+2?", "response": "4", "system": "Be exact."}"#,
            "\n"
        ),
    )
    .unwrap();
    let read = instruct::read_jsonl(&jsonl).unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read[1], Conversation::pair(Some("Be exact."), "2+2?", "4"));
    for (bad, needle) in [
        (r#"{"prompt": "x"}"#, ":1:"),
        (
            r#"{"messages": [{"role": "user", "content": "x"}]}"#,
            "no assistant",
        ),
        (
            r#"{"messages": [{"role": "bot", "content": "x"}]}"#,
            "`bot`",
        ),
        ("not json", ":1:"),
    ] {
        std::fs::write(&jsonl, bad).unwrap();
        let e = instruct::read_jsonl(&jsonl).unwrap_err().to_string();
        assert!(
            e.contains(needle) && e.contains("chats.jsonl"),
            "{bad}: {e}"
        );
    }
    let csv = dir.path().join("pairs.csv");
    std::fs::write(
        &csv,
        "question,answer\nWhat is 1+1?,2\nColour of the sky?,blue\n",
    )
    .unwrap();
    let pairs = instruct::read_csv(&csv, "question", "answer").unwrap();
    assert_eq!(
        pairs[1],
        Conversation::pair(None, "Colour of the sky?", "blue")
    );
    assert!(instruct::read_csv(&csv, "prompt", "answer").is_err());

    // The reviews as an instruction task, split for validation by seed.
    let (train, _) =
        kiln_data::text::LabelledTexts::fine_food_reviews(&kiln_data::data_dir::resolve(None))
            .unwrap();
    let tasks = instruct::reviews_instructions(&train);
    assert_eq!(tasks.len(), train.texts.len());
    let answer = &tasks[0].messages[1].content;
    assert_eq!(answer, &train.classes[train.labels[0]]);
    assert!(tasks[0].messages[0].content.contains(&train.texts[0]));
    let (fit, valid) = instruct::split(tasks.clone(), 0.1, 7).unwrap();
    assert_eq!(fit.len() + valid.len(), tasks.len());
    assert_eq!(instruct::split(tasks, 0.1, 7).unwrap().1, valid);
}
