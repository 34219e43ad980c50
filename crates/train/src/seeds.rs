//! Running one recipe over several seeds and summarising what it measured: mean, standard
//! deviation, range and the per-seed values of every metric, and for paired comparisons (A
//! and B measured on the same seeds) the mean difference with its standard error.
//!
//! ```no_run
//! use kiln_train::seeds::{Metrics, SeedSweep};
//! use kiln_train::{TrainConfig, TrainOptions, train};
//!
//! let report = SeedSweep::new("mlp on digits", vec![1, 2, 3], "runs/mlp-seeds")
//!     .run(|seed, dir| {
//!         let mut config = TrainConfig::for_preset("mlp")?;
//!         config.recipe.seed = seed;
//!         let report = train(&config, &dir.join("run"), &TrainOptions::quiet())?;
//!         let accuracy = 100.0 * report.test.accuracy;
//!         Ok::<_, kiln_train::Error>(Metrics::from([("test accuracy %".to_string(), accuracy)]))
//!     })?;
//! println!("{}", report.markdown());
//! # Ok::<(), kiln_train::Error>(())
//! ```
//!
//! A sweep writes `seed-N/seed.json` as each seed finishes, so an interrupted sweep run again
//! with the same folder skips the seeds it already has, then `summary.json` and `summary.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::io;
use crate::files::write_atomic;
use crate::{Error, Result};

/// What one seed's run measured, by metric name.
pub type Metrics = BTreeMap<String, f64>;

/// Mean, sample standard deviation and range of one metric over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// How many values.
    pub n: usize,
    /// Their mean.
    pub mean: f64,
    /// The sample standard deviation (n − 1 in the denominator); `None` for one value.
    pub sd: Option<f64>,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Summary {
    /// The summary of `values`: an error when there are none or one is not finite.
    pub fn of(values: &[f64]) -> Result<Self> {
        check_values("a summary", values)?;
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        let sd = (n > 1).then(|| {
            let ss: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
            (ss / (n - 1) as f64).sqrt()
        });
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Ok(Self {
            n,
            mean,
            sd,
            min,
            max,
        })
    }

    /// The standard error of the mean, `sd / √n`; `None` for one value.
    pub fn standard_error(&self) -> Option<f64> {
        self.sd.map(|sd| sd / (self.n as f64).sqrt())
    }
}

/// A paired comparison: metric `b` minus metric `a`, seed by seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    /// The baseline metric.
    pub a: String,
    /// The metric compared with it.
    pub b: String,
    /// `b − a` for each seed, in the sweep's seed order.
    pub differences: Vec<f64>,
    /// The summary of the differences.
    pub summary: Summary,
    /// The standard error of the mean difference (`sd / √n` of the differences); `None` for
    /// one seed.
    pub standard_error: Option<f64>,
}

impl Paired {
    /// `b − a` seed by seed: the two slices hold the same seeds in the same order.
    pub fn of(a_name: &str, a: &[f64], b_name: &str, b: &[f64]) -> Result<Self> {
        if a.len() != b.len() {
            return Err(Error::InvalidSetting(format!(
                "a paired comparison needs the same seeds: `{a_name}` has {} values, `{b_name}` {}",
                a.len(),
                b.len()
            )));
        }
        let differences: Vec<f64> = a.iter().zip(b).map(|(a, b)| b - a).collect();
        let summary = Summary::of(&differences)?;
        Ok(Self {
            a: a_name.to_string(),
            b: b_name.to_string(),
            standard_error: summary.standard_error(),
            differences,
            summary,
        })
    }
}

fn check_values(what: &str, values: &[f64]) -> Result<()> {
    if values.is_empty() {
        return Err(Error::InvalidSetting(format!("{what} of no values")));
    }
    if let Some(v) = values.iter().find(|v| !v.is_finite()) {
        return Err(Error::InvalidSetting(format!(
            "{what} of a non-finite value ({v})"
        )));
    }
    Ok(())
}

/// One seed's run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedRun {
    /// The recipe it belongs to (a sweep folder holds one recipe).
    pub recipe: String,
    /// The seed.
    pub seed: u64,
    /// What it measured.
    pub metrics: Metrics,
    /// How long it took, in seconds.
    pub seconds: f64,
}

