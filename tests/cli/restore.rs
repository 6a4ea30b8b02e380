//! `ops-run restore db`: a dump loads into a new database with the source's tables and rows;
//! a target with tables is refused, and `--replace` keeps it under its `_before_` name; a
//! damaged dump is refused before anything is created; `--at` picks the right dump. Real
//! PostgreSQL and MariaDB from scripts/test; SQLite in-process.

use crate::engines::{
    fixture_copy, mariadb, my_counts, pg_counts, psql, run_ok, server_plan, unique, var,
};
use crate::harness::Workspace;
use crate::ownership::Cleanup;

fn pg_plan(src: &str) -> String {
    server_plan("postgres", "PG", src, "")
}

/// Drops the PostgreSQL databases when dropped, also when a test fails.
pub fn drop_pg(names: &[&str]) -> Cleanup {
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

pub fn drop_my(names: &[&str]) -> Cleanup {
    Cleanup(
        names
            .iter()
            .map(|n| {
                let mut c = mariadb(None);
                c.args(["-e", &format!("DROP DATABASE IF EXISTS {n}")]);
                c
            })
            .collect(),
    )
}

fn databases_like(prefix: &str) -> Vec<String> {
    let out = run_ok(psql("postgres").args([
        "-c",
        &format!("SELECT datname FROM pg_database WHERE datname LIKE '{prefix}%' ORDER BY 1"),
    ]));
    out.lines().map(str::to_string).collect()
}

#[test]
#[ignore = "needs PostgreSQL; run scripts/test"]
fn postgres_restore_loads_refuses_and_replaces_keeping_the_old_one() {
    let src = unique("ops_rsrc");
    let dst = unique("ops_rdst");
    let _cleanup = drop_pg(&[
        &src,
        &dst,
        &format!("{dst}_before_202611281300"),
        &format!("{dst}_restore_202611281300"),
    ]);
    fixture_copy(&src);
    let password = var("OPS_TEST_PG_PASSWORD");
    let ws = Workspace::with_plan(&pg_plan(&src)).env("APP_DB_PASSWORD", &password);
    // Two dumps: the second after a table was added, so --at can tell them apart.
    assert_eq!(ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]).code(), 0);
    run_ok(psql(&src).args([
        "-c",
        "CREATE TABLE added_later (id int); INSERT INTO added_later VALUES (1)",
    ]));
    assert_eq!(ws.run_at("2026-11-28T11:00:00Z", &["run", "db"]).code(), 0);

    // A dry run checks the dump, prints what would run (no password), and creates nothing.
    let r = ws.run_at(
        "2026-11-28T12:00:00Z",
        &["restore", "db", "db", "--to", &dst, "--dry-run"],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(r.stdout().contains("CREATE DATABASE"), "{}", r.stdout());
    assert!(!r.stdout().contains(&password) && !r.stderr().contains(&password));
    assert!(
        databases_like(&dst).is_empty(),
        "a dry run created a database"
    );

    // --at: the dump of 10:00, without the later table.
    let r = ws.run_at(
        "2026-11-28T12:00:00Z",
        &[
            "restore",
            "db",
            "db",
            "--to",
            &dst,
            "--at",
            "2026-11-28T10:30:00Z",
        ],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(
        r.stdout().contains("full-20261128-1000.sql.gz"),
        "{}",
        r.stdout()
    );
    let mut older = pg_counts(&src);
    older.retain(|t| !t.starts_with("added_later"));
    assert_eq!(pg_counts(&dst), older);

    // The target now holds tables: refused, nothing changed.
    let r = ws.run_at(
        "2026-11-28T13:00:00Z",
        &["restore", "db", "db", "--to", &dst],
    );
    assert_eq!(r.code(), 2, "{}", r.stdout());
    assert!(r.stderr().contains("--replace"), "{}", r.stderr());
    assert_eq!(pg_counts(&dst), older);

    // --replace: the newest dump takes its place, the old one is kept.
    let r = ws.run_at(
        "2026-11-28T13:00:00Z",
        &[
            "restore",
            "db",
            "db",
            "--to",
            &dst,
            "--replace",
            "--sessions",
            "1",
        ],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(pg_counts(&dst), pg_counts(&src));
    assert_eq!(pg_counts(&format!("{dst}_before_202611281300")), older);
    assert!(
        r.stdout()
            .contains(&format!("kept as {dst}_before_202611281300")),
        "{}",
        r.stdout()
    );

    // Every restore is an activity naming its dump and sha256; the refused one is not.
    let restores: Vec<_> = ws
        .activities()
        .into_iter()
        .filter(|a| a["type"] == "restore")
        .collect();
    assert_eq!(restores.len(), 2, "{restores:?}");
    // The first loaded on two sessions, the replacement (`--sessions 1`) on one.
    let log = |i: usize| restores[i]["log_excerpt"].as_str().unwrap().to_string();
    assert!(log(0).contains("sessions: 2 ("), "{}", log(0));
    assert!(
        !log(1).contains("sessions:") && log(1).contains("ownership:"),
        "{}",
        log(1)
    );
    assert!(restores.iter().all(|a| a["status"] == "success"));
    assert!(
        restores
            .iter()
            .any(|a| a["meta"]["replaced"] == format!("{dst}_before_202611281300")),
        "{restores:?}"
    );
    assert!(
        restores
            .iter()
            .all(|a| a["meta"]["sha256"].as_str().unwrap().len() == 64)
    );
    let all = serde_json::to_string(&restores).unwrap();
    assert!(!all.contains(&password));
}

#[test]
#[ignore = "needs PostgreSQL; run scripts/test"]
fn a_damaged_dump_is_refused_before_anything_is_created() {
    let src = unique("ops_rsrc");
    let dst = unique("ops_rdst");
    let _cleanup = drop_pg(&[&src, &dst]);
    fixture_copy(&src);
    let ws =
        Workspace::with_plan(&pg_plan(&src)).env("APP_DB_PASSWORD", &var("OPS_TEST_PG_PASSWORD"));
    assert_eq!(ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]).code(), 0);
    let dump = ws.path("backups/db/full-20261128-1000.sql.gz");
    let mut bytes = std::fs::read(&dump).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&dump, bytes).unwrap();
    let r = ws.run_at(
        "2026-11-28T12:00:00Z",
        &["restore", "db", "db", "--to", &dst],
    );
    assert_eq!(r.code(), 1, "{}", r.stdout());
    assert!(r.stderr().contains("checksum mismatch"), "{}", r.stderr());
    assert!(
        databases_like(&dst).is_empty(),
        "a database was created for a damaged dump"
    );
}

