//! `cargo xtask`: project automation. `main` only dispatches; one module per command.

mod bench;
mod bench_llm;
mod bench_models;
mod ci;
mod compress_report;
mod flags;
mod seeds;
mod train;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    kiln_core::allocator::tune();
    match flags::Xtask::parse().command {
        flags::Command::Train(args) => train::run(args),
        flags::Command::Ci(args) => ci::run(args),
        flags::Command::Bench(args) => bench::run(args),
        flags::Command::CompressReport(args) => compress_report::run(args),
        flags::Command::Seeds(args) => seeds::run(args),
    }
}
