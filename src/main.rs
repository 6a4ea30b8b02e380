//! `ops-run`: arguments → `ops_run::run` → exit code.

// Plan parsing allocates many small strings; mimalloc makes short commands (the cron apply,
// validate) about a fifth faster than glibc malloc (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

unsafe extern "C" {
    /// mimalloc's option setter (linked in with the allocator).
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}
/// `mi_option_purge_delay` and `mi_option_allow_thp` in mimalloc 3's `mi_option_e`.
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;
const MI_OPTION_ALLOW_THP: std::ffi::c_int = 43;

/// The command line, its `--help` saying the defaults in effect on this machine.
fn parse() -> ops_run::cli::Cli {
    use clap::{CommandFactory, FromArgMatches};
    let plans = ops_run::app::default_plans();
    let env_file = ops_run::app::default_env_file();
    let state = ops_run::app::default_state();
    let cmd = ops_run::cli::Cli::command()
        .mut_arg("plans", |a| {
            a.help(format!(
                "Folder of plan files (*.kdl), or one plan file [default here: {}]",
                plans.display()
            ))
        })
        .mut_arg("state", |a| {
            a.help(format!(
                "SQLite state database [env: OPS_STATE] [default: {}]",
                state.display()
            ))
        })
        .mut_arg("env_file", |a| {
            a.help(match &env_file {
                Some(f) => format!(
                    "A dotenv file of variables; the process environment wins over it [default here: {}]",
                    f.display()
                ),
                None => "A dotenv file of variables; the process environment wins over it [default: /etc/ops-run/ops-run.env when it exists and can be read; none here]".to_string(),
            })
        });
    let matches = cmd.get_matches();
    ops_run::cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn main() {
    let cli = parse();
    if matches!(cli.command, ops_run::cli::Command::Serve { .. }) {
        // serve's memory, measured in bench/serve.sh (peak RSS 66 → 20 MB): mimalloc asks for
        // transparent huge pages, so one touched byte made 2 MiB resident in every thread's
        // area; and with its default 10 ms purge delay, pages freed under steady load were
        // never returned. Short commands keep the defaults.
        let _ = rustix::thread::disable_transparent_huge_pages(true);
        // SAFETY: sets plain integer options; mimalloc reads them when it next uses them.
        unsafe {
            mi_option_set(MI_OPTION_ALLOW_THP, 0);
            mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        }
    }
    std::process::exit(ops_run::run(cli));
}