#[test]
#[ignore = "needs MariaDB; run scripts/test"]
fn mariadb_restore_loads_a_new_database_and_refuses_to_replace() {
    let src = unique("ops_rsrc");
    let dst = unique("ops_rdst");
    let _cleanup = drop_my(&[&src, &dst]);
    run_ok(mariadb(None).args([
        "-e",
        &format!(
            "CREATE DATABASE {src}; USE {src};
         CREATE TABLE users (id INT PRIMARY KEY, email VARCHAR(200));
         INSERT INTO users SELECT seq, CONCAT('u', seq, '@example.com') FROM seq_1_to_300;
         CREATE TABLE notes (id INT, body TEXT);
         INSERT INTO notes VALUES (1, 'O''Reilly');"
        ),
    ]));
    let ws = Workspace::with_plan(&server_plan("mariadb", "MY", &src, ""))
        .env("APP_DB_PASSWORD", &var("OPS_TEST_MY_PASSWORD"));
    assert_eq!(ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]).code(), 0);
    let r = ws.run_at(
        "2026-11-28T12:00:00Z",
        &["restore", "db", "db", "--to", &dst],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(my_counts(&dst), my_counts(&src));
    assert_eq!(my_counts(&dst), ["notes|1", "users|300"]);
    // MariaDB cannot rename a database: --replace of one with tables is refused, clearly.
    let r = ws.run_at(
        "2026-11-28T13:00:00Z",
        &["restore", "db", "db", "--to", &dst, "--replace"],
    );
    assert_eq!(r.code(), 2, "{}", r.stdout());
    assert!(
        r.stderr().contains("cannot rename a database"),
        "{}",
        r.stderr()
    );
    assert_eq!(my_counts(&dst), ["notes|1", "users|300"]);
}

