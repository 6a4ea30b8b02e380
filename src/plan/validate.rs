//! Cross-node checks on decoded plans: names, references, required settings, environment.

use std::collections::HashMap;

use super::PlanError;
use super::diagnostic::{Diagnostic, did_you_mean};
use super::model::*;
use super::source::Span;
use crate::plan::settings::Env;
use crate::units::duration;

/// Seed variables that replace a plan's own threshold, with the setting each replaces.
pub const SEED_THRESHOLDS: [(&str, &str, &str); 4] = [
    ("OPS_DB_DUMP_STALE_MIN", "dump", "stale-after"),
    ("OPS_DB_DUMP_FAIL_MIN", "dump", "fail-after"),
    ("OPS_SNAPSHOT_STALE_MIN", "snapshot", "stale-after"),
    ("OPS_VERIFY_OVERDUE_HOURS", "verify", "overdue-after"),
];

pub fn validate(
    plans: &[Plan],
    env: &Env,
    diags: &mut Vec<Diagnostic>,
    kinds: &dyn super::kinds::Kinds,
) {
    let mut seen: HashMap<&str, &Plan> = HashMap::new();
    for plan in plans {
        if let Some(first) = seen.get(plan.name.value.as_str()) {
            diags.push(
                Diagnostic::error(
                    plan.name.span,
                    format!("plan `{}` is defined twice", plan.name.value),
                    "defined again here",
                )
                .with_related(first.name.span, "first defined here"),
            );
        } else {
            seen.insert(&plan.name.value, plan);
        }
        validate_plan(plan, env, diags, kinds);
    }
    check_bases(plans, env, diags);
    check_seed_numbers(env, diags);
    check_base_variable(env, diags);
}

/// Why a backup base is refused: it must be an absolute path (a relative one would depend on
/// the folder cron or systemd starts ops-run in) of one line of printable text.
pub fn base_problem(base: &str) -> Option<&'static str> {
    if base.chars().any(char::is_control) {
        Some("holds control characters")
    } else if !base.starts_with('/') {
        Some("is not an absolute path")
    } else {
        None
    }
}

/// `OPS_BACKUP_BASE` overrides every plan's `base`: it is held to the same rule.
fn check_base_variable(env: &Env, diags: &mut Vec<Diagnostic>) {
    if let Some(v) = env.get("OPS_BACKUP_BASE")
        && let Some(why) = base_problem(v)
    {
        diags.push(Diagnostic {
            severity: super::diagnostic::Severity::Error,
            message: format!("OPS_BACKUP_BASE={} {why}", v.escape_debug()),
            span: None,
            label: String::new(),
            help: Some(
                "the backup base is an absolute path such as /srv/backups/app (a relative one would depend on the folder cron starts ops-run in)".into(),
            ),
            related: Vec::new(),
        });
    }
}

fn duplicate<'a>(
    diags: &mut Vec<Diagnostic>,
    what: &str,
    names: impl Iterator<Item = &'a Spanned<String>>,
) {
    let mut seen: HashMap<&str, Span> = HashMap::new();
    for n in names {
        if let Some(first) = seen.get(n.value.as_str()) {
            diags.push(
                Diagnostic::error(
                    n.span,
                    format!("{what} `{}` is defined twice", n.value),
                    "defined again here",
                )
                .with_related(*first, "first defined here"),
            );
        } else {
            seen.insert(&n.value, n.span);
        }
    }
}

pub(crate) fn reference_error(
    span: Span,
    what: &str,
    name: &str,
    candidates: &[&str],
) -> Diagnostic {
    let d = Diagnostic::error(
        span,
        format!("no {what} named `{name}` in this plan"),
        format!("unknown {what}"),
    );
    match did_you_mean(name, candidates.iter().copied()) {
        Some(m) => d.with_help(format!("did you mean `{m}`?")),
        None if candidates.is_empty() => d.with_help(format!("this plan has no {what}")),
        None => d.with_help(format!("expected one of: {}", candidates.join(", "))),
    }
}

/// What a step kind's own validation may look at: its plan, the environment, and the names
/// its references may use.
pub struct Scope<'a> {
    pub plan: &'a Plan,
    pub env: &'a Env,
    pub databases: Vec<&'a str>,
    pub dumps: Vec<&'a str>,
}

