//! Real engines: each dump restores with the engine's own client to the same tables and row
//! counts. The servers are the throwaway ones scripts/test starts (scripts/services.sh).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::harness::{Workspace, processes_with};

pub fn var(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run scripts/test, which starts the servers"))
}

pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::AtomicUsize;
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A plan `app` with one `database main` of `engine` on the test server (`pg` or `my` in the
/// variable names), database `name`, its password from `APP_DB_PASSWORD`, and `dump db` with
/// `extra` settings.
pub fn server_plan(engine: &str, vars: &str, name: &str, extra: &str) -> String {
    format!(
        r#"plan app {{
            base "backups"
            database main {{
                engine {engine}
                host "{}"
                port {}
                name {name}
                user {}
                password env=APP_DB_PASSWORD
            }}
            dump db {{
                database main
                {extra}
            }}
        }}"#,
        var(&format!("OPS_TEST_{vars}_HOST")),
        var(&format!("OPS_TEST_{vars}_PORT")),
        var(&format!("OPS_TEST_{vars}_USER")),
    )
}

const SCHEDULE: &str = "schedule \"0 2 * * *\"";

/// A new PostgreSQL database `name`, a copy of the CRM-shaped fixture (44 tables).
pub fn fixture_copy(name: &str) {
    run_ok(psql("postgres").args([
        "-c",
        &format!(
            "CREATE DATABASE {name} TEMPLATE {}",
            var("OPS_TEST_PG_FIXTURE")
        ),
    ]));
}

pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run a client");
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn psql(db: &str) -> Command {
    let mut c = Command::new("psql");
    c.env("PGPASSWORD", var("OPS_TEST_PG_PASSWORD")).args([
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        &var("OPS_TEST_PG_HOST"),
        "-p",
        &var("OPS_TEST_PG_PORT"),
        "-U",
        &var("OPS_TEST_PG_USER"),
        "-d",
        db,
    ]);
    c
}

pub fn mariadb(db: Option<&str>) -> Command {
    let mut c = Command::new("mariadb");
    c.env("MYSQL_PWD", var("OPS_TEST_MY_PASSWORD")).args([
        "--no-defaults",
        "-N",
        "-B",
        "-h",
        &var("OPS_TEST_MY_HOST"),
        "-P",
        &var("OPS_TEST_MY_PORT"),
        "-u",
        &var("OPS_TEST_MY_USER"),
    ]);
    if let Some(db) = db {
        c.arg(db);
    }
    c
}

/// `table|count` lines for every table, sorted.
pub fn pg_counts(db: &str) -> Vec<String> {
    let tables = run_ok(psql(db).args(["-c", "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1"]));
    tables
        .lines()
        .map(|t| {
            let n = run_ok(psql(db).args(["-c", &format!("SELECT count(*) FROM \"{t}\"")]));
            format!("{t}|{}", n.trim())
        })
        .collect()
}

pub fn my_counts(db: &str) -> Vec<String> {
    let tables = run_ok(mariadb(Some(db)).args(["-e", "SHOW TABLES"]));
    tables
        .lines()
        .map(|t| {
            let n = run_ok(mariadb(Some(db)).args(["-e", &format!("SELECT count(*) FROM `{t}`")]));
            format!("{t}|{}", n.trim())
        })
        .collect()
}

fn the_artifact(ws: &Workspace) -> std::path::PathBuf {
    let a = ws
        .activities()
        .into_iter()
        .find(|a| a["type"] == "db_backup")
        .expect("a dump activity");
    assert_eq!(a["status"], "success", "{a}");
    std::path::PathBuf::from(a["meta"]["artifact"].as_str().unwrap())
}

/// `gzip` or `zstd`, by the artifact's name.
fn compressor(artifact: &std::path::Path) -> &'static str {
    if artifact.to_string_lossy().ends_with(".zst") {
        "zstd"
    } else {
        "gzip"
    }
}

