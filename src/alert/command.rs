//! `alert command { run … }`: a program gets the message in its environment
//! (`OPS_ALERT_TEXT`, `OPS_ALERT_JSON`, `OPS_ALERT_PLAN`, `OPS_ALERT_SEVERITY`, beside only
//! `PATH`, `HOME` and `LANG`); exit 0 means delivered.

use std::time::Duration;

use serde_json::Value;

use super::DeliveryError;
use crate::exec::redact::Redactor;
use crate::exec::{self, ProcessSpec};

pub fn run(
    argv: &[String],
    body: &Value,
    budget: Duration,
    redactor: &Redactor,
) -> Result<(), DeliveryError> {
    let mut spec = ProcessSpec::new(
        argv.first().cloned().unwrap_or_default(),
        argv.iter().skip(1).cloned(),
    );
    spec.env = vec![
        (
            "OPS_ALERT_TEXT".into(),
            body["text"].as_str().unwrap_or_default().to_string(),
        ),
        ("OPS_ALERT_JSON".into(), body.to_string()),
        (
            "OPS_ALERT_PLAN".into(),
            body["plan"].as_str().unwrap_or_default().to_string(),
        ),
        (
            "OPS_ALERT_SEVERITY".into(),
            body["severity"].as_str().unwrap_or_default().to_string(),
        ),
    ];
    spec.timeout = Some(budget);
    // The program gets the message, not ops-run's secrets.
    spec.minimal_env = true;
    let r = exec::run(&spec, redactor);
    if r.success() {
        Ok(())
    } else {
        Err(DeliveryError::Command {
            program: spec.program.clone(),
            exit: format!("{:?}", r.exit),
            tail: r.tail.trim().to_string(),
        })
    }
}
