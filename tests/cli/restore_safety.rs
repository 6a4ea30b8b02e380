//! The restore path on the worst day: killed at any moment, it loses none of the target's data
//! and leaves nothing behind that the next run does not remove; `--replace` swaps all or
//! nothing, keeps what SQLite still held in its WAL, and keeps the file's owner and mode.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Stdio;

use rustix::process::Signal;

use crate::engines::{fixture_copy, pg_counts, psql, run_ok, server_plan, unique, var};
use crate::harness::{Workspace, processes_with, signal, wait_for};
use crate::ownership::Cleanup;

fn sqlite_plan() -> Workspace {
    Workspace::with_plan(
        r#"plan app {
            base "backups"
            database main {
                engine sqlite
                path "app.db"
            }
            dump db {
                database main
            }
        }"#,
    )
}

fn count(path: &std::path::Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn sqlite_replace_keeps_what_the_wal_held_and_the_file_owner_and_mode() {
    let ws = sqlite_plan();
    let app = ws.path("app.db");
    let db = rusqlite::Connection::open(&app).unwrap();
    db.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT);
         INSERT INTO users (email) VALUES ('a@example.com'), ('b@example.com');",
    )
    .unwrap();
    drop(db);
    assert_eq!(ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]).code(), 0);

    // The application goes on: five committed rows that are still only in app.db-wal (it
    // never checkpoints and stays connected).
    let live = rusqlite::Connection::open(&app).unwrap();
    live.execute_batch("PRAGMA wal_autocheckpoint=0").unwrap();
    for i in 0..5 {
        live.execute(
            "INSERT INTO users (email) VALUES (?1)",
            [format!("live{i}@x")],
        )
        .unwrap();
    }
    assert!(std::fs::metadata(ws.path("app.db-wal")).unwrap().len() > 0);
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o664)).unwrap();
    let root = rustix::process::geteuid().is_root();
    if root {
        std::os::unix::fs::chown(&app, Some(65534), Some(65534)).unwrap();
    }

    let r = ws.run_at(
        "2026-11-28T13:00:00Z",
        &["restore", "db", "db", "--to", "app.db", "--replace"],
    );
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    // A reader of the application's path sees the dump's rows, not the live ones.
    assert_eq!(count(&app), 2);
    // The kept file holds every committed row on its own, without any WAL beside it.
    let kept = ws.path("app.db.before-20261128-1300");
    let alone = ws.path("alone.db");
    std::fs::copy(&kept, &alone).unwrap();
    assert!(!ws.path("alone.db-wal").exists());
    assert_eq!(count(&alone), 7);
    // The restored file is the application's still: owner, group, mode; and in WAL mode.
    let meta = std::fs::metadata(&app).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o664);
    if root {
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    }
    let mode: String = rusqlite::Connection::open(&app)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    drop(live);
    // The application's old connection closing does not touch the restored database.
    assert_eq!(count(&app), 2);

    // A second --replace in the same minute keeps the first one's file and takes a new name.
    let r = ws.run_at(
        "2026-11-28T13:00:30Z",
        &["restore", "db", "db", "--to", "app.db", "--replace"],
    );
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(
        r.stdout().contains("app.db.before-20261128-1300-2"),
        "{}",
        r.stdout()
    );
    assert_eq!(count(&kept), 7);
}

