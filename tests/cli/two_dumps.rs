//! A plan with two dumps (and two verifies) of two different databases: each step keeps its
//! files in its own folder, run in parallel without clashing, verifies its own database, is
//! checked on its own artifact, and its retention never touches the other's files. A plan that
//! gains a second dump moves the old files with `backups migrate`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::Workspace;

const PLAN: &str = r#"plan app {
    base "backups"
    database a {
        engine sqlite
        path "a.sqlite"
    }
    database b {
        engine sqlite
        path "b.sqlite"
    }
    dump da {
        database a
        keep last=1
    }
    dump db2 {
        database b
        keep last=1
    }
    verify va {
        dump da
    }
    verify vb {
        dump db2
    }
}
"#;

fn databases(ws: &Workspace) {
    rusqlite::Connection::open(ws.path("a.sqlite"))
        .unwrap()
        .execute_batch("CREATE TABLE one (x); INSERT INTO one VALUES (1);")
        .unwrap();
    rusqlite::Connection::open(ws.path("b.sqlite"))
        .unwrap()
        .execute_batch("CREATE TABLE one (x); CREATE TABLE two (y); INSERT INTO two VALUES (2);")
        .unwrap();
}

/// The visible files of a folder, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn newest(ws: &Workspace, step: &str, kind: &str) -> Value {
    ws.activities()
        .into_iter()
        .rev()
        .find(|a| a["step"] == step && a["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} activity of {step}"))
}

