//! Kiln's benchmark cases: one training step (forward, cross-entropy, backward, Adam update) or
//! one inference step of a zoo model, measured with the protocol of the PyTorch reference
//! (`shared/bench/torch_bench.py`): synthetic learnable data (a per-class prototype plus unit
//! Gaussian noise), training batch 64 cycling over 4 prepared batches, inference batch 256,
//! 5 warm-up steps, then the median of 30 timed steps. Every step ends by reading a scalar back
//! to the host, so the time covers the whole step. A training step is computed as kiln-train
//! computes it: split into `kiln_core::parallel` shards (rayon tasks) when the model is
//! `shardable` (`KILN_TRAINING_SHARDS=1` turns that off for comparisons); an image inference
//! batch is split across the cores as kiln-train's validation does (`KILN_INFERENCE_SHARDS=1`
//! turns that off).
//!
//! The three reference models are the zoo presets `mlp-mnist`, `cnn-small` and `vit-lite`
//! (aliases `mlp`, `cnn`, `vit`); they have the reference's parameter counts (235,146 /
//! 225,034 / 139,018). Every other preset runs too, with a smaller default batch for the
//! token models (see [`Case::batch_size`]).
//!
//! ```no_run
//! use kiln_bench::{Case, Mode, run_case};
//! let m = run_case(&Case::new("vit", Mode::Train)).unwrap();
//! println!("{} samples/s", m.samples_per_s);
//! ```
//!
//! Peak memory ([`Measurement::peak_rss_bytes`]) is the whole process's high-water mark: run one
//! case per process to attribute it (`cargo xtask bench` does).

pub mod llm;
pub mod serve;

use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Int, Tensor};
use kiln_core::{DeviceSpec, Seed};
use kiln_models::{Classifier, ModelConfig, ZooModel};
use serde::{Deserialize, Serialize};

/// Errors of a benchmark case.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model name is not a zoo preset.
    #[error(transparent)]
    Model(#[from] kiln_models::Error),
    /// The device name is unknown or not compiled in.
    #[error(transparent)]
    Device(#[from] kiln_core::Error),
    /// The case cannot be run as asked.
    #[error("benchmark case {case}: {reason}")]
    Invalid {
        /// The case, as `model:mode:device`.
        case: String,
        /// What is wrong.
        reason: String,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// What a step does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Forward, cross-entropy, backward and an Adam (lr 1e-3) update.
    Train,
    /// Forward only, without autodiff.
    Infer,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Train => "train",
            Mode::Infer => "infer",
        })
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "train" => Ok(Mode::Train),
            "infer" => Ok(Mode::Infer),
            other => Err(format!("unknown mode `{other}` (expected train or infer)")),
        }
    }
}

/// The reference models of `shared/bench`, by their short names, and the zoo preset of each.
pub const REFERENCE_MODELS: [(&str, &str); 3] = [
    ("mlp", "mlp-mnist"),
    ("cnn", "cnn-small"),
    ("vit", "vit-lite"),
];

/// The zoo preset a benchmark model name stands for (`mlp`, `cnn`, `vit` are aliases).
pub fn preset_name(model: &str) -> &str {
    REFERENCE_MODELS
        .iter()
        .find(|(alias, _)| *alias == model)
        .map_or(model, |(_, preset)| preset)
}

/// One benchmark case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Case {
    /// A zoo preset or a reference alias (`mlp`, `cnn`, `vit`).
    pub model: String,
    /// Training or inference step.
    pub mode: Mode,
    /// The device.
    pub device: DeviceSpec,
    /// Batch size; `None` takes [`Case::batch_size`]'s default.
    pub batch: Option<usize>,
    /// Timed steps.
    pub steps: usize,
    /// Untimed warm-up steps before them.
    pub warmup: usize,
}

impl Case {
    /// The reference protocol on the default CPU device: 5 warm-up and 30 timed steps.
    pub fn new(model: impl Into<String>, mode: Mode) -> Self {
        Self {
            model: model.into(),
            mode,
            device: DeviceSpec::Flex,
            batch: None,
            steps: 30,
            warmup: 5,
        }
    }

    /// The same case on another device.
    pub fn on(mut self, device: DeviceSpec) -> Self {
        self.device = device;
        self
    }

    /// The same case with other step counts.
    pub fn with_steps(mut self, warmup: usize, steps: usize) -> Self {
        self.warmup = warmup;
        self.steps = steps;
        self
    }

