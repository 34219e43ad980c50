//! `kiln serve`: an OpenAI-compatible HTTP server for chat LLMs, sentence embeddings and
//! image classifiers (`kiln_serve`).

use super::prelude::*;
use kiln_serve::{ModelKind, ModelSpec, ServeConfig};

/// The arguments of `kiln serve`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// A TOML config (host, port, limits, `[[model]]` tables with name, kind, path); the
    /// flags below add to it or replace its settings.
    #[arg(long)]
    config: Option<PathBuf>,
    /// A chat LLM as NAME=PATH (a .gguf file, a Hugging Face Llama folder, or `smollm2`).
    #[arg(long, value_name = "NAME=PATH")]
    chat: Vec<String>,
    /// A sentence-embedding model folder as NAME=DIR (`minilm` names all-MiniLM-L6-v2 in the
    /// data directory).
    #[arg(long, value_name = "NAME=DIR")]
    embedding: Vec<String>,
    /// A trained image-classification run folder as NAME=RUN (pruned and quantized runs too).
    #[arg(long, value_name = "NAME=RUN")]
    classifier: Vec<String>,
    /// Address to listen on [default: 127.0.0.1].
    #[arg(long)]
    host: Option<String>,
    /// Port (0: any free one) [default: 8080].
    #[arg(long)]
    port: Option<u16>,
    /// Largest request body in bytes [default: 8 MiB].
    #[arg(long)]
    max_body_bytes: Option<usize>,
    /// Requests handled at once (more get 429) [default: 64].
    #[arg(long)]
    max_concurrent_requests: Option<usize>,
    /// Generations decoded at once per chat model [default: 4].
    #[arg(long)]
    generation_workers: Option<usize>,
    /// KV-cache length per generation in tokens [default: 2048].
    #[arg(long)]
    context: Option<usize>,
    /// Seconds a request may take (then 504) [default: 300].
    #[arg(long)]
    request_timeout: Option<f64>,
    /// Inputs per embedding/classification batch [default: 32].
    #[arg(long)]
    max_batch_size: Option<usize>,
    /// Milliseconds the first input of a batch waits for others [default: 5].
    #[arg(long)]
    max_batch_delay_ms: Option<u64>,
    /// Compute threads of the tensor backend, shared by every model [default: one per core].
    #[arg(long)]
    threads: Option<usize>,
    /// Where the datasets and models are.
    #[command(flatten)]
    data: DataDirArgs,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => ServeConfig::load(path)?,
        None => ServeConfig::default(),
    };
    for (kind, specs) in [
        (ModelKind::Chat, &args.chat),
        (ModelKind::Embedding, &args.embedding),
        (ModelKind::Classifier, &args.classifier),
    ] {
        for spec in specs {
            config.models.push(ModelSpec::parse(kind, spec)?);
        }
    }
    if let Some(v) = args.host {
        config.host = v;
    }
    macro_rules! set {
        ($($field:ident = $value:expr),*) => {$(if let Some(v) = $value { config.$field = v; })*};
    }
    set!(
        port = args.port,
        max_body_bytes = args.max_body_bytes,
        max_concurrent_requests = args.max_concurrent_requests,
        generation_workers = args.generation_workers,
        context = args.context,
        request_timeout_secs = args.request_timeout,
        max_batch_size = args.max_batch_size,
        max_batch_delay_ms = args.max_batch_delay_ms,
        threads = args.threads
    );
    if args.data.data_dir.is_some() {
        config.data_dir = args.data.data_dir;
    }
    if config.models.is_empty() {
        bail!(
            "nothing to serve: give --chat, --embedding or --classifier, or a --config with [[model]] tables"
        );
    }
    let names: Vec<String> = config
        .models
        .iter()
        .map(|m| format!("{} ({})", m.name, m.kind.name()))
        .collect();
    if config.threads > 0 {
        // The process's compute pool (burn-flex and gemm run on rayon's global pool): the
        // binary's choice, made before any model is loaded.
        rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .build_global()
            .context("setting the compute threads")?;
    }
    eprintln!("loading {}", names.join(", "));
    kiln_serve::run(config, |addr| {
        // The address on stdout (one line), for scripts that start the server on port 0.
        println!("listening on http://{addr}");
        eprintln!("ready; Ctrl-C or SIGTERM stops after the requests in flight");
    })?;
    Ok(())
}
