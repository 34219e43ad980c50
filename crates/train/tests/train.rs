//! Training on the real digits: quality bar, reproducibility, and reload equality.

use kiln_train::{TrainConfig, TrainOptions, evaluate_run, train};

fn quick(seed: u64, epochs: usize) -> TrainConfig {
    let mut config = TrainConfig::for_preset("mlp").unwrap();
    config.recipe.seed = seed;
    config.recipe.epochs = epochs;
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
    assert_eq!(report.epochs.len(), config.recipe.epochs);
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
        "curves.png",
        "confusion.png",
    ] {
        assert!(dir.path().join(file).is_file(), "{file} missing");
    }
    // The plots are real pictures: mostly white with some ink of more than one colour.
    for plot in ["curves.png", "confusion.png"] {
        let image = image::open(dir.path().join(plot)).unwrap().to_rgb8();
        let inked = image.pixels().filter(|p| p.0 != [255, 255, 255]).count();
        let colours: std::collections::HashSet<[u8; 3]> = image.pixels().map(|p| p.0).collect();
        let share = inked as f64 / image.pixels().count() as f64;
        assert!(
            share > 0.02 && share < 0.9 && colours.len() > 10,
            "{plot}: {share}"
        );
    }
    let csv = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), config.recipe.epochs + 1);
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
    config.recipe.lr = 1e30;
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
        config.recipe.epochs = 3;
        config.recipe.batch_size = 32;
        // The models, not the full-length recipes: no warm-up or augmentation in 3 epochs.
        config.recipe.schedule = kiln_optim::Schedule::Constant;
        config.augment = None;
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
    config.recipe.epochs = 1;
    config.recipe.lr = 3e-3;
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
    // Persuasion, read once at the end: 64 windows of 64 characters.
    assert_eq!(report.test.tokens, 64 * 64);
    assert!(
        report.test.loss < report.unigram_baseline,
        "test loss {:.3} vs unigram {:.3}",
        report.test.loss,
        report.unigram_baseline
    );
    assert!((report.test.bits_per_token - report.test.loss / std::f64::consts::LN_2).abs() < 1e-12);
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
    config.recipe.epochs = 3;
    config.max_train = Some(256);
    config.max_test = Some(64);
    config.recipe.lr = 1e-3;
    let dir = tempfile::tempdir().unwrap();
    let report = train_text_classifier(&config, dir.path(), &TrainOptions::quiet()).unwrap();
    assert_eq!(report.classes, vec!["great", "other"]);
    let losses: Vec<f64> = report.epochs.iter().map(|m| m.train_loss).collect();
    assert!(
        losses[2] < losses[0],
        "training losses {losses:?} do not fall"
    );
    // Validation is 10% of the 256 training texts; the 64 test texts are read at the end.
    assert_eq!((report.train_size, report.valid_size), (230, 26));
    assert_eq!(report.test.total, 64);
    assert_eq!(report.test.confusion.iter().flatten().sum::<usize>(), 64);
}

