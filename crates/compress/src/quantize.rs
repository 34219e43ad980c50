//! Post-training weight quantization on burn's quantized tensors (`Tensor::quantize`, burn's
//! symmetric int8 / int4 schemes and its MinMax range), with weight clipping calibrated on
//! real data.
//!
//! The Linear and convolution weights become `QFloat` tensors (one signed 8-bit value per
//! weight plus scales); biases and norms stay f32. Saved with `save_file`, the weights keep
//! their quantized storage, so the `.bpk` is about 4x smaller, and loading it into the float
//! architecture restores the quantized tensors. burn dequantizes the weights on the fly in
//! the forward pass: the compute stays f32.
//!
//! Calibration: the quantization range of a tensor is its largest magnitude (MinMax), or a
//! clipping threshold at a percentile of its magnitudes (outliers saturate, the other weights
//! get a finer grid). [`Calibration::Search`] picks the percentile that gives the lowest loss on
//! calibration images from the training set.

use std::fmt;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::quantization::{
    Calibration as BurnCalibration, QuantScheme, QuantStore, QuantValue, ScaleDtype,
    compute_q_params, compute_range,
};
use burn::tensor::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Where a scale applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Granularity {
    /// One scale per weight tensor.
    #[default]
    PerTensor,
    /// One scale per output channel of a convolution (`[1, in, kh, kw]` blocks) and per block
    /// of at most 64 consecutive inputs of a Linear weight (`[b, 1]` blocks, `b` the largest
    /// divisor of the input size up to 64; burn's block sizes are at most 255 per dimension,
    /// too small for a whole 784-input column).
    PerChannel,
}

/// How a weight tensor's quantization range is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Calibration {
    /// The largest magnitude (burn's MinMax).
    MinMax,
    /// The given percentile of the magnitudes (e.g. 99.99); larger weights saturate.
    Percentile(f64),
    /// The percentile among 100, 99.999, 99.99, 99.9, 99.5 and 99 with the lowest
    /// cross-entropy on calibration images of the training set.
    Search,
}

impl Calibration {
    /// Parses `search`, `minmax` or `percentile:P` (e.g. `percentile:99.99`).
    pub fn parse(spec: &str) -> Result<Self> {
        match spec {
            "search" => Ok(Self::Search),
            "minmax" => Ok(Self::MinMax),
            other => match other.strip_prefix("percentile:").map(str::parse::<f64>) {
                Some(Ok(p)) if p > 0.0 && p <= 100.0 => Ok(Self::Percentile(p)),
                _ => Err(Error::Invalid(format!(
                    "calibration `{other}`: expected search, minmax or percentile:P with 0 < P <= 100 (e.g. percentile:99.99)"
                ))),
            },
        }
    }
}

/// Percentiles [`Calibration::Search`] tries.
pub const SEARCH_PERCENTILES: [f64; 6] = [100.0, 99.999, 99.99, 99.9, 99.5, 99.0];

impl fmt::Display for Calibration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MinMax => write!(f, "minmax"),
            Self::Percentile(p) => write!(f, "percentile {p}"),
            Self::Search => write!(f, "search"),
        }
    }
}

/// What to quantize to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantizeConfig {
    /// 8 or 4 bits (4-bit values are stored one per byte by burn today).
    pub bits: u8,
    /// Scale granularity.
    #[serde(default)]
    pub granularity: Granularity,
    /// Range calibration.
    pub calibration: Calibration,
    /// Training images used by [`Calibration::Search`].
    pub calibration_samples: usize,
    /// Quantization-aware training before quantizing: epochs of fine-tuning with the weights
    /// fake-quantized to `bits` in the forward pass (0: post-training quantization only).
    #[serde(default)]
    pub qat_epochs: usize,
    /// Learning rate of that fine-tuning (default: a tenth of the run's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qat_lr: Option<f64>,
}

impl Default for QuantizeConfig {
    fn default() -> Self {
        Self {
            bits: 8,
            granularity: Granularity::PerTensor,
            calibration: Calibration::Search,
            calibration_samples: 1000,
            qat_epochs: 0,
            qat_lr: None,
        }
    }
}

