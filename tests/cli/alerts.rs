//! Alerts through a real HTTP receiver, driven by OPS_NOW: ok → stale → fail → (renotify) → ok
//! gives exactly alert, alert, reminder, recovery; nothing when nothing changed; a 500 is
//! retried and delivered later; a hanging receiver costs at most the timeout; secrets and log
//! bodies stay out of the payloads. Also `status` exit codes and pings.

use std::time::Instant;

use serde_json::Value;

use crate::harness::Workspace;
use crate::receiver::{Mode, Receiver};

const GOOD_DUMP: &str = "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'pg_dump 15'; exit 0; }\necho 'INSERT INTO t VALUES (1);'\necho '-- PostgreSQL database dump complete'\n";
const BAD_DUMP: &str = "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'pg_dump 15'; exit 0; }\necho 'pg_dump: reading SECRET-LOG-BODY' >&2\necho 'pg_dump: error: connection refused' >&2\nexit 1\n";

fn workspace(rx: &Receiver, extra_alert: &str) -> Workspace {
    let ws = Workspace::with_plan(&format!(
        r#"plan crm {{
            base "backups"
            // These tests jump days ahead with OPS_NOW between applies: the dead-man of
            // `plan apply` is not their subject (alerts_and_the_dead_man is).
            apply-stale-after "30d"
            apply-fail-after "30d"
            tools {{
                pg-dump "./fake-pg-dump"
            }}
            database main {{
                engine postgres
                name crm
            }}
            dump db {{
                database main
                stale-after "26h"
                fail-after "50h"
            }}
            alert webhook {{
                url env=HOOK_URL
                renotify-after "24h"
                timeout "2s"
                {extra_alert}
            }}
            alert slack {{
                webhook env=SLACK_URL
            }}
        }}"#
    ))
    .env("HOOK_URL", &rx.url("/hook/SECRET-TOKEN-123"))
    .env("SLACK_URL", &rx.url("/slack/T000/SECRET-SLACK-456"));
    fake(&ws, GOOD_DUMP);
    ws
}

fn fake(ws: &Workspace, script: &str) {
    ws.write("fake-pg-dump", script);
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(ws.path("fake-pg-dump"))
        .status()
        .unwrap();
}