#[test]
fn minilm_fine_tunes_with_a_new_head_frozen_or_not() {
    use kiln_train::text::{PretrainedText, TextModel, TextTrainConfig, train_text_classifier};
    use kiln_transfer::SentenceEmbedder;
    let data = std::path::PathBuf::from(std::env::var_os("KILN_DATA_DIR").unwrap());
    let minilm = data.join("models/all-MiniLM-L6-v2");
    let device = burn::tensor::Device::flex();
    let (original, _) = SentenceEmbedder::from_dir(&minilm, &device).unwrap();
    let weight = |m: &kiln_models::bert::BertEncoder| {
        m.encoder.layers[5]
            .pwff
            .linear_outer
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    let before = weight(original.encoder());
    let trained = |freeze: bool| {
        let mut config = TextTrainConfig::minilm_finetune();
        config.max_len = 24;
        config.recipe.epochs = 1;
        config.max_train = Some(32);
        config.max_test = Some(16);
        config.recipe.lr = 1e-3;
        config.pretrained = Some(if freeze {
            PretrainedText::linear_probe("models/all-MiniLM-L6-v2")
        } else {
            PretrainedText::full("models/all-MiniLM-L6-v2", 0.1)
        });
        let dir = tempfile::tempdir().unwrap();
        let report = train_text_classifier(&config, dir.path(), &TrainOptions::quiet()).unwrap();
        // 10% of each class of the 32 training texts validates.
        assert_eq!(
            (report.train_size, report.valid_size, report.test_size),
            (29, 3, 16)
        );
        // The run's weights load back into the same architecture.
        let model = TextModel::Bert(kiln_models::bert::BertClassifier::new(
            original.encoder().clone(),
            2,
            0.1,
        ));
        let model =
            burn::module::Module::try_load_file(model, dir.path().join("model.bpk")).unwrap();
        let TextModel::Bert(model) = model else {
            unreachable!()
        };
        // The weights load lazily from the run folder: keep it while the model is used.
        (weight(&model.encoder), report, model, dir)
    };
    let (frozen, probe, _, _) = trained(true);
    assert!(frozen == before, "a frozen encoder must not change");
    assert!(probe.epochs[0].train_loss.is_finite());
    let (tuned, _, model, _run) = trained(false);
    assert!(tuned != before, "full fine-tuning trains the encoder");

    // The fine-tuned encoder exports with Hugging Face names and reloads to identical outputs.
    let export = tempfile::tempdir().unwrap();
    let file = export.path().join("model.safetensors");
    let names = kiln_transfer::save_weights(
        &model.encoder,
        &file,
        &kiln_transfer::embed::bert_export_key_map(),
    )
    .unwrap();
    assert!(
        names
            .iter()
            .any(|n| n == "encoder.layer.5.output.dense.weight"),
        "{names:?}"
    );
    let fresh = kiln_models::bert::BertConfig::minilm_l6()
        .init(&device)
        .unwrap();
    let (reloaded, report) =
        kiln_transfer::load_weights(fresh, &file, &kiln_transfer::bert_key_map(), false).unwrap();
    assert!(report.missing.is_empty() && report.unused.is_empty());
    assert_eq!(weight(&reloaded), tuned);
    let ids = burn::tensor::Tensor::<2, burn::tensor::Int>::from_data(
        burn::tensor::TensorData::new(vec![101i64, 2023, 2003, 1037, 3231, 102], [1, 6]),
        &device,
    );
    let a = model.encoder.forward(ids.clone(), None, None).into_data();
    let b = reloaded.forward(ids, None, None).into_data();
    assert_eq!(
        a.as_bytes(),
        b.as_bytes(),
        "the round trip changed the outputs"
    );

    // A folder without weights is named.
    let mut config = TextTrainConfig::minilm_finetune();
    config.pretrained = Some(PretrainedText::full("models/no-such-encoder", 1.0));
    let err = train_text_classifier(
        &config,
        tempfile::tempdir().unwrap().path(),
        &TrainOptions::quiet(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no-such-encoder"), "{err}");
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
    config.recipe.epochs = 40;
    config.recipe.batch_size = 16;
    let report = train(&config, dir.path(), &TrainOptions::quiet()).unwrap();
    assert_eq!(report.test.total, 30);
    assert!(
        report.test.accuracy >= 0.9,
        "iris test accuracy {:.4}",
        report.test.accuracy
    );
    // Class names, not indices, in the report (and report.json, and the confusion PNG).
    assert_eq!(report.test.classes, ["setosa", "versicolor", "virginica"]);
    let names: Vec<&str> = report
        .test
        .per_class
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(names, report.test.classes);
    let json = std::fs::read_to_string(dir.path().join("report.json")).unwrap();
    assert!(json.contains("\"name\": \"versicolor\""), "{json}");
    // The saved config holds the resized model, so the run reloads.
    let saved = TrainConfig::load(&dir.path().join("config.toml")).unwrap();
    assert!(!saved.adapt_model);
    assert_eq!(evaluate_run(dir.path()).unwrap(), report.test);
}

#[test]
fn optimizer_and_schedule_come_from_the_config_and_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = quick(3, 6);
    config.recipe.lr = 0.05;
    config.recipe.optim.optimizer = kiln_optim::OptimizerConfig::sgd_momentum(0.9, true);
    config.recipe.optim.clip = Some(kiln_optim::Clip::Norm(5.0));
    config.recipe.schedule = kiln_optim::Schedule::parse("warmup-cosine:1").unwrap();
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
    assert_eq!(saved.recipe.optim, config.recipe.optim);
    assert_eq!(saved.recipe.schedule, config.recipe.schedule);
}

/// Per-epoch numbers without the wall-clock seconds, bit for bit.
fn fingerprint(epochs: &[kiln_train::EpochMetrics]) -> Vec<[u64; 5]> {
    epochs
        .iter()
        .map(|m| {
            [
                m.lr.to_bits(),
                m.train_loss.to_bits(),
                m.train_accuracy.to_bits(),
                m.valid_loss.to_bits(),
                m.valid_accuracy.to_bits(),
            ]
        })
        .collect()
}

#[test]
fn a_paused_and_resumed_run_ends_exactly_like_an_uninterrupted_one() {
    // Dropout, augmentation, label smoothing, momentum and a schedule: every kind of state a
    // resume must restore.
    let mut config = quick(11, 5);
    config.augment = Some("rotate=10,noise=0.02".into());
    config.label_smoothing = Some(0.1);
    config.recipe.optim.optimizer = kiln_optim::OptimizerConfig::sgd_momentum(0.9, false);
    config.recipe.lr = 0.02;
    config.recipe.schedule = kiln_optim::Schedule::parse("step:2:0.5").unwrap();
    let full_dir = tempfile::tempdir().unwrap();
    let full = train(&config, full_dir.path(), &TrainOptions::quiet()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let options = TrainOptions {
        pause_after: Some(2),
        ..TrainOptions::quiet()
    };
    match train(&config, dir.path(), &options) {
        Err(kiln_train::Error::Paused { epoch: 2, .. }) => {}
        other => panic!("expected a pause after epoch 2, got {other:?}"),
    }
    assert!(!dir.path().join("report.json").exists());
    assert!(dir.path().join("checkpoint/model-2.bpk").is_file());
    let resumed = kiln_train::resume(dir.path(), &TrainOptions::quiet()).unwrap();
    assert_eq!(resumed.resumed_from, Some(2));
    assert_eq!(fingerprint(&resumed.epochs), fingerprint(&full.epochs));
    assert_eq!(resumed.test, full.test);
    assert!(full.test.accuracy > 0.9, "{}", full.test.accuracy);
    // Best and last checkpoints are kept, older ones deleted.
    let best = full.best_epoch.unwrap();
    for epoch in 1..=5 {
        let kept = epoch >= 4 || epoch == best;
        assert_eq!(
            full_dir
                .path()
                .join(format!("checkpoint/model-{epoch}.bpk"))
                .is_file(),
            kept,
            "epoch {epoch} (best {best})"
        );
    }
    // A finished run does not resume.
    let err = kiln_train::resume(dir.path(), &TrainOptions::quiet()).unwrap_err();
    assert!(err.to_string().contains("already finished"), "{err}");
}

#[test]
fn a_corrupt_checkpoint_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let options = TrainOptions {
        pause_after: Some(1),
        ..TrainOptions::quiet()
    };
    assert!(train(&quick(2, 3), dir.path(), &options).is_err());
    let optim = dir.path().join("checkpoint/optim-1.bpk");
    let bytes = std::fs::read(&optim).unwrap();
    std::fs::write(&optim, &bytes[..bytes.len() / 2]).unwrap();
    let err = kiln_train::resume(dir.path(), &TrainOptions::quiet()).unwrap_err();
    assert!(err.to_string().contains("optim-1.bpk"), "{err}");
    // No checkpoint at all.
    std::fs::remove_dir_all(dir.path().join("checkpoint")).unwrap();
    let err = kiln_train::resume(dir.path(), &TrainOptions::quiet()).unwrap_err();
    assert!(err.to_string().contains("no complete checkpoint"), "{err}");
}

#[test]
fn early_stopping_stops_on_a_plateau_and_restores_the_best_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = quick(4, 40);
    config.recipe.early_stopping = Some(kiln_train::EarlyStopping::new(2, 0.01));
    let report = train(&config, dir.path(), &TrainOptions::quiet()).unwrap();
    let stopped = report.stopped_early_at.expect("the run should stop early");
    assert!(stopped < 40 && report.epochs.len() == stopped);
    let best = report.best_epoch.unwrap();
    assert_eq!(report.model_epoch, best);
    assert_eq!(
        stopped - best,
        2,
        "stops after `patience` epochs without improvement"
    );
    // Keras' rule, recomputed from the logged losses: the best epoch is the last one that
    // improved on the previous best by more than min_delta.
    let mut expected = (1, report.epochs[0].valid_loss);
    for m in &report.epochs[1..] {
        if m.valid_loss < expected.1 - 0.01 {
            expected = (m.epoch, m.valid_loss);
        }
    }
    assert_eq!(expected.0, best);
    // The saved model is the best epoch's: re-evaluated on the run's validation split, its
    // loss is that epoch's logged validation loss. The test split is another set of images.
    let best_loss = report.epochs[best - 1].valid_loss;
    let valid =
        kiln_train::evaluate_run_split(dir.path(), None, kiln_train::EvalSplit::Valid).unwrap();
    assert!(
        (valid.loss - best_loss).abs() < 1e-5,
        "validation loss {} vs best epoch's {best_loss}",
        valid.loss
    );
    assert_eq!((report.valid_size, valid.total), (145, 145));
    assert_eq!((report.train_size, report.test.total), (1293, 359));
    assert!((report.test.loss - valid.loss).abs() > 1e-6);
}

/// Writes `set` as an image folder of 8-bit PNGs, one sub-folder per class; `swap` gives
/// every image of class 0 the name of class 1 and the other way round.
fn write_folder(set: &kiln_data::ImageSet, dir: &std::path::Path, swap: bool) {
    let [_, h, w] = set.shape();
    for i in 0..set.len() {
        let mut label = set.labels()[i];
        if swap {
            label = 1 - label;
        }
        let class_dir = dir.join(&set.classes()[label]);
        std::fs::create_dir_all(&class_dir).unwrap();
        let bytes: Vec<u8> = set
            .image(i)
            .iter()
            .map(|&p| (p * 255.0).round() as u8)
            .collect();
        image::GrayImage::from_raw(w as u32, h as u32, bytes)
            .unwrap()
            .save(class_dir.join(format!("{i:04}.png")))
            .unwrap();
    }
}

#[test]
fn early_stopping_restores_by_validation_when_validation_and_test_disagree() {
    // Zeros against ones from the digits: train/ and test/ correctly labelled, valid/ with
    // the two labels swapped. Learning the task makes the validation loss worse and the test
    // loss better, so a run that selected on the test split would keep its last epoch; one
    // that selects on validation restores the first.
    let digits = kiln_data::load_split("digits", kiln_core::Seed(0)).unwrap();
    let two = |s: &kiln_data::ImageSet| {
        let keep: Vec<usize> = (0..s.len()).filter(|&i| s.labels()[i] < 2).collect();
        let sub = s.subset(&keep);
        sub.relabel(sub.labels().to_vec(), vec!["0".into(), "1".into()])
            .unwrap()
    };
    let root = tempfile::tempdir().unwrap();
    write_folder(&two(&digits.train), &root.path().join("train"), false);
    write_folder(&two(&digits.valid), &root.path().join("valid"), true);
    write_folder(&two(&digits.test), &root.path().join("test"), false);
    let mut config = quick(5, 12);
    config.dataset = root.path().to_str().unwrap().to_string();
    config.data.image_size = Some([8, 8]);
    config.data.channels = kiln_data::image_folder::Channels::Grey;
    config.adapt_model = true;
    config.recipe.lr = 3e-3;
    config.recipe.early_stopping = Some(kiln_train::EarlyStopping::new(3, 0.0));
    let dir = tempfile::tempdir().unwrap();
    let report = train(&config, dir.path(), &TrainOptions::quiet()).unwrap();
    let losses: Vec<f64> = report.epochs.iter().map(|m| m.valid_loss).collect();
    let best = report.best_epoch.unwrap();
    let argmin = 1
        + (0..losses.len())
            .min_by(|&a, &b| losses[a].total_cmp(&losses[b]))
            .unwrap();
    assert_eq!(best, argmin, "validation losses {losses:?}");
    assert_eq!(report.model_epoch, best);
    assert_eq!(report.stopped_early_at, Some(best + 3), "{losses:?}");
    // The validation split is the swapped folder: the restored model is wrong there and right
    // on the test images.
    let valid =
        kiln_train::evaluate_run_split(dir.path(), None, kiln_train::EvalSplit::Valid).unwrap();
    assert!(
        valid.accuracy < 0.5,
        "validation accuracy {}",
        valid.accuracy
    );
    assert!((valid.loss - losses[best - 1]).abs() < 1e-5);
    assert!(
        report.test.accuracy > 0.5,
        "test accuracy {}",
        report.test.accuracy
    );
}

#[test]
fn reduce_on_plateau_follows_pytorchs_rule() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = quick(6, 12);
    config.recipe.lr = 0.01;
    config.recipe.monitor = kiln_train::Monitor::ValidAccuracy;
    config.recipe.plateau = Some(kiln_optim::Plateau::parse("0.5:1").unwrap());
    let report = train(&config, dir.path(), &TrainOptions::quiet()).unwrap();
    // Replay ReduceLROnPlateau(mode="max", factor=0.5, patience=1, threshold=1e-4, rel).
    let (mut best, mut bad, mut lr) = (f64::NEG_INFINITY, 0, 0.01);
    let mut reductions = 0;
    for m in &report.epochs {
        assert_eq!(m.lr, lr, "epoch {}", m.epoch);
        if m.valid_accuracy > best * (1.0 + 1e-4) {
            best = m.valid_accuracy;
            bad = 0;
        } else {
            bad += 1;
            if bad > 1 {
                lr *= 0.5;
                bad = 0;
                reductions += 1;
            }
        }
    }
    assert!(reductions >= 1, "no plateau in {:?}", report.epochs);
}

