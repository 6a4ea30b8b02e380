//! The `snapshot` step: `restic backup` of the plan's paths, the full snapshot id resolved
//! (restic 0.14 prints only the short one), and a marker file in `snapshots/`; restic's exit 3
//! (some files unreadable) is `incomplete`, failing or only warning as the plan says. `forget`
//! rules run `restic forget --prune` afterwards as a `prune` activity.

use super::Settings;
use super::fail;
use super::restic::{
    exit_reason, local_repository, open_repository, restic, snapshot_credentials as credentials,
    summary_line, unlock_stale,
};
use crate::plan::compile::{Compiling, SNAPSHOT_STALE, describe_source};
use crate::plan::decode::Decoder;
use crate::plan::diagnostic::Diagnostic;
use crate::plan::model::Spanned;
use crate::plan::settings::Origin;
use crate::plan::validate::Scope;
use kdl::KdlNode;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Value, json};

use super::{Context, Extra, Outcome, Status, StepError};
use crate::artifact::layout;
use crate::engines::tool;
use crate::exec::{self, Exit};
use crate::plan::model::{IncompletePolicy, Snapshot};
use crate::units::keep::Keep;

/// The settings of a `snapshot` block (beside the common ones).
pub const SETTINGS: Settings = Settings {
    keys: &[
        "paths",
        "exclude",
        "tag",
        "repository",
        "password",
        "password-file",
        "stale-after",
        "incomplete",
        "init",
        "forget",
    ],
    repeatable: &["paths", "exclude", "tag", "repository"],
};

pub fn decode(s: &mut Snapshot, key: &str, node: &KdlNode, dec: &mut Decoder) {
    match key {
        "paths" => dec.string_list(node, &mut s.paths),
        "exclude" => dec.string_list(node, &mut s.exclude),
        "tag" => dec.string_list(node, &mut s.tags),
        "repository" if s.repository.is_some() => s.more_repositories.extend(dec.sourced(node)),
        "repository" => s.repository = dec.sourced(node),
        "password" => s.password = dec.sourced(node),
        "password-file" => s.password = dec.password_file(node),
        "stale-after" => s.stale_after = dec.duration(node),
        "incomplete" => {
            s.incomplete = dec.parsed(node, "`fail` or `warn`", |v| match v {
                "fail" => Ok(IncompletePolicy::Fail),
                "warn" => Ok(IncompletePolicy::Warn),
                other => Err(format!("`{other}` is neither `fail` nor `warn`")),
            })
        }
        "init" => s.init = dec.boolean(node),
        "forget" => s.forget = dec.keep(node),
        _ => {}
    }
}

/// A `snapshot`'s compiled form: its threshold, paths, repository (`RESTIC_REPO` first) and
/// incomplete policy.
pub fn compile(s: &Snapshot, c: &mut Compiling) {
    c.threshold(
        "stale-after",
        "OPS_SNAPSHOT_STALE_MIN",
        60,
        s.stale_after.as_ref(),
        SNAPSHOT_STALE,
    );
    if let Some(p) = s.paths.first() {
        let paths: Vec<&str> = s.paths.iter().map(|p| p.value.as_str()).collect();
        c.plan_setting("paths", paths.join(" "), p.span);
    }
    if c.env.get("RESTIC_REPO").is_some() {
        c.setting(
            "repository",
            "env RESTIC_REPO",
            Origin::Env("RESTIC_REPO".into()),
        );
    } else if let Some(r) = &s.repository {
        c.plan_setting("repository", describe_source(r), r.span);
    }
    for r in &s.more_repositories {
        c.plan_setting("repository", describe_source(r), r.span);
    }
    match &s.incomplete {
        Some(p) if p.value == IncompletePolicy::Warn => {
            c.plan_setting("incomplete", "warn", p.span)
        }
        Some(p) => c.plan_setting("incomplete", "fail", p.span),
        None => c.setting("incomplete", "fail", Origin::Default),
    }
}

/// Checks a `snapshot` block on its own (references to its plan's databases and steps).
pub fn validate(s: &Snapshot, name: &Spanned<String>, scope: &Scope, diags: &mut Vec<Diagnostic>) {
    for p in &s.paths {
        if !std::path::Path::new(&p.value).exists() {
            diags.push(
                Diagnostic::warning(p.span, format!("{} does not exist", p.value), "not found")
                    .with_help("restic fails on a path it cannot read; create it or remove it"),
            );
        }
    }
    if s.paths.is_empty() {
        diags.push(
            Diagnostic::error(
                name.span,
                format!("snapshot `{}` needs `paths`", name.value),
                "paths missing",
            )
            .with_help("add `paths \"/srv/app/storage\"`"),
        );
    }
    if s.repository.is_none() && scope.env.get("RESTIC_REPO").is_none() {
        diags.push(
            Diagnostic::error(
                name.span,
                format!("snapshot `{}` needs `repository`", name.value),
                "repository missing",
            )
            .with_help("add `repository env=RESTIC_REPO` or a path, or set RESTIC_REPO"),
        );
    }
}