/// The changes of each webhook message received, as (change, state) pairs.
fn hook_messages(rx: &Receiver) -> Vec<Vec<(String, String)>> {
    rx.take()
        .into_iter()
        .filter(|r| r.path.starts_with("/hook"))
        .map(|r| {
            let v: Value = serde_json::from_str(&r.body).unwrap();
            v["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["change"].as_str().unwrap().to_string(),
                        c["state"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .collect()
}

fn pair(a: &str, b: &str) -> Vec<(String, String)> {
    vec![(a.to_string(), b.to_string())]
}

#[test]
fn alerts_speak_only_on_change() {
    let rx = Receiver::start();
    let ws = workspace(&rx, "");
    assert_eq!(
        ws.run_at("2026-11-28T01:00:00Z", &["plan", "apply", "--only", "db"])
            .code(),
        0
    );
    assert!(rx.take().is_empty(), "an ok check says nothing");

    let health = |at: &str| {
        let r = ws.run_at(at, &["health", "--alert"]);
        assert_eq!(r.code(), 0, "{}", r.stderr());
    };
    let said = ws.run_at("2026-11-29T04:00:01Z", &["health", "--alert"]); // 27h: stale
    assert!(
        said.stdout()
            .contains("alert crm/webhook: delivered 1 change(s): crm/db alert stale"),
        "{}",
        said.stdout()
    );
    let got = rx.take();
    let slack: Vec<_> = got
        .iter()
        .filter(|r| r.path.starts_with("/slack"))
        .collect();
    assert_eq!(slack.len(), 1);
    let s: Value = serde_json::from_str(&slack[0].body).unwrap();
    assert!(
        s["text"]
            .as_str()
            .unwrap()
            .contains("crm/db is STALE (warn)"),
        "{s}"
    );
    assert!(s["blocks"][0]["text"]["text"].is_string());
    let hooks: Vec<_> = got.iter().filter(|r| r.path.starts_with("/hook")).collect();
    assert_eq!(hooks.len(), 1);
    let v: Value = serde_json::from_str(&hooks[0].body).unwrap();
    assert_eq!(v["changes"][0]["change"], "alert");
    assert_eq!(v["changes"][0]["state"], "stale");

    let said = ws.run_at("2026-11-29T05:00:00Z", &["health", "--alert"]); // still stale
    assert!(
        said.stdout().contains("alert crm/webhook: nothing changed"),
        "{}",
        said.stdout()
    );
    assert!(hook_messages(&rx).is_empty());
    health("2026-11-30T04:00:01Z"); // 51h: fail
    assert_eq!(hook_messages(&rx), [pair("alert", "fail")]);
    health("2026-11-30T12:00:00Z"); // still failing, within renotify-after
    assert!(hook_messages(&rx).is_empty());
    health("2026-12-01T04:00:02Z"); // 24h after the fail alert: a reminder
    assert_eq!(hook_messages(&rx), [pair("reminder", "fail")]);
    // A new dump: the apply that made it says "recovered".
    assert_eq!(
        ws.run_at("2026-12-01T05:00:00Z", &["plan", "apply", "--only", "db"])
            .code(),
        0
    );
    assert_eq!(hook_messages(&rx), [pair("recovered", "ok")]);
    health("2026-12-01T06:00:00Z");
    assert!(hook_messages(&rx).is_empty());

    let alerts: Vec<Value> = ws
        .activities()
        .into_iter()
        .filter(|a| a["type"] == "alert")
        .collect();
    // Four webhook deliveries and four Slack ones, each recorded.
    assert_eq!(alerts.len(), 8, "{alerts:?}");
    assert!(alerts.iter().all(|a| a["status"] == "success"));
    let all = serde_json::to_string(&ws.activities()).unwrap();
    assert!(!all.contains("SECRET-TOKEN-123") && !all.contains("SECRET-SLACK-456"));
}

#[test]
fn payloads_carry_no_secrets_and_no_log_bodies_unless_asked() {
    for (include, expect_body) in [("", false), ("include-logs #true", true)] {
        let rx = Receiver::start();
        let ws = workspace(&rx, include);
        fake(&ws, BAD_DUMP);
        assert_eq!(
            ws.run_at("2026-11-28T01:00:00Z", &["plan", "apply", "--only", "db"])
                .code(),
            1
        );
        let got = rx.take();
        assert_eq!(got.len(), 2, "{got:?}");
        for r in &got {
            assert!(
                !r.body.contains("SECRET-TOKEN-123") && !r.body.contains("SECRET-SLACK-456"),
                "{}",
                r.body
            );
        }
        let hook = got.iter().find(|r| r.path.starts_with("/hook")).unwrap();
        assert_eq!(
            hook.body.contains("SECRET-LOG-BODY"),
            expect_body,
            "{}",
            hook.body
        );
        let slack = got.iter().find(|r| r.path.starts_with("/slack")).unwrap();
        assert!(!slack.body.contains("SECRET-LOG-BODY"), "{}", slack.body);
        // The cause (the tool's error line) always travels, the log body only when asked.
        for r in &got {
            assert!(
                r.body.contains("pg_dump: error: connection refused"),
                "{}",
                r.body
            );
        }
    }
}

#[test]
fn an_undelivered_alert_is_retried_at_the_next_evaluation() {
    let rx = Receiver::start();
    let ws = workspace(&rx, "");
    assert_eq!(
        ws.run_at("2026-11-28T01:00:00Z", &["plan", "apply", "--only", "db"])
            .code(),
        0
    );
    rx.set(Mode::Error500);
    let r = ws.run_at("2026-11-29T04:00:01Z", &["health", "--alert"]);
    assert_eq!(r.code(), 0, "a failing channel never fails the command");
    assert!(
        r.stderr()
            .contains("not delivered (retried at the next apply)"),
        "{}",
        r.stderr()
    );
    let attempts = rx
        .take()
        .iter()
        .filter(|r| r.path.starts_with("/hook"))
        .count();
    assert!(
        (2..=3).contains(&attempts),
        "bounded retries, got {attempts}"
    );
    let failed: Vec<Value> = ws
        .activities()
        .into_iter()
        .filter(|a| a["type"] == "alert" && a["status"] == "failed")
        .collect();
    assert!(!failed.is_empty());
    assert!(
        !serde_json::to_string(&failed)
            .unwrap()
            .contains("SECRET-TOKEN-123")
    );
    rx.set(Mode::Ok);
    ws.run_at("2026-11-29T04:10:00Z", &["health", "--alert"]);
    assert_eq!(hook_messages(&rx), [pair("alert", "stale")]);
}

#[test]
fn a_hanging_receiver_costs_at_most_the_timeout() {
    let rx = Receiver::start();
    let ws = workspace(&rx, "");
    assert_eq!(
        ws.run_at("2026-11-28T01:00:00Z", &["plan", "apply", "--only", "db"])
            .code(),
        0
    );
    rx.set(Mode::Hang);
    let started = Instant::now();
    let r = ws.run_at("2026-11-29T04:00:01Z", &["health", "--alert"]);
    let took = started.elapsed();
    assert_eq!(r.code(), 0);
    // The webhook's budget is 2 s; Slack's is the default 10 s and hangs too.
    assert!(took.as_secs_f64() < 2.0 + 10.0 + 2.0, "took {took:?}");
    assert!(took.as_secs_f64() >= 2.0, "took {took:?}");
}

#[test]
fn an_empty_slack_variable_turns_slack_off() {
    let rx = Receiver::start();
    let ws = workspace(&rx, "").env("ALERT_SLACK_WEBHOOK", "");
    fake(&ws, BAD_DUMP);
    ws.run_at("2026-11-28T01:00:00Z", &["plan", "apply", "--only", "db"]);
    let got = rx.take();
    assert_eq!(got.len(), 1);
    assert!(got[0].path.starts_with("/hook"));
}

#[test]
fn pings_mark_start_and_end_of_every_apply() {
    let rx = Receiver::start();
    let ws = Workspace::with_plan(&format!(
        r#"plan crm {{
            base "backups"
            command ok {{
                run "true"
                schedule "0 2 * * *"
            }}
            ping {{
                url "{}"
            }}
        }}"#,
        rx.url("/ping/abc")
    ));
    assert_eq!(ws.run(&["plan", "apply"]).code(), 0);
    let got = rx.take();
    assert!(got.iter().all(|r| r.method == "POST"), "{got:?}");
    let paths: Vec<String> = got.into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/ping/abc/start", "/ping/abc"]);
    ws.write(
        "plans/main.kdl",
        &std::fs::read_to_string(ws.path("plans/main.kdl"))
            .unwrap()
            .replace("\"true\"", "\"false\""),
    );
    assert_eq!(ws.run(&["plan", "apply", "--force"]).code(), 1);
    let paths: Vec<String> = rx.take().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/ping/abc/start", "/ping/abc/fail"]);
}

#[test]
fn alerts_test_sends_through_every_channel() {
    let rx = Receiver::start();
    let ws = workspace(&rx, "");
    let r = ws.run(&["alerts", "test"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert_eq!(
        r.stdout(),
        "ok      crm/webhook (attempts: 1)\nok      crm/slack (attempts: 1)\n"
    );
    let got = rx.take();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|r| r.body.contains("test message")));
    let r = ws.run(&["alerts", "test", "slack"]);
    assert_eq!(r.stdout(), "ok      crm/slack (attempts: 1)\n");
    assert_eq!(ws.run(&["alerts", "test", "pager"]).code(), 2);
}

#[test]
fn status_exit_codes_follow_the_monitoring_plugin_convention() {
    let rx = Receiver::start();
    let ws = workspace(&rx, "");
    let status = |at: &str| {
        let r = ws.run_at(at, &["status", "--json"]);
        let v: Value = serde_json::from_str(&r.stdout()).unwrap();
        (r.code(), v)
    };
    // No dump yet: missing, critical.
    let (code, v) = status("2026-11-28T00:00:00Z");
    assert_eq!(code, 2);
    assert_eq!(v["overall"], "crit");
    assert_eq!(v["checks"][0]["state"], "missing");
    ws.run_at("2026-11-28T01:00:00Z", &["run", "db"]);
    let (code, v) = status("2026-11-28T02:00:00Z");
    assert_eq!((code, v["overall"].as_str().unwrap()), (0, "ok"));
    let c = &v["checks"][0];
    for key in [
        "id",
        "plan",
        "step",
        "kind",
        "state",
        "severity",
        "age_seconds",
        "last_success",
        "last_attempt",
        "last_attempt_status",
        "artifact",
        "artifact_size",
        "detail",
        "stale_after_seconds",
        "fail_after_seconds",
        "overdue_after_seconds",
    ] {
        assert!(c.get(key).is_some(), "{key} missing from {c}");
    }
    assert_eq!(c["id"], "crm/db");
    assert_eq!(c["age_seconds"], 3600);
    assert_eq!(c["stale_after_seconds"], 26 * 3600);
    assert_eq!(status("2026-11-29T04:00:01Z").0, 1);
    assert_eq!(status("2026-11-30T04:00:01Z").0, 2);
    // A plan that does not load: CRITICAL, not UNKNOWN — nothing runs until it loads.
    ws.write("plans/main.kdl", "plan crm {\n    bse \"x\"\n}\n");
    let r = ws.run(&["status"]);
    assert_eq!(r.code(), 2);
    assert!(r.stdout().starts_with("CRITICAL"), "{}", r.stdout());
    // The reason is on stdout, where a monitoring plugin shows it.
    assert!(r.stdout().contains("1 error in"), "{}", r.stdout());
    // An unreadable environment is still UNKNOWN: nothing could be evaluated.
    let r = ws.run(&["--env-file", "missing.env", "status"]);
    assert_eq!(r.code(), 3, "{}{}", r.stdout(), r.stderr());
    assert!(r.stdout().starts_with("UNKNOWN"), "{}", r.stdout());
}

#[test]
fn status_says_why_it_is_unknown_when_the_state_cannot_be_read() {
    let rx = Receiver::start();
    let ws = workspace(&rx, "");
    // The state database's path is a folder: it cannot be opened.
    std::fs::create_dir_all(ws.path("state/ops.db")).unwrap();
    let r = ws.run(&["status"]);
    assert_eq!(r.code(), 3, "{}{}", r.stdout(), r.stderr());
    assert!(
        r.stdout()
            .starts_with("UNKNOWN: cannot open the state database"),
        "{}",
        r.stdout()
    );
}

#[test]
fn a_dump_deleted_by_hand_is_missing_even_if_the_log_remembers_it() {
    let rx = Receiver::start();
    let ws = workspace(&rx, "");
    ws.run_at("2026-11-28T01:00:00Z", &["run", "db"]);
    for e in std::fs::read_dir(ws.path("backups/db")).unwrap().flatten() {
        std::fs::remove_file(e.path()).unwrap();
    }
    let r = ws.run_at("2026-11-28T02:00:00Z", &["status"]);
    assert_eq!(r.code(), 2);
    assert!(
        r.stdout()
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["crm/db", "missing"])),
        "{}",
        r.stdout()
    );
}

