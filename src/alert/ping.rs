//! `ping { url … }`: a dead-man switch in the healthchecks.io style — `URL/start` when an apply
//! begins, `URL` when it ends well, `URL/fail` when it does not — so a cron that stopped
//! running is noticed by the receiver. A ping that fails never fails the apply.

use super::Context;
use std::time::Duration;

use crate::exec::redact::Redactor;
use crate::plan::compile::Compiled;

#[derive(Clone, Copy)]
pub enum Signal {
    Start,
    Success,
    Fail,
}

pub fn send(ctx: Context<'_>, compiled: &Compiled, signal: Signal, redactor: &Redactor) {
    for plan in &compiled.plans {
        let Some(ping) = &plan.decl.ping else {
            continue;
        };
        let Some(url) = ping
            .url
            .as_ref()
            .and_then(|u| ctx.env.resolve(&u.source).ok())
        else {
            eprintln!("warning: ping of plan {} has no url", plan.decl.name.value);
            continue;
        };
        let url = url.trim_end_matches('/');
        let target = match signal {
            Signal::Start => format!("{url}/start"),
            Signal::Success => url.to_string(),
            Signal::Fail => format!("{url}/fail"),
        };
        let budget = ping
            .timeout
            .as_ref()
            .map_or(Duration::from_secs(10), |t| t.value);
        if let Err(e) = super::http::send(&target, "POST", None, budget, redactor) {
            eprintln!(
                "warning: ping of plan {} failed: {}",
                plan.decl.name.value,
                redactor.redact(&e.to_string())
            );
        }
    }
}
