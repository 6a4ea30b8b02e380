//! `plan apply` and `run`: due decisions through OPS_NOW, hooks, --only/--force, dry runs,
//! validation errors, multi-file plans.

use crate::harness::Workspace;

const TWO_STEPS: &str = r#"
plan app {
    base "backups"
    timezone "Europe/Prague"
    command nightly {
        run "true"
        schedule "0 2 * * *"
    }
    command on-demand {
        run "true"
    }
}
"#;

#[test]
fn a_scheduled_step_runs_once_per_fire_time() {
    let ws = Workspace::with_plan(TWO_STEPS);
    // Never succeeded: due at once.
    let r = ws.run_at("2026-11-28T10:00:00Z", &["plan", "apply"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(
        r.stdout().contains("ok       app/nightly"),
        "{}",
        r.stdout()
    );
    // Ten minutes later: nothing due, nothing recorded, nothing printed.
    let r = ws.run_at("2026-11-28T10:10:00Z", &["plan", "apply"]);
    assert_eq!((r.code(), r.stdout().as_str()), (0, ""));
    assert_eq!(ws.statuses().len(), 1);
    // After 02:00 Prague (01:00 UTC) the next day: due again, one run.
    let r = ws.run_at("2026-11-29T01:00:30Z", &["plan", "apply"]);
    assert_eq!(r.code(), 0);
    // Three days later (three fire times missed): still one run.
    let r = ws.run_at("2026-12-02T12:00:00Z", &["plan", "apply"]);
    assert_eq!(r.code(), 0);
    let rows = ws.statuses();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        rows.iter()
            .all(|(s, st, t)| s == "nightly" && st == "success" && t == "schedule")
    );
}

#[test]
fn a_step_without_schedule_runs_only_when_named() {
    let ws = Workspace::with_plan(TWO_STEPS);
    ws.run(&["plan", "apply"]);
    assert_eq!(
        ws.statuses().iter().filter(|r| r.0 == "on-demand").count(),
        0
    );
    let r = ws.run(&["plan", "apply", "--only", "on-demand"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let r = ws.run(&["run", "app/on-demand"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let triggers: Vec<String> = ws
        .statuses()
        .into_iter()
        .filter(|r| r.0 == "on-demand")
        .map(|r| r.2)
        .collect();
    assert_eq!(triggers, ["manual", "manual"]);
}

#[test]
fn force_runs_a_step_that_is_not_due() {
    let ws = Workspace::with_plan(TWO_STEPS);
    ws.run_at("2026-11-28T10:00:00Z", &["plan", "apply"]);
    let r = ws.run_at(
        "2026-11-28T10:01:00Z",
        &["plan", "apply", "--only", "nightly", "--force"],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let last = ws.statuses().pop().unwrap();
    assert_eq!(last, ("nightly".into(), "success".into(), "force".into()));
}

#[test]
fn a_failed_step_is_retried_after_retry_after() {
    let ws = Workspace::with_plan(
        r#"plan app {
            base "backups"
            command flaky {
                run "false"
                schedule "0 2 * * *"
                retry-after "30m"
            }
        }"#,
    );
    assert_eq!(
        ws.run_at("2026-11-28T10:00:00Z", &["plan", "apply"]).code(),
        1
    );
    assert_eq!(
        ws.run_at("2026-11-28T10:20:00Z", &["plan", "apply"]).code(),
        0
    );
    assert_eq!(
        ws.run_at("2026-11-28T10:31:00Z", &["plan", "apply"]).code(),
        1
    );
    let rows = ws.statuses();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r.1 == "failed"));
}

#[test]
fn hooks_run_around_their_step_in_order() {
    let ws = Workspace::with_plan(
        r#"plan app {
            base "backups"
            command on {
                shell "echo on >> order.txt"
                before work
            }
            command work {
                shell "echo work >> order.txt"
                schedule "0 2 * * *"
            }
            command off {
                shell "echo off >> order.txt"
                after work
            }
        }"#,
    );
    let r = ws.run(&["plan", "apply"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert_eq!(
        std::fs::read_to_string(ws.path("order.txt")).unwrap(),
        "on\nwork\noff\n"
    );
}

#[test]
fn dry_run_prints_order_reasons_and_argv_and_runs_nothing() {
    let ws = Workspace::with_plan(
        r#"plan app {
            base "backups"
            timezone "UTC"
            command prepare {
                run "mkdir" "-p" "out dir"
                before work
            }
            command work {
                run "touch" "out dir/x"
                schedule "0 2 * * *"
            }
        }"#,
    );
    let r = ws.run_at("2026-11-28T10:00:00Z", &["plan", "apply", "--dry-run"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let out = r.stdout();
    let (header, rest) = out.split_once('\n').unwrap();
    assert!(
        header.starts_with("dry run at 2026-11-28T10:00:0"),
        "{header}"
    );
    assert!(
        header.ends_with("Z: 2 steps would run (jobs 2)"),
        "{header}"
    );
    assert_eq!(
        rest,
        "  1. app/prepare  command  [schedule] hook: runs before app/work\n\
         \x20      $ mkdir -p 'out dir'\n\
         \x20 2. app/work  command  [schedule] due: never succeeded\n\
         \x20      after: app/prepare\n\
         \x20      $ touch 'out dir/x'\n"
    );
    assert!(!ws.path("out dir").exists());
    assert!(!ws.path("state/ops.db").exists() || ws.statuses().is_empty());
}

#[test]
fn an_invalid_plan_runs_nothing_and_exits_2() {
    let ws = Workspace::with_plan(
        r#"plan app {
            base "backups"
            command good {
                shell "touch ran.txt"
                schedule "* * * * *"
            }
            command bad {
                run "true"
                schedule "every day"
            }
        }"#,
    );
    let r = ws.run(&["plan", "apply"]);
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("plans/main.kdl:9:26"), "{}", r.stderr());
    assert!(
        r.stderr().ends_with("1 error in plans; nothing ran\n"),
        "{}",
        r.stderr()
    );
    assert!(!ws.path("ran.txt").exists());
    assert!(!ws.path("state/ops.db").exists());
}

#[test]
fn errors_of_every_file_are_reported_in_one_pass() {
    let ws = Workspace::new();
    ws.write(
        "plans/a.kdl",
        "plan a {\n    base \"base-a\"\n    bse \"x\"\n}\n",
    );
    ws.write("plans/b.kdl", "plan b {\n    base \"base-b\"\n    command c {\n        run \"true\"\n        timeout 5m\n    }\n}\n");
    ws.write(
        "plans/c.kdl",
        "plan c {\n    base \"base-c\"\n    command d { run \"true\"; after nothing }\n}\n",
    );
    let r = ws.run(&["plan", "validate"]);
    assert_eq!(r.code(), 2);
    let err = r.stderr();
    for want in [
        "plans/a.kdl:3:5",
        "plans/b.kdl:5:17",
        "plans/c.kdl:3:35",
        "3 errors in plans",
    ] {
        assert!(err.contains(want), "missing {want} in:\n{err}");
    }
}

#[test]
fn step_names_resolve_across_plans_or_are_ambiguous() {
    let ws = Workspace::new();
    ws.write("plans/a.kdl", "plan a {\n    base \"base-oa\"\n    command hello { run \"true\" }\n    command only-a { run \"true\" }\n}\n");
    ws.write(
        "plans/b.kdl",
        "plan b {\n    base \"base-ob\"\n    command hello { run \"true\" }\n}\n",
    );
    let r = ws.run(&["run", "hello"]);
    assert_eq!(r.code(), 2);
    assert_eq!(
        r.stderr(),
        "error: step name `hello` is ambiguous; name one of: a/hello, b/hello\n"
    );
    assert_eq!(ws.run(&["run", "b/hello"]).code(), 0);
    assert_eq!(ws.run(&["run", "only-a"]).code(), 0);
    let r = ws.run(&["run", "only-b"]);
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr().contains("did you mean `only-a`?"),
        "{}",
        r.stderr()
    );
}

#[test]
fn env_file_supplies_variables_and_the_process_environment_wins() {
    let ws = Workspace::with_plan(
        r#"plan app {
            base "backups"
            command show {
                shell "echo \"$GREETING $NAME\" > out.txt"
                env {
                    GREETING env=FROM_FILE
                    NAME env=FROM_BOTH
                }
            }
        }"#,
    )
    .env("FROM_BOTH", "process");
    ws.write("vars.env", "# comment\nFROM_FILE=hello\nFROM_BOTH=file\n");
    let r = ws.run(&["--env-file", "vars.env", "run", "show"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(
        std::fs::read_to_string(ws.path("out.txt")).unwrap(),
        "hello process\n"
    );
}

#[test]
fn an_unset_variable_warns_at_validate_and_fails_its_step_only() {
    let ws = Workspace::with_plan(
        r#"plan app {
            base "backups"
            command needs-token {
                run "true"
                schedule "* * * * *"
                env { TOKEN env=OPS_TEST_NEVER_SET }
            }
            command other {
                run "true"
                schedule "* * * * *"
            }
        }"#,
    );
    let r = ws.run(&["plan", "validate"]);
    assert_eq!(r.code(), 0);
    assert!(
        r.stderr()
            .contains("warning: environment variable OPS_TEST_NEVER_SET is not set"),
        "{}",
        r.stderr()
    );
    let r = ws.run(&["plan", "apply"]);
    assert_eq!(r.code(), 1);
    assert!(
        r.stdout()
            .contains("env TOKEN: environment variable OPS_TEST_NEVER_SET is not set"),
        "{}",
        r.stdout()
    );
    let rows = ws.statuses();
    assert!(rows.contains(&("needs-token".into(), "failed".into(), "schedule".into())));
    assert!(rows.contains(&("other".into(), "success".into(), "schedule".into())));
}

#[test]
fn verify_auto_false_takes_verify_steps_off_the_schedule() {
    let plan = r#"plan app {
        base "backups"
        database main {
            engine sqlite
            path "x.sqlite"
        }
        dump db {
            database main
        }
        verify restore {
            dump db
            schedule "15 3 * * 0"
        }
    }"#;
    let ws = Workspace::with_plan(plan);
    let r = ws.run(&["plan", "apply", "--dry-run"]);
    assert!(
        r.stdout()
            .contains("app/restore  verify  [schedule] due: never succeeded"),
        "{}",
        r.stdout()
    );
    let ws = ws.env("OPS_VERIFY_AUTO", "false");
    let r = ws.run(&["plan", "apply", "--dry-run"]);
    assert!(
        r.stdout()
            .contains("app/restore  off the schedule (OPS_VERIFY_AUTO=false)"),
        "{}",
        r.stdout()
    );
}

#[test]
fn an_always_hook_runs_after_a_failed_step_and_a_plain_one_does_not() {
    let ws = Workspace::with_plan(
        r#"plan app {
            base "backups"
            command on {
                shell "echo on >> order.txt"
                before work
            }
            command work {
                shell "echo work >> order.txt; exit 1"
                schedule "0 2 * * *"
            }
            command off {
                shell "echo off >> order.txt"
                after work
                always #true
            }
            command notify {
                shell "echo notify >> order.txt"
                after work
            }
        }"#,
    );
    let r = ws.run(&["plan", "apply"]);
    assert_eq!(r.code(), 1, "{}", r.stdout());
    assert_eq!(
        std::fs::read_to_string(ws.path("order.txt")).unwrap(),
        "on\nwork\noff\n"
    );
    let mut rows = ws.statuses();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("notify".into(), "skipped".into(), "schedule".into()),
            ("off".into(), "success".into(), "schedule".into()),
            ("on".into(), "success".into(), "schedule".into()),
            ("work".into(), "failed".into(), "schedule".into()),
        ]
    );
}

