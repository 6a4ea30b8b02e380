//! SIGINT/SIGTERM/SIGHUP: set a flag that running steps poll, so their process groups are killed, the
//! interruption is recorded and scratch databases are dropped. A second signal, or the first
//! one left unanswered for `BACKSTOP`, ends ops-run at once: nothing it waits for (a mail
//! server, a hung lock) can make it ignore a stop.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// How long ops-run may take to end after the first SIGINT/SIGTERM: every group's grace,
/// cleanup statements and the records, with room to spare; under systemd's 90 s stop limit.
pub const BACKSTOP: Duration = Duration::from_secs(30);
/// The exit code when the backstop or a second signal ends ops-run (128 + SIGTERM).
const STOPPED: i32 = 143;

fn flag() -> &'static Arc<AtomicBool> {
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Installs the handlers. Children run in their own process groups, so a terminal's Ctrl-C
/// reaches only ops-run, which then kills each group itself.
pub fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        for sig in [
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
        ] {
            // Registered first, so it sees the flag as the earlier signal left it: a second
            // signal exits at once.
            let _ =
                signal_hook::flag::register_conditional_shutdown(sig, STOPPED, Arc::clone(flag()));
            // Failing to install leaves the default (die at once); nothing better to do.
            let _ = signal_hook::flag::register(sig, Arc::clone(flag()));
        }
        let _ = std::thread::Builder::new()
            .name("stop-backstop".into())
            .spawn(|| {
                while !interrupted() {
                    std::thread::sleep(Duration::from_millis(100));
                }
                std::thread::sleep(BACKSTOP);
                eprintln!(
                    "ops-run: still running {} s after SIGINT/SIGTERM; exiting now",
                    BACKSTOP.as_secs()
                );
                std::process::exit(STOPPED);
            });
    });
}

pub fn interrupted() -> bool {
    flag().load(Ordering::SeqCst)
}
