//! Retention after a successful dump: list the layout's dumps, check which are good, delete
//! what the `keep` rule lets go (dump and sidecar), as a `prune` activity of its own.

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono_tz::Tz;
use serde_json::json;

use super::{Extra, Status};
use crate::artifact::layout::{self, DumpFile};
use crate::retention::{self, Selection};
use crate::units::keep::Keep;

/// What the rule would do now; with `upcoming`, as if that dump (counted good) existed too:
/// `--dry-run` shows what the next good dump would let go.
pub fn plan(
    dir: &Path,
    keep: &Keep,
    tz: Tz,
    protected: &[PathBuf],
    upcoming: Option<DumpFile>,
) -> Selection {
    let mut dumps = layout::list_dumps(dir, tz);
    let new = upcoming.as_ref().map(|u| u.path.clone());
    if let Some(u) = upcoming {
        dumps.insert(0, u);
    }
    let mut sel = retention::select(
        &dumps,
        &|d: &DumpFile| Some(&d.path) == new.as_ref() || layout::is_good(d),
        keep,
        tz,
        protected,
    );
    sel.keep.retain(|(p, _)| Some(p) != new.as_ref());
    sel
}

/// Retention after a good dump. `protected` is what must survive whatever the rule says (the
/// newest verified dumps); when it cannot be known, nothing is deleted and the prune fails.
pub fn run(dir: &Path, keep: &Keep, tz: Tz, protected: Result<Vec<PathBuf>, String>) -> Extra {
    let started = Instant::now();
    let protected = match protected {
        Ok(p) => p,
        Err(e) => {
            let summary = format!("{e}; nothing was deleted");
            return Extra {
                kind: crate::store::kinds::ActivityType::Prune,
                status: Status::Failed,
                meta: json!({ "rule": keep.to_string(), "deleted": [], "kept": [] }),
                log_excerpt: summary.clone(),
                summary,
                duration: started.elapsed(),
            };
        }
    };
    let sel = plan(dir, keep, tz, &protected, None);
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for path in &sel.delete {
        match std::fs::remove_file(path) {
            Ok(()) => {
                let _ = std::fs::remove_file(layout::sidecar_path(path));
                deleted.push(path.display().to_string());
            }
            Err(e) => errors.push(format!("cannot delete {}: {e}", path.display())),
        }
    }
    let _ = layout::fsync_dir(dir);
    let kept: Vec<_> = sel
        .keep
        .iter()
        .map(|(p, why)| json!({ "artifact": p.display().to_string(), "reason": why }))
        .collect();
    let summary = format!(
        "pruned {} dump(s), kept {} ({keep})",
        deleted.len(),
        sel.keep.len()
    );
    let mut log = deleted
        .iter()
        .map(|d| format!("deleted {d}\n"))
        .collect::<String>();
    for e in &errors {
        log.push_str(e);
        log.push('\n');
    }
    Extra {
        kind: crate::store::kinds::ActivityType::Prune,
        status: if errors.is_empty() {
            Status::Success
        } else {
            Status::Failed
        },
        meta: json!({ "rule": keep.to_string(), "deleted": deleted, "kept": kept }),
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
    fn prune(
        protected: impl FnOnce(&[PathBuf]) -> Result<Vec<PathBuf>, String>,
    ) -> (Extra, Vec<bool>) {
        let (dir, paths) = three_good_dumps();
        let keep = Keep {
            last: 1,
            ..Keep::default()
        };
        let extra = run(dir.path(), &keep, chrono_tz::UTC, protected(&paths));
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
        let (extra, left) = prune(|paths| Ok(vec![paths[0].clone()]));
        assert_eq!(extra.status, Status::Success, "{}", extra.summary);
        assert_eq!(left, [true, false, true]);
    }
}