impl<'a> Scope<'a> {
    /// The names of the plan's steps of one kind (`"base-backup"`, `"snapshot"`, …).
    pub fn steps_of(&self, keyword: &str) -> Vec<&'a str> {
        self.plan
            .steps
            .iter()
            .filter(|s| s.kind.keyword() == keyword)
            .map(|s| s.name.value.as_str())
            .collect()
    }

    /// `r` names a step of kind `keyword` (`"base-backup"`), else a diagnostic with the names
    /// there are.
    pub fn reference(&self, keyword: &str, r: &Spanned<String>, diags: &mut Vec<Diagnostic>) {
        let names = self.steps_of(keyword);
        if !names.contains(&r.value.as_str()) {
            diags.push(reference_error(
                r.span,
                &format!("{keyword} step"),
                &r.value,
                &names,
            ));
        }
    }
}

fn validate_plan(
    plan: &Plan,
    env: &Env,
    diags: &mut Vec<Diagnostic>,
    kinds: &dyn super::kinds::Kinds,
) {
    duplicate(diags, "database", plan.databases.iter().map(|d| &d.name));
    duplicate(diags, "step", plan.steps.iter().map(|s| &s.name));
    duplicate(diags, "alert channel", plan.alerts.iter().map(|a| &a.name));

    let db_names: Vec<&str> = plan
        .databases
        .iter()
        .map(|d| d.name.value.as_str())
        .collect();
    let step_names: Vec<&str> = plan.steps.iter().map(|s| s.name.value.as_str()).collect();
    let dump_names: Vec<&str> = plan
        .steps
        .iter()
        .filter(|s| matches!(s.kind, StepKind::Dump(_)))
        .map(|s| s.name.value.as_str())
        .collect();

    let scope = Scope {
        plan,
        env,
        databases: db_names.clone(),
        dumps: dump_names.clone(),
    };

    if let Some(base) = &plan.base
        && let Some(why) = base_problem(&base.value)
    {
        diags.push(
            Diagnostic::error(base.span, format!("base `{}` {why}", base.value), "not an absolute path")
                .with_help(format!(
                    "write the whole path, such as `base \"/srv/backups/{}\"`: a relative base would depend on the folder cron starts ops-run in",
                    plan.name.value
                )),
        );
    }
    for db in &plan.databases {
        // A database name reaches the tools as an argument: never one that reads as an option.
        if let Some(name) = db.dbname.as_ref().filter(|n| n.value.starts_with('-')) {
            diags.push(
                Diagnostic::error(
                    name.span,
                    format!("database name `{}` starts with `-`", name.value),
                    "reads as an option",
                )
                .with_help("a database name must not start with `-`: the dump and client tools would take it for an option"),
            );
        }
    }

    for db in &plan.databases {
        let Some(engine) = &db.engine else {
            if db.engine_given {
                continue;
            }
            diags.push(
                Diagnostic::error(
                    db.name.span,
                    format!("database `{}` needs `engine`", db.name.value),
                    "engine missing",
                )
                .with_help("add `engine postgres` (or mysql, mariadb, sqlite)"),
            );
            continue;
        };
        if engine.value == Engine::Sqlite {
            if db.path.is_none() {
                diags.push(
                    Diagnostic::error(
                        db.name.span,
                        format!("sqlite database `{}` needs `path`", db.name.value),
                        "path missing",
                    )
                    .with_help("add `path \"/var/lib/app/app.sqlite\"`"),
                );
            }
        } else if db.dbname.is_none() {
            diags.push(
                Diagnostic::error(
                    db.name.span,
                    format!("database `{}` needs `name`", db.name.value),
                    "database name missing",
                )
                .with_help("add `name crm`: the database to dump on the server"),
            );
        }
    }

    for step in &plan.steps {
        let on_failure: &[Spanned<String>] = match &step.kind {
            StepKind::Command(c) => &c.on_failure,
            _ => &[],
        };
        let mut refs = step.after.iter().chain(&step.before).chain(on_failure);
        for r in &mut refs {
            if r.value == step.name.value {
                diags.push(Diagnostic::error(
                    r.span,
                    format!("step `{}` refers to itself", step.name.value),
                    "a step cannot wait for itself",
                ));
            } else if !step_names.contains(&r.value.as_str()) {
                diags.push(reference_error(r.span, "step", &r.value, &step_names));
            }
        }
        kinds.validate(step, &scope, diags);
    }

    for alert in &plan.alerts {
        let (needed, present) = match alert.kind {
            AlertKind::Slack => (
                "webhook",
                alert.webhook.is_some() || env.is_set("ALERT_SLACK_WEBHOOK"),
            ),
            AlertKind::Webhook => ("url", alert.url.is_some()),
            AlertKind::Command => ("run", alert.run.is_some()),
            AlertKind::Email => match (&alert.smtp, &alert.from, alert.to.is_empty()) {
                (None, _, _) => ("smtp", false),
                (_, None, _) => ("from", false),
                (_, _, true) => ("to", false),
                _ => ("smtp", true),
            },
        };
        if alert.kind == AlertKind::Email {
            if let Some(smtp) = &alert.smtp
                && crate::units::smtp::Server::parse(&smtp.value).is_err()
            {
                diags.push(
                    Diagnostic::error(
                        smtp.span,
                        format!("`{}` is not an SMTP server address", smtp.value),
                        "expected smtp://HOST[:PORT] or smtps://HOST[:PORT]",
                    )
                    .with_help("smtp://mail.example.com:587 (STARTTLS), smtps://mail.example.com:465 (TLS)"),
                );
            }
            for address in alert.from.iter().chain(&alert.to) {
                if address.value.parse::<lettre::message::Mailbox>().is_err() {
                    diags.push(Diagnostic::error(
                        address.span,
                        format!("`{}` is not an email address", address.value),
                        "expected NAME@DOMAIN or \"Name <NAME@DOMAIN>\"",
                    ));
                }
            }
        }
        if !present {
            diags.push(Diagnostic::error(
                alert.name.span,
                format!("alert `{}` needs `{needed}`", alert.name.value),
                format!("{needed} missing"),
            ));
        }
    }
    if let Some(ping) = &plan.ping
        && ping.url.is_none()
    {
        diags.push(Diagnostic::error(
            ping.span,
            "`ping` needs `url`",
            "url missing",
        ));
    }

    for sourced in sourced_values(plan) {
        // A file it can check now: a missing one fails the step that reads it, later.
        if let ValueSource::File(path) = &sourced.source
            && !std::path::Path::new(path).is_file()
        {
            diags.push(
                Diagnostic::warning(
                    sourced.span,
                    format!("{path} is not a readable file"),
                    "read from this file",
                )
                .with_help("create it (mode 0600) before the steps that need it run"),
            );
        }
        if let ValueSource::Env(var) = &sourced.source
            && env.get(var).is_none()
        {
            diags.push(
                Diagnostic::warning(
                    sourced.span,
                    format!("environment variable {var} is not set"),
                    "read from the environment",
                )
                .with_help(
                    "set it (or put it in the --env-file); steps that need it fail until it is",
                ),
            );
        }
    }

    for (var, keyword, setting) in SEED_THRESHOLDS {
        let Some(value) = env.get(var) else {
            continue;
        };
        let unit = if var.ends_with("HOURS") { 3600 } else { 60 };
        // The same duration as the plan's (init writes a `.env`'s threshold into the plan):
        // nothing is replaced.
        let same = |d: &std::time::Duration| {
            value.parse::<u64>().ok().and_then(|n| n.checked_mul(unit)) == Some(d.as_secs())
        };
        for step in plan.steps.iter().filter(|s| s.kind.keyword() == keyword) {
            let own = match &step.kind {
                StepKind::Dump(d) if setting == "stale-after" => d.stale_after.as_ref(),
                StepKind::Dump(d) => d.fail_after.as_ref(),
                StepKind::Snapshot(s) => s.stale_after.as_ref(),
                StepKind::Verify(v) => v.overdue_after.as_ref(),
                StepKind::Drill(_)
                | StepKind::Copy(_)
                | StepKind::Check(_)
                | StepKind::Report(_)
                | StepKind::GitTag(_)
                | StepKind::Command(_)
                | StepKind::Runbook(_)
                | StepKind::BaseBackup(_)
                | StepKind::Wal(_) => None,
            };
            if let Some(own) = own.filter(|o| !same(&o.value)) {
                diags.push(
                    Diagnostic::warning(
                        own.span,
                        format!(
                            "{var} overrides this `{setting}` of {keyword} `{}`",
                            step.name.value
                        ),
                        format!("replaced by {var}"),
                    )
                    .with_help(format!(
                        "unset {var} to use the plan's value; it applies to every plan"
                    )),
                );
            }
        }
    }
}

