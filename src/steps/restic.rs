//! The restic adapter: how ops-run speaks to restic for every kind that uses it (snapshot,
//! copy, check, drill, `restore files`): argv and environment (the repository and password
//! only ever in restic's environment), the credentials of a snapshot or copy step, opening or
//! creating a repository, stale locks, its JSON (the summary, the snapshot list) and its
//! errors, and reading a dump back from a copy's destination.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Context, Outcome, StepError, fail};
use crate::artifact::layout::{self, Area, DumpFile};
use crate::artifact::sha;
use crate::engines::tool;
use crate::exec::{self, Exit, ProcessSpec};
use crate::plan::model::{OffsiteCopy, Snapshot, Sourced, StepKind};

/// Repository and password: the seed's variables override the plan (`RESTIC_REPO`,
/// `RESTIC_PASSWORD`); both reach restic through its environment, never argv.
pub(crate) fn snapshot_credentials(
    ctx: &Context,
    s: &Snapshot,
) -> Result<Vec<(String, String)>, StepError> {
    let pick = |var: &str, own: &Option<Sourced>, what: &str| -> Result<String, String> {
        if let Some(v) = ctx.env.get(var) {
            return Ok(v.to_string());
        }
        match own {
            Some(src) => ctx
                .env
                .resolve(&src.source)
                .map_err(|e| format!("{what}: {e}")),
            None => Err(format!("no {what}: set it in the plan or {var}")),
        }
    };
    Ok(vec![
        (
            "RESTIC_REPOSITORY".into(),
            pick("RESTIC_REPO", &s.repository, "repository")?,
        ),
        (
            "RESTIC_PASSWORD".into(),
            pick("RESTIC_PASSWORD", &s.password, "password")?,
        ),
    ])
}

pub(crate) fn restic(ctx: &Context, env: &[(String, String)], args: &[String]) -> ProcessSpec {
    let mut spec = ProcessSpec::new(
        tool(&ctx.plan.tools, "restic", "restic"),
        args.iter().cloned(),
    );
    spec.env = env.to_vec();
    spec.env.push(("RESTIC_PROGRESS_FPS".into(), "0".into()));
    spec.timeout = Some(ctx.step.timeout.value);
    spec
}

/// The last JSON line of restic's output with `"message_type": "summary"`.
pub(crate) fn summary_line(out: &str) -> Option<Value> {
    out.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .find(|v| v["message_type"] == "summary")
}

pub(crate) fn exit_reason(program: &str, exit: &Exit) -> String {
    exit.reason(program)
        .unwrap_or_else(|| format!("{program} succeeded"))
}

/// Creates the repository when `init` says so and it does not exist yet; any other error
/// opening it (a wrong password) is reported as it is.
pub(crate) fn open_repository(
    ctx: &Context,
    env: &[(String, String)],
    init: bool,
) -> Result<(), Box<Outcome>> {
    let program = tool(&ctx.plan.tools, "restic", "restic");
    // A local repository with a config file exists: no need for a restic run to ask.
    let exists_locally = local_repository(env).is_some_and(|dir| dir.join("config").exists());
    if !init || exists_locally {
        return Ok(());
    }
    let probe = exec::run(
        &restic(ctx, env, &["cat".into(), "config".into()]),
        ctx.redactor,
    );
    // Only a missing repository is created (restic ≥ 0.17 says so with exit 10; 0.14 in
    // words).
    let missing = probe.exit == Exit::Code(10)
        || probe
            .tail
            .contains("Is there a repository at the following location?");
    if !probe.success() && !missing {
        return Err(Box::new(fail(
            ctx,
            format!(
                "cannot open the repository: {}",
                exit_reason(&program, &probe.exit)
            ),
            &probe.tail,
        )));
    }
    if missing {
        let init = exec::run(&restic(ctx, env, &["init".into()]), ctx.redactor);
        if !init.success() {
            return Err(Box::new(fail(
                ctx,
                format!(
                    "cannot create the repository: {}",
                    exit_reason(&program, &init.exit)
                ),
                &init.tail,
            )));
        }
    }
    Ok(())
}

/// The folder of a local repository (`/srv/restic`, `local:/srv/restic`), None for remote ones.
pub(crate) fn local_repository(env: &[(String, String)]) -> Option<PathBuf> {
    let repo = env
        .iter()
        .find(|(k, _)| k == "RESTIC_REPOSITORY")?
        .1
        .as_str();
    let path = repo.strip_prefix("local:").unwrap_or(repo);
    let scheme = path.split_once(':').is_some_and(|(s, _)| !s.contains('/'));
    (!scheme).then(|| PathBuf::from(path))
}

/// `restic unlock` without `--remove-all`: removes only stale locks (older than 30 minutes,
/// or made on this host by a process that is gone, such as a restic killed with its
/// ops-run), which would otherwise refuse every `forget`. Its words, for the log.
pub(crate) fn unlock_stale(ctx: &Context, env: &[(String, String)]) -> String {
    let r = exec::run(&restic(ctx, env, &["unlock".to_string()]), ctx.redactor);
    match r.tail.trim() {
        "" => String::new(),
        said => format!("restic unlock (stale locks only): {said}\n"),
    }
}