#[test]
fn divergence_mid_run_names_epoch_and_step_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = quick(1, 3);
    config.recipe.optim.optimizer = kiln_optim::OptimizerConfig::sgd();
    config.recipe.lr = 0.05;
    // Epoch 2 runs at 0.05 × 1e30: the weights blow up within a few steps.
    config.recipe.schedule = kiln_optim::Schedule::parse("step:1:1e30").unwrap();
    match train(&config, dir.path(), &TrainOptions::quiet()) {
        Err(err @ kiln_train::Error::Diverged { .. }) => {
            let kiln_train::Error::Diverged {
                epoch,
                step,
                ref checkpoint,
                ..
            } = err
            else {
                unreachable!()
            };
            assert_eq!(epoch, 2, "{err}");
            assert!(step.is_some_and(|s| s >= 1), "{err}");
            let checkpoint = checkpoint.clone().expect("epoch 1's checkpoint");
            assert!(
                checkpoint.ends_with("model-1.bpk") && checkpoint.is_file(),
                "{err}"
            );
            let message = err.to_string();
            assert!(
                message.contains("epoch 2, step") && message.contains("model-1.bpk"),
                "{message}"
            );
        }
        other => panic!("expected a divergence error, got {other:?}"),
    }
}

#[test]
fn parameter_groups_freeze_and_scale_layers() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = quick(8, 2);
    config.recipe.optim.groups = vec![
        kiln_optim::GroupRule::frozen("model.Mlp.hidden.0"),
        kiln_optim::GroupRule::scaled("model.Mlp.hidden.1", 0.0),
    ];
    let report = train(&config, dir.path(), &TrainOptions::quiet()).unwrap();
    // Only the output layer learns, on random features: well above chance (10%).
    assert!(report.test.accuracy > 0.25, "{}", report.test.accuracy);
    // The initial weights: the same run with every learning rate × 0.
    let init_dir = tempfile::tempdir().unwrap();
    let mut frozen_all = config.clone();
    frozen_all.recipe.optim.groups = vec![kiln_optim::GroupRule::scaled("model", 0.0)];
    train(&frozen_all, init_dir.path(), &TrainOptions::quiet()).unwrap();
    let device = config.recipe.device.device();
    let (_, _, initial) = kiln_train::load_run(init_dir.path(), &device).unwrap();
    let (_, _, trained) = kiln_train::load_run(dir.path(), &device).unwrap();
    let weights = |m: &kiln_models::ImageModel| -> Vec<Vec<f32>> {
        let kiln_models::ImageModel::Mlp(mlp) = m else {
            panic!("an MLP")
        };
        mlp.hidden
            .iter()
            .chain([&mlp.output])
            .map(|l| l.weight.val().into_data().try_to_vec::<f32>().unwrap())
            .collect()
    };
    let (before, after) = (weights(&initial), weights(&trained));
    assert!(before[0] == after[0], "frozen layer changed");
    assert!(
        before[1] == after[1],
        "layer with learning rate × 0 changed"
    );
    assert!(before[2] != after[2], "the output layer trains");
    // An unknown path is an error naming it.
    config.recipe.optim.groups = vec![kiln_optim::GroupRule::frozen("model.backbone")];
    let err = train(&config, dir.path(), &TrainOptions::quiet()).unwrap_err();
    assert!(err.to_string().contains("model.backbone"), "{err}");
}

