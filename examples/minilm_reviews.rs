//! Pretrained versus from scratch on the fine-food reviews (`great` / `other`, 4,000 train /
//! 1,000 test, from the data directory):
//!
//! 1. all-MiniLM-L6-v2 as a frozen sentence encoder + a new logistic-regression head (linear
//!    probing);
//! 2. all-MiniLM-L6-v2 fully fine-tuned with a new head (`TextTrainConfig::minilm_finetune`,
//!    what `kiln finetune --from models/all-MiniLM-L6-v2 --dataset fine-foods-reviews` runs);
//! 3. the zoo's `transformer-classifier` trained from scratch on the same texts.
//!
//! `cargo run --example minilm_reviews [MAX_TOKENS] [SCRATCH_EPOCHS] [FINETUNE_EPOCHS]`
//! (defaults 128, 3 and 2; an epoch count of 0 skips that step). Embedding the 5,000 reviews
//! takes minutes on 2 cores, and fine-tuning is the slow part. With the full data the linear
//! probe must beat the majority class. `KILN_EXAMPLE_TINY=1` (160 training and 80 test
//! reviews, 32 tokens, one epoch each) checks the pipeline only: every stage runs and reports
//! on the 80 test reviews. On so few reviews none of the three beats the majority class
//! (measured: the probe reached 54% on 80 and 63% on 300 test reviews from 1,000 training
//! ones, against about 65% for always answering `great`), so no quality bar is honest there.

use std::time::Instant;

use kiln::burn::module::Module;
use kiln::burn::nn::LinearConfig;
use kiln::burn::nn::loss::CrossEntropyLossConfig;
use kiln::burn::optim::{AdamConfig, GradientsParams};
use kiln::burn::tensor::{Device, Int, Tensor, TensorData};
use kiln::data::text::LabelledTexts;
use kiln::train::TrainOptions;
use kiln::train::text::{TextTrainConfig, train_text_classifier};
use kiln::transfer::SentenceEmbedder;
use kiln::transfer::embed::minilm_dir;

