//! `kiln summary`: Print a model's per-layer summary (output shapes, parameters, mult-adds).

use super::prelude::*;

/// The arguments of `kiln summary`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Preset name (see `kiln models`), or a pretrained LLM (a .gguf file, a Hugging
    /// Face Llama folder, `smollm2`); optional with --config or --run.
    model: Option<String>,
    /// A run folder: the trained model's summary, with its non-zero parameters per layer
    /// (what pruning left).
    #[arg(long, conflicts_with_all = ["model", "config", "input"])]
    run: Option<PathBuf>,
    /// Model config file (TOML or JSON) instead of, or overriding, the preset's config.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Input shape as C,H,W (default: the preset's input).
    #[arg(long, value_delimiter = ',', num_args = 3)]
    input: Option<Vec<usize>>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub(crate) fn run(args: Args) -> Result<()> {
    match args {
        Args {
            run: Some(run),
            format,
            ..
        } => {
            let spec = TrainConfig::load(&run.join("config.toml"))?;
            let device = spec.recipe.device.autodiff_device();
            let (cfg, normalizer, model) = kiln_train::load_run(&run, &device)?;
            let input = kiln_train::run_input_shape(&cfg, &normalizer)?;
            let summary = kiln_compress::pruned_summary(&model, &cfg.name, input)?;
            match format {
                Format::Text => println!("{summary}"),
                Format::Json => println!("{}", summary.to_json()),
            }
        }
        Args {
            model,
            config,
            input,
            format,
            run: None,
        } => {
            if let Some(spec) = &model
                && kiln_models::preset(spec).is_err()
                && let Ok(path) =
                    kiln_transfer::llama::resolve_model(spec, &kiln_data::data_dir::resolve(None))
            {
                return llm::summary(&path, 2048);
            }
            let (name, model_config, default_input) = match (&model, &config) {
                (Some(name), _) => {
                    let preset = kiln_models::preset(name)?;
                    (
                        name.clone(),
                        preset.config.clone(),
                        Some(preset.summary_input()),
                    )
                }
                (None, Some(path)) => {
                    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
                    (
                        stem.unwrap_or_else(|| "model".into()),
                        ModelConfig::from_file(path)?,
                        None,
                    )
                }
                (None, None) => bail!("give a model name (see `kiln models`) or --config FILE"),
            };
            let model_config = match &config {
                Some(path) if model.is_some() => ModelConfig::from_file(path)?,
                _ => model_config,
            };
            let input = match (input, default_input) {
                (Some(chw), _) => vec![1, chw[0], chw[1], chw[2]],
                (None, Some(shape)) => shape,
                (None, None) => bail!("--input C,H,W is required with a config file"),
            };
            // Parameters count as trainable only on an autodiff device.
            let built = model_config.init(&DeviceSpec::Flex.autodiff_device())?;
            let summary = built.summary(&name, &input)?;
            match format {
                Format::Text => println!("{summary}"),
                Format::Json => println!("{}", summary.to_json()),
            }
        }
    }
    Ok(())
}
