//! Train a model that is not in Kiln's zoo, a small residual CNN written in this file, with
//! Kiln's training loop: recipe, data-parallel shards, progress, atomic checkpoints, a
//! `kill -9` in the middle of the run, and an exact resume.
//!
//! `cargo run --example custom_model` (MNIST, 4 epochs; the killed run, its resume and the
//! uninterrupted run together train 8 epochs, about 15 minutes on 2 cores). With `KILN_EXAMPLE_TINY=1` it trains on the bundled 8x8 digits in seconds (CI).
//!
//! What it does:
//! 1. starts the run in a child process (this program with `--child DIR`) and kills it with
//!    SIGKILL as soon as the first epoch's checkpoint is on disk;
//! 2. resumes the killed run folder in this process ([`TrainOptions::resume`]);
//! 3. trains the same recipe uninterrupted in a second folder;
//! 4. checks that both runs have the same per-epoch losses and the same weights, bit for
//!    bit, and measures the resumed model on the test split (read once, at the end).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kiln::burn;
use kiln::burn::module::{Module, ModuleVisitor, Param};
use kiln::burn::nn::conv::{Conv2d, Conv2dConfig};
use kiln::burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use kiln::burn::tensor::activation::relu;
use kiln::burn::tensor::{Device, Tensor};
use kiln::burn::train::ClassificationOutput;
use kiln::data::{ImageBatch, ImageBatcher, ImageDataset, Normalizer, SplitImageSet};
use kiln::train::{Recipe, Setup, Shards, Task, TrainOptions, fit, per_sample_cross_entropy};

/// Two 3x3 convolutions with a skip connection (a 1x1 projection when the shape changes).
#[derive(Module, Debug)]
struct ResidualBlock {
    conv1: Conv2d,
    conv2: Conv2d,
    skip: Option<Conv2d>,
}