impl QuantizeConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if !matches!(self.bits, 4 | 8) {
            return Err(Error::Invalid(format!(
                "quantization supports 8 or 4 bits, found {}",
                self.bits
            )));
        }
        if let Calibration::Percentile(p) = self.calibration
            && !(p > 50.0 && p <= 100.0)
        {
            return Err(Error::Invalid(format!(
                "the calibration percentile must be in (50, 100], found {p}"
            )));
        }
        if self.calibration == Calibration::Search && self.calibration_samples == 0 {
            return Err(Error::Invalid(
                "calibration search needs at least one calibration sample".into(),
            ));
        }
        Ok(())
    }

    fn value(&self) -> QuantValue {
        if self.bits == 4 {
            QuantValue::Q4S
        } else {
            QuantValue::Q8S
        }
    }
}

fn largest_divisor_up_to(n: usize, max: usize) -> usize {
    (1..=max.min(n))
        .rev()
        .find(|d| n.is_multiple_of(*d))
        .unwrap_or(1)
}

/// The scheme of one weight tensor of `shape`.
fn scheme_for(shape: &[usize], value: QuantValue, granularity: Granularity) -> QuantScheme {
    let base = QuantScheme::default()
        .with_value(value)
        .with_store(QuantStore::Native);
    match granularity {
        Granularity::PerTensor => base,
        Granularity::PerChannel => {
            let block: Vec<u8> = if shape.len() == 2 {
                vec![largest_divisor_up_to(shape[0], 64) as u8, 1]
            } else if shape[1..].iter().all(|&d| d <= 255) {
                std::iter::once(1u8)
                    .chain(shape[1..].iter().map(|&d| d as u8))
                    .collect()
            } else {
                return base;
            };
            base.per_block(block, ScaleDtype::F32)
        }
    }
}

/// Magnitude at `percentile` of `values`.
fn percentile_abs(values: &[f32], percentile: f64) -> f32 {
    let mut abs: Vec<f32> = values.iter().map(|v| v.abs()).collect();
    if abs.is_empty() {
        return 0.0;
    }
    let rank = ((percentile / 100.0) * (abs.len() - 1) as f64).round() as usize;
    let rank = rank.min(abs.len() - 1);
    let (_, v, _) = abs.select_nth_unstable_by(rank, f32::total_cmp);
    *v
}

/// Why a weight cannot be quantized as asked.
#[derive(Debug)]
enum Unquantizable {
    /// Its values could not be read back.
    Unreadable(String),
    /// It has NaN or infinite values: no range, no scale.
    NotFinite { count: usize, total: usize },
}

/// The clipping threshold of one weight's `values` at `percentile` of their magnitudes
/// (`None` at 100: MinMax), or why the weight cannot be quantized. Non-finite values are an
/// error whatever the calibration: their range, hence every scale, would be NaN or infinite.
fn clip_threshold(
    values: &[f32],
    percentile: f64,
) -> std::result::Result<Option<f32>, Unquantizable> {
    let count = values.iter().filter(|v| !v.is_finite()).count();
    if count > 0 {
        return Err(Unquantizable::NotFinite {
            count,
            total: values.len(),
        });
    }
    Ok((percentile < 100.0).then(|| percentile_abs(values, percentile)))
}

struct WeightQuantizer {
    stack: Vec<(String, String)>,
    value: QuantValue,
    granularity: Granularity,
    percentile: f64,
    quantized: usize,
    /// The first weight that could not be quantized, and why.
    failed: Option<(String, Unquantizable)>,
}

impl ModuleMapper for WeightQuantizer {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.stack
            .push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some((name, container)) = self.stack.last() else {
            return param;
        };
        if name != "weight" || !kiln_models::is_weight_layer(container) || D < 2 {
            return param;
        }
        if matches!(param.val().dtype(), DType::QFloat(_)) {
            return param;
        }
        if self.failed.is_some() {
            return param;
        }
        let (value, granularity, percentile) = (self.value, self.granularity, self.percentile);
        let path: String = self
            .stack
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(".");
        let clip = param
            .val()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| Unquantizable::Unreadable(format!("{e:?}")))
            .and_then(|values| clip_threshold(&values, percentile));
        let clip = match clip {
            Ok(clip) => clip,
            Err(why) => {
                // Quantizing a weight without the clipping the caller asked for, or one
                // without a finite range, would be a silently different model: stop, and let
                // `quantize_weights` say so.
                self.failed = Some((path, why));
                return param;
            }
        };
        self.quantized += 1;
        param.map(|t| {
            let t = match clip {
                Some(clip) if clip > 0.0 => t.clamp(-clip, clip),
                _ => t,
            };
            let scheme = scheme_for(&t.dims(), value, granularity);
            let range = compute_range(&scheme, &t, &BurnCalibration::MinMax);
            let qparams = compute_q_params(&scheme, range);
            t.quantize(&scheme, qparams)
        })
    }
}

