//! Text: a character-level corpus for language modelling (Jane Austen's novels, one held out
//! as the test text, validation blocks drawn from the others), labelled text from CSV, and a Hugging Face `tokenizer.json` tokenizer with
//! padding and attention masks.

use std::collections::BTreeSet;
use std::path::Path;
#[cfg(feature = "tokenizers")]
use std::path::PathBuf;
use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A character vocabulary. Id 0 is reserved for characters not seen when it was built.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CharVocab {
    /// Characters of ids `1..`, sorted.
    pub chars: Vec<char>,
}

impl CharVocab {
    /// The vocabulary of `text` (sorted distinct characters).
    pub fn build(text: &str) -> Self {
        let set: BTreeSet<char> = text.chars().collect();
        Self {
            chars: set.into_iter().collect(),
        }
    }

    /// Vocabulary size, counting the unknown id 0.
    pub fn len(&self) -> usize {
        self.chars.len() + 1
    }

    /// Always false: the unknown id is always there.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Ids of `text` (0 for unknown characters).
    pub fn encode(&self, text: &str) -> Vec<usize> {
        text.chars()
            .map(|c| self.chars.binary_search(&c).map_or(0, |i| i + 1))
            .collect()
    }

    /// Text of `ids` (`\u{fffd}` for the unknown id or ids out of range).
    pub fn decode(&self, ids: &[usize]) -> String {
        ids.iter()
            .map(|&i| {
                if i == 0 {
                    '\u{fffd}'
                } else {
                    self.chars.get(i - 1).copied().unwrap_or('\u{fffd}')
                }
            })
            .collect()
    }
}

/// A character-level corpus split into training, validation and test text.
#[derive(Clone, Debug)]
pub struct CharCorpus {
    /// Vocabulary built from the training text.
    pub vocab: CharVocab,
    /// Training ids.
    pub train: Vec<usize>,
    /// Validation ids: blocks of [`VALIDATION_BLOCK`] characters held out from the training
    /// text (see [`CharCorpus::split_validation`]).
    pub valid: Vec<usize>,
    /// Test ids: a text never trained or validated on (for Austen, *Persuasion*).
    pub test: Vec<usize>,
}

/// The six Jane Austen novels in `<data_dir>/text/jane-austen/`.
pub const AUSTEN_NOVELS: [&str; 6] = [
    "emma.txt",
    "mansfieldpark.txt",
    "northangerabbey.txt",
    "prideprejudice.txt",
    "sensesensibility.txt",
    "persuasion.txt",
];

/// The novel held out as the test text.
pub const AUSTEN_TEST: &str = "persuasion.txt";

/// Length in characters of the contiguous blocks a corpus's validation text is drawn in
/// (long enough that windows rarely straddle a cut, short enough for a fair sample).
pub const VALIDATION_BLOCK: usize = 16_384;

impl CharCorpus {
    /// Jane Austen: five novels for training and validation, *Persuasion* held out as the
    /// test text; `valid_fraction` of the five novels' text (in [`VALIDATION_BLOCK`]s drawn
    /// by `seed`) is held out for validation.
    pub fn jane_austen(data_dir: &Path, valid_fraction: f64, seed: u64) -> Result<Self> {
        let dir = data_dir.join("text").join("jane-austen");
        let mut train = String::new();
        let mut test = String::new();
        for name in AUSTEN_NOVELS {
            let path = dir.join(name);
            if !path.is_file() {
                return Err(Error::Missing {
                    dataset: "jane-austen".into(),
                    dir: dir.clone(),
                    files: AUSTEN_NOVELS.iter().map(|s| s.to_string()).collect(),
                });
            }
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            if name == AUSTEN_TEST {
                test.push_str(&text);
            } else {
                train.push_str(&text);
                train.push('\n');
            }
        }
        Self::split_validation(&train, &test, valid_fraction, seed)
    }