/// Every value in a plan that may be read from the environment or a file.
pub fn sourced_values(plan: &Plan) -> Vec<&Sourced> {
    let mut out: Vec<&Sourced> = Vec::new();
    out.extend(plan.databases.iter().filter_map(|d| d.password.as_ref()));
    for step in &plan.steps {
        match &step.kind {
            StepKind::Snapshot(s) => {
                out.extend(s.repository.as_ref());
                out.extend(&s.more_repositories);
                out.extend(s.password.as_ref());
            }
            StepKind::Copy(c) => {
                out.extend(c.repository.as_ref());
                out.extend(c.password.as_ref());
            }
            StepKind::Command(c) => out.extend(c.env.iter().map(|(_, v)| v)),
            StepKind::Verify(v) => out.extend(v.identity.as_ref()),
            StepKind::Drill(d) => out.extend(d.restore.identity.as_ref()),
            // No values from the environment or files (a new kind with one must add it here:
            // this list decides what is redacted).
            // A drill reads its snapshot step's credentials, listed with that step.
            // A check reads its snapshot's or copy's credentials, listed with that step.
            StepKind::Dump(_)
            | StepKind::Check(_)
            | StepKind::Report(_)
            | StepKind::GitTag(_)
            | StepKind::Runbook(_)
            | StepKind::BaseBackup(_)
            | StepKind::Wal(_) => {}
        }
    }
    for a in &plan.alerts {
        out.extend(a.webhook.as_ref());
        out.extend(a.url.as_ref());
        out.extend(a.password.as_ref());
    }
    if let Some(p) = &plan.ping {
        out.extend(p.url.as_ref());
    }
    if let Some(s) = &plan.serve {
        out.extend(s.tokens.iter().filter_map(|t| t.secret.as_ref()));
    }
    out
}