impl ResidualBlock {
    fn new(channels_in: usize, channels_out: usize, stride: usize, device: &Device) -> Self {
        let conv = |c_in, c_out, stride| {
            Conv2dConfig::new([c_in, c_out], [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        let skip = (stride != 1 || channels_in != channels_out).then(|| {
            Conv2dConfig::new([channels_in, channels_out], [1, 1])
                .with_stride([stride, stride])
                .init(device)
        });
        Self {
            conv1: conv(channels_in, channels_out, stride),
            conv2: conv(channels_out, channels_out, 1),
            skip,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.conv2.forward(relu(self.conv1.forward(x.clone())));
        let shortcut = match &self.skip {
            Some(skip) => skip.forward(x),
            None => x,
        };
        relu(y + shortcut)
    }
}

/// stem conv → residual blocks → global average pool → linear.
#[derive(Module, Debug)]
struct ResNet {
    stem: Conv2d,
    blocks: Vec<ResidualBlock>,
    head: Linear,
}

impl ResNet {
    fn new(channels: usize, width: usize, classes: usize, device: &Device) -> Self {
        let stem = Conv2dConfig::new([channels, width], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(device);
        let blocks = vec![
            ResidualBlock::new(width, width, 1, device),
            ResidualBlock::new(width, 2 * width, 2, device),
        ];
        let head = LinearConfig::new(2 * width, classes).init(device);
        Self { stem, blocks, head }
    }
}

impl ResNet {
    /// `[batch, C, H, W]` images to `[batch, classes]` logits.
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = relu(self.stem.forward(images));
        for block in &self.blocks {
            x = block.forward(x);
        }
        let [n, c, _, _] = x.dims();
        self.head.forward(x.mean_dims(&[2, 3]).reshape([n, c]))
    }
}

/// The model and its loss: what Kiln's loop trains.
#[derive(Module, Debug)]
struct ResNetTask {
    model: ResNet,
}

impl Task for ResNetTask {
    type Batch = ImageBatch;
    type Output = ClassificationOutput;

    fn forward(&self, batch: ImageBatch) -> ClassificationOutput {
        let logits = self.model.forward(batch.images);
        let loss = per_sample_cross_entropy(logits.clone(), batch.targets.clone());
        ClassificationOutput::new(loss, logits, batch.targets)
    }

    /// No dropout, no batch norm: each sample's loss is its own, so a batch may be split
    /// across the cores and give the same gradient.
    fn split(&self, batch: &ImageBatch, shards: usize) -> Option<Shards<ImageBatch>> {
        Some(Shards::of(batch, shards))
    }
}

struct Job {
    tiny: bool,
    data: SplitImageSet,
    recipe: Recipe,
}

impl Job {
    fn new() -> Result<Self, Box<dyn std::error::Error>> {
        let tiny = std::env::var("KILN_EXAMPLE_TINY").is_ok_and(|v| v == "1");
        let recipe = Recipe {
            epochs: if tiny { 10 } else { 4 },
            batch_size: 64,
            lr: 1e-2,
            schedule: kiln::optim::Schedule::Cosine { min_lr: 0.0 },
            ..Recipe::default()
        };
        // The validation split is carved from the training images by the recipe's seed.
        let data = kiln::data::load_dataset(
            if tiny { "digits" } else { "mnist" },
            kiln::core::Seed(recipe.seed),
            &kiln::data::data_dir::resolve(None),
            &kiln::data::DataOptions::default(),
            recipe.valid_fraction,
        )?;
        Ok(Self { tiny, data, recipe })
    }

    fn width(&self) -> usize {
        if self.tiny { 8 } else { 16 }
    }

    /// Trains (or resumes) the run in `dir`.
    fn train(&self, dir: &Path, resume: bool) -> kiln::train::Result<ResNetTask> {
        let normalizer = Normalizer::fit(&self.data.train);
        let options = TrainOptions {
            resume,
            ..TrainOptions::default()
        };
        let fitted = fit(&self.recipe, dir, &options, |setup: &Setup| {
            let [c, _, _] = self.data.train.shape();
            let task = ResNetTask {
                model: ResNet::new(
                    c,
                    self.width(),
                    self.data.train.num_classes(),
                    setup.device(),
                ),
            };
            let batcher = ImageBatcher::new(self.data.train.shape(), normalizer.clone());
            let loaders = setup.loaders(
                batcher.clone(),
                batcher,
                ImageDataset::new(self.data.train.clone()),
                ImageDataset::new(self.data.valid.clone()),
            );
            Ok((task, loaders))
        })?;
        Ok(fitted.task)
    }
}

/// Every parameter value of a module, in visiting order.
struct Values(Vec<f32>);

impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let data = param.val().into_data().convert::<f32>();
        self.0
            .extend(data.try_to_vec::<f32>().expect("f32 parameters"));
    }
}

fn values<M: Module>(module: &M) -> Vec<f32> {
    let mut v = Values(Vec::new());
    module.visit(&mut v);
    v.0
}

fn complete_checkpoint(dir: &Path, epoch: usize) -> bool {
    ["model", "optim", "scheduler"]
        .iter()
        .all(|r| dir.join(format!("checkpoint/{r}-{epoch}.bpk")).is_file())
}

fn metrics(dir: &Path) -> Vec<String> {
    // Every column but the wall-clock seconds.
    std::fs::read_to_string(dir.join("metrics.csv"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.rsplit_once(',').map_or(l, |(head, _)| head).to_string())
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // This program owns its process: tune the allocator for burn's per-step buffers.
    kiln::core::allocator::tune();
    let job = Job::new()?;
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, dir] = args.as_slice()
        && flag == "--child"
    {
        job.train(Path::new(dir), false)?;
        return Ok(());
    }

    let root = std::env::temp_dir().join(format!("kiln-example-custom-{}", std::process::id()));
    let (killed, whole): (PathBuf, PathBuf) = (root.join("killed"), root.join("whole"));
    std::fs::create_dir_all(&root)?;

    // 1. The run in a child process, killed once epoch 1's checkpoint is complete.
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--child")
        .arg(&killed)
        .spawn()?;
    let started = Instant::now();
    while !complete_checkpoint(&killed, 1) {
        if let Some(status) = child.try_wait()? {
            return Err(
                format!("the child run ended ({status}) before its first checkpoint").into(),
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill()?; // SIGKILL: no clean-up runs in the child
    child.wait()?;
    if killed.join("fit.json").exists() {
        return Err("the child run finished before the kill: nothing was interrupted".into());
    }
    let done: Vec<usize> = (1..=job.recipe.epochs)
        .filter(|&e| complete_checkpoint(&killed, e))
        .collect();
    println!(
        "killed the run after {:.1} s; complete checkpoints on disk: epochs {done:?}",
        started.elapsed().as_secs_f64()
    );

    // 2. Resume the killed run; 3. the same recipe uninterrupted.
    let resumed = job.train(&killed, true)?;
    let uninterrupted = job.train(&whole, false)?;

    // 4. The same run, bit for bit.
    let (a, b) = (values(&resumed), values(&uninterrupted));
    let same_weights =
        a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
    let same_metrics = metrics(&killed) == metrics(&whole);
    println!(
        "{} parameters; weights identical: {same_weights}; per-epoch losses identical: {same_metrics}",
        a.len()
    );
    if !(same_weights && same_metrics) {
        return Err("the resumed run differs from the uninterrupted one".into());
    }

    // The test split, read once.
    let model = &resumed.model;
    let device = model.devices()[0].clone();
    let normalizer = Normalizer::fit(&job.data.train);
    let test = kiln::train::evaluate_with(
        &|images| model.forward(images),
        &job.data.test,
        &normalizer,
        256,
        &device,
    )?;
    println!(
        "test accuracy {:.2}% on {} images (macro F1 {:.3})",
        100.0 * test.accuracy,
        job.data.test.len(),
        test.macro_f1
    );
    let bar = if job.tiny { 0.85 } else { 0.975 };
    if test.accuracy < bar {
        return Err(format!("test accuracy below {:.1}%", 100.0 * bar).into());
    }
    println!(
        "check: resumed after a kill = uninterrupted run, test accuracy above {:.1}%",
        100.0 * bar
    );
    std::fs::remove_dir_all(&root)?;
    Ok(())
}
