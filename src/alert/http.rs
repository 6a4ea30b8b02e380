//! Slack and generic webhooks over HTTP (ureq): one time budget for all attempts, bounded
//! retries with backoff on connection errors and 5xx, no proxy from the environment.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::DeliveryError;
use crate::exec::redact::Redactor;

pub const ATTEMPTS: u32 = 3;

/// Slack incoming-webhook JSON: `text` is the notification fallback, the block the message.
pub fn slack_body(payload: &Value) -> Value {
    let text = payload["text"].as_str().unwrap_or("ops-run");
    json!({
        "text": text,
        "blocks": [{ "type": "section", "text": { "type": "mrkdwn", "text": text } }],
    })
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into()
}

/// One request: the status, or why there was none.
fn request(
    method: &str,
    url: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<u16, String> {
    let agent = agent(timeout);
    let response = match (method, body) {
        ("POST", Some(b)) => agent
            .post(url)
            .header("Content-Type", "application/json")
            .header("User-Agent", concat!("ops-run/", env!("CARGO_PKG_VERSION")))
            .send(b.to_string()),
        ("POST", None) => agent.post(url).send_empty(),
        _ => agent.get(url).call(),
    };
    response
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

/// POSTs `body` until a 2xx, a 4xx (not worth repeating) or the budget runs out. Errors
/// never show the URL (a webhook URL is a secret).
pub fn post_json(
    url: &str,
    body: &Value,
    budget: Duration,
    redactor: &Redactor,
) -> Result<u32, DeliveryError> {
    send(url, "POST", Some(body), budget, redactor)
}

pub fn send(
    url: &str,
    method: &str,
    body: Option<&Value>,
    budget: Duration,
    redactor: &Redactor,
) -> Result<u32, DeliveryError> {
    let deadline = Instant::now() + budget;
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match request(method, url, body, left) {
            Ok(s) if (200..300).contains(&s) => return Ok(attempt),
            Ok(s) if (400..500).contains(&s) => {
                return Err(DeliveryError::Rejected(s));
            }
            Ok(s) => last = DeliveryError::Rejected(s).to_string(),
            Err(e) => last = redactor.redact(&e.replace(url, "***")),
        }
        if attempt < ATTEMPTS {
            let pause = Duration::from_millis(250 * 2u64.pow(attempt - 1));
            if Instant::now() + pause >= deadline {
                break;
            }
            std::thread::sleep(pause);
        }
    }
    Err(DeliveryError::GaveUp {
        last,
        budget: crate::units::duration::format(budget),
    })
}
