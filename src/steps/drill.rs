//! The `drill` step (`type` `dr_drill`): a rehearsal of the runbook on scratch targets. It
//! restores the newest good dump into a scratch database (as a verify does, with its `expect`
//! queries), restores the newest complete snapshot into a scratch folder, and spot-checks a
//! sample of the restored files against the live ones (size and sha256; files modified after
//! the snapshot are skipped). It measures the recovery time (the restores' wall time) and the
//! recovery point (the age of the newest dump and snapshot), writes
//! `verify/<step>/drill-YYYYmmdd-HHMM.log`, and always removes its scratch targets. Over its
//! `rto`/`rpo` objectives it ends `incomplete` (a warning) with the measured figures.

use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kdl::KdlNode;
use serde_json::json;

use super::{Context, Outcome, Settings, Status, StepError};
use crate::artifact::layout::{self, Area};
use crate::artifact::sha;
use crate::exec;
use crate::graph::EdgeKind;
use crate::plan::compile::Compiling;
use crate::plan::decode::Decoder;
use crate::plan::diagnostic::Diagnostic;
use crate::plan::model::{Drill, Sample, Snapshot, Spanned, StepKind};
use crate::plan::settings::Origin;
use crate::plan::validate::{self, Scope};
use crate::units::duration;

pub use crate::units::duration::figure;

/// A monthly drill is overdue after five weeks.
pub const DRILL_OVERDUE: Duration = Duration::from_secs(35 * 24 * 3600);
const DEFAULT_SAMPLE: Sample = Sample::Count(200);

pub const SETTINGS: Settings = Settings {
    keys: &[
        "dump",
        "base-backup",
        "pitr",
        "snapshot",
        "overdue-after",
        "min-tables",
        "expect",
        "verify-database",
        "ownership",
        "from",
        "sessions",
        "identity",
        "sample",
        "max-mismatch",
        "rto",
        "rpo",
    ],
    repeatable: &["expect"],
};

fn parse_sample(v: &str) -> Result<Sample, String> {
    let bad = || format!("`{v}` is neither a count (\"200\") nor a share (\"5%\")");
    match v.strip_suffix('%') {
        Some(p) => match p.parse::<u32>() {
            Ok(p) if (1..=100).contains(&p) => Ok(Sample::Percent(p)),
            _ => Err(bad()),
        },
        None => match v.parse::<u64>() {
            Ok(n) if n >= 1 => Ok(Sample::Count(n)),
            _ => Err(bad()),
        },
    }
}

pub fn decode(d: &mut Drill, key: &str, node: &KdlNode, dec: &mut Decoder) {
    match key {
        "snapshot" => d.snapshot = dec.string(node),
        "sample" => {
            d.sample = dec.parsed(
                node,
                "a count such as \"200\" or a share such as \"5%\"",
                parse_sample,
            )
        }
        "max-mismatch" => {
            d.max_mismatch = dec
                .int(node, 0, 1_000_000_000)
                .map(|n| Spanned::new(n.value as u64, n.span))
        }
        "rto" => d.rto = dec.duration(node),
        "rpo" => d.rpo = dec.duration(node),
        "pitr" => d.restore.pitr = dec.boolean(node),
        // The database part is a verify's: `dump`, `min-tables`, `expect`, …
        other => super::restore_test::decode(&mut d.restore, other, node, dec),
    }
}

