//! `ops-run serve`: the page, the API and the metrics tell what `status --json` tells; the
//! server stays up under idle connections, refuses huge headers and recovers when its accept
//! loop dies; metrics survive a restart. Real Prometheus (promtool and a scrape) and real
//! Chromium where the feature touches them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Workspace, wait_for};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Served {
    child: Child,
    pub port: u16,
}

impl Served {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve(ws: &Workspace, prefix: Option<&str>) -> Served {
    let port = free_port();
    let mut cmd = match prefix {
        Some(shell) => {
            let mut c = Command::new("sh");
            c.current_dir(ws.path(""))
                .env("OPS_STATE", ws.path("state/ops.db"))
                .env("OPS_NOW", "2026-11-28T12:00:30Z")
                .args([
                    "-c",
                    &format!(
                        "{shell}; exec {} serve --listen 127.0.0.1:{port}",
                        crate::harness::BIN
                    ),
                ]);
            c
        }
        None => {
            let mut c = ws.command(&["serve", "--listen", &format!("127.0.0.1:{port}")]);
            c.env("OPS_NOW", "2026-11-28T12:00:30Z");
            c
        }
    };
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let served = Served { child, port };
    assert!(
        wait_for(10, || get(&served, "/healthz").0 == 200),
        "serve did not start"
    );
    served
}

/// A plain HTTP/1.0 request: (status, headers, body).
pub fn request(port: u16, raw: &str) -> (u16, String, String) {
    request_within(port, raw, Duration::from_secs(10))
}

fn request_within(port: u16, raw: &str, timeout: Duration) -> (u16, String, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new(), String::new());
    };
    s.set_read_timeout(Some(timeout)).unwrap();
    if s.write_all(raw.as_bytes()).is_err() {
        return (0, String::new(), String::new());
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// A connection whose reads give up after five seconds.
fn connect(port: u16) -> TcpStream {
    let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c
}

fn get(s: &Served, path: &str) -> (u16, String, String) {
    request(
        s.port,
        &format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n"),
    )
}

const PLAN: &str = r#"plan crm {
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
    command noisy {
        shell "echo '<script>alert(1)</script>'; exit 1"
    }
    serve {
        allowed-hosts "status.example.com" "*.corp.example"
    }
}"#;

fn workspace() -> Workspace {
    workspace_with(PLAN)
}

/// `plan` with its fake pg_dump, one good dump and one failed command.
fn workspace_with(plan: &str) -> Workspace {
    let ws = Workspace::with_plan(plan);
    ws.write("fake-pg-dump", "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'pg_dump 15'; exit 0; }\necho 'INSERT INTO t VALUES (1);'\necho '-- PostgreSQL database dump complete'\n");
    Command::new("chmod")
        .arg("+x")
        .arg(ws.path("fake-pg-dump"))
        .status()
        .unwrap();
    assert_eq!(ws.run_at("2026-11-27T10:00:00Z", &["run", "db"]).code(), 0);
    assert_eq!(
        ws.run_at("2026-11-27T11:00:00Z", &["run", "noisy"]).code(),
        1
    );
    ws
}

fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn page_api_and_metrics_agree_with_status() {
    let ws = workspace();
    let s = serve(&ws, None);
    let cli: Value = serde_json::from_str(
        &ws.run_at("2026-11-28T12:00:30Z", &["status", "--json"])
            .stdout(),
    )
    .unwrap();
    let (code, headers, body) = get(&s, "/api/status");
    assert_eq!(code, 200);
    assert!(
        headers.contains("Content-Type: application/json"),
        "{headers}"
    );
    let mut api: Value = serde_json::from_str(&body).unwrap();
    let mut cli = cli;
    api["generated_at"] = Value::Null;
    cli["generated_at"] = Value::Null;
    assert_eq!(api, cli);
    // 26h and 30s after the dump: stale (past stale-after), a warning; the page and the metrics say the same.
    assert_eq!(cli["checks"][0]["state"], "stale");
    let (_, _, page) = get(&s, "/");
    assert!(
        page.contains("<h3>crm/db</h3>") && page.contains("class=\"state\">stale"),
        "{page}"
    );
    assert!(page.contains(": WARNING</h1>"), "{page}");
    let (_, headers, metrics) = get(&s, "/metrics");
    assert!(headers.contains("text/plain; version=0.0.4"), "{headers}");
    assert_eq!(
        metric(
            &metrics,
            "ops_run_check_state{plan=\"crm\",check=\"crm/db\""
        ),
        Some(1.0),
        "{metrics}"
    );
    // A step that failed: its last attempt is newer than its last success (never, here).
    assert!(
        metric(
            &metrics,
            "ops_run_step_last_attempt_timestamp_seconds{plan=\"crm\",step=\"noisy\""
        )
        .is_some()
    );
    assert!(
        metric(
            &metrics,
            "ops_run_step_last_success_timestamp_seconds{plan=\"crm\",step=\"noisy\""
        )
        .is_none()
    );
    assert_eq!(
        metric(
            &metrics,
            "ops_run_activities_total{type=\"command\",status=\"failed\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "ops_run_activities_total{type=\"db_backup\",status=\"success\"}"
        ),
        Some(1.0)
    );
    // /api/activities filters.
    let (_, _, acts) = get(&s, "/api/activities?status=failed&limit=5");
    let acts: Value = serde_json::from_str(&acts).unwrap();
    assert_eq!(acts.as_array().unwrap().len(), 1);
    assert_eq!(acts[0]["step"], "noisy");
    // A filter word that names nothing is the reader's to correct: 400 on the page and the
    // API alike, saying which words there are.
    for path in ["/?status=nope", "/api/activities?type=nope"] {
        let (code, _, body) = get(&s, path);
        assert_eq!(code, 400, "{path}: {body}");
        assert!(body.contains("`nope` is not"), "{path}: {body}");
    }
}

#[test]
fn a_failed_run_after_a_success_does_not_look_fresh() {
    let ws = workspace();
    ws.write(
        "fake-pg-dump",
        "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'pg_dump 15'; exit 0; }\nexit 1\n",
    );
    assert_eq!(ws.run_at("2026-11-28T11:00:00Z", &["run", "db"]).code(), 1);
    let s = serve(&ws, None);
    let (_, _, metrics) = get(&s, "/metrics");
    let success = metric(
        &metrics,
        "ops_run_step_last_success_timestamp_seconds{plan=\"crm\",step=\"db\"",
    )
    .unwrap();
    let attempt = metric(
        &metrics,
        "ops_run_step_last_attempt_timestamp_seconds{plan=\"crm\",step=\"db\"",
    )
    .unwrap();
    assert!(attempt > success, "{attempt} vs {success}");
    assert_eq!(
        metric(
            &metrics,
            "ops_run_check_state{plan=\"crm\",check=\"crm/db\""
        ),
        Some(2.0)
    );
}

#[test]
fn markup_in_output_is_rendered_inert() {
    let ws = workspace();
    let s = serve(&ws, None);
    let (_, headers, page) = get(&s, "/");
    assert!(!page.contains("<script>"), "live markup on the page");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(
        headers.contains("Content-Security-Policy: default-src 'none'"),
        "{headers}"
    );
    assert!(headers.contains("X-Content-Type-Options: nosniff"));
    assert!(headers.contains("X-Frame-Options: DENY"));
    // Filters from the query string are escaped too.
    let (_, _, page) = get(&s, "/?plan=%22%3E%3Cscript%3E");
    assert!(
        !page.contains("\"><script>"),
        "a filter broke out of its attribute"
    );
}

#[test]
fn only_get_and_head_are_served() {
    let ws = workspace();
    let s = serve(&ws, None);
    let (code, headers, _) = request(s.port, "POST / HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(code, 405);
    assert!(headers.contains("Allow: GET, HEAD"), "{headers}");
    let (code, _, body) = request(s.port, "HEAD /healthz HTTP/1.0\r\n\r\n");
    assert_eq!((code, body.as_str()), (200, ""));
    assert_eq!(get(&s, "/nope").0, 404);
}

#[test]
fn idle_connections_and_huge_headers_do_not_stop_it() {
    let ws = workspace();
    let s = serve(&ws, None);
    let idle: Vec<TcpStream> = (0..500)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", s.port)).ok())
        .collect();
    assert!(idle.len() >= 450, "only {} connections opened", idle.len());
    assert_eq!(
        get(&s, "/healthz").0,
        200,
        "a flood of idle connections blocked a request"
    );
    drop(idle);
    let big = "x".repeat(1024 * 1024);
    let (code, _, _) = request(s.port, &format!("GET / HTTP/1.0\r\nX-Big: {big}\r\n\r\n"));
    assert_ne!(code, 200, "a 1 MB header was served");
    assert_eq!(get(&s, "/healthz").0, 200);
}

#[test]
fn an_oversized_head_is_refused_while_it_arrives() {
    let ws = workspace();
    let s = serve(&ws, None);
    // 64 KiB of one field and no end: the server answers as soon as 16 KiB have passed,
    // without waiting for (or keeping) the rest.
    let mut c = connect(s.port);
    let big = "x".repeat(64 * 1024);
    let _ = c.write_all(format!("GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {big}").as_bytes());
    let mut answer = Vec::new();
    let _ = c.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 431 "),
        "no 431 while the head was still arriving: {answer:?}"
    );
    // So do too many fields, and a body larger than 16 KiB is refused before it is read.
    let many: String = (0..200).map(|i| format!("X-{i}: v\r\n")).collect();
    let (code, _, _) = request(s.port, &format!("GET / HTTP/1.0\r\n{many}\r\n"));
    assert_eq!(code, 431);
    let (code, _, _) = request(
        s.port,
        "POST /api/actions/db HTTP/1.0\r\nContent-Length: 1000000000\r\n\r\n",
    );
    assert_eq!(code, 413);
    assert_eq!(get(&s, "/healthz").0, 200);
}

#[test]
fn keep_alive_requests_do_not_wait_for_a_delayed_ack() {
    let ws = workspace();
    let s = serve(&ws, None);
    let mut c = connect(s.port);
    // Two requests sent at once on one connection are both answered, in order.
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\nGET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut reader = std::io::BufReader::new(c.try_clone().unwrap());
    let mut read_response = || {
        use std::io::BufRead;
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.strip_prefix("Content-Length: ") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        status
    };
    assert!(read_response().starts_with("HTTP/1.1 200"));
    assert!(read_response().starts_with("HTTP/1.1 404"));
    // A response left in two writes on a socket with Nagle's algorithm on waits for the
    // client's delayed ACK: at least 40 ms per request on Linux. The median of 30 requests on
    // one kept-alive connection tells that stall from load (well under 1 ms here).
    let mut times = Vec::new();
    for _ in 0..30 {
        let t = std::time::Instant::now();
        c.write_all(b"GET /api/status HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        assert!(read_response().starts_with("HTTP/1.1 200"));
        times.push(t.elapsed());
    }
    times.sort();
    assert!(
        times[15] < Duration::from_millis(30),
        "keep-alive requests stall: median {:?}",
        times[15]
    );
}

#[test]
fn a_page_asked_for_by_a_foreign_name_is_refused() {
    // DNS rebinding: a page on evil.example that resolves its own name to 127.0.0.1 sends
    // `Host: evil.example`; the server must not answer it.
    let ws = workspace();
    let s = serve(&ws, None);
    let p = s.port;
    let with_host = |host: &str, path: &str| {
        request(
            p,
            &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
    };
    for path in ["/", "/api/status", "/metrics"] {
        let (code, _, body) = with_host(&format!("evil.example:{p}"), path);
        assert_eq!(code, 421, "{path}: {body}");
        assert!(body.contains("allowed-hosts"), "{body}");
    }
    for host in [
        format!("127.0.0.1:{p}"),
        format!("localhost:{p}"),
        format!("[::1]:{p}"),
        "status.example.com".to_string(),
        format!("STATUS.example.com:{p}"),
        format!("ops.corp.example:{p}"),
    ] {
        assert_eq!(with_host(&host, "/api/status").0, 200, "{host}");
    }
    assert_eq!(with_host("corp.example.evil", "/").0, 421);
    // /healthz answers whatever the name (load balancers' checks).
    assert_eq!(with_host("evil.example", "/healthz").0, 200);
    // HTTP/1.1 without Host is malformed.
    assert_eq!(request(p, "GET / HTTP/1.1\r\n\r\n").0, 400);
}

#[test]
fn the_server_recovers_when_its_accept_loop_dies() {
    let ws = workspace();
    // Few file descriptors: enough connections make accept() fail with EMFILE, which ends
    // would end an accept loop that gives up; the server must keep accepting.
    let s = serve(&ws, Some("ulimit -n 64"));
    let flood: Vec<TcpStream> = (0..100)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", s.port)).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    drop(flood);
    // A request sent while no loop accepts waits in the old backlog: ask briefly, often.
    let quick = || {
        request_within(
            s.port,
            "GET /healthz HTTP/1.0\r\n\r\n",
            Duration::from_secs(2),
        )
        .0 == 200
    };
    assert!(wait_for(90, quick), "the server did not recover");
    assert_eq!(get(&s, "/api/status").0, 200);
}

#[test]
fn metrics_are_the_same_after_a_restart() {
    let ws = workspace();
    let before = {
        let s = serve(&ws, None);
        get(&s, "/metrics").2
    };
    let s = serve(&ws, None);
    assert_eq!(get(&s, "/metrics").2, before);
    // And `ops-run metrics` prints the same, `--textfile` writes it atomically.
    let r = ws.run_at("2026-11-28T12:00:30Z", &["metrics"]);
    assert_eq!(r.stdout(), before);
    let r = ws.run_at(
        "2026-11-28T12:00:30Z",
        &["metrics", "--textfile", "node/ops-run.prom"],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(
        std::fs::read_to_string(ws.path("node/ops-run.prom")).unwrap(),
        before
    );
}

#[test]
#[ignore = "needs promtool (Debian prometheus); run scripts/test"]
fn promtool_accepts_the_metrics_and_the_shipped_rules() {
    let ws = workspace();
    let s = serve(&ws, None);
    let (_, _, metrics) = get(&s, "/metrics");
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rules = crate::harness::repo_root().join("examples/prometheus/ops-run-rules.yml");
    let out = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
#[ignore = "needs prometheus; run scripts/test"]
fn a_real_prometheus_scrapes_the_server() {
    let ws = workspace();
    let s = serve(&ws, None);
    let prom_port = free_port();
    ws.write(
        "prometheus.yml",
        &format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: ops-run\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n", s.port),
    );
    let mut prom = Command::new("prometheus")
        .current_dir(ws.path(""))
        .args([
            "--config.file=prometheus.yml",
            &format!("--web.listen-address=127.0.0.1:{prom_port}"),
            "--storage.tsdb.path=tsdb",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let query = |q: &str| {
        let (_, _, body) = request(
            prom_port,
            &format!("GET /api/v1/query?query={q} HTTP/1.0\r\n\r\n"),
        );
        serde_json::from_str::<Value>(&body).unwrap_or(Value::Null)
    };
    let up = wait_for(30, || query("up")["data"]["result"][0]["value"][1] == "1");
    let state = query("ops_run_check_state");
    let _ = prom.kill();
    let _ = prom.wait();
    assert!(up, "prometheus never saw the target up");
    let results = state["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let db = results
        .iter()
        .find(|r| r["metric"]["check"] == "crm/db")
        .expect("ops_run_check_state for crm/db");
    assert_eq!(db["value"][1], "1", "{db}");
}

#[test]
#[ignore = "needs chromium; run scripts/test"]
fn a_real_browser_renders_the_page() {
    let ws = workspace();
    let s = serve(&ws, None);
    let url = format!("http://127.0.0.1:{}/", s.port);
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ];
    let profile = format!("--user-data-dir={}", ws.path("chromium").display());
    let dom = Command::new("chromium")
        .args(flags)
        .arg(&profile)
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    for want in [
        "crm/db",
        "stale",
        ": WARNING",
        "ops-run/apply",
        "Last plan apply:",
        "Next run",
        "no offsite copy",
        "Recent activity",
        "crm/noisy",
    ] {
        assert!(
            dom.contains(want),
            "{want} not in the rendered page:\n{dom}"
        );
    }
    let shot = ws.path("page.png");
    let out = Command::new("chromium")
        .args(flags)
        .arg(&profile)
        .arg("--window-size=1280,900")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "no screenshot"
    );
}

#[test]
fn every_time_shown_names_its_zone() {
    // The plan's zone on cards and in `status`, UTC in the page's header: each says which.
    let ws = workspace_with(&PLAN.replace(
        "base \"backups\"",
        "base \"backups\"\n    timezone \"Europe/Prague\"",
    ));
    let status = ws.run_at("2026-11-28T12:00:30Z", &["status"]);
    assert!(
        status.stdout().contains("2026-11-27 11:00 CET"),
        "{}",
        status.stdout()
    );
    let s = serve(&ws, None);
    let (_, _, page) = get(&s, "/");
    assert!(page.contains("2026-11-27 11:00 CET"), "{page}");
    assert!(page.contains("Evaluated 2026-11-28 12:00:3"), "{page}");
    let header = page.split("Evaluated ").nth(1).unwrap();
    assert!(header[..30].contains(" UTC;"), "{header}");
}

#[test]
fn a_plan_broken_while_serving_turns_the_page_red_and_fixed_turns_it_back() {
    let ws = workspace();
    let good = std::fs::read_to_string(ws.path("plans/main.kdl")).unwrap();
    let s = serve(&ws, None);
    let overall = |s: &Served| -> String {
        let (_, _, body) = get(s, "/api/status");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["overall"].as_str().unwrap().to_string()
    };
    let before = overall(&s);
    assert_ne!(before, "crit", "{before}");
    // A typo in the live plan: within a few seconds the server says so everywhere.
    ws.write("plans/main.kdl", &good.replacen("base ", "bse ", 1));
    assert!(
        wait_for(15, || overall(&s) == "crit"),
        "the page stayed {}",
        overall(&s)
    );
    let (_, _, body) = get(&s, "/api/status");
    assert!(body.contains("ops-run/plans"), "{body}");
    assert!(body.contains("plans/main.kdl:"), "{body}");
    let (_, _, page) = get(&s, "/");
    assert!(
        page.contains("The plans do not load: nothing runs until they do"),
        "{page}"
    );
    assert!(page.contains("plans/main.kdl:"), "{page}");
    // The cards of the last plans that loaded stay.
    assert!(page.contains("<h3>crm/db</h3>"), "{page}");
    let (_, _, metrics) = get(&s, "/metrics");
    assert!(metrics.contains("ops_run_plans_loaded{} 0"), "{metrics}");
    assert!(metrics.contains("ops_run_plan_errors{} 1"), "{metrics}");
    // Fixed: back to what it was.
    ws.write("plans/main.kdl", &good);
    assert!(wait_for(15, || overall(&s) == before), "{}", overall(&s));
    let (_, _, metrics) = get(&s, "/metrics");
    assert!(metrics.contains("ops_run_plans_loaded{} 1"), "{metrics}");
    let (_, _, page) = get(&s, "/");
    assert!(!page.contains("The plans do not load"), "{page}");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(
        page.contains(&format!("ops-run on {}", host.trim())),
        "{page}"
    );
}

#[test]
#[ignore = "needs restic; run scripts/test"]
fn the_page_says_what_an_operator_looks_for() {
    let ws = Workspace::with_plan(
        r#"plan app {
            base "backups"
            timezone "Europe/Prague"
            database main {
                engine sqlite
                path "app.db"
            }
            dump db {
                database main
                schedule "0 2 * * *"
            }
            verify restore {
                dump db
                schedule "30 2 * * *"
            }
            snapshot files {
                paths "data"
                repository "repo"
                password env=FILES_PW
                init #true
                schedule "15 2 * * *"
            }
        }"#,
    )
    .env("FILES_PW", "files-Pw-81");
    let cache = ws.path("cache").display().to_string();
    let ws = ws.env("RESTIC_CACHE_DIR", &cache);
    rusqlite::Connection::open(ws.path("app.db"))
        .unwrap()
        .execute_batch("CREATE TABLE users (id INTEGER); CREATE TABLE notes (id INTEGER);")
        .unwrap();
    for i in 0..3 {
        ws.write(&format!("data/f{i}.txt"), &"x".repeat(1000 + i));
    }
    let r = ws.run_at("2026-11-28T12:00:00Z", &["plan", "apply"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let s = serve(&ws, None);
    let (_, _, page) = get(&s, "/");
    for wanted in [
        // The last apply: when, its result, how many steps ran.
        "Last plan apply: 2026-11-28 13:00 CET — ok, 3 steps ran",
        // Each card's next run, in the plan's zone.
        "<dt>Next run</dt><dd>2026-11-29 02:00 CET</dd>",
        // The snapshot: files and bytes, not the marker.
        "3 files, 2.9 KiB",
        // The verify: which dump it restored, and its tables.
        "restored full-20261128-1300.sql.gz: 2 tables",
        // A dump that no copy covers.
        "no offsite copy",
    ] {
        assert!(page.contains(wanted), "no `{wanted}` in:\n{page}");
    }
}

/// `VmHWM` (peak resident set) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A GET on a new connection that must be answered within `within`: its status (or why there
/// is none) and how long it took.
fn probe(port: u16, path: &str, within: Duration) -> (Result<u16, String>, Duration) {
    let t = std::time::Instant::now();
    let answer = (|| {
        let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(within)).unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .map_err(|e| format!("write: {e}"))?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&out);
        text.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("no status in {text:?}"))
    })();
    (answer, t.elapsed())
}

#[test]
fn one_client_with_ten_thousand_half_sent_heads_cannot_take_the_page_away() {
    // The test opens the flood's sockets itself: it needs the descriptors.
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(1 << 20);
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(hard),
            maximum: Some(hard),
        },
    )
    .unwrap();
    let flood_size = 10_000usize;
    assert!(
        hard >= flood_size as u64 + 1000,
        "the file-descriptor limit ({hard}) is too low for this test"
    );
    let ws = workspace();
    let s = serve(&ws, None);
    let port = s.port;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooder = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut open: Vec<TcpStream> = Vec::new();
            let mut opened = 0;
            let mut round = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if opened < flood_size {
                    for _ in 0..200 {
                        if let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) {
                            let _ = c.set_nonblocking(true);
                            let _ = c.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ");
                            open.push(c);
                            opened += 1;
                        }
                    }
                }
                // The slow trickle: a byte on every socket still open, now and then.
                round += 1;
                if round.is_multiple_of(5) {
                    open.retain_mut(|c| c.write_all(b"a").is_ok());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            opened
        })
    };
    let mut probes = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        for path in ["/healthz", "/metrics"] {
            let (code, took) = probe(port, path, Duration::from_secs(1));
            assert_eq!(
                code,
                Ok(200),
                "{path} was not answered within 1 s during the flood ({took:?})"
            );
            probes += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let opened = flooder.join().unwrap();
    assert!(
        opened >= flood_size,
        "the flood opened only {opened} connections"
    );
    assert!(probes >= 20, "only {probes} probes");
    let peak = peak_rss_kib(s.pid());
    assert!(peak <= 64 * 1024, "serve's peak RSS was {peak} KiB");
    // After the flood, everything answers at once.
    for path in ["/", "/api/status", "/metrics", "/healthz"] {
        let (code, took) = probe(port, path, Duration::from_secs(1));
        assert_eq!(code, Ok(200), "{path} after the flood ({took:?})");
    }
}

#[test]
fn framing_follows_the_rfc_and_absolute_targets_are_served() {
    let ws = workspace();
    let s = serve(&ws, None);
    let p = s.port;
    for (raw, expect) in [
        (
            "POST /api/actions/db HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".to_string(),
            &[400][..],
        ),
        (
            "POST /api/actions/db HTTP/1.1\r\nHost: localhost\r\nContent-Length: +3\r\n\r\nabc".to_string(),
            &[400],
        ),
        (
            "POST /api/actions/db HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_string(),
            &[400, 411],
        ),
        (
            format!("GET http://127.0.0.1:{p}/healthz HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nConnection: close\r\n\r\n"),
            &[200],
        ),
        // The authority of an absolute target is the name asked for.
        (
            format!("GET http://evil.example/api/status HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nConnection: close\r\n\r\n"),
            &[421],
        ),
    ] {
        let (code, head, _) = request(p, &raw);
        assert!(expect.contains(&code), "{raw:?}: {code} {head}");
    }
    let (code, _, body) = request(
        p,
        &format!(
            "GET http://127.0.0.1:{p}/api/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"checks\""), "{body}");
}
