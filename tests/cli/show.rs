//! `plan show`: graph order, schedules, next due, and where each setting came from.

use serde_json::Value;

use crate::harness::{Workspace, repo_root};

#[test]
fn json_shows_order_origins_and_next_due() {
    let ws = Workspace::new().env("OPS_DB_DUMP_FAIL_MIN", "3000");
    let plans = repo_root().join("plans/crm.kdl");
    let r = ws.run_at(
        "2026-11-28T10:00:00Z",
        &["--plans", plans.to_str().unwrap(), "plan", "show", "--json"],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let v: Value = serde_json::from_str(&r.stdout()).unwrap();
    let plan = &v["plans"][0];
    assert_eq!(plan["name"], "crm");
    assert_eq!(plan["timezone"]["value"], "Europe/Prague");
    assert_eq!(plan["timezone"]["origin"], "plan");
    let steps = v["steps"].as_array().unwrap();
    let ids: Vec<&str> = steps.iter().map(|s| s["id"].as_str().unwrap()).collect();
    let pos = |id: &str| ids.iter().position(|x| *x == id).unwrap();
    assert!(pos("crm/maintenance-on") < pos("crm/db"));
    assert!(pos("crm/db") < pos("crm/restore"));
    assert!(pos("crm/restore") < pos("crm/weekly"));
    assert_eq!(ids.last(), Some(&"crm/release"));
    let db = &steps[pos("crm/db")];
    assert_eq!(db["type"], "db_backup");
    assert_eq!(db["settings"]["fail-after"]["value"], "50h");
    assert_eq!(db["settings"]["fail-after"]["origin"], "env");
    assert_eq!(db["settings"]["fail-after"]["from"], "OPS_DB_DUMP_FAIL_MIN");
    assert_eq!(db["settings"]["stale-after"]["origin"], "plan");
    assert!(
        db["settings"]["stale-after"]["from"]
            .as_str()
            .unwrap()
            .ends_with("crm.kdl:17:21")
    );
    assert_eq!(db["timeout"]["value"], "2h");
    assert_eq!(db["retry_after"]["origin"], "default");
    assert_eq!(db["due"], true);
    let hook = &steps[pos("crm/maintenance-on")];
    assert_eq!(hook["hook_of"][0]["step"], "crm/db");
    assert_eq!(hook["hook_of"][0]["when"], "before");
    let release = &steps[pos("crm/release")];
    assert_eq!(release["due"], false);
    assert!(release["next_due"].is_null());
}

#[test]
fn next_due_comes_from_the_last_success_in_the_plan_time_zone() {
    let ws = Workspace::with_plan(
        r#"plan app {
            base "backups"
            timezone "Europe/Prague"
            command nightly {
                run "true"
                schedule "0 2 * * *"
            }
        }"#,
    );
    ws.run_at("2026-11-28T10:00:00Z", &["plan", "apply"]);
    let r = ws.run_at("2026-11-28T11:00:00Z", &["plan", "show"]);
    assert!(
        r.stdout()
            .contains("next due     2026-11-29 02:00 CET (last success 2026-11-28 11:00 CET)"),
        "{}",
        r.stdout()
    );
    let r = ws.run_at("2026-11-28T11:00:00Z", &["plan", "show", "--json"]);
    let v: Value = serde_json::from_str(&r.stdout()).unwrap();
    assert_eq!(v["steps"][0]["next_due"], "2026-11-29T01:00:00.000Z");
}
