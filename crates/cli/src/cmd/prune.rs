//! `kiln prune`: Prune a trained run: single weights by magnitude, or whole conv channels, dense

use super::prelude::*;

/// The arguments of `kiln prune`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Run folder written by `kiln train`.
    run_dir: PathBuf,
    /// Pruning method.
    #[arg(long, value_enum, default_value_t = PruneMethod::Magnitude)]
    method: PruneMethod,
    /// Final fraction of the prunable weights set to zero (magnitude) or of the channels,
    /// neurons and heads removed (structured), in [0, 1).
    #[arg(long)]
    sparsity: f64,
    /// One magnitude threshold over all layers instead of the same sparsity per layer.
    #[arg(long)]
    global: bool,
    /// Pruning steps on Zhu & Gupta's gradual schedule (1: one shot).
    #[arg(long, default_value_t = 1)]
    iterations: usize,
    /// Fine-tuning epochs after each step (pruned weights stay zero).
    #[arg(long, default_value_t = 0)]
    finetune_epochs: usize,
    /// Fine-tuning learning rate (default: a tenth of the run's).
    #[arg(long)]
    lr: Option<f64>,
    /// Prune only the layers under this path (repeatable), written like --group paths,
    /// e.g. model.Mlp.hidden.0.
    #[arg(long = "layer")]
    layers: Vec<String>,
    /// Output run folder (default: RUN_DIR-pruned).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where the datasets and models are.
    #[command(flatten)]
    data: DataDirArgs,
    /// Print nothing while fine-tuning.
    #[arg(long)]
    quiet: bool,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let Args {
        run_dir,
        method,
        sparsity,
        global,
        iterations,
        finetune_epochs,
        lr,
        layers,
        out,
        data: DataDirArgs { data_dir },
        quiet,
    } = args;
    let config = kiln_compress::PruneConfig {
        method: match method {
            PruneMethod::Magnitude => kiln_compress::Method::Magnitude,
            PruneMethod::Structured => kiln_compress::Method::Structured,
            PruneMethod::StructuredL2 => kiln_compress::Method::StructuredL2,
        },
        sparsity,
        scope: if global {
            kiln_compress::Scope::Global
        } else {
            kiln_compress::Scope::Layer
        },
        iterations,
        finetune_epochs,
        lr,
        layers,
    };
    let out = out.unwrap_or_else(|| {
        let name = run_dir
            .file_name()
            .map_or("run".into(), |n| n.to_string_lossy());
        run_dir.with_file_name(format!("{name}-pruned"))
    });
    let options = TrainOptions {
        quiet,
        data_dir,
        ..TrainOptions::default()
    };
    let report = kiln_compress::prune_run(&run_dir, &out, &config, &options)
        .with_context(|| format!("pruning {}", run_dir.display()))?;
    for step in &report.steps {
        print!(
            "step {}: sparsity {:.2}%, test accuracy {:.2}% after pruning",
            step.step,
            100.0 * step.target,
            100.0 * step.pruned_accuracy
        );
        match step.finetuned_accuracy {
            Some(a) => println!(", {:.2}% after fine-tuning", 100.0 * a),
            None => println!(),
        }
    }
    println!("{}", report.sparsity);
    println!(
        "parameters {} -> {}, model.bpk {} -> {} bytes, inference {:.0} -> {:.0} samples/s (batch 256)",
        report.dense_params,
        report.params,
        report.dense_bytes,
        report.bytes,
        report.dense_samples_per_sec,
        report.samples_per_sec
    );
    println!(
        "test accuracy {:.2}% (dense {:.2}%, error {:+.2} points); run folder {}",
        100.0 * report.accuracy,
        100.0 * report.dense_accuracy,
        report.error_increase_points(),
        out.display()
    );
    Ok(())
}
