//! `status [--json]` and `health [--alert]`: the one health evaluation, as a table, as stable
//! JSON, and as a monitoring-plugin exit code.

use serde_json::json;

use crate::app::App;
use crate::commands::activities::format_table;
use crate::error::Failure;
use crate::health::{self, Check, Severity};

pub const UNKNOWN: i32 = 3;

/// The checks now, reading the store only if it exists (status never creates it).
pub fn evaluate(app: &App) -> Result<(crate::plan::compile::Compiled, Vec<Check>), Failure> {
    let (_loaded, compiled) = app.load()?;
    let store = app.open_reader()?;
    let checks = crate::facts::checks(&compiled, store.as_ref(), app.clock.now())
        .map_err(|e| Failure::Runtime(format!("cannot read the activity log: {e}")))?;
    Ok((compiled, checks))
}

fn when(t: Option<chrono::DateTime<chrono::Utc>>, tz: chrono_tz::Tz) -> String {
    t.map_or_else(|| "-".into(), |t| crate::clock::local_minute(t, tz))
}

pub fn render_table(compiled: &crate::plan::compile::Compiled, checks: &[Check]) -> String {
    let rows: Vec<[String; 7]> = checks
        .iter()
        .map(|c| {
            let tz = compiled
                .plans
                .iter()
                .find(|p| p.decl.name.value == c.plan)
                .map_or(chrono_tz::UTC, |p| p.timezone.value);
            [
                c.id.clone(),
                c.state.as_str().to_string(),
                c.age_seconds
                    .map_or_else(|| "-".into(), crate::units::duration::age),
                when(c.last_success, tz),
                match (&c.last_attempt, &c.last_attempt_status) {
                    (Some(t), Some(s)) => format!("{} {s}", when(Some(*t), tz)),
                    _ => "-".into(),
                },
                c.artifact
                    .as_deref()
                    .and_then(|a| std::path::Path::new(a).file_name())
                    .map_or_else(|| "-".into(), |n| n.to_string_lossy().into_owned()),
                c.detail.clone(),
            ]
        })
        .collect();
    format_table(
        &[
            "CHECK",
            "STATE",
            "AGE",
            "LAST SUCCESS",
            "LAST ATTEMPT",
            "ARTIFACT",
            "DETAIL",
        ],
        &rows,
    )
}

fn verdict(overall: Severity, checks: &[Check]) -> String {
    let count = |s: Severity| checks.iter().filter(|c| c.severity == s).count();
    let word = match overall {
        Severity::Ok => "OK",
        Severity::Warn => "WARNING",
        Severity::Crit => "CRITICAL",
    };
    format!(
        "{word}: {} checks, {} warn, {} crit",
        checks.len(),
        count(Severity::Warn),
        count(Severity::Crit)
    )
}

/// The JSON of `status --json` and `/api/status` (documented in the README).
pub fn to_json(checks: &[Check], now: chrono::DateTime<chrono::Utc>) -> serde_json::Value {
    let overall = health::overall(checks);
    json!({
        "overall": overall.as_str(),
        "exit_code": overall.exit_code(),
        "generated_at": crate::clock::stamp(now),
        "checks": checks,
    })
}

pub fn run(app: &App, json_out: bool) -> i32 {
    let (compiled, checks) = match evaluate(app) {
        Ok(x) => x,
        Err(Failure::Plan(rendered)) => return plans_broken(app, &rendered, json_out),
        Err(f) => {
            eprint!("{}", f.message());
            crate::outln!("{}", f.unknown_line());
            return UNKNOWN;
        }
    };
    let overall = health::overall(&checks);
    if json_out {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&to_json(&checks, app.clock.now())).unwrap_or_default()
        );
    } else {
        crate::out!("{}", render_table(&compiled, &checks));
        crate::outln!("{}", verdict(overall, &checks));
    }
    overall.exit_code()
}

/// `status` when the plans do not load: not UNKNOWN but CRITICAL — backups have stopped.
/// The diagnostics go to stderr; the checks are the plans' and the dead-man's.
fn plans_broken(app: &App, rendered: &str, json_out: bool) -> i32 {
    eprint!("{rendered}");
    let mut checks = vec![health::plans_check(
        Some(&crate::app::plan_problems(rendered)),
        0,
    )];
    let last = app.open_reader().ok().flatten().and_then(|s| {
        s.applies()
            .ok()?
            .into_iter()
            .filter_map(|(_, at)| crate::clock::parse_stamp(&at))
            .max()
    });
    checks.push(health::apply_check(
        last,
        health::APPLY_STALE,
        health::APPLY_FAIL,
        app.clock.now(),
    ));
    let overall = health::overall(&checks);
    if json_out {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&to_json(&checks, app.clock.now())).unwrap_or_default()
        );
    } else {
        let count = rendered
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .trim_end_matches("; nothing ran");
        crate::outln!(
            "CRITICAL: the plans do not load ({count}): nothing runs until they do (`ops-run plan validate` says where)"
        );
    }
    overall.exit_code()
}

/// `health [--alert]`: prints the verdict; with --alert, sends what changed (and when the
/// plans do not load, says so to the channels the last good plans had).
pub fn health(app: &App, alert: bool) -> Result<(), Failure> {
    let (compiled, checks) = match app.load_or_check() {
        Ok((_loaded, compiled)) => {
            let store = app.open_reader()?;
            let checks = crate::facts::checks(&compiled, store.as_ref(), app.clock.now())
                .map_err(|e| Failure::Runtime(format!("cannot read the activity log: {e}")))?;
            (compiled, checks)
        }
        Err(broken) if broken.1.is_some() && alert => {
            let (failure, check) = *broken;
            let check = check.unwrap_or_else(|| health::plans_check(None, 0));
            crate::commands::apply::plans_broken(app, &check);
            return Err(failure);
        }
        Err(broken) => return Err(broken.0),
    };
    crate::outln!("{}", verdict(health::overall(&checks), &checks));
    if alert {
        let store = app.open_store()?;
        let redactor = app.redactor(&compiled);
        crate::alert::remembered::keep(&store, &compiled);
        for line in crate::alert::notify(app.alerting(), &compiled, &store, &checks, &redactor) {
            crate::outln!("{line}");
        }
    }
    Ok(())
}

/// `metrics [--textfile FILE]`.
pub fn metrics(app: &App, textfile: Option<&std::path::Path>) -> Result<(), Failure> {
    let (compiled, checks) = evaluate(app)?;
    let store = match textfile {
        Some(_) => app.open_store()?,
        None => app.open_reader()?.map_or_else(|| app.open_store(), Ok)?,
    };
    match textfile {
        Some(path) => crate::web::metrics::write_textfile(&compiled, &store, &checks, path)
            .map_err(Failure::from),
        None => {
            let text = crate::web::metrics::render(&compiled, &store, &checks)
                .map_err(|e| Failure::Runtime(format!("cannot read the activity log: {e}")))?;
            crate::out!("{text}");
            Ok(())
        }
    }
}