#[test]
fn sqlite_restore_writes_a_new_file_and_replaces_keeping_the_old_one() {
    let ws = Workspace::with_plan(
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
    );
    let db = rusqlite::Connection::open(ws.path("app.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT);
         INSERT INTO users (email) VALUES ('a@example.com'), ('b''c@example.com');
         CREATE TABLE notes (body TEXT);",
    )
    .unwrap();
    drop(db);
    assert_eq!(ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]).code(), 0);
    let users = |path: &str| -> i64 {
        rusqlite::Connection::open(ws.path(path))
            .unwrap()
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
            .unwrap()
    };
    let r = ws.run_at(
        "2026-11-28T12:00:00Z",
        &["restore", "db", "db", "--to", "restored.db"],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(users("restored.db"), 2);
    // Refused over a file with tables; --replace keeps the old file beside it.
    let live = rusqlite::Connection::open(ws.path("restored.db")).unwrap();
    live.execute("INSERT INTO users (email) VALUES ('new@example.com')", [])
        .unwrap();
    drop(live);
    let r = ws.run_at(
        "2026-11-28T13:00:00Z",
        &["restore", "db", "db", "--to", "restored.db"],
    );
    assert_eq!(r.code(), 2, "{}", r.stdout());
    assert_eq!(users("restored.db"), 3);
    let r = ws.run_at(
        "2026-11-28T13:00:00Z",
        &["restore", "db", "db", "--to", "restored.db", "--replace"],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(users("restored.db"), 2);
    assert_eq!(users("restored.db.before-20261128-1300"), 3);
    // No temporary file is left beside it.
    let left: Vec<String> = std::fs::read_dir(ws.path(""))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".restore."))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // A file name that is not a good dump of the step is refused.
    let r = ws.run_at(
        "2026-11-28T13:00:00Z",
        &[
            "restore",
            "db",
            "db",
            "--to",
            "x.db",
            "--dump",
            "full-20200101-0000.sql.gz",
        ],
    );
    assert_eq!(r.code(), 2);
    assert!(!ws.path("x.db").exists());
}