#[test]
fn a_plan_may_hold_two_webhooks_each_with_its_own_name_and_state() {
    let rx = Receiver::start();
    let ws = Workspace::with_plan(
        r#"plan crm {
            base "backups"
            tools {
                pg-dump "./fake-pg-dump"
            }
            database main {
                engine postgres
                name crm
            }
            dump db {
                database main
            }
            alert oncall {
                kind webhook
                url env=ONCALL_URL
            }
            alert audit {
                kind webhook
                url env=AUDIT_URL
            }
        }"#,
    )
    .env("ONCALL_URL", &rx.url("/oncall"))
    .env("AUDIT_URL", &rx.url("/audit"));
    fake(&ws, BAD_DUMP);
    let r = ws.run_at("2026-11-28T01:00:00Z", &["plan", "apply", "--force"]);
    assert_eq!(r.code(), 1, "{}", r.stderr());
    let mut paths: Vec<String> = rx.take().into_iter().map(|r| r.path).collect();
    paths.sort();
    assert_eq!(paths, ["/audit", "/oncall"]);
    // Each channel is recorded under its own name.
    let mut channels: Vec<String> = ws
        .activities()
        .into_iter()
        .filter(|a| a["type"] == "alert")
        .map(|a| a["step"].as_str().unwrap().to_string())
        .collect();
    channels.sort();
    assert_eq!(channels, ["audit", "oncall"]);
    // `alerts test NAME` reaches one of them.
    let r = ws.run(&["alerts", "test", "audit"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let got: Vec<String> = rx.take().into_iter().map(|r| r.path).collect();
    assert_eq!(got, ["/audit"]);
    // Nothing changed: neither speaks again.
    ws.run_at("2026-11-28T01:05:00Z", &["plan", "apply"]);
    assert!(rx.take().is_empty());
}

#[test]
fn an_alert_command_gets_the_message_not_ops_runs_secrets() {
    let ws = Workspace::with_plan(
        r#"plan crm {
            base "backups"
            tools {
                pg-dump "./fake-pg-dump"
            }
            database main {
                engine postgres
                name crm
                password env=CRM_DB_PASSWORD
            }
            dump db {
                database main
            }
            alert command {
                run "./record-env"
            }
        }"#,
    )
    .env("CRM_DB_PASSWORD", "pw-Secret-In-Env-789")
    .env("SOME_TOKEN", "tok-Secret-555");
    fake(&ws, BAD_DUMP);
    ws.write("record-env", "#!/bin/sh\nenv > alert-env.txt\n");
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(ws.path("record-env"))
        .status()
        .unwrap();
    let r = ws.run_at("2026-11-28T01:00:00Z", &["plan", "apply", "--force"]);
    assert_eq!(r.code(), 1, "{}", r.stderr());
    let env = std::fs::read_to_string(ws.path("alert-env.txt")).expect("the command ran");
    assert!(env.contains("OPS_ALERT_SEVERITY=crit"), "{env}");
    assert!(env.contains("PATH="), "{env}");
    assert!(!env.contains("pw-Secret-In-Env-789"), "{env}");
    assert!(!env.contains("tok-Secret-555"), "{env}");
    assert!(!env.contains("OPS_STATE="), "{env}");
}

