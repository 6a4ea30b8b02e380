//! Retention after a successful dump: list the layout's dumps, check which are good, delete
//! what the `keep` rule lets go (dump and sidecar), as a `prune` activity of its own.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};

use chrono_tz::Tz;
use serde_json::json;

use super::{Extra, Status, StepError};
use crate::artifact::layout::{self, DumpFile};
use crate::retention::{self, Selection};
use crate::units::keep::Keep;

/// What the log says of a step's dumps, for retention.
#[derive(Debug, Default)]
pub struct History {
    /// What must survive whatever the rule says (the newest verified dumps).
    pub protected: Vec<PathBuf>,
    /// When each dump was made, as recorded: retention orders by it, not by the name, which
    /// a clock or time-zone change (the autumn hour repeats) can make lie.
    pub recorded: HashMap<PathBuf, DateTime<Utc>>,
    /// The dump just made: the newest whatever the times say (a clock may step back).
    pub just_made: Option<PathBuf>,
}

/// What the rule would do now; with `upcoming`, as if that dump (counted good) existed too:
/// `--dry-run` shows what the next good dump would let go.
pub fn plan(
    dir: &Path,
    keep: &Keep,
    tz: Tz,
    history: &History,
    upcoming: Option<DumpFile>,
) -> Selection {
    let mut dumps = layout::list_dumps(dir, tz);
    let new = upcoming.as_ref().map(|u| u.path.clone());
    dumps.extend(upcoming);
    for d in &mut dumps {
        if let Some(at) = history.recorded.get(&d.path) {
            d.taken = *at;
        }
    }
    let first =
        |d: &DumpFile| Some(&d.path) == new.as_ref() || history.just_made.as_ref() == Some(&d.path);
    dumps.sort_by_key(|d| std::cmp::Reverse((first(d), d.taken, d.seq)));
    let mut protected: Vec<(PathBuf, String)> = history
        .protected
        .iter()
        .map(|p| (p.clone(), "newest verified dump".to_string()))
        .collect();
    protected.extend(around_drops(dir, &dumps));
    let mut sel = retention::select(
        &dumps,
        &|d: &DumpFile| Some(&d.path) == new.as_ref() || layout::is_good(d),
        keep,
        tz,
        &protected,
    );
    sel.keep.retain(|(p, _)| Some(p) != new.as_ref());
    sel
}

/// The dumps around data that went missing: a dump whose manifest found tables that lost
/// rows is kept (the evidence), and so is the dump it compared with — the last copy of the
/// data before it vanished is never what retention deletes. Both stay until an operator
/// deletes the dump that found the drop.
fn around_drops(dir: &Path, dumps: &[DumpFile]) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for d in dumps {
        let Ok(Some(m)) = crate::artifact::manifest::read(&d.path) else {
            continue;
        };
        if m.drops.is_empty() {
            continue;
        }
        out.push((d.path.clone(), "found data gone".to_string()));
        for p in m.drops.iter().map(|x| &x.previous) {
            if !p.is_empty() && !p.contains('/') {
                out.push((
                    dir.join(p),
                    format!("last dump before data went missing ({})", d.name),
                ));
            }
        }
    }
    out
}

/// Retention after a good dump. When the history cannot be read, nothing is deleted and the
/// prune fails.
pub fn run(dir: &Path, keep: &Keep, tz: Tz, history: Result<History, StepError>) -> Extra {
    let started = Instant::now();
    let history = match history {
        Ok(p) => p,
        Err(e) => {
            let summary = format!("{e}; nothing was deleted");
            return Extra {
                kind: crate::activity::ActivityType::Prune,
                status: Status::Failed,
                meta: json!({ "rule": keep.to_string(), "deleted": [], "kept": [] }),
                log_excerpt: summary.clone(),
                summary,
                duration: started.elapsed(),
            };
        }
    };
    let sel = plan(dir, keep, tz, &history, None);
    let (deleted, errors) = delete(dir, &sel);
    let summary = format!(
        "pruned {} dump(s), kept {} ({keep})",
        deleted.len(),
        sel.keep.len()
    );
    report(keep, &sel, deleted, errors, summary, json!({}), started)
}

