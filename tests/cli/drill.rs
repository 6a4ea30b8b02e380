//! Drills with the real restic and SQLite: a good setup passes with its recovery time and
//! point recorded; a live file changed behind the snapshot's back (same size and mtime) fails
//! it; a recovery point over `rpo` is a warning; the scratch database and folder are gone
//! after success and failure.

use crate::harness::{Workspace, signal, wait_for};

const PASSWORD: &str = "restic-Dr-40b9";

fn workspace(extra: &str) -> Workspace {
    workspace_with("", extra, |_| {})
}

/// The plan with `plan_extra` at plan level (a `tools` block) and `extra` in the drill.
fn workspace_with(plan_extra: &str, extra: &str, tools: impl FnOnce(&Workspace)) -> Workspace {
    let ws = Workspace::with_plan(&format!(
        r#"plan app {{
            base "backups"
            {plan_extra}
            database main {{
                engine sqlite
                path "app.db"
            }}
            dump db {{
                database main
            }}
            snapshot uploads {{
                paths "data"
                repository "repo"
                password env=UPLOADS_PW
                init #true
            }}
            drill rehearsal {{
                dump db
                snapshot uploads
                min-tables 2
                expect "SELECT count(*) FROM users" min=2
                sample "100%"
                {extra}
            }}
        }}"#
    ))
    .env("UPLOADS_PW", PASSWORD);
    let cache = ws.path("cache").display().to_string();
    let ws = ws.env("RESTIC_CACHE_DIR", &cache);
    rusqlite::Connection::open(ws.path("app.db"))
        .unwrap()
        .execute_batch(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT);
             INSERT INTO users (email) VALUES ('a@example.com'), ('b@example.com');
             CREATE TABLE notes (body TEXT);",
        )
        .unwrap();
    for i in 0..20 {
        ws.write(&format!("data/f{i:02}.txt"), &format!("file number {i}\n"));
    }
    tools(&ws);
    assert_eq!(ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]).code(), 0);
    let r = ws.run_at("2026-11-28T10:00:30Z", &["run", "uploads"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    ws
}

fn drills(ws: &Workspace) -> Vec<serde_json::Value> {
    ws.activities()
        .into_iter()
        .filter(|a| a["type"] == "dr_drill")
        .collect()
}

/// Nothing of a drill's scratch targets is left beside its logs.
fn assert_no_scratch(ws: &Workspace) {
    let left: Vec<String> = std::fs::read_dir(ws.path("backups/verify"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "scratch left behind: {left:?}");
}

#[test]
#[ignore = "needs restic; run scripts/test"]
fn a_drill_restores_both_and_records_recovery_time_and_point() {
    let ws = workspace("rto \"1h\"\n rpo \"26h\"");
    let r = ws.run_at("2026-11-28T10:10:00Z", &["run", "rehearsal"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let d = &drills(&ws)[0];
    assert_eq!(d["status"], "success", "{d}");
    let rpo = d["meta"]["rpo_seconds"].as_u64().unwrap();
    assert!(
        (570..=610).contains(&rpo),
        "recovery point {rpo} s, expected ~600: {d}"
    );
    assert!(d["meta"]["rto_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(d["meta"]["files_sampled"], 20);
    assert_eq!(d["meta"]["files_mismatched"], 0);
    assert_eq!(d["meta"]["tables"], 2);
    let log = std::fs::read_to_string(d["meta"]["log"].as_str().unwrap()).unwrap();
    assert!(
        log.contains("recovery time:") && log.contains("spot check: 20 of 20"),
        "{log}"
    );
    assert!(!log.contains(PASSWORD));
    assert_no_scratch(&ws);
    // Health and metrics know it.
    let status = ws.run_at("2026-11-28T10:11:00Z", &["status"]);
    assert!(
        status
            .stdout()
            .contains("(objective 1h), recovery point 10m (objective 26h)"),
        "{}",
        status.stdout()
    );
    let metrics = ws.run_at("2026-11-28T10:11:00Z", &["metrics"]).stdout();
    assert!(
        metrics.contains("ops_run_recovery_point_age_seconds{plan=\"app\",step=\"rehearsal\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("ops_run_drill_duration_seconds{plan=\"app\",step=\"rehearsal\"}"));
    // The runbook ends with what the drill measured, against the objectives.
    let r = ws.run_at("2026-11-28T10:11:00Z", &["runbook"]);
    let text = std::fs::read_to_string(r.stdout().trim()).unwrap();
    assert!(
        text.contains("The last drill of app/rehearsal measured a recovery time of")
            && text.contains("(objective 1h)")
            && text.contains("recovery point of **10m**"),
        "{text}"
    );
}

#[test]
#[ignore = "needs restic; run scripts/test"]
fn a_file_changed_behind_the_snapshots_back_fails_the_drill() {
    let ws = workspace("");
    // Same size, same modification time, other content: only the hash can tell.
    let path = ws.path("data/f07.txt");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::write(&path, "file NUMBER 7\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let r = ws.run_at("2026-11-28T10:10:00Z", &["run", "rehearsal"]);
    assert_eq!(r.code(), 1, "{}", r.stdout());
    let d = &drills(&ws)[0];
    assert_eq!(d["status"], "failed", "{d}");
    assert!(
        d["log_excerpt"]
            .as_str()
            .unwrap()
            .contains("f07.txt: same size, different content"),
        "{d}"
    );
    assert_no_scratch(&ws);
    let status = ws.run_at("2026-11-28T10:11:00Z", &["status"]);
    assert!(status.stdout().contains("fail"), "{}", status.stdout());
}

#[test]
#[ignore = "needs restic; run scripts/test"]
fn a_recovery_point_over_the_objective_is_a_warning() {
    let ws = workspace("rpo \"26h\"");
    // Two days later the newest backups are 48 h old.
    let r = ws.run_at("2026-11-30T10:00:00Z", &["run", "rehearsal"]);
    let d = &drills(&ws)[0];
    assert_eq!(d["status"], "incomplete", "{d} {}", r.stderr());
    assert!(
        d["log_excerpt"].as_str().unwrap().contains("over rpo 26h"),
        "{d}"
    );
    assert_no_scratch(&ws);
    let status = ws.run_at("2026-11-30T10:01:00Z", &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    let check = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "app/rehearsal")
        .unwrap()
        .clone();
    assert_eq!(
        (check["state"].as_str(), check["severity"].as_str()),
        (Some("incomplete"), Some("warn")),
        "{check}"
    );
}

#[test]
fn a_drill_without_anything_to_rehearse_is_refused() {
    let ws = Workspace::with_plan(
        r#"plan app {
            base "backups"
            drill nothing {
                sample "5%"
            }
        }"#,
    );
    let r = ws.run(&["plan", "validate"]);
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr()
            .contains("needs `dump`, `base-backup` or `snapshot`"),
        "{}",
        r.stderr()
    );
}

/// A drill whose `restic restore` hangs after it wrote the files: stopped by SIGTERM or by its
/// timeout, it leaves no scratch folder and no scratch database.
fn stopped_drill(drill_extra: &str, stop: impl FnOnce(u32)) {
    let ws = workspace_with(
        "tools {\n restic \"./slow-restic\"\n }",
        drill_extra,
        |ws| {
            ws.write(
                "slow-restic",
                &format!(
                    "#!/bin/sh\nif [ \"$1\" = restore ]; then restic \"$@\" || exit $?; touch {}; sleep 60; exit 0; fi\nexec restic \"$@\"\n",
                    ws.path("restored").display()
                ),
            );
            std::process::Command::new("chmod")
                .args(["+x"])
                .arg(ws.path("slow-restic"))
                .status()
                .unwrap();
        },
    );
    let mut child = ws
        .command(&["run", "rehearsal"])
        .env("OPS_NOW", "2026-11-28T10:10:00Z")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_for(30, || ws.path("restored").exists()),
        "the restore never ran"
    );
    stop(child.id());
    let status = child.wait().unwrap();
    assert!(!status.success());
    let d = &drills(&ws)[0];
    assert!(d["status"] == "failed" || d["status"] == "timeout", "{d}");
    assert_no_scratch(&ws);
    assert!(
        crate::harness::processes_with(&ws.path("slow-restic").display().to_string()).is_empty(),
        "the hanging restore outlived the drill"
    );
}

#[test]
#[ignore = "needs restic; run scripts/test"]
fn a_drill_stopped_by_sigterm_leaves_no_scratch() {
    stopped_drill("", |pid| signal(pid, rustix::process::Signal::TERM));
}

#[test]
#[ignore = "needs restic; run scripts/test"]
fn a_drill_past_its_timeout_leaves_no_scratch() {
    stopped_drill("timeout \"3s\"", |_| {});
}