#[test]
fn activity_filters_are_words_of_the_log_and_a_typo_is_refused() {
    let ws = Workspace::with_plan(TWO_STEPS);
    assert_eq!(
        ws.run_at("2026-11-28T10:00:00Z", &["plan", "apply"]).code(),
        0
    );
    let r = ws.run(&["activities", "--type", "command", "--status", "success"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(r.stdout().contains("app/nightly"), "{}", r.stdout());
    // `db-backup` for `db_backup`: a usage error naming the words, not an empty list.
    let r = ws.run(&["activities", "--type", "db-backup"]);
    assert_eq!(r.code(), 2, "{}", r.stdout());
    assert!(r.stderr().contains("db_backup"), "{}", r.stderr());
    let r = ws.run(&["activities", "--status", "ok"]);
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("success"), "{}", r.stderr());
}

#[test]
fn help_with_a_subcommand_name_prints_that_subcommands_usage() {
    let ws = Workspace::with_plan(TWO_STEPS);
    let r = ws.run(&["help", "plan"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(r.stdout().contains("Usage: ops-run plan"), "{}", r.stdout());
    assert!(r.stdout().contains("apply"), "{}", r.stdout());
    let r = ws.run(&["help", "no-such-thing"]);
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("no help for"), "{}", r.stderr());
}

#[test]
fn the_state_database_and_its_lock_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let ws = Workspace::with_plan(TWO_STEPS);
    assert_eq!(
        ws.run_at("2026-11-28T10:00:00Z", &["plan", "apply"]).code(),
        0
    );
    for f in ["state/ops.db", "state/ops.db.lock"] {
        let mode = std::fs::metadata(ws.path(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f} is {mode:o}");
    }
}

#[test]
fn a_second_state_database_on_the_same_base_is_refused_and_runs_nothing() {
    let ws = Workspace::with_plan(
        r#"plan app {
            base "backups"
            command hello {
                run "sh" "-c" "echo ran >> ran.txt"
            }
        }"#,
    );
    assert_eq!(ws.run(&["run", "hello"]).code(), 0);
    let other = ws.path("other/ops.db");
    let r = ws.run(&["--state", other.to_str().unwrap(), "run", "hello"]);
    assert_eq!(r.code(), 2, "{}{}", r.stdout(), r.stderr());
    assert!(
        r.stderr().contains("belongs to the state database")
            && r.stderr()
                .contains(&ws.path("state/ops.db").display().to_string()),
        "{}",
        r.stderr()
    );
    let ran = std::fs::read_to_string(ws.path("ran.txt")).unwrap();
    assert_eq!(ran.lines().count(), 1, "the refused run ran: {ran}");
    // The owner goes on as before.
    assert_eq!(ws.run(&["run", "hello"]).code(), 0);
}

#[test]
fn an_env_threshold_out_of_range_is_refused_not_wrapped() {
    let ws = Workspace::with_plan(
        r#"plan app {
            base "backups"
            command hello { run "true" }
        }"#,
    )
    .env("OPS_DB_DUMP_STALE_MIN", "307445734561825861");
    let r = ws.run(&["plan", "validate"]);
    assert_eq!(r.code(), 2, "{}{}", r.stdout(), r.stderr());
    assert!(
        r.stderr()
            .contains("OPS_DB_DUMP_STALE_MIN=307445734561825861 is not a positive whole number of at most 5256000"),
        "{}",
        r.stderr()
    );
    let ws = ws.env("OPS_DB_DUMP_STALE_MIN", "5256000");
    assert_eq!(ws.run(&["plan", "validate"]).code(), 0);
}

