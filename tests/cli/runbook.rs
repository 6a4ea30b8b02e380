//! The runbook is executed, not just rendered: its "without ops-run" shell blocks bring back a
//! SQLite database and a restic snapshot after they were deleted, and a real PostgreSQL
//! database after it was dropped — same tables, rows and file contents. No secret appears in
//! it.

use std::process::Command;

use crate::engines::{fixture_copy, pg_counts, psql, run_ok, server_plan, unique, var};
use crate::harness::Workspace;
use crate::ownership::Cleanup;

/// The fenced `sh` blocks of a Markdown text, but the install block (run as root, once).
fn shell_blocks(md: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in md.lines() {
        match (&mut current, line) {
            (None, "```sh") => current = Some(String::new()),
            (Some(b), "```") => {
                if !b.starts_with("# as root, once") {
                    blocks.push(b.clone());
                }
                current = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Runs every block with bash (stopping at the first error) in `dir`, with `env`.
fn run_blocks(blocks: &[String], dir: &std::path::Path, env: &[(&str, &str)]) {
    for b in blocks {
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", b])
            .current_dir(dir)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the runbook's block failed:\n{b}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn runbook(ws: &Workspace) -> String {
    let r = ws.run_at("2026-11-28T12:00:00Z", &["runbook"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let path = r.stdout().trim().to_string();
    assert!(path.ends_with("backups/reports/dr-runbook.md"), "{path}");
    std::fs::read_to_string(path).unwrap()
}

#[test]
#[ignore = "needs sqlite3 and restic; run scripts/test"]
fn the_sqlite_and_files_runbook_brings_everything_back() {
    sqlite_and_files_runbook("", "sql.gz");
}

#[test]
#[ignore = "needs sqlite3, zstd and restic; run scripts/test"]
fn the_runbook_of_a_zstd_dump_brings_everything_back() {
    sqlite_and_files_runbook(
        r#"compression "zstd"
                zstd-long #true"#,
        "sql.zst",
    );
}

#[test]
#[ignore = "needs sqlite3, zstd, age and restic; run scripts/test"]
fn the_runbook_of_an_encrypted_dump_brings_everything_back() {
    let keys = tempfile::tempdir().unwrap();
    let (key, recipient) = crate::encrypt::keygen(keys.path(), "restore.key");
    sqlite_and_files_runbook_with(
        &format!(
            r#"compression "zstd"
                encrypt {{
                    recipient "{}"
                }}"#,
            recipient
        ),
        "sql.zst.age",
        &[("AGE_IDENTITY", key.to_str().unwrap())],
    );
}

/// The SQLite and files runbook, run on the worst day; `compression` goes into the dump
/// step, whose files end in `ext`.
fn sqlite_and_files_runbook(compression: &str, ext: &str) {
    sqlite_and_files_runbook_with(compression, ext, &[]);
}

/// The same, with `env` (an identity) for the blocks and the printed commands.
fn sqlite_and_files_runbook_with(compression: &str, ext: &str, env: &[(&str, &str)]) {
    let password = "restic-Rb-55e1";
    let ws = Workspace::with_plan(&format!(
        r#"plan app {{
            base "backups"
            timezone "Europe/Prague"
            database main {{
                engine sqlite
                path "app.db"
            }}
            dump db {{
                database main
                schedule "0 2 * * *"
                keep last=7
                {compression}
            }}
            snapshot uploads {{
                paths "data"
                repository "repo"
                password env=UPLOADS_PW
                init #true
            }}
            copy offsite {{
                dump db
                repository "offsite"
                password env=UPLOADS_PW
                init #true
            }}
            runbook {{
                owner "Ops team"
                contact "ops@example.com"
                note "Call the DBA before step 4."
            }}
        }}"#
    ))
    .env("UPLOADS_PW", password);
    let cache = ws.path("cache").display().to_string();
    let ws = ws.env("RESTIC_CACHE_DIR", &cache);
    let db = rusqlite::Connection::open(ws.path("app.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT);
         INSERT INTO users (email) VALUES ('a@example.com'), ('O''Reilly@example.com');
         CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL);
         INSERT INTO invoices (amount) VALUES (1.5), (2.25), (3);",
    )
    .unwrap();
    drop(db);
    ws.write("data/a.txt", "alpha\n");
    let binary: Vec<u8> = (0..50_000u32).map(|i| (i * 31 % 253) as u8).collect();
    std::fs::create_dir_all(ws.path("data/sub")).unwrap();
    std::fs::write(ws.path("data/sub/b.bin"), &binary).unwrap();
    let r = ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert_eq!(
        ws.run_at("2026-11-28T10:05:00Z", &["run", "uploads"])
            .code(),
        0
    );
    assert_eq!(
        ws.run_at("2026-11-28T10:06:00Z", &["run", "offsite"])
            .code(),
        0
    );

    let text = runbook(&ws);
    assert!(!text.contains(password), "{text}");
    for wanted in [
        "Owner: Ops team",
        "ops@example.com",
        "Call the DBA before step 4.",
        "sha256sum -c",
        "ops-run restore db app/db",
        "ops-run restore files app/uploads",
        "the environment variable `UPLOADS_PW`",
        "2026-11-28 11:00 CET",
        "ops-run restore db app/db --from offsite",
        &format!("Newest dump there: `full-20261128-1100.{ext}`"),
    ] {
        assert!(text.contains(wanted), "no `{wanted}` in:\n{text}");
    }
    // The worst day: the database, the files and the dumps on this machine are gone; the
    // dump comes back from the offsite copy.
    std::fs::remove_file(ws.path("app.db")).unwrap();
    std::fs::remove_dir_all(ws.path("data")).unwrap();
    std::fs::remove_dir_all(ws.path("backups/db")).unwrap();
    std::fs::create_dir_all(ws.path("elsewhere")).unwrap();
    let blocks = shell_blocks(&text);
    assert_eq!(blocks.len(), 4, "variables, copy, database, files:\n{text}");
    let mut with = vec![
        ("UPLOADS_PW", password),
        ("RESTIC_CACHE_DIR", cache.as_str()),
    ];
    with.extend_from_slice(env);
    run_blocks(&blocks, &ws.path("elsewhere"), &with);
    let back = |what: &str| {
        let db = rusqlite::Connection::open(ws.path("app.db")).unwrap();
        let count = |t: &str| -> i64 {
            db.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!((count("users"), count("invoices")), (2, 3), "{what}");
        assert_eq!(
            std::fs::read_to_string(ws.path("data/a.txt")).unwrap(),
            "alpha\n",
            "{what}"
        );
        assert_eq!(
            std::fs::read(ws.path("data/sub/b.bin")).unwrap(),
            binary,
            "{what}"
        );
    };
    back("without ops-run");

    // The worst day again, recovered with the ops-run commands exactly as printed: the
    // database from the offsite copy, the files to their original place.
    std::fs::remove_file(ws.path("app.db")).unwrap();
    std::fs::remove_dir_all(ws.path("data")).unwrap();
    std::fs::remove_dir_all(ws.path("backups/db")).unwrap();
    let printed = ops_run_commands(&text);
    let copy = printed
        .iter()
        .find(|c| c.contains("--from offsite"))
        .unwrap_or_else(|| panic!("no restore from the copy in:\n{text}"));
    let files = printed
        .iter()
        .find(|c| c.contains("restore files"))
        .unwrap_or_else(|| panic!("no restore of the files in:\n{text}"));
    for command in [copy, files] {
        run_printed(&ws, command, &with);
    }
    back("with ops-run");
}

/// The commands after "With ops-run:" in a runbook.
fn ops_run_commands(md: &str) -> Vec<String> {
    md.lines()
        .filter_map(|l| l.split("With ops-run: `").nth(1))
        .filter_map(|rest| rest.split('`').next())
        .map(str::to_string)
        .collect()
}

/// Runs a printed `ops-run …` command line with the binary under test, from the workspace.
fn run_printed(ws: &Workspace, command: &str, env: &[(&str, &str)]) {
    let line = command
        .strip_prefix("ops-run ")
        .unwrap_or_else(|| panic!("not an ops-run command: {command}"));
    let out = std::process::Command::new("bash")
        .args(["-c", &format!("exec \"$0\" {line}"), crate::harness::BIN])
        .current_dir(ws.path(""))
        .env("OPS_STATE", ws.path("state/ops.db"))
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{command}` failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs PostgreSQL; run scripts/test"]
fn the_postgres_runbook_recreates_a_dropped_database() {
    let src = unique("ops_rbsrc");
    let _cleanup = Cleanup(vec![{
        let mut c = psql("postgres");
        c.args(["-c", &format!("DROP DATABASE IF EXISTS {src} WITH (FORCE)")]);
        c
    }]);
    fixture_copy(&src);
    let password = var("OPS_TEST_PG_PASSWORD");
    let ws = Workspace::with_plan(&server_plan("postgres", "PG", &src, ""))
        .env("APP_DB_PASSWORD", &password);
    assert_eq!(ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]).code(), 0);
    let before = pg_counts(&src);
    assert_eq!(before.len(), 44);
    let text = runbook(&ws);
    assert!(!text.contains(&password), "{text}");
    assert!(
        text.contains("the environment variable `APP_DB_PASSWORD`"),
        "{text}"
    );
    // Quiet: only errors reach the terminal.
    assert!(
        text.contains("psql -X -q -v ON_ERROR_STOP=1 -o /dev/null"),
        "{text}"
    );
    assert!(
        text.contains(&format!("`createuser {}`", var("OPS_TEST_PG_USER"))),
        "{text}"
    );
    run_ok(psql("postgres").args(["-c", &format!("DROP DATABASE {src}")]));
    let blocks = shell_blocks(&text);
    assert_eq!(blocks.len(), 2, "variables, database:\n{text}");
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &blocks[1]])
        .current_dir(ws.path(""))
        .env("APP_DB_PASSWORD", &password)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing but the checksum's OK: no result tables.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "full-20261128-1000.sql.gz: OK"
    );
    assert_eq!(pg_counts(&src), before);
    // And as printed with ops-run.
    run_ok(psql("postgres").args(["-c", &format!("DROP DATABASE {src}")]));
    let printed = ops_run_commands(&text);
    let restore = printed
        .iter()
        .find(|c| c.starts_with("ops-run restore db"))
        .unwrap();
    run_printed(&ws, restore, &[("APP_DB_PASSWORD", &password)]);
    assert_eq!(pg_counts(&src), before);
}

#[test]
fn a_runbook_step_rewrites_the_runbook_after_the_dumps_of_its_apply() {
    let ws = Workspace::with_plan(
        r#"plan app {
            base "backups"
            database main {
                engine sqlite
                path "app.db"
            }
            runbook printed {
                schedule "0 3 * * *"
            }
            dump db {
                database main
                schedule "0 3 * * *"
            }
        }"#,
    );
    rusqlite::Connection::open(ws.path("app.db"))
        .unwrap()
        .execute_batch("CREATE TABLE t (id INTEGER); INSERT INTO t VALUES (1);")
        .unwrap();
    let r = ws.run_at("2026-11-28T03:00:10Z", &["plan", "apply"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let text = std::fs::read_to_string(ws.path("backups/reports/dr-runbook.md")).unwrap();
    // Declared first, it still runs after the dump, so it names the dump just made.
    assert!(text.contains("full-20261128-0300.sql.gz"), "{text}");
    let kinds: Vec<String> = ws
        .activities()
        .iter()
        .map(|a| {
            format!(
                "{}:{}",
                a["step"].as_str().unwrap(),
                a["status"].as_str().unwrap()
            )
        })
        .collect();
    assert!(kinds.contains(&"printed:success".to_string()), "{kinds:?}");
}