/// What a sweep measured over its seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedReport {
    /// The recipe's name.
    pub recipe: String,
    /// The machine it ran on ([`kiln_core::machine::cpu_description`]).
    pub cpu: String,
    /// The seeds' runs, in the order asked.
    pub runs: Vec<SeedRun>,
    /// Each metric's summary over the seeds.
    pub summaries: BTreeMap<String, Summary>,
    /// The paired comparisons asked for.
    pub paired: Vec<Paired>,
}

impl SeedReport {
    /// Summarises `runs`: every run must report the same metrics, and each comparison names
    /// two of them.
    pub fn from_runs(
        recipe: &str,
        cpu: &str,
        runs: Vec<SeedRun>,
        comparisons: &[(String, String)],
    ) -> Result<Self> {
        let Some(first) = runs.first() else {
            return Err(Error::InvalidSetting(format!(
                "recipe `{recipe}`: no seeds"
            )));
        };
        let names: Vec<&String> = first.metrics.keys().collect();
        for run in &runs {
            let these: Vec<&String> = run.metrics.keys().collect();
            if these != names {
                return Err(Error::InvalidSetting(format!(
                    "recipe `{recipe}`: seed {} measured {these:?}, seed {} {names:?}",
                    run.seed, first.seed
                )));
            }
        }
        let column = |name: &str| -> Vec<f64> { runs.iter().map(|r| r.metrics[name]).collect() };
        let mut summaries = BTreeMap::new();
        for name in &names {
            let summary = Summary::of(&column(name)).map_err(|e| {
                Error::InvalidSetting(format!("recipe `{recipe}`, metric `{name}`: {e}"))
            })?;
            summaries.insert((*name).clone(), summary);
        }
        let mut paired = Vec::new();
        for (a, b) in comparisons {
            for m in [a, b] {
                if !first.metrics.contains_key(m) {
                    return Err(Error::InvalidSetting(format!(
                        "recipe `{recipe}` compares `{m}`, which it does not measure (it measures {names:?})"
                    )));
                }
            }
            paired.push(Paired::of(a, &column(a), b, &column(b))?);
        }
        Ok(Self {
            recipe: recipe.to_string(),
            cpu: cpu.to_string(),
            runs,
            summaries,
            paired,
        })
    }

    /// The seeds, in order.
    pub fn seeds(&self) -> Vec<u64> {
        self.runs.iter().map(|r| r.seed).collect()
    }

    /// The report as Markdown: one table of the metrics (mean ± sd, range, every seed), one of
    /// the paired differences (mean ± standard error, sd, every seed).
    pub fn markdown(&self) -> String {
        let seeds = self.seeds();
        let seed_list: Vec<String> = seeds.iter().map(u64::to_string).collect();
        let total: f64 = self.runs.iter().map(|r| r.seconds).sum();
        let mut out = format!(
            "# {}\n\n{} seeds ({}), {}; {:.0} s in all.\n\n| metric | mean ± sd | min | max |",
            self.recipe,
            seeds.len(),
            seed_list.join(", "),
            self.cpu,
            total
        );
        for s in &seeds {
            out.push_str(&format!(" seed {s} |"));
        }
        out.push_str("\n|---|---|---|---|");
        out.push_str(&"---|".repeat(seeds.len()));
        out.push('\n');
        for (name, s) in &self.summaries {
            let values: Vec<f64> = self.runs.iter().map(|r| r.metrics[name]).collect();
            let d = decimals(&values);
            out.push_str(&format!(
                "| {name} | {} | {} | {} |",
                plus_minus(s.mean, s.sd, d),
                fmt(s.min, d),
                fmt(s.max, d)
            ));
            for v in &values {
                out.push_str(&format!(" {} |", fmt(*v, d)));
            }
            out.push('\n');
        }
        if !self.paired.is_empty() {
            out.push_str(
                "\n| paired difference (B − A, same seeds) | mean ± standard error | sd | per seed |\n|---|---|---|---|\n",
            );
            for p in &self.paired {
                let d = decimals(&p.differences).max(2);
                let per_seed: Vec<String> =
                    p.differences.iter().map(|v| format!("{v:+.d$}")).collect();
                out.push_str(&format!(
                    "| {} − {} | {} | {} | {} |\n",
                    p.b,
                    p.a,
                    plus_minus_signed(p.summary.mean, p.standard_error, d),
                    p.summary.sd.map_or("–".into(), |sd| fmt(sd, d)),
                    per_seed.join(", ")
                ));
            }
        }
        out
    }
}

