//! `kiln embed`: Sentence embeddings with a sentence-transformers BERT folder (default:

use super::prelude::*;

/// The arguments of `kiln embed`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Texts to embed.
    #[arg(required = true)]
    texts: Vec<String>,
    /// The model folder (config.json, model.safetensors, tokenizer.json, ...).
    #[arg(long)]
    model_dir: Option<PathBuf>,
    /// Print the texts' pairwise cosine similarities instead of the vectors.
    #[arg(long)]
    similarity: bool,
    /// Where the datasets and models are.
    #[command(flatten)]
    data: DataDirArgs,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let Args {
        texts,
        model_dir,
        similarity,
        data: DataDirArgs { data_dir },
    } = args;
    let dir = model_dir.unwrap_or_else(|| {
        kiln_transfer::embed::minilm_dir(&kiln_data::data_dir::resolve(data_dir))
    });
    let (embedder, _) =
        kiln_transfer::SentenceEmbedder::from_dir(&dir, &DeviceSpec::Flex.device())?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    if similarity {
        for (row, text) in embedder.similarities(&refs)?.iter().zip(&texts) {
            let row: Vec<String> = row.iter().map(|v| format!("{v:6.3}")).collect();
            println!("{}  {text}", row.join(" "));
        }
    } else {
        for (vector, text) in embedder.embed_vectors(&refs)?.iter().zip(&texts) {
            println!("{}", serde_json::json!({"text": text, "embedding": vector}));
        }
    }
    Ok(())
}
