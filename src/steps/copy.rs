//! The `copy` step (`type` `offsite_copy`): every good dump of a `dump` step that is not yet at
//! the destination goes to a restic repository there (any backend restic speaks), one restic
//! snapshot per dump with its sidecar (and its roles file), tagged `ops-run`, `plan=…`,
//! `step=…`, `dump=full-…` and `sha256=…`. What is at the destination is asked of the
//! destination (`restic snapshots --json --tag …`) on every run, never taken from memory, so a
//! snapshot removed there is copied again. `forget` retention at the destination is optional; a
//! refused forget (an append-only repository) is a warning.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kdl::KdlNode;
use serde_json::json;

use super::fail;
use super::restic::{
    Copied, at_destination, copy_credentials as credentials, exit_reason, host, open_repository,
    parse_copied_name, restic, summary_line, tag_filter, wal_tag, without_password,
};
use super::{Context, Extra, Outcome, Settings, Status, StepError};
use crate::artifact::layout::{self, Area, DumpFile};
use crate::artifact::sha;
use crate::exec;
use crate::graph::EdgeKind;
use crate::plan::compile::{Compiling, describe_source};
use crate::plan::decode::Decoder;
use crate::plan::diagnostic::Diagnostic;
use crate::plan::model::{OffsiteCopy, Spanned};
use crate::plan::settings::Origin;
use crate::plan::validate::Scope;
use crate::store::meta::CopyMeta;
use crate::units::keep::Keep;
use crate::units::size;

/// A copy is stale when the newest dump at the destination is older than this.
pub const COPY_STALE: Duration = Duration::from_secs(26 * 3600);

pub const SETTINGS: Settings = Settings {
    keys: &[
        "dump",
        "base-backup",
        "repository",
        "password",
        "password-file",
        "init",
        "stale-after",
        "forget",
        "limit-upload",
    ],
    repeatable: &[],
};

pub fn decode(c: &mut OffsiteCopy, key: &str, node: &KdlNode, dec: &mut Decoder) {
    match key {
        "dump" => c.dump = dec.string(node),
        "base-backup" => c.base_backup = dec.string(node),
        "repository" => c.repository = dec.sourced(node),
        "password" => c.password = dec.sourced(node),
        "password-file" => c.password = dec.password_file(node),
        "init" => c.init = dec.boolean(node),
        "stale-after" => c.stale_after = dec.duration(node),
        "forget" => c.forget = dec.keep(node),
        "limit-upload" => {
            c.limit_upload =
                dec.parsed(
                    node,
                    "a rate such as \"10MiB\" (per second)",
                    |v| match size::parse(v).map_err(|e| e.to_string())? {
                        0..1024 => Err(format!("`{v}` is below restic's smallest limit, 1KiB")),
                        n => Ok(n),
                    },
                )
        }
        _ => {}
    }
}

/// A `copy`'s compiled form: runs after the dump it copies (a failed dump skips it), its
/// staleness threshold, the destination (described, never resolved) and its options.
pub fn compile(c: &OffsiteCopy, cc: &mut Compiling) {
    if let Some(dump) = &c.dump
        && cc.needs(dump, EdgeKind::Requires)
    {
        cc.plan_setting("dump", dump.value.clone(), dump.span);
    }
    if let Some(b) = &c.base_backup
        && cc.needs(b, EdgeKind::Requires)
    {
        cc.plan_setting("base-backup", b.value.clone(), b.span);
    }
    cc.own_threshold("stale-after", c.stale_after.as_ref(), COPY_STALE);
    if let Some(r) = &c.repository {
        cc.plan_setting("repository", describe_source(r), r.span);
    }
    match &c.forget {
        Some(k) => cc.plan_setting("forget", k.value.to_string(), k.span),
        None => cc.setting("forget", "off", Origin::Default),
    }
    if let Some(l) = &c.limit_upload {
        cc.plan_setting(
            "limit-upload",
            format!("{}/s", size::format(l.value)),
            l.span,
        );
    }
}