#[test]
fn an_mlp_regressor_predicts_ames_house_prices() {
    use kiln_train::regression::{RegressionConfig, RegressionLoss, train_regression};
    let dir = tempfile::tempdir().unwrap();
    let mut config = RegressionConfig::new("ames-housing");
    config.recipe.epochs = 40;
    let report = train_regression(&config, dir.path(), &TrainOptions::quiet()).unwrap();
    eprintln!(
        "ames MLP: R² {:.4}, RMSE {:.0}, MAE {:.0}; baseline RMSE {:.0}",
        report.test.r2, report.test.rmse, report.test.mae, report.baseline.rmse
    );
    // 586 held-out test houses (a fixed split), 234 validation houses from the other 2,344;
    // the closed-form ridge regression of the data tests reaches 0.847.
    assert_eq!(
        (report.train_size, report.valid_size, report.test_size),
        (2110, 234, 586)
    );
    assert!(report.test.r2 > 0.85, "R² {}", report.test.r2);
    assert!(report.baseline.r2.abs() < 0.02, "{}", report.baseline.r2);
    assert!(report.test.mae < 0.5 * report.baseline.mae);
    for file in [
        "config.toml",
        "encoder.json",
        "model.bpk",
        "metrics.csv",
        "report.json",
        "curves.png",
    ] {
        assert!(dir.path().join(file).is_file(), "{file} missing");
    }
    // MAE training, same data: also well above the baseline.
    config.loss = RegressionLoss::Mae;
    let mae = train_regression(&config, dir.path(), &TrainOptions::quiet()).unwrap();
    eprintln!(
        "ames MLP (MAE loss): R² {:.4}, MAE {:.0}",
        mae.test.r2, mae.test.mae
    );
    assert!(mae.test.r2 > 0.8, "R² {}", mae.test.r2);
}

