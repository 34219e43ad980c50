//! The multi-seed summary's arithmetic against hand-computed values, the sweep's folders,
//! resume and errors, and a real sweep: the digits MLP over three seeds.

use kiln_train::seeds::{Metrics, Paired, SeedReport, SeedRun, SeedSweep, Summary, parse_seeds};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn summary_of_hand_computed_values() {
    // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, squared deviations sum to 32, sample variance 32/7.
    let s = Summary::of(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
    assert_eq!(s.n, 8);
    assert!(close(s.mean, 5.0));
    assert!(close(s.sd.unwrap(), (32.0f64 / 7.0).sqrt()), "{:?}", s.sd);
    assert!(close(
        s.standard_error().unwrap(),
        (32.0f64 / 7.0 / 8.0).sqrt()
    ));
    assert_eq!((s.min, s.max), (2.0, 9.0));

    // One value: a mean, no spread.
    let one = Summary::of(&[98.3]).unwrap();
    assert_eq!((one.n, one.sd, one.standard_error()), (1, None, None));
    assert!(close(one.mean, 98.3));

    assert!(Summary::of(&[]).is_err());
    assert!(Summary::of(&[1.0, f64::NAN]).is_err());
}

#[test]
fn paired_difference_and_its_standard_error() {
    // Differences b − a: +1, +3, +2, +6. Mean 3; deviations −2, 0, −1, 3 → ss 14, sd √(14/3),
    // standard error √(14/3)/2.
    let a = [97.0, 98.0, 96.5, 97.5];
    let b = [98.0, 101.0, 98.5, 103.5];
    let p = Paired::of("alone", &a, "distilled", &b).unwrap();
    assert_eq!(p.differences, vec![1.0, 3.0, 2.0, 6.0]);
    assert!(close(p.summary.mean, 3.0));
    let sd = (14.0f64 / 3.0).sqrt();
    assert!(close(p.summary.sd.unwrap(), sd));
    assert!(close(p.standard_error.unwrap(), sd / 2.0));
    // The paired standard error is not the unpaired one: a and b vary together.
    let unpaired = (Summary::of(&a).unwrap().sd.unwrap().powi(2) / 4.0
        + Summary::of(&b).unwrap().sd.unwrap().powi(2) / 4.0)
        .sqrt();
    assert!((p.standard_error.unwrap() - unpaired).abs() > 0.1);

    let err = Paired::of("a", &[1.0, 2.0], "b", &[1.0]).unwrap_err();
    assert!(err.to_string().contains("same seeds"), "{err}");
}

#[test]
fn seed_lists_and_ranges() {
    assert_eq!(parse_seeds("1,2,3").unwrap(), vec![1, 2, 3]);
    assert_eq!(parse_seeds("1-5").unwrap(), vec![1, 2, 3, 4, 5]);
    assert_eq!(parse_seeds("7, 1-3").unwrap(), vec![7, 1, 2, 3]);
    for bad in ["", "1,,2", "x", "5-1", "1,1", "0-100000"] {
        let err = parse_seeds(bad).unwrap_err().to_string();
        assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
    }
}

fn run(seed: u64, a: f64, b: f64) -> SeedRun {
    SeedRun {
        recipe: "r".into(),
        seed,
        metrics: Metrics::from([("a".to_string(), a), ("b".to_string(), b)]),
        seconds: 1.0,
    }
}

#[test]
fn report_tables_and_mismatched_metrics() {
    let runs = vec![run(1, 97.0, 98.0), run(2, 98.0, 101.0), run(3, 96.5, 98.5)];
    let report =
        SeedReport::from_runs("r", "a CPU", runs.clone(), &[("a".into(), "b".into())]).unwrap();
    insta::assert_snapshot!(report.markdown());

    let err = SeedReport::from_runs("r", "c", runs.clone(), &[("a".into(), "c".into())])
        .unwrap_err()
        .to_string();
    assert!(err.contains("`c`"), "{err}");
    let mut odd = runs;
    odd[1].metrics.remove("b");
    let err = SeedReport::from_runs("r", "c", odd, &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("seed 2"), "{err}");
}

#[test]
fn a_sweep_writes_each_seed_resumes_and_refuses_another_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = SeedSweep::new("squares", vec![3, 1, 2], dir.path()).compare("x", "x²");
    let mut calls = Vec::new();
    let report = sweep
        .run(|seed, folder| {
            calls.push(seed);
            assert_eq!(folder, dir.path().join(format!("seed-{seed}")));
            let x = seed as f64;
            Ok::<_, kiln_train::Error>(Metrics::from([("x".into(), x), ("x²".into(), x * x)]))
        })
        .unwrap();
    assert_eq!(calls, vec![3, 1, 2]);
    assert_eq!(report.seeds(), vec![3, 1, 2]);
    assert!(close(report.summaries["x²"].mean, 14.0 / 3.0));
    assert_eq!(report.paired[0].differences, vec![6.0, 0.0, 2.0]);
    let written: SeedReport =
        serde_json::from_slice(&std::fs::read(dir.path().join("summary.json")).unwrap()).unwrap();
    // (serde_json parses floats to within one unit in the last place, not always exactly.)
    assert_eq!(
        (written.seeds(), &written.cpu),
        (report.seeds(), &report.cpu)
    );
    assert!(close(
        written.summaries["x²"].mean,
        report.summaries["x²"].mean
    ));
    assert!(
        std::fs::read_to_string(dir.path().join("summary.md"))
            .unwrap()
            .contains("| x² − x |")
    );

    // Again with one more seed: only the new one runs.
    let mut calls = Vec::new();
    let more = SeedSweep::new("squares", vec![3, 1, 2, 4], dir.path())
        .run(|seed, _| {
            calls.push(seed);
            let x = seed as f64;
            Ok::<_, kiln_train::Error>(Metrics::from([("x".into(), x), ("x²".into(), x * x)]))
        })
        .unwrap();
    assert_eq!(calls, vec![4]);
    assert_eq!(more.runs.len(), 4);

    // A failing seed stops the sweep and records nothing for it.
    let err = SeedSweep::new("squares", vec![5], dir.path())
        .run(|_, _| Err(kiln_train::Error::InvalidSetting("boom".into())))
        .unwrap_err();
    assert!(err.to_string().contains("boom"));
    assert!(!dir.path().join("seed-5/seed.json").exists());

    // Another recipe in the same folder is refused, naming the file.
    let err = SeedSweep::new("cubes", vec![1], dir.path())
        .run(|_, _| Ok::<_, kiln_train::Error>(Metrics::new()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("seed-1/seed.json") && err.contains("`squares`"),
        "{err}"
    );
}

#[test]
fn digits_mlp_over_three_seeds_varies_but_stays_accurate() {
    let dir = tempfile::tempdir().unwrap();
    let report = SeedSweep::new("mlp on digits, 10 epochs", vec![1, 2, 3], dir.path())
        .run(|seed, folder| {
            let mut config = kiln_train::TrainConfig::for_preset("mlp")?;
            config.recipe.seed = seed;
            config.recipe.epochs = 10;
            let report = kiln_train::train(
                &config,
                &folder.join("run"),
                &kiln_train::TrainOptions::quiet(),
            )?;
            Ok::<_, kiln_train::Error>(Metrics::from([(
                "test accuracy %".to_string(),
                100.0 * report.test.accuracy,
            )]))
        })
        .unwrap();
    let s = &report.summaries["test accuracy %"];
    // Seeds change the initialisation, shuffling and validation draw, so the runs differ; each
    // still learns the digits (the 359 test digits are the same for every seed).
    assert!(s.sd.unwrap() > 0.0, "{s:?}");
    assert!(s.min > 90.0, "{s:?}");
    assert!(dir.path().join("seed-2/run/model.bpk").is_file());
}

#[test]
fn test_metrics_read_a_regression_run_and_refuse_an_unfinished_one() {
    use kiln_train::regression::{RegressionConfig, train_regression};
    let dir = tempfile::tempdir().unwrap();
    let mut config = RegressionConfig::new("ames-housing");
    config.recipe.epochs = 3;
    let report = train_regression(&config, dir.path(), &kiln_train::TrainOptions::quiet()).unwrap();
    let m = kiln_train::seeds::test_metrics(dir.path()).unwrap();
    assert_eq!(m["test R²"], report.test.r2);
    assert_eq!(m["test MAE"], report.test.mae);
    assert_eq!(m.len(), 4, "{m:?}");

    std::fs::remove_file(dir.path().join("report.json")).unwrap();
    let err = kiln_train::seeds::test_metrics(dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("report.json"), "{err}");
}
