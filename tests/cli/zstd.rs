//! `compression "zstd"`: dumps named `full-….sql.zst` with the same sidecar, completion line
//! and read-back proof; `zstd -t` and `sha256sum -c` accept them; verify, restore and drill
//! restore them, the report names them, and verify refuses a flipped byte on the checksum; a
//! plan that switches compression keeps its retention and health across both kinds. (The
//! runbook and copy of a zstd dump: runbook.rs; `backups migrate`: migrate.rs.)

use std::process::Command;

use crate::harness::Workspace;

fn plan(compression: &str) -> String {
    format!(
        r#"plan app {{
            base "backups"
            database main {{
                engine sqlite
                path "app.db"
            }}
            dump db {{
                database main
                {compression}
                keep last=2
            }}
            verify restore {{
                dump db
                min-tables 2
                expect "SELECT count(*) FROM users" min=3
            }}
            drill rehearsal {{
                dump db
                expect "SELECT count(*) FROM users" min=3
            }}
            report weekly {{
            }}
        }}"#
    )
}

fn workspace() -> Workspace {
    let ws = Workspace::with_plan(&plan(r#"compression "zstd""#));
    rusqlite::Connection::open(ws.path("app.db"))
        .unwrap()
        .execute_batch(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT);
             INSERT INTO users (email) VALUES ('a@x'), ('b@x'), ('c@x');
             CREATE TABLE notes (body TEXT);",
        )
        .unwrap();
    ws
}

fn dumps(ws: &Workspace) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(ws.path("backups/db"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".sha256") && !n.ends_with(".manifest.json"))
        .collect();
    names.sort();
    names
}

#[test]
fn a_zstd_dump_is_checked_restored_and_refused_when_damaged() {
    let ws = workspace();
    let show = ws.run(&["plan", "show"]).stdout();
    assert!(
        show.contains("zstd") && show.contains("compression-level"),
        "{show}"
    );
    let r = ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert_eq!(dumps(&ws), ["full-20261128-1000.sql.zst"]);
    let dir = ws.path("backups/db");
    for (tool, args) in [
        ("zstd", vec!["-t", "full-20261128-1000.sql.zst"]),
        ("sha256sum", vec!["-c", "full-20261128-1000.sql.zst.sha256"]),
    ] {
        let out = Command::new(tool)
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let r = ws.run_at("2026-11-28T10:05:00Z", &["run", "restore"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(r.stdout().contains("restored 2 tables"), "{}", r.stdout());
    let r = ws.run_at(
        "2026-11-28T10:06:00Z",
        &["restore", "db", "db", "--to", "restored.db"],
    );
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    // The drill restores it too, and the report names it.
    let r = ws.run_at("2026-11-28T10:07:00Z", &["run", "rehearsal"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let r = ws.run_at("2026-11-28T10:08:00Z", &["run", "weekly"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let report =
        std::fs::read_to_string(ws.path("backups/reports/backup-report-20261128.md")).unwrap();
    assert!(report.contains("full-20261128-1000.sql.zst"), "{report}");

    // One flipped byte: verify refuses it on the checksum, before any import.
    let path = dir.join("full-20261128-1000.sql.zst");
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let r = ws.run_at("2026-11-28T10:10:00Z", &["run", "restore"]);
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    assert!(r.stdout().contains("checksum mismatch"), "{}", r.stdout());
}

#[test]
fn a_plan_that_switches_compression_keeps_retention_and_health() {
    let ws = workspace();
    ws.write("plans/main.kdl", &plan(""));
    assert_eq!(ws.run_at("2026-11-28T09:00:00Z", &["run", "db"]).code(), 0);
    assert_eq!(ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]).code(), 0);
    // The same minute under the other compression never shares a name's time and counter.
    ws.write("plans/main.kdl", &plan(r#"compression "zstd""#));
    let r = ws.run_at("2026-11-28T10:00:30Z", &["run", "db"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    // keep last=2 counts both kinds: the 09:00 gzip dump went.
    assert_eq!(
        dumps(&ws),
        ["full-20261128-1000-2.sql.zst", "full-20261128-1000.sql.gz"]
    );
    let r = ws.run_at("2026-11-28T10:01:00Z", &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout()).unwrap();
    let db = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "app/db")
        .unwrap()
        .clone();
    assert_eq!(db["state"], "ok", "{db}");
    assert!(
        db["artifact"]
            .as_str()
            .unwrap()
            .ends_with("full-20261128-1000-2.sql.zst"),
        "{db}"
    );
    // The verify takes the newest, whatever its compression.
    let r = ws.run_at("2026-11-28T10:02:00Z", &["run", "restore"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
}