#[test]
fn a_paused_regression_run_resumes_exactly_through_resume_run() {
    use kiln_train::regression::{RegressionConfig, train_regression};
    let tmp = tempfile::tempdir().unwrap();
    let mut config = RegressionConfig::new("concrete");
    config.recipe.epochs = 6;
    // No dropout: the steps are split across two shards, as recipe.toml records.
    config.dropout = 0.0;
    let whole =
        train_regression(&config, &tmp.path().join("whole"), &TrainOptions::quiet()).unwrap();
    let paused_dir = tmp.path().join("paused");
    let paused = TrainOptions {
        pause_after: Some(3),
        ..TrainOptions::quiet()
    };
    let err = train_regression(&config, &paused_dir, &paused).unwrap_err();
    assert!(
        matches!(err, kiln_train::Error::Paused { epoch: 3, .. }),
        "{err}"
    );
    let kiln_train::RunReport::Regression(resumed) =
        kiln_train::resume_run(&paused_dir, &TrainOptions::quiet()).unwrap()
    else {
        panic!("a regression run resumes as one");
    };
    let losses = |r: &kiln_train::regression::RegressionReport| -> Vec<(u64, u64)> {
        r.epochs
            .iter()
            .map(|m| (m.train_loss.to_bits(), m.valid_loss.to_bits()))
            .collect()
    };
    assert_eq!(losses(&resumed), losses(&whole));
    assert_eq!(resumed.test, whole.test);
    let recipe = std::fs::read_to_string(paused_dir.join("recipe.toml")).unwrap();
    assert!(recipe.contains("shards = 2"), "{recipe}");
    // The run's config records the shard count too, so a new run from it is the same run.
    let saved: RegressionConfig =
        toml::from_str(&std::fs::read_to_string(paused_dir.join("config.toml")).unwrap()).unwrap();
    assert_eq!(saved.recipe.shards, Some(2));
}