pub use crate::artifact::marker::{Marker, newest_complete};

/// `restic backup --json --quiet [--exclude P]… [--tag T]… PATHS…`
pub fn backup_args(s: &Snapshot) -> Vec<String> {
    let mut args: Vec<String> = vec!["backup".into(), "--json".into(), "--quiet".into()];
    for e in &s.exclude {
        args.push(format!("--exclude={}", e.value));
    }
    for t in &s.tags {
        args.push(format!("--tag={}", t.value));
    }
    args.extend(s.paths.iter().map(|p| absolute(&p.value)));
    args
}

/// restic records absolute paths; `forget --path` must name them the same way.
fn absolute(path: &str) -> String {
    std::path::absolute(path).map_or_else(|_| path.to_string(), |p| p.display().to_string())
}

/// `restic forget --prune --keep-daily N … --path P…`: only this step's snapshots.
pub fn forget_args(s: &Snapshot, keep: &Keep) -> Vec<String> {
    let mut args: Vec<String> = vec!["forget".into(), "--prune".into(), "--json".into()];
    args.extend(keep.restic_args());
    for p in &s.paths {
        args.push(format!("--path={}", absolute(&p.value)));
    }
    args
}

pub fn preview(ctx: &Context, s: &Snapshot) -> Result<String, StepError> {
    let env = credentials(ctx, s)?;
    let mut out = restic(ctx, &env, &backup_args(s)).display(ctx.redactor);
    out.push_str("   (RESTIC_REPOSITORY and RESTIC_PASSWORD in its environment)");
    if let Some(keep) = &s.forget {
        out.push_str(&format!(
            "\n       then: {}",
            restic(ctx, &env, &forget_args(s, &keep.value)).display(ctx.redactor)
        ));
    }
    Ok(out)
}

pub fn execute(ctx: &Context, s: &Snapshot) -> Outcome {
    let env = match credentials(ctx, s) {
        Ok(e) => e,
        Err(e) => return Outcome::failed(ctx.redactor.redact(&e.to_string())),
    };
    let mut outcome = snapshot_into(ctx, s, &env, 1);
    if outcome.status == Status::Failed {
        return outcome;
    }
    // Further repositories: the same paths, the same password; one marker each.
    let mut failures = Vec::new();
    let mut more = Vec::new();
    for (i, repo) in s.more_repositories.iter().enumerate() {
        let n = i + 2;
        let mut env = env.clone();
        match ctx.env.resolve(&repo.source) {
            Ok(r) => {
                for (k, v) in env.iter_mut() {
                    if k == "RESTIC_REPOSITORY" {
                        *v = r.clone();
                    }
                }
            }
            Err(e) => {
                failures.push(format!("repository {n}: {e}"));
                continue;
            }
        }
        let o = snapshot_into(ctx, s, &env, n);
        more.push(json!({ "repository": n, "status": o.status.as_str(), "id": o.meta["id"], "marker": o.meta["marker"] }));
        outcome.extra.extend(o.extra);
        if o.status == Status::Failed {
            failures.push(format!("repository {n}: {}", o.summary));
            outcome.log_excerpt.push_str(&o.log_excerpt);
        }
    }
    if !s.more_repositories.is_empty() {
        outcome.meta["more_repositories"] = json!(more);
    }
    if !failures.is_empty() {
        outcome.status = Status::Failed;
        outcome.tolerated = false;
        outcome.summary = format!(
            "{}; but {}",
            outcome.summary,
            ctx.redactor.redact(&failures.join("; "))
        );
    }
    outcome
}

