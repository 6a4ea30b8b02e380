//! The ordinary setup: the application's role owns the tables, a separate backup role that owns
//! nothing makes the dumps and runs the restore test. The verify leaves the dump's owners,
//! privileges and definers out (it passes); `ownership keep` loads them as dumped (it fails, as
//! it must for a role that may not take another's name).

use crate::engines::{mariadb, psql, run_ok, unique, var};
use crate::harness::Workspace;

/// Runs its statements when dropped: the scratch role and database go also when a test fails.
pub struct Cleanup(pub Vec<std::process::Command>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.output();
        }
    }
}

fn plan(database: &str) -> String {
    format!(
        r#"plan owned {{
            base "backups"
            {database}
            dump db {{
                database main
            }}
            verify restore {{
                dump db
                min-tables 2
            }}
            verify as-dumped {{
                dump db
                ownership keep
            }}
        }}"#
    )
}

/// The two verifies' outcomes, and the passing one's evidence.
fn check(ws: &Workspace, refusal: &str) {
    let r = ws.run(&[
        "plan",
        "apply",
        "--only",
        "db",
        "--only",
        "restore",
        "--only",
        "as-dumped",
    ]);
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    let acts = ws.activities();
    let of = |step: &str| acts.iter().find(|a| a["step"] == step).unwrap().clone();
    assert_eq!(of("db")["status"], "success", "{}", of("db"));
    let restore = of("restore");
    assert_eq!(restore["status"], "success", "{restore}");
    let log = std::fs::read_to_string(restore["meta"]["verify_log"].as_str().unwrap()).unwrap();
    let left_out: u64 = log
        .lines()
        .find_map(|l| l.strip_prefix("ownership: ignored ("))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no ownership line in\n{log}"));
    assert!(left_out > 0, "{log}");
    let kept = of("as-dumped");
    assert_eq!(kept["status"], "failed", "{kept}");
    let excerpt = kept["log_excerpt"].as_str().unwrap();
    assert!(excerpt.contains(refusal), "{excerpt}");
    assert!(excerpt.contains("ownership: kept as dumped"), "{excerpt}");
}

#[test]
#[ignore = "needs PostgreSQL; run scripts/test"]
fn postgres_backup_role_verifies_tables_it_does_not_own() {
    let src = unique("ops_own");
    let role = unique("ops_bk");
    let password = format!("bk-{}", std::process::id());
    let mut drop_db = psql("postgres");
    drop_db.args(["-c", &format!("DROP DATABASE IF EXISTS {src} WITH (FORCE)")]);
    let mut drop_role = psql("postgres");
    drop_role.args(["-c", &format!("DROP ROLE IF EXISTS {role}")]);
    let _cleanup = Cleanup(vec![drop_db, drop_role]);
    run_ok(psql("postgres").args(["-c", &format!("CREATE DATABASE {src}")]));
    run_ok(psql("postgres").args([
        "-c",
        &format!("CREATE ROLE {role} LOGIN CREATEDB PASSWORD '{password}'"),
    ]));
    run_ok(psql(&src).args([
        "-c",
        &format!(
            "CREATE TABLE accounts (id serial PRIMARY KEY, name text);
             CREATE TABLE invoices (id serial PRIMARY KEY, account int REFERENCES accounts, total numeric);
             INSERT INTO accounts (name) SELECT 'a' || g FROM generate_series(1, 50) g;
             INSERT INTO invoices (account, total) SELECT 1 + g % 50, g FROM generate_series(1, 200) g;
             CREATE VIEW big AS SELECT * FROM invoices WHERE total > 100;
             CREATE FUNCTION touch() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
             REVOKE ALL ON accounts FROM PUBLIC;
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};
             GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO {role};
             ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {role};"
        ),
    ]));
    let ws = Workspace::with_plan(&plan(&format!(
        r#"database main {{
            engine postgres
            host "{}"
            port {}
            name {src}
            user {role}
            password env=BACKUP_PASSWORD
        }}"#,
        var("OPS_TEST_PG_HOST"),
        var("OPS_TEST_PG_PORT"),
    )))
    .env("BACKUP_PASSWORD", &password);
    // PostgreSQL 15 says "must be member of role", 16 and later "must be able to SET ROLE".
    check(&ws, &format!("role \"{}\"", var("OPS_TEST_PG_USER")));
    let left = run_ok(psql("postgres").args([
        "-c",
        "SELECT datname FROM pg_database WHERE datname LIKE 'ops\\_verify\\_owned\\_%'",
    ]));
    assert_eq!(left.trim(), "", "scratch databases left behind");
}

#[test]
#[ignore = "needs MariaDB; run scripts/test"]
fn mariadb_backup_user_verifies_views_and_triggers_defined_by_another() {
    let src = unique("ops_own");
    let user = unique("ops_bk");
    let password = format!("bk-{}", std::process::id());
    let host = var("OPS_TEST_MY_HOST");
    let mut drop = mariadb(None);
    drop.args([
        "-e",
        &format!("DROP DATABASE IF EXISTS {src}; DROP USER IF EXISTS '{user}'@'{host}'"),
    ]);
    let _cleanup = Cleanup(vec![drop]);
    run_ok(mariadb(None).args([
        "-e",
        &format!(
            "CREATE DATABASE {src}; USE {src};
             CREATE TABLE accounts (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(50));
             CREATE TABLE invoices (id INT AUTO_INCREMENT PRIMARY KEY, account INT, total INT);
             INSERT INTO accounts (name) SELECT CONCAT('a', seq) FROM seq_1_to_50;
             INSERT INTO invoices (account, total) SELECT 1 + seq % 50, seq FROM seq_1_to_200;
             CREATE VIEW big AS SELECT * FROM invoices WHERE total > 100;
             CREATE TRIGGER named BEFORE INSERT ON accounts FOR EACH ROW SET NEW.name = UPPER(NEW.name);
             CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}';
             GRANT SELECT, SHOW VIEW, TRIGGER, LOCK TABLES, EVENT ON {src}.* TO '{user}'@'{host}';
             GRANT ALL ON `ops\\_verify\\_%`.* TO '{user}'@'{host}';"
        ),
    ]));
    let ws = Workspace::with_plan(&plan(&format!(
        r#"database main {{
            engine mariadb
            host "{host}"
            port {}
            name {src}
            user {user}
            password env=BACKUP_PASSWORD
        }}"#,
        var("OPS_TEST_MY_PORT"),
    )))
    .env("BACKUP_PASSWORD", &password);
    check(&ws, "SUPER");
    let left = run_ok(mariadb(None).args(["-e", "SHOW DATABASES LIKE 'ops\\_verify\\_owned\\_%'"]));
    assert_eq!(left.trim(), "", "scratch databases left behind");
}
