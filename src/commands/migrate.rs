//! `backups migrate`: moves the dumps, snapshot markers, verify logs and reports of an older
//! folder into the layout, writing missing sidecars; and when a plan has several steps of one
//! kind, moves the files in the shared folder (`db/full-…`) into the folder of the step that
//! made them (`db/<step>/full-…`, the owner read from the activity log). Never overwrites; a
//! second run finds nothing to do; each move is a `migrate` activity; `--dry-run` only prints
//! the table.

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

use crate::activity::Trigger;
use crate::activity::{ActivityStatus, ActivityType};
use crate::app::App;
use crate::artifact::layout::{self, Area};
use crate::artifact::legacy::{self, Kind};
use crate::artifact::manifest;
use crate::artifact::sha;
use crate::clock::stamp;
use crate::commands::activities::format_table;
use crate::error::Failure;
use crate::plan::compile::CompiledPlan;

const NOT_RECOGNISED: &str = "not recognised";

/// A file name as printed: control characters (an ESC sequence, a newline that would forge a
/// line of output) escaped as `\u{1b}`, `\n`.
fn shown(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A file left where it is, and why.
type LeftAlone = (PathBuf, String);

struct Move {
    from: PathBuf,
    to: PathBuf,
    kind: Kind,
    /// `name` or `mtime`: where the time in the new name came from; `record` for a file of
    /// the layout moving into its step's folder under its own name.
    dated_by: &'static str,
}

impl Move {
    /// A layout file changing folders keeps its sidecar as it is (re-hashing would bless a
    /// damaged file); a file of an older layout gets a new one.
    fn keeps_sidecar(&self) -> bool {
        self.dated_by == "record"
    }
}

fn area_of(kind: Kind) -> Option<Area> {
    match kind {
        Kind::Dump(_) => Some(Area::Dumps),
        Kind::Snapshot => Some(Area::Snapshots),
        Kind::Verify { .. } => Some(Area::VerifyLogs),
        Kind::Report => None,
    }
}

/// The folder an older file of `kind` goes to: that of the step named by `--step`, or of the
/// plan's only step of the kind. `Err` says why the file is left alone.
fn folder_for(plan: &CompiledPlan, kind: Kind, step: Option<&str>) -> Result<PathBuf, String> {
    let base = Path::new(&plan.base.value);
    let Some(area) = area_of(kind) else {
        return Ok(base.join("reports"));
    };
    let writers: Vec<&str> = plan
        .steps_where(|k| k.area() == Some(area))
        .map(|s| s.name.value.as_str())
        .collect();
    match step {
        Some(s) if writers.contains(&s) => Ok(plan.dir(s, area)),
        Some(s) => Err(format!(
            "a {}, and `{s}` is not a step that makes those",
            kind.name()
        )),
        None if writers.len() > 1 => Err(format!(
            "a {}, and the plan has several steps that make those ({}): name one with --step",
            kind.name(),
            writers.join(", ")
        )),
        None => Ok(plan.dir(writers.first().copied().unwrap_or_default(), area)),
    }
}

/// The layout name in `dir` for a file of `kind` made at `at`, avoiding existing files and
/// `taken`.
fn target(
    dir: &Path,
    kind: Kind,
    at: DateTime<Utc>,
    plan: &CompiledPlan,
    taken: &[PathBuf],
) -> PathBuf {
    let tz = plan.timezone.value;
    let (stem, ext) = match kind {
        Kind::Dump(codec) => (layout::stamp_name("full", at, tz), codec.ext()),
        Kind::Snapshot => (layout::stamp_name("snapshot", at, tz), "txt"),
        Kind::Verify { failed } => {
            let stem = layout::stamp_name("verify", at, tz);
            (if failed { format!("{stem}-fail") } else { stem }, "log")
        }
        Kind::Report => (
            format!("backup-report-{}", at.with_timezone(&tz).format("%Y%m%d")),
            "md",
        ),
    };
    layout::unique_path_besides(dir, &stem, ext, taken)
}

/// Files of the layout in a folder that several steps now share (`db/` of a plan that gained a
/// second dump): each moves, under its own name, into the folder of the step the activity log
/// says made it. A file no record names is left alone, with the reason.
fn split(
    plan: &CompiledPlan,
    owners: &std::collections::HashMap<PathBuf, String>,
) -> (Vec<Move>, Vec<LeftAlone>) {
    let base = Path::new(&plan.base.value);
    let mut moves = Vec::new();
    let mut left = Vec::new();
    for area in Area::ALL {
        let root = base.join(area.folder());
        let writers: Vec<&str> = plan
            .steps_where(|k| k.area() == Some(area))
            .map(|s| s.name.value.as_str())
            .collect();
        if writers.len() < 2 {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&root) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.path())
            .collect();
        files.sort();
        for path in files {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            // Hidden files are temporary; a sidecar travels with its dump.
            if name.starts_with('.') || name.ends_with(".sha256") {
                continue;
            }
            let Some(kind) = legacy::classify(&name).filter(|k| area_of(*k) == Some(area)) else {
                continue;
            };
            // Recorded as the step wrote it: `BASE/AREA/NAME`, the very path listed here.
            let owner = owners
                .get(&path)
                .map(String::as_str)
                .filter(|s| writers.contains(s));
            match owner {
                Some(step) => moves.push(Move {
                    to: plan.dir(step, area).join(&name),
                    from: path,
                    kind,
                    dated_by: "record",
                }),
                None => left.push((
                    path,
                    format!(
                        "no activity says which of {} made it: move it into {}/<step>/ by hand",
                        writers.join(", "),
                        area.folder()
                    ),
                )),
            }
        }
    }
    (moves, left)
}