/// Checks a `copy` block on its own: the dump it copies, a destination and its password.
pub fn validate(
    c: &OffsiteCopy,
    name: &Spanned<String>,
    scope: &Scope,
    diags: &mut Vec<Diagnostic>,
) {
    match &c.base_backup {
        Some(b) => {
            scope.reference("base-backup", b, diags);
            if let Some(d) = &c.dump {
                diags.push(
                    Diagnostic::error(
                        d.span,
                        "a copy ships a dump or a base backup, not both",
                        "second source",
                    )
                    .with_help("make a second `copy` step for the other"),
                );
            }
        }
        None => super::restore_test::dump_reference("copy", &c.dump, name, scope, diags),
    }
    for (missing, what, help) in [
        (
            c.repository.is_none(),
            "repository",
            "add `repository \"sftp:backup@host:/srv/restic/app\"` (or env=VAR)",
        ),
        (
            c.password.is_none(),
            "password",
            "add `password env=OFFSITE_RESTIC_PASSWORD` (or file=…)",
        ),
    ] {
        if missing {
            diags.push(
                Diagnostic::error(
                    name.span,
                    format!("copy `{}` needs `{what}`", name.value),
                    format!("{what} missing"),
                )
                .with_help(help),
            );
        }
    }
}

/// What the metrics and the page call the destination: the repository without credentials
/// (`rest:https://user:***@host/`), or the variable that holds it.
pub fn destination(ctx_env: &crate::plan::settings::Env, c: &OffsiteCopy) -> String {
    use crate::plan::model::ValueSource;
    match c.repository.as_ref().map(|r| &r.source) {
        Some(ValueSource::Literal(url)) => without_password(url),
        Some(ValueSource::Env(var)) => ctx_env
            .get(var)
            .map_or_else(|| format!("env {var}"), without_password),
        Some(ValueSource::File(path)) => format!("file {path}"),
        Some(ValueSource::Credential(name)) => format!("credential {name}"),
        None => "-".into(),
    }
}

/// The files that travel with a dump: itself, its sidecar, its manifest (when it has one),
/// and its roles with their sidecar.
fn files_of(dump: &DumpFile) -> Vec<PathBuf> {
    let mut files = vec![dump.path.clone(), layout::sidecar_path(&dump.path)];
    let manifest = crate::artifact::manifest::path(&dump.path);
    if manifest.exists() {
        files.push(manifest);
    }
    if let Some(g) = crate::artifact::layout::globals_path(&dump.path).filter(|g| g.exists()) {
        files.push(layout::sidecar_path(&g));
        files.push(g);
    }
    files
}

fn backup_args(ctx: &Context, c: &OffsiteCopy, dump: &DumpFile, sha256: &str) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "backup".into(),
        "--json".into(),
        "--quiet".into(),
        format!("--host={}", host()),
        "--tag=ops-run".into(),
        format!("--tag=plan={}", ctx.plan.decl.name.value),
        format!("--tag=step={}", ctx.step.name()),
        format!("--tag=dump={}", dump.name),
        format!("--tag=sha256={sha256}"),
        // The snapshot is dated when the dump was taken (restic reads it in TZ, set to UTC):
        // `forget` keeps the newest dumps, whatever order they were copied in.
        format!("--time={}", dump.taken.format("%Y-%m-%d %H:%M:%S")),
    ];
    if let Some(l) = &c.limit_upload {
        args.push(format!("--limit-upload={}", (l.value / 1024).max(1)));
    }
    args.extend(files_of(dump).iter().map(|p| {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.clone())
            .display()
            .to_string()
    }));
    args
}