    /// The batch size: the one given, else the reference's 64 (training) / 256 (inference) for
    /// image models and 16 / 32 sequences for token models (their steps are 100-1000x
    /// costlier).
    pub fn batch_size(&self, config: &ModelConfig) -> usize {
        self.batch
            .unwrap_or(match (config.input_kind(), self.mode) {
                (kiln_models::InputKind::Image, Mode::Train) => 64,
                (kiln_models::InputKind::Image, Mode::Infer) => 256,
                (kiln_models::InputKind::Tokens, Mode::Train) => 16,
                (kiln_models::InputKind::Tokens, Mode::Infer) => 32,
            })
    }

    /// `model:mode:device`.
    pub fn label(&self) -> String {
        format!("{}:{}:{}", self.model, self.mode, self.device)
    }
}

/// What one case measured. Field names follow the PyTorch reference's JSON line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// Always `kiln`.
    pub fw: String,
    /// The device (`flex`, `ndarray`, ...).
    pub backend: String,
    /// The model name as asked (`vit` or `vit-lite`).
    pub model: String,
    /// The zoo preset that ran.
    pub preset: String,
    /// Training or inference.
    pub mode: Mode,
    /// Samples per step.
    pub batch: usize,
    /// Parameters of the model.
    pub params: usize,
    /// Timed steps.
    pub steps: usize,
    /// Warm-up steps.
    pub warmup: usize,
    /// Worker threads available to the CPU backends (`RAYON_NUM_THREADS` or the cores).
    pub threads: usize,
    /// Median seconds per step.
    pub median_step_s: f64,
    /// Fastest step.
    pub min_step_s: f64,
    /// Slowest step.
    pub max_step_s: f64,
    /// Mean seconds per step.
    pub mean_step_s: f64,
    /// `batch / median_step_s`.
    pub samples_per_s: f64,
    /// Forward multiply-adds of one sample (from the model summary).
    pub mult_adds_per_sample: u64,
    /// Achieved GFLOP/s at the median: 2 FLOP per multiply-add, and a training step counted as
    /// 3 forwards (forward, and backward's two products per layer).
    pub gflops: f64,
    /// The process's peak resident memory after the case (Linux `VmHWM`), if known.
    pub peak_rss_bytes: Option<u64>,
    /// Training losses of every step (warm-up included); empty for inference.
    pub losses: Vec<f32>,
    /// Every timed step, in milliseconds.
    pub step_ms: Vec<f64>,
}

/// Threads the CPU backends use: `RAYON_NUM_THREADS` when set, else the available cores.
pub fn worker_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The process's peak resident set size (`VmHWM` of `/proc/self/status`); `None` off Linux.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The name a device goes by in reports: `flex` for the default CPU backend.
pub fn backend_name(device: &DeviceSpec) -> String {
    match device {
        DeviceSpec::Flex => "flex".into(),
        other => other.to_string(),
    }
}

/// Runs one case and measures it.
///
/// Applies [`kiln_core::allocator::tune`] first, as the `kiln` binary does (a benchmark owns
/// its process; Kiln's library training calls leave the allocator alone).
pub fn run_case(case: &Case) -> Result<Measurement> {
    kiln_core::allocator::tune();
    let invalid = |reason: &str| Error::Invalid {
        case: case.label(),
        reason: reason.to_string(),
    };
    if case.steps == 0 {
        return Err(invalid("at least one timed step is needed"));
    }
    let preset = kiln_models::preset(preset_name(&case.model))?;
    let config = preset.config.clone();
    let batch = case.batch_size(&config);
    if batch == 0 {
        return Err(invalid("the batch size must be at least 1"));
    }
    let device = match case.mode {
        Mode::Train => case.device.autodiff_device(),
        Mode::Infer => case.device.device(),
    };
    Seed(42).apply(&device);
    let model = config.init(&device)?;
    let params = model.num_params();
    let mult_adds = model
        .summary(preset.name, &preset.summary_input())?
        .total_mult_adds;
    let data = Data::new(&config, &preset.input, batch, &device);
    let total = case.warmup + case.steps;
    let (times, losses) = match (case.mode, model) {
        (Mode::Train, ZooModel::Bert(_)) => {
            return Err(invalid(
                "a bare BERT encoder has no training objective; benchmark its inference, or \
                 transformer-classifier for training",
            ));
        }
        (Mode::Train, model) => {
            // As kiln-train does: a shardable model's batch is split across threads.
            train_steps(model, &data, total, config.training_shards(batch))
        }
        (Mode::Infer, model) => (infer_steps(&model, &data, total), Vec::new()),
    };
    let mut timed: Vec<f64> = times[case.warmup..].to_vec();
    let step_ms = timed.iter().map(|t| t * 1e3).collect();
    timed.sort_by(f64::total_cmp);
    let n = timed.len();
    let median = median(timed.clone());
    let passes = match case.mode {
        Mode::Train => 3.0,
        Mode::Infer => 1.0,
    };
    Ok(Measurement {
        fw: "kiln".into(),
        backend: backend_name(&case.device),
        model: case.model.clone(),
        preset: preset.name.into(),
        mode: case.mode,
        batch,
        params,
        steps: case.steps,
        warmup: case.warmup,
        threads: worker_threads(),
        median_step_s: median,
        min_step_s: timed[0],
        max_step_s: timed[n - 1],
        mean_step_s: timed.iter().sum::<f64>() / n as f64,
        samples_per_s: batch as f64 / median,
        mult_adds_per_sample: mult_adds,
        gflops: passes * 2.0 * mult_adds as f64 * batch as f64 / median / 1e9,
        peak_rss_bytes: peak_rss_bytes(),
        losses,
        step_ms,
    })
}

