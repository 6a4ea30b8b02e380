//! Alerts that speak only on change: per channel, what was last delivered for each check is
//! kept in SQLite; a change to warn or crit is an alert, a problem that persists past
//! `renotify-after` a reminder, a return to ok a recovery. All changes of one evaluation go out
//! as one message per channel. A delivery has a time budget and bounded retries; what could not
//! be delivered is owed, and retried at the next evaluation. A failing channel never fails the
//! apply. One file per channel.

pub mod command;
pub mod email;
pub mod http;
pub mod ping;
pub mod remembered;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::activity::Trigger;
use crate::activity::{ActivityStatus, ActivityType};
use crate::clock::Clock;
use crate::clock::{parse_stamp, stamp};
use crate::exec::redact::Redactor;
use crate::health::{Check, Severity};
use crate::plan::compile::{Compiled, CompiledPlan};
use crate::plan::model::{Alert, AlertKind};
use crate::plan::settings::Env;
use crate::store::Store;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_RENOTIFY: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Alert,
    Reminder,
    Recovered,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Alert => "alert",
            ChangeKind::Reminder => "reminder",
            ChangeKind::Recovered => "recovered",
        }
    }
}

/// What a channel last delivered for a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub state: String,
    pub severity: String,
    pub at: DateTime<Utc>,
}

/// The decision for one check (pure): what, if anything, to say about it now.
pub fn change(
    check: &Check,
    last: Option<&Delivered>,
    renotify: Duration,
    now: DateTime<Utc>,
) -> Option<ChangeKind> {
    let bad = check.severity != Severity::Ok;
    match (bad, last) {
        (true, None) => Some(ChangeKind::Alert),
        (true, Some(d)) if d.state != check.state.as_str() => Some(ChangeKind::Alert),
        (true, Some(d)) if (now - d.at).to_std().unwrap_or_default() >= renotify => {
            Some(ChangeKind::Reminder)
        }
        (false, Some(d)) if d.severity != "ok" => Some(ChangeKind::Recovered),
        _ => None,
    }
}

/// Held while alerts are computed and sent: one sender at a time per state database (an
/// apply's end and `serve`'s evaluation), so no change is told twice. `None` when the lock
/// file cannot be made (then the alert state alone keeps order).
pub fn sender_lock(state: &std::path::Path) -> Option<std::fs::File> {
    let mut path = state.as_os_str().to_owned();
    path.push(".alerts.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::path::PathBuf::from(path))
        .ok()?;
    f.lock().ok()?;
    Some(f)
}

/// A channel ready to deliver: its name and how.
pub struct Channel<'a> {
    pub name: String,
    pub alert: &'a Alert,
    pub target: Target,
}

pub enum Target {
    Slack(String),
    Webhook(String),
    Command(Vec<String>),
    Email(email::Email),
}

/// Why a channel of a plan cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("alert {channel} has no {what}")]
    Missing { channel: String, what: &'static str },
    #[error("alert {channel}: {source}")]
    Secret {
        channel: String,
        source: crate::plan::settings::EnvError,
    },
}

/// What alerting needs of the process: the environment its channels' secrets come from and
/// the clock (`OPS_NOW` in tests).
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub env: &'a Env,
    pub clock: &'a Clock,
}

/// The channels of a plan that are switched on, with their secrets resolved. An empty
/// `ALERT_SLACK_WEBHOOK` turns Slack off (the seed's rule); a set one replaces the plan's.
pub fn channels<'a>(
    ctx: Context<'_>,
    plan: &'a CompiledPlan,
) -> Vec<Result<Channel<'a>, ChannelError>> {
    plan.decl
        .alerts
        .iter()
        .filter_map(|a| channel(ctx, &plan.decl.name.value, a))
        .collect()
}

