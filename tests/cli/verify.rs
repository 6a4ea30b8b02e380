//! Verify-restore against each engine: a good dump passes with the right table count; a dump
//! with a flipped byte fails on the checksum before import; a truncated dump (with a matching,
//! recomputed sidecar) fails in the import; a dump older than `fail-after` fails; `min-tables`
//! and `expect` failures fail; and no `ops_verify_*` database is ever left behind.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::engines::{mariadb, psql, run_ok, unique, var};
use crate::harness::Workspace;

const T0: &str = "2026-11-28T01:00:00Z";
const T1: &str = "2026-11-28T02:00:00Z";
const T_LATE: &str = "2026-12-01T12:00:00Z";

fn plan(name: &str, database_block: &str, tables: u64, count_sql: &str) -> String {
    format!(
        r#"plan {name} {{
            base "backups"
            {database_block}
            dump db {{
                database main
                fail-after "50h"
            }}
            verify restore {{
                dump db
                min-tables {tables}
                expect "{count_sql}" min=1
            }}
            verify too-few-tables {{
                dump db
                min-tables {}
            }}
            verify empty-expect {{
                dump db
                expect "{count_sql} WHERE 1 = 0" min=1
            }}
        }}"#,
        tables + 1
    )
}

fn last(ws: &Workspace) -> serde_json::Value {
    ws.activities().pop().unwrap()
}

fn dump_file(ws: &Workspace) -> PathBuf {
    let a = ws
        .activities()
        .into_iter()
        .find(|a| a["type"] == "db_backup")
        .unwrap();
    PathBuf::from(a["meta"]["artifact"].as_str().unwrap())
}

fn rewrite_sidecar(dump: &Path) {
    let out = std::process::Command::new("sha256sum")
        .arg(dump.file_name().unwrap())
        .current_dir(dump.parent().unwrap())
        .output()
        .unwrap();
    let mut side = dump.as_os_str().to_owned();
    side.push(".sha256");
    std::fs::write(PathBuf::from(side), out.stdout).unwrap();
}