#[test]
#[ignore = "needs restic; run scripts/test"]
fn restore_files_brings_a_snapshot_back_byte_for_byte() {
    let password = "restic-Rs-7f2a";
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
    .env("UPLOADS_PW", password);
    let cache = ws.path("cache").to_str().unwrap().to_string();
    let ws = ws.env("RESTIC_CACHE_DIR", &cache);
    ws.write("data/a.txt", "first\n");
    let binary: Vec<u8> = (0..70_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::create_dir_all(ws.path("data/sub")).unwrap();
    std::fs::write(ws.path("data/sub/b.bin"), &binary).unwrap();
    assert_eq!(
        ws.run_at("2026-11-28T10:00:00Z", &["run", "uploads"])
            .code(),
        0
    );
    ws.write("data/a.txt", "second\n");
    assert_eq!(
        ws.run_at("2026-11-28T11:00:00Z", &["run", "uploads"])
            .code(),
        0
    );
    let data = ws.path("data");
    let under = |out: &str, rel: &str| {
        let mut p = ws.path(out);
        p.push(data.strip_prefix("/").unwrap());
        p.push(rel);
        p
    };

    // The newest snapshot, byte for byte.
    let r = ws.run_at(
        "2026-11-28T12:00:00Z",
        &["restore", "files", "uploads", "--to", "out"],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(
        std::fs::read_to_string(under("out", "a.txt")).unwrap(),
        "second\n"
    );
    assert_eq!(std::fs::read(under("out", "sub/b.bin")).unwrap(), binary);
    // A folder that holds something is refused.
    let r = ws.run_at(
        "2026-11-28T12:00:00Z",
        &["restore", "files", "uploads", "--to", "out"],
    );
    assert_eq!(r.code(), 2, "{}", r.stdout());
    assert!(r.stderr().contains("not empty"), "{}", r.stderr());
    // --at: the snapshot of 10:00; --include: only what is named.
    let r = ws.run_at(
        "2026-11-28T12:00:00Z",
        &[
            "restore",
            "files",
            "uploads",
            "--to",
            "old",
            "--at",
            "2026-11-28T10:30:00Z",
        ],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(
        std::fs::read_to_string(under("old", "a.txt")).unwrap(),
        "first\n"
    );
    let sub = data.join("sub");
    let r = ws.run_at(
        "2026-11-28T12:00:00Z",
        &[
            "restore",
            "files",
            "uploads",
            "--to",
            "part",
            "--include",
            sub.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(under("part", "sub/b.bin").exists());
    assert!(!under("part", "a.txt").exists());
    // Recorded, and the password shows nowhere.
    let restores: Vec<_> = ws
        .activities()
        .into_iter()
        .filter(|a| a["type"] == "restore")
        .collect();
    assert_eq!(restores.len(), 3, "{restores:?}");
    assert!(
        restores
            .iter()
            .all(|a| a["status"] == "success" && a["step"] == "uploads")
    );
    let all = serde_json::to_string(&restores).unwrap() + &r.stdout() + &r.stderr();
    assert!(!all.contains(password));
}

#[test]
#[ignore = "needs PostgreSQL; run scripts/test"]
fn globals_are_dumped_beside_the_dump_and_restore_recreates_a_role() {
    let src = unique("ops_rgsrc");
    let dst = unique("ops_rgdst");
    let role = unique("ops_rgrole");
    let mut cleanup = drop_pg(&[&src, &dst]);
    cleanup.0.push({
        let mut c = psql("postgres");
        c.args(["-c", &format!("DROP ROLE IF EXISTS {role}")]);
        c
    });
    fixture_copy(&src);
    run_ok(psql("postgres").args(["-c", &format!("CREATE ROLE {role} NOLOGIN")]));
    let ws = Workspace::with_plan(&server_plan(
        "postgres",
        "PG",
        &src,
        "globals #true\n keep last=1",
    ))
    .env("APP_DB_PASSWORD", &var("OPS_TEST_PG_PASSWORD"));
    assert_eq!(ws.run_at("2026-11-28T09:00:00Z", &["run", "db"]).code(), 0);
    let r = ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    // Beside its dump, with a sidecar; the older one went with its dump.
    let globals = ws.path("backups/db/globals-20261128-1000.sql.gz");
    assert!(
        globals.exists()
            && ws
                .path("backups/db/globals-20261128-1000.sql.gz.sha256")
                .exists()
    );
    assert!(!ws.path("backups/db/globals-20261128-0900.sql.gz").exists());
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&globals).unwrap()),
        &mut text,
    )
    .unwrap();
    assert!(text.contains(&format!("CREATE ROLE {role}")), "{text}");
    assert!(
        !text.contains("SCRAM-SHA-256$"),
        "a password hash was dumped: {text}"
    );
    // The role is gone; the restore with globals brings it back before the load.
    run_ok(psql("postgres").args(["-c", &format!("DROP ROLE {role}")]));
    let r = ws.run_at(
        "2026-11-28T11:00:00Z",
        &["restore", "db", "db", "--to", &dst, "--with-globals"],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let n = run_ok(psql("postgres").args([
        "-c",
        &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{role}'"),
    ]));
    assert_eq!(n.trim(), "1");
    assert_eq!(pg_counts(&dst), pg_counts(&src));
}

#[test]
#[ignore = "needs MariaDB; run scripts/test"]
fn mariadb_globals_recreate_a_user_without_its_password_hash() {
    let src = unique("ops_rgmsrc");
    let dst = unique("ops_rgmdst");
    let user = unique("ops_rgmuser");
    let mut cleanup = drop_my(&[&src, &dst]);
    cleanup.0.push({
        let mut c = mariadb(None);
        c.args(["-e", &format!("DROP USER IF EXISTS '{user}'@'localhost'")]);
        c
    });
    run_ok(mariadb(None).args([
        "-e",
        &format!(
            "CREATE DATABASE {src}; CREATE TABLE {src}.t (id INT); INSERT INTO {src}.t VALUES (1);
             CREATE USER '{user}'@'localhost' IDENTIFIED BY 'app-Pw-77'; GRANT SELECT ON {src}.* TO '{user}'@'localhost';"
        ),
    ]));
    let ws = Workspace::with_plan(&server_plan("mariadb", "MY", &src, "globals #true"))
        .env("APP_DB_PASSWORD", &var("OPS_TEST_MY_PASSWORD"));
    let r = ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(
            std::fs::File::open(ws.path("backups/db/globals-20261128-1000.sql.gz")).unwrap(),
        ),
        &mut text,
    )
    .unwrap();
    assert!(text.contains(&user), "{text}");
    assert!(
        !text.contains("IDENTIFIED BY PASSWORD '*"),
        "a password hash was kept: {text}"
    );
    run_ok(mariadb(None).args(["-e", &format!("DROP USER '{user}'@'localhost'")]));
    let r = ws.run_at(
        "2026-11-28T11:00:00Z",
        &["restore", "db", "db", "--to", &dst, "--with-globals"],
    );
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let n = run_ok(mariadb(None).args([
        "-e",
        &format!("SELECT count(*) FROM mysql.user WHERE user = '{user}'"),
    ]));
    assert_eq!(n.trim(), "1");
    assert_eq!(my_counts(&dst), ["t|1"]);
}
