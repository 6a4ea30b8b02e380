//! `on-failure STEP` hooks: a command that runs after STEP only when STEP failed, and is left
//! out without a record when it succeeded.

use crate::harness::Workspace;

fn workspace() -> Workspace {
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
            command page-oncall {
                run "sh" "-c" "echo \"$OPS_STEP after a failed dump${APP_SECRET:+, seeing $APP_SECRET}${TOKEN:+, token $TOKEN}\" >> paged.txt"
                on-failure db
                env {
                    TOKEN env=HOOK_TOKEN
                }
            }
        }"#,
    )
    // In ops-run's environment (as the package's env file puts it): the hook must not see it,
    // only what its `env` block names.
    .env("APP_SECRET", "app-Secret-31")
    .env("HOOK_TOKEN", "given");
    rusqlite::Connection::open(ws.path("app.db"))
        .unwrap()
        .execute_batch("CREATE TABLE t (x INTEGER);")
        .unwrap();
    ws
}

#[test]
fn an_on_failure_hook_runs_only_when_its_step_failed() {
    let ws = workspace();
    let show = ws.run(&["plan", "show"]).stdout();
    assert!(show.contains("runs when it fails, after app/db"), "{show}");

    let r = ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(!ws.path("paged.txt").exists());
    assert!(!r.stdout().contains("page-oncall"), "{}", r.stdout());
    assert!(
        ws.activities().iter().all(|a| a["step"] != "page-oncall"),
        "a hook that did not run left a record"
    );

    // The database is gone: the dump fails, and the hook runs after it.
    std::fs::remove_file(ws.path("app.db")).unwrap();
    let r = ws.run_at("2026-11-28T11:00:00Z", &["run", "db"]);
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    assert_eq!(
        std::fs::read_to_string(ws.path("paged.txt")).unwrap(),
        "page-oncall after a failed dump, token given\n"
    );
    let hook = ws
        .activities()
        .into_iter()
        .find(|a| a["step"] == "page-oncall")
        .unwrap();
    assert_eq!(hook["status"], "success");
}

#[test]
fn an_on_failure_hook_must_name_a_step() {
    let ws = Workspace::with_plan(
        r#"plan app {
            base "backups"
            command page {
                run "true"
                on-failure nothing
            }
        }"#,
    );
    let r = ws.run(&["plan", "validate"]);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(r.stderr().contains("nothing"), "{}", r.stderr());
}