/// The whole scenario; `scratch` lists the scratch databases of this plan left on the server.
fn scenario(ws: &Workspace, tables: u64, scratch: &dyn Fn() -> Vec<String>) {
    let r = ws.run_at(T0, &["run", "db"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let dump = dump_file(ws);

    // A good dump restores, with the right table count and the evidence on disk.
    let r = ws.run_at(T1, &["run", "restore"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let a = last(ws);
    assert_eq!(a["status"], "success", "{a}");
    assert_eq!(a["type"], "verify_restore");
    assert_eq!(a["meta"]["verify_table_count"], tables);
    assert_eq!(a["meta"]["verify_dump"], dump.display().to_string());
    assert_eq!(a["meta"]["dump_age_seconds"], 3600);
    let log = PathBuf::from(a["meta"]["verify_log"].as_str().unwrap());
    assert!(
        log.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("verify-20261128-"),
        "{log:?}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    for want in [
        "dump: ",
        "sha256: ",
        "(matches the sidecar)",
        "dump_age: 1h (3600 s)",
        &format!("tables: {tables} (min {tables})"),
        "result: ok",
    ] {
        assert!(
            text.contains(want),
            "{want:?} missing from the log:\n{text}"
        );
    }
    assert!(scratch().is_empty(), "left behind: {:?}", scratch());

    // min-tables and expect failures fail.
    assert_eq!(ws.run_at(T1, &["run", "too-few-tables"]).code(), 1);
    let a = last(ws);
    assert!(
        a["log_excerpt"]
            .as_str()
            .unwrap()
            .contains("fewer than min-tables"),
        "{a}"
    );
    assert!(
        a["meta"]["verify_log"]
            .as_str()
            .unwrap()
            .ends_with("-fail.log"),
        "{a}"
    );
    assert_eq!(ws.run_at(T1, &["run", "empty-expect"]).code(), 1);
    assert!(
        last(ws)["log_excerpt"]
            .as_str()
            .unwrap()
            .contains("less than 1"),
        "{}",
        last(ws)
    );
    assert!(scratch().is_empty(), "left behind: {:?}", scratch());

    // Older than fail-after: refused without importing.
    assert_eq!(ws.run_at(T_LATE, &["run", "restore"]).code(), 1);
    assert!(
        last(ws)["log_excerpt"]
            .as_str()
            .unwrap()
            .contains("older than the dump's fail-after 50h"),
        "{}",
        last(ws)
    );
    assert!(last(ws)["meta"]["verify_table_count"].is_null());

    // A flipped byte: refused on the checksum, before any import.
    let original = std::fs::read(&dump).unwrap();
    let mut flipped = original.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    std::fs::write(&dump, &flipped).unwrap();
    assert_eq!(ws.run_at(T1, &["run", "restore"]).code(), 1);
    let a = last(ws);
    assert!(
        a["log_excerpt"]
            .as_str()
            .unwrap()
            .contains("checksum mismatch"),
        "{a}"
    );
    assert!(
        a["meta"]["verify_table_count"].is_null()
            && !a["log_excerpt"].as_str().unwrap().contains("scratch:"),
        "{a}"
    );

    // Truncated, with a sidecar that matches the truncated file: fails in the import.
    let mut sql = Vec::new();
    flate2::read::MultiGzDecoder::new(&original[..])
        .read_to_end(&mut sql)
        .unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&sql[..sql.len() * 6 / 10]).unwrap();
    std::fs::write(&dump, gz.finish().unwrap()).unwrap();
    rewrite_sidecar(&dump);
    assert_eq!(ws.run_at(T1, &["run", "restore"]).code(), 1);
    let a = last(ws);
    assert!(
        a["log_excerpt"]
            .as_str()
            .unwrap()
            .contains("the import failed"),
        "{a}"
    );
    assert!(scratch().is_empty(), "left behind: {:?}", scratch());
}

#[test]
fn sqlite_verify_scenario() {
    let ws = Workspace::with_plan(&plan(
        "app_sqlite",
        r#"database main {
                engine sqlite
                path "app.sqlite"
            }"#,
        3,
        "SELECT count(*) FROM invoices",
    ));
    let sql =
        std::fs::read_to_string(crate::harness::repo_root().join("examples/quickstart/app.sql"))
            .unwrap();
    rusqlite::Connection::open(ws.path("app.sqlite"))
        .unwrap()
        .execute_batch(&sql)
        .unwrap();
    // Three verify steps: each keeps its log and scratch copy in `verify/<step>/`.
    let verify_dir = ws.path("backups/verify");
    scenario(&ws, 3, &|| {
        let mut dirs = vec![verify_dir.clone()];
        let mut left = Vec::new();
        while let Some(dir) = dirs.pop() {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(e.path());
                } else if name.starts_with(".ops_verify_") {
                    left.push(name);
                }
            }
        }
        left
    });
}

#[test]
#[ignore = "needs PostgreSQL; run scripts/test"]
fn postgres_verify_scenario() {
    let src = unique("ops_vsrc");
    run_ok(psql("postgres").args([
        "-c",
        &format!(
            "CREATE DATABASE {src} TEMPLATE {}",
            var("OPS_TEST_PG_FIXTURE")
        ),
    ]));
    let ws = Workspace::with_plan(&plan(
        "app_pg",
        &format!(
            r#"database main {{
                engine postgres
                host "{}"
                port {}
                name {src}
                user {}
                password env=APP_DB_PASSWORD
            }}"#,
            var("OPS_TEST_PG_HOST"),
            var("OPS_TEST_PG_PORT"),
            var("OPS_TEST_PG_USER")
        ),
        44,
        "SELECT count(*) FROM contacts",
    ))
    .env("APP_DB_PASSWORD", &var("OPS_TEST_PG_PASSWORD"));
    // Filtered by prefix: in LIKE, `_` matches any character (app_pgt_ would match app_pg_).
    scenario(&ws, 44, &|| pg_scratch("app_pg"));
    run_ok(psql("postgres").args(["-c", &format!("DROP DATABASE {src}")]));
}

