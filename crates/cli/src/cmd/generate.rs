//! `kiln generate`: Generate text with a trained language-model run (e.g. `kiln train char-lm`) or a

use super::prelude::*;

/// The arguments of `kiln generate`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Run folder of a language model trained by Kiln; with --model, the prompt.
    #[arg(value_name = "RUN_DIR|PROMPT")]
    run_dir: String,
    /// The text to continue (with --model it is the only positional argument).
    prompt: Option<String>,
    /// A pretrained LLM instead of a run: a .gguf file, a Hugging Face Llama folder
    /// (config.json, model.safetensors, tokenizer.json), a fetched model's name (`smollm2`,
    /// see `kiln fetch`), a fine-tuned LLM run folder or a LoRA adapter folder. The prompt is
    /// used as it is (no chat template); prompt and decode speeds go to stderr.
    #[arg(long)]
    model: Option<String>,
    /// (--model) A LoRA adapter folder (PEFT's layout) to merge into the model.
    #[arg(long, requires = "model")]
    adapter: Option<PathBuf>,
    /// (--model) Drop tokens less likely than P times the most likely one (0: off).
    #[arg(long, default_value_t = 0.0)]
    min_p: f64,
    /// (--model) Penalty on tokens already in the context (1: off).
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f64,
    /// (--model) Stop at this string (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// (--model) KV-cache length in tokens.
    #[arg(long, default_value_t = 2048)]
    context: usize,
    /// Where the datasets and models are.
    #[command(flatten)]
    data: DataDirArgs,
    /// Characters (tokens) to generate.
    #[arg(long, default_value_t = 200)]
    max_tokens: usize,
    /// Softmax temperature; 0 picks the most likely token (greedy).
    #[arg(long, default_value_t = 0.8)]
    temperature: f64,
    /// Always pick the most likely token (the same as --temperature 0).
    #[arg(long)]
    greedy: bool,
    /// Sample only among the K most likely tokens.
    #[arg(long)]
    top_k: Option<usize>,
    /// Nucleus sampling: only among the most likely tokens whose probability adds up to P
    /// (1: off).
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    /// Seed of the sampling.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let Args {
        run_dir,
        prompt,
        model,
        adapter,
        max_tokens,
        temperature,
        greedy,
        top_k,
        top_p,
        seed,
        min_p,
        repetition_penalty,
        stop,
        context,
        data: DataDirArgs { data_dir },
    } = args;
    use std::io::Write;
    // A fine-tuned LLM run given as the run folder: the same as --model RUN.
    let (model, run_dir, prompt) = match (model, prompt) {
        (None, Some(p)) if kiln_train::llm::is_llm_run(std::path::Path::new(&run_dir)) => {
            (Some(run_dir), p, None)
        }
        other => (other.0, run_dir, other.1),
    };
    if let Some(model) = model {
        anyhow::ensure!(
            prompt.is_none(),
            "with --model, give only the prompt (found two positional arguments)"
        );
        let args = llm::SamplingArgs {
            max_tokens,
            temperature,
            greedy,
            top_k,
            top_p,
            min_p,
            repetition_penalty,
            stop,
            seed,
            context,
        };
        let bundle = llm::load(&model, adapter.as_deref(), data_dir)?;
        return llm::generate(&bundle, &run_dir, &args);
    }
    let run_dir = PathBuf::from(run_dir);
    let Some(prompt) = prompt else {
        bail!("give the run folder and the prompt (or --model MODEL and the prompt)");
    };
    let temperature = if greedy { 0.0 } else { temperature };
    let sampling = kiln_models::transformer::Sampling::from_settings(temperature, top_k, top_p);
    let mut stdout = std::io::stdout().lock();
    write!(stdout, "{prompt}")?;
    kiln_train::lm::generate_from_run(
        &run_dir,
        &prompt,
        max_tokens,
        sampling,
        kiln_core::Seed(seed),
        &mut |piece| {
            write!(stdout, "{piece}")
                .and_then(|()| stdout.flush())
                .is_ok()
        },
    )
    .with_context(|| format!("generating with {}", run_dir.display()))?;
    writeln!(stdout)?;
    Ok(())
}