#[test]
fn a_killed_sqlite_restore_leaves_no_temporary_file_after_the_next_run() {
    let ws = sqlite_plan();
    let db = rusqlite::Connection::open(ws.path("app.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400000)
         INSERT INTO users (email) SELECT 'user' || i || '@example.com' FROM n;",
    )
    .unwrap();
    drop(db);
    assert_eq!(ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]).code(), 0);
    let temps = || -> Vec<String> {
        std::fs::read_dir(ws.path(""))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".new.db.restore."))
            .collect()
    };
    let mut child = ws
        .command(&["restore", "db", "db", "--to", "new.db"])
        .env("OPS_NOW", "2026-11-28T11:00:00Z")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for(30, || !temps().is_empty()), "the load never began");
    signal(child.id(), Signal::KILL);
    child.wait().unwrap();
    assert!(
        !ws.path("new.db").exists(),
        "a half-loaded file took the name"
    );
    assert!(!temps().is_empty(), "kill -9 leaves the temporary file");

    // The next restore (or apply) removes it and its journals, says so, and loads in full.
    let r = ws.run_at(
        "2026-11-28T11:00:00Z",
        &["restore", "db", "db", "--to", "new.db"],
    );
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(
        r.stderr().contains("removed the scratch file") && r.stderr().contains(".new.db.restore."),
        "{}",
        r.stderr()
    );
    assert!(temps().is_empty(), "{:?}", temps());
    assert_eq!(count(&ws.path("new.db")), 400000);
    // The killed restore's row is abandoned, not running forever.
    let restores: Vec<_> = ws
        .activities()
        .into_iter()
        .filter(|a| a["type"] == "restore")
        .collect();
    assert_eq!(restores.len(), 2, "{restores:?}");
    assert_eq!(restores[0]["status"], "abandoned");
    assert_eq!(restores[1]["status"], "success");
}

fn drop_pg(names: Vec<String>) -> Cleanup {
    Cleanup(
        names
            .iter()
            .map(|n| {
                let mut c = psql("postgres");
                c.args(["-c", &format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)")]);
                c
            })
            .collect(),
    )
}

/// Drops every database whose name starts with its prefix, when dropped.
struct DropLike(String);

impl Drop for DropLike {
    fn drop(&mut self) {
        drop(drop_pg(databases_like(&self.0)));
    }
}

/// Every database whose name starts with `prefix`.
fn databases_like(prefix: &str) -> Vec<String> {
    run_ok(psql("postgres").args([
        "-c",
        &format!("SELECT datname FROM pg_database WHERE datname LIKE '{prefix}%' ORDER BY 1"),
    ]))
    .lines()
    .map(str::to_string)
    .collect()
}

fn sessions_on(prefix: &str) -> i64 {
    run_ok(psql("postgres").args([
        "-c",
        &format!("SELECT count(*) FROM pg_stat_activity WHERE datname LIKE '{prefix}%'"),
    ]))
    .trim()
    .parse()
    .unwrap()
}

/// A PostgreSQL source with one good dump, in a workspace whose `psql` imports stall after
/// the first 400 kB (statements run at once): a restore can be stopped half-way.
fn stalled_import() -> (Workspace, String, Cleanup) {
    let src = unique("ops_ksrc");
    let cleanup = drop_pg(vec![src.clone()]);
    fixture_copy(&src);
    let plan = server_plan("postgres", "PG", &src, "").replace(
        "base \"backups\"",
        "base \"backups\"\n            tools {\n                psql \"./slow-psql\"\n            }",
    );
    let ws = Workspace::with_plan(&plan).env("APP_DB_PASSWORD", &var("OPS_TEST_PG_PASSWORD"));
    ws.write("slow-psql", "#!/bin/bash\nexec psql \"$@\"\n");
    std::fs::set_permissions(ws.path("slow-psql"), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]).code(), 0);
    ws.write(
        "slow-psql",
        "#!/bin/bash\nfor a in \"$@\"; do [ \"$a\" = -c ] && exec psql \"$@\"; done\nexec psql \"$@\" < <(head -c 400000; exec sleep 30)\n",
    );
    (ws, src, cleanup)
}