#[test]
#[ignore = "needs MariaDB; run scripts/test"]
fn mariadb_verify_scenario() {
    let src = unique("ops_vsrc");
    run_ok(mariadb(None).args(["-e", &format!(
        "CREATE DATABASE {src}; USE {src};
         CREATE TABLE users (id INT AUTO_INCREMENT PRIMARY KEY, email VARCHAR(200));
         CREATE TABLE invoices (id INT AUTO_INCREMENT PRIMARY KEY, user_id INT, amount DECIMAL(10,2));
         INSERT INTO users (email) SELECT CONCAT('u', seq, '@example.com') FROM seq_1_to_3000;
         INSERT INTO invoices (user_id, amount) SELECT 1 + seq % 3000, seq / 3 FROM seq_1_to_20000;"
    )]));
    let ws = Workspace::with_plan(&plan(
        "app_my",
        &format!(
            r#"database main {{
                engine mariadb
                host "{}"
                port {}
                name {src}
                user {}
                password env=APP_DB_PASSWORD
            }}"#,
            var("OPS_TEST_MY_HOST"),
            var("OPS_TEST_MY_PORT"),
            var("OPS_TEST_MY_USER")
        ),
        2,
        "SELECT count(*) FROM invoices",
    ))
    .env("APP_DB_PASSWORD", &var("OPS_TEST_MY_PASSWORD"));
    scenario(&ws, 2, &|| {
        run_ok(mariadb(None).args(["-e", "SHOW DATABASES"]))
            .lines()
            .filter(|n| n.starts_with("ops_verify_app_my_"))
            .map(str::to_string)
            .collect()
    });
    run_ok(mariadb(None).args(["-e", &format!("DROP DATABASE {src}")]));
}

/// Drops a source database when the test ends, also when it fails.
fn drop_source(name: &str) -> crate::ownership::Cleanup {
    let mut c = psql("postgres");
    c.args([
        "-c",
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    ]);
    crate::ownership::Cleanup(vec![c])
}

/// A plan whose `psql` runs statements at once but hangs on an import, as a huge restore
/// would; the verify's timeout or a SIGTERM must still drop the scratch database.
fn slow_import(plan: &str, timeout: &str, sleep: &str) -> (Workspace, crate::ownership::Cleanup) {
    let src = unique("ops_vslow");
    let cleanup = drop_source(&src);
    run_ok(psql("postgres").args([
        "-c",
        &format!(
            "CREATE DATABASE {src} TEMPLATE {}",
            var("OPS_TEST_PG_FIXTURE")
        ),
    ]));
    let ws = Workspace::with_plan(&format!(
        r#"plan {plan} {{
            base "backups"
            tools {{
                psql "./slow-psql"
            }}
            database main {{
                engine postgres
                host "{}"
                port {}
                name {src}
                user {}
                password env=APP_DB_PASSWORD
            }}
            dump db {{
                database main
            }}
            verify restore {{
                dump db
                timeout "{timeout}"
            }}
        }}"#,
        var("OPS_TEST_PG_HOST"),
        var("OPS_TEST_PG_PORT"),
        var("OPS_TEST_PG_USER")
    ))
    .env("APP_DB_PASSWORD", &var("OPS_TEST_PG_PASSWORD"));
    ws.write("slow-psql", &format!("#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = -c ] && exec psql \"$@\"; done\nexec {sleep}\n"));
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(ws.path("slow-psql"))
        .status()
        .unwrap();
    assert_eq!(ws.run_at(T0, &["run", "db"]).code(), 0);
    (ws, cleanup)
}