fn embed_all(
    embedder: &SentenceEmbedder,
    texts: &[String],
) -> Result<Tensor<2>, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let mut parts = Vec::new();
    for (i, chunk) in texts.chunks(64).enumerate() {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        parts.push(embedder.embed(&refs)?);
        if i % 10 == 9 {
            eprintln!(
                "  embedded {} / {} ({:.0}s)",
                (i + 1) * 64,
                texts.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(Tensor::cat(parts, 0))
}

fn labels(texts: &LabelledTexts, device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = texts.labels.iter().map(|&l| l as i64).collect();
    Tensor::from_data(TensorData::new(v, [texts.labels.len()]), device)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let tiny = std::env::var_os("KILN_EXAMPLE_TINY").is_some();
    let max_tokens: usize = args
        .get(1)
        .map_or(Ok(if tiny { 32 } else { 128 }), |a| a.parse())?;
    let scratch_epochs: usize = args
        .get(2)
        .map_or(Ok(if tiny { 1 } else { 3 }), |a| a.parse())?;
    let finetune_epochs: usize = args
        .get(3)
        .map_or(Ok(if tiny { 1 } else { 2 }), |a| a.parse())?;
    let (max_train, max_test) = if tiny {
        (Some(160), Some(80))
    } else {
        (None, None)
    };
    kiln::core::allocator::tune();
    let data_dir = kiln::data::data_dir::resolve(None);
    let (mut train, mut test) = LabelledTexts::fine_food_reviews(&data_dir)?;
    if tiny {
        train = train.subset(&(0..160).collect::<Vec<_>>());
        test = test.subset(&(0..80).collect::<Vec<_>>());
    }
    let device = Device::flex();
    kiln::core::Seed(42).apply(&device);

    // 1. Linear probing: frozen MiniLM features, a new 384 -> 2 head trained with Adam.
    let started = Instant::now();
    let (embedder, _) = SentenceEmbedder::from_dir(&minilm_dir(&data_dir), &device)?;
    let embedder = embedder.with_max_len(max_tokens);
    let x_train = embed_all(&embedder, &train.texts)?;
    let x_test = embed_all(&embedder, &test.texts)?;
    let embed_seconds = started.elapsed().as_secs_f64();
    // Standardised features (the training set's statistics), then logistic regression with
    // weight decay, full batch.
    let mean = x_train.clone().mean_dim(0);
    let std = x_train.clone().var(0).sqrt().clamp_min(1e-6);
    let x_test = (x_test - mean.clone()) / std.clone();
    let x_train = (x_train - mean) / std;
    let ad = device.clone().autodiff();
    let (x, y) = (x_train.to_device(&ad), labels(&train, &ad));
    let mut head = LinearConfig::new(384, train.classes.len()).init(&ad);
    let mut optim = AdamConfig::new()
        .with_weight_decay(Some(kiln::burn::optim::decay::WeightDecayConfig::new(1e-3)))
        .init();
    let loss_fn = CrossEntropyLossConfig::new().init(&ad);
    for _ in 0..500 {
        let loss = loss_fn.forward(head.forward(x.clone()), y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &head);
        head = optim.step(1e-2, head, grads);
    }
    let predicted = head.valid().forward(x_test).argmax(1).flatten::<1>(0, 1);
    let correct: i64 = predicted
        .equal(labels(&test, &device))
        .int()
        .sum()
        .into_scalar();
    let probe = correct as f64 / test.labels.len() as f64;
    println!(
        "MiniLM linear probe: test accuracy {:.2}% ({correct}/{}), embeddings {embed_seconds:.0}s, max {max_tokens} tokens",
        100.0 * probe,
        test.labels.len()
    );

    // 2. Full fine-tuning: the encoder and a new head trained together.
    if finetune_epochs > 0 {
        let mut config = TextTrainConfig::minilm_finetune();
        config.max_len = max_tokens;
        config.recipe.epochs = finetune_epochs;
        (config.max_train, config.max_test) = (max_train, max_test);
        let run = std::env::temp_dir().join("kiln-reviews-minilm");
        let report = train_text_classifier(&config, &run, &TrainOptions::default())?;
        println!(
            "MiniLM full fine-tuning ({finetune_epochs} epochs): test accuracy {:.2}% (macro F1 {:.3}), trained in {:.0}s",
            100.0 * report.test.accuracy,
            report.test.macro_f1,
            report.train_seconds
        );
    }

    // 3. The zoo's transformer classifier from scratch on the same 4,000 reviews.
    if scratch_epochs == 0 {
        return Ok(());
    }
    let mut config = TextTrainConfig::for_preset("transformer-classifier")?;
    config.max_len = max_tokens;
    config.recipe.epochs = scratch_epochs;
    (config.max_train, config.max_test) = (max_train, max_test);
    let run = std::env::temp_dir().join("kiln-reviews-scratch");
    let report = train_text_classifier(&config, &run, &TrainOptions::quiet())?;
    println!(
        "transformer-classifier from scratch ({scratch_epochs} epochs): test accuracy {:.2}%, trained in {:.0}s",
        100.0 * report.test.accuracy,
        report.train_seconds
    );
    assert_eq!(
        report.test.total,
        test.labels.len().min(max_test.unwrap_or(usize::MAX))
    );
    let great = test.labels.iter().filter(|&&l| l == 0).count();
    let majority = great.max(test.labels.len() - great) as f64 / test.labels.len() as f64;
    if tiny {
        println!(
            "check: the three stages ran on the {} test reviews",
            test.labels.len()
        );
    } else {
        assert!(
            probe > majority,
            "linear probe accuracy {probe} not above the majority rate {majority}"
        );
        println!(
            "check: the frozen embeddings' probe ({:.1}%) beats the majority class ({:.1}%)",
            100.0 * probe,
            100.0 * majority
        );
    }
    Ok(())
}