    /// A user's corpus: one UTF-8 text file, its last 10% (by characters, cut at a line
    /// break where there is one nearby) held out as the test text, `valid_fraction` of the
    /// rest held out for validation by `seed`.
    pub fn from_file(path: &Path, valid_fraction: f64, seed: u64) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let chars: Vec<char> = text.chars().collect();
        if chars.len() < 1_000 {
            return Err(Error::Invalid(format!(
                "{}: {} characters is too short a corpus to hold out test and validation text (at least 1,000)",
                path.display(),
                chars.len()
            )));
        }
        let mut cut = chars.len() * 9 / 10;
        if let Some(nl) = chars[cut..].iter().take(2_000).position(|&c| c == '\n') {
            cut += nl + 1;
        }
        let train: String = chars[..cut].iter().collect();
        let test: String = chars[cut..].iter().collect();
        Self::split_validation(&train, &test, valid_fraction, seed)
    }

    /// Builds the corpus from a training text and a test text: the training text is cut into
    /// blocks of [`VALIDATION_BLOCK`] characters (smaller texts: into 20 blocks), and a
    /// `valid_fraction` of them, chosen by `seed`, becomes the validation text; the
    /// vocabulary comes from the remaining training text.
    pub fn split_validation(
        train: &str,
        test: &str,
        valid_fraction: f64,
        seed: u64,
    ) -> Result<Self> {
        crate::split::check_valid_fraction(valid_fraction)?;
        let chars: Vec<char> = train.chars().collect();
        let block = VALIDATION_BLOCK.min(chars.len().div_ceil(20)).max(1);
        let blocks: Vec<&[char]> = chars.chunks(block).collect();
        let (fit, valid) =
            crate::split::validation_split(&vec![0; blocks.len()], valid_fraction, seed)?;
        let join =
            |idx: &[usize]| -> String { idx.iter().flat_map(|&i| blocks[i].iter()).collect() };
        Ok(Self::from_parts(&join(&fit), &join(&valid), test))
    }

    /// A corpus from three texts; the vocabulary comes from `train`.
    pub fn from_parts(train: &str, valid: &str, test: &str) -> Self {
        let vocab = CharVocab::build(train);
        Self {
            train: vocab.encode(train),
            valid: vocab.encode(valid),
            test: vocab.encode(test),
            vocab,
        }
    }

    /// Cross-entropy (nats per character) of the test text under the training text's
    /// unigram distribution (add-one smoothed): the baseline a language model must beat.
    pub fn unigram_cross_entropy(&self) -> f64 {
        let v = self.vocab.len();
        let mut counts = vec![1f64; v];
        for &id in &self.train {
            counts[id] += 1.0;
        }
        let total: f64 = counts.iter().sum();
        let nll: f64 = self.test.iter().map(|&id| -(counts[id] / total).ln()).sum();
        nll / self.test.len().max(1) as f64
    }
}

/// Windows of `seq_len + 1` ids: the model reads the first `seq_len` and predicts the last
/// `seq_len`.
#[derive(Clone, Debug)]
pub struct SequenceDataset {
    ids: Arc<Vec<usize>>,
    seq_len: usize,
    starts: Vec<usize>,
}

impl SequenceDataset {
    /// Non-overlapping windows over `ids` (at most `max_windows`, evenly spaced over the text,
    /// when given).
    pub fn new(ids: Vec<usize>, seq_len: usize, max_windows: Option<usize>) -> Result<Self> {
        if seq_len == 0 || ids.len() < seq_len + 1 {
            return Err(Error::Invalid(format!(
                "a text of {} tokens has no window of {} + 1 tokens",
                ids.len(),
                seq_len
            )));
        }
        let total = (ids.len() - 1) / seq_len;
        let n = max_windows.map_or(total, |m| m.min(total)).max(1);
        let starts = (0..n).map(|i| (i * total / n) * seq_len).collect();
        Ok(Self {
            ids: Arc::new(ids),
            seq_len,
            starts,
        })
    }
}

/// One window.
#[derive(Clone, Debug)]
pub struct SequenceItem {
    /// `seq_len + 1` ids.
    pub ids: Vec<usize>,
}

impl Dataset<SequenceItem> for SequenceDataset {
    fn get(&self, index: usize) -> Result<SequenceItem, DatasetError> {
        let s = self.starts[index];
        Ok(SequenceItem {
            ids: self.ids[s..s + self.seq_len + 1].to_vec(),
        })
    }

    fn len(&self) -> usize {
        self.starts.len()
    }
}

/// A batch of next-token prediction windows.
#[derive(Clone, Debug)]
pub struct SequenceBatch {
    /// `[batch, seq_len]` input ids.
    pub inputs: Tensor<2, Int>,
    /// `[batch, seq_len]` target ids (inputs shifted by one).
    pub targets: Tensor<2, Int>,
}

/// Batches [`SequenceItem`]s.
#[derive(Clone, Debug, Default)]
pub struct SequenceBatcher;

