//! `xtask-heavy`: the `cargo xtask` commands that build and call Kiln's libraries (train, bench,
//! compress-report, seeds). `cargo xtask` itself depends on none of them, so `cargo xtask
//! ci` formats and lints before anything of burn is compiled; it forwards these commands here
//! (`cargo run -p xtask-heavy -- ...`). `main` only dispatches; one module per command.

mod bench;
mod bench_llm;
mod bench_lora;
mod bench_models;
mod bench_serve;
mod compress_report;
mod flags;
mod seeds;
mod train;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    // This program owns its process: tune the allocator for burn's per-step buffers.
    kiln_core::allocator::tune();
    match flags::Xtask::parse().command {
        flags::Command::Train(args) => train::run(args),
        flags::Command::Bench(args) => bench::run(args),
        flags::Command::CompressReport(args) => compress_report::run(args),
        flags::Command::Seeds(args) => seeds::run(args),
    }
}