/// The destination repository and its password, resolved: into restic's environment only.
/// The seed's `RESTIC_REPO` and `RESTIC_PASSWORD` are the snapshot's, never a copy's.
pub(crate) fn copy_credentials(
    ctx: &Context,
    c: &OffsiteCopy,
) -> Result<Vec<(String, String)>, StepError> {
    let resolve = |s: &Option<crate::plan::model::Sourced>, what: &str| {
        let s = s
            .as_ref()
            .ok_or_else(|| StepError::Failed(format!("no {what}")))?;
        ctx.env
            .resolve(&s.source)
            .map_err(|e| StepError::Failed(format!("{what}: {e}")))
    };
    Ok(vec![
        (
            "RESTIC_REPOSITORY".into(),
            resolve(&c.repository, "repository")?,
        ),
        ("RESTIC_PASSWORD".into(), resolve(&c.password, "password")?),
    ])
}

pub(crate) fn without_password(url: &str) -> String {
    match crate::exec::redact::url_password(url) {
        Some(pw) => url.replacen(&format!(":{pw}@"), ":***@", 1),
        None => url.to_string(),
    }
}

/// This machine's name, as restic records it: a copy only ever counts its own host's
/// snapshots (several hosts may share a destination).
pub(crate) fn host() -> String {
    crate::identity::host_name().unwrap_or_else(|| "localhost".into())
}

/// The tag list that selects the snapshots of copy step `step` (`restic --tag a,b,c`: all
/// of them).
pub(crate) fn tag_filter(ctx: &Context, step: &str) -> String {
    format!("ops-run,plan={},step={step}", ctx.plan.decl.name.value)
}

/// When a copied file was taken, from its name: a dump's or a base backup's.
pub(crate) fn parse_copied_name(
    name: &str,
    tz: chrono_tz::Tz,
) -> Option<(chrono::DateTime<chrono::Utc>, u32)> {
    use crate::artifact::base::{PREFIX, SEALED_SUFFIX, SUFFIX};
    layout::parse_dump_name(name, tz)
        .or_else(|| layout::parse_stamped(name, PREFIX, SUFFIX, tz))
        .or_else(|| layout::parse_stamped(name, PREFIX, SEALED_SUFFIX, tz))
}

/// The tag of the snapshots that hold a copy's WAL archive (never counted as a dump).
pub(crate) fn wal_tag(ctx: &Context, step: &str) -> String {
    format!("ops-run,plan={},wal-of={step}", ctx.plan.decl.name.value)
}

/// One snapshot of this step at the destination.
#[derive(Clone, Debug)]
pub struct Copied {
    pub id: String,
    pub dump: String,
    pub sha256: Option<String>,
    /// The time the snapshot claims (whoever wrote it chose it).
    pub time: Option<String>,
    /// The files as restic stored them (absolute paths on the source host).
    pub paths: Vec<String>,
}