fn stop_restore_half_way(sig: Signal) {
    let (ws, src, _source) = stalled_import();
    let dst = unique("ops_kdst");
    let _cleanup = DropLike(dst.clone());
    let restore = ["restore", "db", "db", "--to", &dst, "--sessions", "1"];
    let child = ws
        .command(&restore)
        .env("OPS_NOW", "2026-11-28T11:00:00Z")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Loading: part of the rows are in, under a temporary name only.
    assert!(
        wait_for(30, || sessions_on(&dst) > 0),
        "the load never began"
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(databases_like(&format!("{dst}_restore_")).len(), 1);
    assert!(
        !databases_like(&dst).contains(&dst),
        "the target exists during the load"
    );
    signal(child.id(), sig);
    let out = child.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        !databases_like(&dst).contains(&dst),
        "a half-loaded database took the name"
    );
    // No client and no server session of the killed restore stays.
    assert!(
        wait_for(10, || processes_with(&format!("--dbname={dst}_restore_"))
            .is_empty()),
        "psql outlived ops-run"
    );
    assert!(
        wait_for(10, || sessions_on(&dst) == 0),
        "server sessions outlived ops-run"
    );
    if sig == Signal::TERM {
        // Stopped, it cleans up itself and records why.
        assert!(
            databases_like(&dst).is_empty(),
            "{:?}",
            databases_like(&dst)
        );
        let last = ws.activities().pop().unwrap();
        assert_eq!(last["type"], "restore");
        assert_eq!(last["status"], "failed");
        assert!(
            last["log_excerpt"]
                .as_str()
                .unwrap()
                .contains("interrupted"),
            "{last}"
        );
    }
    // The next restore removes what is left and loads the whole dump under the name.
    ws.write("slow-psql", "#!/bin/bash\nexec psql \"$@\"\n");
    let r = ws.run_at("2026-11-28T11:00:00Z", &restore);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    if sig == Signal::KILL {
        assert!(
            r.stderr()
                .contains(&format!("dropped the scratch database {dst}_restore_")),
            "{}",
            r.stderr()
        );
    }
    assert_eq!(databases_like(&dst), std::slice::from_ref(&dst));
    assert_eq!(pg_counts(&dst), pg_counts(&src));
}

#[test]
#[ignore = "needs PostgreSQL; run scripts/test"]
fn a_restore_killed_half_way_leaves_no_half_loaded_target_and_nothing_behind() {
    stop_restore_half_way(Signal::KILL);
}

#[test]
#[ignore = "needs PostgreSQL; run scripts/test"]
fn a_restore_stopped_half_way_cleans_up_and_records_the_interruption() {
    stop_restore_half_way(Signal::TERM);
}

#[test]
#[ignore = "needs PostgreSQL; run scripts/test"]
fn postgres_replace_never_leaves_the_target_missing_and_works_twice_a_minute() {
    let src = unique("ops_xsrc");
    // 50 characters: the derived names must be cut to PostgreSQL's 63 bytes.
    let mut dst = unique("ops_xdst");
    while dst.len() < 50 {
        dst.push('x');
    }
    let prefix: String = dst.chars().take(20).collect();
    let _cleanup = (drop_pg(vec![src.clone()]), DropLike(prefix.clone()));
    fixture_copy(&src);
    let ws = Workspace::with_plan(&server_plan("postgres", "PG", &src, ""))
        .env("APP_DB_PASSWORD", &var("OPS_TEST_PG_PASSWORD"));
    assert_eq!(ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]).code(), 0);
    let r = ws.run_at(
        "2026-11-28T12:00:00Z",
        &["restore", "db", "db", "--to", &dst],
    );
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    // Two replacements in the same minute; a watcher looks for the target all along.
    let missing = std::sync::atomic::AtomicBool::new(false);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                if !databases_like(&dst).contains(&dst) {
                    missing.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
        });
        for _ in 0..2 {
            let r = ws.run_at(
                "2026-11-28T13:00:00Z",
                &["restore", "db", "db", "--to", &dst, "--replace"],
            );
            assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let all = databases_like(&prefix);
    assert!(
        !missing.load(std::sync::atomic::Ordering::SeqCst),
        "the target was missing during a swap"
    );
    // The target and two kept ones, each within 63 bytes, nothing else.
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(all.iter().all(|n| n.len() <= 63), "{all:?}");
    assert_eq!(
        all.iter()
            .filter(|n| n.contains("_before_202611281300"))
            .count(),
        2,
        "{all:?}"
    );
    assert_eq!(pg_counts(&dst), pg_counts(&src));
}

