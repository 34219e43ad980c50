//! `kiln export`: Write a chat LLM (a fine-tuned run, its LoRA adapters merged, or any model
//! `--model` takes) as a GGUF file or a Hugging Face safetensors folder.

use super::prelude::*;

/// The arguments of `kiln export`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// A fine-tuned LLM run folder (`kiln finetune --from MODEL.gguf`), a LoRA adapter folder
    /// (PEFT's layout), a .gguf file, a Hugging Face Llama folder or a fetched model's name.
    model: String,
    /// A LoRA adapter folder (PEFT's layout: adapter_config.json, adapter_model.safetensors)
    /// to merge into the model before writing it.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// gguf (one file) or safetensors (a folder: config.json, model.safetensors,
    /// tokenizer.json, tokenizer_config.json).
    #[arg(long, default_value = "gguf")]
    format: String,
    /// How matrices are stored: f16 (default), q8_0 (GGUF), f32, bf16 (safetensors).
    #[arg(long = "type", default_value = "f16")]
    weight_type: String,
    /// The file (gguf) or folder (safetensors) to write.
    #[arg(long)]
    out: PathBuf,
    /// Where the datasets and models are.
    #[command(flatten)]
    data: DataDirArgs,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let format: kiln_train::llm::ExportFormat = args.format.parse()?;
    let ty: kiln_transfer::export::WeightType = args.weight_type.parse()?;
    let data_dir = kiln_data::data_dir::resolve(args.data.data_dir);
    let started = std::time::Instant::now();
    let bundle = kiln_train::llm::export(
        &args.model,
        args.adapter.as_deref(),
        &data_dir,
        &args.out,
        format,
        ty,
    )
    .with_context(|| format!("exporting {}", args.model))?;
    println!(
        "wrote {} ({} as {}) from {} in {:.1}s",
        args.out.display(),
        args.format,
        args.weight_type,
        bundle.format,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