#[test]
fn every_run_kind_takes_every_loop_setting() {
    use kiln_train::{Recipe, RecipeOverrides};
    let overrides = RecipeOverrides {
        epochs: Some(3),
        optimizer: Some("sgd".into()),
        clip_norm: Some(1.0),
        schedule: Some("cosine".into()),
        plateau: Some("0.5:2".into()),
        early_stopping: Some("2:0.01".into()),
        groups: vec!["model.x=0.1".into()],
        seed: Some(7),
        valid_fraction: Some(0.2),
        ..RecipeOverrides::default()
    };
    let mut recipe = Recipe::default();
    overrides.apply(&mut recipe).unwrap();
    assert_eq!(
        (recipe.epochs, recipe.seed, recipe.valid_fraction),
        (3, 7, 0.2)
    );
    assert!(recipe.plateau.is_some() && recipe.early_stopping.is_some());
    assert_eq!(recipe.optim.groups.len(), 1);

    // Each kind's config takes the recipe and gives it back.
    let mut lm = kiln_train::lm::LmTrainConfig::for_preset("char-lm").unwrap();
    let mut text = kiln_train::text::TextTrainConfig::for_preset("transformer-classifier").unwrap();
    let mut reg = kiln_train::regression::RegressionConfig::new("concrete");
    let mut multi = kiln_train::multitask::MultiTaskConfig::new(
        "digits",
        vec![kiln_train::multitask::Head::new(
            "digit",
            (0..10).collect(),
            1.0,
        )],
    );
    let mut image = kiln_train::TrainConfig::for_preset("mlp").unwrap();
    lm.set_recipe(recipe.clone()).unwrap();
    text.set_recipe(recipe.clone()).unwrap();
    reg.set_recipe(recipe.clone()).unwrap();
    multi.set_recipe(recipe.clone()).unwrap();
    image.set_recipe(recipe.clone()).unwrap();
    for back in [
        lm.recipe(),
        text.recipe(),
        reg.recipe(),
        multi.recipe(),
        image.recipe(),
    ] {
        assert_eq!(back, recipe);
    }
    // Every kind's config.toml has the recipe's keys at the top level, reads back equal, and
    // refuses a key that is no setting (the recipe is flattened, so serde's own
    // deny_unknown_fields cannot do it).
    fn strict<T>(config: &T)
    where
        T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let text = toml::to_string(config).unwrap();
        assert!(text.contains("\nepochs = 3\n") && text.contains("\nvalid_fraction = 0.2\n"));
        assert_eq!(&toml::from_str::<T>(&text).unwrap(), config);
        let typo = toml::from_str::<T>(&format!("epoch = 3\n{text}")).unwrap_err();
        assert!(
            typo.to_string().contains("unknown setting `epoch`"),
            "{typo}"
        );
    }
    strict(&lm);
    strict(&text);
    strict(&reg);
    strict(&multi);
    strict(&image);
    // A setting that does not parse, or that a kind cannot take, is an error naming it.
    for (bad, needle) in [
        (
            RecipeOverrides {
                optimizer: Some("lion".into()),
                ..Default::default()
            },
            "lion",
        ),
        (
            RecipeOverrides {
                schedule: Some("sawtooth".into()),
                ..Default::default()
            },
            "sawtooth",
        ),
        (
            RecipeOverrides {
                monitor: Some("f1".into()),
                ..Default::default()
            },
            "f1",
        ),
        (
            RecipeOverrides {
                clip_norm: Some(1.0),
                clip_value: Some(1.0),
                ..Default::default()
            },
            "not both",
        ),
        (
            RecipeOverrides {
                epochs: Some(0),
                ..Default::default()
            },
            "epochs",
        ),
    ] {
        let e = bad.apply(&mut Recipe::default()).unwrap_err().to_string();
        assert!(e.contains(needle), "{needle}: {e}");
    }
    let qat = Recipe {
        qat_bits: Some(4),
        ..Recipe::default()
    };
    assert!(
        lm.set_recipe(qat.clone())
            .unwrap_err()
            .to_string()
            .contains("QAT")
    );
    assert!(
        image
            .set_recipe(qat)
            .unwrap_err()
            .to_string()
            .contains("fine-tuning source")
    );
}

#[test]
fn the_multitask_loss_is_the_weighted_sum_of_head_cross_entropies() {
    use burn::tensor::{Int, Tensor, TensorData};
    use kiln_train::multitask::{Head, multitask_loss};
    let device = burn::tensor::Device::flex();
    let heads = [
        Head::new("label", vec![0, 1, 2], 1.0),
        Head::new("is-two", vec![0, 0, 1], 0.25),
    ];
    let first = [[1.0f32, 2.0, 0.5], [0.0, -1.0, 3.0]];
    let second = [[0.3f32, -0.2], [1.5, 0.5]];
    let labels = [1usize, 2];
    let loss = multitask_loss(
        &[
            Tensor::from_data(TensorData::new(first.concat(), [2, 3]), &device),
            Tensor::from_data(TensorData::new(second.concat(), [2, 2]), &device),
        ],
        &Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 2], [2]), &device),
        &heads,
    );
    let got = loss.into_data().try_to_vec::<f32>().unwrap();
    let ce = |row: &[f32], target: usize| -> f64 {
        let max = row.iter().fold(f32::MIN, |m, &v| m.max(v)) as f64;
        let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
        -(row[target] as f64 - max - sum.ln())
    };
    for i in 0..2 {
        let expected =
            ce(&first[i], labels[i]) + 0.25 * ce(&second[i], heads[1].classes[labels[i]]);
        assert!(
            (got[i] as f64 - expected).abs() < 1e-5,
            "{i}: {} vs {expected}",
            got[i]
        );
    }
}