/// Edges from its dump and snapshot steps (a drill rehearses what they made), its
/// `overdue-after`, and its sample and objectives for `plan show`.
pub fn compile(d: &Drill, c: &mut Compiling) {
    if let Some(from) = &d.restore.from
        && c.needs(from, EdgeKind::Order)
    {
        c.plan_setting("from", from.value.clone(), from.span);
    }
    if let Some(dump) = &d.restore.dump
        && c.needs(dump, EdgeKind::Order)
    {
        c.plan_setting("dump", dump.value.clone(), dump.span);
    }
    if let Some(b) = &d.restore.base_backup
        && c.needs(b, EdgeKind::Order)
    {
        c.plan_setting("base-backup", b.value.clone(), b.span);
    }
    if let Some(p) = &d.restore.pitr {
        c.plan_setting(
            "pitr",
            if p.value {
                "a random instant"
            } else {
                "the end"
            },
            p.span,
        );
    }
    if let Some(snap) = &d.snapshot
        && c.needs(snap, EdgeKind::Order)
    {
        c.plan_setting("snapshot", snap.value.clone(), snap.span);
    }
    c.own_threshold(
        "overdue-after",
        d.restore.overdue_after.as_ref(),
        DRILL_OVERDUE,
    );
    match &d.sample {
        Some(s) => c.plan_setting("sample", sample_words(s.value), s.span),
        None => c.setting("sample", sample_words(DEFAULT_SAMPLE), Origin::Default),
    }
    for (key, v) in [("rto", &d.rto), ("rpo", &d.rpo)] {
        if let Some(v) = v {
            c.plan_setting(key, duration::format(v.value), v.span);
        }
    }
}

fn sample_words(s: Sample) -> String {
    match s {
        Sample::Count(n) => format!("{n} files"),
        Sample::Percent(p) => format!("{p}% of the files"),
    }
}

pub fn validate(d: &Drill, name: &Spanned<String>, scope: &Scope, diags: &mut Vec<Diagnostic>) {
    if d.restore.dump.is_none() && d.restore.base_backup.is_none() && d.snapshot.is_none() {
        diags.push(
            Diagnostic::error(
                name.span,
                format!(
                    "drill `{}` needs `dump`, `base-backup` or `snapshot`",
                    name.value
                ),
                "nothing to rehearse",
            )
            .with_help("name the dump step and the snapshot step whose newest backups it restores"),
        );
    }
    if d.restore.dump.is_some() || d.restore.base_backup.is_some() {
        super::restore_test::validate(&d.restore, name, scope, diags);
    }
    if let Some(p) = d.restore.pitr.as_ref().filter(|p| p.value)
        && d.restore.base_backup.is_none()
    {
        diags.push(
            Diagnostic::error(
                p.span,
                "`pitr` needs `base-backup`",
                "nothing to recover to an instant",
            )
            .with_help("name the base-backup step whose WAL the drill replays: `base-backup base`"),
        );
    }
    if let Some(r) = &d.snapshot {
        let snapshots: Vec<&str> = scope
            .plan
            .steps
            .iter()
            .filter(|s| matches!(s.kind, StepKind::Snapshot(_)))
            .map(|s| s.name.value.as_str())
            .collect();
        if !snapshots.contains(&r.value.as_str()) {
            diags.push(validate::reference_error(
                r.span,
                "snapshot step",
                &r.value,
                &snapshots,
            ));
        }
    }
}

/// The snapshot step a drill names, and its settings.
fn snapshot_of<'a>(ctx: &'a Context, d: &Drill) -> Option<(&'a str, &'a Snapshot)> {
    let name = d.snapshot.as_ref()?.value.as_str();
    ctx.plan.decl.steps.iter().find_map(|s| match &s.kind {
        StepKind::Snapshot(snap) if s.name.value == name => Some((s.name.value.as_str(), snap)),
        _ => None,
    })
}

pub fn preview(ctx: &Context, d: &Drill) -> Result<String, StepError> {
    let mut parts = Vec::new();
    if let Some(dump) = &d.restore.dump {
        parts.push(format!(
            "restore the newest good dump of `{}` into a scratch database",
            dump.value
        ));
    }
    if let Some(b) = &d.restore.base_backup {
        parts.push(format!(
            "recover the newest base backup of `{}` into a scratch cluster, {}",
            b.value,
            if d.restore.pitr.as_ref().is_some_and(|p| p.value) {
                "to a random instant of the archived window"
            } else {
                "with all archived WAL"
            }
        ));
    }
    if let Some((name, _)) = snapshot_of(ctx, d) {
        parts.push(format!(
            "restore the newest complete snapshot of `{name}` into a scratch folder and compare {} with the live ones",
            sample_words(d.sample.as_ref().map_or(DEFAULT_SAMPLE, |s| s.value))
        ));
    }
    Ok(format!(
        "{}; measure recovery time and point; remove the scratch targets",
        parts.join("; ")
    ))
}

