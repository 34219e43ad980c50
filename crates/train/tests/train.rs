//! Training on the real digits: quality bar, reproducibility, and reload equality.

use kiln_train::{TrainConfig, TrainOptions, evaluate_run, train};

fn quick(seed: u64, epochs: usize) -> TrainConfig {
    let mut config = TrainConfig::for_preset("mlp").unwrap();
    config.seed = seed;
    config.epochs = epochs;
    config
}

#[test]
fn default_recipe_reaches_95_percent_and_reloads_identically() {
    let dir = tempfile::tempdir().unwrap();
    let config = TrainConfig::for_preset("mlp").unwrap();
    let report = train(&config, dir.path(), &TrainOptions::quiet()).unwrap();
    assert!(
        report.test.accuracy >= 0.95,
        "held-out accuracy {:.4} below 0.95",
        report.test.accuracy
    );
    // 20% of each class, rounded: 359 of the 1,797 digits.
    assert_eq!(report.test.total, 359);
    assert_eq!(report.epochs.len(), config.epochs);
    // Training loss goes down.
    assert!(report.epochs.last().unwrap().train_loss < report.epochs[0].train_loss / 3.0);
    // Classification metrics agree with each other.
    let t = &report.test;
    assert!(t.top5_accuracy >= t.accuracy && t.top5_accuracy > 0.99);
    let diagonal: usize = (0..10).map(|c| t.confusion[c][c]).sum();
    let all: usize = t.confusion.iter().flatten().sum();
    assert_eq!((diagonal, all), (t.correct, t.total));
    assert_eq!(t.per_class.iter().map(|m| m.support).sum::<usize>(), 359);
    assert!(t.macro_f1 > 0.94 && t.macro_f1 <= 1.0, "{}", t.macro_f1);
    // The run folder reloads to exactly the same result.
    let again = evaluate_run(dir.path()).unwrap();
    assert_eq!(again, report.test);
    for file in [
        "config.toml",
        "model.bpk",
        "normalizer.json",
        "metrics.csv",
        "report.json",
    ] {
        assert!(dir.path().join(file).is_file(), "{file} missing");
    }
    let csv = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), config.epochs + 1);
}

#[test]
fn same_seed_same_losses_different_seed_different_losses() {
    let run = |seed| {
        let dir = tempfile::tempdir().unwrap();
        let report = train(&quick(seed, 2), dir.path(), &TrainOptions::quiet()).unwrap();
        report
            .epochs
            .iter()
            .flat_map(|m| [m.train_loss.to_bits(), m.valid_loss.to_bits()])
            .collect::<Vec<u64>>()
    };
    let a = run(7);
    assert_eq!(a, run(7), "same seed must give bit-identical losses");
    assert_ne!(a, run(8), "a different seed must give different losses");
}

#[test]
fn bad_run_folders_are_clear_errors() {
    let err = evaluate_run(std::path::Path::new("/nonexistent/run"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/run"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    train(&quick(1, 1), dir.path(), &TrainOptions::quiet()).unwrap();
    std::fs::write(dir.path().join("model.bpk"), b"not a burnpack").unwrap();
    let err = evaluate_run(dir.path()).unwrap_err().to_string();
    assert!(err.contains("cannot load weights"), "{err}");
    assert!(err.contains("model.bpk"), "{err}");
    std::fs::remove_file(dir.path().join("model.bpk")).unwrap();
    let err = evaluate_run(dir.path()).unwrap_err().to_string();
    assert!(err.contains("model.bpk: file not found"), "{err}");
}

#[test]
fn mismatched_model_and_data_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = quick(1, 1);
    config.model = kiln_models::preset("lenet-300-100").unwrap().config;
    let err = train(&config, dir.path(), &TrainOptions::quiet())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("input_size is 784 but the data has 1x8x8 = 64"),
        "{err}"
    );
}