impl Batcher<SequenceItem, SequenceBatch> for SequenceBatcher {
    fn batch(&self, items: Vec<SequenceItem>, device: &Device) -> SequenceBatch {
        let n = items.len();
        let len = items.first().map_or(0, |i| i.ids.len() - 1);
        let mut inputs = Vec::with_capacity(n * len);
        let mut targets = Vec::with_capacity(n * len);
        for item in &items {
            inputs.extend(item.ids[..len].iter().map(|&i| i as i64));
            targets.extend(item.ids[1..].iter().map(|&i| i as i64));
        }
        SequenceBatch {
            inputs: Tensor::from_data(TensorData::new(inputs, [n, len]), device),
            targets: Tensor::from_data(TensorData::new(targets, [n, len]), device),
        }
    }
}

/// Labelled texts (e.g. reviews with a class column).
#[derive(Clone, Debug, PartialEq)]
pub struct LabelledTexts {
    /// The texts.
    pub texts: Vec<String>,
    /// Class index of each text.
    pub labels: Vec<usize>,
    /// Class names, indexed by label (sorted).
    pub classes: Vec<String>,
}

impl LabelledTexts {
    /// The texts at `indices`, in that order (same classes).
    pub fn subset(&self, indices: &[usize]) -> Self {
        Self {
            texts: indices.iter().map(|&i| self.texts[i].clone()).collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            classes: self.classes.clone(),
        }
    }

    /// Splits off `fraction` of the texts for validation (stratified by class, seeded):
    /// `(train, valid)`.
    pub fn split_validation(&self, fraction: f64, seed: u64) -> Result<(Self, Self)> {
        let (train, valid) = crate::split::validation_split(&self.labels, fraction, seed)?;
        Ok((self.subset(&train), self.subset(&valid)))
    }

    /// Reads a CSV with a header, taking the text from `text_column` and the class from
    /// `label_column`. Classes are the sorted distinct labels, unless `classes` fixes them
    /// (so train and test files agree); an unknown label is then an error naming the line.
    pub fn read_csv(
        path: &Path,
        text_column: &str,
        label_column: &str,
        classes: Option<&[String]>,
    ) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(io(path))?;
        let mut reader = csv::Reader::from_reader(bytes.as_slice());
        let headers = reader
            .headers()
            .map_err(|e| Error::Parse {
                path: path.to_path_buf(),
                line: 1,
                reason: e.to_string(),
            })?
            .clone();
        let find = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| Error::Parse {
                    path: path.to_path_buf(),
                    line: 1,
                    reason: format!(
                        "no column `{name}` (columns: {})",
                        headers.iter().collect::<Vec<_>>().join(", ")
                    ),
                })
        };
        let (ti, li) = (find(text_column)?, find(label_column)?);
        let mut texts = Vec::new();
        let mut raw_labels = Vec::new();
        for (i, record) in reader.records().enumerate() {
            let line = i + 2;
            let record = record.map_err(|e| Error::Parse {
                path: path.to_path_buf(),
                line,
                reason: e.to_string(),
            })?;
            let (Some(text), Some(label)) = (record.get(ti), record.get(li)) else {
                return Err(Error::Parse {
                    path: path.to_path_buf(),
                    line,
                    reason: format!("expected {} columns, found {}", headers.len(), record.len()),
                });
            };
            texts.push(text.to_string());
            raw_labels.push((line, label.to_string()));
        }
        let classes: Vec<String> = match classes {
            Some(c) => c.to_vec(),
            None => raw_labels
                .iter()
                .map(|(_, l)| l.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
        };
        let labels = raw_labels
            .into_iter()
            .map(|(line, l)| {
                classes
                    .iter()
                    .position(|c| *c == l)
                    .ok_or_else(|| Error::Parse {
                        path: path.to_path_buf(),
                        line,
                        reason: format!("label `{l}` is not one of {classes:?}"),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            texts,
            labels,
            classes,
        })
    }

    /// The fine-food reviews (`<data_dir>/text/fine-foods-reviews/{train,test}.csv`, columns
    /// `review` and `score`, classes `great` / `other`).
    pub fn fine_food_reviews(data_dir: &Path) -> Result<(Self, Self)> {
        let dir = data_dir.join("text").join("fine-foods-reviews");
        for f in ["train.csv", "test.csv"] {
            if !dir.join(f).is_file() {
                return Err(Error::Missing {
                    dataset: "fine-foods-reviews".into(),
                    dir: dir.clone(),
                    files: vec!["train.csv".into(), "test.csv".into()],
                });
            }
        }
        let train = Self::read_csv(&dir.join("train.csv"), "review", "score", None)?;
        let test = Self::read_csv(
            &dir.join("test.csv"),
            "review",
            "score",
            Some(&train.classes),
        )?;
        Ok((train, test))
    }
}

#[cfg(feature = "tokenizers")]
/// A Hugging Face tokenizer (`tokenizer.json`) producing fixed-length id sequences and padding
/// masks.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    pad_id: u32,
}