/// One channel `a` of plan `plan`, resolved; `None` when it is switched off.
pub(crate) fn channel<'a>(
    ctx: Context<'_>,
    plan: &str,
    a: &'a Alert,
) -> Option<Result<Channel<'a>, ChannelError>> {
    let name = format!("{plan}/{}", a.name.value);
    let resolve = |s: &Option<crate::plan::model::Sourced>, what: &'static str| {
        let s = s.as_ref().ok_or_else(|| ChannelError::Missing {
            channel: name.clone(),
            what,
        })?;
        ctx.env
            .resolve(&s.source)
            .map_err(|source| ChannelError::Secret {
                channel: name.clone(),
                source,
            })
    };
    let target = match a.kind {
        AlertKind::Slack => {
            if ctx.env.is_set("ALERT_SLACK_WEBHOOK") && ctx.env.get("ALERT_SLACK_WEBHOOK").is_none()
            {
                return None;
            }
            match ctx.env.get("ALERT_SLACK_WEBHOOK") {
                Some(url) => Ok(Target::Slack(url.to_string())),
                None => resolve(&a.webhook, "webhook").map(Target::Slack),
            }
        }
        AlertKind::Webhook => resolve(&a.url, "url").map(Target::Webhook),
        AlertKind::Email => {
            let missing = |what| ChannelError::Missing {
                channel: name.clone(),
                what,
            };
            (|| {
                let smtp = a.smtp.as_ref().ok_or_else(|| missing("smtp"))?;
                Ok(Target::Email(email::Email {
                    server: email::Server::parse(&smtp.value).map_err(|_| missing("smtp"))?,
                    starttls: a.starttls.as_ref().is_none_or(|s| s.value),
                    from: a
                        .from
                        .as_ref()
                        .ok_or_else(|| missing("from"))?
                        .value
                        .clone(),
                    to: a.to.iter().map(|t| t.value.clone()).collect(),
                    username: a.username.as_ref().map(|u| u.value.clone()),
                    password: match &a.password {
                        Some(_) => Some(resolve(&a.password, "password")?),
                        None => None,
                    },
                }))
            })()
        }
        AlertKind::Command => a
            .run
            .as_ref()
            .map(|r| Target::Command(r.value.clone()))
            .ok_or_else(|| ChannelError::Missing {
                channel: name.clone(),
                what: "run",
            }),
    };
    Some(target.map(|target| Channel {
        name,
        alert: a,
        target,
    }))
}

fn delivered(store: &Store, channel: &str) -> rusqlite::Result<Vec<(String, Delivered)>> {
    let rows = store.delivered(channel)?;
    let mut out = Vec::new();
    for (id, state, severity, at) in rows {
        if let Some(at) = parse_stamp(&at) {
            out.push((
                id,
                Delivered {
                    state,
                    severity,
                    at,
                },
            ));
        }
    }
    Ok(out)
}

/// The message of one evaluation for one channel: JSON for webhooks and commands; the Slack
/// body and the plain text are made from it.
pub fn payload(
    plan: &str,
    changes: &[(ChangeKind, &Check)],
    include_logs: bool,
    now: DateTime<Utc>,
    test: bool,
) -> Value {
    let items: Vec<Value> = changes
        .iter()
        .map(|(k, c)| {
            let mut v = json!({
                "change": k.as_str(),
                "check": c.id,
                "kind": c.kind,
                "state": c.state.as_str(),
                "severity": c.severity.as_str(),
                "detail": c.detail,
                "age_seconds": c.age_seconds,
                "artifact": c.artifact,
                "last_success": c.last_success.map(stamp),
            });
            if include_logs && let Some(e) = &c.excerpt {
                v["log_excerpt"] = json!(e);
            }
            v
        })
        .collect();
    let worst = changes
        .iter()
        .filter(|(k, _)| *k != ChangeKind::Recovered)
        .map(|(_, c)| c.severity)
        .max()
        .unwrap_or(Severity::Ok);
    json!({
        "source": "ops-run",
        "host": crate::identity::host_name(),
        "test": test,
        "plan": plan,
        "severity": worst.as_str(),
        "text": text(plan, changes, test),
        "changes": items,
        "sent_at": stamp(now),
    })
}

/// A plain-text summary: one line per change.
pub fn text(plan: &str, changes: &[(ChangeKind, &Check)], test: bool) -> String {
    if test {
        return format!("ops-run test message for plan {plan}: this channel works.");
    }
    let problems = changes
        .iter()
        .filter(|(k, _)| *k != ChangeKind::Recovered)
        .count();
    let recovered = changes.len() - problems;
    // Which machine: several hosts may send to one channel.
    let host = crate::identity::host_name().unwrap_or_else(|| "this host".into());
    let mut head = format!("ops-run {plan} on {host}:");
    if problems > 0 {
        head.push_str(&format!(
            " {problems} backup problem{}",
            if problems == 1 { "" } else { "s" }
        ));
    }
    if recovered > 0 {
        head.push_str(&format!(
            "{} {recovered} recovered",
            if problems > 0 { "," } else { "" }
        ));
    }
    let lines: Vec<String> = changes
        .iter()
        .map(|(k, c)| match k {
            ChangeKind::Recovered => format!("• {} recovered: {}", c.id, c.detail),
            ChangeKind::Reminder => format!(
                "• {} still {} ({}): {}",
                c.id,
                c.state.as_str().to_uppercase(),
                c.severity.as_str(),
                c.detail
            ),
            ChangeKind::Alert => format!(
                "• {} is {} ({}): {}",
                c.id,
                c.state.as_str().to_uppercase(),
                c.severity.as_str(),
                c.detail
            ),
        })
        .collect();
    format!("{head}\n{}", lines.join("\n"))
}