/// One snapshot into the repository of `env`, the step's `n`th (1: its own).
fn snapshot_into(ctx: &Context, s: &Snapshot, env: &[(String, String)], n: usize) -> Outcome {
    let env = env.to_vec();
    let started = Instant::now();
    let program = tool(&ctx.plan.tools, "restic", "restic");
    let local = local_repository(&env);
    if let Err(outcome) = open_repository(ctx, &env, s.init.as_ref().is_some_and(|i| i.value)) {
        return *outcome;
    }
    // The real time restic is started: files modified after it may differ from the snapshot
    // (a drill's spot check skips them). Not OPS_NOW: file times are real.
    let began = chrono::Utc::now();
    let (result, stdout) = exec::run_capturing(&restic(ctx, &env, &backup_args(s)), ctx.redactor);
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let incomplete = result.exit == Exit::Code(3);
    if !result.success() && !incomplete {
        return fail(ctx, exit_reason(&program, &result.exit), &result.tail);
    }
    let Some(summary) = summary_line(&stdout) else {
        return fail(
            ctx,
            "restic printed no summary: the snapshot cannot be confirmed".into(),
            &result.tail,
        );
    };
    let reported = summary["snapshot_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let short: String = reported.chars().take(8).collect();
    // restic 0.14 reports the short id only. A local repository names its snapshot files by
    // the full id (no second restic run, no second key derivation); otherwise
    // `restic snapshots --json ID` gives it.
    let (id, paths) = match full_id_locally(local.as_deref(), &reported) {
        Some(id) => {
            let paths = s.paths.iter().map(|p| absolute(&p.value)).collect();
            (id, paths)
        }
        None => match lookup(ctx, &env, &short) {
            Ok(found) => found,
            Err(outcome) => return *outcome,
        },
    };
    finish(
        ctx, s, &env, started, &result, &summary, &short, id, paths, began, n,
    )
}

/// The full id and paths of snapshot `short` from `restic snapshots --json`.
fn lookup(
    ctx: &Context,
    env: &[(String, String)],
    short: &str,
) -> Result<(String, Vec<String>), Box<Outcome>> {
    let (r, out) = exec::run_capturing(
        &restic(
            ctx,
            env,
            &["snapshots".into(), "--json".into(), short.to_string()],
        ),
        ctx.redactor,
    );
    let snapshots: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
    let Some(full) = snapshots.as_array().and_then(|a| {
        a.iter().find(|v| {
            v["short_id"] == short || v["id"].as_str().is_some_and(|id| id.starts_with(short))
        })
    }) else {
        return Err(Box::new(fail(
            ctx,
            format!("snapshot {short} is not in `restic snapshots`"),
            &r.tail,
        )));
    };
    let id = full["id"].as_str().unwrap_or_default().to_string();
    let paths = full["paths"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok((id, paths))
}

/// The full id: as reported (restic ≥ 0.15), or the one snapshot file of a local repository
/// whose name starts with the short id.
fn full_id_locally(local: Option<&Path>, reported: &str) -> Option<String> {
    if reported.len() == 64 {
        return Some(reported.to_string());
    }
    let dir = local?.join("snapshots");
    let mut found = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 64 && n.starts_with(reported));
    let id = found.next()?;
    found.next().is_none().then_some(id)
}

/// Marker, meta, `forget`, and the outcome of a snapshot restic made.
#[allow(clippy::too_many_arguments)]
fn finish(
    ctx: &Context,
    s: &Snapshot,
    env: &[(String, String)],
    started: Instant,
    result: &exec::ProcessResult,
    summary: &Value,
    short: &str,
    id: String,
    paths: Vec<String>,
    began: chrono::DateTime<chrono::Utc>,
    repository: usize,
) -> Outcome {
    let incomplete = result.exit == Exit::Code(3);
    let duration_ms = started.elapsed().as_millis() as u64;
    let policy = s
        .incomplete
        .as_ref()
        .map_or(IncompletePolicy::Fail, |p| p.value);
    let fields = json!({
        "snapshot_id": short,
        "id": id,
        "paths": paths,
        "files_new": summary["files_new"],
        "files_changed": summary["files_changed"],
        "data_added": summary["data_added"],
        "total_bytes": summary["total_bytes_processed"],
        "total_files": summary["total_files_processed"],
        "duration_ms": duration_ms,
        "began": began.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "restic_exit": if incomplete { 3 } else { 0 },
    });
    let mut fields = fields;
    if repository > 1 {
        fields["repository"] = json!(repository);
    }
    // An incomplete snapshot under `incomplete fail` gets no marker: it is not a good one.
    let marker = if incomplete && policy == IncompletePolicy::Fail {
        None
    } else {
        match write_marker(ctx, &fields, incomplete) {
            Ok(p) => Some(p),
            Err(e) => {
                return fail(
                    ctx,
                    format!("cannot write the snapshot marker: {e}"),
                    &result.tail,
                );
            }
        }
    };
    let mut meta = fields;
    meta["marker"] = json!(marker.as_ref().map(|p| p.display().to_string()));
    let mut extra = Vec::new();
    if !incomplete && let Some(keep) = &s.forget {
        extra.push(forget(ctx, env, s, &keep.value));
    }
    let (status, summary_text) = if incomplete {
        let what = if policy == IncompletePolicy::Warn {
            "warn"
        } else {
            "fail"
        };
        (
            Status::Incomplete,
            format!(
                "snapshot {short} is incomplete: restic could not read some files (policy: {what})"
            ),
        )
    } else {
        (Status::Success, format!("snapshot {short}"))
    };
    Outcome {
        status,
        meta,
        log_excerpt: ctx.redactor.redact(&result.tail),
        summary: summary_text,
        extra,
        tolerated: incomplete && policy == IncompletePolicy::Warn,
    }
}

fn write_marker(ctx: &Context, f: &Value, incomplete: bool) -> std::io::Result<PathBuf> {
    let dir = ctx.plan.dir(ctx.step.name(), layout::Area::Snapshots);
    std::fs::create_dir_all(&dir)?;
    let stem = layout::stamp_name("snapshot", ctx.clock.now(), ctx.plan.timezone.value);
    let num = |k: &str| {
        f[k].as_u64()
            .map_or_else(|| "0".to_string(), |n| n.to_string())
    };
    let paths: Vec<&str> = f["paths"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut text = format!(
        "{}\nid: {}\npaths: {}\nfiles_new: {}\nfiles_changed: {}\ndata_added: {}\ntotal_bytes: {}\nduration_ms: {}\n",
        f["snapshot_id"].as_str().unwrap_or_default(),
        f["id"].as_str().unwrap_or_default(),
        paths.join(" "),
        num("files_new"),
        num("files_changed"),
        num("data_added"),
        num("total_bytes"),
        num("duration_ms"),
    );
    if let Some(b) = f["began"].as_str() {
        text.push_str(&format!("began: {b}\n"));
    }
    if let Some(n) = f["repository"].as_u64() {
        text.push_str(&format!("repository: {n}\n"));
    }
    if incomplete {
        text.push_str("incomplete: true\n");
    }
    layout::write_new(&dir, &stem, "txt", text.as_bytes())
}

fn forget(ctx: &Context, env: &[(String, String)], s: &Snapshot, keep: &Keep) -> Extra {
    let started = Instant::now();
    let unlocked = unlock_stale(ctx, env);
    let spec = restic(ctx, env, &forget_args(s, keep));
    let r = exec::run(&spec, ctx.redactor);
    let ok = r.success();
    Extra {
        kind: crate::activity::ActivityType::Prune,
        status: if ok { Status::Success } else { Status::Failed },
        meta: json!({ "rule": keep.to_string(), "argv": spec.display(ctx.redactor) }),
        log_excerpt: unlocked + &r.tail,
        summary: if ok {
            format!("restic forget --prune ({keep})")
        } else {
            exit_reason(&spec.program, &r.exit)
        },
        duration: started.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(repo: &str) -> Vec<(String, String)> {
        vec![("RESTIC_REPOSITORY".into(), repo.into())]
    }

    #[test]
    fn local_repositories_are_told_from_remote_ones() {
        assert_eq!(
            local_repository(&env("/srv/restic")),
            Some(PathBuf::from("/srv/restic"))
        );
        assert_eq!(
            local_repository(&env("local:/srv/restic")),
            Some(PathBuf::from("/srv/restic"))
        );
        assert_eq!(local_repository(&env("repo")), Some(PathBuf::from("repo")));
        assert_eq!(local_repository(&env("sftp:user@host:/srv/restic")), None);
        assert_eq!(local_repository(&env("rest:https://host/")), None);
        assert_eq!(local_repository(&env("s3:s3.amazonaws.com/bucket")), None);
    }

    #[test]
    fn the_full_id_comes_from_the_snapshot_file_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("snapshots")).unwrap();
        let id = format!("abcd1234{}", "0".repeat(56));
        std::fs::write(dir.path().join("snapshots").join(&id), "").unwrap();
        assert_eq!(
            full_id_locally(Some(dir.path()), "abcd1234"),
            Some(id.clone())
        );
        assert_eq!(full_id_locally(Some(dir.path()), "ffff0000"), None);
        assert_eq!(full_id_locally(None, "abcd1234"), None);
        // restic ≥ 0.15 reports the full id itself.
        assert_eq!(full_id_locally(None, &id), Some(id.clone()));
        // Two files with the same prefix: ambiguous, ask restic instead.
        std::fs::write(
            dir.path()
                .join("snapshots")
                .join(format!("abcd1234{}", "1".repeat(56))),
            "",
        )
        .unwrap();
        assert_eq!(full_id_locally(Some(dir.path()), "abcd1234"), None);
    }
}
