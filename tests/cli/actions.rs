//! Permissions and actions over HTTP: the authorisation matrix, forged cross-site requests,
//! the apply lock, and `ops-run permissions`.

use std::process::{Command, Stdio};

use crate::harness::{Workspace, wait_for};
use crate::serve::{request, serve};

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
    git-tag release {
        repository "sidecar.git"
        name "backup-{date}-{seq}"
    }
    serve {
        token viewer env=VIEW_T allow=ops.view
        token operator env=EXEC_T allow=ops.execute
        token releaser env=REL_T allow=ops.release
    }
}"#;

fn workspace(dump_script: &str) -> Workspace {
    let ws = Workspace::with_plan(PLAN)
        .env("VIEW_T", "view-secret-1")
        .env("EXEC_T", "exec-secret-2")
        .env("REL_T", "rel-secret-3");
    ws.write("fake-pg-dump", dump_script);
    Command::new("chmod")
        .arg("+x")
        .arg(ws.path("fake-pg-dump"))
        .status()
        .unwrap();
    ws
}

const DUMP: &str = "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'pg_dump 15'; exit 0; }\necho 'INSERT INTO t VALUES (1);'\necho '-- PostgreSQL database dump complete'\n";

fn bearer(secret: Option<&str>) -> String {
    secret
        .map(|s| format!("Authorization: Bearer {s}\r\n"))
        .unwrap_or_default()
}

fn code(port: u16, method: &str, path: &str, secret: Option<&str>) -> u16 {
    request(
        port,
        &format!(
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n{}\r\n",
            bearer(secret)
        ),
    )
    .0
}

#[test]
fn the_authorisation_matrix() {
    let ws = workspace(DUMP);
    let s = serve(&ws, None);
    let p = s.port;
    // {no token, view, execute, release, wrong} × {GET /, GET /metrics, POST dump, POST git-tag}
    let rows: [(Option<&str>, [u16; 4]); 5] = [
        (None, [401, 401, 401, 401]),
        (Some("view-secret-1"), [200, 200, 403, 403]),
        (Some("exec-secret-2"), [200, 200, 202, 403]),
        (Some("rel-secret-3"), [200, 200, 403, 202]),
        (Some("wrong-secret"), [401, 401, 401, 401]),
    ];
    for (secret, want) in rows {
        let got = [
            code(p, "GET", "/", secret),
            code(p, "GET", "/metrics", secret),
            code(p, "POST", "/api/actions/crm/db", secret),
            code(p, "POST", "/api/actions/release", secret),
        ];
        assert_eq!(got, want, "token {secret:?}");
        // Let the started run finish before the next request takes the lock.
        assert!(wait_for(20, || !ws
            .activities()
            .iter()
            .any(|a| a["status"] == "running")));
    }
    // /healthz stays open.
    assert_eq!(code(p, "GET", "/healthz", None), 200);
    // HTTP Basic with the token as the password works too (curl -u any:SECRET).
    let basic = "Authorization: Basic YW55OnZpZXctc2VjcmV0LTE=\r\n";
    assert_eq!(request(p, &format!("GET / HTTP/1.0\r\n{basic}\r\n")).0, 200);
    // Activities record who asked.
    let acts = ws.activities();
    let dump = acts.iter().find(|a| a["type"] == "db_backup").unwrap();
    assert_eq!(dump["trigger"], "http");
    assert_eq!(dump["meta"]["token"], "crm/operator");
    let tag = acts.iter().find(|a| a["type"] == "git_tag").unwrap();
    assert_eq!(tag["meta"]["token"], "crm/releaser");
    // Secrets never show.
    let all = serde_json::to_string(&acts).unwrap();
    assert!(!all.contains("exec-secret-2") && !all.contains("rel-secret-3"));
}

