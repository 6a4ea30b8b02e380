//! `ops-run`: arguments → `ops_run::run` → exit code.

use clap::Parser;

fn main() {
    let cli = ops_run::cli::Cli::parse();
    std::process::exit(ops_run::run(cli));
}