/// Quantizes the Linear and convolution weights of `module` (already quantized tensors are
/// left alone), clipping each at `percentile` of its magnitudes first (100: no clipping).
/// Returns the module and how many tensors were quantized.
pub fn quantize_weights<M: Module>(
    module: M,
    bits: u8,
    granularity: Granularity,
    percentile: f64,
) -> Result<(M, usize)> {
    let config = QuantizeConfig {
        bits,
        granularity,
        calibration: Calibration::Percentile(percentile),
        calibration_samples: 1,
        qat_epochs: 0,
        qat_lr: None,
    };
    config.validate()?;
    let mut mapper = WeightQuantizer {
        stack: Vec::new(),
        value: config.value(),
        granularity,
        percentile,
        quantized: 0,
        failed: None,
    };
    let module = module.map(&mut mapper);
    match mapper.failed {
        None => {}
        Some((path, Unquantizable::Unreadable(reason))) => {
            return Err(Error::Read {
                path,
                reason: format!("reading the weights for quantization: {reason}"),
            });
        }
        Some((path, Unquantizable::NotFinite { count, total })) => {
            return Err(Error::NotFinite { path, count, total });
        }
    }
    Ok((module, mapper.quantized))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_specs() {
        assert_eq!(Calibration::parse("search").unwrap(), Calibration::Search);
        assert_eq!(Calibration::parse("minmax").unwrap(), Calibration::MinMax);
        assert_eq!(
            Calibration::parse("percentile:99.99").unwrap(),
            Calibration::Percentile(99.99)
        );
        for bad in [
            "best",
            "percentile:",
            "percentile:x",
            "percentile:0",
            "percentile:101",
        ] {
            let e = Calibration::parse(bad).unwrap_err().to_string();
            assert!(e.contains("percentile:P") && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn blocks_divide_the_weights() {
        assert_eq!(largest_divisor_up_to(784, 64), 56);
        assert_eq!(largest_divisor_up_to(300, 64), 60);
        assert_eq!(largest_divisor_up_to(10, 64), 10);
        assert_eq!(largest_divisor_up_to(97, 64), 1);
        assert_eq!(percentile_abs(&[1.0, -2.0, 3.0, -4.0, 100.0], 100.0), 100.0);
        assert_eq!(percentile_abs(&[1.0, -2.0, 3.0, -4.0, 100.0], 75.0), 4.0);
    }

    #[test]
    fn clipping_thresholds_and_non_finite_weights() {
        let values = [1.0, -2.0, 3.0, -4.0, 100.0];
        assert_eq!(clip_threshold(&values, 100.0).unwrap(), None);
        assert_eq!(clip_threshold(&values, 75.0).unwrap(), Some(4.0));
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for percentile in [100.0, 99.9] {
                match clip_threshold(&[1.0, bad, 2.0, bad], percentile) {
                    Err(Unquantizable::NotFinite { count, total }) => {
                        assert_eq!((count, total), (2, 4))
                    }
                    other => panic!("{bad} at {percentile}: {other:?}"),
                }
            }
        }
    }
}

/// What quantizing a run measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantizeReport {
    /// The f32 run.
    pub from: std::path::PathBuf,
    /// The settings.
    pub config: QuantizeConfig,
    /// The clipping percentile used (100: MinMax).
    pub percentile: f64,
    /// With [`Calibration::Search`]: each percentile tried and its calibration loss.
    pub search: Vec<(f64, f64)>,
    /// Weight tensors quantized.
    pub tensors: usize,
    /// Test accuracy of the f32 model.
    pub f32_accuracy: f64,
    /// Test accuracy of the quantized model, reloaded from its run folder.
    pub accuracy: f64,
    /// Size of the f32 `model.bpk` in bytes.
    pub f32_bytes: u64,
    /// Size of the quantized `model.bpk` in bytes.
    pub bytes: u64,
    /// Inference samples/s of the f32 model (batch 256, median of 10).
    pub f32_samples_per_sec: f64,
    /// Inference samples/s of the quantized model, measured right after.
    pub samples_per_sec: f64,
}

impl QuantizeReport {
    /// How many times smaller the weights file is.
    pub fn size_ratio(&self) -> f64 {
        self.f32_bytes as f64 / self.bytes.max(1) as f64
    }

    /// Accuracy lost, in percentage points.
    pub fn accuracy_drop_points(&self) -> f64 {
        100.0 * (self.f32_accuracy - self.accuracy)
    }
}

/// Quantizes the weights of the run in `run_dir` and writes the quantized run folder `out`
/// (with `quantize.json`, the [`QuantizeReport`]); its accuracy is measured after reloading it
/// from disk. With `qat_epochs`, the run is first fine-tuned with fake-quantized weights
/// (run folder `out/qat`).
pub fn quantize_run(
    run_dir: &std::path::Path,
    out: &std::path::Path,
    config: &QuantizeConfig,
    options: &kiln_train::TrainOptions,
) -> Result<QuantizeReport> {
    config.validate()?;
    let spec = kiln_train::TrainConfig::load(&run_dir.join("config.toml"))?;
    let device = spec.recipe.device.device();
    let (run_config, normalizer, float_model) = kiln_train::load_run(run_dir, &device)?;
    let data = kiln_train::load_data(&run_config, options.data_dir.as_deref())?;
    let batch = 256;
    let f32_accuracy =
        kiln_train::evaluate(&float_model, &data.test, &normalizer, batch, &device)?.accuracy;
    // Quantization-aware fine-tuning: the float weights trained through the fake-quantized
    // forward pass, then quantized as below.
    let model = if config.qat_epochs > 0 {
        let qat_dir = out.join("qat");
        let tune = kiln_train::TrainConfig {
            recipe: kiln_train::Recipe {
                epochs: config.qat_epochs,
                lr: config.qat_lr.unwrap_or(run_config.recipe.lr / 10.0),
                early_stopping: None,
                plateau: None,
                qat_bits: Some(config.bits),
                ..run_config.recipe.clone()
            },
            distill: None,
            finetune: Some(kiln_train::FineTune {
                new_head: false,
                ..kiln_train::FineTune::full(run_dir, 1.0)
            }),
            ..run_config.clone()
        };
        kiln_train::train(&tune, &qat_dir, options)?;
        kiln_train::load_run(&qat_dir, &device)?.2
    } else {
        float_model.clone()
    };
    let mut search = Vec::new();
    let percentile = match config.calibration {
        Calibration::MinMax => 100.0,
        Calibration::Percentile(p) => p,
        Calibration::Search => {
            let classes = data.train.num_classes().max(1);
            let calib = data
                .train
                .first_per_class(config.calibration_samples.div_ceil(classes));
            let mut best = (f64::INFINITY, 100.0);
            for p in SEARCH_PERCENTILES {
                let (q, _) = quantize_weights(model.clone(), config.bits, config.granularity, p)?;
                let loss = kiln_train::evaluate(&q, &calib, &normalizer, batch, &device)?.loss;
                search.push((p, loss));
                if loss < best.0 {
                    best = (loss, p);
                }
            }
            best.1
        }
    };
    let (quantized, tensors) =
        quantize_weights(model.clone(), config.bits, config.granularity, percentile)?;
    kiln_train::save_run(out, &run_config, &normalizer, &quantized)?;
    let accuracy = kiln_train::evaluate_run_in(out, options.data_dir.as_deref())?.accuracy;
    let input = kiln_train::run_input_shape(&run_config, &normalizer)?;
    let bytes =
        |dir: &std::path::Path| std::fs::metadata(dir.join("model.bpk")).map_or(0, |m| m.len());
    let report = QuantizeReport {
        from: run_dir.to_path_buf(),
        config: config.clone(),
        percentile,
        search,
        tensors,
        f32_accuracy,
        accuracy,
        f32_bytes: bytes(run_dir),
        bytes: bytes(out),
        f32_samples_per_sec: crate::speed::inference_throughput(&float_model, input, &device),
        samples_per_sec: crate::speed::inference_throughput(&quantized, input, &device),
    };
    let path = out.join("quantize.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&report).expect("serialises"),
    )
    .map_err(|e| Error::Write {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    Ok(report)
}