/// Files of `from` (top level only: the layout's own folders are never read), classified.
fn survey(
    from: &Path,
    plan: &CompiledPlan,
    step: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(Vec<Move>, Vec<LeftAlone>), String> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(from)
        .map_err(|e| format!("cannot read {}: {e}", from.display()))?
        .flatten()
        // A symlink is left alone (moving it would move a name, not the backup).
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .collect();
    entries.sort();
    let tz = plan.timezone.value;
    let mut moves: Vec<Move> = Vec::new();
    let mut unknown = Vec::new();
    for path in entries {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // A sidecar travels with its dump; it is not a file of its own.
        if (name.ends_with(".sql.gz.sha256") || name.ends_with(".sql.zst.sha256"))
            && path.with_extension("").exists()
        {
            continue;
        }
        let Some(kind) = legacy::classify(&name) else {
            unknown.push((path, NOT_RECOGNISED.to_string()));
            continue;
        };
        let dir = match folder_for(plan, kind, step) {
            Ok(dir) => dir,
            Err(why) => {
                unknown.push((path, why));
                continue;
            }
        };
        let (at, dated_by) =
            match legacy::date_in_name(&name).and_then(|n| tz.from_local_datetime(&n).earliest()) {
                Some(t) => (t.with_timezone(&Utc), "name"),
                None => {
                    let mtime = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                    (DateTime::<Utc>::from(mtime), "mtime")
                }
            };
        if at > now {
            unknown.push((
                path,
                format!(
                    "dated in the future ({}): a layout name would make it the newest backup for ever",
                    at.with_timezone(&tz).format("%Y-%m-%d %H:%M")
                ),
            ));
            continue;
        }
        let taken: Vec<PathBuf> = moves.iter().map(|m| m.to.clone()).collect();
        let to = target(&dir, kind, at, plan, &taken);
        moves.push(Move {
            from: path,
            to,
            kind,
            dated_by,
        });
    }
    Ok((moves, unknown))
}

/// Renames, or copies and removes across file systems; never replaces an existing file.
fn move_file(from: &Path, to: &Path) -> std::io::Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if to.exists() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} exists", to.display()),
        ));
    }
    match std::fs::hard_link(from, to) {
        Ok(()) => std::fs::remove_file(from)?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(e),
        Err(_) => {
            let tmp = layout::temp_path(to);
            std::fs::copy(from, &tmp)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            if let Err(e) = layout::rename_new(&tmp, to) {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            std::fs::remove_file(from)?;
        }
    }
    if let Some(dir) = to.parent() {
        layout::fsync_dir(dir)?;
    }
    Ok(())
}

