//! An operator's first week: what fails names its cause and its fix. A failed tool's own
//! error line travels to the console, `status`, and the alert.

use crate::engines::{psql, run_ok, unique, var};
use crate::harness::Workspace;
use crate::ownership::Cleanup;

/// A login role without CREATEDB that owns a small database, and the statements that remove
/// both when dropped.
pub fn role_without_createdb() -> (String, String, Cleanup) {
    let role = unique("ops_nocreate");
    let db = unique("ops_nocreate_src");
    let password = format!("pw-{role}");
    let cleanup = Cleanup(vec![
        {
            let mut c = psql("postgres");
            c.args(["-c", &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")]);
            c
        },
        {
            let mut c = psql("postgres");
            c.args(["-c", &format!("DROP ROLE IF EXISTS {role}")]);
            c
        },
    ]);
    run_ok(psql("postgres").args([
        "-c",
        &format!("CREATE ROLE {role} LOGIN NOCREATEDB PASSWORD '{password}'"),
        "-c",
        &format!("GRANT {role} TO {}", var("OPS_TEST_PG_USER")),
        "-c",
        &format!("CREATE DATABASE {db} OWNER {role}"),
    ]));
    let mut as_role = std::process::Command::new("psql");
    as_role
        .env("PGPASSWORD", &password)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
        .arg(var("OPS_TEST_PG_HOST"))
        .args(["-p", &var("OPS_TEST_PG_PORT"), "-U", &role, "-d", &db])
        .args(["-c", "CREATE TABLE t (i int); INSERT INTO t VALUES (1)"]);
    run_ok(&mut as_role);
    (role, db, cleanup)
}

pub fn plan_as(role: &str, db: &str) -> String {
    format!(
        r#"plan app {{
            base "backups"
            database main {{
                engine postgres
                host "{}"
                port {}
                name {db}
                user {role}
                password env=ROLE_PW
            }}
            dump db {{
                database main
            }}
            verify restore {{
                dump db
            }}
        }}"#,
        var("OPS_TEST_PG_HOST"),
        var("OPS_TEST_PG_PORT"),
    )
}

#[test]
#[ignore = "needs PostgreSQL; run scripts/test"]
fn a_failed_verify_says_the_servers_own_words() {
    let (role, db, _cleanup) = role_without_createdb();
    let ws = Workspace::with_plan(&plan_as(&role, &db)).env("ROLE_PW", &format!("pw-{role}"));
    assert_eq!(ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]).code(), 0);
    let r = ws.run_at("2026-11-28T10:01:00Z", &["run", "restore"]);
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    const WORDS: &str = "permission denied to create database";
    assert!(r.stdout().contains(WORDS), "{}", r.stdout());
    let status = ws
        .run_at("2026-11-28T10:02:00Z", &["status", "--json"])
        .stdout();
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let check = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "app/restore")
        .unwrap()
        .clone();
    assert!(check["detail"].as_str().unwrap().contains(WORDS), "{check}");
    let report = ws.run_at("2026-11-28T10:02:00Z", &["report", "--out", "report.md"]);
    assert_eq!(report.code(), 0, "{}", report.stderr());
    let text = std::fs::read_to_string(ws.path("report.md")).unwrap();
    assert!(text.contains(WORDS), "{text}");
}

/// `doctor` as the output a user reads, and its exit code.
fn doctor(ws: &Workspace) -> (i32, String) {
    let r = ws.run(&["doctor"]);
    (r.code(), format!("{}{}", r.stdout(), r.stderr()))
}

#[test]
#[ignore = "needs PostgreSQL and restic, as root; run scripts/test"]
fn doctor_names_each_problem_with_its_fix_before_the_timer_runs() {
    use std::os::unix::fs::PermissionsExt;
    assert!(
        rustix::process::geteuid().is_root(),
        "scripts/test runs as root"
    );
    let (role, db, _cleanup) = role_without_createdb();
    let plan = plan_as(&role, &db).replace(
        "verify restore {",
        "snapshot files {\n                paths \"data\"\n                repository \"REPO\"\n                password env=ROLE_PW\n                init #true\n            }\n            verify restore {",
    );
    let ws = Workspace::new().env("ROLE_PW", &format!("pw-{role}"));
    std::fs::set_permissions(ws.path(""), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The service's user (nobody here) owns the state and the base; the repository's folder
    // is root's.
    for d in ["state", "backups", "data", "root-only"] {
        std::fs::create_dir_all(ws.path(d)).unwrap();
    }
    for d in ["state", "backups", "data"] {
        std::os::unix::fs::chown(ws.path(d), Some(65534), Some(65534)).unwrap();
    }
    let repo = ws.path("root-only/repo");
    ws.write(
        "plans/main.kdl",
        &plan.replace("REPO", &repo.display().to_string()),
    );
    let (code, out) = doctor(&ws);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("acting as nobody"), "{out}");
    assert!(
        out.contains(&format!("ALTER ROLE {role} CREATEDB;")),
        "{out}"
    );
    assert!(
        out.contains(&format!("install -d -o nobody -m 0750 {}", repo.display())),
        "{out}"
    );
    assert!(out.contains(&format!("logs in to {db}")), "{out}");
    // Fixed: the role may create databases, the folder is the service's: a clean bill.
    run_ok(psql("postgres").args(["-c", &format!("ALTER ROLE {role} CREATEDB")]));
    std::fs::create_dir_all(&repo).unwrap();
    std::os::unix::fs::chown(&repo, Some(65534), Some(65534)).unwrap();
    let (code, out) = doctor(&ws);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("may create the scratch databases"), "{out}");
    assert!(!out.contains("PROBLEM"), "{out}");
}

/// What bash completes for `words` (the last one being completed), with the script
/// `ops-run completions bash` prints, sourced as bash-completion would.
fn bash_completes(words: &[&str]) -> Vec<String> {
    let script = format!(
        r#"source <("{bin}" completions bash)
COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))
COMP_LINE="${{COMP_WORDS[*]}}"; COMP_POINT=${{#COMP_LINE}}
_ops__run ops-run "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
        bin = crate::harness::BIN,
        words = words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_past_the_first_word() {
    let plan = bash_completes(&["ops-run", "plan", ""]);
    for w in ["validate", "show", "apply"] {
        assert!(plan.contains(&w.to_string()), "{plan:?}");
    }
    let restore = bash_completes(&["ops-run", "restore", "db", "--"]);
    for w in ["--to", "--replace", "--at", "--dry-run"] {
        assert!(restore.contains(&w.to_string()), "{restore:?}");
    }
    let top = bash_completes(&["ops-run", "doc"]);
    assert_eq!(top, ["doctor"]);
    for shell in ["zsh", "fish"] {
        let r = crate::harness::Workspace::new().run(&["completions", shell]);
        assert_eq!(r.code(), 0, "{}", r.stderr());
        assert!(r.stdout().contains("restore"), "{shell}: {}", r.stdout());
    }
}
