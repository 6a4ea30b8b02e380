//! The runner with real processes: timeouts kill whole groups, failures skip dependents,
//! a killed apply leaves an `abandoned` row, the lock, signals, and secrets.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{Workspace, processes_with, signal, wait_for};

/// A marker unique to this test process, put in a sleep's argument to find it in /proc.
fn marker(tag: u32) -> String {
    format!("{}.{}{}", 40 + tag, std::process::id(), tag)
}

#[test]
fn a_timeout_kills_the_whole_process_group_and_leaves_nothing_behind() {
    let m = marker(1);
    let ws = Workspace::with_plan(&format!(
        r#"plan app {{
            base "backups"
            command slow {{
                run "sh" "-c" "sleep {m} & sleep {m}"
                schedule "* * * * *"
                timeout "1s"
            }}
        }}"#
    ));
    let started = Instant::now();
    let r = ws.run(&["plan", "apply"]);
    let took = started.elapsed();
    assert_eq!(r.code(), 1, "{}", r.stdout());
    assert!(took < Duration::from_secs(8), "apply took {took:?}");
    assert!(r.stdout().contains("timeout  app/slow"), "{}", r.stdout());
    assert!(
        processes_with(&format!("sleep {m}")).is_empty(),
        "a sleep survived the timeout"
    );
    let a = &ws.activities()[0];
    assert_eq!(a["status"], "timeout");
    assert!(
        a["log_excerpt"]
            .as_str()
            .unwrap()
            .contains("timed out after 1s"),
        "{a}"
    );
}

#[test]
fn a_background_child_does_not_outlive_its_step() {
    let m = marker(2);
    let ws = Workspace::with_plan(&format!(
        r#"plan app {{
            base "backups"
            command leaves-a-child {{
                shell "sleep {m} > /dev/null 2>&1 & echo started"
            }}
        }}"#
    ));
    let r = ws.run(&["run", "leaves-a-child"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(processes_with(&format!("sleep {m}")).is_empty());
}

#[test]
fn a_failing_step_skips_its_dependents_and_not_its_neighbours() {
    let ws = Workspace::with_plan(
        r#"plan app {
            base "backups"
            command first {
                shell "echo about to fail; exit 3"
                schedule "* * * * *"
            }
            command second {
                run "true"
                schedule "* * * * *"
                after first
            }
            command third {
                run "true"
                schedule "* * * * *"
                after second
            }
            command neighbour {
                run "true"
                schedule "* * * * *"
            }
        }"#,
    );
    let r = ws.run(&["plan", "apply"]);
    assert_eq!(r.code(), 1);
    let mut rows = ws.statuses();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("first".into(), "failed".into(), "schedule".into()),
            ("neighbour".into(), "success".into(), "schedule".into()),
            ("second".into(), "skipped".into(), "schedule".into()),
            ("third".into(), "skipped".into(), "schedule".into()),
        ]
    );
    let out = r.stdout();
    assert!(out.contains("failed   app/first"), "{out}");
    assert!(out.contains("exited with status 3"), "{out}");
    assert!(out.contains("| about to fail"), "{out}");
    assert!(
        out.contains("skipped  app/second (app/first did not succeed)"),
        "{out}"
    );
    assert!(out.ends_with("1 succeeded, 1 failed, 2 skipped\n"), "{out}");
    let first = ws
        .activities()
        .into_iter()
        .find(|a| a["step"] == "first")
        .unwrap();
    assert_eq!(first["meta"]["exit_code"], 3);
    assert!(
        first["log_excerpt"]
            .as_str()
            .unwrap()
            .starts_with("about to fail\n")
    );
}

#[test]
fn a_killed_apply_leaves_a_row_the_next_command_marks_abandoned() {
    let m = marker(3);
    let ws = Workspace::with_plan(&format!(
        r#"plan app {{
            base "backups"
            command long {{
                run "sleep" "{m}"
                schedule "* * * * *"
            }}
        }}"#
    ));
    let mut child = ws
        .command(&["plan", "apply"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_for(10, || !processes_with(&format!("sleep {m}")).is_empty()),
        "the step never started"
    );
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    // The step's process group outlives ops-run; end it so the test leaves nothing behind.
    for pid in processes_with(&format!("sleep {m}")) {
        signal(pid, rustix::process::Signal::TERM);
    }
    let rows = ws.activities();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["status"], "abandoned");
    assert!(rows[0]["finished_at"].is_string());
    assert!(
        rows[0]["log_excerpt"]
            .as_str()
            .unwrap()
            .contains("process gone")
    );
}

#[test]
fn sigterm_kills_running_steps_and_records_them_interrupted() {
    let m = marker(4);
    let ws = Workspace::with_plan(&format!(
        r#"plan app {{
            base "backups"
            command long {{
                shell "sleep {m} & sleep {m}"
                schedule "* * * * *"
            }}
        }}"#
    ));
    let child = ws
        .command(&["plan", "apply"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The shell and its two sleeps all carry the marker.
    assert!(
        wait_for(10, || processes_with(&format!("sleep {m}")).len() >= 3),
        "the step never started"
    );
    signal(child.id(), rustix::process::Signal::TERM);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        wait_for(5, || processes_with(&format!("sleep {m}")).is_empty()),
        "sleeps survived SIGTERM"
    );
    let a = &ws.activities()[0];
    assert_eq!(a["status"], "failed");
    assert!(
        a["log_excerpt"].as_str().unwrap().contains("interrupted"),
        "{a}"
    );
}