/// Ships one dump; its restic snapshot id.
fn copy_one(
    ctx: &Context,
    env: &[(String, String)],
    c: &OffsiteCopy,
    dump: &DumpFile,
) -> Result<String, String> {
    let sidecar = std::fs::read_to_string(layout::sidecar_path(&dump.path))
        .map_err(|e| format!("cannot read the sidecar of {}: {e}", dump.name))?;
    let sha256 = sha::parse_sidecar(&sidecar, &dump.name)
        .ok_or_else(|| format!("the sidecar of {} does not name it", dump.name))?;
    // The bytes that will travel are checked first: a dump that no longer matches its
    // sidecar is never shipped, and is marked damaged (its health turns red).
    let actual = sha::file_sha256(&dump.path)
        .map_err(|e| format!("cannot read {}: {e}", dump.path.display()))?;
    if actual != sha256 {
        layout::mark_damaged(
            &dump.path,
            &format!(
                "copy {}: sha256 {actual}, the sidecar says {sha256}",
                ctx.step.id
            ),
        );
        return Err(format!(
            "checksum mismatch: {} is damaged (sha256 {actual}, the sidecar says {sha256}); it was not copied",
            dump.name
        ));
    }
    let mut spec = restic(ctx, env, &backup_args(ctx, c, dump, &sha256));
    spec.env.push(("TZ".into(), "UTC".into()));
    let (r, out) = exec::run_capturing(&spec, ctx.redactor);
    if !r.success() {
        return Err(format!(
            "restic backup of {} failed: {}\n{}",
            dump.name,
            exit_reason("restic", &r.exit),
            r.tail.trim()
        ));
    }
    summary_line(&String::from_utf8_lossy(&out))
        .and_then(|s| s["snapshot_id"].as_str().map(str::to_string))
        .ok_or_else(|| format!("restic printed no summary for {}", dump.name))
}

/// Whether snapshot `s` at the destination holds local dump `d`: its name, and the sha256
/// of its sidecar (a snapshot made before copies were tagged with it counts by name).
fn holds(s: &Copied, d: &DumpFile) -> bool {
    if s.dump != d.name {
        return false;
    }
    let Some(tagged) = &s.sha256 else {
        return true;
    };
    std::fs::read_to_string(layout::sidecar_path(&d.path))
        .ok()
        .and_then(|t| sha::parse_sidecar(&t, &d.name))
        .is_some_and(|local| &local == tagged)
}

/// What the newest successful run of this step found at its destination.
fn last_recorded(ctx: &Context) -> Option<CopyMeta> {
    let store = crate::store::Store::open_read_only(ctx.state?).ok()??;
    let meta = store
        .newest_success_meta(
            &ctx.plan.decl.name.value,
            ctx.step.name(),
            crate::activity::ActivityType::OffsiteCopy,
        )
        .ok()??;
    Some(CopyMeta::read(&meta))
}

/// Which of a step's snapshots at the destination retention may count: those whose time is
/// their dump's own stamp (ops-run writes `--time` from the dump's name) and, when this
/// machine's log is at hand, whose dump this step recorded copying. The rest are reported,
/// never counted toward `keep` and never deleted: a back-dated snapshot written by whoever
/// can write to the repository must not make retention delete the real ones.
pub fn trusted(
    there: &[Copied],
    tz: chrono_tz::Tz,
    recorded: Option<&BTreeSet<String>>,
) -> (Vec<DumpFile>, Vec<String>) {
    let mut ok = Vec::new();
    let mut suspicious = Vec::new();
    for s in there {
        let Some((taken, seq)) = parse_copied_name(&s.dump, tz) else {
            suspicious.push(format!(
                "snapshot {} is tagged with {}, which is no dump's name",
                s.id, s.dump
            ));
            continue;
        };
        let claimed = s
            .time
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc));
        match claimed {
            Some(t) if (t - taken).num_seconds().abs() <= 60 => {}
            Some(t) => {
                suspicious.push(format!(
                    "snapshot {} claims {} but holds the dump of {}",
                    s.id,
                    t.format("%Y-%m-%d %H:%M UTC"),
                    taken.format("%Y-%m-%d %H:%M UTC")
                ));
                continue;
            }
            None => {
                suspicious.push(format!("snapshot {} has no time", s.id));
                continue;
            }
        }
        if let Some(r) = recorded
            && !r.contains(&s.dump)
        {
            suspicious.push(format!(
                "snapshot {} holds {}, which this step never recorded copying",
                s.id, s.dump
            ));
            continue;
        }
        ok.push(DumpFile {
            path: PathBuf::from(&s.id),
            name: s.dump.clone(),
            taken,
            seq,
        });
    }
    ok.sort_by_key(|d| std::cmp::Reverse((d.taken, d.seq)));
    (ok, suspicious)
}

/// What this step's log says it copied (every run's `copied`); `None` without a log.
fn recorded_copies(ctx: &Context) -> Option<BTreeSet<String>> {
    let store = crate::store::Store::open_read_only(ctx.state?).ok()??;
    store
        .copied_names(&ctx.plan.decl.name.value, ctx.step.name())
        .ok()
}

