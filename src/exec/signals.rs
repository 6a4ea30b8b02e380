//! SIGINT/SIGTERM: set a flag that running steps poll, so their process groups are killed.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

fn flag() -> &'static Arc<AtomicBool> {
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Installs the handlers. Children run in their own process groups, so a terminal's Ctrl-C
/// reaches only ops-run, which then kills each group itself.
pub fn install() {
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Failing to install leaves the default (die at once); nothing better to do.
        let _ = signal_hook::flag::register(sig, Arc::clone(flag()));
    }
}

pub fn interrupted() -> bool {
    flag().load(Ordering::SeqCst)
}