/// Deletes what a selection lets go, each file with its sidecar, its manifest and (a dump's)
/// roles; then syncs the folder. The paths deleted, and what could not be.
pub(crate) fn delete(dir: &Path, sel: &Selection) -> (Vec<String>, Vec<String>) {
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for path in &sel.delete {
        match std::fs::remove_file(path) {
            Ok(()) => {
                let _ = std::fs::remove_file(layout::sidecar_path(path));
                let _ = std::fs::remove_file(crate::artifact::manifest::path(path));
                // The roles dumped beside it go with it.
                if let Some(globals) = crate::artifact::layout::globals_path(path)
                    && std::fs::remove_file(&globals).is_ok()
                {
                    let _ = std::fs::remove_file(layout::sidecar_path(&globals));
                }
                deleted.push(path.display().to_string());
            }
            Err(e) => errors.push(format!("cannot delete {}: {e}", path.display())),
        }
    }
    let _ = layout::fsync_dir(dir);
    (deleted, errors)
}

/// The `prune` activity of a retention run: `summary` when nothing failed, the errors when
/// something did; `more` joins the meta.
pub(crate) fn report(
    keep: &Keep,
    sel: &Selection,
    deleted: Vec<String>,
    errors: Vec<String>,
    summary: String,
    more: serde_json::Value,
    started: Instant,
) -> Extra {
    let kept: Vec<_> = sel
        .keep
        .iter()
        .map(|(p, why)| json!({ "artifact": p.display().to_string(), "reason": why }))
        .collect();
    let mut log = deleted
        .iter()
        .map(|d| format!("deleted {d}\n"))
        .collect::<String>();
    for e in &errors {
        log.push_str(e);
        log.push('\n');
    }
    let mut meta = json!({ "rule": keep.to_string(), "deleted": deleted, "kept": kept });
    if let (Some(m), serde_json::Value::Object(more)) = (meta.as_object_mut(), more) {
        m.extend(more);
    }
    Extra {
        kind: crate::activity::ActivityType::Prune,
        status: if errors.is_empty() {
            Status::Success
        } else {
            Status::Failed
        },
        meta,
        log_excerpt: log,
        summary: if errors.is_empty() {
            summary
        } else {
            errors.join("; ")
        },
        duration: started.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::sha;

    /// Three good dumps under `keep last=1`.
    fn three_good_dumps() -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for hour in ["0100", "0200", "0300"] {
            let name = format!("full-20261128-{hour}.sql.gz");
            let path = dir.path().join(&name);
            std::fs::write(&path, hour).unwrap();
            let sum = sha::file_sha256(&path).unwrap();
            std::fs::write(layout::sidecar_path(&path), sha::sidecar_line(&sum, &name)).unwrap();
            paths.push(path);
        }
        (dir, paths)
    }

    /// `keep last=1` over three good dumps: the prune, and which dumps are left.
    fn prune(history: impl FnOnce(&[PathBuf]) -> Result<History, String>) -> (Extra, Vec<bool>) {
        let (dir, paths) = three_good_dumps();
        let keep = Keep {
            last: 1,
            ..Keep::default()
        };
        let extra = run(
            dir.path(),
            &keep,
            chrono_tz::UTC,
            history(&paths).map_err(StepError::from),
        );
        (extra, paths.iter().map(|p| p.exists()).collect())
    }

    #[test]
    fn when_the_verified_dumps_cannot_be_read_nothing_is_deleted() {
        let (extra, left) =
            prune(|_| Err("cannot read which dump was verified last: locked".into()));
        assert_eq!(extra.status, Status::Failed);
        assert!(
            extra.summary.contains("nothing was deleted"),
            "{}",
            extra.summary
        );
        assert_eq!(left, [true, true, true]);
    }

    #[test]
    fn the_verified_dump_survives_the_rule() {
        let (extra, left) = prune(|paths| {
            Ok(History {
                protected: vec![paths[0].clone()],
                ..History::default()
            })
        });
        assert_eq!(extra.status, Status::Success, "{}", extra.summary);
        assert_eq!(left, [true, false, true]);
    }

    #[test]
    fn the_newest_by_recorded_time_is_kept_whatever_the_names_say() {
        // The 01:00 file was made last (the clock went back): it is the newest good dump.
        let at = |h: u32| chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 28, h, 0, 0).unwrap();
        let (extra, left) = prune(|paths| {
            Ok(History {
                recorded: [(paths[0].clone(), at(5)), (paths[2].clone(), at(3))].into(),
                ..History::default()
            })
        });
        assert_eq!(extra.status, Status::Success, "{}", extra.summary);
        assert_eq!(left, [true, false, false]);
    }
}
