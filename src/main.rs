//! `ops-run`: arguments → `ops_run::run` → exit code.

use clap::Parser;

// Plan parsing allocates many small strings; mimalloc makes short commands (the cron apply,
// validate) about a fifth faster than glibc malloc (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = ops_run::cli::Cli::parse();
    std::process::exit(ops_run::run(cli));
}