/// Inputs and targets, prepared before timing (like the reference's 4 training batches).
enum Data {
    Images(Vec<(Tensor<4>, Tensor<1, Int>)>),
    Tokens(Vec<(Tensor<2, Int>, Tensor<1, Int>)>),
}

impl Data {
    fn new(config: &ModelConfig, input: &[usize], batch: usize, device: &Device) -> Self {
        let classes = config.num_classes().max(1);
        let labels = |n: usize| -> Tensor<1, Int> {
            Tensor::<1>::random([n], Distribution::Uniform(0.0, classes as f64), device)
                .int()
                .clamp(0, classes as i64 - 1)
        };
        match config.input_kind() {
            kiln_models::InputKind::Image => {
                let [c, h, w] = [input[0], input[1], input[2]];
                let prototypes = Tensor::<2>::random(
                    [classes, c * h * w],
                    Distribution::Normal(0.0, 1.0),
                    device,
                );
                Data::Images(
                    (0..4)
                        .map(|_| {
                            let y = labels(batch);
                            let noise = Tensor::<2>::random(
                                [batch, c * h * w],
                                Distribution::Normal(0.0, 1.0),
                                device,
                            );
                            let x = prototypes.clone().select(0, y.clone()) + noise;
                            (x.reshape([batch, c, h, w]), y)
                        })
                        .collect(),
                )
            }
            kiln_models::InputKind::Tokens => {
                let seq = input[0];
                let vocab = match config {
                    ModelConfig::TransformerClassifier(c) => c.encoder.vocab_size,
                    ModelConfig::CausalLm(c) => c.encoder.vocab_size,
                    ModelConfig::Bert(c) => c.vocab_size,
                    _ => 2,
                };
                Data::Tokens(
                    (0..4)
                        .map(|_| {
                            let tokens = Tensor::<2>::random(
                                [batch, seq],
                                Distribution::Uniform(0.0, vocab as f64),
                                device,
                            )
                            .int()
                            .clamp(0, vocab as i64 - 1);
                            // A language model's targets are the next tokens; a classifier's
                            // are labels.
                            let targets = match config {
                                ModelConfig::CausalLm(_) => tokens.clone().reshape([batch * seq]),
                                _ => labels(batch),
                            };
                            (tokens, targets)
                        })
                        .collect(),
                )
            }
        }
    }
}

/// Logits `[rows, classes]` of batch `i` (a language model's positions become rows).
fn logits(model: &ZooModel, data: &Data, i: usize) -> Tensor<2> {
    match (model, data) {
        (ZooModel::Image(m), Data::Images(b)) => m.forward(b[i % b.len()].0.clone()),
        (ZooModel::TransformerClassifier(m), Data::Tokens(b)) => {
            m.forward(b[i % b.len()].0.clone(), None)
        }
        (ZooModel::CausalLm(m), Data::Tokens(b)) => {
            let out = m.forward(b[i % b.len()].0.clone());
            let [batch, seq, vocab] = out.dims();
            out.reshape([batch * seq, vocab])
        }
        (ZooModel::Bert(m), Data::Tokens(b)) => {
            let out = m.forward(b[i % b.len()].0.clone(), None, None);
            let [batch, seq, hidden] = out.dims();
            out.reshape([batch * seq, hidden])
        }
        // `Data::new` follows the config's input kind, as `init` does.
        _ => unreachable!("benchmark data does not match the model's input kind"),
    }
}