fn check_files(artifact: &std::path::Path) {
    assert!(
        Command::new(compressor(artifact))
            .arg("-t")
            .arg(artifact)
            .status()
            .unwrap()
            .success()
    );
    let dir = artifact.parent().unwrap();
    let sidecar = format!("{}.sha256", artifact.file_name().unwrap().to_string_lossy());
    assert!(
        Command::new("sha256sum")
            .arg("-c")
            .arg(&sidecar)
            .current_dir(dir)
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    );
}

/// Feeds the decompressed dump to a client (`psql`, `mariadb`, `sqlite3`), which must succeed
/// without a word on stderr.
fn restore(client: &mut Command, artifact: &std::path::Path) {
    let sql = Command::new(compressor(artifact))
        .arg("-dc")
        .arg(artifact)
        .output()
        .unwrap()
        .stdout;
    let mut child = client
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&sql).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "restore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Applies while watching every dump process's command line for the password.
fn apply_watching_argv(ws: &Workspace, tool: &str, password: &str) {
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, tool, password) = (Arc::clone(&stop), tool.to_string(), password.to_string());
        std::thread::spawn(move || {
            let mut leaks = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                for pid in processes_with(&tool) {
                    if let Ok(c) = std::fs::read(format!("/proc/{pid}/cmdline"))
                        && String::from_utf8_lossy(&c).contains(&password)
                    {
                        leaks.push(String::from_utf8_lossy(&c).replace('\0', " "));
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            leaks
        })
    };
    let r = ws.run(&["plan", "apply"]);
    stop.store(true, Ordering::SeqCst);
    assert!(
        watcher.join().unwrap().is_empty(),
        "the password was on a command line"
    );
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    for o in [
        r.stdout(),
        r.stderr(),
        serde_json::to_string(&ws.activities()).unwrap(),
    ] {
        assert!(!o.contains(password), "the password leaked: {o}");
    }
}

#[test]
#[ignore = "needs PostgreSQL; run scripts/test"]
fn postgres_dump_restores_to_the_same_tables_and_counts() {
    postgres_dump_restores(SCHEDULE);
}

#[test]
#[ignore = "needs PostgreSQL; run scripts/test"]
fn a_zstd_postgres_dump_restores_to_the_same_tables_and_counts() {
    postgres_dump_restores(&format!("{SCHEDULE}\ncompression \"zstd\""));
}

fn postgres_dump_restores(extra: &str) {
    let src = unique("ops_src");
    let dst = unique("ops_dst");
    fixture_copy(&src);
    let password = var("OPS_TEST_PG_PASSWORD");
    let ws = Workspace::with_plan(&server_plan("postgres", "PG", &src, extra))
        .env("APP_DB_PASSWORD", &password);
    apply_watching_argv(&ws, "pg_dump", &password);
    let artifact = the_artifact(&ws);
    check_files(&artifact);
    run_ok(psql("postgres").args(["-c", &format!("CREATE DATABASE {dst}")]));
    restore(&mut psql(&dst), &artifact);
    let (a, b) = (pg_counts(&src), pg_counts(&dst));
    assert_eq!(a.len(), 44, "{a:?}");
    assert_eq!(a, b);
    let meta = &ws.activities()[0]["meta"];
    assert!(
        meta["tool_version"]
            .as_str()
            .unwrap()
            .starts_with("pg_dump (PostgreSQL) 15"),
        "{meta}"
    );
    for db in [&src, &dst] {
        run_ok(psql("postgres").args(["-c", &format!("DROP DATABASE {db}")]));
    }
}

