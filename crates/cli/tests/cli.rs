//! The `kiln` binary end to end.

use std::process::Command;

/// The suite's one wrapper around insta, with filters for machine-dependent output.
macro_rules! cli_snapshot {
    ($value:expr) => {
        insta::with_settings!({filters => vec![
            (r#"/tmp/[^\s"]+"#, "[TMP]"),
            (r"\d+\.\d+s\b", "[SECONDS]"),
        ]}, {
            insta::assert_snapshot!($value);
        })
    };
}

fn kiln(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `kiln ARGS` with `input` on its stdin.
fn kiln_with_stdin(args: &[&str], input: &str) -> (bool, String, String) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn train_then_eval_reports_the_same_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run_str = run.to_str().unwrap();
    let (ok, stdout, stderr) = kiln(&[
        "train", "mlp", "--epochs", "2", "--seed", "3", "--out", run_str, "--quiet",
    ]);
    assert!(ok, "train failed: {stderr}");
    let trained = stdout.split(',').next().unwrap().trim().to_string();
    assert!(trained.starts_with("test accuracy "), "{stdout}");
    let (ok, stdout, stderr) = kiln(&["eval", run_str]);
    assert!(ok, "eval failed: {stderr}");
    assert!(
        stdout.starts_with(&trained),
        "train said `{trained}`, eval said `{stdout}`"
    );
}

/// Runs `kiln args` with its stdout closed before it writes (`kiln ... | head -c 0`): it must
/// end without a panic message.
fn closed_stdout(args: &[&str]) -> (std::process::ExitStatus, String) {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    for args in [&["models"][..], &["summary", "vit-lite"], &["--help"]] {
        let (status, stderr) = closed_stdout(args);
        assert!(!stderr.contains("panicked"), "kiln {args:?}: {stderr}");
        assert!(stderr.is_empty(), "kiln {args:?} wrote to stderr: {stderr}");
        // Ended by SIGPIPE like `cat`, or finished before noticing.
        assert!(
            status.success() || status.signal() == Some(13),
            "kiln {args:?}: {status}"
        );
    }
}

#[test]
fn summary_prints_the_table() {
    let (ok, stdout, _) = kiln(&["summary", "mlp"]);
    assert!(ok);
    cli_snapshot!(stdout);
    let (ok, stdout, _) = kiln(&["summary", "mlp", "--format", "json"]);
    assert!(ok);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        json["total_params"],
        64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10
    );
}

#[test]
fn models_lists_the_zoo() {
    let (ok, stdout, _) = kiln(&["models"]);
    assert!(ok);
    cli_snapshot!(stdout);
}

