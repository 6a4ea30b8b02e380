//! An offsite copy on S3 (restic's `s3:` backend) against a real S3 API server, moto's, with
//! the bucket set up as the README says: versioning, object lock (compliance, 30 days), and a
//! key for the backup host that may write but delete nothing but restic's lock files. The
//! copy works and restores; a back-dated snapshot written there by hand is not counted and is
//! named; the backup host's `forget` is refused by the bucket and is `incomplete`, not a
//! failure; the trusted host's `ops-run copy forget` deletes what retention lets go.

use std::collections::HashMap;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::copy::{PASSWORD, tag, workspace};
use crate::harness::{Reaped, Workspace, listening, repo_root};
use crate::serve::free_port;

const BUCKET: &str = "ops-offsite";

/// moto's S3 server on a free port, with the bucket and the two hosts' keys.
struct S3 {
    _server: Reaped,
    endpoint: String,
    keys: HashMap<String, String>,
}

fn start() -> S3 {
    let port = free_port();
    let script = repo_root().join("tests/s3/moto_server.py");
    let child = Command::new("python3")
        .arg(&script)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 with moto[server] (scripts/test installs it)");
    let server = Reaped(child);
    assert!(listening(port, 30), "moto_server did not start on {port}");
    let endpoint = format!("http://127.0.0.1:{port}");
    let out = Command::new("python3")
        .arg(repo_root().join("tests/s3/moto_bucket.py"))
        .args([&endpoint, BUCKET])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    S3 {
        _server: server,
        endpoint,
        keys,
    }
}

impl S3 {
    fn repository(&self) -> String {
        format!("s3:{}/{BUCKET}", self.endpoint)
    }

    /// The AWS variables of a host: `BACKUP_HOST` or `TRUSTED_HOST`.
    fn credentials(&self, host: &str) -> [(&'static str, String); 2] {
        [
            (
                "AWS_ACCESS_KEY_ID",
                self.keys[&format!("{host}_KEY")].clone(),
            ),
            (
                "AWS_SECRET_ACCESS_KEY",
                self.keys[&format!("{host}_SECRET")].clone(),
            ),
        ]
    }

    /// restic at the bucket with `host`'s key, as the test's own hand (times in UTC).
    fn restic(&self, ws: &Workspace, host: &str, args: &[&str]) -> std::process::Output {
        Command::new("restic")
            .args(args)
            .env("RESTIC_REPOSITORY", self.repository())
            .env("RESTIC_PASSWORD", PASSWORD)
            .env("RESTIC_CACHE_DIR", ws.path("cache"))
            .env("TZ", "UTC")
            .envs(self.credentials(host))
            .output()
            .unwrap()
    }

    /// The dumps the bucket's snapshots hold, by their `dump` tag, sorted.
    fn dumps(&self, ws: &Workspace) -> Vec<String> {
        let out = self.restic(ws, "TRUSTED_HOST", &["snapshots", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let all: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        let mut dumps: Vec<String> = all.iter().filter_map(|s| tag(s, "dump")).collect();
        dumps.sort();
        dumps
    }
}

fn statuses_of(ws: &Workspace, kind: &str) -> Vec<String> {
    ws.activities()
        .iter()
        .filter(|a| a["type"] == kind)
        .map(|a| a["status"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
#[ignore = "needs restic and moto[server]; run scripts/test"]
fn a_copy_to_a_locked_bucket_restores_and_its_retention_cannot_be_steered() {
    let s3 = start();
    let mut ws = workspace(&s3.repository(), "forget last=1");
    for (k, v) in s3.credentials("BACKUP_HOST") {
        ws = ws.env(k, &v);
    }
    assert_eq!(ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]).code(), 0);
    let r = ws.run_at("2026-11-28T10:05:00Z", &["run", "offsite"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert_eq!(s3.dumps(&ws), ["full-20261128-1000.sql.gz"]);

    // A back-dated (here: future-dated) snapshot written by whoever holds the backup host's
    // key, which may write: restic's own keep-last=1 would keep it alone.
    std::fs::write(ws.path("forged.txt"), "nothing").unwrap();
    let out = s3.restic(
        &ws,
        "BACKUP_HOST",
        &[
            "backup",
            "--quiet",
            "--tag=ops-run",
            "--tag=plan=app",
            "--tag=step=offsite",
            "--tag=dump=full-20261128-1000.sql.gz",
            "--tag=sha256=0000",
            "--time=2026-12-31 00:00:00",
            ws.path("forged.txt").to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The next copy: shipped; the forged one named and not counted; the forget of the real
    // 10:00 copy refused by the bucket (no delete for this key): incomplete, not failed.
    assert_eq!(ws.run_at("2026-11-28T11:00:00Z", &["run", "db"]).code(), 0);
    let r = ws.run_at("2026-11-28T11:05:00Z", &["run", "offsite"]);
    let out = r.stdout();
    assert_eq!(r.code(), 0, "{out}{}", r.stderr());
    assert!(
        out.contains("claims 2026-12-31 00:00 UTC but holds the dump of 2026-11-28 10:00 UTC"),
        "{out}"
    );
    assert!(
        out.contains("the destination refused restic forget"),
        "{out}"
    );
    assert_eq!(statuses_of(&ws, "offsite_copy").last().unwrap(), "success");
    assert_eq!(statuses_of(&ws, "prune").last().unwrap(), "incomplete");
    assert_eq!(
        s3.dumps(&ws),
        [
            "full-20261128-1000.sql.gz",
            "full-20261128-1000.sql.gz",
            "full-20261128-1100.sql.gz"
        ]
    );
    let all = serde_json::to_string(&ws.activities()).unwrap();
    assert!(!all.contains(&s3.keys["BACKUP_HOST_SECRET"]));

    // This machine's dumps are gone: the copy on S3 brings the database back.
    std::fs::remove_dir_all(ws.path("backups/db")).unwrap();
    let r = ws.run_at(
        "2026-11-28T11:10:00Z",
        &[
            "restore", "db", "app/db", "--from", "offsite", "--to", "back.db",
        ],
    );
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let n: i64 = rusqlite::Connection::open(ws.path("back.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);

    // Retention from the trusted host, with its own key and the log: the real 10:00 copy
    // goes, the forged one stays (evidence) and is reported (exit 1).
    let mut trusted = ws.command(&["copy", "forget", "offsite"]);
    trusted.envs(s3.credentials("TRUSTED_HOST"));
    let r = trusted.output().unwrap();
    let out = String::from_utf8_lossy(&r.stdout).into_owned();
    assert_eq!(
        r.status.code(),
        Some(1),
        "{out}{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(out.contains("claims 2026-12-31 00:00 UTC"), "{out}");
    assert_eq!(
        s3.dumps(&ws),
        ["full-20261128-1000.sql.gz", "full-20261128-1100.sql.gz"]
    );
    let out = s3.restic(&ws, "TRUSTED_HOST", &["check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The lock: the forgotten snapshot is a delete marker over a version that stays, and not
    // even a key with every permission destroys a version before the retention ends.
    let out = Command::new("python3")
        .arg(repo_root().join("tests/s3/destroy_versions.py"))
        .args([&s3.endpoint, BUCKET, "snapshots/"])
        .envs(s3.credentials("FULL"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Three snapshots were ever written (two copies and the forged one); the forgotten copy
    // is a delete marker over its version.
    assert_eq!(said, "versions=3 markers=1 destroyed=0");
}