/// A drill needs something to rehearse: a good dump (when it names one) and a snapshot.
pub fn ready(ctx: &Context, d: &Drill) -> Result<(), StepError> {
    if d.restore.dump.is_some() || d.restore.base_backup.is_some() {
        super::restore_test::ready(ctx, &d.restore)?;
    }
    if let Some((name, _)) = snapshot_of(ctx, d) {
        let dir = ctx.plan.dir(name, Area::Snapshots);
        if crate::artifact::marker::newest_complete(&dir, ctx.plan.timezone.value, ctx.clock.now())
            .is_none()
        {
            return Err(format!("no complete snapshot of `{name}` to restore yet").into());
        }
    }
    Ok(())
}

const SCRATCH_DIR: &str = ".drill-files.";

/// Removes the scratch folders a killed ops-run left (their pid is gone).
pub fn sweep(ctx: &Context, d: &Drill) -> Vec<String> {
    let mut said = super::restore_test::sweep(ctx, &d.restore);
    let dir = ctx.plan.dir(ctx.step.name(), Area::VerifyLogs);
    said.extend(super::scratch::sweep(&dir, SCRATCH_DIR).iter().map(|p| {
        format!(
            "removed the scratch folder {} of {} (left by an ops-run that was killed)",
            p.display(),
            ctx.step.id
        )
    }));
    said
}

/// What the files part found.
#[derive(Default)]
struct FilesCheck {
    sampled: u64,
    skipped: u64,
    mismatches: Vec<String>,
}

/// Regular files under the live `paths`, sorted.
fn live_files(paths: &[Spanned<String>]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = paths
        .iter()
        .filter_map(|p| std::path::absolute(&p.value).ok())
        .collect();
    while let Some(p) = stack.pop() {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {
                for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                    stack.push(e.path());
                }
            }
            Ok(m) if m.is_file() => out.push(p),
            _ => {}
        }
    }
    out.sort();
    out
}

/// A random sample of `files` (a different one each drill).
fn choose(mut files: Vec<PathBuf>, sample: Sample) -> Vec<PathBuf> {
    let n = match sample {
        Sample::Count(n) => n as usize,
        Sample::Percent(p) => (files.len() * p as usize).div_ceil(100),
    };
    if files.len() <= n {
        return files;
    }
    let seed = std::collections::hash_map::RandomState::new();
    files.sort_by_cached_key(|f| {
        let mut h = seed.build_hasher();
        h.write(f.as_os_str().as_encoded_bytes());
        h.finish()
    });
    files.truncate(n);
    files.sort();
    files
}

/// Compares the sampled live files with their restored copies under `restored`.
fn spot_check(
    files: Vec<PathBuf>,
    restored: &Path,
    taken: chrono::DateTime<chrono::Utc>,
    lines: &mut Vec<String>,
) -> FilesCheck {
    let mut found = FilesCheck::default();
    for live in files {
        let Ok(meta) = std::fs::metadata(&live) else {
            continue;
        };
        let modified: Option<chrono::DateTime<chrono::Utc>> = meta.modified().ok().map(Into::into);
        if modified.is_some_and(|m| m > taken) {
            found.skipped += 1;
            continue;
        }
        found.sampled += 1;
        let copy = restored.join(live.strip_prefix("/").unwrap_or(&live));
        let why = match std::fs::metadata(&copy) {
            Err(_) => Some("missing from the restore".to_string()),
            Ok(m) if m.len() != meta.len() => {
                Some(format!("{} bytes restored, {} live", m.len(), meta.len()))
            }
            Ok(_) => match (sha::file_sha256(&copy), sha::file_sha256(&live)) {
                (Ok(a), Ok(b)) if a == b => None,
                (Ok(_), Ok(_)) => Some("same size, different content (sha256)".to_string()),
                (Err(e), _) | (_, Err(e)) => Some(format!("cannot read: {e}")),
            },
        };
        if let Some(why) = why {
            lines.push(format!("mismatch: {}: {why}", live.display()));
            found.mismatches.push(live.display().to_string());
        }
    }
    found
}