/// Retention at the destination, decided by ops-run: the trusted snapshots (see `trusted`)
/// the `keep` rule lets go are forgotten by id (`restic forget --prune ID…`). A refusal is a
/// warning: an append-only destination is a fine destination.
pub fn forget(
    ctx: &Context,
    env: &[(String, String)],
    keep: &Keep,
    there: &[Copied],
    recorded: Option<&BTreeSet<String>>,
) -> (Extra, Vec<String>) {
    let started = Instant::now();
    let tz = ctx.plan.timezone.value;
    let (ok, suspicious) = trusted(there, tz, recorded);
    let sel = crate::retention::select(&ok, &|_| true, keep, tz, &[]);
    let ids: Vec<String> = sel.delete.iter().map(|p| p.display().to_string()).collect();
    let names: Vec<String> = ok
        .iter()
        .filter(|d| sel.delete.contains(&d.path))
        .map(|d| d.name.clone())
        .collect();
    let mut log = suspicious
        .iter()
        .map(|s| format!("not trusted, kept: {s}\n"))
        .collect::<String>();
    // Stale locks go first, whether or not anything is forgotten: a killed restic's lock
    // must not refuse the next run that needs the repository exclusively.
    log.push_str(&super::restic::unlock_stale(ctx, env));
    let (status, summary, argv) = if ids.is_empty() {
        (
            Status::Success,
            format!("nothing to forget at the destination ({keep})"),
            String::new(),
        )
    } else {
        let mut args: Vec<String> = vec!["forget".into(), "--prune".into()];
        args.extend(ids.iter().cloned());
        let spec = restic(ctx, env, &args);
        let r = exec::run(&spec, ctx.redactor);
        log.push_str(&r.tail);
        if r.success() {
            (
                Status::Success,
                format!(
                    "restic forget --prune at the destination ({keep}): {}",
                    names.join(", ")
                ),
                spec.display(ctx.redactor),
            )
        } else {
            (
                Status::Incomplete,
                format!(
                    "the destination refused restic forget ({}); the copies stay",
                    exit_reason(&spec.program, &r.exit)
                ),
                spec.display(ctx.redactor),
            )
        }
    };
    let summary = if suspicious.is_empty() {
        summary
    } else {
        format!(
            "{summary}; {} snapshot(s) not trusted and kept: {}",
            suspicious.len(),
            suspicious.join("; ")
        )
    };
    (
        Extra {
            kind: crate::activity::ActivityType::Prune,
            status,
            meta: json!({ "rule": keep.to_string(), "argv": argv, "forgotten": names, "suspicious": suspicious }),
            log_excerpt: log,
            summary,
            duration: started.elapsed(),
        },
        suspicious,
    )
}

/// The step whose files a copy ships, and what they are called.
fn source(c: &OffsiteCopy) -> (&str, &'static str) {
    match (&c.base_backup, &c.dump) {
        (Some(b), _) => (b.value.as_str(), "base backup"),
        (None, d) => (d.as_ref().map_or("", |d| d.value.as_str()), "dump"),
    }
}

/// The good files of the source step, newest first: dumps, or base backups.
fn local_files(ctx: &Context, c: &OffsiteCopy) -> Vec<DumpFile> {
    let tz = ctx.plan.timezone.value;
    let now = ctx.clock.now();
    let (step, _) = source(c);
    match &c.base_backup {
        Some(_) => crate::artifact::base::list(&ctx.plan.dir(step, Area::Base), tz)
            .into_iter()
            .filter(|d| d.taken <= now && layout::has_sidecar(d))
            .collect(),
        None => layout::good_dumps(&ctx.plan.dir(step, Area::Dumps), tz, now).collect(),
    }
}

/// Something to copy: the source step has a good file.
pub fn ready(ctx: &Context, c: &OffsiteCopy) -> Result<(), StepError> {
    let (step, what) = source(c);
    match local_files(ctx, c).first() {
        Some(_) => Ok(()),
        None => Err(StepError::Failed(format!(
            "no good {what} of `{step}` to copy yet"
        ))),
    }
}