#[test]
fn divergence_is_reported_with_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = quick(1, 1);
    config.lr = 1e30;
    match train(&config, dir.path(), &TrainOptions::quiet()) {
        Err(kiln_train::Error::Diverged { epoch, .. }) => assert_eq!(epoch, 1),
        other => panic!("expected a divergence error, got {other:?}"),
    }
}

#[test]
fn every_image_preset_learns_on_real_data() {
    // A few epochs on a small, real subset: the training loss must fall.
    for name in [
        "mlp",
        "vit-lite-digits",
        "mlp-mnist",
        "lenet-300-100",
        "lenet5",
        "cnn-small",
        "vit-lite",
    ] {
        let mut config = TrainConfig::for_preset(name).unwrap();
        config.epochs = 3;
        config.batch_size = 32;
        config.train_per_class = Some(if config.dataset == "digits" { 40 } else { 60 });
        config.test_per_class = Some(10);
        let dir = tempfile::tempdir().unwrap();
        let report = train(&config, dir.path(), &TrainOptions::quiet()).unwrap();
        let losses: Vec<f64> = report.epochs.iter().map(|m| m.train_loss).collect();
        assert!(
            losses[2] < losses[0] * 0.9,
            "{name}: training losses {losses:?} do not fall"
        );
        assert_eq!(report.test.total, 100, "{name}");
    }
}

#[test]
fn char_lm_beats_the_unigram_baseline_and_generates_reproducibly() {
    use kiln_train::lm::{LmTrainConfig, train_lm};
    // A brief run of the char-lm preset on Jane Austen (Persuasion held out).
    let mut config = LmTrainConfig::for_preset("char-lm").unwrap();
    config.seq_len = 64;
    config.epochs = 1;
    config.lr = 3e-3;
    config.max_train_windows = Some(640);
    config.max_valid_windows = Some(64);
    let dir = tempfile::tempdir().unwrap();
    let report = train_lm(&config, dir.path(), &TrainOptions::quiet()).unwrap();
    eprintln!(
        "char-lm: validation loss {:.3} nats/char vs unigram {:.3}; sample: {:?}",
        report.valid_loss, report.unigram_baseline, report.sample
    );
    assert!(
        report.valid_loss < report.unigram_baseline,
        "validation loss {:.3} is not below the unigram baseline {:.3}",
        report.valid_loss,
        report.unigram_baseline
    );
    assert_eq!(report.sample.chars().count(), 240);
    // The same seed reproduces the run, its loss and its sample exactly.
    let again = train_lm(
        &config,
        tempfile::tempdir().unwrap().path(),
        &TrainOptions::quiet(),
    )
    .unwrap();
    assert_eq!(again.valid_loss.to_bits(), report.valid_loss.to_bits());
    assert_eq!(again.sample, report.sample);
}

#[test]
fn transformer_classifier_learns_on_reviews() {
    use kiln_train::text::{TextTrainConfig, train_text_classifier};
    // The transformer-classifier preset, WordPiece-tokenized reviews, a few short epochs.
    let mut config = TextTrainConfig::for_preset("transformer-classifier").unwrap();
    config.max_len = 64;
    config.epochs = 3;
    config.max_train = Some(256);
    config.max_test = Some(64);
    config.lr = 1e-3;
    let dir = tempfile::tempdir().unwrap();
    let report = train_text_classifier(&config, dir.path(), &TrainOptions::quiet()).unwrap();
    assert_eq!(report.classes, vec!["great", "other"]);
    let losses: Vec<f64> = report.epochs.iter().map(|m| m.train_loss).collect();
    assert!(
        losses[2] < losses[0],
        "training losses {losses:?} do not fall"
    );
}