pub fn run(
    app: &App,
    from: Option<&Path>,
    dry_run: bool,
    plan_name: Option<&str>,
    step: Option<&str>,
) -> Result<(), Failure> {
    let (_loaded, compiled) = app.load()?;
    // Moving files is writing to the base: under the apply lock, by the base's owner.
    let _session = match dry_run {
        true => None,
        false => Some(crate::session::Session::begin(
            app,
            &compiled,
            std::time::Duration::ZERO,
        )?),
    };
    let plan = compiled.plan_named(plan_name)?;
    let base = PathBuf::from(&plan.base.value);
    let from = from.map_or_else(|| base.clone(), Path::to_path_buf);
    let (mut moves, mut unknown) =
        survey(&from, plan, step, app.clock.now()).map_err(Failure::Runtime)?;
    // A dry run reads the log when there is one, and creates none.
    let store = if dry_run && !app.state.value.exists() {
        None
    } else {
        Some(app.open_store()?)
    };
    let owners = match &store {
        Some(s) => s
            .artifact_owners(&plan.decl.name.value)
            .map_err(|e| Failure::Runtime(format!("cannot read the activity log: {e}")))?,
        None => Default::default(),
    };
    let (split_moves, split_left) = split(plan, &owners);
    moves.extend(split_moves);
    unknown.extend(split_left);
    let rel = |p: &Path| {
        shown(
            &p.strip_prefix(&base)
                .map_or_else(|_| p.display().to_string(), |r| r.display().to_string()),
        )
    };
    if moves.is_empty() {
        crate::outln!("nothing to migrate in {}", from.display());
    } else {
        let rows: Vec<[String; 4]> = moves
            .iter()
            .map(|m| {
                [
                    shown(
                        &m.from
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                    ),
                    rel(&m.to),
                    m.kind.name().to_string(),
                    m.dated_by.to_string(),
                ]
            })
            .collect();
        crate::out!(
            "{}",
            format_table(&["FROM", "TO", "KIND", "DATED BY"], &rows)
        );
    }
    let (unrecognised, held): (Vec<_>, Vec<_>) =
        unknown.iter().partition(|(_, why)| why == NOT_RECOGNISED);
    if !unrecognised.is_empty() {
        crate::outln!("left alone (not recognised):");
        for (u, _) in &unrecognised {
            crate::outln!("  {}", shown(&u.display().to_string()));
        }
    }
    if !held.is_empty() {
        crate::outln!("left alone:");
        for (u, why) in &held {
            crate::outln!("  {}: {why}", shown(&u.display().to_string()));
        }
    }
    if dry_run {
        crate::outln!("dry run: nothing was changed");
        return Ok(());
    }
    let Some(store) = store else {
        return Ok(());
    };
    let plan_id = &plan.decl.name.value;
    let mut failures = 0;
    for m in &moves {
        let started = app.clock.now();
        let result = (|| -> std::io::Result<Option<String>> {
            move_file(&m.from, &m.to)?;
            if !matches!(m.kind, Kind::Dump(_)) {
                return Ok(None);
            }
            if m.keeps_sidecar() {
                let from = layout::sidecar_path(&m.from);
                if from.exists() {
                    move_file(&from, &layout::sidecar_path(&m.to))?;
                }
                let from = manifest::path(&m.from);
                if from.exists() {
                    move_file(&from, &manifest::path(&m.to))?;
                }
                return Ok(None);
            }
            // A renamed dump's manifest names the new file.
            if let Ok(Some(mut man)) = manifest::read(&m.from) {
                man.file =
                    m.to.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                manifest::write(&m.to, &man)?;
                let _ = std::fs::remove_file(manifest::path(&m.from));
            }
            let sum = sha::file_sha256(&m.to)?;
            let name =
                m.to.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
            layout::write_atomic(
                &layout::sidecar_path(&m.to),
                sha::sidecar_line(&sum, &name).as_bytes(),
            )?;
            // The old sidecar, if any, went stale with the new name.
            let mut old = m.from.as_os_str().to_owned();
            old.push(".sha256");
            let _ = std::fs::remove_file(PathBuf::from(old));
            Ok(Some(sum))
        })();
        let (status, log, sha) = match result {
            Ok(sha) => (ActivityStatus::Success, String::new(), sha),
            Err(e) => {
                failures += 1;
                eprintln!(
                    "error: cannot move {}: {e}",
                    shown(&m.from.display().to_string())
                );
                (ActivityStatus::Failed, e.to_string(), None)
            }
        };
        let meta = json!({ "from": m.from.display().to_string(), "to": m.to.display().to_string(), "kind": m.kind.name(), "dated_by": m.dated_by, "sha256": sha });
        let write = store
            .start(
                plan_id,
                "backups-migrate",
                ActivityType::Migrate,
                Trigger::Manual,
                &stamp(started),
            )
            .and_then(|id| {
                let now = app.clock.now();
                store.finish(
                    id,
                    status,
                    &stamp(now),
                    (now - started).num_milliseconds(),
                    &meta,
                    &log,
                )
            });
        if let Err(e) = write {
            return Err(Failure::Runtime(format!(
                "cannot record the move of {}: {e}",
                m.from.display()
            )));
        }
    }
    if failures > 0 {
        return Err(Failure::StepsFailed);
    }
    if !moves.is_empty() {
        crate::outln!("moved {} file(s) into {}", moves.len(), base.display());
    }
    Ok(())
}
