//! CI's tiny run of `cargo xtask bench serve --smoke` (a few requests through both servers
//! and two chat streams), so the benchmark cannot rot; its figures mean nothing.

#[test]
fn the_serve_benchmark_runs_in_smoke_mode() {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-serve");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_xtask-heavy"))
        .args(["bench", "serve", "--smoke", "--out"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let table = std::fs::read_to_string(out.join("serve.md")).unwrap();
    for row in [
        "embeddings, unbatched",
        "images, batched",
        "chat, 2 stream(s)",
        "Peak RSS",
    ] {
        assert!(table.contains(row), "{row} missing:\n{table}");
    }
}
