//! The `wal` step (type `wal_archive`): the archive PostgreSQL fills through its
//! `archive_command` (`ops-run wal push PLAN/STEP %p %f`, see `commands/wal.rs`). A run keeps
//! the folder's modes (the server's group writes there), prunes what no kept base backup needs,
//! checks that no segment is missing from the oldest kept base to the newest segment, and asks
//! the server's `pg_stat_archiver` whether its `archive_command` fails. Health reads the
//! folder itself: the newest segment's age and the gaps.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kdl::KdlNode;
use serde_json::json;

use super::{Context, Outcome, Settings, Status, StepError};
use crate::artifact::layout::{self, Area};
use crate::engines::client::Client;
use crate::exec;
use crate::plan::compile::Compiling;
use crate::plan::decode::Decoder;
use crate::plan::diagnostic::Diagnostic;
use crate::plan::model::{Spanned, WalArchive};
use crate::plan::validate::{self, Scope};

/// WAL is stale after 15 minutes and failed after an hour: with `archive_timeout = 60`, a
/// server that writes anything archives a segment a minute.
pub const WAL_STALE: Duration = Duration::from_secs(15 * 60);
pub const WAL_FAIL: Duration = Duration::from_secs(3600);

/// The archive folder's mode: the service's group (which the server's user joins) writes
/// there, files inherit the group (setgid), nobody else enters.
pub const DIR_MODE: u32 = 0o2770;

pub const SETTINGS: Settings = Settings {
    keys: &["database", "base-backup", "stale-after", "fail-after"],
    repeatable: &[],
};

pub fn decode(w: &mut WalArchive, key: &str, node: &KdlNode, dec: &mut Decoder) {
    match key {
        "database" => w.database = dec.string(node),
        "base-backup" => w.base_backup = dec.string(node),
        "stale-after" => w.stale_after = dec.duration(node),
        "fail-after" => w.fail_after = dec.duration(node),
        _ => {}
    }
}

pub fn compile(w: &WalArchive, c: &mut Compiling) {
    if let Some(db) = &w.database {
        c.plan_setting("database", db.value.clone(), db.span);
    }
    if let Some(b) = &w.base_backup {
        c.plan_setting("base-backup", b.value.clone(), b.span);
    }
    c.own_threshold("stale-after", w.stale_after.as_ref(), WAL_STALE);
    c.own_threshold("fail-after", w.fail_after.as_ref(), WAL_FAIL);
}

pub fn validate(
    w: &WalArchive,
    name: &Spanned<String>,
    scope: &Scope,
    diags: &mut Vec<Diagnostic>,
) {
    validate::postgres_database("wal", w.database.as_ref(), name, scope, diags);
    let bases = scope.steps_of("base-backup");
    match &w.base_backup {
        Some(b) => scope.reference("base-backup", b, diags),
        None if scope.plan.wal_base(w).is_none() => diags.push(
            Diagnostic::error(
                name.span,
                format!(
                    "wal `{}` needs a base backup to start from: the plan has {}",
                    name.value,
                    if bases.is_empty() {
                        "no `base-backup` step".to_string()
                    } else {
                        format!("several ({})", bases.join(", "))
                    }
                ),
                "which base backups?",
            )
            .with_help(
                "add a `base-backup` step of the same database, or name one: `base-backup \"base\"`",
            ),
        ),
        None => {}
    }
    validate::fail_after_stale(&w.stale_after, &w.fail_after, diags);
}

/// The `postgresql.conf` lines that make the server archive into this step's folder.
pub fn conf_lines(plan: &str, step: &str, plans: &Path) -> Vec<String> {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/usr/bin/ops-run"));
    let plans = std::fs::canonicalize(plans).unwrap_or_else(|_| plans.to_path_buf());
    let command = format!(
        "{} --plans {} wal push {plan}/{step} %p %f",
        exec::shell_quote(&exe.display().to_string()),
        exec::shell_quote(&plans.display().to_string())
    );
    vec![
        "wal_level = replica".to_string(),
        "archive_mode = on".to_string(),
        format!("archive_command = '{}'", command.replace('\'', "''")),
        "archive_timeout = 60".to_string(),
    ]
}

pub fn preview(ctx: &Context, _w: &WalArchive) -> Result<String, StepError> {
    Ok(format!(
        "check and prune {} (PostgreSQL archives into it: {})",
        ctx.plan.dir(ctx.step.name(), Area::Wal).display(),
        conf_lines(&ctx.plan.decl.name.value, ctx.step.name(), ctx.plans)[2]
    ))
}