#[cfg(feature = "tokenizers")]
impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TextTokenizer({})", self.path.display())
    }
}

/// Token ids and their padding mask for one text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// Ids, padded to the requested length.
    pub ids: Vec<u32>,
    /// True for real tokens, false for padding (Hugging Face's `attention_mask`).
    pub attention: Vec<bool>,
}

#[cfg(feature = "tokenizers")]
impl TextTokenizer {
    /// Loads `tokenizer.json`. Its own padding and truncation settings are turned off; Kiln pads
    /// and truncates per call.
    pub fn from_file(path: &Path) -> Result<Self> {
        let mut inner = tokenizers::Tokenizer::from_file(path).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            line: 0,
            reason: format!("not a tokenizer.json: {e}"),
        })?;
        let pad_id = inner.get_padding().map_or(0, |p| p.pad_id);
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| {
            Error::Invalid(format!("disabling truncation of {}: {e}", path.display()))
        })?;
        Ok(Self {
            inner,
            path: path.to_path_buf(),
            pad_id,
        })
    }

    /// A tokenizer from the text of a `tokenizer.json` (e.g. one built from a GGUF file's
    /// vocabulary); `source` names it in errors.
    pub fn from_json(json: &str, source: &Path) -> Result<Self> {
        let inner: tokenizers::Tokenizer = json.parse().map_err(|e| Error::Parse {
            path: source.to_path_buf(),
            line: 0,
            reason: format!("not a valid tokenizer: {e}"),
        })?;
        let pad_id = inner.get_padding().map_or(0, |p| p.pad_id);
        Ok(Self {
            inner,
            path: source.to_path_buf(),
            pad_id,
        })
    }

    /// Encodes `text` as it is: special tokens written in it (`<|im_start|>`) are recognised,
    /// and nothing is added around it (what a chat prompt already rendered needs).
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Invalid(format!("tokenizing with {}: {e}", self.path.display())))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text of `ids` (special tokens left out).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| Error::Invalid(format!("decoding with {}: {e}", self.path.display())))
    }

    /// The id of a token string (`<|im_end|>`), if the vocabulary has it.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The string of a token id, if there is one.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The tokenizer as `tokenizer.json` text (what Hugging Face's `tokenizers` reads).
    pub fn to_json(&self) -> Result<String> {
        self.inner
            .to_string(false)
            .map_err(|e| Error::Invalid(format!("serialising {}: {e}", self.path.display())))
    }

    /// The padding id (from the file's padding settings; 0 when it has none).
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Encodes `text` with special tokens (e.g. `[CLS] ... [SEP]`), without padding.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| Error::Invalid(format!("tokenizing with {}: {e}", self.path.display())))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Encodes `text`, truncated to `max_len` (keeping the final special token) and padded to
    /// `max_len`.
    pub fn encode_padded(&self, text: &str, max_len: usize) -> Result<Encoded> {
        let mut ids = self.encode(text)?;
        if ids.len() > max_len {
            let last = *ids.last().unwrap_or(&self.pad_id);
            ids.truncate(max_len);
            if let Some(end) = ids.last_mut() {
                *end = last;
            }
        }
        let real = ids.len();
        ids.resize(max_len, self.pad_id);
        let attention = (0..max_len).map(|i| i < real).collect();
        Ok(Encoded { ids, attention })
    }
}

/// A batch of tokenized texts with labels.
#[derive(Clone, Debug)]
pub struct TokenBatch {
    /// `[batch, seq]` ids.
    pub ids: Tensor<2, Int>,
    /// `[batch, seq]` true at padding.
    pub mask_pad: Tensor<2, Bool>,
    /// `[batch]` class indices.
    pub targets: Tensor<1, Int>,
}

/// One tokenized, labelled text.
#[derive(Clone, Debug)]
pub struct TokenItem {
    /// Padded ids.
    pub encoded: Encoded,
    /// Class index.
    pub label: usize,
}