#[test]
fn a_shared_backbone_learns_digit_and_at_least_five_on_mnist() {
    use kiln_train::multitask::{Head, MultiTaskConfig, train_multitask};
    let dir = tempfile::tempdir().unwrap();
    let mut config = MultiTaskConfig::new(
        "mnist",
        vec![
            Head::new("digit", (0..10).collect(), 1.0),
            Head::new(
                "at-least-5",
                (0..10).map(|d| usize::from(d >= 5)).collect(),
                0.5,
            ),
        ],
    );
    let report = train_multitask(&config, dir.path(), &TrainOptions::quiet()).unwrap();
    let [digit, five] = &report.heads[..] else {
        panic!("two heads")
    };
    eprintln!(
        "multi-task MNIST: digit {:.4}, at-least-5 {:.4}",
        digit.test.accuracy, five.test.accuracy
    );
    assert_eq!((digit.test.total, five.test.total), (10_000, 10_000));
    assert!(digit.test.accuracy > 0.97, "{}", digit.test.accuracy);
    assert!(five.test.accuracy > 0.975, "{}", five.test.accuracy);
    assert_eq!(five.test.confusion.len(), 2);
    // The epoch log follows the first head on the 6,000 validation images held out from the
    // training set, not on the test set.
    let last = report.epochs.last().unwrap();
    assert!(last.valid_accuracy > 0.96, "{}", last.valid_accuracy);
    assert!((last.valid_accuracy - digit.test.accuracy).abs() > 1e-9);
    // A head that does not map every label is an error naming it.
    config.heads[1].classes.pop();
    let err = train_multitask(&config, dir.path(), &TrainOptions::quiet()).unwrap_err();
    assert!(err.to_string().contains("at-least-5"), "{err}");
}

#[test]
fn a_folder_that_gained_a_class_is_an_error_at_evaluation() {
    let digits = kiln_data::load_split("digits", kiln_core::Seed(0)).unwrap();
    let pick = |s: &kiln_data::ImageSet, classes: usize| {
        let keep: Vec<usize> = (0..s.len()).filter(|&i| s.labels()[i] < classes).collect();
        let sub = s.subset(&keep);
        let names = (0..classes).map(|c| c.to_string()).collect();
        sub.relabel(sub.labels().to_vec(), names).unwrap()
    };
    let root = tempfile::tempdir().unwrap();
    write_folder(&pick(&digits.train, 2), &root.path().join("train"), false);
    write_folder(&pick(&digits.test, 2), &root.path().join("test"), false);
    let mut config = quick(1, 1);
    config.dataset = root.path().to_str().unwrap().to_string();
    config.data.image_size = Some([8, 8]);
    config.data.channels = kiln_data::image_folder::Channels::Grey;
    config.adapt_model = true;
    let dir = tempfile::tempdir().unwrap();
    train(&config, dir.path(), &TrainOptions::quiet()).unwrap();
    // The test folder gains the digit 2.
    write_folder(&pick(&digits.test, 3), &root.path().join("test"), false);
    write_folder(&pick(&digits.train, 3), &root.path().join("train"), false);
    let err = evaluate_run(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("predicts 2 classes") && err.contains("has 3"),
        "{err}"
    );
}

/// The first `chars` characters of Emma, as a user's own corpus file.
fn small_corpus(dir: &std::path::Path, chars: usize) -> std::path::PathBuf {
    let data = std::path::PathBuf::from(std::env::var_os("KILN_DATA_DIR").unwrap());
    let emma = std::fs::read_to_string(data.join("text/jane-austen/emma.txt")).unwrap();
    let path = dir.join("corpus.txt");
    std::fs::write(&path, emma.chars().take(chars).collect::<String>()).unwrap();
    path
}

#[test]
fn an_lm_run_on_a_users_corpus_pauses_resumes_exactly_reloads_and_generates() {
    use kiln_train::lm::{LmTrainConfig, evaluate_lm_run, generate_from_run, resume_lm, train_lm};
    let data = tempfile::tempdir().unwrap();
    let mut config = LmTrainConfig::for_preset("char-lm").unwrap();
    config.corpus = small_corpus(data.path(), 40_000)
        .to_str()
        .unwrap()
        .to_string();
    config.adapt_vocab = true;
    config.seq_len = 64;
    config.recipe.epochs = 2;
    config.recipe.lr = 3e-3;
    let full_dir = tempfile::tempdir().unwrap();
    let full = train_lm(&config, full_dir.path(), &TrainOptions::quiet()).unwrap();
    // The saved config holds the corpus-sized vocabulary.
    let text = std::fs::read_to_string(full_dir.path().join("config.toml")).unwrap();
    assert!(!text.contains("adapt_vocab"), "{text}");
    // Paused after epoch 1, resumed: the same losses, the same test metrics.
    let dir = tempfile::tempdir().unwrap();
    let paused = TrainOptions {
        pause_after: Some(1),
        ..TrainOptions::quiet()
    };
    assert!(matches!(
        train_lm(&config, dir.path(), &paused),
        Err(kiln_train::Error::Paused { epoch: 1, .. })
    ));
    let resumed = resume_lm(dir.path(), &TrainOptions::quiet()).unwrap();
    let bits = |r: &kiln_train::lm::LmReport| {
        r.epochs
            .iter()
            .flat_map(|m| [m.train_loss.to_bits(), m.valid_loss.to_bits()])
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(&resumed), bits(&full));
    assert_eq!(resumed.test, full.test);
    // `kiln eval` reloads it to the same numbers; the test text is the corpus's last 10%.
    assert_eq!(evaluate_lm_run(dir.path(), None).unwrap(), full.test);
    assert!(full.test.tokens > 3_000, "{}", full.test.tokens);
    assert!(full.test.loss < full.unigram_baseline, "{full:?}");
    // Greedy generation streams exactly what it returns, and is reproducible.
    let mut streamed = String::new();
    let greedy = kiln_models::transformer::Sampling::Greedy;
    let text = generate_from_run(
        dir.path(),
        "Emma",
        30,
        greedy,
        kiln_core::Seed(1),
        &mut |p| {
            streamed.push_str(p);
            true
        },
    )
    .unwrap();
    assert_eq!((text.chars().count(), &streamed), (30, &text));
    let again = generate_from_run(
        dir.path(),
        "Emma",
        30,
        greedy,
        kiln_core::Seed(2),
        &mut |_| true,
    )
    .unwrap();
    assert_eq!(again, text);
    // Stopping early is honoured.
    let mut n = 0;
    let short = generate_from_run(
        dir.path(),
        "Emma",
        30,
        greedy,
        kiln_core::Seed(1),
        &mut |_| {
            n += 1;
            n < 5
        },
    )
    .unwrap();
    assert_eq!(short.chars().count(), 5);
}