/// The archive folder, made (or mended) with the group's modes.
pub fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    // The server's user reaches the folder through `BASE/wal/` and the base: the group may
    // pass through them (search only, no listing of the base).
    for up in dir.ancestors().skip(1).take(2) {
        if let Ok(m) = std::fs::metadata(up) {
            let mode = m.permissions().mode();
            if mode & 0o010 == 0 {
                let _ = std::fs::set_permissions(up, std::fs::Permissions::from_mode(mode | 0o010));
            }
        }
    }
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o7777;
    if mode != DIR_MODE {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

use crate::artifact::base::{prune_archive, survey};

/// The base-backup folder of a `wal` step.
fn base_dir(plan: &crate::plan::compile::CompiledPlan, w: &WalArchive) -> Option<PathBuf> {
    plan.decl.wal_base(w).map(|b| plan.dir(b, Area::Base))
}

/// `pg_stat_archiver`, when the server answers: `(failed_count, last_failed_wal,
/// last_failed_time, last_archived_time)`; a failure newer than the last success is returned.
fn archiver_failing(ctx: &Context, w: &WalArchive) -> Option<String> {
    let db = ctx
        .database(w.database.as_ref().map_or("", |d| d.value.as_str()))
        .ok()?;
    let client = Client::new(&ctx.target(db).ok()?, &ctx.plan.tools).ok()?;
    let sql = "SELECT coalesce(last_failed_wal, ''), coalesce(last_failed_time::text, ''), \
               failed_count FROM pg_stat_archiver \
               WHERE last_failed_time IS NOT NULL \
               AND (last_archived_time IS NULL OR last_failed_time > last_archived_time)";
    let db_name = db.dbname.as_ref().map_or("postgres", |d| d.value.as_str());
    let mut spec = client.sql(db_name, sql);
    spec.timeout = Some(Duration::from_secs(30));
    let (r, out) = exec::run_capturing(&spec, ctx.redactor);
    if !r.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out).trim().to_string();
    let mut parts = text.split('|');
    let (wal_name, at, count) = (parts.next()?, parts.next()?, parts.next()?);
    (!wal_name.is_empty()).then(|| {
        format!(
            "the server's archive_command is failing: {wal_name} failed at {at} ({count} failures since the statistics were reset); see the server's log"
        )
    })
}

pub fn execute(ctx: &Context, w: &WalArchive) -> Outcome {
    let started = Instant::now();
    let dir = ctx.plan.dir(ctx.step.name(), Area::Wal);
    if let Err(e) = ensure_dir(&dir) {
        return Outcome::failed(format!("cannot create {}: {e}", dir.display()));
    }
    let orphans = layout::remove_orphans(&dir);
    let tz = ctx.plan.timezone.value;
    let Some(base_dir) = base_dir(ctx.plan, w) else {
        return Outcome::failed("no base-backup step for this WAL");
    };
    let pruned = match prune_archive(&base_dir, &dir, tz) {
        Ok(n) => n,
        Err(e) => return Outcome::failed(e),
    };
    let s = survey(&base_dir, &dir, tz);
    let failing = archiver_failing(ctx, w);
    let newest = s.newest.as_ref().map(|n| n.name.clone());
    let missing = s.gaps.as_ref().map_or(Vec::new(), |g| g.missing.clone());
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!(
            "WAL missing from the archive: {}",
            missing.join(", ")
        ));
    }
    if let Some(f) = &failing {
        problems.push(f.clone());
    }
    let summary = match (&newest, problems.is_empty()) {
        (_, false) => problems.join("; "),
        (None, true) => format!(
            "{} holds no segment yet (is archive_command set? `ops-run plan show` prints it)",
            dir.display()
        ),
        (Some(n), true) => format!(
            "{} files archived, newest {n}, no gap; pruned {pruned}",
            s.files.len()
        ),
    };
    Outcome {
        status: if problems.is_empty() {
            Status::Success
        } else {
            Status::Failed
        },
        meta: json!({
            "artifact": s.newest.as_ref().map(|n| n.path.display().to_string()),
            "newest": newest,
            "files": s.files.len(),
            "missing": missing,
            "pruned": pruned,
            "archiver_failing": failing,
            "orphans_removed": orphans.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "duration_ms": started.elapsed().as_millis() as u64,
        }),
        log_excerpt: ctx.redactor.redact(&summary),
        summary: ctx.redactor.redact(&summary),
        extra: Vec::new(),
        tolerated: false,
    }
}
