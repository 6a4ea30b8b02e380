//! `alert email { smtp "smtp://host:587" from "…" to "…"… username "…" password SOURCE }`: the
//! same messages as Slack, as a plain-text mail whose subject says the state
//! (`[ops-run] crm: CRITICAL — crm/db fail`), with the same attempts and budget. `smtp://`
//! uses STARTTLS unless `starttls #false` (a relay on loopback); `smtps://` is TLS from the
//! first byte. The body reaching here is already redacted.

use std::time::Duration;

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};
use serde_json::Value;

use super::{Attempt, DeliveryError};

pub use crate::units::smtp::Server;

/// An email channel, resolved.
#[derive(Clone, Debug)]
pub struct Email {
    pub server: Server,
    pub starttls: bool,
    pub from: String,
    pub to: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// `[ops-run] crm: CRITICAL — crm/db fail (and 2 more)`.
pub fn subject(body: &Value) -> String {
    let plan = body["plan"].as_str().unwrap_or("ops-run");
    if body["test"] == true {
        return format!("[ops-run] {plan}: test message");
    }
    let state = match body["severity"].as_str() {
        Some("crit") => "CRITICAL",
        Some("warn") => "WARNING",
        _ => "OK",
    };
    let changes = body["changes"].as_array().cloned().unwrap_or_default();
    let first = changes.first().map(|c| {
        let what = match c["change"].as_str() {
            Some("recovered") => "recovered".to_string(),
            _ => c["state"].as_str().unwrap_or("?").to_string(),
        };
        format!("{} {what}", c["check"].as_str().unwrap_or("?"))
    });
    match (first, changes.len()) {
        (Some(f), 1) => format!("[ops-run] {plan}: {state} — {f}"),
        (Some(f), n) => format!("[ops-run] {plan}: {state} — {f} (and {} more)", n - 1),
        (None, _) => format!("[ops-run] {plan}: {state}"),
    }
}

/// The message as people read it: the summary, then each change with its details.
pub fn text(body: &Value) -> String {
    let mut out = format!("{}\n", body["text"].as_str().unwrap_or_default());
    for c in body["changes"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\n{} — {} ({}, {})\n",
            c["check"].as_str().unwrap_or("?"),
            c["state"].as_str().unwrap_or("?").to_uppercase(),
            c["severity"].as_str().unwrap_or("?"),
            c["change"].as_str().unwrap_or("?"),
        ));
        if let Some(d) = c["detail"].as_str() {
            out.push_str(&format!("  {d}\n"));
        }
        if let Some(a) = c["artifact"].as_str() {
            out.push_str(&format!("  artifact: {a}\n"));
        }
        if let Some(s) = c["last_success"].as_str() {
            out.push_str(&format!("  last success: {s}\n"));
        }
    }
    out.push_str(&format!(
        "\n-- \nops-run, {}\n`ops-run status` on the host says more.\n",
        body["sent_at"].as_str().unwrap_or_default()
    ));
    out
}

fn transport(e: &Email, timeout: Duration) -> Result<SmtpTransport, String> {
    let s = &e.server;
    let tls = |host: &str| TlsParameters::new(host.to_string()).map_err(|x| x.to_string());
    let mut b = SmtpTransport::builder_dangerous(&s.host)
        .port(s.port)
        .timeout(Some(timeout));
    b = if s.implicit_tls {
        b.tls(Tls::Wrapper(tls(&s.host)?))
    } else if e.starttls {
        b.tls(Tls::Required(tls(&s.host)?))
    } else {
        b.tls(Tls::None)
    };
    if let (Some(u), Some(p)) = (&e.username, &e.password) {
        b = b.credentials(Credentials::new(u.clone(), p.clone()));
    }
    Ok(b.build())
}

/// Sends the message; how many attempts it took. A refusal by the server (5xx) is final; a
/// connection problem or a 4xx is tried again within the budget.
pub fn send(e: &Email, body: &Value, budget: Duration) -> Result<u32, DeliveryError> {
    let parse = |a: &str| {
        a.parse::<Mailbox>()
            .map_err(|x| DeliveryError::Mail(format!("`{a}`: {x}")))
    };
    let mut message = Message::builder()
        .from(parse(&e.from)?)
        .subject(subject(body))
        .header(ContentType::TEXT_PLAIN);
    for to in &e.to {
        message = message.to(parse(to)?);
    }
    let message = message
        .body(text(body))
        .map_err(|x| DeliveryError::Mail(x.to_string()))?;
    let message = std::sync::Arc::new(message);
    super::retrying(budget, |left| match transport(e, left) {
        Err(why) => Attempt::Refused(DeliveryError::Mail(why)),
        Ok(t) => match within(left, {
            let message = std::sync::Arc::clone(&message);
            move || t.send(&message)
        }) {
            None => Attempt::Failed(format!(
                "the mail server did not finish within {}",
                crate::units::duration::format(left)
            )),
            Some(Ok(_)) => Attempt::Delivered,
            Some(Err(x)) if x.is_permanent() => {
                Attempt::Refused(DeliveryError::Mail(format!("the server refused: {x}")))
            }
            Some(Err(x)) => Attempt::Failed(x.to_string()),
        },
    })
}

/// `work` on a thread of its own, waited for at most `limit`, or until ops-run is asked to
/// stop: lettre's timeout bounds each read and write, not the whole conversation, so a server
/// that answers one line a second would hold a delivery (and the apply lock) for as long as
/// it likes. A conversation past its time is left to end by itself; its answer is ignored.
fn within<T: Send + 'static>(
    limit: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("smtp".into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .ok()?;
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || crate::exec::signals::interrupted() {
            return None;
        }
        match rx.recv_timeout(left.min(Duration::from_millis(100))) {
            Ok(v) => return Some(v),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn servers() {
        assert_eq!(
            Server::parse("smtp://mail.example.com"),
            Ok(Server {
                host: "mail.example.com".into(),
                port: 587,
                implicit_tls: false
            })
        );
        assert_eq!(Server::parse("smtps://m:2465").unwrap().port, 2465);
        assert!(Server::parse("mail.example.com:25").is_err());
        assert!(Server::parse("smtp://user@host").is_err());
    }

    #[test]
    fn the_subject_says_the_state() {
        let body = json!({ "plan": "crm", "severity": "crit", "changes": [
            { "check": "crm/db", "state": "fail", "change": "alert" },
            { "check": "crm/uploads", "state": "ok", "change": "recovered" } ] });
        assert_eq!(
            subject(&body),
            "[ops-run] crm: CRITICAL — crm/db fail (and 1 more)"
        );
    }
}
