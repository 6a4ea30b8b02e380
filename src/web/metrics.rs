//! Prometheus metrics, computed from SQLite and the files (so a restart changes nothing), in
//! the text exposition format; `ops-run metrics --textfile` writes them atomically for the
//! node_exporter textfile collector.

use std::fmt::Write as _;
use std::path::Path;

use crate::activity::ActivityType;
use crate::clock::parse_stamp;
use crate::health::{Check, CheckKind, Severity};
use crate::plan::compile::Compiled;
use crate::store::Store;
use crate::store::meta::{CopyMeta, VerifyMeta};

/// Label values escaped as the exposition format wants (`\\`, `\"`, `\n`).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
            .collect();
        let _ = writeln!(self.out, "{name}{{{}}} {value}", labels.join(","));
    }
}

fn seconds(stamp: &str) -> Option<f64> {
    parse_stamp(stamp).map(|t| t.timestamp_millis() as f64 / 1000.0)
}

/// Everything `/metrics` shows.
pub fn render(compiled: &Compiled, store: &Store, checks: &[Check]) -> rusqlite::Result<String> {
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    f.head(
        "ops_run_build_info",
        "gauge",
        "The running ops-run, as labels; always 1.",
    );
    f.sample(
        "ops_run_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    // The plan files as they stand: when they stop loading, nothing runs.
    let broken = checks
        .iter()
        .find(|c| c.kind == CheckKind::Plans && c.severity != crate::health::Severity::Ok);
    f.head(
        "ops_run_plans_loaded",
        "gauge",
        "1 when the plan files load; 0 when they do not (nothing runs until they do).",
    );
    f.sample(
        "ops_run_plans_loaded",
        &[],
        if broken.is_some() { 0.0 } else { 1.0 },
    );
    f.head(
        "ops_run_plan_errors",
        "gauge",
        "Diagnostics of the plan files that keep them from loading.",
    );
    f.sample(
        "ops_run_plan_errors",
        &[],
        broken.map_or(0, |c| c.detail.lines().count().saturating_sub(1)) as f64,
    );

    f.head(
        "ops_run_last_apply_timestamp_seconds",
        "gauge",
        "When the last plan apply of the plan ended (Unix time).",
    );
    {
        for (plan, at) in store.applies()? {
            if compiled.plans.iter().any(|p| p.decl.name.value == plan)
                && let Some(s) = seconds(&at)
            {
                f.sample(
                    "ops_run_last_apply_timestamp_seconds",
                    &[("plan", &plan)],
                    s,
                );
            }
        }
    }

    // Per step: last success and last attempt apart, so a failing step never looks fresh.
    let mut success = Vec::new();
    let mut attempt = Vec::new();
    let mut duration = Vec::new();
    for step in &compiled.steps {
        let plan = &compiled.plans[step.plan].decl.name.value;
        let kind = step.decl.kind.activity_type();
        let (last_success, last) = store.last_runs(plan, step.name(), kind)?;
        let last = last.map(|f| (f.started_at, f.duration_ms));
        let labels = (plan.clone(), step.name().to_string(), kind.to_string());
        if let Some(s) = last_success.as_deref().and_then(seconds) {
            success.push((labels.clone(), s));
        }
        if let Some((at, ms)) = last {
            if let Some(s) = seconds(&at) {
                attempt.push((labels.clone(), s));
            }
            if let Some(ms) = ms {
                duration.push((labels, ms as f64 / 1000.0));
            }
        }
    }
    for (name, help, rows) in [
        (
            "ops_run_step_last_success_timestamp_seconds",
            "When the newest successful run of the step started (Unix time).",
            &success,
        ),
        (
            "ops_run_step_last_attempt_timestamp_seconds",
            "When the newest finished run of the step started, whatever its result (Unix time).",
            &attempt,
        ),
        (
            "ops_run_step_last_duration_seconds",
            "How long the newest finished run of the step took.",
            &duration,
        ),
    ] {
        f.head(name, "gauge", help);
        for ((plan, step, kind), v) in rows {
            f.sample(name, &[("plan", plan), ("step", step), ("type", kind)], *v);
        }
    }

    f.head(
        "ops_run_check_state",
        "gauge",
        "Health of the check: 0 ok, 1 warn, 2 crit.",
    );
    for c in checks {
        let v = match c.severity {
            Severity::Ok => 0.0,
            Severity::Warn => 1.0,
            Severity::Crit => 2.0,
        };
        f.sample(
            "ops_run_check_state",
            &[
                ("plan", &c.plan),
                ("check", &c.id),
                ("kind", kind_name(c.kind)),
                ("state", c.state.as_str()),
            ],
            v,
        );
    }
    f.head(
        "ops_run_artifact_size_bytes",
        "gauge",
        "Size of the newest good artifact (dump) of the step.",
    );
    for c in checks
        .iter()
        .filter(|c| c.artifact_size.is_some() && c.kind == CheckKind::Dump)
    {
        f.sample(
            "ops_run_artifact_size_bytes",
            &[("plan", &c.plan), ("step", &c.step)],
            c.artifact_size.unwrap_or(0) as f64,
        );
    }
    f.head(
        "ops_run_dump_rows",
        "gauge",
        "Rows in all tables of the newest good dump of the step, from its manifest.",
    );
    for c in checks.iter().filter(|c| c.kind == CheckKind::Dump) {
        if let Some(rows) = c.rows {
            f.sample(
                "ops_run_dump_rows",
                &[("plan", &c.plan), ("step", &c.step)],
                rows as f64,
            );
        }
    }
    f.head(
        "ops_run_dump_tables",
        "gauge",
        "Tables in the newest good dump of the step, from its manifest.",
    );
    for c in checks.iter().filter(|c| c.kind == CheckKind::Dump) {
        if let Some(t) = &c.tables {
            f.sample(
                "ops_run_dump_tables",
                &[("plan", &c.plan), ("step", &c.step)],
                t.len() as f64,
            );
        }
    }
    f.head(
        "ops_run_artifact_age_seconds",
        "gauge",
        "Age of the newest good artifact (dump, snapshot marker) of the step.",
    );
    for c in checks.iter().filter(|c| c.kind != CheckKind::Verify) {
        if let Some(a) = c.age_seconds {
            f.sample(
                "ops_run_artifact_age_seconds",
                &[("plan", &c.plan), ("step", &c.step)],
                a as f64,
            );
        }
    }
    f.head(
        "ops_run_verify_tables",
        "gauge",
        "Tables found by the newest successful restore test.",
    );
    for step in compiled
        .steps
        .iter()
        .filter(|s| s.decl.kind.activity_type() == ActivityType::VerifyRestore)
    {
        let plan = &compiled.plans[step.plan].decl.name.value;
        let meta = store.newest_success_meta(plan, step.name(), ActivityType::VerifyRestore)?;
        if let Some(n) = meta.and_then(|m| VerifyMeta::read(&m).verify_table_count) {
            f.sample(
                "ops_run_verify_tables",
                &[("plan", plan), ("step", step.name())],
                n as f64,
            );
        }
    }
    // Offsite copies, by destination: when the last copy succeeded, and when the newest dump
    // the destination holds was taken (what the "copy stale" alert compares).
    let mut copies = Vec::new();
    for step in compiled
        .steps
        .iter()
        .filter(|s| s.decl.kind.activity_type() == ActivityType::OffsiteCopy)
    {
        let plan = &compiled.plans[step.plan].decl.name.value;
        let (last_success, _) = store.last_runs(plan, step.name(), ActivityType::OffsiteCopy)?;
        let meta = store
            .newest_success_meta(plan, step.name(), ActivityType::OffsiteCopy)?
            .map(|m| CopyMeta::read(&m))
            .unwrap_or_default();
        let destination = meta.destination.clone().unwrap_or_else(|| "-".into());
        copies.push((
            plan,
            step.name(),
            destination,
            last_success.as_deref().and_then(seconds),
            meta.newest_taken.as_deref().and_then(seconds),
        ));
    }
    for (name, help, newest) in [
        (
            "ops_run_copy_last_success_timestamp_seconds",
            "When the newest successful copy to the destination started (Unix time).",
            false,
        ),
        (
            "ops_run_copy_newest_dump_timestamp_seconds",
            "When the newest dump the destination holds was taken (Unix time).",
            true,
        ),
    ] {
        f.head(name, "gauge", help);
        for (plan, step, destination, success, taken) in &copies {
            if let Some(v) = if newest { taken } else { success } {
                f.sample(
                    name,
                    &[("plan", plan), ("step", step), ("destination", destination)],
                    *v,
                );
            }
        }
    }
    // One read of each drill's figures for both families.
    let mut drills = Vec::new();
    for step in compiled
        .steps
        .iter()
        .filter(|s| s.decl.kind.activity_type() == ActivityType::DrDrill)
    {
        let plan = &compiled.plans[step.plan].decl.name.value;
        if let Some(figures) = store.drill_figures(plan, step.name())? {
            drills.push((plan, step.name(), figures));
        }
    }
    f.head(
        "ops_run_drill_duration_seconds",
        "gauge",
        "Recovery time measured by the newest drill: the wall time of its restores.",
    );
    for (plan, step, (rto, _)) in &drills {
        f.sample(
            "ops_run_drill_duration_seconds",
            &[("plan", plan), ("step", step)],
            *rto,
        );
    }
    // The WAL's newest segment, by when it was archived (its file's time).
    let wal: Vec<(&Check, f64)> = checks
        .iter()
        .filter(|c| c.kind == CheckKind::Wal)
        .filter_map(|c| {
            let path = c.artifact.as_ref()?;
            let at = std::fs::metadata(path).ok()?.modified().ok()?;
            let secs = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64();
            Some((c, secs))
        })
        .collect();
    f.head(
        "ops_run_wal_last_archived_timestamp_seconds",
        "gauge",
        "When the newest WAL segment of a wal step was archived.",
    );
    for (c, at) in &wal {
        f.sample(
            "ops_run_wal_last_archived_timestamp_seconds",
            &[("plan", &c.plan), ("step", &c.step)],
            *at,
        );
    }
    f.head(
        "ops_run_recovery_point_age_seconds",
        "gauge",
        "Recovery point: for a plan that archives WAL, the age of its newest archived segment (step: the wal step); else at the newest drill, the age of the oldest of the newest dump and snapshot it restored.",
    );
    let archiving: Vec<&str> = wal.iter().map(|(c, _)| c.plan.as_str()).collect();
    for (c, _) in &wal {
        if let Some(age) = c.age_seconds {
            f.sample(
                "ops_run_recovery_point_age_seconds",
                &[("plan", &c.plan), ("step", &c.step)],
                age as f64,
            );
        }
    }
    for (plan, step, (_, rpo)) in drills
        .iter()
        .filter(|(p, _, _)| !archiving.contains(&p.as_str()))
    {
        f.sample(
            "ops_run_recovery_point_age_seconds",
            &[("plan", plan), ("step", step)],
            *rpo,
        );
    }
    f.head(
        "ops_run_activity_log_sealed",
        "gauge",
        "Ended activities sealed in the log's hash chain; the label is the newest hash (an outside copy proves what the log said).",
    );
    if let Some((seal, hash)) = store.chain_head()? {
        f.sample(
            "ops_run_activity_log_sealed",
            &[("hash", &hash)],
            seal as f64,
        );
    }
    f.head(
        "ops_run_activities_total",
        "counter",
        "Finished activities by type and status.",
    );
    {
        for (kind, status, n) in store.activity_counts()? {
            f.sample(
                "ops_run_activities_total",
                &[("type", kind.as_str()), ("status", status.as_str())],
                n as f64,
            );
        }
    }
    Ok(out)
}

fn kind_name(k: CheckKind) -> &'static str {
    match k {
        CheckKind::Dump => "dump",
        CheckKind::Snapshot => "snapshot",
        CheckKind::Verify => "verify",
        CheckKind::Drill => "drill",
        CheckKind::Copy => "copy",
        CheckKind::RepoCheck => "repo_check",
        CheckKind::Apply => "apply",
        CheckKind::Plans => "plans",
        CheckKind::BaseBackup => "base_backup",
        CheckKind::Wal => "wal",
    }
}

/// Writes the metrics to `path` atomically (temporary file, rename), as node_exporter wants.
pub fn write_textfile(
    compiled: &Compiled,
    store: &Store,
    checks: &[Check],
    path: &Path,
) -> Result<(), super::WebError> {
    let text = render(compiled, store, checks)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| super::WebError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    crate::artifact::layout::write_atomic(path, text.as_bytes()).map_err(|source| {
        super::WebError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}
