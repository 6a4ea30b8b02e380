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

pub fn run(dir: &Path, keep: &Keep, tz: Tz, protected: &[PathBuf]) -> Extra {
    let started = Instant::now();
    let sel = plan(dir, keep, tz, protected, None);
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
        kind: "prune",
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