/// A snapshot of the WAL archive of the base-backup step the copy ships (restic stores only
/// the segments it has not seen): its id, or `None` when the step has no wal step.
fn copy_wal(
    ctx: &Context,
    env: &[(String, String)],
    c: &OffsiteCopy,
) -> Result<Option<String>, String> {
    let (step, _) = source(c);
    let plan = &ctx.plan.decl;
    let Some(wal) = plan.wals_of(step).next() else {
        return Ok(None);
    };
    let dir = ctx.plan.dir(&wal.name.value, Area::Wal);
    if !dir.is_dir() {
        return Ok(None);
    }
    let mut args: Vec<String> = vec![
        "backup".into(),
        "--json".into(),
        "--quiet".into(),
        format!("--host={}", host()),
    ];
    args.extend(
        wal_tag(ctx, ctx.step.name())
            .split(',')
            .map(|t| format!("--tag={t}")),
    );
    if let Some(l) = &c.limit_upload {
        args.push(format!("--limit-upload={}", (l.value / 1024).max(1)));
    }
    args.push(
        std::path::absolute(&dir)
            .unwrap_or(dir.clone())
            .display()
            .to_string(),
    );
    let (r, out) = exec::run_capturing(&restic(ctx, env, &args), ctx.redactor);
    if !r.success() {
        return Err(format!(
            "restic backup of the WAL archive {} failed: {}\n{}",
            dir.display(),
            exit_reason("restic", &r.exit),
            r.tail.trim()
        ));
    }
    Ok(summary_line(&String::from_utf8_lossy(&out))
        .and_then(|s| s["snapshot_id"].as_str().map(str::to_string)))
}

pub fn preview(ctx: &Context, c: &OffsiteCopy) -> Result<String, StepError> {
    let env = credentials(ctx, c)?;
    let (dump_step, what) = source(c);
    let local = local_files(ctx, c);
    let list = restic(
        ctx,
        &env,
        &[
            "snapshots".into(),
            "--json".into(),
            format!("--tag={}", tag_filter(ctx, ctx.step.name())),
        ],
    );
    Ok(format!(
        "{}\n       then, for each of the {} good {what}s of `{dump_step}` not there yet: restic backup --tag=ops-run --tag=dump=NAME … FILE SIDECAR MANIFEST{}   (RESTIC_REPOSITORY and RESTIC_PASSWORD in its environment)",
        list.display(ctx.redactor),
        local.len(),
        if c.base_backup.is_some() {
            "; then restic backup of the WAL archive"
        } else {
            ""
        }
    ))
}