/// Decimals to print a metric with: none for counts, else 2 (4 below 1 in magnitude).
fn decimals(values: &[f64]) -> usize {
    if values.iter().all(|v| v.fract() == 0.0) {
        0
    } else if values.iter().all(|v| v.abs() < 1.0) {
        4
    } else {
        2
    }
}

fn fmt(v: f64, d: usize) -> String {
    format!("{v:.d$}")
}

fn plus_minus(mean: f64, spread: Option<f64>, d: usize) -> String {
    // A mean of counts gets one more decimal than the counts.
    let dm = if d == 0 { 1 } else { d };
    match spread {
        Some(s) => format!("{mean:.dm$} ± {s:.dm$}"),
        None => format!("{mean:.dm$}"),
    }
}

fn plus_minus_signed(mean: f64, spread: Option<f64>, d: usize) -> String {
    match spread {
        Some(s) => format!("{mean:+.d$} ± {s:.d$}"),
        None => format!("{mean:+.d$}"),
    }
}

/// Seeds from `1,2,3`, `1-5` or a mix (`1-3,7`), each once, in the order given.
pub fn parse_seeds(spec: &str) -> Result<Vec<u64>> {
    let bad = |why: &str| {
        Error::InvalidSetting(format!(
            "seeds `{spec}`: {why}; expected a list like 1,2,3 or a range like 1-5"
        ))
    };
    let mut seeds = Vec::new();
    for part in spec.split(',').map(str::trim) {
        let range = match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u64, u64) = (
                    a.trim().parse().map_err(|_| bad("not a number"))?,
                    b.trim().parse().map_err(|_| bad("not a number"))?,
                );
                if b < a {
                    return Err(bad("a range that runs backwards"));
                }
                if b - a >= 1000 {
                    return Err(bad("more than 1,000 seeds"));
                }
                a..=b
            }
            None => {
                let s: u64 = part.parse().map_err(|_| bad("not a number"))?;
                s..=s
            }
        };
        for s in range {
            if seeds.contains(&s) {
                return Err(bad(&format!("seed {s} twice")));
            }
            seeds.push(s);
        }
    }
    if seeds.is_empty() {
        return Err(bad("no seeds"));
    }
    Ok(seeds)
}

/// A recipe to run over seeds, each in its own folder `OUT/seed-N`.
#[derive(Clone, Debug)]
pub struct SeedSweep {
    recipe: String,
    seeds: Vec<u64>,
    out: PathBuf,
    comparisons: Vec<(String, String)>,
}

impl SeedSweep {
    /// The recipe `recipe` (a name for the reports) over `seeds`, writing under `out`.
    pub fn new(recipe: &str, seeds: Vec<u64>, out: impl Into<PathBuf>) -> Self {
        Self {
            recipe: recipe.to_string(),
            seeds,
            out: out.into(),
            comparisons: Vec::new(),
        }
    }

    /// Also reports metric `b` minus metric `a`, paired by seed.
    pub fn compare(mut self, a: &str, b: &str) -> Self {
        self.comparisons.push((a.to_string(), b.to_string()));
        self
    }

    /// The folder of one seed's run.
    pub fn seed_dir(&self, seed: u64) -> PathBuf {
        self.out.join(format!("seed-{seed}"))
    }

