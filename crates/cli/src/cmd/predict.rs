//! `kiln predict`: Classify images and print the top classes: with a run folder's model (--run), or a

use super::prelude::*;

/// The arguments of `kiln predict`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Image files (PNG or JPEG).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// A run folder written by `kiln train` or `kiln finetune`.
    #[arg(long, conflicts_with_all = ["model", "model_dir", "weights"])]
    run: Option<PathBuf>,
    /// Pretrained model (available: efficientnet-lite0).
    #[arg(long, default_value = "efficientnet-lite0")]
    model: String,
    /// Its folder (default: models/<model> in the data directory).
    #[arg(long)]
    model_dir: Option<PathBuf>,
    /// Another weights file (.safetensors or .pt) than the folder's.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// How many classes to print per image.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// Where the datasets and models are.
    #[command(flatten)]
    data: DataDirArgs,
}

pub(crate) fn run(args: Args) -> Result<()> {
    match args {
        Args {
            images,
            run: Some(run),
            top,
            ..
        } => {
            let predictions = kiln_train::predict_images(&run, &images, top)?;
            for (image, top) in images.iter().zip(predictions) {
                println!("{}", image.display());
                for (class, p) in top {
                    println!("  {p:.4}  {class:4}");
                }
            }
        }
        Args {
            images,
            run: None,
            model,
            model_dir,
            weights,
            top,
            data: DataDirArgs { data_dir },
        } => {
            anyhow::ensure!(
                model == "efficientnet-lite0",
                "unknown pretrained model `{model}`; available: efficientnet-lite0"
            );
            let dir = model_dir.unwrap_or_else(|| {
                kiln_transfer::vision::efficientnet_lite0_dir(&kiln_data::data_dir::resolve(
                    data_dir,
                ))
            });
            let (clf, _) = kiln_transfer::vision::ImageNetClassifier::efficientnet_lite0(
                &dir,
                weights.as_deref(),
                &DeviceSpec::Flex.device(),
            )?;
            for image in &images {
                println!("{}", image.display());
                for (class, name, p) in clf.top_k(image, top)? {
                    println!("  {p:.4}  {class:4}  {name}");
                }
            }
        }
    }
    Ok(())
}
