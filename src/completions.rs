//! Shell completions from the command-line definitions, for `ops-run completions SHELL` and
//! the package (build.rs includes this file). clap_complete names the bash states of a binary
//! with a `-` in two ways (`ops__run__subcmd__plan` where it sets the state,
//! `ops__subcmd__run__subcmd__plan` where it matches it: clap-rs/clap#6421), so past the
//! first word bash completed nothing; the script is mended to one spelling.

use clap::CommandFactory;
use clap_complete::Shell;

/// The binary's name.
pub const BIN: &str = "ops-run";

/// Mends what clap_complete wrote for `shell`.
pub fn mend(shell: Shell, script: String) -> String {
    match shell {
        Shell::Bash => script.replace("ops__subcmd__run", "ops__run"),
        _ => script,
    }
}

/// The completion script of `shell`.
pub fn script<C: CommandFactory>(shell: Shell) -> String {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut C::command(), BIN, &mut out);
    mend(shell, String::from_utf8_lossy(&out).into_owned())
}
