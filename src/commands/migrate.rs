//! `backups migrate`: moves the dumps, snapshot markers, verify logs and reports of an older
//! folder into the layout, writing missing sidecars. Never overwrites; a second run finds
//! nothing to do; each move is a `migrate` activity; `--dry-run` only prints the table.

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

use crate::app::App;
use crate::artifact::layout;
use crate::artifact::legacy::{self, Kind};
use crate::artifact::sha;
use crate::clock::stamp;
use crate::commands::activities::format_table;
use crate::error::Failure;
use crate::plan::compile::CompiledPlan;

struct Move {
    from: PathBuf,
    to: PathBuf,
    kind: Kind,
    /// `name` or `mtime`: where the time in the new name came from.
    dated_by: &'static str,
}

/// The layout name for a file of `kind` made at `at`, avoiding existing files and `taken`.
fn target(
    base: &Path,
    kind: Kind,
    at: DateTime<Utc>,
    plan: &CompiledPlan,
    taken: &[PathBuf],
) -> PathBuf {
    let tz = plan.timezone.value;
    let (dir, stem, ext) = match kind {
        Kind::Dump => (layout::DB_DIR, layout::stamp_name("full", at, tz), "sql.gz"),
        Kind::Snapshot => ("snapshots", layout::stamp_name("snapshot", at, tz), "txt"),
        Kind::Verify { failed } => {
            let stem = layout::stamp_name("verify", at, tz);
            (
                "verify",
                if failed { format!("{stem}-fail") } else { stem },
                "log",
            )
        }
        Kind::Report => (
            "reports",
            format!("backup-report-{}", at.with_timezone(&tz).format("%Y%m%d")),
            "md",
        ),
    };
    layout::unique_path_besides(&base.join(dir), &stem, ext, taken)
}

/// Files of `from` (top level only: the layout's own folders are never read), classified.
fn survey(
    from: &Path,
    base: &Path,
    plan: &CompiledPlan,
) -> Result<(Vec<Move>, Vec<PathBuf>), String> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(from)
        .map_err(|e| format!("cannot read {}: {e}", from.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
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
        if name.ends_with(".sql.gz.sha256") && path.with_extension("").exists() {
            continue;
        }
        let Some(kind) = legacy::classify(&name) else {
            unknown.push(path);
            continue;
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
        let taken: Vec<PathBuf> = moves.iter().map(|m| m.to.clone()).collect();
        let to = target(base, kind, at, plan, &taken);
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
        Err(_) => {
            let tmp = layout::temp_path(to);
            std::fs::copy(from, &tmp)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, to)?;
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
) -> Result<(), Failure> {
    let (_loaded, compiled) = app.load()?;
    let plan = compiled.plan_named(plan_name).map_err(Failure::Usage)?;
    let base = PathBuf::from(&plan.base.value);
    let from = from.map_or_else(|| base.clone(), Path::to_path_buf);
    let (moves, unknown) = survey(&from, &base, plan).map_err(Failure::Runtime)?;
    let rel = |p: &Path| {
        p.strip_prefix(&base)
            .map_or_else(|_| p.display().to_string(), |r| r.display().to_string())
    };
    if moves.is_empty() {
        crate::outln!("nothing to migrate in {}", from.display());
    } else {
        let rows: Vec<[String; 4]> = moves
            .iter()
            .map(|m| {
                [
                    m.from
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
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
    if !unknown.is_empty() {
        crate::outln!("left alone (not recognised):");
        for u in &unknown {
            crate::outln!("  {}", u.display());
        }
    }
    if dry_run {
        crate::outln!("dry run: nothing was changed");
        return Ok(());
    }
    let store = app.open_store()?;
    let plan_id = &plan.decl.name.value;
    let mut failures = 0;
    for m in &moves {
        let started = app.clock.now();
        let result = (|| -> std::io::Result<Option<String>> {
            move_file(&m.from, &m.to)?;
            if m.kind != Kind::Dump {
                return Ok(None);
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
            Ok(sha) => ("success", String::new(), sha),
            Err(e) => {
                failures += 1;
                eprintln!("error: cannot move {}: {e}", m.from.display());
                ("failed", e.to_string(), None)
            }
        };
        let meta = json!({ "from": m.from.display().to_string(), "to": m.to.display().to_string(), "kind": m.kind.name(), "dated_by": m.dated_by, "sha256": sha });
        let write = store
            .start(
                plan_id,
                "backups-migrate",
                "migrate",
                "manual",
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