fn many_files(ws: &Workspace, n: usize) {
    std::fs::create_dir_all(ws.path("data")).unwrap();
    for i in 0..n {
        let bytes: Vec<u8> = (0..16_384u32)
            .map(|j| ((j as usize * 7919 + i * 31) % 251) as u8)
            .collect();
        std::fs::write(ws.path(&format!("data/f{i:05}.bin")), bytes).unwrap();
    }
}

fn files_under(dir: &std::path::Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(_) => n += 1,
                Err(_) => {}
            }
        }
    }
    n
}

fn restic_workspace() -> Workspace {
    let ws = Workspace::with_plan(
        r#"plan files {
            base "backups"
            snapshot uploads {
                paths "data"
                repository "repo"
                password env=UPLOADS_PW
                init #true
            }
        }"#,
    )
    .env("UPLOADS_PW", "restic-Kill-51");
    let cache = ws.path("cache").to_str().unwrap().to_string();
    ws.env("RESTIC_CACHE_DIR", &cache)
}

#[test]
#[ignore = "needs restic; run scripts/test"]
fn restore_files_stopped_or_killed_leaves_no_restic_running_and_is_recorded() {
    let ws = restic_workspace();
    many_files(&ws, 6000);
    assert_eq!(
        ws.run_at("2026-11-28T10:00:00Z", &["run", "uploads"])
            .code(),
        0
    );
    for (sig, out) in [(Signal::TERM, "out-term"), (Signal::KILL, "out-kill")] {
        let target = ws.path(out);
        let child = ws
            .command(&["restore", "files", "uploads", "--to", out])
            .env("OPS_NOW", "2026-11-28T11:00:00Z")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert!(
            wait_for(60, || files_under(&target) > 0),
            "the restore never began"
        );
        signal(child.id(), sig);
        let status = child.wait_with_output().unwrap().status;
        assert_ne!(status.code(), Some(0));
        let needle = format!("--target {}", target.display());
        assert!(
            wait_for(5, || processes_with(&needle).is_empty()),
            "restic outlived ops-run ({sig:?})"
        );
        let after = files_under(&target);
        std::thread::sleep(std::time::Duration::from_secs(1));
        assert_eq!(files_under(&target), after, "files still arrive ({sig:?})");
    }
    let restores: Vec<_> = ws
        .activities()
        .into_iter()
        .filter(|a| a["type"] == "restore")
        .collect();
    assert_eq!(restores.len(), 2, "{restores:?}");
    assert_eq!(restores[0]["status"], "failed");
    assert!(
        restores[0]["log_excerpt"]
            .as_str()
            .unwrap()
            .contains("interrupted"),
        "{:?}",
        restores[0]
    );
    assert_eq!(restores[1]["status"], "abandoned");
}

#[test]
#[ignore = "needs restic; run scripts/test"]
fn restore_files_into_a_symbolic_link_says_where_the_files_went() {
    let ws = restic_workspace();
    many_files(&ws, 3);
    assert_eq!(
        ws.run_at("2026-11-28T10:00:00Z", &["run", "uploads"])
            .code(),
        0
    );
    std::fs::create_dir_all(ws.path("real")).unwrap();
    std::os::unix::fs::symlink(ws.path("real"), ws.path("link")).unwrap();
    let r = ws.run_at(
        "2026-11-28T11:00:00Z",
        &["restore", "files", "uploads", "--to", "link"],
    );
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let real = std::fs::canonicalize(ws.path("real")).unwrap();
    assert!(
        r.stdout().contains(&format!(
            "link is a symbolic link: the files are under {}",
            real.display()
        )),
        "{}",
        r.stdout()
    );
    assert_eq!(files_under(&real), 3);
    let last = ws.activities().pop().unwrap();
    assert_eq!(last["meta"]["target_real"], real.display().to_string());
}
