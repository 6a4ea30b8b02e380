//! Processes that leave their step's process group (`setsid`, a daemonizing script) and the
//! step's absolute deadline. ops-run is a child subreaper, so what a step's processes orphan
//! is re-parented to ops-run instead of init; every process it starts carries a token in its
//! environment (`OPS_RUN_PROCESS`), inherited by all it spawns. When a step's main process
//! has ended (or its time is up), whatever still carries its token — or was orphaned to
//! ops-run and carries no token — is killed, reaped and named in the activity.

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitOptions};

/// The environment variable naming the run a process belongs to.
pub const TOKEN_VAR: &str = "OPS_RUN_PROCESS";

/// Pids of the main processes ops-run is running now (each waited for by its own run):
/// never taken for orphans.
pub static MAIN_PIDS: Mutex<Option<HashSet<i32>>> = Mutex::new(None);

/// Makes orphans of our descendants our children (Linux `PR_SET_CHILD_SUBREAPER`).
pub fn become_subreaper() {
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
}

/// Whether the ops-run process `pid`, named in a leftover file, may still be using it: this
/// process, or any process with that pid.
pub fn still_running(pid: u32) -> bool {
    pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// A token for one process run: `PID.N`.
pub fn token() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "{}.{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn proc_field(pid: i32, key: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_string())
}

fn token_of(pid: i32) -> Option<Option<String>> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{TOKEN_VAR}=");
    Some(
        env.split(|&b| b == 0)
            .find_map(|kv| kv.strip_prefix(prefix.as_bytes()))
            .map(|v| String::from_utf8_lossy(v).into_owned()),
    )
}

/// Kills what escaped the run `token` (see the module comment) and reaps it; returns
/// `name (pid N)` for each. Also reaps orphans that already ended.
/// `mains` is `MAIN_PIDS`, locked by the caller for the whole sweep (no spawn meanwhile).
pub fn kill_escaped(token: &str, mains: &HashSet<i32>) -> Vec<String> {
    let me = std::process::id() as i32;
    let mut killed = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return killed;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me || mains.contains(&pid) {
            continue;
        }
        let orphan = proc_field(pid, "PPid:").and_then(|p| p.parse::<i32>().ok()) == Some(me);
        let zombie = proc_field(pid, "State:").is_some_and(|s| s.starts_with('Z'));
        if orphan && zombie {
            reap(pid);
            continue;
        }
        let ours = match token_of(pid) {
            Some(Some(t)) => t == token,
            // No token (a cleared environment): ours to end only if it was orphaned to us.
            Some(None) => orphan,
            None => false,
        };
        if !ours || zombie {
            continue;
        }
        let name = proc_field(pid, "Name:").unwrap_or_else(|| "?".into());
        if let Some(p) = Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(p, Signal::KILL);
            killed.push(format!("{name} (pid {pid})"));
        }
        if orphan {
            reap(pid);
        }
    }
    killed
}

fn reap(pid: i32) {
    let Some(p) = Pid::from_raw(pid) else { return };
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        match rustix::process::waitpid(Some(p), WaitOptions::NOHANG) {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

thread_local! {
    /// The deadline of the step this thread runs, and its whole timeout (for messages).
    static STEP: Cell<Option<(Instant, Duration)>> = const { Cell::new(None) };
}

/// Runs `f` with every process it starts bounded by `timeout` from now, all together.
pub fn with_step_deadline<T>(timeout: Duration, f: impl FnOnce() -> T) -> T {
    with_deadline(Some((Instant::now() + timeout, timeout)), f)
}

/// Runs `f` under `deadline`, the step deadline another thread had (`step_deadline`): a
/// step's helper thread keeps its step's bound.
pub fn with_deadline<T>(deadline: Option<(Instant, Duration)>, f: impl FnOnce() -> T) -> T {
    let before = STEP.replace(deadline);
    let out = f();
    STEP.set(before);
    out
}

/// The step deadline of this thread, if any: `(deadline, the step's timeout)`.
pub fn step_deadline() -> Option<(Instant, Duration)> {
    STEP.get()
}

/// Time left before this thread's step deadline (`default` when there is none).
pub fn remaining(default: Duration) -> Duration {
    step_deadline().map_or(default, |(d, _)| {
        d.saturating_duration_since(Instant::now()).min(default)
    })
}
