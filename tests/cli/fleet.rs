//! Many hosts, with the components operators already run: two `ops-run serve` instances (two
//! state databases and bases, one with a stale dump), a real Prometheus scraping both with the
//! shipped rules, and a real Alertmanager with the shipped configuration delivering to a
//! webhook receiver here. Only the stale host's alert may arrive, naming host and check. The
//! shipped files pass `promtool` and `amtool`, and every metric the rules and the Grafana
//! dashboard use is one ops-run serves.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::harness::{Reaped, Workspace, repo_root, wait_for};
use crate::receiver::Receiver;
use crate::serve::{free_port, serve};

/// A host whose only dump was taken at `dump_at` (serve judges it at 2026-11-28 12:00:30).
fn host(plan: &str, dump_at: &str) -> Workspace {
    let ws = Workspace::with_plan(&format!(
        r#"plan {plan} {{
            base "backups"
            database main {{
                engine sqlite
                path "app.db"
            }}
            dump db {{
                database main
            }}
        }}"#
    ));
    rusqlite::Connection::open(ws.path("app.db"))
        .unwrap()
        .execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);")
        .unwrap();
    let r = ws.run_at(dump_at, &["run", "db"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    ws
}

fn shipped(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("examples").join(name)).unwrap()
}

#[test]
#[ignore = "needs prometheus and prometheus-alertmanager; run scripts/test"]
fn the_shipped_rules_and_alertmanager_name_only_the_stale_host() {
    let fresh = host("fresh", "2026-11-28T11:00:00Z");
    let stale = host("stale", "2026-11-27T08:00:00Z");
    let a = serve(&fresh, None);
    let b = serve(&stale, None);
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let path = |f: &str| dir.path().join(f);
    // The shipped rules, without their `for:` waits; the shipped Alertmanager configuration,
    // delivering here without its group wait.
    let rules = shipped("prometheus/ops-run-rules.yml")
        .lines()
        .map(|l| match l.trim_start().starts_with("for:") {
            true => l.split("for:").next().unwrap().to_string() + "for: 0s",
            false => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(path("rules.yml"), rules).unwrap();
    let am = shipped("prometheus/alertmanager.yml")
        .replace("http://127.0.0.1:5001/ops-run", &receiver.url("/alerts"))
        .replace("group_wait: 30s", "group_wait: 1s");
    assert!(am.contains(&receiver.url("/alerts")));
    std::fs::write(path("alertmanager.yml"), am).unwrap();
    let am_port = free_port();
    let prom_port = free_port();
    std::fs::write(
        path("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: ops-run\n    static_configs:\n      - targets: ['127.0.0.1:{}', '127.0.0.1:{}']\nrule_files:\n  - rules.yml\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am_port}']\n",
            a.port, b.port
        ),
    )
    .unwrap();
    let mut children: Vec<Reaped> = Vec::new();
    children.push(Reaped(
        Command::new("prometheus-alertmanager")
            .current_dir(dir.path())
            .args([
                "--config.file=alertmanager.yml",
                &format!("--web.listen-address=127.0.0.1:{am_port}"),
                "--storage.path=am-data",
                "--cluster.listen-address=",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-alertmanager (apt-get install prometheus-alertmanager)"),
    ));
    children.push(Reaped(
        Command::new("prometheus")
            .current_dir(dir.path())
            .args([
                "--config.file=prometheus.yml",
                &format!("--web.listen-address=127.0.0.1:{prom_port}"),
                "--storage.tsdb.path=tsdb",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    let mut received: Vec<Value> = Vec::new();
    let arrived = wait_for(90, || {
        received.extend(
            receiver
                .take()
                .into_iter()
                .filter_map(|r| serde_json::from_str::<Value>(&r.body).ok()),
        );
        received.iter().any(|n| {
            n["alerts"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|x| x["labels"]["alertname"] == "OpsRunDumpStale")
            })
        })
    });
    // A little longer: nothing about the fresh host may follow.
    std::thread::sleep(std::time::Duration::from_secs(3));
    received.extend(
        receiver
            .take()
            .into_iter()
            .filter_map(|r| serde_json::from_str::<Value>(&r.body).ok()),
    );
    drop(children);
    assert!(
        arrived,
        "no OpsRunDumpStale reached the receiver: {received:?}"
    );
    let alerts: Vec<Value> = received
        .iter()
        .flat_map(|n| n["alerts"].as_array().cloned().unwrap_or_default())
        .collect();
    let stale_host = format!("127.0.0.1:{}", b.port);
    let fresh_host = format!("127.0.0.1:{}", a.port);
    for x in &alerts {
        let l = &x["labels"];
        assert_ne!(
            l["instance"],
            fresh_host.as_str(),
            "the fresh host alerted: {x}"
        );
        assert_eq!(l["alertname"], "OpsRunDumpStale", "{x}");
        assert_eq!(l["instance"], stale_host.as_str(), "{x}");
        assert_eq!(l["host"], stale_host.as_str(), "{x}");
        assert_eq!(l["check"], "stale/db", "{x}");
        let summary = x["annotations"]["summary"].as_str().unwrap_or_default();
        assert!(
            summary.contains("stale/db") && summary.contains(&stale_host),
            "{summary}"
        );
    }
}

#[test]
#[ignore = "needs promtool and amtool; run scripts/test"]
fn the_shipped_fleet_files_check_and_use_only_served_metrics() {
    let root = repo_root().join("examples");
    for (tool, args) in [
        (
            "promtool",
            vec!["check", "rules", "prometheus/ops-run-rules.yml"],
        ),
        (
            "promtool",
            vec!["check", "config", "prometheus/prometheus.yml"],
        ),
        (
            "amtool",
            vec!["check-config", "prometheus/alertmanager.yml"],
        ),
    ] {
        let out = Command::new(tool)
            .args(&args)
            .current_dir(&root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The families ops-run serves (each has its HELP line even before it has samples).
    let ws = host("fleet", "2026-11-28T11:00:00Z");
    let metrics = ws.run_at("2026-11-28T12:00:00Z", &["metrics"]).stdout();
    let dashboard = shipped("grafana/ops-run.json");
    serde_json::from_str::<Value>(&dashboard).expect("the dashboard is JSON");
    let rules = shipped("prometheus/ops-run-rules.yml");
    let mut used: Vec<String> = Vec::new();
    for text in [&dashboard, &rules] {
        let mut rest = text.as_str();
        while let Some(i) = rest.find("ops_run_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[i + name.len()..];
            used.push(name);
        }
    }
    used.sort();
    used.dedup();
    assert!(used.len() >= 6, "{used:?}");
    for name in &used {
        assert!(
            metrics.contains(&format!("# HELP {name} ")),
            "{name} is used by the shipped files but not served"
        );
    }
}