/// How many times a delivery is tried within its budget.
pub const ATTEMPTS: u32 = 3;

/// One try of a delivery.
pub(crate) enum Attempt {
    Delivered,
    /// Not worth repeating (a 4xx, an SMTP 5xx).
    Refused(DeliveryError),
    /// Worth another try: why this one failed.
    Failed(String),
}

/// Up to `ATTEMPTS` tries of `once` (given the time left) within `budget`, with backoff
/// between them; how many it took.
pub(crate) fn retrying(
    budget: std::time::Duration,
    mut once: impl FnMut(std::time::Duration) -> Attempt,
) -> Result<u32, DeliveryError> {
    let deadline = std::time::Instant::now() + budget;
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        // Asked to stop: the message is recomputed and sent by the next apply.
        if left.is_zero() || crate::exec::signals::interrupted() {
            break;
        }
        match once(left) {
            Attempt::Delivered => return Ok(attempt),
            Attempt::Refused(e) => return Err(e),
            Attempt::Failed(why) => last = why,
        }
        if attempt < ATTEMPTS {
            let pause = std::time::Duration::from_millis(250 * 2u64.pow(attempt - 1));
            if std::time::Instant::now() + pause >= deadline {
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

/// Why a message was not delivered. The words never hold the channel's URL.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// A 4xx: not worth repeating.
    #[error("the receiver answered HTTP {0}")]
    Rejected(u16),
    /// Every attempt within the budget failed; `last` is the last one's reason.
    #[error("{last} (gave up within {budget})")]
    GaveUp { last: String, budget: String },
    /// The mail could not be made or the SMTP server refused it (the words never hold the
    /// password).
    #[error("{0}")]
    Mail(String),
    /// An `alert command` program failed.
    #[error("{program} failed ({exit}): {tail}")]
    Command {
        program: String,
        exit: String,
        tail: String,
    },
}

/// Sends `body` through `channel` within its time budget. Returns how many attempts it took.
/// Every string of the body is redacted here, on the one path out, so no caller can send an
/// unredacted message.
pub fn deliver(channel: &Channel, body: &Value, redactor: &Redactor) -> Result<u32, DeliveryError> {
    let body = &redactor.redact_json(body);
    let budget = channel
        .alert
        .timeout
        .as_ref()
        .map_or(DEFAULT_TIMEOUT, |t| t.value);
    match &channel.target {
        Target::Slack(url) => http::post_json(url, &http::slack_body(body), budget, redactor),
        Target::Webhook(url) => http::post_json(url, body, budget, redactor),
        Target::Command(argv) => command::run(argv, body, budget, redactor).map(|()| 1),
        Target::Email(e) => email::send(e, body, budget),
    }
}

/// Evaluates what changed for every channel of every plan, sends one message per channel, and
/// records each delivery as an `alert` activity. Never fails: problems are printed and recorded.
pub fn notify(
    ctx: Context<'_>,
    compiled: &Compiled,
    store: &Store,
    checks: &[Check],
    redactor: &Redactor,
) -> Vec<String> {
    let now = ctx.clock.now();
    // One line per channel: what it delivered, or why not (for `health --alert`).
    let mut said = Vec::new();
    for plan in &compiled.plans {
        let plan_name = &plan.decl.name.value;
        // A plan's own checks, and those of the whole state database (the dead-man, the
        // plans loading): every plan's channels carry them.
        let plan_checks: Vec<&Check> = checks
            .iter()
            .filter(|c| &c.plan == plan_name || c.plan == crate::health::GLOBAL)
            .collect();
        for channel in channels(ctx, plan) {
            let channel = match channel {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("warning: {}", redactor.redact(&e.to_string()));
                    continue;
                }
            };
            let last = match delivered(store, &channel.name) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("warning: cannot read the alert state: {e}");
                    continue;
                }
            };
            let renotify = channel
                .alert
                .renotify_after
                .as_ref()
                .map_or(DEFAULT_RENOTIFY, |r| r.value);
            let changes: Vec<(ChangeKind, &Check)> = plan_checks
                .iter()
                .filter_map(|c| {
                    let prev = last.iter().find(|(id, _)| id == &c.id).map(|(_, d)| d);
                    change(c, prev, renotify, now).map(|k| (k, *c))
                })
                .collect();
            if changes.is_empty() {
                said.push(format!("alert {}: nothing changed", channel.name));
                continue;
            }
            let what: Vec<String> = changes
                .iter()
                .map(|(k, c)| format!("{} {} {}", c.id, k.as_str(), c.state.as_str()))
                .collect();
            let include_logs = channel.alert.include_logs.as_ref().is_some_and(|b| b.value);
            let body = payload(plan_name, &changes, include_logs, now, false);
            let result = deliver(&channel, &body, redactor);
            record(ctx, store, plan_name, &channel, &changes, &result, redactor);
            match &result {
                Ok(_) => {
                    remember(store, &channel.name, &changes, now);
                    said.push(format!(
                        "alert {}: delivered {} change(s): {}",
                        channel.name,
                        changes.len(),
                        what.join(", ")
                    ));
                }
                Err(e) => {
                    eprintln!(
                        "warning: alert {} not delivered (retried at the next apply): {e}",
                        channel.name
                    );
                    said.push(format!(
                        "alert {}: NOT delivered ({}), retried at the next evaluation: {e}",
                        channel.name,
                        what.join(", ")
                    ));
                }
            }
        }
    }
    said
}