#[test]
fn two_dumps_in_parallel_each_keep_verify_and_prune_their_own_files() {
    let ws = Workspace::with_plan(PLAN);
    databases(&ws);
    let r = ws.run_at(
        "2026-11-28T01:00:00Z",
        &["plan", "apply", "--force", "--jobs", "2"],
    );
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    for step in ["da", "db2", "va", "vb"] {
        let kind = if step.starts_with('v') {
            "verify_restore"
        } else {
            "db_backup"
        };
        assert_eq!(newest(&ws, step, kind)["status"], "success", "{step}");
    }
    let a = PathBuf::from(
        newest(&ws, "da", "db_backup")["meta"]["artifact"]
            .as_str()
            .unwrap(),
    );
    let b = PathBuf::from(
        newest(&ws, "db2", "db_backup")["meta"]["artifact"]
            .as_str()
            .unwrap(),
    );
    assert!(
        a.ends_with("backups/db/da/full-20261128-0100.sql.gz"),
        "{a:?}"
    );
    assert!(
        b.ends_with("backups/db/db2/full-20261128-0100.sql.gz"),
        "{b:?}"
    );
    // Each verify restored its own database: 1 table and 2 tables.
    let va = newest(&ws, "va", "verify_restore");
    let vb = newest(&ws, "vb", "verify_restore");
    assert_eq!(va["meta"]["verify_table_count"], 1, "{va}");
    assert_eq!(vb["meta"]["verify_table_count"], 2, "{vb}");
    assert!(
        va["meta"]["verify_dump"]
            .as_str()
            .unwrap()
            .ends_with("db/da/full-20261128-0100.sql.gz")
    );
    assert!(
        vb["meta"]["verify_dump"]
            .as_str()
            .unwrap()
            .ends_with("db/db2/full-20261128-0100.sql.gz")
    );
    assert!(
        va["meta"]["verify_log"]
            .as_str()
            .unwrap()
            .contains("verify/va/")
    );

    // `status` names two different artifacts.
    let r = ws.run_at("2026-11-28T02:00:00Z", &["status", "--json"]);
    let v: Value = serde_json::from_str(&r.stdout()).unwrap();
    let artifact = |id: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap()["artifact"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_ne!(artifact("app/da"), artifact("app/db2"));
    assert!(artifact("app/da").ends_with("db/da/full-20261128-0100.sql.gz"));

    // Only `da` dumps again: its `keep last=1` deletes its own older dump (once the new one is
    // verified… here the verified one is protected, so run `va` in between), never `db2`'s.
    let r = ws.run_at("2026-11-28T03:00:00Z", &["run", "da"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let r = ws.run_at("2026-11-28T03:10:00Z", &["run", "va"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let r = ws.run_at("2026-11-28T04:00:00Z", &["run", "da"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let prune = newest(&ws, "da", "prune");
    assert_eq!(prune["status"], "success", "{prune}");
    let deleted: Vec<&str> = prune["meta"]["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        deleted.iter().all(|d| d.contains("/db/da/")) && !deleted.is_empty(),
        "{deleted:?}"
    );
    assert_eq!(
        files(&ws.path("backups/db/db2")),
        [
            "full-20261128-0100.sql.gz",
            "full-20261128-0100.sql.gz.manifest.json",
            "full-20261128-0100.sql.gz.sha256"
        ]
    );
    assert_eq!(
        files(&ws.path("backups/db/da")),
        [
            "full-20261128-0300.sql.gz",
            "full-20261128-0300.sql.gz.manifest.json",
            "full-20261128-0300.sql.gz.sha256",
            "full-20261128-0400.sql.gz",
            "full-20261128-0400.sql.gz.manifest.json",
            "full-20261128-0400.sql.gz.sha256"
        ],
        "the verified dump (0300) is protected, the newest (0400) kept"
    );
    // Nothing was ever written to the shared folder itself.
    assert!(files(&ws.path("backups/db")).is_empty());
}

#[test]
fn a_plan_that_gains_a_second_dump_moves_the_old_files_with_migrate() {
    let ws = Workspace::with_plan(&one_dump_plan());
    databases(&ws);
    let r = ws.run_at("2026-11-28T01:00:00Z", &["plan", "apply", "--force"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert_eq!(
        files(&ws.path("backups/db")),
        [
            "full-20261128-0100.sql.gz",
            "full-20261128-0100.sql.gz.manifest.json",
            "full-20261128-0100.sql.gz.sha256"
        ]
    );
    // An unrecorded file in the shared folder: nobody can tell whose it is.
    ws.write("backups/db/full-20200101-0000.sql.gz", "who made me?");

    ws.write("plans/main.kdl", PLAN);
    let r = ws.run(&["plan", "validate"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(
        r.stderr().contains("backups migrate") && r.stderr().contains("db/<step>/"),
        "validate says what will move: {}",
        r.stderr()
    );
    let r = ws.run(&["backups", "migrate", "--dry-run"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(
        r.stdout().contains("db/da/full-20261128-0100.sql.gz"),
        "{}",
        r.stdout()
    );
    assert!(
        r.stdout().contains("no activity says which"),
        "{}",
        r.stdout()
    );
    assert!(
        ws.path("backups/db/full-20261128-0100.sql.gz").exists(),
        "dry run moved"
    );

    let r = ws.run(&["backups", "migrate"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert_eq!(
        files(&ws.path("backups/db/da")),
        [
            "full-20261128-0100.sql.gz",
            "full-20261128-0100.sql.gz.manifest.json",
            "full-20261128-0100.sql.gz.sha256"
        ]
    );
    assert_eq!(files(&ws.path("backups/db")), ["full-20200101-0000.sql.gz"]);
    // The moved dump is still the good, verifiable dump of `da`; its sidecar moved unchanged.
    let r = ws.run_at("2026-11-28T02:00:00Z", &["run", "va"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert_eq!(
        newest(&ws, "va", "verify_restore")["meta"]["verify_table_count"],
        1
    );
    // A second run finds nothing to do.
    let r = ws.run(&["backups", "migrate"]);
    assert!(r.stdout().contains("nothing to migrate"), "{}", r.stdout());
}

/// The plan of the first test with one dump and one verify of database `a`.
fn one_dump_plan() -> String {
    PLAN.replace(
        "    dump db2 {\n        database b\n        keep last=1\n    }\n",
        "",
    )
    .replace("    verify vb {\n        dump db2\n    }\n", "")
}

#[test]
fn a_dump_dated_in_the_future_is_no_evidence() {
    let ws = Workspace::with_plan(&one_dump_plan());
    databases(&ws);
    let r = ws.run_at("2026-11-28T01:00:00Z", &["run", "da"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    // A copy named for 2099, with a matching sidecar.
    let dir = ws.path("backups/db");
    std::fs::copy(
        dir.join("full-20261128-0100.sql.gz"),
        dir.join("full-20991231-2359.sql.gz"),
    )
    .unwrap();
    let side = std::fs::read_to_string(dir.join("full-20261128-0100.sql.gz.sha256")).unwrap();
    std::fs::write(
        dir.join("full-20991231-2359.sql.gz.sha256"),
        side.replace("full-20261128-0100", "full-20991231-2359"),
    )
    .unwrap();
    // 100 days later: the real dump is stale and failed; the 2099 file does not hide it.
    let r = ws.run_at("2027-03-08T01:00:00Z", &["status", "--json"]);
    let v: Value = serde_json::from_str(&r.stdout()).unwrap();
    let c = &v["checks"][0];
    assert_eq!(c["id"], "app/da");
    assert_eq!(c["severity"], "crit", "{c}");
    assert!(
        c["artifact"]
            .as_str()
            .unwrap()
            .ends_with("full-20261128-0100.sql.gz")
    );
    assert!(
        c["detail"].as_str().unwrap().contains("full-20991231-2359"),
        "{c}"
    );
    // A fresh status right after the dump: the future file still makes it a warning.
    let r = ws.run_at("2026-11-28T02:00:00Z", &["status", "--json"]);
    let v: Value = serde_json::from_str(&r.stdout()).unwrap();
    assert_eq!(v["checks"][0]["severity"], "warn", "{}", r.stdout());
    // Verify restores the real dump, never the 2099 one.
    let r = ws.run_at("2026-11-28T02:00:00Z", &["run", "va"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let va = newest(&ws, "va", "verify_restore");
    assert!(
        va["meta"]["verify_dump"]
            .as_str()
            .unwrap()
            .ends_with("full-20261128-0100.sql.gz"),
        "{va}"
    );
    // migrate refuses to give an old file a future layout name.
    ws.write("backups/crm-2099-01-01.sql.gz", "old");
    let r = ws.run_at("2026-11-28T02:00:00Z", &["backups", "migrate", "--dry-run"]);
    assert!(r.stdout().contains("dated in the future"), "{}", r.stdout());
}

#[test]
fn three_dumps_in_one_minute_under_keep_last_1_keep_the_newest() {
    // No verify: nothing is protected, `keep last=1` alone decides.
    let plan = one_dump_plan().replace("    verify va {\n        dump da\n    }\n", "");
    let ws = Workspace::with_plan(&plan);
    databases(&ws);
    for _ in 0..3 {
        let r = ws.run_at("2026-11-28T02:00:00Z", &["run", "da"]);
        assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    }
    let newest = newest(&ws, "da", "db_backup")["meta"]["artifact"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(newest.ends_with("full-20261128-0200-3.sql.gz"), "{newest}");
    // The newest dump survived its own prune; the freed plain name was not reused.
    assert_eq!(
        files(&ws.path("backups/db")),
        [
            "full-20261128-0200-3.sql.gz",
            "full-20261128-0200-3.sql.gz.manifest.json",
            "full-20261128-0200-3.sql.gz.sha256"
        ]
    );
}