/// The values ops-run must never print: all sourced values except a command's literal `env`
/// entries, which are ordinary configuration written in the plan, and restic repositories
/// (a location, not a secret: only a password inside a repository URL is, see `app.rs`).
pub fn secret_values(plan: &Plan) -> Vec<&Sourced> {
    let repositories: Vec<*const Sourced> = plan
        .steps
        .iter()
        .flat_map(|s| match &s.kind {
            StepKind::Snapshot(snap) => snap
                .repository
                .iter()
                .chain(&snap.more_repositories)
                .map(|r| r as *const Sourced)
                .collect(),
            StepKind::Copy(c) => c.repository.iter().map(|r| r as *const Sourced).collect(),
            _ => Vec::new(),
        })
        .collect();
    let literal_env: Vec<*const Sourced> = plan
        .steps
        .iter()
        .filter_map(|s| match &s.kind {
            StepKind::Command(c) => Some(c.env.iter().map(|(_, v)| v as *const Sourced)),
            _ => None,
        })
        .flatten()
        .collect();
    sourced_values(plan)
        .into_iter()
        .filter(|s| {
            !(matches!(s.source, ValueSource::Literal(_))
                && literal_env.contains(&(*s as *const Sourced)))
        })
        .filter(|s| !repositories.contains(&(*s as *const Sourced)))
        .collect()
}

pub fn check_tag_pattern(pattern: &str) -> Result<(), PlanError> {
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            return Err(PlanError::TagPattern("`{` without a closing `}`".into()));
        };
        let key = &rest[open + 1..open + close];
        if !matches!(key, "date" | "time" | "plan" | "seq") {
            return Err(PlanError::TagPattern(format!(
                "unknown placeholder `{{{key}}}`"
            )));
        }
        rest = &rest[open + close + 1..];
    }
    let sample = pattern
        .replace("{date}", "20260101")
        .replace("{time}", "0200")
        .replace("{plan}", "p")
        .replace("{seq}", "1");
    let bad = sample.is_empty()
        || sample.starts_with(['-', '.', '/'])
        || sample.ends_with(['.', '/'])
        || sample.ends_with(".lock")
        || sample.contains("..")
        || sample.contains("@{")
        || sample
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c));
    if bad {
        return Err(PlanError::TagPattern(format!(
            "`{sample}` is not a valid git tag name"
        )));
    }
    Ok(())
}

/// The backup base each plan resolves to.
pub fn effective_base(plan: &Plan, env: &Env) -> String {
    env.get("OPS_BACKUP_BASE")
        .map(str::to_string)
        .or_else(|| plan.base.as_ref().map(|b| b.value.clone()))
        .unwrap_or_else(|| format!("/srv/backups/{}", plan.name.value))
}

