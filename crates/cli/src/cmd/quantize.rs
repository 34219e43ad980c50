//! `kiln quantize`: Quantize a trained run's Linear and convolution weights to int8 (or int4) after

use super::prelude::*;

/// The arguments of `kiln quantize`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Run folder written by `kiln train`.
    run_dir: PathBuf,
    /// Bits per weight: 8 or 4.
    #[arg(long, default_value_t = 8)]
    bits: u8,
    /// One scale per output channel / block of inputs instead of one per tensor.
    #[arg(long)]
    per_channel: bool,
    /// Range calibration: search (the clipping percentile with the lowest loss on
    /// calibration images), minmax, or percentile:P (e.g. percentile:99.99).
    #[arg(long, default_value = "search")]
    calibration: String,
    /// Training images used by the calibration search.
    #[arg(long, default_value_t = 1000)]
    calibration_samples: usize,
    /// Quantization-aware training first: epochs of fine-tuning with fake-quantized weights.
    #[arg(long, default_value_t = 0)]
    qat_epochs: usize,
    /// Learning rate of the quantization-aware fine-tuning (default: a tenth of the run's).
    #[arg(long)]
    qat_lr: Option<f64>,
    /// Output run folder (default: RUN_DIR-int8 / -int4).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where the datasets and models are.
    #[command(flatten)]
    data: DataDirArgs,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let Args {
        run_dir,
        bits,
        per_channel,
        calibration,
        calibration_samples,
        qat_epochs,
        qat_lr,
        out,
        data: DataDirArgs { data_dir },
    } = args;
    let calibration = kiln_compress::Calibration::parse(&calibration)?;
    let config = kiln_compress::QuantizeConfig {
        bits,
        granularity: if per_channel {
            kiln_compress::Granularity::PerChannel
        } else {
            kiln_compress::Granularity::PerTensor
        },
        calibration,
        calibration_samples,
        qat_epochs,
        qat_lr,
    };
    let out = out.unwrap_or_else(|| {
        let name = run_dir
            .file_name()
            .map_or("run".into(), |n| n.to_string_lossy());
        run_dir.with_file_name(format!("{name}-int{bits}"))
    });
    let options = TrainOptions {
        quiet: true,
        data_dir,
        ..TrainOptions::default()
    };
    let report = kiln_compress::quantize_run(&run_dir, &out, &config, &options)
        .with_context(|| format!("quantizing {}", run_dir.display()))?;
    for (p, loss) in &report.search {
        println!("calibration: clip at percentile {p}: loss {loss:.4}");
    }
    println!(
        "{} weight tensors to int{bits} ({}), clipped at percentile {}",
        report.tensors,
        if per_channel {
            "per channel"
        } else {
            "per tensor"
        },
        report.percentile
    );
    println!(
        "test accuracy {:.2}% (f32 {:.2}%, {:+.2} points); model.bpk {} -> {} bytes ({:.2}x smaller); inference {:.0} -> {:.0} samples/s (batch 256)",
        100.0 * report.accuracy,
        100.0 * report.f32_accuracy,
        -report.accuracy_drop_points(),
        report.f32_bytes,
        report.bytes,
        report.size_ratio(),
        report.f32_samples_per_sec,
        report.samples_per_sec
    );
    println!("run folder {}", out.display());
    Ok(())
}