#[test]
fn a_post_answers_202_with_the_activity_id() {
    let ws = workspace(DUMP);
    let s = serve(&ws, None);
    let (status, _, body) = request(
        s.port,
        &format!(
            "POST /api/actions/db HTTP/1.0\r\n{}\r\n",
            bearer(Some("exec-secret-2"))
        ),
    );
    assert_eq!(status, 202, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(wait_for(20, || ws
        .activities()
        .iter()
        .any(|a| a["status"] == "success")));
    let a = ws
        .activities()
        .into_iter()
        .find(|a| a["type"] == "db_backup")
        .unwrap();
    assert_eq!(v["activity"], a["id"]);
    assert_eq!(v["step"], "crm/db");
}

#[test]
fn an_action_sweeps_what_a_killed_run_left_like_an_apply() {
    let ws = workspace(DUMP);
    // A half-written dump of an ops-run killed with -9 (its pid is gone).
    let orphan = ws.path("backups/db/.full-20261128-0100.sql.gz.tmp.999999999");
    ws.write(
        "backups/db/.full-20261128-0100.sql.gz.tmp.999999999",
        "half",
    );
    let s = serve(&ws, None);
    let (status, _, body) = request(
        s.port,
        &format!(
            "POST /api/actions/db HTTP/1.0\r\n{}\r\n",
            bearer(Some("exec-secret-2"))
        ),
    );
    assert_eq!(status, 202, "{body}");
    assert!(wait_for(20, || ws
        .activities()
        .iter()
        .any(|a| a["status"] == "success")));
    assert!(!orphan.exists(), "the action left the orphan behind");
}

#[test]
fn forged_cross_site_requests_are_refused() {
    let ws = workspace(DUMP);
    let s = serve(&ws, None);
    let p = s.port;
    // A page elsewhere posting with the browser's credentials.
    let (status, _, _) = request(
        p,
        &format!(
            "POST /api/actions/db HTTP/1.0\r\nHost: 127.0.0.1:{p}\r\nOrigin: http://evil.example\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\n{}\r\n",
            bearer(Some("exec-secret-2"))
        ),
    );
    assert_eq!(status, 403);
    // A same-origin form without the page's anti-forgery field.
    let body = "csrf=guess";
    let (status, _, _) = request(
        p,
        &format!(
            "POST /api/actions/db HTTP/1.0\r\nHost: 127.0.0.1:{p}\r\nOrigin: http://127.0.0.1:{p}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n{}\r\n{body}",
            body.len(),
            bearer(Some("exec-secret-2"))
        ),
    );
    assert_eq!(status, 403);
    // A cross-site `text/plain` or `multipart/form-data` POST needs no preflight and may come
    // without `Origin`; the browser adds the Basic credentials it remembers.
    let basic = "Authorization: Basic YW55OmV4ZWMtc2VjcmV0LTI=\r\n"; // any:exec-secret-2
    for (kind, body) in [
        ("text/plain", "csrf=x"),
        (
            "multipart/form-data; boundary=b",
            "--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--b--\r\n",
        ),
        ("application/json", "{}"),
    ] {
        let (status, _, text) = request(
            p,
            &format!(
                "POST /api/actions/db HTTP/1.0\r\nHost: 127.0.0.1:{p}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n{basic}\r\n{body}",
                body.len()
            ),
        );
        assert_eq!(status, 403, "{kind}: {text}");
        assert!(text.contains("Bearer"), "{text}");
    }
    assert!(ws.activities().is_empty(), "a forged request ran something");
    // The page's own form works: its field comes from the page the token sees.
    let (_, _, page) = request(
        p,
        &format!("GET / HTTP/1.0\r\n{}\r\n", bearer(Some("exec-secret-2"))),
    );
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    assert!(page.contains("action=\"/api/actions/crm/db\""), "{page}");
    assert!(
        !page.contains("/api/actions/crm/release"),
        "no release button for an execute token"
    );
    let body = format!("csrf={csrf}");
    let (status, headers, _) = request(
        p,
        &format!(
            "POST /api/actions/crm/db HTTP/1.0\r\nHost: 127.0.0.1:{p}\r\nOrigin: http://127.0.0.1:{p}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n{}\r\n{body}",
            body.len(),
            bearer(Some("exec-secret-2"))
        ),
    );
    assert_eq!(status, 303, "{headers}");
    assert!(wait_for(20, || ws
        .activities()
        .iter()
        .any(|a| a["type"] == "db_backup" && a["status"] == "success")));
    // A viewer sees no buttons.
    let (_, _, page) = request(
        p,
        &format!("GET / HTTP/1.0\r\n{}\r\n", bearer(Some("view-secret-1"))),
    );
    assert!(!page.contains("<form method=\"post\""));
}

#[test]
fn an_action_waits_for_a_running_apply_or_answers_409() {
    // A dump that takes 3 s holds the lock through `ops-run run db`.
    let ws = workspace(&DUMP.replace("echo 'INSERT", "sleep 3\necho 'INSERT"));
    let s = serve(&ws, None);
    let hold = || {
        let child = ws
            .command(&["run", "db"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        assert!(wait_for(10, || ws
            .activities()
            .iter()
            .any(|a| a["status"] == "running")));
        child
    };
    // serve's --action-wait is 30 s by default: the action waits, then runs.
    let mut first = hold();
    let (status, _, body) = request(
        s.port,
        &format!(
            "POST /api/actions/db HTTP/1.0\r\n{}\r\n",
            bearer(Some("exec-secret-2"))
        ),
    );
    assert_eq!(status, 202, "{body}");
    first.wait().unwrap();
    assert!(wait_for(20, || ws
        .activities()
        .iter()
        .filter(|a| a["type"] == "db_backup" && a["status"] == "success")
        .count()
        == 2));
    drop(s);
    // With a short wait, a busy lock is a 409 and nothing runs twice.
    let port = crate::serve::free_port();
    let mut server = ws
        .command(&[
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--action-wait",
            "1s",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for(10, || request(
        port,
        "GET /healthz HTTP/1.0\r\n\r\n"
    )
    .0 == 200));
    let mut second = hold();
    let (status, _, _) = request(
        port,
        &format!(
            "POST /api/actions/db HTTP/1.0\r\n{}\r\n",
            bearer(Some("exec-secret-2"))
        ),
    );
    assert_eq!(status, 409);
    second.wait().unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let dumps = ws
        .activities()
        .into_iter()
        .filter(|a| a["type"] == "db_backup")
        .count();
    assert_eq!(dumps, 3, "the refused action must not have run");
}

#[test]
fn without_tokens_the_page_is_open_and_no_action_is_possible() {
    let ws = workspace(DUMP);
    ws.write("plans/main.kdl", &PLAN.replace("token viewer env=VIEW_T allow=ops.view\n        token operator env=EXEC_T allow=ops.execute\n        token releaser env=REL_T allow=ops.release\n", ""));
    let s = serve(&ws, None);
    assert_eq!(code(s.port, "GET", "/", None), 200);
    assert_eq!(code(s.port, "POST", "/api/actions/db", None), 403);
    assert!(ws.activities().is_empty());
}

#[test]
fn permissions_lists_tokens_but_never_their_secrets() {
    let ws = workspace(DUMP);
    let r = ws.run(&["permissions"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let out = r.stdout();
    for want in [
        "ops.view",
        "ops.execute",
        "ops.release",
        "crm/operator  crm   ops.execute  env EXEC_T",
    ] {
        assert!(out.contains(want), "{want} not in\n{out}");
    }
    assert!(!out.contains("exec-secret-2"));
    // An unknown permission fails.
    ws.write(
        "plans/main.kdl",
        &PLAN.replace("allow=ops.view", "allow=ops.veiw"),
    );
    let r = ws.run(&["permissions"]);
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr().contains("unknown permission `ops.veiw`"),
        "{}",
        r.stderr()
    );
}

#[test]
fn actions_never_hold_the_workers_that_answer_health_and_metrics() {
    // A dump that takes 8 s: one action runs it and holds the lock, three more wait for it.
    let ws = workspace(&DUMP.replace("echo 'INSERT", "sleep 8\necho 'INSERT"));
    let s = serve(&ws, None);
    let port = s.port;
    let post = move || {
        std::thread::spawn(move || {
            request(
                port,
                &format!(
                    "POST /api/actions/db HTTP/1.0\r\n{}\r\n",
                    bearer(Some("exec-secret-2"))
                ),
            )
        })
    };
    let posts: Vec<_> = (0..4).map(|_| post()).collect();
    assert!(wait_for(10, || ws
        .activities()
        .iter()
        .any(|a| a["status"] == "running")));
    std::thread::sleep(std::time::Duration::from_millis(500));
    for path in ["/healthz", "/metrics", "/"] {
        let started = std::time::Instant::now();
        let (status, _, _) = request(
            port,
            &format!(
                "GET {path} HTTP/1.0\r\n{}\r\n",
                bearer(Some("view-secret-1"))
            ),
        );
        assert_eq!(status, 200, "{path}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{path} waited {:?} behind the actions",
            started.elapsed()
        );
    }
    for p in posts {
        let _ = p.join();
    }
}

#[test]
fn a_smuggled_second_request_never_runs() {
    let ws = workspace(DUMP);
    let s = serve(&ws, None);
    let p = s.port;
    let action = format!(
        "POST /api/actions/db HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\n{}Content-Length: 0\r\n\r\n",
        bearer(Some("exec-secret-2"))
    );
    for smuggling in [
        // Two lengths: the first (0) would end the head, the 120 bytes run as a request.
        format!(
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{action}",
            action.len()
        ),
        format!(
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nContent-Length: +{}\r\n\r\n{action}",
            action.len()
        ),
        // A length beside a chunked body.
        format!(
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{action}",
            action.len()
        ),
    ] {
        let (status, head, _) = request(p, &smuggling);
        assert!(
            status == 400 || status == 411,
            "{smuggling:?}: {status} {head}"
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        ws.activities().is_empty(),
        "a smuggled action ran: {:?}",
        ws.activities()
    );
}