fn targets(data: &Data, i: usize) -> Tensor<1, Int> {
    match data {
        Data::Images(b) => b[i % b.len()].1.clone(),
        Data::Tokens(b) => b[i % b.len()].1.clone(),
    }
}

fn train_steps(
    mut model: ZooModel,
    data: &Data,
    total: usize,
    shards: usize,
) -> (Vec<f64>, Vec<f32>) {
    let device = targets(data, 0).device();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut optim = AdamConfig::new().init();
    let mut times = Vec::with_capacity(total);
    let mut losses = Vec::with_capacity(total);
    for step in 0..total {
        let started = Instant::now();
        let (loss, grads) = match (&model, data) {
            (ZooModel::Image(m), Data::Images(b)) if shards > 1 => {
                let (images, labels) = &b[step % b.len()];
                let [n, c, h, w] = images.dims();
                let parts = kiln_core::parallel::shard_ranges(n, shards)
                    .into_iter()
                    .map(|r| {
                        (
                            images.clone().slice([r.clone(), 0..c, 0..h, 0..w]),
                            labels.clone().slice([r]),
                        )
                    })
                    .collect();
                let (grads, sums) =
                    kiln_core::parallel::sharded_gradients(m, parts, n, |m, (x, y)| {
                        let [len, _, _, _] = x.dims();
                        // The shard's summed loss (the mean times its length).
                        let sum = loss_fn.forward(m.forward(x), y).mul_scalar(len as f32);
                        (sum.clone(), sum.detach())
                    });
                let loss = Tensor::cat(sums, 0).sum().div_scalar(n as f32);
                (loss, grads)
            }
            _ => {
                let loss = loss_fn.forward(logits(&model, data, step), targets(data, step));
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                (loss, grads)
            }
        };
        model = optim.step(1e-3, model, grads);
        // Reading the loss back makes sure the step has finished on any device.
        let value = loss.into_scalar::<f32>();
        times.push(started.elapsed().as_secs_f64());
        losses.push(value);
    }
    (times, losses)
}

fn infer_steps(model: &ZooModel, data: &Data, total: usize) -> Vec<f64> {
    let mut times = Vec::with_capacity(total);
    for step in 0..total {
        let started = Instant::now();
        // As kiln-train's evaluation does: an image batch is split across the cores.
        let out = match (model, data) {
            (ZooModel::Image(m), Data::Images(b)) => {
                let images = b[step % b.len()].0.clone();
                kiln_core::parallel::sharded_forward(m, images, |m, x| m.forward(x))
            }
            _ => logits(model, data, step),
        };
        let value = out.sum().into_scalar::<f32>();
        std::hint::black_box(value);
        times.push(started.elapsed().as_secs_f64());
    }
    times
}

/// One line of `torch_bench.py`'s output (the fields Kiln reads), plus the peak memory the
/// harness adds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TorchMeasurement {
    /// `torch2t` for two threads.
    pub backend: String,
    /// `mlp`, `cnn` or `vit`.
    pub model: String,
    /// Training or inference.
    pub mode: Mode,
    /// Samples per step.
    pub batch: usize,
    /// Parameters of the model.
    pub params: usize,
    /// Threads torch used.
    pub threads: usize,
    /// Median seconds per step.
    pub median_step_s: f64,
    /// `batch / median_step_s`.
    pub samples_per_s: f64,
    /// The torch version.
    pub torch: String,
    /// Peak resident memory of the Python process (`ru_maxrss`), when measured.
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
}

/// One row of the report: a (model, mode, backend) over all rounds, with PyTorch's figures
/// when it ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The model as asked.
    pub model: String,
    /// The zoo preset.
    pub preset: String,
    /// Training or inference.
    pub mode: Mode,
    /// Kiln's device.
    pub backend: String,
    /// Samples per step.
    pub batch: usize,
    /// Parameters.
    pub params: usize,
    /// Rounds measured.
    pub rounds: usize,
    /// Median over rounds of each round's median samples/s.
    pub samples_per_s: f64,
    /// Slowest round.
    pub min_samples_per_s: f64,
    /// Fastest round.
    pub max_samples_per_s: f64,
    /// Achieved GFLOP/s at the median.
    pub gflops: f64,
    /// Largest peak RSS over rounds.
    pub peak_rss_bytes: Option<u64>,
    /// PyTorch's median samples/s over the same rounds.
    pub torch_samples_per_s: Option<f64>,
    /// PyTorch's largest peak RSS.
    pub torch_peak_rss_bytes: Option<u64>,
    /// `samples_per_s / torch_samples_per_s`.
    pub ratio: Option<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Groups measurements by (model, mode, backend), in first-seen order, and matches each with
