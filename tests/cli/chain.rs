//! The activity log's hash chain: `activities verify` holds on a log ops-run wrote, names the
//! row an edit with `sqlite3` changed and the one a `DELETE` removed, and the newest hash it
//! prints is the one in /metrics and in the report.

use std::process::Command;

use crate::harness::Workspace;

fn workspace() -> Workspace {
    Workspace::with_plan(
        r#"plan app {
    base "backups"
    command first { run "true"; }
    command second { run "sh" "-c" "echo second"; after first; }
    command third { run "false"; }
}"#,
    )
}

fn sqlite(ws: &Workspace, sql: &str) {
    let out = Command::new("sqlite3")
        .arg(ws.path("state/ops.db"))
        .arg(sql)
        .output()
        .expect("sqlite3 (apt-get install sqlite3)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_edited_or_removed_activity_is_named_and_the_newest_hash_is_published() {
    let ws = workspace();
    for _ in 0..2 {
        ws.run(&["plan", "apply", "--force"]);
    }
    let ok = ws.run(&["activities", "verify"]);
    assert_eq!(ok.code(), 0, "{}{}", ok.stdout(), ok.stderr());
    assert!(
        ok.stdout().starts_with("ok: 6 ended activities"),
        "{}",
        ok.stdout()
    );
    let head = ok.stdout().trim().rsplit(' ').next().unwrap().to_string();
    assert_eq!(head.len(), 64, "{}", ok.stdout());
    let metrics = ws.run(&["metrics"]).stdout();
    assert!(
        metrics.contains(&format!("ops_run_activity_log_sealed{{hash=\"{head}\"}} 6")),
        "{metrics}"
    );
    let report = ws.run(&["report", "--out", "report.md"]);
    assert_eq!(report.code(), 0, "{}", report.stderr());
    let md = std::fs::read_to_string(ws.path("report.md")).unwrap();
    assert!(md.contains(&head), "{md}");

    // A failure rewritten as a success.
    let backup = ws.path("state/copy.db");
    std::fs::copy(ws.path("state/ops.db"), &backup).unwrap();
    sqlite(
        &ws,
        "UPDATE ops_activities SET status = 'success' WHERE id = (SELECT min(id) FROM ops_activities WHERE status = 'failed')",
    );
    let r = ws.run(&["activities", "verify"]);
    assert_eq!(r.code(), 1, "{}", r.stdout());
    assert!(r.stderr().contains("was changed"), "{}", r.stderr());
    assert!(r.stderr().contains("app/third"), "{}", r.stderr());

    // A row removed from the middle.
    std::fs::copy(&backup, ws.path("state/ops.db")).unwrap();
    let _ = std::fs::remove_file(ws.path("state/ops.db-wal"));
    let _ = std::fs::remove_file(ws.path("state/ops.db-shm"));
    assert_eq!(ws.run(&["activities", "verify"]).code(), 0);
    // (Rows are sealed in the order they end, so the second seal is the one removed here.)
    sqlite(&ws, "DELETE FROM ops_activities WHERE seal = 2");
    let r = ws.run(&["activities", "verify"]);
    assert_eq!(r.code(), 1, "{}", r.stdout());
    assert!(r.stderr().contains("sealed #2 is gone"), "{}", r.stderr());
}