fn one_command_workspace() -> Workspace {
    let ws = Workspace::with_plan(
        r#"plan app {
            base "backups"
            command hello { run "true" }
        }"#,
    );
    assert_eq!(ws.run(&["run", "hello"]).code(), 0);
    ws
}

#[test]
fn a_state_database_from_a_newer_ops_run_is_refused_and_not_written() {
    let ws = one_command_workspace();
    let db = ws.path("state/ops.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let status = ws.run(&["status"]);
    assert_eq!(status.code(), 3, "{}", status.stdout());
    assert!(
        status
            .stdout()
            .contains("written by a newer ops-run (schema 99"),
        "{}",
        status.stdout()
    );
    let r = ws.run(&["run", "hello"]);
    assert_eq!(r.code(), 1, "{}", r.stderr());
    assert!(
        r.stderr().contains("upgrade ops-run; nothing was written"),
        "{}",
        r.stderr()
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM ops_activities", [], |r| r.get(0))
        .unwrap();
    assert_eq!((version, rows), (99, 1));
}

#[test]
fn a_user_who_may_only_read_the_state_database_gets_a_status() {
    let ws = one_command_workspace();
    // Readable by others, writable by its owner only (as a group of status readers would be).
    for (p, mode) in [
        (ws.path(""), 0o755),
        (ws.path("plans"), 0o755),
        (ws.path("plans/main.kdl"), 0o644),
        (ws.path("state"), 0o755),
        (ws.path("state/ops.db"), 0o644),
    ] {
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(crate::harness::BIN)
        .args(["--plans", "plans", "activities"])
        .current_dir(ws.path(""))
        .env("OPS_STATE", ws.path("state/ops.db"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("app/hello"), "{stdout}");
}

#[test]
fn activities_show_prints_one_activity_with_its_whole_log() {
    let ws = Workspace::with_plan(
        r#"plan app {
            base "backups"
            command noisy {
                run "sh" "-c" "echo first line; echo second line; exit 3"
            }
        }"#,
    );
    assert_eq!(ws.run(&["run", "noisy"]).code(), 1);
    let r = ws.run(&["activities", "show", "1"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let out = r.stdout();
    assert!(
        out.starts_with("activity 1: app/noisy command failed (manual)\n"),
        "{out}"
    );
    for line in [
        "first line",
        "second line",
        "ops-run: exited with status 3",
        "\"exit_code\": 3",
    ] {
        assert!(out.contains(line), "{line} missing from\n{out}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&ws.run(&["activities", "show", "1", "--json"]).stdout()).unwrap();
    assert_eq!(json["id"], 1);
    let missing = ws.run(&["activities", "show", "99"]);
    assert_eq!(missing.code(), 2);
    assert!(
        missing.stderr().contains("no activity 99"),
        "{}",
        missing.stderr()
    );
    // The list is unchanged.
    assert!(
        ws.run(&["activities", "--limit", "5"])
            .stdout()
            .contains("app/noisy")
    );
}