/// PyTorch's runs of the same reference model and mode.
pub fn summarize(kiln: &[Measurement], torch: &[TorchMeasurement]) -> Vec<Summary> {
    let mut keys: Vec<(String, Mode, String)> = Vec::new();
    for m in kiln {
        let key = (m.model.clone(), m.mode, m.backend.clone());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .map(|(model, mode, backend)| {
            let runs: Vec<&Measurement> = kiln
                .iter()
                .filter(|m| m.model == model && m.mode == mode && m.backend == backend)
                .collect();
            let rates: Vec<f64> = runs.iter().map(|m| m.samples_per_s).collect();
            let alias = REFERENCE_MODELS
                .iter()
                .find(|(a, p)| *a == model || *p == model)
                .map(|(a, _)| *a);
            let torch_runs: Vec<&TorchMeasurement> = torch
                .iter()
                .filter(|t| Some(t.model.as_str()) == alias && t.mode == mode)
                .collect();
            let torch_rate = (!torch_runs.is_empty())
                .then(|| median(torch_runs.iter().map(|t| t.samples_per_s).collect()));
            let rate = median(rates.clone());
            Summary {
                preset: runs[0].preset.clone(),
                batch: runs[0].batch,
                params: runs[0].params,
                rounds: runs.len(),
                min_samples_per_s: rates.iter().copied().fold(f64::INFINITY, f64::min),
                max_samples_per_s: rates.iter().copied().fold(0.0, f64::max),
                gflops: median(runs.iter().map(|m| m.gflops).collect()),
                peak_rss_bytes: runs.iter().filter_map(|m| m.peak_rss_bytes).max(),
                torch_samples_per_s: torch_rate,
                torch_peak_rss_bytes: torch_runs.iter().filter_map(|t| t.peak_rss_bytes).max(),
                ratio: torch_rate.map(|t| rate / t),
                samples_per_s: rate,
                model,
                mode,
                backend,
            }
        })
        .collect()
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or("-".into(), |b| {
        format!("{:.0}", b as f64 / (1024.0 * 1024.0))
    })
}

/// The report as a Markdown table (samples/s, median over rounds [min..max]).
pub fn markdown(rows: &[Summary]) -> String {
    let mut out = String::from(
        "| model | mode | batch | backend | Kiln samples/s [min..max] | GFLOP/s | peak RSS MiB | PyTorch samples/s | PyTorch RSS MiB | Kiln / PyTorch |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.0} [{:.0}..{:.0}] | {:.2} | {} | {} | {} | {} |\n",
            r.model,
            r.mode,
            r.batch,
            r.backend,
            r.samples_per_s,
            r.min_samples_per_s,
            r.max_samples_per_s,
            r.gflops,
            mib(r.peak_rss_bytes),
            r.torch_samples_per_s
                .map_or("-".into(), |t| format!("{t:.0}")),
            mib(r.torch_peak_rss_bytes),
            r.ratio.map_or("-".into(), |x| format!("{x:.2}")),
        ));
    }
    out
}

/// The report as CSV.
pub fn csv(rows: &[Summary]) -> String {
    let mut out = String::from(
        "model,preset,mode,backend,batch,params,rounds,samples_per_s,min_samples_per_s,max_samples_per_s,gflops,peak_rss_bytes,torch_samples_per_s,torch_peak_rss_bytes,ratio\n",
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x:.3}"));
    let opt_u = |v: Option<u64>| v.map_or(String::new(), |x| x.to_string());
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{:.3},{:.3},{:.3},{:.4},{},{},{},{}\n",
            r.model,
            r.preset,
            r.mode,
            r.backend,
            r.batch,
            r.params,
            r.rounds,
            r.samples_per_s,
            r.min_samples_per_s,
            r.max_samples_per_s,
            r.gflops,
            opt_u(r.peak_rss_bytes),
            opt(r.torch_samples_per_s),
            opt_u(r.torch_peak_rss_bytes),
            opt(r.ratio),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_name_the_reference_presets() {
        assert_eq!(preset_name("vit"), "vit-lite");
        assert_eq!(preset_name("cnn-small"), "cnn-small");
        assert!(matches!(
            run_case(&Case::new("resnet", Mode::Train)),
            Err(Error::Model(_))
        ));
        assert!("fit".parse::<Mode>().is_err());
    }
}