#[test]
fn a_dump_exactly_stale_after_old_is_ok_and_one_second_more_is_stale() {
    let rx = Receiver::start();
    let ws = workspace(&rx, "");
    assert_eq!(ws.run_at("2026-11-28T01:00:00Z", &["run", "db"]).code(), 0);
    // The dump is named 01:00; stale-after is 26h.
    let state = |at: &str| {
        let r = ws.run_at(at, &["status", "--json"]);
        let v: Value = serde_json::from_str(&r.stdout()).unwrap();
        v["checks"][0]["state"].as_str().unwrap().to_string()
    };
    assert_eq!(state("2026-11-29T03:00:00Z"), "ok");
    assert_eq!(state("2026-11-29T03:00:01Z"), "stale");
}

#[test]
fn a_verify_without_a_good_dump_is_skipped_and_sends_no_second_alert() {
    let rx = Receiver::start();
    let ws = Workspace::with_plan(
        r#"plan crm {
            base "backups"
            tools {
                pg-dump "./fake-pg-dump"
            }
            database main {
                engine postgres
                name crm
            }
            dump db {
                database main
            }
            verify v {
                dump db
            }
            alert webhook {
                url env=HOOK_URL
            }
        }"#,
    )
    .env("HOOK_URL", &rx.url("/hook"));
    fake(
        &ws,
        "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'pg_dump 15'; exit 0; }\necho 'pg_dump: error: connection to server failed: FATAL:  password authentication failed for user \"backup\"' >&2\nexit 1\n",
    );
    assert_eq!(
        ws.run_at("2026-11-28T02:00:00Z", &["plan", "apply", "--only", "db"])
            .code(),
        1
    );
    let first = rx.take();
    assert_eq!(first.len(), 1, "{first:?}");
    let v: Value = serde_json::from_str(&first[0].body).unwrap();
    let db = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "crm/db")
        .unwrap();
    assert_eq!(db["state"], "fail", "{v}");
    assert!(
        db["detail"]
            .as_str()
            .unwrap()
            .contains("password authentication failed for user"),
        "{v}"
    );

    // The verify's turn comes with no dump on disk: skipped, said once, no new alert.
    let r = ws.run_at("2026-11-28T03:15:00Z", &["plan", "apply", "--only", "v"]);
    assert_eq!(r.code(), 1);
    assert!(
        r.stdout()
            .contains("skipped  crm/v (no good dump of `db` to restore yet)"),
        "{}",
        r.stdout()
    );
    assert!(rx.take().is_empty(), "a skipped verify is no new problem");
    let last = ws.activities().pop().unwrap();
    assert_eq!(
        (last["step"].as_str(), last["status"].as_str()),
        (Some("v"), Some("skipped"))
    );
    let status = ws.run_at("2026-11-28T03:16:00Z", &["status"]);
    assert!(
        status
            .stdout()
            .lines()
            .any(|l| l.starts_with("crm/v") && l.contains("overdue")),
        "{}",
        status.stdout()
    );
    assert!(
        status.stdout().contains("password authentication failed"),
        "{}",
        status.stdout()
    );
}