#[test]
fn a_second_apply_exits_75_while_the_first_holds_the_lock() {
    let m = marker(5);
    let ws = Workspace::with_plan(&format!(
        r#"plan app {{
            base "backups"
            command long {{
                run "sleep" "{}"
                schedule "0 2 * * *"
            }}
        }}"#,
        "2"
    ));
    let _ = m;
    let mut first = ws
        .command(&["plan", "apply"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for(10, || ws.path("state/ops.db.lock").exists()
        && std::fs::read_to_string(ws.path("state/ops.db.lock"))
            .unwrap_or_default()
            .contains("pid")));
    let started = Instant::now();
    let second = ws.run(&["plan", "apply"]);
    assert_eq!(second.code(), 75, "{}", second.stderr());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the second apply waited"
    );
    let want = format!(
        "error: another apply holds the lock (pid {} since ",
        first.id()
    );
    assert!(second.stderr().starts_with(&want), "{}", second.stderr());
    assert!(
        second.stderr().ends_with("); nothing ran\n"),
        "{}",
        second.stderr()
    );
    // With --wait, the second one waits for the first and then finds nothing due.
    let third = ws.run(&["plan", "apply", "--wait", "20s"]);
    assert_eq!(third.code(), 0, "{}", third.stderr());
    assert_eq!(first.wait().unwrap().code(), Some(0));
    let rows = ws.statuses();
    assert_eq!(rows, [("long".into(), "success".into(), "schedule".into())]);
}

#[test]
fn a_secret_from_the_environment_never_appears_in_activities_or_output() {
    let secret = "s3cr3t-Value-7f2c9";
    let ws = Workspace::with_plan(
        r#"plan app {
            base "backups"
            database main {
                engine postgres
                name crm
                password env=APP_DB_PASSWORD
            }
            command leaky {
                shell "echo token=$TOKEN; echo \"password is $PGPASSWORD\" >&2; exit 1"
                schedule "* * * * *"
                env {
                    TOKEN env=APP_TOKEN
                    PGPASSWORD env=APP_DB_PASSWORD
                }
            }
        }"#,
    )
    .env("APP_TOKEN", secret)
    .env("APP_DB_PASSWORD", "db-Pa55word-xyz");
    let outputs = [
        ws.run(&["plan", "validate"]),
        ws.run(&["plan", "show"]),
        ws.run(&["plan", "show", "--json"]),
        ws.run(&["plan", "apply", "--dry-run"]),
        ws.run(&["plan", "apply"]),
        ws.run(&["activities"]),
        ws.run(&["activities", "--json"]),
    ];
    for o in &outputs {
        for s in [secret, "db-Pa55word-xyz"] {
            assert!(
                !o.stdout().contains(s) && !o.stderr().contains(s),
                "leaked:\n{}\n{}",
                o.stdout(),
                o.stderr()
            );
        }
    }
    let a = &ws.activities()[0];
    let excerpt = a["log_excerpt"].as_str().unwrap();
    assert!(excerpt.contains("token=***"), "{excerpt}");
    assert!(excerpt.contains("password is ***"), "{excerpt}");
    // Nothing in the database file, WAL included, holds it either.
    for f in ["state/ops.db", "state/ops.db-wal"] {
        if let Ok(bytes) = std::fs::read(ws.path(f)) {
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(secret) && !text.contains("db-Pa55word-xyz"),
                "{f} holds a secret"
            );
        }
    }
}

#[test]
fn a_child_that_leaves_the_process_group_is_killed_and_named() {
    let m = marker(7);
    let ws = Workspace::with_plan(&format!(
        r#"plan app {{
            base "backups"
            command escapes {{
                run "sh" "-c" "setsid sleep {m} & sleep 0.5; echo started"
                timeout "3s"
            }}
        }}"#
    ));
    let started = Instant::now();
    let r = ws.run(&["run", "escapes"]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(
        processes_with(&format!("sleep {m}")).is_empty(),
        "the escaped sleep survived"
    );
    let a = &ws.activities()[0];
    assert!(
        a["log_excerpt"].as_str().unwrap().contains(
            "killed 1 process(es) still running outside the step's process group: sleep (pid"
        ),
        "{a}"
    );
}

#[test]
fn a_hanging_version_probe_is_bounded_by_the_step_timeout_and_recorded_timeout() {
    let m = marker(8);
    let ws = Workspace::with_plan(
        r#"plan app {
            base "backups"
            tools {
                pg-dump "./fake-pg-dump"
            }
            database main {
                engine postgres
                name app
            }
            dump db {
                database main
                timeout "4s"
            }
        }"#,
    );
    ws.write(
        "fake-pg-dump",
        &format!("#!/bin/sh\n[ \"$1\" = --version ] && exec sleep {m}\necho '-- PostgreSQL database dump complete'\n"),
    );
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(ws.path("fake-pg-dump"))
        .status()
        .unwrap();
    let started = Instant::now();
    let r = ws.run(&["run", "db"]);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    let a = &ws.activities()[0];
    assert_eq!(a["status"], "timeout", "{a}");
    assert!(processes_with(&format!("sleep {m}")).is_empty());
}