fn remember(store: &Store, channel: &str, changes: &[(ChangeKind, &Check)], now: DateTime<Utc>) {
    for (kind, c) in changes {
        let r = if *kind == ChangeKind::Recovered {
            store.forget_delivery(channel, &c.id)
        } else {
            store.remember_delivery(
                channel,
                &c.id,
                c.state.as_str(),
                c.severity.as_str(),
                &stamp(now),
            )
        };
        if let Err(e) = r {
            eprintln!("warning: cannot record the alert state: {e}");
        }
    }
}

fn record(
    ctx: Context<'_>,
    store: &Store,
    plan: &str,
    channel: &Channel,
    changes: &[(ChangeKind, &Check)],
    result: &Result<u32, DeliveryError>,
    redactor: &Redactor,
) {
    let now = stamp(ctx.clock.now());
    let meta = json!({
        "channel": channel.name,
        "changes": changes.iter().map(|(k, c)| json!({ "check": c.id, "change": k.as_str(), "state": c.state.as_str() })).collect::<Vec<_>>(),
        "attempts": result.as_ref().ok(),
    });
    let (status, log) = match result {
        Ok(_) => (ActivityStatus::Success, String::new()),
        Err(e) => (ActivityStatus::Failed, redactor.redact(&e.to_string())),
    };
    let r = store
        .start(
            plan,
            &channel.alert.name.value,
            ActivityType::Alert,
            Trigger::Schedule,
            &now,
        )
        .and_then(|id| store.finish(id, status, &now, 0, &meta, &log));
    if let Err(e) = r {
        eprintln!("warning: cannot record the alert: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{CheckKind, State};
    use chrono::TimeZone;

    fn check(state: State, severity: Severity) -> Check {
        Check {
            id: "p/db".into(),
            plan: "p".into(),
            step: "db".into(),
            kind: CheckKind::Dump,
            state,
            severity,
            age_seconds: Some(60),
            last_success: None,
            last_attempt: None,
            last_attempt_status: None,
            artifact: None,
            artifact_size: None,
            detail: "d".into(),
            stale_after_seconds: None,
            fail_after_seconds: None,
            overdue_after_seconds: None,
            excerpt: None,
            tables: None,
            rows: None,
            row_changes: Vec::new(),
        }
    }

    #[test]
    fn the_state_machine() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let day = Duration::from_secs(86_400);
        let sent = |state: &str, sev: &str, at| Delivered {
            state: state.into(),
            severity: sev.into(),
            at,
        };
        let ok = check(State::Ok, Severity::Ok);
        let stale = check(State::Stale, Severity::Warn);
        let fail = check(State::Fail, Severity::Crit);
        assert_eq!(change(&ok, None, day, t0), None);
        assert_eq!(change(&stale, None, day, t0), Some(ChangeKind::Alert));
        assert_eq!(
            change(
                &stale,
                Some(&sent("stale", "warn", t0)),
                day,
                t0 + chrono::Duration::hours(1)
            ),
            None
        );
        assert_eq!(
            change(&fail, Some(&sent("stale", "warn", t0)), day, t0),
            Some(ChangeKind::Alert)
        );
        assert_eq!(
            change(
                &fail,
                Some(&sent("fail", "crit", t0)),
                day,
                t0 + chrono::Duration::hours(24)
            ),
            Some(ChangeKind::Reminder)
        );
        assert_eq!(
            change(&ok, Some(&sent("fail", "crit", t0)), day, t0),
            Some(ChangeKind::Recovered)
        );
    }
}
