//! A temporary workspace (plans, state) and the `ops-run` binary run inside it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_ops-run");

/// Variables of the seed that would change results if the developer's shell had them.
const CLEARED: [&str; 16] = [
    "OPS_BACKUP_BASE",
    "OPS_DB_DUMP_STALE_MIN",
    "OPS_DB_DUMP_FAIL_MIN",
    "OPS_SNAPSHOT_STALE_MIN",
    "OPS_VERIFY_OVERDUE_HOURS",
    "OPS_VERIFY_AUTO",
    "ALERT_SLACK_WEBHOOK",
    "RESTIC_REPO",
    "RESTIC_PASSWORD",
    "OPS_STATE",
    "OPS_NOW",
    "OPS_PLANS",
    "CRM_DB_PASSWORD",
    "OPS_VIEW_TOKEN",
    "OPS_EXEC_TOKEN",
    "RUST_BACKTRACE",
];

pub struct Workspace {
    pub dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().expect("temp dir"),
            env: Vec::new(),
        }
    }

    /// A workspace with `plans/main.kdl` holding `plan`.
    pub fn with_plan(plan: &str) -> Workspace {
        let ws = Workspace::new();
        ws.write("plans/main.kdl", plan);
        ws
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file of the workspace. In a plan (`plans/….kdl`) a relative `base "DIR"` is
    /// written as this workspace's `DIR`: plans take absolute bases only, and the tests keep
    /// their backups in their own folder.
    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let text = if rel.starts_with("plans/") && rel.ends_with(".kdl") {
            self.absolute_bases(text)
        } else {
            text.to_string()
        };
        std::fs::write(p, text).unwrap();
    }

    /// `base "DIR"` with a relative DIR, as this workspace's absolute `DIR`.
    pub fn absolute_bases(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(i) = rest.find("base \"") {
            let (head, tail) = rest.split_at(i + "base \"".len());
            out.push_str(head);
            let a_setting = head[..i].chars().last().is_none_or(char::is_whitespace);
            if a_setting && !tail.starts_with('/') && !tail.starts_with('"') {
                out.push_str(&format!("{}/", self.dir.path().display()));
            }
            rest = tail;
        }
        out.push_str(rest);
        out
    }

    pub fn env(mut self, k: &str, v: &str) -> Workspace {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(self.dir.path());
        for k in CLEARED {
            c.env_remove(k);
        }
        c.env("OPS_STATE", self.path("state/ops.db"));
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.args(args).stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run(self.command(args).output().expect("run ops-run"))
    }

    pub fn run_at(&self, now: &str, args: &[&str]) -> Run {
        Run(self
            .command(args)
            .env("OPS_NOW", now)
            .output()
            .expect("run ops-run"))
    }

    pub fn activities(&self) -> Vec<Value> {
        let r = self.run(&["activities", "--json", "--limit", "1000"]);
        assert_eq!(r.code(), 0, "{}", r.stderr());
        let mut rows: Vec<Value> = serde_json::from_str(&r.stdout()).expect("activities JSON");
        rows.reverse();
        rows
    }

    /// `(step, status, trigger)` of every activity, oldest first.
    pub fn statuses(&self) -> Vec<(String, String, String)> {
        self.activities()
            .iter()
            .map(|a| {
                (
                    a["step"].as_str().unwrap().to_string(),
                    a["status"].as_str().unwrap().to_string(),
                    a["trigger"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
}

/// Processes whose command line contains `needle` (read from /proc).
pub fn processes_with(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(needle) {
                out.push(pid);
            }
        }
    }
    out
}

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Polls `cond` every 50 ms for up to `secs` seconds.
pub fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < until {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

/// Whether something accepts connections on `127.0.0.1:port` within `secs`.
pub fn listening(port: u16, secs: u64) -> bool {
    wait_for(secs, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
}

/// A server a test started (rclone, sshd, Prometheus …): killed and reaped when dropped,
/// however the test ends.
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// The SHA-256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
