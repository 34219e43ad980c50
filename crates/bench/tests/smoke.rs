//! CI's smoke run of the benchmark: every reference model and mode for a couple of steps (no
//! timing assertions), plus the report arithmetic.

use kiln_bench::{Case, Mode, TorchMeasurement, run_case, summarize};

#[test]
fn every_reference_case_runs_with_the_reference_parameter_counts() {
    for (model, params) in [("mlp", 235_146), ("cnn", 225_034), ("vit", 139_018)] {
        for mode in [Mode::Train, Mode::Infer] {
            let mut case = Case::new(model, mode).with_steps(1, 2);
            case.batch = Some(8);
            let m = run_case(&case).unwrap();
            assert_eq!(m.params, params, "{model}");
            assert_eq!(m.step_ms.len(), 2);
            assert!(m.samples_per_s > 0.0 && m.gflops > 0.0);
            assert!(m.mult_adds_per_sample > 0);
            if mode == Mode::Train {
                assert_eq!(m.losses.len(), 3);
                // 10 classes from a random init: the first loss is near ln 10.
                assert!((m.losses[0] - 10f32.ln()).abs() < 1.5, "{:?}", m.losses);
            }
        }
    }
}

#[test]
fn token_models_run_and_bert_has_no_training_case() {
    let mut case = Case::new("char-lm", Mode::Train).with_steps(0, 1);
    case.batch = Some(2);
    let m = run_case(&case).unwrap();
    // Next-character targets over a 128-symbol vocabulary.
    assert!((m.losses[0] - 128f32.ln()).abs() < 1.5, "{:?}", m.losses);
    let err = run_case(&Case::new("bert-minilm", Mode::Train)).unwrap_err();
    assert!(err.to_string().contains("no training objective"), "{err}");
}

#[test]
fn the_summary_takes_medians_over_rounds_and_divides_by_pytorch() {
    let mut case = Case::new("mlp", Mode::Infer).with_steps(0, 1);
    case.batch = Some(4);
    let base = run_case(&case).unwrap();
    let runs: Vec<_> = [100.0, 300.0, 200.0]
        .into_iter()
        .map(|rate| {
            let mut m = base.clone();
            m.samples_per_s = rate;
            m
        })
        .collect();
    let torch = |rate: f64| TorchMeasurement {
        backend: "torch2t".into(),
        model: "mlp".into(),
        mode: Mode::Infer,
        batch: 256,
        params: 235_146,
        threads: 2,
        median_step_s: 256.0 / rate,
        samples_per_s: rate,
        torch: "2.15.0".into(),
        peak_rss_bytes: Some(500 << 20),
    };
    let rows = summarize(&runs, &[torch(400.0), torch(100.0), torch(800.0)]);
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!((row.rounds, row.samples_per_s), (3, 200.0));
    assert_eq!(
        (row.min_samples_per_s, row.max_samples_per_s),
        (100.0, 300.0)
    );
    assert_eq!(row.torch_samples_per_s, Some(400.0));
    assert_eq!(row.ratio, Some(0.5));
    let table = kiln_bench::markdown(&rows);
    assert!(
        table.contains("| mlp | infer | 4 | flex | 200 [100..300]"),
        "{table}"
    );
    assert!(table.contains("| 400 | 500 | 0.50 |"), "{table}");
}

#[test]
fn llm_measurement_on_a_tiny_llama() {
    let config = kiln_models::llama::LlamaConfig {
        vocab_size: 64,
        hidden_size: 16,
        intermediate_size: 32,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 4,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        rope_scaling: None,
        max_position_embeddings: 64,
        tie_word_embeddings: false,
    };
    let model = config.init(&burn::tensor::Device::flex()).unwrap();
    let m = kiln_bench::llm::measure(&model, "plain", &[1, 2, 3], 12, 2).unwrap();
    assert_eq!(
        (m.prompt_tokens, m.new_tokens, m.prompt.as_str()),
        (3, 12, "plain")
    );
    assert!(m.tokens_per_s_median > 0.0 && m.tokens_per_s_best >= m.tokens_per_s_median);
    assert!(m.decode_tokens_per_s_median > 0.0 && m.prefill_s > 0.0);
    // More tokens than the model's context is an error, not a panic.
    assert!(kiln_bench::llm::measure(&model, "long", &[1; 60], 12, 1).is_err());
}