#[test]
fn errors_are_one_line_with_nonzero_exit() {
    for (args, expected) in [
        (
            vec!["summary", "resnet-9000"],
            "error: unknown model `resnet-9000`; available models: mlp, mlp-mnist, lenet-300-100",
        ),
        (
            vec!["train", "mlp", "--device", "tpu", "--epochs", "1"],
            "error: unknown device `tpu`",
        ),
        (
            vec!["train", "mlp", "--dataset", "imagenet", "--epochs", "1"],
            "error: training mlp: unknown dataset `imagenet`",
        ),
        (
            vec!["eval", "/nonexistent/run"],
            "error: /nonexistent/run: not a run folder",
        ),
    ] {
        let (ok, _, stderr) = kiln(&args);
        assert!(!ok, "{args:?} should fail");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn every_command_has_help() {
    for cmd in [
        "models", "summary", "train", "regress", "finetune", "export", "embed", "predict", "prune",
        "quantize", "distill", "eval", "generate", "chat", "fetch",
    ] {
        let (ok, stdout, _) = kiln(&[cmd, "--help"]);
        assert!(ok && stdout.contains("Usage: kiln"), "{cmd}: {stdout}");
        insta::with_settings!({snapshot_suffix => cmd}, {
            cli_snapshot!(stdout);
        });
    }
}

#[test]
fn prune_quantize_and_distill_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (ok, _, stderr) = kiln(&[
        "train",
        "mlp",
        "--epochs",
        "4",
        "--out",
        &path("dense"),
        "--quiet",
    ]);
    assert!(ok, "{stderr}");

    let (ok, stdout, stderr) = kiln(&[
        "prune",
        &path("dense"),
        "--sparsity",
        "0.8",
        "--global",
        "--iterations",
        "2",
        "--finetune-epochs",
        "1",
        "--out",
        &path("pruned"),
        "--quiet",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("total (prunable)") && stdout.contains("80.00%"),
        "{stdout}"
    );
    let (ok, stdout, _) = kiln(&["summary", "--run", &path("pruned")]);
    assert!(ok && stdout.contains("Non-zero params"), "{stdout}");

    let (ok, stdout, stderr) = kiln(&[
        "prune",
        &path("dense"),
        "--method",
        "structured",
        "--sparsity",
        "0.5",
        "--out",
        &path("slim"),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("parameters"), "{stdout}");

    let (ok, stdout, stderr) = kiln(&[
        "quantize",
        &path("dense"),
        "--calibration",
        "percentile:99.9",
        "--out",
        &path("int8"),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("smaller"), "{stdout}");
    let (ok, _, stderr) = kiln(&["eval", &path("int8")]);
    assert!(ok, "{stderr}");

    let (ok, stdout, stderr) = kiln(&[
        "distill",
        "--teacher",
        &path("dense"),
        "--student",
        "mlp",
        "--epochs",
        "2",
        "--out",
        &path("student"),
        "--quiet",
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("test accuracy"), "{stdout}");

    // Bad input: one error line naming the problem.
    let (ok, _, stderr) = kiln(&["prune", &path("dense"), "--sparsity", "1.0"]);
    assert!(!ok && stderr.contains("[0, 1)"), "{stderr}");
    let (ok, _, stderr) = kiln(&["quantize", &path("dense"), "--calibration", "best"]);
    assert!(!ok && stderr.contains("percentile:P"), "{stderr}");
    let (ok, _, stderr) = kiln(&[
        "prune",
        &path("dense"),
        "--sparsity",
        "0.5",
        "--layer",
        "Mlp.nope",
    ]);
    assert!(!ok && stderr.contains("Mlp.nope"), "{stderr}");
}

#[test]
fn text_fine_tuning_checks_the_head_and_its_options_before_training() {
    let (ok, _, stderr) = kiln(&[
        "finetune",
        "--from",
        "models/all-MiniLM-L6-v2",
        "--dataset",
        "fine-foods-reviews",
        "--head",
        "classes=3",
    ]);
    assert!(!ok && stderr.contains("has 2 classes"), "{stderr}");
    let (ok, _, stderr) = kiln(&[
        "finetune",
        "--from",
        "models/all-MiniLM-L6-v2",
        "--dataset",
        "fine-foods-reviews",
        "--train-per-class",
        "10",
    ]);
    assert!(
        !ok && stderr.contains("images per class: not for a pretrained text encoder"),
        "{stderr}"
    );
}

#[test]
fn train_takes_a_table_an_augmentation_spec_and_a_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("iris");
    let data_dir = kiln_data::data_dir::resolve(None);
    let (ok, stdout, stderr) = kiln(&[
        "train",
        "mlp",
        "--dataset",
        "iris",
        "--epochs",
        "3",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(ok, "train on iris failed: {stderr}");
    assert!(stdout.contains("/30)"), "30 held-out iris rows: {stdout}");
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("input_size = 4"), "{config}");
    assert!(config.contains("output_size = 3"), "{config}");

    let run = dir.path().join("digits");
    let (ok, _, stderr) = kiln(&[
        "train",
        "mlp",
        "--epochs",
        "1",
        "--augment",
        "flip,rotate=15,scale=0.9..1.1,mixup=0.2",
        "--out",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(ok, "augmented training failed: {stderr}");
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        config.contains(r#"augment = "flip,rotate=15,scale=0.9..1.1,mixup=0.2""#),
        "{config}"
    );
    // Without --augment the preset's recipe holds; `none` turns it off.
    for (augment, expected) in [
        (None, Some(r#"augment = "rotate=10,scale=0.9..1.1""#)),
        (Some("none"), None),
    ] {
        let run = dir.path().join(format!("vit-{augment:?}"));
        let mut args = vec![
            "train",
            "vit-lite-digits",
            "--epochs",
            "1",
            "--train-per-class",
            "5",
        ];
        args.extend(augment.map(|a| ["--augment", a]).into_iter().flatten());
        args.extend(["--out", run.to_str().unwrap(), "--quiet"]);
        let (ok, _, stderr) = kiln(&args);
        assert!(ok, "{stderr}");
        let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
        match expected {
            Some(line) => assert!(config.contains(line), "{config}"),
            None => assert!(!config.contains("augment"), "{config}"),
        }
    }
    let (ok, _, stderr) = kiln(&["train", "mlp", "--augment", "blur=3", "--quiet"]);
    assert!(!ok);
    assert!(
        stderr.contains("unknown augmentation `blur`"),
        "one-line error naming the item: {stderr}"
    );
}

#[test]
fn a_killed_run_resumes_from_its_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run_str = run.to_str().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "train", "mlp", "--epochs", "300", "--quiet", "--out", run_str,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it (SIGKILL: no chance to clean up) once epoch 3's checkpoint is complete (its
    // model, optimizer and scheduler records are written by three threads), whatever it is
    // writing at that moment.
    let started = std::time::Instant::now();
    let complete = |epoch: usize| {
        ["model", "optim", "scheduler"]
            .iter()
            .all(|r| run.join(format!("checkpoint/{r}-{epoch}.bpk")).exists())
    };
    while !complete(3) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before the kill"
        );
        assert!(
            started.elapsed().as_secs() < 120,
            "no checkpoint after 2 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!run.join("report.json").exists());
    let (ok, stdout, stderr) = kiln(&["train", "--resume", run_str, "--quiet"]);
    assert!(ok, "resume failed: {stderr}");
    assert!(stdout.starts_with("test accuracy "), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    let resumed_from = report["resumed_from"].as_u64().expect("resumed_from");
    assert!(resumed_from >= 3, "{resumed_from}");
    assert_eq!(report["epochs"].as_array().unwrap().len(), 300);
    assert!(report["test"]["accuracy"].as_f64().unwrap() > 0.95);
}

#[test]
fn regress_reports_r2_on_a_real_table() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("concrete");
    let (ok, stdout, stderr) = kiln(&[
        "regress",
        "--dataset",
        "concrete",
        "--epochs",
        "60",
        "--quiet",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(ok, "regress failed: {stderr}");
    let r2: f64 = stdout
        .strip_prefix("test R² ")
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    // Concrete strength from its 8 ingredients: linear regression reaches about 0.6.
    assert!(r2 > 0.8, "{stdout}");
    // `kiln eval` reloads the run and measures the same test rows.
    let (ok, eval, stderr) = kiln(&["eval", run.to_str().unwrap()]);
    assert!(ok, "eval failed: {stderr}");
    let r2_eval: f64 = eval
        .strip_prefix("test R² ")
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{eval}"));
    assert_eq!(r2_eval, r2, "{eval} vs {stdout}");
    let (ok, _, stderr) = kiln(&["regress", "--dataset", "concrete", "--loss", "huber"]);
    assert!(
        !ok && stderr.contains("unknown regression loss `huber`"),
        "{stderr}"
    );
}

#[test]
fn embed_ranks_a_paraphrase_above_an_unrelated_sentence() {
    let (ok, stdout, stderr) = kiln(&[
        "embed",
        "--similarity",
        "The quick brown fox jumps over the lazy dog.",
        "A fast fox leaps over a dog.",
        "Interest rates rose again.",
    ]);
    assert!(ok, "embed failed: {stderr}");
    let rows: Vec<Vec<f32>> = stdout
        .lines()
        .map(|l| {
            l.split_whitespace()
                .take(3)
                .map(|v| v.parse().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    assert!((rows[0][0] - 1.0).abs() < 1e-3, "{stdout}");
    assert!(rows[0][1] > 0.6 && rows[0][2] < 0.3, "{stdout}");

    let (ok, stdout, _) = kiln(&["embed", "Hello world"]);
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(ok && line["embedding"].as_array().unwrap().len() == 384);

    let (ok, _, stderr) = kiln(&["embed", "x", "--model-dir", "/nonexistent/minilm"]);
    assert!(
        !ok && stderr.contains("/nonexistent/minilm/config.json"),
        "{stderr}"
    );
}

#[test]
fn predict_names_the_flower() {
    let data = std::path::PathBuf::from(std::env::var("KILN_DATA_DIR").unwrap());
    let data = if data.is_relative() {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(data)
    } else {
        data
    };
    let flower = data.join("images/flower.jpg");
    let (ok, stdout, stderr) = kiln(&["predict", flower.to_str().unwrap(), "--top", "2"]);
    assert!(ok, "predict failed: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[1].contains(" 985  daisy"), "{stdout}");
    assert!(lines[1].trim_start().starts_with("0.32"), "{stdout}");
    // A run folder's model on image files: the digits preset on PNGs of three test digits.
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let (ok, _, stderr) = kiln(&[
        "train",
        "mlp",
        "--epochs",
        "20",
        "--quiet",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let digits = kiln_data::digits::load_bundled().unwrap();
    let mut files = vec![];
    for i in [0usize, 1, 2] {
        let px: Vec<u8> = digits
            .image(i)
            .iter()
            .map(|v| (v * 255.0).round() as u8)
            .collect();
        let path = dir.path().join(format!("digit{i}.png"));
        image::GrayImage::from_raw(8, 8, px)
            .unwrap()
            .save(&path)
            .unwrap();
        files.push(path.to_str().unwrap().to_string());
    }
    let mut args = vec!["predict", "--run", run.to_str().unwrap(), "--top", "1"];
    args.extend(files.iter().map(String::as_str));
    let (ok, stdout, stderr) = kiln(&args);
    assert!(ok, "{stderr}");
    let predicted: Vec<usize> = stdout
        .lines()
        .filter(|l| l.starts_with("  "))
        .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(predicted, digits.labels()[..3], "{stdout}");

    let (ok, _, stderr) = kiln(&["predict", "x.jpg", "--model", "resnet50"]);
    assert!(
        !ok && stderr.contains("unknown pretrained model `resnet50`"),
        "{stderr}"
    );
}

fn data_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(std::env::var_os("KILN_DATA_DIR").expect("KILN_DATA_DIR"))
}

#[test]
fn the_text_presets_train_from_the_command_line_reload_resume_and_generate() {
    let dir = tempfile::tempdir().unwrap();
    let emma = std::fs::read_to_string(data_dir().join("text/jane-austen/emma.txt")).unwrap();
    let corpus = dir.path().join("corpus.txt");
    std::fs::write(&corpus, emma.chars().take(30_000).collect::<String>()).unwrap();
    let lm = dir.path().join("lm");
    let (ok, stdout, stderr) = kiln(&[
        "train",
        "char-lm",
        "--dataset",
        corpus.to_str().unwrap(),
        "--epochs",
        "1",
        "--out",
        lm.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(ok, "{stderr}");
    let trained = stdout.split(" on ").next().unwrap().to_string();
    assert!(trained.starts_with("test loss "), "{stdout}");
    let (ok, stdout, stderr) = kiln(&["eval", lm.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with(&trained),
        "train `{trained}`, eval `{stdout}`"
    );
    let generate = [
        "generate",
        lm.to_str().unwrap(),
        "Emma was",
        "--max-tokens",
        "25",
        "--top-k",
        "10",
        "--top-p",
        "0.9",
        "--seed",
        "3",
    ];
    let (ok, stdout, stderr) = kiln(&generate);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("Emma was"), "{stdout}");
    assert_eq!(
        stdout.trim_end_matches('\n').chars().count(),
        8 + 25,
        "{stdout:?}"
    );
    let (_, again, _) = kiln(&generate);
    assert_eq!(again, stdout, "seeded sampling");
    let (ok, _, stderr) = kiln(&["generate", lm.to_str().unwrap(), "x", "--top-p", "1.5"]);
    assert!(!ok && stderr.contains("top_p"), "{stderr}");
    // Image options are refused for a text preset, not ignored.
    let (ok, _, stderr) = kiln(&["train", "char-lm", "--augment", "flip", "--epochs", "1"]);
    assert!(!ok && stderr.contains("--augment"), "{stderr}");

    // A classifier on a user's CSV of labelled texts.
    let source =
        std::fs::read_to_string(data_dir().join("text/fine-foods-reviews/train.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(source.as_bytes());
    let csv_path = dir.path().join("reviews.csv");
    let mut writer = csv::Writer::from_path(&csv_path).unwrap();
    writer.write_record(["comment", "verdict"]).unwrap();
    for record in reader.records().take(200) {
        let record = record.unwrap();
        writer.write_record([&record[1], &record[2]]).unwrap();
    }
    writer.flush().unwrap();
    let text = dir.path().join("text");
    let args = [
        "train",
        "transformer-classifier",
        "--dataset",
        csv_path.to_str().unwrap(),
        "--text-column",
        "comment",
        "--target",
        "verdict",
        "--epochs",
        "1",
        "--out",
        text.to_str().unwrap(),
        "--quiet",
    ];
    let (ok, stdout, stderr) = kiln(&args);
    assert!(ok, "{stderr}");
    let trained = stdout.split(',').next().unwrap().to_string();
    assert!(trained.starts_with("test accuracy "), "{stdout}");
    let (ok, stdout, stderr) = kiln(&["eval", text.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with(&trained),
        "train `{trained}`, eval `{stdout}`"
    );
    // A finished run does not resume; the error says so.
    let (ok, _, stderr) = kiln(&["train", "--resume", text.to_str().unwrap()]);
    assert!(!ok && stderr.contains("already finished"), "{stderr}");
}

/// The first `e.g. ...` example of `kiln CMD --help` that starts with `model.`.
fn help_example(cmd: &str) -> String {
    let (ok, stdout, _) = kiln(&[cmd, "--help"]);
    assert!(ok);
    stdout
        .split("e.g. ")
        .skip(1)
        .map(|rest| {
            rest.split(|c: char| c.is_whitespace() || c == ')' || c == ';')
                .next()
                .unwrap()
                .trim_end_matches('.')
                .to_string()
        })
        .find(|e| e.starts_with("model."))
        .unwrap_or_else(|| panic!("no model path example in kiln {cmd} --help"))
}

#[test]
fn the_path_examples_of_the_help_work_when_pasted() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let group = help_example("train");
    assert_eq!(group, "model.Mlp.hidden.0=frozen");
    let (ok, _, stderr) = kiln(&[
        "train",
        "mlp",
        "--epochs",
        "1",
        "--group",
        &group,
        "--out",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(ok, "--group {group}: {stderr}");
    let layer = help_example("prune");
    assert_eq!(layer, "model.Mlp.hidden.0");
    let out = dir.path().join("pruned");
    let (ok, _, stderr) = kiln(&[
        "prune",
        run.to_str().unwrap(),
        "--sparsity",
        "0.5",
        "--layer",
        &layer,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "--layer {layer}: {stderr}");
    // A wrong path names the convention's paths.
    let (ok, _, stderr) = kiln(&[
        "train",
        "mlp",
        "--epochs",
        "1",
        "--group",
        "model.Mlp.layers.0=frozen",
        "--quiet",
        "--out",
        dir.path().join("bad").to_str().unwrap(),
    ]);
    assert!(!ok && stderr.contains("model.Mlp.hidden.0"), "{stderr}");
}

#[test]
fn seeds_repeats_a_command_and_summarises_its_test_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sweep");
    let out_str = out.to_str().unwrap();
    let (ok, stdout, stderr) = kiln(&[
        "seeds", "1,2,3", "--out", out_str, "--", "train", "mlp", "--epochs", "4",
    ]);
    assert!(ok, "seeds failed: {stderr}");
    // Each seed's run is a normal run folder, and the summary's per-seed accuracies are the
    // ones `kiln eval` reads back from them.
    let line = stdout
        .lines()
        .find(|l| l.starts_with("| test accuracy % |"))
        .unwrap_or_else(|| panic!("{stdout}"));
    let cells: Vec<&str> = line.split('|').map(str::trim).collect();
    for (i, seed) in [1, 2, 3].iter().enumerate() {
        let run = out.join(format!("seed-{seed}/run"));
        let (ok, eval, _) = kiln(&["eval", run.to_str().unwrap()]);
        assert!(ok);
        let accuracy = cells[5 + i];
        assert!(
            eval.starts_with(&format!("test accuracy {accuracy}%")),
            "{eval} vs {line}"
        );
    }
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.starts_with("# kiln train mlp --epochs 4"), "{md}");

    // What kiln seeds sets itself, and commands it cannot repeat, are refused before any run.
    for (args, expected) in [
        (vec!["--", "train", "mlp", "--seed", "3"], "drop `--seed`"),
        (vec!["--", "eval", "runs/x"], "not `eval`"),
        (vec!["--", "train", "mlp", "--epochs", "x"], "invalid value"),
    ] {
        let mut argv = vec!["seeds", "1-2", "--out"];
        let other = dir.path().join("other");
        argv.push(other.to_str().unwrap());
        argv.extend(args);
        let (ok, _, stderr) = kiln(&argv);
        assert!(!ok && stderr.contains(expected), "{argv:?}: {stderr}");
        assert!(!other.join("seed-1").exists());
    }
}

#[test]
fn llm_generate_and_chat_with_smollm2() {
    // Greedy: the reference continuation (tests/smollm2.rs checks the ids).
    let (ok, out, err) = kiln(&[
        "generate",
        "--model",
        "smollm2",
        "The capital of France is",
        "--greedy",
        "--max-tokens",
        "20",
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "The capital of France is Paris.\n\nThe answer is: 2018-01-22 \n"
    );
    assert!(
        err.contains("5 prompt tokens at") && err.contains("20 new tokens at"),
        "{err}"
    );

    // Piped chat: two questions, a reset, the first again: the same reply both times.
    let (ok, stdout, stderr) = kiln_with_stdin(
        &[
            "chat",
            "--model",
            "smollm2",
            "--greedy",
            "--max-tokens",
            "40",
        ],
        "What is the capital of France?\n\n/reset\nWhat is the capital of France?\n/exit\nnever read\n",
    );
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout,
        "The capital of France is Paris.\nThe capital of France is Paris.\n"
    );

    // A turn that does not fit in the context is an error line, and the chat goes on.
    let (ok, stdout, stderr) = kiln_with_stdin(
        &[
            "chat",
            "--model",
            "smollm2",
            "--greedy",
            "--max-tokens",
            "20",
            "--context",
            "60",
        ],
        "Tell me everything about the history of France, its kings, its revolutions, its wars and its republics.\nWhat is the capital of France?\n",
    );
    assert!(ok, "{stderr}");
    assert!(stderr.contains("do not fit in the KV cache"), "{stderr}");
    assert_eq!(stdout, "The capital of France is Paris.\n");

    let (ok, out, _) = kiln(&["summary", "smollm2"]);
    assert!(ok);
    assert!(out.contains("parameters: 134515008"), "{out}");
    assert!(out.contains("KV cache: 46080 bytes per token"), "{out}");
}

#[test]
fn llm_errors_name_the_fix() {
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["generate", "--model", "smollm2", "hi"])
        .env("KILN_MODEL_CACHE", empty.path())
        .env("KILN_DATA_DIR", empty.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("fetch it with `kiln fetch smollm2`"), "{err}");

    let (ok, _, err) = kiln(&["generate", "--model", "no-such-model", "hi"]);
    assert!(!ok && err.contains("neither a .gguf file"), "{err}");
    let corrupt = empty.path().join("bad.gguf");
    std::fs::write(&corrupt, b"GGUF\x03\x00\x00\x00garbage").unwrap();
    let (ok, _, err) = kiln(&["chat", "--model", corrupt.to_str().unwrap()]);
    assert!(!ok && err.contains("invalid GGUF at byte"), "{err}");
    let (ok, _, err) = kiln(&["fetch", "no-such-model"]);
    assert!(
        !ok && err.contains("unknown model `no-such-model` to fetch"),
        "{err}"
    );
    let (ok, out, _) = kiln(&["fetch", "list"]);
    assert!(ok && out.contains("smollm2"), "{out}");
}
