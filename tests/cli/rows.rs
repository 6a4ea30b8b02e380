//! Rows: every dump's manifest holds the rows of each table as the source had them; every
//! restore compares what came back with it; a table that loses most of its rows between two
//! dumps is named the next morning, and the dump from before is never pruned.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::engines::{mariadb, psql, run_ok, unique, var};
use crate::harness::Workspace;
use crate::receiver::Receiver;
use crate::restore::{drop_my, drop_pg};

/// A plan `app` on the test server of `engine` (`postgres` with `PG` variables, `mariadb` with
/// `MY`): database `name`, a nightly `dump db` with `dump_extra`, a `verify v`, and `more`.
fn server_plan(engine: &str, vars: &str, name: &str, dump_extra: &str, more: &str) -> String {
    format!(
        r#"plan app {{
            base "backups"
            apply-stale-after "30d"
            apply-fail-after "30d"
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
                schedule "0 2 * * *"
                {dump_extra}
            }}
            verify v {{
                dump db
                schedule "0 2 * * *"
            }}
            {more}
        }}"#,
        var(&format!("OPS_TEST_{vars}_HOST")),
        var(&format!("OPS_TEST_{vars}_PORT")),
        var(&format!("OPS_TEST_{vars}_USER")),
    )
}

fn pg_workspace(name: &str, dump_extra: &str, more: &str) -> Workspace {
    Workspace::with_plan(&server_plan("postgres", "PG", name, dump_extra, more))
        .env("APP_DB_PASSWORD", &var("OPS_TEST_PG_PASSWORD"))
}

fn pg_sql(db: &str, sql: &str) -> String {
    run_ok(psql(db).args(["-c", sql]))
}

/// The activity of `kind` made last.
fn newest(ws: &Workspace, kind: &str) -> Value {
    ws.activities()
        .into_iter()
        .rev()
        .find(|a| a["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} activity"))
}