fn pg_scratch(plan: &str) -> Vec<String> {
    let prefix = format!("ops_verify_{plan}_");
    run_ok(psql("postgres").args(["-c", "SELECT datname FROM pg_database"]))
        .lines()
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

#[test]
#[ignore = "needs PostgreSQL; run scripts/test"]
fn a_verify_that_times_out_still_drops_its_scratch_database() {
    let sleep = format!("sleep 28.{}", std::process::id());
    let (ws, _source) = slow_import("app_pgt", "2s", &sleep);
    let started = std::time::Instant::now();
    let r = ws.run_at(T1, &["run", "restore"]);
    assert_eq!(r.code(), 1, "{}", r.stdout());
    assert!(started.elapsed().as_secs() < 15, "{:?}", started.elapsed());
    let a = last(&ws);
    assert!(
        a["log_excerpt"]
            .as_str()
            .unwrap()
            .contains("timed out after 2s"),
        "{a}"
    );
    assert!(
        a["log_excerpt"].as_str().unwrap().contains("(dropped)"),
        "{a}"
    );
    assert!(
        pg_scratch("app_pgt").is_empty(),
        "left behind: {:?}",
        pg_scratch("app_pgt")
    );
    assert!(crate::harness::processes_with(&sleep).is_empty());
}

#[test]
#[ignore = "needs PostgreSQL; run scripts/test"]
fn sigterm_during_a_verify_still_drops_its_scratch_database() {
    let sleep = format!("sleep 27.{}", std::process::id());
    let (ws, _source) = slow_import("app_pgs", "1h", &sleep);
    let child = ws
        .command(&["run", "restore"])
        .env("OPS_NOW", T1)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        crate::harness::wait_for(20, || !crate::harness::processes_with(&sleep).is_empty()),
        "the import never started"
    );
    assert_eq!(
        pg_scratch("app_pgs").len(),
        1,
        "the scratch database exists during the import"
    );
    crate::harness::signal(child.id(), rustix::process::Signal::TERM);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        pg_scratch("app_pgs").is_empty(),
        "left behind: {:?}",
        pg_scratch("app_pgs")
    );
    let a = last(&ws);
    assert!(
        a["log_excerpt"].as_str().unwrap().contains("interrupted"),
        "{a}"
    );
}