    /// Runs `run_one(seed, folder)` for every seed that has no result yet, then writes
    /// `summary.json` and `summary.md` and returns the report. A seed's result from an earlier,
    /// interrupted sweep of the same recipe is reused; one of another recipe is an error.
    ///
    /// `run_one` may fail with any error that a kiln-train error converts into (kiln-train's
    /// own, or e.g. kiln-compress's when a recipe prunes).
    pub fn run<E: From<Error>>(
        &self,
        mut run_one: impl FnMut(u64, &Path) -> std::result::Result<Metrics, E>,
    ) -> std::result::Result<SeedReport, E> {
        if self.seeds.is_empty() {
            return Err(
                Error::InvalidSetting(format!("recipe `{}`: no seeds", self.recipe)).into(),
            );
        }
        let mut runs = Vec::new();
        for &seed in &self.seeds {
            let dir = self.seed_dir(seed);
            let record = dir.join("seed.json");
            if let Some(done) = read_record(&record)? {
                if done.recipe != self.recipe || done.seed != seed {
                    return Err(Error::BadRunFile {
                        path: record,
                        reason: format!(
                            "holds seed {} of recipe `{}`, not seed {seed} of `{}`; use another folder",
                            done.seed, done.recipe, self.recipe
                        ),
                    }
                    .into());
                }
                runs.push(done);
                continue;
            }
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            let started = Instant::now();
            let metrics = run_one(seed, &dir)?;
            let run = SeedRun {
                recipe: self.recipe.clone(),
                seed,
                metrics,
                seconds: started.elapsed().as_secs_f64(),
            };
            crate::files::write_json(&record, &run)?;
            runs.push(run);
        }
        let report = SeedReport::from_runs(
            &self.recipe,
            &kiln_core::machine::cpu_description(),
            runs,
            &self.comparisons,
        )?;
        let json = self.out.join("summary.json");
        crate::files::write_json(&json, &report)?;
        let md = self.out.join("summary.md");
        write_atomic(&md, report.markdown().as_bytes()).map_err(io(&md))?;
        Ok(report)
    }
}

fn read_record(path: &Path) -> Result<Option<SeedRun>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::BadRunFile {
                path: path.to_path_buf(),
                reason: format!("not a seed record: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The held-out test metrics a finished run folder of any kind reports in its `report.json`:
/// accuracy (%), loss and macro F1 for classifiers (image, table, text), loss, perplexity and
/// bits per token for language models, MSE, RMSE, MAE and R² for regressors, each head's
/// accuracy for multi-task runs. What `kiln seeds` records for each seed.
pub fn test_metrics(run_dir: &Path) -> Result<Metrics> {
    fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| Error::BadRunFile {
            path: path.to_path_buf(),
            reason: format!("not a finished run's report: {e}"),
        })
    }
    let classifier = |t: &crate::EvalReport| {
        Metrics::from([
            ("test accuracy %".into(), 100.0 * t.accuracy),
            ("test loss".into(), t.loss),
            ("test macro F1".into(), t.macro_f1),
        ])
    };
    let path = run_dir.join("report.json");
    Ok(match crate::RunKind::of(run_dir)? {
        crate::RunKind::Classifier => classifier(&read::<crate::TrainReport>(&path)?.test),
        crate::RunKind::TextClassifier => classifier(&read::<crate::text::TextReport>(&path)?.test),
        crate::RunKind::LanguageModel => {
            let t = read::<crate::lm::LmReport>(&path)?.test;
            Metrics::from([
                ("test loss".into(), t.loss),
                ("test perplexity".into(), t.perplexity),
                ("test bits per token".into(), t.bits_per_token),
            ])
        }
        crate::RunKind::Regression => {
            let t = read::<crate::regression::RegressionReport>(&path)?.test;
            Metrics::from([
                ("test MSE".into(), t.mse),
                ("test RMSE".into(), t.rmse),
                ("test MAE".into(), t.mae),
                ("test R²".into(), t.r2),
            ])
        }
        crate::RunKind::MultiTask => read::<crate::multitask::MultiTaskReport>(&path)?
            .heads
            .iter()
            .map(|h| {
                (
                    format!("{} test accuracy %", h.name),
                    100.0 * h.test.accuracy,
                )
            })
            .collect(),
        crate::RunKind::LlmFinetune => {
            let r = read::<crate::llm::LlmReport>(&path)?;
            let mut m = Metrics::from([(
                "valid loss".into(),
                r.epochs.last().map_or(f64::NAN, |e| e.valid_loss),
            )]);
            match r.test {
                Some(crate::llm::LlmTest::Choices { tuned, .. }) => {
                    m.insert("test accuracy %".into(), 100.0 * tuned.accuracy);
                }
                Some(crate::llm::LlmTest::Text { tuned, .. }) => {
                    m.insert("test perplexity".into(), tuned.perplexity);
                    m.insert("test bits per char".into(), tuned.bits_per_char);
                }
                None => {}
            }
            m
        }
    })
}