/// When restic began the snapshot `id` (`restic snapshots --json ID`).
fn snapshot_time(
    ctx: &Context,
    env: &[(String, String)],
    id: &str,
) -> Result<chrono::DateTime<chrono::Utc>, StepError> {
    let spec = super::restic::restic(ctx, env, &["snapshots".into(), "--json".into(), id.into()]);
    let r = exec::run(&spec, ctx.redactor);
    let listed: serde_json::Value = serde_json::from_str(r.tail.trim())
        .map_err(|_| format!("restic snapshots did not list {id}: {}", r.tail.trim()))?;
    Ok(listed[0]["time"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .ok_or_else(|| format!("restic snapshots gave no time for {id}"))?)
}

/// The files part: restic restore into a scratch folder, then the spot check.
fn rehearse_files(
    ctx: &Context,
    d: &Drill,
    lines: &mut Vec<String>,
    meta: &mut serde_json::Value,
) -> Result<(Duration, Duration), StepError> {
    let (name, snap) = snapshot_of(ctx, d).ok_or("no such snapshot step")?;
    let now = ctx.clock.now();
    let marker = crate::artifact::marker::newest_complete(
        &ctx.plan.dir(name, Area::Snapshots),
        ctx.plan.timezone.value,
        now,
    )
    .ok_or_else(|| format!("no complete snapshot of `{name}`"))?;
    let (id, taken) = (marker.id.clone(), marker.taken);
    let point = (now - taken).to_std().unwrap_or_default();
    lines.push(format!(
        "snapshot: {id} (taken {}, {} ago)",
        taken.format("%Y-%m-%d %H:%M UTC"),
        duration::format(Duration::from_secs(point.as_secs()))
    ));
    let dir = ctx.plan.dir(ctx.step.name(), Area::VerifyLogs);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let scratch = dir.join(format!("{SCRATCH_DIR}{}", std::process::id()));
    let _remove = super::scratch::RemoveTree(scratch.clone());
    let env = super::restic::snapshot_credentials(ctx, snap)?;
    let spec = super::restic::restic(
        ctx,
        &env,
        &[
            "restore".into(),
            id.clone(),
            "--target".into(),
            scratch.display().to_string(),
        ],
    );
    let started = Instant::now();
    let r = exec::run(&spec, ctx.redactor);
    let took = started.elapsed();
    if !r.success() {
        return Err(format!(
            "restic restore failed: {}\n{}",
            r.exit.reason("restic").unwrap_or_default(),
            r.tail.trim()
        )
        .into());
    }
    lines.push(format!(
        "files restored in {:.1} s into {}",
        took.as_secs_f64(),
        scratch.display()
    ));
    // Which live files may have changed since: restic's own time of the snapshot (when it
    // began reading), not the marker's.
    let started_at = match marker.began {
        Some(b) => b,
        None => snapshot_time(ctx, &env, &id)?,
    };
    let sample = d.sample.as_ref().map_or(DEFAULT_SAMPLE, |s| s.value);
    let all = live_files(&snap.paths);
    let total = all.len();
    let found = spot_check(choose(all, sample), &scratch, started_at, lines);
    lines.push(format!(
        "spot check: {} of {total} live files compared, {} skipped (changed after the snapshot), {} mismatched",
        found.sampled,
        found.skipped,
        found.mismatches.len()
    ));
    meta["snapshot"] = json!(id);
    meta["files_sampled"] = json!(found.sampled);
    meta["files_skipped"] = json!(found.skipped);
    meta["files_mismatched"] = json!(found.mismatches.len());
    let allowed = d.max_mismatch.as_ref().map_or(0, |m| m.value);
    if found.mismatches.len() as u64 > allowed {
        return Err(format!(
            "{} restored files differ from the live ones (max-mismatch {allowed}): {}",
            found.mismatches.len(),
            found
                .mismatches
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )
        .into());
    }
    lines.push(format!("scratch: {} (removed)", scratch.display()));
    Ok((took, point))
}

pub fn execute(ctx: &Context, d: &Drill) -> Outcome {
    let started = Instant::now();
    let mut lines = Vec::new();
    let mut meta = json!({});
    let mut recovery_time = Duration::ZERO;
    let mut recovery_point = Duration::ZERO;
    let result = (|| -> Result<(), String> {
        if d.restore.dump.is_some() || d.restore.base_backup.is_some() {
            let t0 = Instant::now();
            let test = super::restore_test::restore_test(ctx, &d.restore);
            let took = t0.elapsed();
            lines.extend(test.lines);
            meta["dump"] = json!(test.dump.map(|p| p.display().to_string()));
            let tables = test.result?;
            meta["tables"] = json!(tables);
            recovery_time += took;
            recovery_point = recovery_point.max(test.age.unwrap_or_default());
        }
        if d.snapshot.is_some() {
            let (took, point) = rehearse_files(ctx, d, &mut lines, &mut meta)?;
            recovery_time += took;
            recovery_point = recovery_point.max(point);
        }
        Ok(())
    })();
    let secs = |d: Duration| duration::format(Duration::from_secs(d.as_secs().max(1)));
    let mut over = Vec::new();
    if result.is_ok() {
        lines.push(format!(
            "recovery time: {} ({:.1} s)",
            secs(recovery_time),
            recovery_time.as_secs_f64()
        ));
        lines.push(format!(
            "recovery point: {} ({} s)",
            secs(recovery_point),
            recovery_point.as_secs()
        ));
        meta["rto_seconds"] = json!(recovery_time.as_secs_f64());
        meta["rpo_seconds"] = json!(recovery_point.as_secs());
        if let Some(rto) = &d.rto
            && recovery_time > rto.value
        {
            over.push(format!(
                "recovery time {} over rto {}",
                secs(recovery_time),
                duration::format(rto.value)
            ));
        }
        if let Some(rpo) = &d.rpo
            && recovery_point > rpo.value
        {
            over.push(format!(
                "recovery point {} over rpo {}",
                secs(recovery_point),
                duration::format(rpo.value)
            ));
        }
    }
    let (status, summary) = match (&result, over.is_empty()) {
        (Err(why), _) => (Status::Failed, why.clone()),
        (Ok(()), true) => (
            Status::Success,
            format!(
                "recovery time {}, recovery point {}",
                secs(recovery_time),
                secs(recovery_point)
            ),
        ),
        (Ok(()), false) => (
            Status::Incomplete,
            format!("over its objectives: {}", over.join("; ")),
        ),
    };
    lines.push(format!("result: {summary}"));
    lines.push(format!("duration_ms: {}", started.elapsed().as_millis()));
    let text = ctx.redactor.redact(&(lines.join("\n") + "\n"));
    let dir = ctx.plan.dir(ctx.step.name(), Area::VerifyLogs);
    let log = std::fs::create_dir_all(&dir).and_then(|()| {
        let stem = layout::stamp_name("drill", ctx.clock.now(), ctx.plan.timezone.value);
        layout::write_new(&dir, &stem, "log", text.as_bytes())
    });
    meta["log"] = json!(log.as_ref().ok().map(|p| p.display().to_string()));
    let mut log_excerpt = text;
    if let Err(e) = &log {
        log_excerpt.push_str(&format!("ops-run: cannot write the drill log: {e}\n"));
    }
    Outcome {
        status: if log.is_err() { Status::Failed } else { status },
        meta,
        log_excerpt: format!(
            "{}{log_excerpt}",
            if status == Status::Incomplete {
                format!("error: {summary}\n")
            } else {
                String::new()
            }
        ),
        summary: ctx.redactor.redact(&summary),
        extra: Vec::new(),
        tolerated: false,
    }
}