#[test]
fn minilm_tokenizer_gives_the_reference_ids() {
    let dir = std::path::PathBuf::from(std::env::var_os("KILN_DATA_DIR").unwrap())
        .join("models/all-MiniLM-L6-v2");
    let tokenizer = kiln_data::text::TextTokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    assert_eq!(tokenizer.vocab_size(), 30522);
    // The token ids of the model folder's reference.txt.
    let ids = tokenizer
        .encode("The quick brown fox jumps over the lazy dog.")
        .unwrap();
    assert_eq!(
        ids,
        vec![
            101, 1996, 4248, 2829, 4419, 14523, 2058, 1996, 13971, 3899, 1012, 102
        ]
    );
    let padded = tokenizer.encode_padded("The lazy dog", 6).unwrap();
    assert_eq!(padded.ids, vec![101, 1996, 13971, 3899, 102, 0]);
    assert_eq!(padded.attention, vec![true, true, true, true, true, false]);
    // Truncation keeps [SEP] last.
    let cut = tokenizer
        .encode_padded("The quick brown fox jumps over the lazy dog.", 4)
        .unwrap();
    assert_eq!(cut.ids, vec![101, 1996, 4248, 102]);
}

#[test]
fn augmented_training_is_seed_exact_and_still_learns() {
    let run = |seed| {
        let dir = tempfile::tempdir().unwrap();
        let mut config = quick(seed, 10);
        config.augment = Some("rotate=10,translate=0.1,noise=0.02,erase=0.2,mixup=0.2".into());
        train(&config, dir.path(), &TrainOptions::quiet()).unwrap()
    };
    let a = run(11);
    let b = run(11);
    let losses = |r: &kiln_train::TrainReport| {
        r.epochs
            .iter()
            .map(|m| m.train_loss.to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(losses(&a), losses(&b), "augmentation is seeded");
    assert!(
        a.test.accuracy >= 0.85,
        "augmented 10-epoch MLP reached only {:.4}",
        a.test.accuracy
    );
}

#[test]
fn a_table_trains_an_mlp_sized_to_its_columns() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = TrainConfig::for_preset("mlp").unwrap();
    config.dataset = "iris".into();
    config.adapt_model = true;
    config.epochs = 40;
    config.batch_size = 16;
    let report = train(&config, dir.path(), &TrainOptions::quiet()).unwrap();
    assert_eq!(report.test.total, 30);
    assert!(
        report.test.accuracy >= 0.9,
        "iris test accuracy {:.4}",
        report.test.accuracy
    );
    // The saved config holds the resized model, so the run reloads.
    let saved = TrainConfig::load(&dir.path().join("config.toml")).unwrap();
    assert!(!saved.adapt_model);
    assert_eq!(evaluate_run(dir.path()).unwrap(), report.test);
}

#[test]
fn optimizer_and_schedule_come_from_the_config_and_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = quick(3, 6);
    config.lr = 0.05;
    config.optim.optimizer = kiln_optim::OptimizerConfig::sgd_momentum(0.9, true);
    config.optim.clip = Some(kiln_optim::Clip::Norm(5.0));
    config.schedule = kiln_optim::Schedule::parse("warmup-cosine:1").unwrap();
    let report = train(&config, dir.path(), &TrainOptions::quiet()).unwrap();
    let lrs: Vec<f64> = report.epochs.iter().map(|m| m.lr).collect();
    assert_eq!(lrs[0], 0.025, "warm-up epoch: base / 2");
    assert_eq!(lrs[1], 0.05, "then the full rate");
    assert!(lrs[5] < lrs[2], "cosine decay: {lrs:?}");
    assert!(
        report.test.accuracy >= 0.9,
        "Nesterov SGD reached only {:.4}",
        report.test.accuracy
    );
    let csv = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
    assert!(csv.starts_with("epoch,lr,"), "{csv}");
    assert!(csv.lines().nth(1).unwrap().starts_with("1,0.025,"), "{csv}");
    // The run folder's config reproduces the optimizer and the schedule.
    let saved = TrainConfig::load(&dir.path().join("config.toml")).unwrap();
    assert_eq!(saved.optim, config.optim);
    assert_eq!(saved.schedule, config.schedule);
}