/// Parses `restic snapshots --json` into this step's copies.
pub(crate) fn parse_snapshots(json: &[u8]) -> Result<Vec<Copied>, String> {
    let v: Value = serde_json::from_slice(json)
        .map_err(|e| format!("restic snapshots printed no JSON list: {e}"))?;
    let list = v
        .as_array()
        .ok_or("restic snapshots printed no JSON list")?;
    Ok(list
        .iter()
        .filter_map(|s| {
            let tags: Vec<&str> = s["tags"]
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let tag = |k: &str| {
                tags.iter()
                    .find_map(|t| t.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
                    .map(str::to_string)
            };
            Some(Copied {
                id: s["id"].as_str()?.to_string(),
                dump: tag("dump")?,
                sha256: tag("sha256"),
                time: s["time"].as_str().map(str::to_string),
                paths: s["paths"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|p| p.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect())
}

/// This step's snapshots at the destination, asked of the destination. `host`: only this
/// machine's (a copy's own bookkeeping), or every host's (a restore on a new machine).
pub(crate) fn at_destination(
    ctx: &Context,
    env: &[(String, String)],
    step: &str,
    host_only: bool,
) -> Result<Vec<Copied>, String> {
    let mut args = vec![
        "snapshots".to_string(),
        "--json".into(),
        format!("--tag={}", tag_filter(ctx, step)),
    ];
    if host_only {
        args.push(format!("--host={}", host()));
    }
    let (r, out) = exec::run_capturing(&restic(ctx, env, &args), ctx.redactor);
    if !r.success() {
        return Err(format!(
            "cannot list the destination: {}\n{}",
            exit_reason("restic", &r.exit),
            r.tail.trim()
        ));
    }
    parse_snapshots(&out)
}

/// The scratch folder a dump fetched from a copy is read into (`.copy-fetch.<pid>`), in the
/// `verify/` folder of the step that reads it.
const FETCH_DIR: &str = ".copy-fetch.";

/// A dump fetched from a copy into a scratch folder, which goes when this is dropped.
pub(crate) struct Fetched {
    pub dump: DumpFile,
    /// The restic snapshot it came from.
    pub snapshot: String,
    _scratch: super::scratch::RemoveTree,
}

/// The newest dump of copy step `copy` (of dump step `dump_step`), fetched into the scratch
/// folder of `ctx`'s step and checked against the sha256 it was copied with.
pub(crate) fn fetch_into_scratch(
    ctx: &Context,
    copy: &str,
    dump_step: &str,
) -> Result<Fetched, StepError> {
    let scratch = ctx
        .plan
        .dir(ctx.step.name(), Area::VerifyLogs)
        .join(format!("{FETCH_DIR}{}", std::process::id()));
    let guard = super::scratch::RemoveTree(scratch.clone());
    let (dump, snapshot) = fetch_newest(ctx, copy, dump_step, &scratch)?;
    Ok(Fetched {
        dump,
        snapshot,
        _scratch: guard,
    })
}

/// Removes the fetch folders of `ctx`'s step that a killed ops-run left; one line each, the
/// step named as `what`.
pub(crate) fn sweep_fetched(ctx: &Context, what: &str) -> Vec<String> {
    let dir = ctx.plan.dir(ctx.step.name(), Area::VerifyLogs);
    super::scratch::sweep(&dir, FETCH_DIR)
        .iter()
        .map(|p| {
            format!(
                "removed the scratch folder {} of {what} (left by an ops-run that was killed)",
                p.display()
            )
        })
        .collect()
}

/// The newest dump copy step `step` holds at its destination (every host's: a restore may
/// run on a new machine), fetched into `dir` and checked: its path, name and time taken.
fn fetch_newest(
    ctx: &Context,
    step: &str,
    dump_step: &str,
    dir: &Path,
) -> Result<(DumpFile, String), StepError> {
    let Some(StepKind::Copy(c)) = ctx
        .compiled
        .steps
        .iter()
        .find(|s| s.plan == ctx.step.plan && s.name() == step)
        .map(|s| &s.decl.kind)
    else {
        return Err(format!("no copy step `{step}`").into());
    };
    let copied = c.dump.as_ref().map_or("", |d| d.value.as_str());
    if copied != dump_step {
        return Err(format!("copy `{step}` copies `{copied}`, not `{dump_step}`").into());
    }
    let env = copy_credentials(ctx, c)?;
    let tz = ctx.plan.timezone.value;
    let now = ctx.clock.now();
    let newest = at_destination(ctx, &env, step, false)?
        .into_iter()
        .filter_map(|s| {
            let (taken, seq) = layout::parse_dump_name(&s.dump, tz)?;
            (taken <= now).then_some((taken, seq, s))
        })
        .max_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)))
        .ok_or_else(|| format!("no dump of copy `{step}` at its destination"))?;
    let (taken, seq, copied) = newest;
    let path = fetch(ctx, &env, &copied, dir)?;
    Ok((
        DumpFile {
            path,
            name: copied.dump.clone(),
            taken,
            seq,
        },
        copied.id,
    ))
}

/// A dump's files read back from the destination into `dir` (`restic restore … --include`),
/// checked against the sha256 it was copied with. Returns the dump's path under `dir`.
pub(crate) fn fetch(
    ctx: &Context,
    env: &[(String, String)],
    copy: &Copied,
    dir: &Path,
) -> Result<PathBuf, String> {
    let dump_path = copy
        .paths
        .iter()
        .find(|p| p.ends_with(&format!("/{}", copy.dump)))
        .ok_or_else(|| format!("snapshot {} holds no {}", copy.id, copy.dump))?
        .clone();
    let mut args = vec![
        "restore".to_string(),
        copy.id.clone(),
        format!("--target={}", dir.display()),
    ];
    for p in &copy.paths {
        args.push(format!("--include={p}"));
    }
    let r = exec::run(&restic(ctx, env, &args), ctx.redactor);
    if !r.success() {
        return Err(format!(
            "restic restore of {} failed: {}\n{}",
            copy.dump,
            exit_reason("restic", &r.exit),
            r.tail.trim()
        ));
    }
    let local = dir.join(dump_path.trim_start_matches('/'));
    let actual =
        sha::file_sha256(&local).map_err(|e| format!("cannot read {}: {e}", local.display()))?;
    let sidecar = std::fs::read_to_string(layout::sidecar_path(&local)).ok();
    let claimed = sidecar
        .as_deref()
        .and_then(|s| sha::parse_sidecar(s, &copy.dump));
    for expected in [copy.sha256.as_ref(), claimed.as_ref()]
        .into_iter()
        .flatten()
    {
        if &actual != expected {
            return Err(format!(
                "checksum mismatch: {} at the destination is not the dump that was copied (sha256 {actual}, expected {expected}); nothing was imported",
                copy.dump
            ));
        }
    }
    if copy.sha256.is_none() && claimed.is_none() {
        return Err(format!(
            "{} at the destination has no sha256 to check it against; nothing was imported",
            copy.dump
        ));
    }
    Ok(local)
}