pub fn execute(ctx: &Context, c: &OffsiteCopy) -> Outcome {
    let started = Instant::now();
    let env = match credentials(ctx, c) {
        Ok(e) => e,
        Err(e) => return Outcome::failed(ctx.redactor.redact(&e.to_string())),
    };
    if let Err(outcome) = open_repository(ctx, &env, c.init.as_ref().is_some_and(|i| i.value)) {
        return *outcome;
    }
    let tz = ctx.plan.timezone.value;
    let local: Vec<DumpFile> = local_files(ctx, c);
    // Every restic process spends most of a second deriving the repository key. A newest
    // dump this step never recorded at the destination is shipped while the destination is
    // asked what it holds, so the two key derivations overlap; the listing still decides
    // every other dump, and says if the newest one was in fact there already.
    let here = destination(ctx.env, c);
    let ahead = local.first().filter(|d| {
        last_recorded(ctx).is_none_or(|m| {
            m.newest.as_deref() != Some(d.name.as_str()) || m.destination.as_ref() != Some(&here)
        })
    });
    let env_ref = &env;
    let (there, early) = std::thread::scope(|scope| {
        let early = ahead.map(|d| scope.spawn(move || copy_one(ctx, env_ref, c, d)));
        let there = at_destination(ctx, env_ref, ctx.step.name(), true);
        let early = early.map(|h| {
            h.join()
                .unwrap_or_else(|_| Err("the copy thread failed".to_string()))
        });
        (there, early)
    });
    // A dump is at the destination when a snapshot holds its name *and* its sha256: a name
    // alone could be an older file's (a dump deleted, another made under its name).
    let mut present: BTreeSet<String> = match &there {
        Ok(t) => local
            .iter()
            .filter(|d| t.iter().any(|s| holds(s, d)))
            .map(|d| d.name.clone())
            .collect(),
        Err(_) => BTreeSet::new(),
    };
    // Dumps at the destination that are no longer here (pruned) still count for `newest`.
    if let Ok(t) = &there {
        present.extend(
            t.iter()
                .filter(|s| !local.iter().any(|d| d.name == s.dump))
                .map(|s| s.dump.clone()),
        );
    }
    let mut copied = Vec::new();
    let mut lines = Vec::new();
    let mut failure = None;
    if let (Some(d), Some(result)) = (ahead, early) {
        match result {
            Ok(id) => {
                let again = if present.contains(&d.name) {
                    " (it was there already: a second snapshot of it)"
                } else {
                    ""
                };
                lines.push(format!("copied {} as snapshot {id}{again}", d.name));
                copied.push(d.name.clone());
                present.insert(d.name.clone());
            }
            Err(why) => failure = Some(why),
        }
    }
    if let Err(why) = there {
        return fail(ctx, why, &lines.join("\n"));
    }
    // Newest first: on a slow link the dump that matters most arrives first.
    let missing: Vec<&DumpFile> = local
        .iter()
        .filter(|d| failure.is_none() && !present.contains(&d.name))
        .collect();
    for d in missing {
        match copy_one(ctx, &env, c, d) {
            Ok(id) => {
                lines.push(format!("copied {} as snapshot {id}", d.name));
                copied.push(d.name.clone());
                present.insert(d.name.clone());
            }
            Err(why) => {
                failure = Some(why);
                break;
            }
        }
    }
    // The WAL archive follows its bases, on every run.
    if failure.is_none() && c.base_backup.is_some() {
        match copy_wal(ctx, &env, c) {
            Ok(Some(id)) => lines.push(format!("copied the WAL archive as snapshot {id}")),
            Ok(None) => {}
            Err(why) => failure = Some(why),
        }
    }
    let newest = present
        .iter()
        .filter_map(|n| parse_copied_name(n, tz).map(|(at, seq)| (at, seq, n)))
        .max()
        .map(|(at, _, n)| (n.clone(), at));
    let meta = CopyMeta {
        destination: Some(destination(ctx.env, c)),
        copied: copied.clone(),
        at_destination: Some(present.len() as u64),
        newest: newest.as_ref().map(|(n, _)| n.clone()),
        newest_taken: newest.as_ref().map(|(_, at)| crate::clock::stamp(*at)),
        newest_local: local.first().map(|d| d.name.clone()),
        duration_ms: Some(started.elapsed().as_millis() as u64),
        suspicious: Vec::new(),
    };
    let meta = serde_json::to_value(&meta).unwrap_or_default();
    let log = ctx.redactor.redact(&lines.join("\n"));
    if let Some(why) = failure {
        let reason = if copied.is_empty() {
            why
        } else {
            format!("{why}\n(copied before the failure: {})", copied.join(", "))
        };
        return Outcome {
            meta,
            ..fail(ctx, reason, &log)
        };
    }
    let mut extra = Vec::new();
    let mut meta = meta;
    if let Some(keep) = &c.forget {
        // What is there now, copies of this run included.
        match at_destination(ctx, &env, ctx.step.name(), true) {
            Ok(now_there) => {
                // This run's copies are not in the log yet.
                let recorded = recorded_copies(ctx).map(|mut r| {
                    r.extend(copied.iter().cloned());
                    r
                });
                let (e, suspicious) = forget(ctx, &env, &keep.value, &now_there, recorded.as_ref());
                if !suspicious.is_empty() {
                    meta["suspicious"] = json!(suspicious);
                }
                extra.push(e);
            }
            Err(why) => extra.push(Extra {
                kind: crate::activity::ActivityType::Prune,
                status: Status::Incomplete,
                meta: json!({ "rule": keep.value.to_string() }),
                log_excerpt: why.clone(),
                summary: format!("nothing forgotten: {why}"),
                duration: Duration::ZERO,
            }),
        }
    }
    let (_, what) = source(c);
    let dumps = |n: usize| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let summary = match copied.len() {
        0 => format!(
            "nothing to copy: {} at the destination",
            dumps(present.len())
        ),
        n => format!("copied {} ({} at the destination)", dumps(n), present.len()),
    };
    Outcome {
        status: Status::Success,
        meta,
        log_excerpt: log,
        summary,
        extra,
        tolerated: false,
    }
}
