//! CI's tiny run of `cargo xtask bench lora --smoke` (two one-review steps per case: LoRA on
//! all projections, on q and v, and full fine-tuning), so the benchmark cannot rot; its
//! figures mean nothing, but the parameter counts are exact.

#[test]
fn the_lora_benchmark_runs_in_smoke_mode() {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-lora");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_xtask-heavy"))
        .args(["bench", "lora", "--smoke", "--out"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let table = std::fs::read_to_string(out.join("lora.md")).unwrap();
    for row in [
        "| LoRA r8, all 7 projections | 2442240 (1.82% of 134515008)",
        "| LoRA r8, q_proj + v_proj | 460800",
        // Every weight, and the output projection as its own copy of the tied embedding.
        "| full fine-tuning | 162826560 (121.05% of 134515008)",
    ] {
        assert!(table.contains(row), "{row} missing:\n{table}");
    }
}
