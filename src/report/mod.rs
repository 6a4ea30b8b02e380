//! Markdown backup reports: the dated evidence that backups were made and tested. The context
//! is built from the one health evaluation, the files and the activity log.

pub mod render;
pub mod runbook;

use crate::activity::{ActivityStatus, ActivityType};
use crate::store::meta::VerifyMeta;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::artifact::{layout, sha};
use crate::clock::parse_stamp;
use crate::exec::redact::Redactor;
use crate::health::Check;
use crate::plan::compile::{Compiled, CompiledPlan};
use crate::plan::model::StepKind;
use crate::store::Store;
use crate::store::activities::Filter;
use crate::units::{duration, size};

pub const PERIOD: Duration = Duration::from_secs(7 * 86_400);

use crate::clock::local_minute as local;

/// Why a report or runbook was not written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("template: {0}")]
    Template(#[from] crate::plan::PlanError),
    #[error("the template {0} is not UTF-8")]
    NotUtf8(std::path::PathBuf),
    /// Handlebars' reason, with the line and column when it gives them.
    #[error("{0}")]
    Render(String),
    #[error(transparent)]
    Help(#[from] crate::help::HelpError),
    #[error("cannot create {path}: {source}")]
    Folder {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// The template a report step (or `ops-run report`) uses: the built-in `backup-report`, or a
/// file named relative to the plans folder.
pub fn template(name: &str, plans_dir: &Path) -> Result<String, ReportError> {
    if name == "backup-report" {
        return Ok(render::BACKUP_REPORT.to_string());
    }
    let base = if plans_dir.is_dir() {
        plans_dir
    } else {
        plans_dir.parent().unwrap_or(Path::new("."))
    };
    let path = base.join(name);
    let bytes = crate::plan::source::read_regular(&path, TEMPLATE_BYTES)?;
    String::from_utf8(bytes).map_err(|_| ReportError::NotUtf8(path))
}

/// The largest report template ops-run reads.
pub const TEMPLATE_BYTES: u64 = 1 << 20;

/// A context with every field filled, for checking templates at `plan validate`.
pub fn sample_context() -> Value {
    json!({
        "plan": "sample",
        "timezone": "UTC",
        "generated_at": "2026-01-05 06:00",
        "period": { "from": "2025-12-29 06:00", "to": "2026-01-05 06:00" },
        "overall": "OK",
        "checks": [{ "id": "sample/db", "state": "ok", "state_help": "state-ok", "age": "4h", "thresholds": "stale 26h, fail 50h", "detail": "newest is 4h old" }],
        "dumps": [{ "step": "db", "name": "full-20260105-0200.sql.gz", "taken": "2026-01-05 02:00", "size": "1.0 MiB", "rows": "182,344", "sha256": "0".repeat(64) }],
        "tables": [{ "step": "db", "dump": "full-20260105-0200.sql.gz", "table": "public.orders", "rows": "182,344" }],
        "snapshots": [{ "step": "uploads", "taken": "2026-01-05 02:30", "id": "0123abcd" }],
        "verifies": [{ "step": "restore", "at": "2026-01-04 03:15", "dump": "full-20260104-0200.sql.gz", "dump_age": "1h15m", "tables": 44, "duration": "12s", "result": "ok" }],
        "failures": [{ "at": "2026-01-03 02:00", "step": "db", "type": "db_backup", "status": "failed", "excerpt": "pg_dump: error" }],
        "deletions": [{ "at": "2026-01-05 02:01", "file": "full-20251201-0200.sql.gz" }],
        "next_runs": [{ "step": "sample/db", "next": "2026-01-06 02:00" }],
    })
}

/// The report context of one plan.
pub fn context(
    compiled: &Compiled,
    plan: &CompiledPlan,
    store: Option<&Store>,
    checks: &[Check],
    now: DateTime<Utc>,
    redactor: &Redactor,
) -> Value {
    let tz = plan.timezone.value;
    let name = &plan.decl.name.value;
    let since = now - PERIOD;
    let mine: Vec<&Check> = checks.iter().filter(|c| &c.plan == name).collect();
    let overall = mine
        .iter()
        .map(|c| c.severity)
        .max()
        .unwrap_or(crate::health::Severity::Ok);
    let checks_json: Vec<Value> = mine
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "state": c.state.as_str(),
                "state_help": format!("state-{}", c.state.as_str()),
                "age": c.age_seconds.map_or_else(|| "-".to_string(), duration::age),
                "thresholds": c.limits(),
                "detail": c.detail,
            })
        })
        .collect();
    let mut dumps = Vec::new();
    let mut tables = Vec::new();
    let mut snapshots = Vec::new();
    for step in compiled
        .steps
        .iter()
        .filter(|s| compiled.plans[s.plan].decl.name.value == *name)
    {
        match step.decl.kind {
            StepKind::Dump(_) => {
                for (i, d) in layout::list_dumps(&plan.dir(step.name(), layout::Area::Dumps), tz)
                    .into_iter()
                    .filter(layout::has_sidecar)
                    .take(3)
                    .enumerate()
                {
                    let sum = std::fs::read_to_string(layout::sidecar_path(&d.path))
                        .ok()
                        .and_then(|t| sha::parse_sidecar(&t, &d.name))
                        .unwrap_or_default();
                    let m = crate::artifact::manifest::read(&d.path).ok().flatten();
                    // The tables of each step's newest dump, with their rows.
                    if let (0, Some(m)) = (i, &m) {
                        for (table, rows) in &m.tables {
                            tables.push(json!({
                                "step": step.name(),
                                "dump": d.name,
                                "table": table,
                                "rows": crate::artifact::manifest::thousands(*rows),
                            }));
                        }
                    }
                    dumps.push(json!({
                        "step": step.name(),
                        "name": d.name,
                        "taken": local(d.taken, tz),
                        "size": std::fs::metadata(&d.path).map(|m| size::format(m.len())).unwrap_or_default(),
                        "rows": m.as_ref().map_or_else(|| "-".to_string(), |m| crate::artifact::manifest::thousands(m.rows)),
                        "sha256": sum,
                    }));
                }
            }
            StepKind::Snapshot(_) => {
                if let Some(m) = layout::list_stamped(
                    &plan.dir(step.name(), layout::Area::Snapshots),
                    "snapshot-",
                    ".txt",
                    tz,
                )
                .into_iter()
                .next()
                {
                    let text = std::fs::read_to_string(&m.path).unwrap_or_default();
                    let id = text
                        .lines()
                        .find_map(|l| l.strip_prefix("id: "))
                        .unwrap_or_else(|| text.lines().next().unwrap_or_default());
                    snapshots.push(
                        json!({ "step": step.name(), "taken": local(m.taken, tz), "id": id }),
                    );
                }
            }
            _ => {}
        }
    }
    let activities = store
        .and_then(|s| {
            s.list(&Filter {
                limit: 5000,
                plan: Some(name.clone()),
                ..Filter::default()
            })
            .ok()
        })
        .unwrap_or_default();
    let in_period: Vec<_> = activities
        .iter()
        .filter(|a| parse_stamp(&a.started_at).is_some_and(|t| t >= since))
        .collect();
    let at = |s: &str| parse_stamp(s).map(|t| local(t, tz)).unwrap_or_default();
    let verifies: Vec<Value> = in_period
        .iter()
        .filter(|a| a.kind == ActivityType::VerifyRestore && a.status != ActivityStatus::Running)
        .take(10)
        .map(|a| {
            let m = VerifyMeta::read(&a.meta);
            json!({
                "step": a.step,
                "at": at(&a.started_at),
                "dump": m.dump_name(),
                "dump_age": m.dump_age_seconds.map_or_else(|| "-".into(), duration::age),
                "tables": m.verify_table_count.map_or_else(|| "-".into(), |n| n.to_string()),
                "duration": a.duration_ms.map_or_else(|| "-".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0)),
                "result": if a.status == ActivityStatus::Success { "ok".to_string() } else { a.status.to_string() },
            })
        })
        .collect();
    let failures: Vec<Value> = in_period
        .iter()
        .filter(|a| {
            matches!(
                a.status,
                ActivityStatus::Failed
                    | ActivityStatus::Timeout
                    | ActivityStatus::Abandoned
                    | ActivityStatus::Incomplete
            )
        })
        .take(20)
        .map(|a| {
            let lines: Vec<&str> = a.log_excerpt.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            json!({
                "at": at(&a.started_at),
                "step": a.step,
                "type": a.kind,
                "status": a.status,
                // Inside a code fence: only a fence of its own could break out.
                "excerpt": redactor.redact(&tail).replace("```", "'''"),
            })
        })
        .collect();
    let deletions: Vec<Value> = in_period
        .iter()
        .filter(|a| a.kind == ActivityType::Prune)
        .flat_map(|a| {
            let when = at(&a.started_at);
            a.meta["deleted"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(move |d| d.as_str().map(|p| json!({ "at": when.clone(), "file": Path::new(p).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default() })))
        })
        .collect();
    let next_runs: Vec<Value> = compiled
        .steps
        .iter()
        .filter(|s| compiled.plans[s.plan].decl.name.value == *name && s.schedule.is_some())
        .filter_map(|s| {
            let sch = &s.schedule.as_ref()?.value;
            sch.next_after(now, tz)
                .map(|n| json!({ "step": s.id, "next": local(n, tz) }))
        })
        .collect();
    let chain = store
        .and_then(|s| s.chain_head().ok().flatten())
        .map(|(seal, hash)| json!({ "seal": seal, "hash": hash }));
    json!({
        "chain": chain,
        "plan": name,
        "timezone": tz.name(),
        "generated_at": local(now, tz),
        "period": { "from": local(since, tz), "to": local(now, tz) },
        "overall": match overall { crate::health::Severity::Ok => "OK", crate::health::Severity::Warn => "WARNING", crate::health::Severity::Crit => "CRITICAL" },
        "checks": checks_json,
        "dumps": dumps,
        "tables": tables,
        "snapshots": snapshots,
        "verifies": verifies,
        "failures": failures,
        "deletions": deletions,
        "next_runs": next_runs,
    })
}

/// Writes a rendered report to `reports/backup-report-YYYYmmdd.md` (a second one the same
/// day gets `-2`), atomically.
pub fn write(
    plan: &CompiledPlan,
    text: &str,
    now: DateTime<Utc>,
    out: Option<&Path>,
) -> std::io::Result<PathBuf> {
    match out {
        Some(p) => {
            layout::write_atomic(p, text.as_bytes())?;
            Ok(p.to_path_buf())
        }
        None => {
            let dir = Path::new(&plan.base.value).join("reports");
            std::fs::create_dir_all(&dir)?;
            let stem = format!(
                "backup-report-{}",
                now.with_timezone(&plan.timezone.value).format("%Y%m%d")
            );
            layout::write_new(&dir, &stem, "md", text.as_bytes())
        }
    }
}
