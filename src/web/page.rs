//! The status page: one card per check (state, age against thresholds, last success and
//! attempt, artifact, a size/duration chart for dumps), the recent activity with filters and
//! pagination, "?" tooltips from the help registry. Handlebars escapes everything for HTML;
//! the only unescaped part is the chart, which holds numbers only.

use serde_json::{Value, json};

use super::Site;
use crate::activity::{ActivityStatus, ActivityType};
use crate::clock::parse_stamp;
use crate::health::{CheckKind, Severity};
use crate::plan::model::StepKind;
use crate::store::activities::Filter;
use crate::units::{duration, size};

pub const TEMPLATE: &str = include_str!("../../templates/status-page.html.hbs");
/// Dumps shown in a card's chart.
const CHART_RUNS: usize = 30;

fn local(t: Option<chrono::DateTime<chrono::Utc>>, tz: chrono_tz::Tz) -> String {
    t.map_or_else(|| "never".into(), |t| crate::clock::local_minute(t, tz))
}

/// A small SVG of the last dumps: size (solid) and duration (dashed), each scaled to its max.
pub fn chart(points: &[(f64, f64)]) -> Option<String> {
    if points.len() < 2 {
        return None;
    }
    let (w, h) = (300.0, 60.0);
    let max_s = points.iter().map(|p| p.0).fold(0.0, f64::max).max(1.0);
    let max_d = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0);
    let step = w / (points.len() - 1) as f64;
    let line = |f: &dyn Fn(&(f64, f64)) -> f64, max: f64| {
        points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                format!(
                    "{:.1},{:.1}",
                    i as f64 * step,
                    h - 2.0 - (f(p) / max) * (h - 4.0)
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    Some(format!(
        "<svg class=\"chart\" viewBox=\"0 0 300 60\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"dump size and duration\"><polyline class=\"size\" points=\"{}\"/><polyline class=\"duration\" points=\"{}\"/></svg>",
        line(&|p| p.0, max_s),
        line(&|p| p.1, max_d)
    ))
}

/// The manual actions a token may start from the page: dump, snapshot, verify, report with
/// ops.execute; git-tag with ops.release. None without a token.
fn actions(site: &Site, token: Option<&super::auth::Token>) -> Vec<Value> {
    let Some(token) = token else {
        return Vec::new();
    };
    // Without a form key there are no buttons (the API with a token still works).
    let Some(csrf) = site.tokens.form_key(token) else {
        return Vec::new();
    };
    site.compiled
        .steps
        .iter()
        .filter_map(|s| {
            let (label, needed) = match s.decl.kind {
                StepKind::Dump(_) => ("DB backup", "ops.execute"),
                StepKind::Snapshot(_) => ("Storage snapshot", "ops.execute"),
                StepKind::Verify(_) => ("Verify restore", "ops.execute"),
                StepKind::Report(_) => ("Report", "ops.execute"),
                StepKind::Runbook(_) => ("Runbook", "ops.execute"),
                StepKind::Drill(_) => ("Run drill", "ops.execute"),
                StepKind::Copy(_) => ("Copy offsite", "ops.execute"),
                StepKind::Check(_) => ("Check repository", "ops.execute"),
                StepKind::BaseBackup(_) => ("Base backup", "ops.execute"),
                StepKind::Wal(_) => ("Check WAL", "ops.execute"),
                StepKind::GitTag(_) => ("Create git tag", "ops.release"),
                StepKind::Command(_) => return None,
            };
            token
                .grants(needed)
                .then(|| json!({ "step": s.id, "label": label, "csrf": csrf }))
        })
        .collect()
}

pub fn render(
    site: &Site,
    q: &[(String, String)],
    token: Option<&super::auth::Token>,
) -> Result<String, super::WebError> {
    let now = site.app.clock.now();
    let checks = site.checks()?;
    let registry = crate::help::registry()?;
    let overall = crate::health::overall(&checks);
    // When each step runs next (the due decision `plan show` prints).
    let decisions = crate::commands::show::decisions_from(site.compiled, Some(site.store), now)
        .unwrap_or_default();
    let next_run = |id: &str, tz: chrono_tz::Tz| -> String {
        let i = site.compiled.steps.iter().position(|s| s.id == id);
        match i.and_then(|i| decisions.get(i)) {
            Some(crate::due::Decision::Due { .. }) => "due now (at the next apply)".into(),
            Some(crate::due::Decision::NotDue { next: Some(t), .. }) => local(Some(*t), tz),
            Some(crate::due::Decision::NotDue { next: None, .. }) | None => {
                "when run by hand".into()
            }
        }
    };
    let mut plans = Vec::new();
    for plan in &site.compiled.plans {
        let tz = plan.timezone.value;
        let name = &plan.decl.name.value;
        let mut cards = Vec::new();
        for c in checks.iter().filter(|c| &c.plan == name) {
            let help = registry
                .get(&format!("state-{}", c.state.as_str()))
                .map(|e| format!("{}: {}", e.title, e.body))
                .unwrap_or_default();
            let mut card = json!({
                "id": c.id,
                "severity": c.severity.as_str(),
                "state": c.state.as_str(),
                "help": help,
                "age": c.age_seconds.map_or_else(|| "-".into(), duration::age),
                "limits": c.limits(),
                "last_success": local(c.last_success, tz),
                "last_attempt": match (&c.last_attempt, &c.last_attempt_status) {
                    (Some(t), Some(s)) => format!("{} ({s})", local(Some(*t), tz)),
                    _ => "never".into(),
                },
                "artifact": c.artifact.as_deref().map_or_else(|| "-".to_string(), |a| {
                    let size = c.artifact_size.map(|s| format!(", {}", size::format(s))).unwrap_or_default();
                    format!("{a}{size}")
                }),
                "detail": c.detail,
                "next_run": next_run(&c.id, tz),
                "chart": Value::Null,
                "copies": copies_of(site, &checks, name, &c.step),
            });
            // What the newest good run holds, in the words an operator looks for.
            let newest = |kind| {
                site.store
                    .newest_success_meta(name, &c.step, kind)
                    .ok()
                    .flatten()
            };
            match c.kind {
                CheckKind::Dump => {
                    card["no_copy"] = json!(card["copies"].as_array().is_none_or(|a| a.is_empty()));
                    if let (Some(rows), Some(tables)) = (c.rows, &c.tables) {
                        card["rows"] = json!(format!(
                            "{} rows in {} tables",
                            crate::artifact::manifest::thousands(rows),
                            tables.len()
                        ));
                        if !c.row_changes.is_empty() {
                            card["row_changes"] = json!(c.row_changes.join(", "));
                        }
                    }
                }
                CheckKind::Snapshot => {
                    if let Some(m) = newest(ActivityType::StorageSnapshot) {
                        let files = m["total_files"].as_u64().map(|n| format!("{n} files, "));
                        card["artifact"] = json!(format!(
                            "snapshot {}: {}{}",
                            m["snapshot_id"].as_str().unwrap_or("?"),
                            files.unwrap_or_default(),
                            m["total_bytes"]
                                .as_u64()
                                .map_or_else(|| "? bytes".into(), size::format)
                        ));
                    }
                }
                CheckKind::Verify => {
                    if let Some(m) = newest(ActivityType::VerifyRestore) {
                        let v = crate::store::meta::VerifyMeta::read(&m);
                        if let Some(dump) = v.verify_dump {
                            let dump = std::path::Path::new(&dump)
                                .file_name()
                                .map_or(dump.clone(), |n| n.to_string_lossy().into_owned());
                            card["artifact"] = json!(format!(
                                "restored {dump}: {} tables",
                                v.verify_table_count
                                    .map_or_else(|| "?".into(), |n| n.to_string())
                            ));
                        }
                    }
                }
                _ => {}
            }
            if c.kind == CheckKind::Dump {
                let runs = site.store.list(&Filter {
                    limit: CHART_RUNS,
                    kind: Some(ActivityType::DbBackup),
                    status: Some(ActivityStatus::Success),
                    plan: Some(name.clone()),
                    before_id: None,
                })?;
                let mut points: Vec<(f64, f64)> = runs
                    .iter()
                    .filter(|a| a.step == c.step)
                    .map(|a| {
                        (
                            a.meta["size"].as_f64().unwrap_or(0.0),
                            a.duration_ms.unwrap_or(0) as f64,
                        )
                    })
                    .collect();
                points.reverse();
                if let Some(svg) = chart(&points) {
                    let max_s = points.iter().map(|p| p.0).fold(0.0, f64::max);
                    let max_d = points.iter().map(|p| p.1).fold(0.0, f64::max);
                    card["chart"] = json!(svg);
                    card["chart_runs"] = json!(points.len());
                    card["chart_max_size"] = json!(size::format(max_s as u64));
                    card["chart_max_duration"] = json!(format!("{:.1}s", max_d / 1000.0));
                }
            }
            cards.push(card);
        }
        plans.push(json!({ "name": name, "timezone": tz.name(), "checks": cards }));
    }
    let filter = super::activity_filter(q, 50)?;
    let rows = site.store.list(&filter)?;
    let tz_of = |plan: &str| {
        site.compiled
            .plans
            .iter()
            .find(|p| p.decl.name.value == plan)
            .map_or(chrono_tz::UTC, |p| p.timezone.value)
    };
    let activities: Vec<Value> = rows
        .iter()
        .map(|a| {
            // The tool's error says more than ops-run's closing line.
            let excerpt = crate::health::cause(&a.log_excerpt).unwrap_or_default();
            json!({
                "id": a.id,
                "step": format!("{}/{}", a.plan, a.step),
                "type": a.kind,
                "status": a.status,
                "trigger": a.trigger,
                "started": local(parse_stamp(&a.started_at), tz_of(&a.plan)),
                "duration": a.duration_ms.map_or_else(|| "-".into(), |ms| format!("{:.2}s", ms as f64 / 1000.0)),
                "excerpt": excerpt,
            })
        })
        .collect();
    // "Older" continues below the last row shown, keeping the filters.
    let older = (rows.len() == filter.limit).then(|| {
        let mut parts = vec![
            format!("before={}", rows.last().map_or(0, |a| a.id)),
            format!("limit={}", filter.limit),
        ];
        let kind = filter.kind.map(|k| k.to_string());
        let status = filter.status.map(|s| s.to_string());
        for (k, v) in [("plan", &filter.plan), ("type", &kind), ("status", &status)] {
            if let Some(v) = v {
                parts.push(format!("{k}={}", encode(v)));
            }
        }
        format!("/?{}", parts.join("&"))
    });
    let count = |s: Severity| checks.iter().filter(|c| c.severity == s).count();
    // The checks of the whole state database: the plans load, the timer applies.
    let global: Vec<Value> = checks
        .iter()
        .filter(|c| c.plan == crate::health::GLOBAL)
        .map(|c| {
            let mut lines = c.detail.lines();
            json!({
                "id": c.id,
                "severity": c.severity.as_str(),
                "state": c.state.as_str(),
                "detail": lines.next().unwrap_or_default(),
                "more": lines.collect::<Vec<_>>(),
            })
        })
        .collect();
    let names: Vec<&str> = site
        .compiled
        .plans
        .iter()
        .map(|p| p.decl.name.value.as_str())
        .collect();
    // One time zone for the header: the first plan's (each plan's cards use their own).
    let tz0 = site
        .compiled
        .plans
        .first()
        .map_or(chrono_tz::UTC, |p| p.timezone.value);
    let last_apply = site
        .store
        .last_apply(&names)
        .ok()
        .flatten()
        .map(|(at, result, steps)| {
            format!(
                "{} — {result}, {steps} step{} ran",
                local(parse_stamp(&at), tz0),
                if steps == 1 { "" } else { "s" }
            )
        });
    let context = json!({
        "last_apply": last_apply.unwrap_or_else(|| "never".into()),
        "host": crate::app::host_name().unwrap_or_else(|| "this host".into()),
        "global": global,
        "broken": site.broken.is_some(),
        "overall": overall.as_str(),
        "overall_word": match overall { Severity::Ok => "OK", Severity::Warn => "WARNING", Severity::Crit => "CRITICAL" },
        "checks_count": checks.len(),
        "warn_count": count(Severity::Warn),
        "crit_count": count(Severity::Crit),
        "generated_at": now.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        "plans": plans,
        "activities": activities,
        "filter": {
            "plan": filter.plan.clone().unwrap_or_default(),
            "type": filter.kind.map(|k| k.to_string()).unwrap_or_default(),
            "status": filter.status.map(|s| s.to_string()).unwrap_or_default(),
        },
        "older": older,
        "actions": actions(site, token),
    });
    let mut hb = handlebars::Handlebars::new();
    hb.set_strict_mode(false);
    Ok(hb.render_template(TEMPLATE, &context)?)
}

/// The offsite copies of dump step `step`: one line each for the dump's card, with the copy
/// check's state and detail (which names the destination).
fn copies_of(site: &Site, checks: &[crate::health::Check], plan: &str, step: &str) -> Vec<Value> {
    site.compiled
        .steps
        .iter()
        .filter(|s| site.compiled.plans[s.plan].decl.name.value == plan)
        .filter(|s| match &s.decl.kind {
            StepKind::Copy(c) => c.dump.as_ref().is_some_and(|d| d.value == step),
            _ => false,
        })
        .filter_map(|s| checks.iter().find(|c| c.id == s.id))
        .map(|c| {
            json!({
                "id": c.id,
                "severity": c.severity.as_str(),
                "state": c.state.as_str(),
                "detail": c.detail,
            })
        })
        .collect()
}

/// A query value, percent-encoded (what is not unreserved, `/` kept readable).
fn encode(s: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const QUERY: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'/');
    utf8_percent_encode(s, QUERY).to_string()
}