#[test]
#[ignore = "needs PostgreSQL; run scripts/test"]
fn a_scratch_database_of_a_killed_ops_run_is_dropped_by_the_next_apply() {
    let sleep = format!("sleep 26.{}", std::process::id());
    let (ws, _source) = slow_import("app_pgk", "1h", &sleep);
    let mut child = ws
        .command(&["run", "restore"])
        .env("OPS_NOW", T1)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        crate::harness::wait_for(20, || !crate::harness::processes_with(&sleep).is_empty()),
        "the import never started"
    );
    crate::harness::signal(child.id(), rustix::process::Signal::KILL);
    child.wait().unwrap();
    for pid in crate::harness::processes_with(&sleep) {
        crate::harness::signal(pid, rustix::process::Signal::KILL);
    }
    assert_eq!(pg_scratch("app_pgk").len(), 1, "kill -9 leaves it");

    // The next apply, whatever it runs, drops it and says so.
    let r = ws.run_at(T1, &["run", "db"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(
        r.stderr()
            .contains("dropped the scratch database ops_verify_app_pgk_")
            && r.stderr()
                .contains("app_pgk/restore (left by an ops-run that was killed)"),
        "{}",
        r.stderr()
    );
    assert!(
        pg_scratch("app_pgk").is_empty(),
        "left behind: {:?}",
        pg_scratch("app_pgk")
    );
    let markers: Vec<_> = std::fs::read_dir(ws.path("backups/verify"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(markers.is_empty(), "{markers:?}");
}

#[test]
#[ignore = "needs MariaDB; run scripts/test"]
fn sigterm_during_a_mariadb_import_ends_its_session_and_drops_the_scratch() {
    let src = unique("ops_vmy");
    let mut drop_src = mariadb(None);
    drop_src.args(["-e", &format!("DROP DATABASE IF EXISTS {src}")]);
    // Also when the test fails: end the import's statement and drop what it left.
    let mut end_scratch = std::process::Command::new("sh");
    end_scratch
        .env("MYSQL_PWD", var("OPS_TEST_MY_PASSWORD"))
        .args([
            "-c",
            "m() { mariadb --no-defaults -N -B -h \"$1\" -P \"$2\" -u \"$3\" -e \"$4\"; }
             for id in $(m \"$1\" \"$2\" \"$3\" \"SELECT id FROM information_schema.processlist WHERE db LIKE 'ops\\_verify\\_app\\_myk\\_%'\"); do m \"$1\" \"$2\" \"$3\" \"KILL $id\"; done
             for db in $(m \"$1\" \"$2\" \"$3\" \"SHOW DATABASES LIKE 'ops\\_verify\\_app\\_myk\\_%'\"); do m \"$1\" \"$2\" \"$3\" \"DROP DATABASE $db\"; done",
            "sh",
            &var("OPS_TEST_MY_HOST"),
            &var("OPS_TEST_MY_PORT"),
            &var("OPS_TEST_MY_USER"),
        ]);
    let _cleanup = crate::ownership::Cleanup(vec![drop_src, end_scratch]);
    run_ok(mariadb(None).args([
        "-e",
        &format!(
            "CREATE DATABASE {src}; CREATE TABLE {src}.t (i INT); INSERT INTO {src}.t VALUES (1)"
        ),
    ]));
    let ws = Workspace::with_plan(&format!(
        r#"plan app_myk {{
            base "backups"
            tools {{
                mariadb "./stuck-mariadb"
            }}
            database main {{
                engine mariadb
                host "{}"
                port {}
                name {src}
                user {}
                password env=APP_DB_PASSWORD
            }}
            dump db {{
                database main
            }}
            verify restore {{
                dump db
            }}
        }}"#,
        var("OPS_TEST_MY_HOST"),
        var("OPS_TEST_MY_PORT"),
        var("OPS_TEST_MY_USER")
    ))
    .env("APP_DB_PASSWORD", &var("OPS_TEST_MY_PASSWORD"));
    // The import's statement goes on in the server after its client is gone, holding a lock
    // on a table of the scratch database: a plain DROP DATABASE would wait for it.
    ws.write(
        "stuck-mariadb",
        "#!/bin/bash\nfor a in \"$@\"; do [ \"$a\" = -e ] && exec mariadb \"$@\"; done\n# The statement goes before `-- DATABASE`, the import's last two words.\na=(\"$@\"); n=${#a[@]}\nexec mariadb \"${a[@]:0:n-2}\" -e 'CREATE TABLE x (i BIGINT); INSERT INTO x SELECT seq FROM seq_1_to_100000000000' \"${a[@]:n-2}\"\n",
    );
    run_ok(
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(ws.path("stuck-mariadb")),
    );
    assert_eq!(ws.run_at(T0, &["run", "db"]).code(), 0);
    let scratch = || {
        run_ok(mariadb(None).args(["-e", "SHOW DATABASES LIKE 'ops\\_verify\\_app\\_myk\\_%'"]))
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let child = ws
        .command(&["run", "restore"])
        .env("OPS_NOW", T1)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sleeping = || {
        run_ok(mariadb(None).args([
            "-e",
            "SELECT count(*) FROM information_schema.processlist WHERE info LIKE 'INSERT INTO x SELECT seq%'",
        ]))
        .trim()
            != "0"
    };
    assert!(
        crate::harness::wait_for(20, sleeping),
        "the import never started"
    );
    let started = std::time::Instant::now();
    crate::harness::signal(child.id(), rustix::process::Signal::TERM);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(started.elapsed().as_secs() < 30, "{:?}", started.elapsed());
    assert!(scratch().is_empty(), "left behind: {:?}", scratch());
    assert!(!sleeping(), "the import's statement still runs");
    assert!(
        last(&ws)["log_excerpt"]
            .as_str()
            .unwrap()
            .contains("(dropped)"),
        "{}",
        last(&ws)
    );
}

/// Replaces the first `from` in the dump's SQL by `to`, keeping its compression, and writes
/// a sidecar that matches: a dump whose bytes are sound and whose content is not.
fn rewrite_sql(dump: &Path, from: &str, to: &str) {
    let mut sql = String::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(dump).unwrap())
        .read_to_string(&mut sql)
        .unwrap();
    assert!(sql.contains(from), "{from:?} is not in the dump");
    let sql = sql.replacen(from, to, 1);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(sql.as_bytes()).unwrap();
    std::fs::write(dump, gz.finish().unwrap()).unwrap();
    rewrite_sidecar(dump);
}

#[test]
#[ignore = "needs PostgreSQL; run scripts/test"]
fn a_postgres_import_loads_rows_on_two_sessions_and_a_bad_row_in_either_fails_it() {
    let src = unique("ops_vsplit");
    let _source = drop_source(&src);
    // `big` comes first and takes one session a while; the small tables behind it go to the
    // other. The materialized view is refreshed after the data: it must see every row.
    run_ok(psql("postgres").args(["-c", &format!("CREATE DATABASE {src}")]));
    run_ok(psql(&src).args([
        "-c",
        "CREATE TABLE big (id int PRIMARY KEY, t text);
         INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 100000) g;
         CREATE TABLE child (id int PRIMARY KEY, big_id int REFERENCES big (id));
         INSERT INTO child SELECT g, g FROM generate_series(1, 5000) g;
         CREATE TABLE other (id int);
         INSERT INTO other SELECT g FROM generate_series(1, 700) g;
         CREATE MATERIALIZED VIEW child_rows AS SELECT count(*) AS n FROM child;",
    ]));
    let ws = Workspace::with_plan(&format!(
        r#"plan app_split {{
            base "backups"
            database main {{
                engine postgres
                host "{}"
                port {}
                name {src}
                user {}
                password env=APP_DB_PASSWORD
            }}
            dump db {{
                database main
                fail-after "50h"
            }}
            verify restore {{
                dump db
                min-tables 3
                expect "SELECT n FROM child_rows" min=5000
                expect "SELECT count(*) FROM other" min=700
                expect "SELECT count(*) FROM big" min=100000
            }}
            verify single {{
                dump db
                sessions 1
                expect "SELECT n FROM child_rows" min=5000
            }}
        }}"#,
        var("OPS_TEST_PG_HOST"),
        var("OPS_TEST_PG_PORT"),
        var("OPS_TEST_PG_USER")
    ))
    .env("APP_DB_PASSWORD", &var("OPS_TEST_PG_PASSWORD"));
    assert_eq!(ws.run_at(T0, &["run", "db"]).code(), 0);
    let r = ws.run_at(T1, &["run", "restore"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let log = last(&ws)["log_excerpt"].as_str().unwrap().to_string();
    assert!(log.contains("sessions: 2 (the rows of "), "{log}");
    // `sessions 1`: one session, the same result.
    let r = ws.run_at(T1, &["run", "single"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let log = last(&ws)["log_excerpt"].as_str().unwrap().to_string();
    assert!(
        !log.contains("sessions:") && log.contains("result: ok"),
        "{log}"
    );

    // A bad row in the first table, then in one of the small ones: whichever session loads
    // it, the verify fails on that row's error, and neither session is left running.
    let dump = dump_file(&ws);
    let good = std::fs::read(&dump).unwrap();
    for (from, to) in [
        ("\n100\txxx", "\nx100\txxx"),
        ("\n4999\t4999\n", "\n4999\toops\n"),
    ] {
        std::fs::write(&dump, &good).unwrap();
        rewrite_sql(&dump, from, to);
        let started = std::time::Instant::now();
        assert_eq!(ws.run_at(T1, &["run", "restore"]).code(), 1);
        let a = last(&ws);
        let excerpt = a["log_excerpt"].as_str().unwrap();
        assert!(
            excerpt.contains("the import failed")
                && excerpt.contains("invalid input syntax for type integer"),
            "{a}"
        );
        assert!(
            !excerpt.contains("stopped: the other import session failed"),
            "{a}"
        );
        assert!(
            started.elapsed().as_secs() < 60,
            "took {:?}",
            started.elapsed()
        );
        assert!(
            pg_scratch("app_split").is_empty(),
            "left behind: {:?}",
            pg_scratch("app_split")
        );
    }
}

#[test]
#[ignore = "needs PostgreSQL; run scripts/test"]
fn a_role_limited_to_one_connection_is_told_about_sessions_1_which_works() {
    let src = unique("ops_vone");
    let role = unique("ops_one");
    let password = format!("pw-{}", std::process::id());
    // Dropped also when the test fails: the source, then the role.
    let _cleanup = crate::ownership::Cleanup(
        [
            format!("DROP DATABASE IF EXISTS {src} WITH (FORCE)"),
            format!("DROP ROLE IF EXISTS {role}"),
        ]
        .iter()
        .map(|sql| {
            let mut c = psql("postgres");
            c.args(["-c", sql]);
            c
        })
        .collect(),
    );
    run_ok(psql("postgres").args([
        "-c",
        &format!("CREATE ROLE {role} LOGIN CREATEDB CONNECTION LIMIT 1 PASSWORD '{password}'"),
        "-c",
        &format!("GRANT {role} TO {}", var("OPS_TEST_PG_USER")),
        "-c",
        &format!("CREATE DATABASE {src} OWNER {role}"),
    ]));
    run_ok(psql(&src).args([
        "-c",
        &format!(
            "SET ROLE {role}; CREATE TABLE t (id int PRIMARY KEY);
             INSERT INTO t SELECT generate_series(1, 1000);"
        ),
    ]));
    let ws = Workspace::with_plan(&format!(
        r#"plan app_one {{
            base "backups"
            database main {{
                engine postgres
                host "{}"
                port {}
                name {src}
                user {role}
                password env=APP_DB_PASSWORD
            }}
            dump db {{
                database main
            }}
            verify two {{
                dump db
            }}
            verify one {{
                dump db
                sessions 1
                expect "SELECT count(*) FROM t" min=1000
            }}
        }}"#,
        var("OPS_TEST_PG_HOST"),
        var("OPS_TEST_PG_PORT"),
    ))
    .env("APP_DB_PASSWORD", &password);
    assert_eq!(ws.run_at(T0, &["run", "db"]).code(), 0);
    assert_eq!(ws.run_at(T1, &["run", "two"]).code(), 1);
    let excerpt = last(&ws)["log_excerpt"].as_str().unwrap().to_string();
    assert!(
        excerpt.contains("too many connections")
            && excerpt.contains("`sessions 1`")
            && excerpt.contains("(dropped)"),
        "{excerpt}"
    );
    // The failed verify's sessions end at once (the helper checks for its client), and
    // its scratch database is gone.
    let sessions = || {
        run_ok(psql("postgres").args([
            "-c",
            &format!("SELECT pid FROM pg_stat_activity WHERE usename = '{role}'"),
        ]))
        .lines()
        .map(str::to_string)
        .collect::<Vec<_>>()
    };
    let left = wait_for_none(sessions);
    assert!(left.is_empty(), "sessions left: {left:?}");
    assert!(
        pg_scratch("app_one").is_empty(),
        "{:?}",
        pg_scratch("app_one")
    );
    let r = ws.run_at(T1, &["run", "one"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(
        pg_scratch("app_one").is_empty(),
        "{:?}",
        pg_scratch("app_one")
    );
}

/// `list()` until it is empty, for up to 10 s; what is left then.
fn wait_for_none(list: impl Fn() -> Vec<String>) -> Vec<String> {
    for _ in 0..100 {
        if list().is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    list()
}