fn check_bases(plans: &[Plan], env: &Env, diags: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<String, &Plan> = HashMap::new();
    for plan in plans {
        let base = effective_base(plan, env);
        let key = base.trim_end_matches('/').to_string();
        if let Some(first) = seen.get(&key) {
            let why = if env.get("OPS_BACKUP_BASE").is_some() {
                "OPS_BACKUP_BASE sets one base for every plan; unset it and give each plan its own `base`"
            } else {
                "give each plan its own `base`"
            };
            diags.push(
                Diagnostic::error(
                    plan.name.span,
                    format!(
                        "plans `{}` and `{}` would share the backup base {base}",
                        first.name.value, plan.name.value
                    ),
                    "shares a base",
                )
                .with_related(first.name.span, "the other plan")
                .with_help(why),
            );
        } else {
            seen.insert(key, plan);
        }
    }
}

fn check_seed_numbers(env: &Env, diags: &mut Vec<Diagnostic>) {
    for (var, _, _) in SEED_THRESHOLDS {
        let unit = if var.ends_with("HOURS") { 3600 } else { 60 };
        if let Some(v) = env.get(var)
            && v.parse::<u64>().map_or(true, |n| {
                n == 0
                    || n.checked_mul(unit)
                        .is_none_or(|s| s > duration::MAX.as_secs())
            })
        {
            diags.push(Diagnostic {
                severity: super::diagnostic::Severity::Error,
                message: format!(
                    "{var}={} is not a positive whole number of at most {}",
                    v.escape_debug(),
                    duration::MAX.as_secs() / unit
                ),
                span: None,
                label: String::new(),
                help: Some(format!(
                    "{var} is a count of {}",
                    if var.ends_with("HOURS") {
                        "hours"
                    } else {
                        "minutes"
                    }
                )),
                related: Vec::new(),
            });
        }
    }
    if let Some(v) = env.get("OPS_VERIFY_AUTO")
        && !matches!(v, "true" | "false" | "1" | "0")
    {
        diags.push(Diagnostic {
            severity: super::diagnostic::Severity::Error,
            message: format!(
                "OPS_VERIFY_AUTO={} is neither true nor false",
                v.escape_debug()
            ),
            span: None,
            label: String::new(),
            help: None,
            related: Vec::new(),
        });
    }
}

/// A `database` of the plan that is a PostgreSQL server (the physical kinds need one).
pub fn postgres_database(
    kind: &str,
    database: Option<&Spanned<String>>,
    name: &Spanned<String>,
    scope: &Scope,
    diags: &mut Vec<Diagnostic>,
) {
    let Some(r) = database else {
        diags.push(
            Diagnostic::error(
                name.span,
                format!("{kind} `{}` needs `database`", name.value),
                "database missing",
            )
            .with_help("name one of this plan's PostgreSQL `database` blocks: `database main`"),
        );
        return;
    };
    if !scope.databases.contains(&r.value.as_str()) {
        diags.push(reference_error(
            r.span,
            "database",
            &r.value,
            &scope.databases,
        ));
        return;
    }
    let engine = scope
        .plan
        .databases
        .iter()
        .find(|d| d.name.value == r.value)
        .and_then(|d| d.engine.as_ref().map(|e| e.value));
    if let Some(e) = engine.filter(|e| *e != Engine::Postgres) {
        diags.push(
            Diagnostic::error(
                r.span,
                format!(
                    "{kind} is for PostgreSQL, and `{}` is {}",
                    r.value,
                    e.name()
                ),
                "not PostgreSQL",
            )
            .with_help("base backups and WAL archiving are PostgreSQL's; use a `dump` here"),
        );
    }
}

/// `fail-after` must be longer than `stale-after` (dumps, base backups, WAL).
pub fn fail_after_stale(
    stale: &Option<Spanned<std::time::Duration>>,
    fail: &Option<Spanned<std::time::Duration>>,
    diags: &mut Vec<Diagnostic>,
) {
    if let (Some(stale), Some(fail)) = (stale, fail)
        && fail.value <= stale.value
    {
        diags.push(
            Diagnostic::error(
                fail.span,
                "`fail-after` must be longer than `stale-after`",
                "not longer",
            )
            .with_related(stale.span, "stale-after"),
        );
    }
}
