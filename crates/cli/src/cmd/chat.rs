//! `kiln chat`: Chat with a pretrained LLM through its chat template, one message per line of stdin

use super::prelude::*;

/// The arguments of `kiln chat`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// A .gguf file, a Hugging Face Llama folder or a fetched model's name (`smollm2`).
    #[arg(long)]
    model: String,
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
        system,
        sampling,
        data: DataDirArgs { data_dir },
    } = args;
    let bundle = llm::load(&model, data_dir)?;
    llm::chat(&bundle, system.as_deref(), &sampling)?;
    Ok(())
}