/// Tokenized labelled texts as a burn dataset (tokenized once, up front).
#[derive(Clone, Debug)]
pub struct TokenDataset {
    items: Arc<Vec<TokenItem>>,
}

impl TokenDataset {
    #[cfg(feature = "tokenizers")]
    /// Tokenizes every text to `max_len`.
    pub fn new(texts: &LabelledTexts, tokenizer: &TextTokenizer, max_len: usize) -> Result<Self> {
        let items = texts
            .texts
            .iter()
            .zip(&texts.labels)
            .map(|(t, &label)| {
                Ok(TokenItem {
                    encoded: tokenizer.encode_padded(t, max_len)?,
                    label,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            items: Arc::new(items),
        })
    }
}

impl Dataset<TokenItem> for TokenDataset {
    fn get(&self, index: usize) -> Result<TokenItem, DatasetError> {
        Ok(self.items[index].clone())
    }

    fn len(&self) -> usize {
        self.items.len()
    }
}

/// Batches [`TokenItem`]s.
#[derive(Clone, Debug, Default)]
pub struct TokenBatcher;

impl Batcher<TokenItem, TokenBatch> for TokenBatcher {
    fn batch(&self, items: Vec<TokenItem>, device: &Device) -> TokenBatch {
        let n = items.len();
        let len = items.first().map_or(0, |i| i.encoded.ids.len());
        let ids: Vec<i64> = items
            .iter()
            .flat_map(|i| i.encoded.ids.iter().map(|&x| i64::from(x)))
            .collect();
        let pad: Vec<bool> = items
            .iter()
            .flat_map(|i| i.encoded.attention.iter().map(|&a| !a))
            .collect();
        let targets: Vec<i64> = items.iter().map(|i| i.label as i64).collect();
        TokenBatch {
            ids: Tensor::from_data(TensorData::new(ids, [n, len]), device),
            mask_pad: Tensor::from_data(TensorData::new(pad, [n, len]), device),
            targets: Tensor::from_data(TensorData::new(targets, [n]), device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_vocab_round_trips() {
        let vocab = CharVocab::build("hello world");
        assert_eq!(vocab.len(), 9); // 8 distinct characters + unknown
        let ids = vocab.encode("hold");
        assert_eq!(vocab.decode(&ids), "hold");
        assert_eq!(vocab.encode("z"), vec![0]);
    }

    #[test]
    fn windows_shift_by_one() {
        let ds = SequenceDataset::new((0..10).collect(), 3, None).unwrap();
        assert_eq!(ds.len(), 3);
        assert_eq!(ds.get(1).unwrap().ids, vec![3, 4, 5, 6]);
        let batch = SequenceBatcher.batch(vec![ds.get(0).unwrap()], &Device::flex());
        assert_eq!(
            batch
                .inputs
                .into_data()
                .convert::<i64>()
                .try_to_vec::<i64>()
                .unwrap(),
            vec![0, 1, 2]
        );
        assert_eq!(
            batch
                .targets
                .into_data()
                .convert::<i64>()
                .try_to_vec::<i64>()
                .unwrap(),
            vec![1, 2, 3]
        );
        assert!(SequenceDataset::new(vec![1, 2], 3, None).is_err());
    }

    #[test]
    fn unigram_baseline_is_the_entropy_for_matching_text() {
        // Two equally frequent characters: about ln 2 nats per character.
        let corpus = CharCorpus::from_parts(&"ab".repeat(1000), "", &"ab".repeat(10));
        assert!((corpus.unigram_cross_entropy() - 2f64.ln()).abs() < 0.01);
    }

    #[test]
    fn validation_blocks_come_from_the_training_text_and_depend_on_the_seed() {
        let train: String = (0..40_000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let a = CharCorpus::split_validation(&train, "zzz", 0.1, 1).unwrap();
        let b = CharCorpus::split_validation(&train, "zzz", 0.1, 2).unwrap();
        // 40,000 characters in blocks of 2,000 (a twentieth): 2 for validation.
        assert_eq!((a.train.len(), a.valid.len()), (36_000, 4_000));
        assert_eq!(a.test.len(), 3);
        assert_ne!(a.valid, b.valid);
        assert_eq!(a.train.len() + a.valid.len(), b.train.len() + b.valid.len());
        assert!(CharCorpus::split_validation(&train, "", 0.0, 1).is_err());
    }
}
