//! The alert channels of the plans that loaded last, kept in the state database so that a plan
//! that stops loading still pages someone. A channel is kept as where its values come from
//! (`env=`, `file=`, `credential=`), never as a secret: those are read again at send time. A
//! secret written in the plan itself (`webhook "https://…"`) is not kept, so that channel is
//! left out while the plans do not load.

use super::Context;
use serde_json::{Value, json};

use super::{ChangeKind, Channel, deliver, delivered, payload, record, remember};
use crate::exec::redact::Redactor;
use crate::health::Check;
use crate::plan::compile::Compiled;
use crate::plan::model::{Alert, AlertKind, Sourced, Spanned, ValueSource};
use crate::plan::source::Span;
use crate::store::Store;

/// A value source as kept: where to read it, or `"secret"` for a literal secret (not kept).
fn source(s: &Option<Sourced>, secret: bool) -> Value {
    match s.as_ref().map(|s| &s.source) {
        None => Value::Null,
        Some(ValueSource::Env(v)) => json!({ "env": v }),
        Some(ValueSource::File(v)) => json!({ "file": v }),
        Some(ValueSource::Credential(v)) => json!({ "credential": v }),
        Some(ValueSource::Literal(v)) if !secret => json!({ "literal": v }),
        Some(ValueSource::Literal(_)) => json!("secret"),
    }
}

fn unsource(v: &Value) -> Option<Sourced> {
    let s = v.as_object()?;
    let source = if let Some(e) = s.get("env").and_then(Value::as_str) {
        ValueSource::Env(e.into())
    } else if let Some(f) = s.get("file").and_then(Value::as_str) {
        ValueSource::File(f.into())
    } else if let Some(c) = s.get("credential").and_then(Value::as_str) {
        ValueSource::Credential(c.into())
    } else {
        ValueSource::Literal(s.get("literal")?.as_str()?.into())
    };
    Some(Sourced {
        source,
        span: NOWHERE,
    })
}

/// Values rebuilt from the store have no place in a plan file.
const NOWHERE: Span = Span {
    file: 0,
    offset: 0,
    len: 0,
};

fn spanned<T>(v: T) -> Spanned<T> {
    Spanned::new(v, NOWHERE)
}

/// What is kept of a channel.
pub fn spec(a: &Alert) -> Value {
    json!({
        "kind": a.kind.name(),
        "webhook": source(&a.webhook, true),
        "url": source(&a.url, true),
        "run": a.run.as_ref().map(|r| r.value.clone()),
        "timeout_ms": a.timeout.as_ref().map(|t| t.value.as_millis() as u64),
        "smtp": a.smtp.as_ref().map(|s| s.value.clone()),
        "starttls": a.starttls.as_ref().map(|s| s.value),
        "from": a.from.as_ref().map(|s| s.value.clone()),
        "to": a.to.iter().map(|t| t.value.clone()).collect::<Vec<_>>(),
        "username": a.username.as_ref().map(|s| s.value.clone()),
        "password": source(&a.password, true),
    })
}

/// A channel back from what was kept; `None` when a secret it needs was written in the plan.
fn alert(name: &str, v: &Value) -> Option<Alert> {
    let kind = AlertKind::parse(v["kind"].as_str()?)?;
    if ["webhook", "url", "password"]
        .iter()
        .any(|k| v[k] == json!("secret"))
    {
        return None;
    }
    let string = |k: &str| v[k].as_str().map(|s| spanned(s.to_string()));
    Some(Alert {
        name: spanned(name.to_string()),
        kind,
        span: NOWHERE,
        webhook: unsource(&v["webhook"]),
        url: unsource(&v["url"]),
        run: v["run"].as_array().map(|a| {
            spanned(
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
            )
        }),
        renotify_after: None,
        timeout: v["timeout_ms"]
            .as_u64()
            .map(|ms| spanned(std::time::Duration::from_millis(ms))),
        include_logs: None,
        smtp: string("smtp"),
        starttls: v["starttls"].as_bool().map(spanned),
        from: string("from"),
        to: v["to"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(|t| spanned(t.to_string())))
            .collect(),
        username: string("username"),
        password: unsource(&v["password"]),
    })
}

/// Keeps the channels of `compiled` (only when they changed).
pub fn keep(store: &Store, compiled: &Compiled) {
    let rows: Vec<(String, String, String)> = compiled
        .plans
        .iter()
        .flat_map(|p| {
            p.decl.alerts.iter().map(|a| {
                (
                    p.decl.name.value.clone(),
                    a.name.value.clone(),
                    spec(a).to_string(),
                )
            })
        })
        .collect();
    if let Err(e) = store.remember_channels(&rows) {
        eprintln!("warning: cannot keep the alert channels: {e}");
    }
}

/// The plans do not load: each kept channel gets `check` (critical, with the diagnostics) once,
/// on change. One line per channel, as `notify` says it.
pub fn plans_broken(
    ctx: Context<'_>,
    store: &Store,
    check: &Check,
    redactor: &Redactor,
) -> Vec<String> {
    let now = ctx.clock.now();
    let mut said = Vec::new();
    let kept = match store.remembered_channels() {
        Ok(k) => k,
        Err(e) => return vec![format!("cannot read the kept alert channels: {e}")],
    };
    for (plan, name, spec) in kept {
        let id = format!("{plan}/{name}");
        let Some(a) = serde_json::from_str::<Value>(&spec)
            .ok()
            .and_then(|v| alert(&name, &v))
        else {
            said.push(format!(
                "alert {id}: left out while the plans do not load (its secret is written in the plan; use env= or file=)"
            ));
            continue;
        };
        let channel: Channel = match super::channel(ctx, &plan, &a) {
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                said.push(redactor.redact(&format!("alert {id}: {e}")));
                continue;
            }
            None => continue,
        };
        let last = delivered(store, &channel.name).unwrap_or_default();
        let prev = last.iter().find(|(c, _)| c == &check.id).map(|(_, d)| d);
        let Some(kind) = super::change(check, prev, super::DEFAULT_RENOTIFY, now) else {
            said.push(format!("alert {id}: nothing changed"));
            continue;
        };
        let changes: Vec<(ChangeKind, &Check)> = vec![(kind, check)];
        let body = payload(&plan, &changes, false, now, false);
        let result = deliver(&channel, &body, redactor);
        record(ctx, store, &plan, &channel, &changes, &result, redactor);
        match &result {
            Ok(_) => {
                remember(store, &channel.name, &changes, now);
                said.push(format!("alert {id}: delivered: the plans do not load"));
            }
            Err(e) => said.push(redactor.redact(&format!("alert {id}: not delivered: {e}"))),
        }
    }
    said
}
