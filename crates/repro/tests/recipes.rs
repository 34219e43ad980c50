//! Every recipe's pipeline in its tiny mode (one epoch on 20 images per class: a smoke run,
//! not the claim; the claims are measured with `cargo xtask seeds` and reported in the
//! README), unknown names, and a sweep that resumes.

use kiln_repro::{Error, Options, RECIPES, names, recipe, run};

fn tiny() -> Options {
    Options {
        tiny: true,
        ..Options::default()
    }
}

#[test]
fn unknown_recipe_lists_the_real_ones() {
    let err = recipe("hintonn").unwrap_err();
    assert!(matches!(err, Error::UnknownRecipe(_)));
    let message = err.to_string();
    for name in names() {
        assert!(message.contains(name), "{message}");
    }
    let dir = tempfile::tempdir().unwrap();
    assert!(run("nope", vec![1], dir.path(), &tiny()).is_err());
    assert!(!dir.path().join("summary.json").exists());
}

#[test]
fn every_recipe_runs_in_tiny_mode_and_pairs_its_comparisons() {
    let dir = tempfile::tempdir().unwrap();
    for r in RECIPES {
        let out = dir.path().join(r.name);
        let report = run(r.name, vec![1, 2], &out, &tiny()).unwrap();
        assert_eq!(report.seeds(), vec![1, 2], "{}", r.name);
        assert!(!report.paired.is_empty(), "{}: compares nothing", r.name);
        for p in &report.paired {
            assert_eq!(p.differences.len(), 2);
            for (i, seed) in [1u64, 2].iter().enumerate() {
                let m = &report.runs[i].metrics;
                assert_eq!(report.runs[i].seed, *seed);
                assert_eq!(p.differences[i], m[&p.b] - m[&p.a], "{}", r.name);
            }
        }
        for s in report.summaries.values() {
            assert!((0.0..=10_000.0).contains(&s.mean), "{}: {s:?}", r.name);
        }
        assert!(out.join("summary.md").is_file() && out.join("seed-2/seed.json").is_file());
    }
    // Run again with one more seed: the two done are read back, only seed 3 trains.
    let out = dir.path().join("han");
    let before = std::fs::read(out.join("seed-1/seed.json")).unwrap();
    let report = run("han", vec![1, 2, 3], &out, &tiny()).unwrap();
    assert_eq!(report.runs.len(), 3);
    assert_eq!(std::fs::read(out.join("seed-1/seed.json")).unwrap(), before);
}
