//! `alert email` through a real SMTP server on loopback (Python's aiosmtpd, with
//! authentication): the subject says the state, every recipient gets it, the body is the
//! readable message, and neither the SMTP password nor any other secret is in the mail.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::harness::{Reaped, Workspace, listening};
use crate::serve::free_port;

const SMTP_PASSWORD: &str = "smtp-Secret-9c1";

const SERVER: &str = r#"
import email, email.policy, json, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
out, port = sys.argv[1], int(sys.argv[2])
class Handler:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with open(out, "a") as f:
            f.write(json.dumps({
                "from": envelope.mail_from,
                "to": envelope.rcpt_tos,
                "login": session.auth_data if session.authenticated else None,
                "data": envelope.content.decode("utf-8", "replace"),
                "subject": str(msg["subject"]),
                "body": msg.get_content(),
            }) + "\n")
        return "250 OK"
def authenticator(server, session, envelope, mechanism, data):
    ok = data.login == b"ops" and data.password == sys.argv[3].encode()
    return AuthResult(success=ok, auth_data="ops" if ok else None)
c = Controller(Handler(), hostname="127.0.0.1", port=port,
               authenticator=authenticator, auth_require_tls=False)
c.start()
while True:
    time.sleep(1)
"#;

/// The Python that has Debian's python3-aiosmtpd.
fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

fn mails(ws: &Workspace) -> Vec<Value> {
    std::fs::read_to_string(ws.path("mails.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
#[ignore = "needs python3-aiosmtpd; run scripts/test"]
fn alerts_arrive_by_mail_with_the_state_in_the_subject_and_no_secret() {
    let port = free_port();
    let ws = Workspace::with_plan(&format!(
        r#"plan app {{
            base "backups"
            database main {{
                engine sqlite
                path "app.db"
            }}
            dump db {{
                database main
            }}
            alert mail {{
                kind email
                smtp "smtp://127.0.0.1:{port}"
                starttls #false
                from "ops-run <ops-run@example.com>"
                to "oncall@example.com"
                to "dba@example.com"
                username "ops"
                password env=SMTP_PASSWORD
            }}
        }}"#
    ))
    .env("SMTP_PASSWORD", SMTP_PASSWORD);
    ws.write("smtpd.py", SERVER);
    let _server = Reaped(
        Command::new(python())
            .arg(ws.path("smtpd.py"))
            .arg(ws.path("mails.jsonl"))
            .arg(port.to_string())
            .arg(SMTP_PASSWORD)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(listening(port, 10), "the SMTP server did not start");
    let r = ws.run(&["plan", "validate"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());

    // The test message.
    let r = ws.run(&["alerts", "test", "mail"]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    let sent = mails(&ws);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["login"], "ops");
    assert!(
        sent[0]["data"]
            .as_str()
            .unwrap()
            .contains("Subject: [ops-run] app: test message")
    );

    // A dump that fails: the alert says CRITICAL and names the check.
    let r = ws.run_at("2026-11-28T10:00:00Z", &["run", "db"]);
    assert_eq!(r.code(), 1, "{}", r.stdout());
    let r = ws.run_at("2026-11-28T10:01:00Z", &["health", "--alert"]);
    assert!(
        r.stdout().contains("alert app/mail: delivered"),
        "{}{}",
        r.stdout(),
        r.stderr()
    );
    let sent = mails(&ws);
    assert_eq!(sent.len(), 2, "{sent:?}");
    let mail = &sent[1];
    let mut to: Vec<&str> = mail["to"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    to.sort();
    assert_eq!(to, ["dba@example.com", "oncall@example.com"]);
    assert_eq!(mail["from"], "ops-run@example.com");
    assert_eq!(mail["subject"], "[ops-run] app: CRITICAL — app/db fail");
    let body = mail["body"].as_str().unwrap();
    assert!(body.contains("app/db — FAIL (crit, alert)"), "{body}");
    assert!(body.contains("the newest run failed"), "{body}");
    let data = mail["data"].as_str().unwrap();
    assert!(data.contains("Content-Type: text/plain"), "{data}");
    assert!(!data.contains(SMTP_PASSWORD), "{data}");
    let activities = serde_json::to_string(&ws.activities()).unwrap();
    assert!(!activities.contains(SMTP_PASSWORD));

    // The server gone: the delivery fails, says so, and is owed to the next evaluation.
    drop(_server);
    let r = ws.run_at("2026-11-28T10:02:00Z", &["alerts", "test", "mail"]);
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    assert!(!r.stdout().contains(SMTP_PASSWORD) && !r.stderr().contains(SMTP_PASSWORD));
}

/// An SMTP server that greets one `220-` line a second and never finishes its greeting.
const SLOW_SERVER: &str = r#"
import socket, sys, threading, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
def drip(c):
    try:
        while True:
            c.sendall(b"220-slow.example.com still greeting\r\n"); time.sleep(1)
    except OSError:
        pass
while True:
    c, _ = s.accept()
    threading.Thread(target=drip, args=(c,), daemon=True).start()
"#;

#[test]
fn a_slow_mail_server_costs_the_channel_timeout_and_never_holds_an_apply() {
    let port = free_port();
    let ws = Workspace::with_plan(&format!(
        r#"plan app {{
            base "backups"
            database main {{
                engine sqlite
                path "app.db"
            }}
            dump db {{
                database main
            }}
            alert mail {{
                kind email
                smtp "smtp://127.0.0.1:{port}"
                starttls #false
                from "ops-run@example.com"
                to "oncall@example.com"
                timeout "{{TIMEOUT}}"
            }}
        }}"#
    ));
    ws.write("slow.py", SLOW_SERVER);
    let _server = Reaped(
        Command::new(python())
            .arg(ws.path("slow.py"))
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(listening(port, 10), "the SMTP server did not start");
    let plan = std::fs::read_to_string(ws.path("plans/main.kdl")).unwrap();
    ws.write("plans/main.kdl", &plan.replace("{TIMEOUT}", "3s"));
    // The channel's timeout is the whole delivery's budget.
    let started = std::time::Instant::now();
    let r = ws.run(&["alerts", "test", "mail"]);
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    // With a long budget, an apply that alerts (the dump fails: no database) still ends
    // at once on SIGTERM, and the next apply is not locked out.
    ws.write("plans/main.kdl", &plan.replace("{TIMEOUT}", "10m"));
    let mut child = ws
        .command(&["plan", "apply", "--only", "db"])
        .env("OPS_NOW", "2026-11-28T10:00:00Z")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Alerting: the dump has failed and its row is written.
    assert!(
        crate::harness::wait_for(30, || ws
            .activities()
            .iter()
            .any(|a| a["status"] == "failed")),
        "the dump never failed"
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    let stopped = std::time::Instant::now();
    crate::harness::signal(child.id(), rustix::process::Signal::TERM);
    assert!(
        crate::harness::wait_for(10, || child.try_wait().unwrap().is_some()),
        "plan apply ignored SIGTERM"
    );
    assert!(stopped.elapsed() < std::time::Duration::from_secs(10));
    ws.write("plans/main.kdl", &plan.replace("{TIMEOUT}", "2s"));
    let r = ws.run_at("2026-11-28T10:05:00Z", &["plan", "apply", "--only", "db"]);
    assert_ne!(r.code(), 75, "the lock was still held: {}", r.stderr());
}