#[test]
fn a_text_classifier_on_a_users_csv_resumes_exactly_and_reloads() {
    use kiln_train::text::{
        TextTrainConfig, evaluate_text_run, resume_text, train_text_classifier,
    };
    let data = std::path::PathBuf::from(std::env::var_os("KILN_DATA_DIR").unwrap());
    // 300 reviews under other column names and a third class.
    let source = std::fs::read_to_string(data.join("text/fine-foods-reviews/train.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(source.as_bytes());
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("mine.csv");
    let mut writer = csv::Writer::from_path(&csv_path).unwrap();
    writer.write_record(["body", "stars"]).unwrap();
    for (i, r) in reader.records().take(300).enumerate() {
        let r = r.unwrap();
        let label = if i % 10 == 0 { "unsure" } else { &r[2] };
        writer.write_record([&r[1], label]).unwrap();
    }
    writer.flush().unwrap();
    let mut config = TextTrainConfig::for_preset("transformer-classifier").unwrap();
    config.dataset = csv_path.to_str().unwrap().to_string();
    config.text_column = Some("body".into());
    config.target = Some("stars".into());
    config.adapt_model = true;
    config.max_len = 48;
    config.recipe.epochs = 2;
    let full_dir = tempfile::tempdir().unwrap();
    let full = train_text_classifier(&config, full_dir.path(), &TrainOptions::quiet()).unwrap();
    assert_eq!(full.classes, ["great", "other", "unsure"]);
    // The fixed 20% test split: 60 of the 300 rows, stratified.
    assert_eq!((full.test_size, full.test.total), (60, 60));
    assert_eq!(full.train_size + full.valid_size, 240);
    let run = tempfile::tempdir().unwrap();
    let paused = TrainOptions {
        pause_after: Some(1),
        ..TrainOptions::quiet()
    };
    assert!(train_text_classifier(&config, run.path(), &paused).is_err());
    let resumed = resume_text(run.path(), &TrainOptions::quiet()).unwrap();
    let bits = |r: &kiln_train::text::TextReport| {
        r.epochs
            .iter()
            .map(|m| m.valid_loss.to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(&resumed), bits(&full));
    assert_eq!(resumed.test, full.test);
    assert_eq!(evaluate_text_run(run.path(), None).unwrap(), full.test);
    assert_eq!(
        kiln_train::RunKind::of(run.path()).unwrap(),
        kiln_train::RunKind::TextClassifier
    );
}

#[test]
fn a_text_csv_has_a_fixed_test_split_that_no_run_trains_or_validates_on() {
    use kiln_train::text::load_texts;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("texts.csv");
    let mut csv = String::from("text,label\n");
    for i in 0..200 {
        csv.push_str(&format!("text number {i},{}\n", ["a", "b", "c"][i % 3]));
    }
    std::fs::write(&path, csv).unwrap();
    let (train, test) = load_texts(path.to_str().unwrap(), None, None, dir.path()).unwrap();
    // round(20% of 67, 67, 66) = 13 + 13 + 13 test texts.
    assert_eq!((train.texts.len(), test.texts.len()), (161, 39));
    let (again_train, again_test) =
        load_texts(path.to_str().unwrap(), None, None, dir.path()).unwrap();
    assert_eq!((&again_train, &again_test), (&train, &test));
    for seed in 0..5 {
        let (fit, valid) = train.split_validation(0.1, seed).unwrap();
        assert_eq!(fit.texts.len() + valid.texts.len(), 161);
        for t in &test.texts {
            assert!(
                !fit.texts.contains(t) && !valid.texts.contains(t),
                "{t} leaked"
            );
        }
    }
}

#[test]
fn a_run_from_before_fixed_test_splits_is_refused_not_evaluated_optimistically() {
    let dir = tempfile::tempdir().unwrap();
    let report = train(&quick(3, 1), dir.path(), &TrainOptions::quiet()).unwrap();
    assert_eq!(evaluate_run(dir.path()).unwrap(), report.test);
    // An old report.json had no valid_size.
    let path = dir.path().join("report.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json.as_object_mut().unwrap().remove("valid_size");
    std::fs::write(&path, json.to_string()).unwrap();
    let err = evaluate_run(dir.path()).unwrap_err().to_string();
    assert!(err.contains("retrain") && err.contains("digits"), "{err}");
}