/// One change of a message: its check, the change and the state.
type Change = (String, String, String);

/// The webhook messages: each change's check, change and state, and the text.
fn hook_checks(rx: &Receiver) -> Vec<(Vec<Change>, String)> {
    rx.take()
        .into_iter()
        .filter(|r| r.path.starts_with("/hook"))
        .map(|r| {
            let v: Value = serde_json::from_str(&r.body).unwrap();
            let changes = v["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["check"].as_str().unwrap().to_string(),
                        c["change"].as_str().unwrap().to_string(),
                        c["state"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            (changes, r.body.clone())
        })
        .collect()
}

#[test]
fn a_plan_that_stops_loading_pages_once_and_a_dead_timer_turns_red() {
    let rx = Receiver::start();
    let ws = workspace(&rx, "");
    // The plan as the tests above have it, with the dead-man's defaults (15m, 1h).
    let plan = std::fs::read_to_string(ws.path("plans/main.kdl"))
        .unwrap()
        .replace("apply-stale-after \"30d\"", "")
        .replace("apply-fail-after \"30d\"", "");
    ws.write("plans/main.kdl", &plan);
    let r = ws.run_at("2026-11-28T01:00:00Z", &["plan", "apply", "--only", "db"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    rx.take();
    let apply_state = |at: &str| -> (i32, String) {
        let r = ws.run_at(at, &["status", "--json"]);
        let v: Value = serde_json::from_str(&r.stdout()).unwrap();
        let c = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "ops-run/apply")
            .cloned()
            .unwrap_or_else(|| panic!("no ops-run/apply in {v}"));
        (r.code(), c["state"].as_str().unwrap().to_string())
    };
    assert_eq!(apply_state("2026-11-28T01:05:00Z"), (0, "ok".into()));
    assert_eq!(apply_state("2026-11-28T01:30:00Z"), (1, "stale".into()));
    // Two hours without an apply: critical, and an evaluation that alerts says so.
    assert_eq!(apply_state("2026-11-28T03:00:00Z"), (2, "fail".into()));
    let r = ws.run_at("2026-11-28T03:00:00Z", &["health", "--alert"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let got = hook_checks(&rx);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0]
            .0
            .contains(&("ops-run/apply".into(), "alert".into(), "fail".into())),
        "{got:?}"
    );

    // A typo in the live plan: the apply runs nothing, exits 2, and the channels the plan
    // had hear it once, with the place of the error.
    ws.write(
        "plans/main.kdl",
        &plan.replace("stale-after \"26h\"", "stale-afer \"26h\""),
    );
    for at in ["2026-11-28T03:05:00Z", "2026-11-28T03:10:00Z"] {
        let r = ws.run_at(at, &["plan", "apply"]);
        assert_eq!(r.code(), 2, "{}", r.stderr());
    }
    let got = hook_checks(&rx);
    assert_eq!(got.len(), 1, "once, on change: {got:?}");
    assert_eq!(
        got[0].0,
        [("ops-run/plans".into(), "alert".into(), "fail".into())]
    );
    assert!(got[0].1.contains("plans/main.kdl:"), "{}", got[0].1);
    assert!(got[0].1.contains("stale-afer"), "{}", got[0].1);
    assert!(!got[0].1.contains("SECRET"), "{}", got[0].1);
    // status says CRITICAL with the diagnostics.
    let r = ws.run_at("2026-11-28T03:10:00Z", &["status"]);
    assert_eq!(r.code(), 2);
    assert!(
        r.stdout().starts_with("CRITICAL: the plans do not load"),
        "{}",
        r.stdout()
    );
    assert!(r.stderr().contains("stale-afer"), "{}", r.stderr());

    // Fixed: the next apply runs, and the channels hear that the plans load again.
    ws.write("plans/main.kdl", &plan);
    let r = ws.run_at("2026-11-28T03:15:00Z", &["plan", "apply", "--only", "db"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let got = hook_checks(&rx);
    assert!(
        got.iter().any(|m| m.0.contains(&(
            "ops-run/plans".into(),
            "recovered".into(),
            "ok".into()
        ))),
        "{got:?}"
    );
    assert!(
        got.iter().any(|m| m.0.contains(&(
            "ops-run/apply".into(),
            "recovered".into(),
            "ok".into()
        ))),
        "{got:?}"
    );
}

#[test]
fn serve_tells_the_channels_of_a_dead_timer_without_any_apply() {
    let rx = Receiver::start();
    let ws = workspace(&rx, "");
    let plan = std::fs::read_to_string(ws.path("plans/main.kdl"))
        .unwrap()
        .replace("apply-stale-after \"30d\"", "")
        .replace("apply-fail-after \"30d\"", "");
    ws.write("plans/main.kdl", &plan);
    let r = ws.run_at("2026-11-28T01:00:00Z", &["plan", "apply", "--only", "db"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    rx.take();
    // Two hours later no apply has run: serve, evaluating on its own, pages.
    let port = crate::serve::free_port();
    let _server = crate::harness::Reaped(
        ws.command(&[
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--alert-every",
            "1s",
        ])
        .env("OPS_NOW", "2026-11-28T03:00:00Z")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap(),
    );
    let mut got = Vec::new();
    assert!(
        crate::harness::wait_for(20, || {
            got.extend(hook_checks(&rx));
            got.iter().any(|m| {
                m.0.contains(&("ops-run/apply".into(), "alert".into(), "fail".into()))
            })
        }),
        "{got:?}"
    );
    // Once: the next evaluations find nothing changed.
    std::thread::sleep(std::time::Duration::from_secs(3));
    got.extend(hook_checks(&rx));
    let apply = got
        .iter()
        .filter(|m| m.0.iter().any(|c| c.0 == "ops-run/apply"))
        .count();
    assert_eq!(apply, 1, "{got:?}");
}
