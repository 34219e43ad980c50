//! Generates burn code for an ONNX model with burn-onnx's `ModelGen`.
//!
//! Usage: `cargo run --manifest-path tools/onnx-import/Cargo.toml -- MODEL.onnx OUT_DIR`
//! writes `OUT_DIR/<model stem>.rs` (the network as burn modules) and the weights next to it.

use burn_onnx::ModelGen;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(input), Some(out_dir)) = (args.next(), args.next()) else {
        eprintln!("usage: kiln-onnx-import MODEL.onnx OUT_DIR");
        std::process::exit(2);
    };
    ModelGen::new()
        .input(&input)
        .out_dir(&out_dir)
        .run_from_cli();
}
