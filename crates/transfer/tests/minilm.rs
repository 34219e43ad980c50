//! all-MiniLM-L6-v2 from the project's data dir reproduces sentence-transformers' reference
//! embedding (`models/all-MiniLM-L6-v2/reference.txt`): token ids exactly, all 384 values to
//! 1e-4; batching with padding changes nothing; bad files give errors naming them.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use kiln_transfer::{Error, SentenceEmbedder};

fn data_dir() -> PathBuf {
    let dir = PathBuf::from(
        std::env::var_os("KILN_DATA_DIR")
            .expect("KILN_DATA_DIR must point at the real datasets (see .cargo/config.toml)"),
    );
    let dir = if dir.is_relative() {
        // Cargo runs tests from the crate folder; the setting is relative to the workspace.
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(dir)
    } else {
        dir
    };
    assert!(
        dir.join("models/all-MiniLM-L6-v2").is_dir(),
        "models/all-MiniLM-L6-v2 not found in {}: set KILN_DATA_DIR",
        dir.display()
    );
    dir
}

struct Reference {
    sentence: String,
    token_ids: Vec<u32>,
    embedding: Vec<f32>,
}

fn reference(dir: &Path) -> Reference {
    let text = std::fs::read_to_string(dir.join("reference.txt")).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("reference.txt has no `{name}:` line"))
            .to_string()
    };
    Reference {
        sentence: field("sentence"),
        token_ids: field("token_ids")
            .trim_matches(['[', ']'])
            .split(", ")
            .map(|v| v.parse().unwrap())
            .collect(),
        embedding: field("embedding_full_384")
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect(),
    }
}

#[test]
fn minilm_reproduces_the_reference_embedding() {
    let dir = data_dir().join("models/all-MiniLM-L6-v2");
    let expected = reference(&dir);
    assert_eq!(expected.embedding.len(), 384);
    let device = Device::flex();
    let (embedder, report) = SentenceEmbedder::from_dir(&dir, &device).unwrap();
    // Every parameter loaded; only the pooler (and, in older files, position_ids) unused.
    assert_eq!(report.applied.len(), 101, "{}", report.summary());
    assert!(report.missing.is_empty() && report.mismatched.is_empty());
    assert!(
        report
            .unused
            .iter()
            .all(|k| k.contains("pooler") || k.contains("position_ids")),
        "{:?}",
        report.unused
    );
    assert_eq!(embedder.max_len(), 256);

    let batch = embedder.tokenize(&[&expected.sentence]).unwrap();
    assert_eq!(batch.ids[0], expected.token_ids);

    let got: Vec<f32> = embedder
        .embed(&[&expected.sentence])
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let worst = got
        .iter()
        .zip(&expected.embedding)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "max abs difference {worst}");
    eprintln!("all-MiniLM-L6-v2: max abs difference to the reference {worst:.2e}");
    let norm: f32 = got.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5);

    // In a padded batch (a short text and a longer one around it) the embedding is the same.
    let texts = [
        "Hi.",
        expected.sentence.as_str(),
        "Sentence embeddings map texts of any length to one vector of fixed size, so that similar meanings end up close together.",
    ];
    let batched = embedder.embed(&texts).unwrap();
    assert_eq!(batched.dims(), [3, 384]);
    let row: Vec<f32> = batched
        .clone()
        .slice([1..2, 0..384])
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let worst = row
        .iter()
        .zip(&got)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-5, "padding changed the embedding by {worst}");

    // Meaning: a paraphrase is closer than an unrelated sentence.
    let e = embedder
        .embed(&[
            "A fast brown fox leaps over a sleepy dog.",
            "The stock market fell sharply on Monday.",
        ])
        .unwrap();
    let sims: Vec<f32> = e
        .matmul(batched.slice([1..2, 0..384]).transpose())
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert!(sims[0] > 0.7 && sims[1] < 0.2, "{sims:?}");
}

#[test]
fn bad_folders_and_files_are_named() {
    let device = Device::flex();
    let src = data_dir().join("models/all-MiniLM-L6-v2");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    // No weights at all.
    let err = SentenceEmbedder::from_dir(dir, &device).unwrap_err();
    assert!(err.to_string().contains("model.safetensors"), "{err}");

    // A truncated safetensors file.
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let err = SentenceEmbedder::from_dir(dir, &device).unwrap_err();
    assert!(
        matches!(err, Error::Corrupt { .. }) && err.to_string().contains("model.safetensors"),
        "{err}"
    );

    // A checkpoint of another architecture: a wider model than the file.
    std::fs::write(dir.join("model.safetensors"), &bytes).unwrap();
    let config = std::fs::read_to_string(src.join("config.json"))
        .unwrap()
        .replace("\"intermediate_size\": 1536", "\"intermediate_size\": 2048");
    std::fs::write(dir.join("config.json"), config).unwrap();
    let err = SentenceEmbedder::from_dir(dir, &device).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::ShapeMismatch { .. })
            && msg.contains("pwff.linear_")
            && msg.contains("2048")
            && msg.contains("1536"),
        "{msg}"
    );

    // A deeper model than the file: layers the file lacks are named.
    let config = std::fs::read_to_string(src.join("config.json"))
        .unwrap()
        .replace("\"num_hidden_layers\": 6", "\"num_hidden_layers\": 7");
    std::fs::write(dir.join("config.json"), config).unwrap();
    let err = SentenceEmbedder::from_dir(dir, &device).unwrap_err();
    assert!(
        matches!(err, Error::MissingKeys { .. }) && err.to_string().contains("layers.6"),
        "{err}"
    );

    // A tokenizer that does not parse.
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    std::fs::write(dir.join("tokenizer.json"), "{ not json").unwrap();
    let err = SentenceEmbedder::from_dir(dir, &device).unwrap_err();
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}

#[test]
fn exported_weights_keep_hugging_face_names_and_round_trip_exactly() {
    use kiln_transfer::embed::bert_export_key_map;
    use kiln_transfer::{bert_key_map, load_weights, save_weights};

    let dir = data_dir().join("models/all-MiniLM-L6-v2");
    let device = Device::flex();
    let (embedder, _) = SentenceEmbedder::from_dir(&dir, &device).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("export/model.safetensors");
    let names = save_weights(embedder.encoder(), &out, &bert_export_key_map()).unwrap();
    // Exactly the original file's tensors, by their original names, minus those without a
    // counterpart (pooler, position_ids).
    let mut original = Vec::new();
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
    for key in header.as_object().unwrap().keys() {
        if !key.contains("pooler") && !key.contains("position_ids") && key != "__metadata__" {
            original.push(key.clone());
        }
    }
    original.sort();
    assert_eq!(names, original);

    // Load the export into a fresh encoder: bit-identical hidden states.
    let config = kiln_models::bert::BertConfig::minilm_l6();
    let fresh = config.init(&device).unwrap();
    let (reloaded, report) = load_weights(fresh, &out, &bert_key_map(), false).unwrap();
    assert!(report.unused.is_empty() && report.missing.is_empty());
    let batch = embedder.tokenize(&["Round trips keep every bit."]).unwrap();
    let a = embedder
        .encoder()
        .forward(batch.input_ids.clone(), None, None);
    let b = reloaded.forward(batch.input_ids, None, None);
    let a: Vec<f32> = a.into_data().try_to_vec().unwrap();
    let b: Vec<f32> = b.into_data().try_to_vec().unwrap();
    assert_eq!(a, b);
}