fn manifest_of(dump: &Value) -> Value {
    let path = dump["meta"]["manifest"].as_str().expect("a manifest path");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn tables_of(manifest: &Value) -> BTreeMap<String, u64> {
    manifest["tables"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect()
}

/// Every table of the source with `count(*)`, named as pg_dump names it (`schema.table`,
/// each part quoted when it needs it); a partitioned table's rows are its partitions'.
fn pg_source_counts(db: &str) -> BTreeMap<String, u64> {
    let names = pg_sql(
        db,
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1",
    );
    names
        .lines()
        .map(|t| {
            let n = pg_sql(db, &format!("SELECT count(*) FROM ONLY {t}"));
            (t.to_string(), n.trim().parse().unwrap())
        })
        .collect()
}

/// A table with no rows, one with 100,000, strings that look like row ends and escapes, a
/// partitioned table, and a schema and table whose names need quotes.
const PG_FIXTURE: &str = r#"
CREATE TABLE empty_one (id int);
CREATE TABLE big (id int PRIMARY KEY, note text);
INSERT INTO big SELECT g, 'row ' || g FROM generate_series(1, 100000) g;
CREATE TABLE tricky (id serial PRIMARY KEY, s text);
INSERT INTO tricky (s) VALUES ('a),(b'), ('it''s'), (E'back\\slash'), (E'new\nline'),
  (E'tab\there'), ('\.'), (E'\\.\n\\.'), (E'\r\n'), ('"quoted"'), (NULL);
CREATE TABLE events (id int, at date) PARTITION BY RANGE (at);
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO events SELECT g, date '2025-06-01' + (g % 400) FROM generate_series(1, 3000) g;
CREATE SCHEMA "Sales Team";
CREATE TABLE "Sales Team"."Order Items" (id int);
INSERT INTO "Sales Team"."Order Items" SELECT generate_series(1, 7);
"#;

#[test]
#[ignore = "needs PostgreSQL; run scripts/test"]
fn postgres_manifest_counts_are_the_sources_and_every_restore_checks_them() {
    let src = unique("ops_rows_src");
    let dst = unique("ops_rows_dst");
    let _cleanup = drop_pg(&[&src, &dst]);
    pg_sql("postgres", &format!("CREATE DATABASE {src}"));
    run_ok(psql(&src).args(["-c", PG_FIXTURE]));
    let ws = pg_workspace(&src, "", "");
    let r = ws.run_at("2026-12-04T02:00:00Z", &["plan", "apply"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());

    let dump = newest(&ws, "db_backup");
    let m = manifest_of(&dump);
    let source = pg_source_counts(&src);
    assert_eq!(tables_of(&m), source);
    assert_eq!(source["public.big"], 100_000);
    assert_eq!(source["public.tricky"], 10);
    assert_eq!(source["public.empty_one"], 0);
    assert_eq!(source["\"Sales Team\".\"Order Items\""], 7);
    assert_eq!(
        source["public.events_2025"] + source["public.events_2026"],
        3000
    );
    assert_eq!(m["rows"].as_u64(), Some(source.values().sum()));
    assert_eq!(m["engine"], "postgres");
    // The manifest describes the file beside it.
    let artifact = dump["meta"]["artifact"].as_str().unwrap();
    assert_eq!(m["sha256"], dump["meta"]["sha256"]);
    assert_eq!(
        m["bytes"].as_u64(),
        Some(std::fs::metadata(artifact).unwrap().len())
    );
    assert_eq!(dump["meta"]["rows"], m["rows"]);

    // The verify counted every table and found the dump's rows.
    let verify = newest(&ws, "verify_restore");
    assert_eq!(verify["status"], "success", "{verify}");
    let log = std::fs::read_to_string(verify["meta"]["verify_log"].as_str().unwrap()).unwrap();
    for (table, rows) in &source {
        let line = format!("rows: {table} {} (as dumped)", thousands(*rows));
        assert!(log.contains(&line), "{line} not in\n{log}");
    }
    assert_eq!(verify["meta"]["rows"], m["rows"]);

    // So does a restore, and it says so.
    let r = ws.run_at(
        "2026-12-04T03:00:00Z",
        &["restore", "db", "db", "--to", &dst],
    );
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(
        r.stdout().contains(&format!(
            "{} rows (every table as dumped)",
            thousands(m["rows"].as_u64().unwrap())
        )),
        "{}",
        r.stdout()
    );
    assert_eq!(pg_source_counts(&dst), source);
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn sha256_hex(path: &Path) -> String {
    let out = run_ok(Command::new("sha256sum").arg(path));
    out.split_whitespace().next().unwrap().to_string()
}

/// Rewrites a gzip dump with `edit` applied to its SQL, and its sidecar and manifest to match
/// the new bytes — all but the row counts, as a dump damaged upstream of the hash would be.
fn edit_dump(artifact: &Path, edit: impl FnOnce(&str) -> String) {
    let sql = run_ok(Command::new("gzip").arg("-dc").arg(artifact));
    let edited = edit(&sql);
    let mut gz = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = gz.stdin.take().unwrap();
    let text = edited.clone();
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()).unwrap());
    let out = gz.wait_with_output().unwrap();
    writer.join().unwrap();
    std::fs::write(artifact, &out.stdout).unwrap();
    let name = artifact.file_name().unwrap().to_string_lossy().into_owned();
    let hash = sha256_hex(artifact);
    std::fs::write(
        PathBuf::from(format!("{}.sha256", artifact.display())),
        format!("{hash}  {name}\n"),
    )
    .unwrap();
    let mpath = PathBuf::from(format!("{}.manifest.json", artifact.display()));
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
    m["sha256"] = hash.into();
    m["bytes"] = out.stdout.len().into();
    m["uncompressed_bytes"] = edited.len().into();
    std::fs::write(&mpath, serde_json::to_string_pretty(&m).unwrap()).unwrap();
}

/// `sql` without ten rows from the middle of the `COPY` block of `table`.
fn without_ten_rows(sql: &str, table: &str) -> String {
    let lines: Vec<&str> = sql.split_inclusive('\n').collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with(&format!("COPY {table} ")))
        .expect("the table's COPY block");
    let end = start
        + lines[start..]
            .iter()
            .position(|l| *l == "\\.\n")
            .expect("the block's end");
    let middle = (start + end) / 2;
    lines
        .iter()
        .enumerate()
        .filter(|(i, _)| !(middle..middle + 10).contains(i))
        .map(|(_, l)| *l)
        .collect()
}

#[test]
#[ignore = "needs PostgreSQL; run scripts/test"]
fn a_dump_missing_ten_rows_of_one_copy_block_fails_verify_and_restore_by_name() {
    let src = unique("ops_rows_cut");
    let dst = unique("ops_rows_cut_dst");
    let _cleanup = drop_pg(&[&src, &dst]);
    pg_sql("postgres", &format!("CREATE DATABASE {src}"));
    pg_sql(
        &src,
        "CREATE TABLE customers (id int PRIMARY KEY);
         INSERT INTO customers SELECT generate_series(1, 500);
         CREATE TABLE orders (id int PRIMARY KEY, note text);
         INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 1000) g;",
    );
    let ws = pg_workspace(&src, "", "");
    let r = ws.run_at("2026-12-04T02:00:00Z", &["plan", "apply", "--only", "db"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let artifact = PathBuf::from(
        newest(&ws, "db_backup")["meta"]["artifact"]
            .as_str()
            .unwrap(),
    );
    edit_dump(&artifact, |sql| without_ten_rows(sql, "public.orders"));

    let r = ws.run_at("2026-12-04T02:10:00Z", &["run", "v"]);
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    let verify = newest(&ws, "verify_restore");
    assert_eq!(verify["status"], "failed");
    let summary = verify["log_excerpt"].as_str().unwrap();
    assert!(
        summary.contains("public.orders: dump 1,000 rows, restored 990"),
        "{summary}"
    );
    let result = summary
        .lines()
        .find(|l| l.starts_with("result: "))
        .unwrap_or_default();
    assert!(
        result.contains("public.orders") && !result.contains("customers"),
        "{result}"
    );
    let r = ws.run_at("2026-12-04T02:20:00Z", &["status"]);
    assert_eq!(r.code(), 2, "{}", r.stdout());

    // A restore of that dump stops before the target exists.
    let r = ws.run_at(
        "2026-12-04T02:30:00Z",
        &["restore", "db", "db", "--to", &dst],
    );
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    let said = format!("{}{}", r.stdout(), r.stderr());
    assert!(
        said.contains("public.orders: dump 1,000 rows, restored 990"),
        "{said}"
    );
    let exists = pg_sql(
        "postgres",
        &format!("SELECT count(*) FROM pg_database WHERE datname LIKE '{dst}%'"),
    );
    assert_eq!(
        exists.trim(),
        "0",
        "a database of the failed restore was left"
    );
}

/// The webhook messages received, each as its (change, check, state) triples.
fn webhook_changes(rx: &Receiver) -> Vec<Vec<(String, String, String)>> {
    rx.take()
        .into_iter()
        .map(|r| {
            let v: Value = serde_json::from_str(&r.body).unwrap();
            v["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["change"].as_str().unwrap().to_string(),
                        c["check"].as_str().unwrap_or_default().to_string(),
                        c["state"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .collect()
}

#[test]
#[ignore = "needs PostgreSQL; run scripts/test"]
fn a_table_that_loses_most_of_its_rows_is_named_once_and_allow_drop_and_expect_tables_decide() {
    let src = unique("ops_rows_gone");
    let _cleanup = drop_pg(&[&src]);
    pg_sql("postgres", &format!("CREATE DATABASE {src}"));
    pg_sql(
        &src,
        "CREATE TABLE customers (id int PRIMARY KEY);
         INSERT INTO customers SELECT generate_series(1, 3000);
         CREATE TABLE orders (id int PRIMARY KEY);
         INSERT INTO orders SELECT generate_series(1, 20000);
         CREATE TABLE sessions (id int PRIMARY KEY);
         INSERT INTO sessions SELECT generate_series(1, 5000);",
    );
    let rx = Receiver::start();
    let hook = "alert webhook {\n url env=HOOK_URL\n }";
    let ws = pg_workspace(&src, "", hook).env("HOOK_URL", &rx.url("/hook"));
    let apply = |at: &str| ws.run_at(at, &["plan", "apply"]);
    let r = apply("2026-12-03T02:00:00Z");
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(webhook_changes(&rx).is_empty());

    // Overnight, 95 % of the orders vanish.
    pg_sql(&src, "DELETE FROM orders WHERE id > 1000");
    let r = apply("2026-12-04T02:00:00Z");
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let dump = newest(&ws, "db_backup");
    assert_eq!(dump["status"], "incomplete", "{dump}");
    let said = "public.orders: 20,000 → 1,000 rows (−95 %) since 2026-12-03 02:00";
    assert!(
        dump["log_excerpt"].as_str().unwrap().contains(said),
        "{}",
        dump["log_excerpt"]
    );
    assert!(!dump["log_excerpt"].as_str().unwrap().contains("customers"));
    // The dump is kept: it is what the database holds now.
    assert!(Path::new(dump["meta"]["artifact"].as_str().unwrap()).exists());
    let status = ws.run_at("2026-12-04T03:00:00Z", &["status"]);
    assert_eq!(status.code(), 1, "{}", status.stdout());
    assert!(status.stdout().contains(said), "{}", status.stdout());
    let json = ws.run_at("2026-12-04T03:00:00Z", &["status", "--json"]);
    let v: Value = serde_json::from_str(&json.stdout()).unwrap();
    let check = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "app/db")
        .unwrap();
    assert_eq!(check["state"], "incomplete");
    assert_eq!(check["tables"]["public.orders"], 1000);
    assert_eq!(check["rows"], 1000 + 3000 + 5000);
    assert_eq!(
        webhook_changes(&rx),
        [vec![(
            "alert".to_string(),
            "app/db".to_string(),
            "incomplete".to_string()
        )]]
    );
    // Said once: the next night compares with the smaller table, and all is well again.
    let r = apply("2026-12-05T02:00:00Z");
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert_eq!(newest(&ws, "db_backup")["status"], "success");
    assert_eq!(
        webhook_changes(&rx),
        [vec![(
            "recovered".to_string(),
            "app/db".to_string(),
            "ok".to_string()
        )]]
    );

    // Sessions may empty: the plan says so, and nothing is said.
    ws.write(
        "plans/main.kdl",
        &server_plan(
            "postgres",
            "PG",
            &src,
            "allow-drop \"sessions\"\nexpect-tables \"customers\" \"orders\"",
            hook,
        ),
    );
    pg_sql(&src, "DELETE FROM sessions");
    let r = apply("2026-12-06T02:00:00Z");
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert_eq!(newest(&ws, "db_backup")["status"], "success");
    assert!(webhook_changes(&rx).is_empty());

    // A table the plan expects is dropped: critical, by name, and it stays so.
    pg_sql(&src, "DROP TABLE customers");
    // A failure fails the apply too (cron mails it).
    let r = apply("2026-12-07T02:00:00Z");
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    let dump = newest(&ws, "db_backup");
    assert_eq!(dump["status"], "incomplete");
    let gone = "public.customers: gone (had 3,000 rows) since 2026-12-06 02:00";
    assert!(
        dump["log_excerpt"].as_str().unwrap().contains(gone),
        "{dump}"
    );
    let status = ws.run_at("2026-12-07T03:00:00Z", &["status"]);
    assert_eq!(status.code(), 2, "{}", status.stdout());
    assert!(status.stdout().contains(gone), "{}", status.stdout());
    assert_eq!(
        webhook_changes(&rx),
        [vec![(
            "alert".to_string(),
            "app/db".to_string(),
            "fail".to_string()
        )]]
    );
    // Another dump the same day (within the alert's renotify-after): still critical, and
    // the dump before the loss stays the baseline.
    let r = ws.run_at("2026-12-07T20:00:00Z", &["plan", "apply", "--force"]);
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    let status = ws.run_at("2026-12-07T21:00:00Z", &["status"]);
    assert_eq!(
        status.code(),
        2,
        "the failure went away unseen: {}",
        status.stdout()
    );
    let again = webhook_changes(&rx);
    assert!(again.is_empty(), "a second alert for one cause: {again:?}");
}

/// A table with no rows, one with 100,000, and strings that look like row ends, quotes and
/// escapes to a parser that counts `INSERT` tuples.
const MY_FIXTURE: &str = r#"
CREATE TABLE empty_one (id INT);
CREATE TABLE big (id INT PRIMARY KEY, note VARCHAR(40));
INSERT INTO big SELECT seq, CONCAT('row ', seq) FROM seq_1_to_100000;
CREATE TABLE tricky (id INT AUTO_INCREMENT PRIMARY KEY, s TEXT, b BLOB);
INSERT INTO tricky (s, b) VALUES ('a),(b', X'28292C28'), ('it''s', NULL), ('back\\slash', NULL),
  ('new\nline', NULL), ('\'),(\'', NULL), ('"),("', NULL), (');', NULL), (NULL, X'5C27');
CREATE TABLE `odd ``name` (id INT);
INSERT INTO `odd ``name` VALUES (1), (2);
"#;

#[test]
#[ignore = "needs MariaDB; run scripts/test"]
fn mariadb_manifest_counts_are_the_sources_and_every_restore_checks_them() {
    let src = unique("ops_rows_my");
    let dst = unique("ops_rows_my_dst");
    let _cleanup = drop_my(&[&src, &dst]);
    run_ok(mariadb(None).args(["-e", &format!("CREATE DATABASE {src}")]));
    run_ok(mariadb(Some(&src)).args(["-e", MY_FIXTURE]));
    let ws = Workspace::with_plan(&server_plan("mariadb", "MY", &src, "", ""))
        .env("APP_DB_PASSWORD", &var("OPS_TEST_MY_PASSWORD"));
    let r = ws.run_at("2026-12-04T02:00:00Z", &["plan", "apply"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());

    let source: BTreeMap<String, u64> = run_ok(mariadb(Some(&src)).args(["-e", "SHOW TABLES"]))
        .lines()
        .map(|t| {
            let quoted = t.replace('`', "``");
            let n = run_ok(
                mariadb(Some(&src)).args(["-e", &format!("SELECT count(*) FROM `{quoted}`")]),
            );
            (t.to_string(), n.trim().parse().unwrap())
        })
        .collect();
    assert_eq!(source["big"], 100_000);
    assert_eq!(source["tricky"], 8);
    assert_eq!(source["empty_one"], 0);
    assert_eq!(source["odd `name"], 2);
    let dump = newest(&ws, "db_backup");
    let m = manifest_of(&dump);
    assert_eq!(tables_of(&m), source);
    let verify = newest(&ws, "verify_restore");
    assert_eq!(verify["status"], "success", "{verify}");
    assert_eq!(verify["meta"]["rows"], m["rows"]);

    let r = ws.run_at(
        "2026-12-04T03:00:00Z",
        &["restore", "db", "db", "--to", &dst],
    );
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(
        r.stdout().contains("rows (every table as dumped)"),
        "{}",
        r.stdout()
    );
}

fn sqlite_workspace(dump_extra: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write(
        "plans/main.kdl",
        &format!(
            r#"plan app {{
                base "backups"
                apply-stale-after "30d"
                apply-fail-after "30d"
                database main {{
                    engine sqlite
                    path "{}"
                }}
                dump db {{
                    database main
                    schedule "0 2 * * *"
                    {dump_extra}
                }}
                verify v {{
                    dump db
                    schedule "0 2 * * *"
                }}
            }}"#,
            ws.path("app.db").display()
        ),
    );
    ws
}

#[test]
fn sqlite_manifest_counts_are_the_sources_and_verify_checks_them() {
    let ws = sqlite_workspace("");
    let conn = rusqlite::Connection::open(ws.path("app.db")).unwrap();
    conn.execute_batch(
        "CREATE TABLE empty_one (id INTEGER);
         CREATE TABLE big (id INTEGER PRIMARY KEY, note TEXT);
         WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 100000)
           INSERT INTO big SELECT n, 'row ' || n FROM g;
         CREATE TABLE tricky (s TEXT);
         INSERT INTO tricky VALUES ('a),(b'), ('it''s'), ('back\\slash'), (char(10)), (');'), (NULL);
         CREATE TABLE \"odd \"\"name\" (id INTEGER);
         INSERT INTO \"odd \"\"name\" VALUES (1);",
    )
    .unwrap();
    let r = ws.run_at("2026-12-04T02:00:00Z", &["plan", "apply"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let mut source = BTreeMap::new();
    for t in ["empty_one", "big", "tricky", "odd \"name"] {
        let n: u64 = conn
            .query_row(
                &format!("SELECT count(*) FROM \"{}\"", t.replace('"', "\"\"")),
                [],
                |r| r.get(0),
            )
            .unwrap();
        source.insert(t.to_string(), n);
    }
    assert_eq!(source["big"], 100_000);
    let dump = newest(&ws, "db_backup");
    let m = manifest_of(&dump);
    assert_eq!(tables_of(&m), source);
    let verify = newest(&ws, "verify_restore");
    assert_eq!(verify["status"], "success", "{verify}");
    assert_eq!(verify["meta"]["rows"], m["rows"]);

    // The manifest has its sidecar's modes.
    use std::os::unix::fs::PermissionsExt;
    let artifact = dump["meta"]["artifact"].as_str().unwrap();
    let mode = |p: String| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(
        mode(format!("{artifact}.manifest.json")),
        mode(format!("{artifact}.sha256"))
    );
    // Metrics, status --json and the runbook carry the rows.
    let metrics = ws.run_at("2026-12-04T02:30:00Z", &["metrics"]).stdout();
    let total: u64 = source.values().sum();
    assert!(
        metrics.contains(&format!(
            "ops_run_dump_rows{{plan=\"app\",step=\"db\"}} {total}"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("ops_run_dump_tables{plan=\"app\",step=\"db\"} 4"),
        "{metrics}"
    );
    let json = ws
        .run_at("2026-12-04T02:30:00Z", &["status", "--json"])
        .stdout();
    let v: Value = serde_json::from_str(&json).unwrap();
    let check = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "app/db")
        .unwrap()
        .clone();
    assert_eq!(check["tables"]["big"], 100_000);
    let r = ws.run_at("2026-12-04T02:30:00Z", &["runbook"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let runbook = std::fs::read_to_string(ws.path("backups/reports/dr-runbook.md")).unwrap();
    assert!(runbook.contains("| big | 100,000 |"), "{runbook}");
    assert!(
        runbook.contains(&format!("it holds {} rows in 4 tables", thousands(total))),
        "{runbook}"
    );

    // A dump made before manifests still verifies, and says its rows were not checked.
    std::fs::remove_file(format!("{artifact}.manifest.json")).unwrap();
    let r = ws.run_at("2026-12-04T02:40:00Z", &["run", "v"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let verify = newest(&ws, "verify_restore");
    assert_eq!(verify["status"], "success", "{verify}");
    let log = std::fs::read_to_string(verify["meta"]["verify_log"].as_str().unwrap()).unwrap();
    assert!(log.contains("rows: not checked"), "{log}");
}

#[test]
fn retention_never_deletes_the_last_dump_before_data_went_missing() {
    let ws = sqlite_workspace("keep last=1");
    let conn = rusqlite::Connection::open(ws.path("app.db")).unwrap();
    conn.execute_batch(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY);
         WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 5000)
           INSERT INTO orders SELECT n FROM g;",
    )
    .unwrap();
    let apply = |at: &str| {
        let r = ws.run_at(at, &["plan", "apply", "--only", "db"]);
        assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    };
    apply("2026-12-01T02:00:00Z");
    apply("2026-12-02T02:00:00Z");
    conn.execute("DELETE FROM orders WHERE id > 100", [])
        .unwrap();
    apply("2026-12-03T02:00:00Z");
    assert_eq!(newest(&ws, "db_backup")["status"], "incomplete");
    // The page's card says the rows, what moved since the dump before, and the data gone.
    {
        let s = crate::serve::serve(&ws, Some("export OPS_NOW=2026-12-03T03:00:00Z"));
        let (code, _, page) =
            crate::serve::request(s.port, "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n");
        assert_eq!(code, 200);
        assert!(
            page.contains(
                "<dt>Rows</dt><dd>100 rows in 1 tables; since the dump before: orders −4,900</dd>"
            ),
            "{page}"
        );
        assert!(
            page.contains("data gone: orders: 5,000 → 100 rows"),
            "{page}"
        );
    }
    apply("2026-12-04T02:00:00Z");
    apply("2026-12-05T02:00:00Z");
    let mut dumps: Vec<String> = std::fs::read_dir(ws.path("backups/db"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql.gz"))
        .collect();
    dumps.sort();
    // Last 1 keeps the newest; the dump that found the loss and the one before it stay.
    assert_eq!(
        dumps,
        [
            "full-20261202-0200.sql.gz",
            "full-20261203-0200.sql.gz",
            "full-20261205-0200.sql.gz"
        ]
    );
    let prune = newest(&ws, "prune");
    let kept = prune["meta"]["kept"].to_string();
    assert!(
        kept.contains("last dump before data went missing"),
        "{kept}"
    );
    assert!(kept.contains("found data gone"), "{kept}");
    // Each dump's manifest went with it.
    assert!(
        !ws.path("backups/db/full-20261204-0200.sql.gz.manifest.json")
            .exists()
    );
    assert!(
        ws.path("backups/db/full-20261202-0200.sql.gz.manifest.json")
            .exists()
    );
}
