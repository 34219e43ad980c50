//! `kiln chat`: Chat with a pretrained LLM through its chat template, one message per line of stdin

use super::prelude::*;

/// The arguments of `kiln chat`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// A .gguf file, a Hugging Face Llama folder, a fetched model's name (`smollm2`), a
    /// fine-tuned LLM run folder or a LoRA adapter folder (PEFT's layout, merged onto the base
    /// its adapter_config.json names).
    #[arg(long)]
    model: String,
    /// A LoRA adapter folder (PEFT's layout: adapter_config.json, adapter_model.safetensors)
    /// to merge into --model.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// A system message opening the conversation (default: the template's own, if any).
    #[arg(long)]
    system: Option<String>,
    #[command(flatten)]
    sampling: llm::SamplingArgs,
    /// Where the datasets and models are.
    #[command(flatten)]
    data: DataDirArgs,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let Args {
        model,
        adapter,
        system,
        sampling,
        data: DataDirArgs { data_dir },
    } = args;
    let bundle = llm::load(&model, adapter.as_deref(), data_dir)?;
    llm::chat(&bundle, system.as_deref(), &sampling)?;
    Ok(())
}
