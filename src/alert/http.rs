//! Slack and generic webhooks over HTTP (ureq): one time budget for all attempts, bounded
//! retries with backoff on connection errors and 5xx, no proxy from the environment.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Attempt, DeliveryError};
use crate::exec::redact::Redactor;

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
    super::retrying(budget, |left| match request(method, url, body, left) {
        Ok(s) if (200..300).contains(&s) => Attempt::Delivered,
        Ok(s) if (400..500).contains(&s) => Attempt::Refused(DeliveryError::Rejected(s)),
        Ok(s) => Attempt::Failed(DeliveryError::Rejected(s).to_string()),
        Err(e) => Attempt::Failed(redactor.redact(&e.replace(url, "***"))),
    })
}
