//! The facade crate exposes every part under one name, and the parts work together.

use kiln::burn::module::Module;

#[test]
fn facade_reaches_every_crate() {
    let device = kiln::core::parse_device("cpu").unwrap();
    let preset = kiln::models::preset("mlp").unwrap();
    let model = preset.config.init(&device).unwrap();
    let summary = model.summary(preset.name, &preset.summary_input()).unwrap();
    assert_eq!(summary.total_params, model.num_params());
    let data = kiln::data::load_split(preset.dataset, kiln::core::Seed(1)).unwrap();
    assert_eq!(data.train.shape().to_vec(), preset.input);
    let mut config = kiln::train::TrainConfig::for_preset("mlp").unwrap();
    assert_eq!(config.model, preset.config);
    // TrainConfig.optim is kiln-optim's type, reachable through the facade.
    config.recipe.optim = kiln::optim::OptimConfig {
        optimizer: kiln::optim::OptimizerConfig::sgd_momentum(0.9, false),
        ..kiln::optim::OptimConfig::default()
    };
    config.validate().unwrap();
    let _ = kiln::compress::Scope::Global;
}

/// The README's "From Rust" chat example, through the facade.
#[test]
fn readme_chat_example() -> Result<(), Box<dyn std::error::Error>> {
    use kiln::transfer::{
        chat::{GenerateOptions, Generator, Message},
        fetch, llama,
    };
    use std::ops::ControlFlow;

    let path = fetch::locate(
        &fetch::SMOLLM2,
        &kiln::data::data_dir::resolve(None),
        &fetch::cache_dir(),
    )?;
    let bundle = llama::load(&path, &kiln::burn::tensor::Device::flex())?;
    let mut generator = Generator::new(&bundle, 2048);
    let prompt =
        generator.chat_prompt(&[Message::new("user", "What is the capital of France?")])?;
    let mut streamed = String::new();
    let reply = generator.generate(&prompt, &GenerateOptions::default(), &mut |piece| {
        streamed.push_str(piece);
        ControlFlow::Continue(())
    })?;
    assert_eq!(reply.text, "The capital of France is Paris.");
    assert_eq!(streamed, reply.text);
    Ok(())
}

/// The README's "From Rust" user-defined model, through the facade.
#[test]
fn readme_custom_model_example() -> Result<(), Box<dyn std::error::Error>> {
    use kiln::burn::{
        self,
        module::Module,
        nn::{Linear, LinearConfig},
        train::ClassificationOutput,
    };
    use kiln::data::{ImageBatch, ImageBatcher, ImageDataset, Normalizer};
    use kiln::train::{Recipe, Shards, Task, TrainOptions, fit, per_sample_cross_entropy};

    #[derive(Module, Debug)]
    struct MyModel {
        hidden: Linear,
        out: Linear,
    }

    impl Task for MyModel {
        type Batch = ImageBatch;
        type Output = ClassificationOutput;
        fn forward(&self, batch: ImageBatch) -> ClassificationOutput {
            let x = batch.images.flatten(1, 3);
            let logits = self
                .out
                .forward(burn::tensor::activation::relu(self.hidden.forward(x)));
            let loss = per_sample_cross_entropy(logits.clone(), batch.targets.clone());
            ClassificationOutput::new(loss, logits, batch.targets)
        }
        fn split(&self, batch: &ImageBatch, shards: usize) -> Option<Shards<ImageBatch>> {
            Some(Shards::of(batch, shards))
        }
    }

    let run_dir = tempfile::tempdir()?;
    let recipe = Recipe {
        epochs: 4,
        lr: 3e-3,
        ..Recipe::default()
    };
    let data = kiln::data::load_split("digits", kiln::core::Seed(recipe.seed))?;
    let normalizer = Normalizer::fit(&data.train);
    let fitted = fit(&recipe, run_dir.path(), &TrainOptions::quiet(), |setup| {
        let d = setup.device();
        let task = MyModel {
            hidden: LinearConfig::new(64, 32).init(d),
            out: LinearConfig::new(32, 10).init(d),
        };
        let batcher = ImageBatcher::new(data.train.shape(), normalizer.clone());
        let loaders = setup.loaders(
            batcher.clone(),
            batcher,
            ImageDataset::new(data.train.clone()),
            ImageDataset::new(data.valid.clone()),
        );
        Ok((task, loaders))
    })?;
    let last = fitted.epochs.last().unwrap();
    assert!(last.valid_accuracy > 0.9, "{last:?}");
    for file in ["recipe.toml", "metrics.csv", "curves.png", "fit.json"] {
        assert!(run_dir.path().join(file).is_file(), "{file}");
    }
    Ok(())
}
