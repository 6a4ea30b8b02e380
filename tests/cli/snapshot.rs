//! Restic snapshots with the real restic: the marker matches `restic snapshots --json`,
//! unreadable files make `incomplete` under both policies, a wrong password fails with
//! restic's own message, and the password never shows.

use std::process::Command;

use serde_json::Value;

use crate::harness::Workspace;

const PASSWORD: &str = "restic-Pw-91c3e";

/// A workspace other users can enter (restic runs as `nobody` when the tests run as root, so
/// that an unreadable file really is unreadable to it).
fn workspace(policy: &str, forget: &str, password_env: &str) -> Workspace {
    let ws = Workspace::with_plan(&format!(
        r#"plan files {{
            base "backups"
            tools {{
                restic "./restic-wrapper"
            }}
            snapshot uploads {{
                paths "data"
                repository "repo"
                password env={password_env}
                init #true
                incomplete {policy}
                {forget}
            }}
        }}"#
    ));
    ws.write("data/a.txt", "alpha\n");
    ws.write("data/sub/b.txt", "beta\n");
    let root = unsafe_is_root();
    let wrapper = if root {
        format!(
            "#!/bin/sh\nexec runuser -u nobody -- env HOME={dir} XDG_CACHE_HOME={dir}/cache restic \"$@\"\n",
            dir = ws.path("").display()
        )
    } else {
        "#!/bin/sh\nexec restic \"$@\"\n".to_string()
    };
    ws.write("restic-wrapper", &wrapper);
    std::fs::create_dir_all(ws.path("repo")).unwrap();
    std::fs::create_dir_all(ws.path("cache")).unwrap();
    for p in ["", "repo", "cache", "data", "data/sub", "backups"] {
        let _ = std::fs::create_dir_all(ws.path(p));
        Command::new("chmod")
            .arg("777")
            .arg(ws.path(p))
            .status()
            .unwrap();
    }
    Command::new("chmod")
        .args(["a+rx"])
        .arg(ws.path("restic-wrapper"))
        .status()
        .unwrap();
    Command::new("chmod")
        .args(["-R", "a+r"])
        .arg(ws.path("data"))
        .status()
        .unwrap();
    ws.env(password_env, PASSWORD)
}

fn unsafe_is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn restic_json(ws: &Workspace, args: &[&str]) -> Value {
    let out = Command::new(ws.path("restic-wrapper"))
        .args(args)
        .env("RESTIC_REPOSITORY", ws.path("repo"))
        .env("RESTIC_PASSWORD", PASSWORD)
        .current_dir(ws.path(""))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn markers(ws: &Workspace) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(ws.path("backups/snapshots"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn no_password_anywhere(ws: &Workspace, outputs: &[crate::harness::Run]) {
    for o in outputs {
        assert!(
            !o.stdout().contains(PASSWORD) && !o.stderr().contains(PASSWORD),
            "leaked: {}{}",
            o.stdout(),
            o.stderr()
        );
    }
    assert!(
        !serde_json::to_string(&ws.activities())
            .unwrap()
            .contains(PASSWORD)
    );
}

#[test]
#[ignore = "needs restic; run scripts/test"]
fn the_marker_matches_restic_and_forget_prunes() {
    let ws = workspace("fail", "forget last=1", "SNAP_PW");
    let r1 = ws.run_at("2026-11-28T01:00:00Z", &["run", "uploads"]);
    assert_eq!(r1.code(), 0, "{}{}", r1.stdout(), r1.stderr());
    let r2 = ws.run_at("2026-11-28T02:00:00Z", &["run", "uploads"]);
    assert_eq!(r2.code(), 0, "{}{}", r2.stdout(), r2.stderr());
    let marks = markers(&ws);
    assert_eq!(marks.len(), 2, "{marks:?}");
    assert!(
        marks[1].ends_with("snapshot-20261128-0200.txt"),
        "{marks:?}"
    );
    let text = std::fs::read_to_string(&marks[1]).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let snaps = restic_json(&ws, &["snapshots", "--json"]);
    // forget last=1 left one snapshot: the newest.
    let snaps = snaps.as_array().unwrap();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let s = &snaps[0];
    assert_eq!(lines[0], s["short_id"].as_str().unwrap());
    assert_eq!(lines[1], format!("id: {}", s["id"].as_str().unwrap()));
    assert_eq!(
        lines[2],
        format!("paths: {}", s["paths"][0].as_str().unwrap())
    );
    for key in [
        "files_new: ",
        "files_changed: ",
        "data_added: ",
        "total_bytes: ",
        "duration_ms: ",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(key)),
            "{key} missing:\n{text}"
        );
    }
    let acts = ws.activities();
    let snap = acts
        .iter()
        .rev()
        .find(|a| a["type"] == "storage_snapshot")
        .unwrap();
    assert_eq!(snap["meta"]["id"], s["id"]);
    let prune = acts.iter().rev().find(|a| a["type"] == "prune").unwrap();
    assert_eq!(prune["status"], "success");
    no_password_anywhere(&ws, &[r1, r2, ws.run(&["plan", "apply", "--dry-run"])]);
}

fn lock_a_file(ws: &Workspace) {
    ws.write("data/locked.txt", "secret\n");
    Command::new("chmod")
        .arg("000")
        .arg(ws.path("data/locked.txt"))
        .status()
        .unwrap();
}

#[test]
#[ignore = "needs restic; run scripts/test"]
fn an_unreadable_file_is_incomplete_and_the_policy_decides() {
    let ws = workspace("warn", "", "SNAP_PW");
    lock_a_file(&ws);
    let r = ws.run(&["run", "uploads"]);
    assert_eq!(r.code(), 0, "warn: the apply goes on\n{}", r.stdout());
    let a = ws.activities().pop().unwrap();
    assert_eq!(a["status"], "incomplete");
    assert!(
        a["log_excerpt"].as_str().unwrap().contains("locked.txt"),
        "{a}"
    );
    let marks = markers(&ws);
    assert_eq!(marks.len(), 1);
    assert!(
        std::fs::read_to_string(&marks[0])
            .unwrap()
            .contains("incomplete: true")
    );

    let ws = workspace("fail", "", "SNAP_PW");
    lock_a_file(&ws);
    let r = ws.run(&["run", "uploads"]);
    assert_eq!(r.code(), 1, "fail: the apply fails\n{}", r.stdout());
    assert_eq!(ws.activities().pop().unwrap()["status"], "incomplete");
    assert!(
        markers(&ws).is_empty(),
        "no marker for an incomplete snapshot under `incomplete fail`"
    );
}

#[test]
#[ignore = "needs restic; run scripts/test"]
fn a_wrong_password_fails_with_restics_message_and_no_marker() {
    let ws = workspace("fail", "", "SNAP_PW");
    assert_eq!(ws.run(&["run", "uploads"]).code(), 0);
    let before = markers(&ws);
    let ws = ws.env("SNAP_PW", "not-the-password");
    let r = ws.run(&["run", "uploads"]);
    assert_eq!(r.code(), 1);
    let a = ws.activities().pop().unwrap();
    assert_eq!(a["status"], "failed");
    assert!(
        a["log_excerpt"]
            .as_str()
            .unwrap()
            .contains("wrong password"),
        "{a}"
    );
    assert_eq!(markers(&ws), before);
    assert!(!r.stdout().contains("not-the-password"));
}