/// The MySQL family: `engine` is `mariadb` (mariadb-dump) or `mysql` (mysqldump, the name
/// MySQL installs), both against the MariaDB test server.
fn mysql_family_dump_restores(engine: &str, tool: &str, extra: &str) {
    let src = unique("ops_src");
    let dst = unique("ops_dst");
    run_ok(mariadb(None).args(["-e", &format!(
        "CREATE DATABASE {src}; USE {src};
         CREATE TABLE users (id INT AUTO_INCREMENT PRIMARY KEY, email VARCHAR(200), note TEXT, avatar BLOB);
         CREATE TABLE invoices (id INT AUTO_INCREMENT PRIMARY KEY, user_id INT, amount DECIMAL(10,2), FOREIGN KEY (user_id) REFERENCES users(id));
         CREATE TABLE empty_one (id INT);
         INSERT INTO users (email, note, avatar) VALUES ('a@example.com', 'O''Reilly', X'00FF10'), ('b@example.com', 'ünïcode\\nline', NULL);
         INSERT INTO users (email) SELECT CONCAT('u', seq, '@example.com') FROM seq_1_to_500;
         INSERT INTO invoices (user_id, amount) SELECT 1 + seq % 500, seq / 3 FROM seq_1_to_2000;
         CREATE VIEW big_invoices AS SELECT * FROM invoices WHERE amount > 100;"
    )]));
    let password = var("OPS_TEST_MY_PASSWORD");
    let ws = Workspace::with_plan(&server_plan(engine, "MY", &src, extra))
        .env("APP_DB_PASSWORD", &password);
    apply_watching_argv(&ws, tool, &password);
    let artifact = the_artifact(&ws);
    check_files(&artifact);
    run_ok(mariadb(None).args(["-e", &format!("CREATE DATABASE {dst}")]));
    restore(&mut mariadb(Some(&dst)), &artifact);
    let (a, b) = (my_counts(&src), my_counts(&dst));
    assert_eq!(
        a,
        [
            "big_invoices|1700",
            "empty_one|0",
            "invoices|2000",
            "users|502"
        ]
    );
    assert_eq!(a, b);
    run_ok(mariadb(None).args(["-e", &format!("DROP DATABASE {src}; DROP DATABASE {dst}")]));
}

#[test]
#[ignore = "needs MariaDB; run scripts/test"]
fn mariadb_dump_restores_to_the_same_tables_and_counts() {
    mysql_family_dump_restores("mariadb", "mariadb-dump", SCHEDULE);
}

#[test]
#[ignore = "needs MariaDB; run scripts/test"]
fn a_zstd_mariadb_dump_restores_to_the_same_tables_and_counts() {
    mysql_family_dump_restores(
        "mariadb",
        "mariadb-dump",
        &format!("{SCHEDULE}\ncompression \"zstd\""),
    );
}

#[test]
#[ignore = "needs MariaDB; run scripts/test"]
fn mysql_engine_dumps_with_mysqldump() {
    mysql_family_dump_restores("mysql", "mysqldump", SCHEDULE);
}

#[test]
#[ignore = "needs sqlite3; run scripts/test"]
fn sqlite_dump_restores_with_the_sqlite3_program() {
    let ws = Workspace::with_plan(
        r#"plan app {
            base "backups"
            database main {
                engine sqlite
                path "app.sqlite"
            }
            dump db {
                database main
                schedule "0 2 * * *"
            }
        }"#,
    );
    let sql =
        std::fs::read_to_string(crate::harness::repo_root().join("examples/quickstart/app.sql"))
            .unwrap();
    let src = ws.path("app.sqlite");
    let mut load = Command::new("sqlite3")
        .arg(&src)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    load.stdin
        .take()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    assert!(load.wait().unwrap().success());
    let r = ws.run(&["plan", "apply"]);
    assert_eq!(r.code(), 0, "{}", r.stdout());
    let artifact = the_artifact(&ws);
    check_files(&artifact);
    let dst = ws.path("restored.sqlite");
    restore(Command::new("sqlite3").arg(&dst), &artifact);
    let counts = |db: &std::path::Path| {
        run_ok(Command::new("sqlite3").arg(db).arg(
            "SELECT 'users', count(*) FROM users UNION ALL SELECT 'customers', count(*) FROM customers
             UNION ALL SELECT 'invoices', count(*) FROM invoices UNION ALL SELECT 'pdfs', count(pdf) FROM invoices
             UNION ALL SELECT 'schema', count(*) FROM sqlite_schema",
        ))
    };
    assert_eq!(counts(&src), counts(&dst));
    assert!(counts(&dst).contains("invoices|2000"), "{}", counts(&dst));
}
