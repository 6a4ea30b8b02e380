//! A snapshot's marker file in the layout (`snapshots/snapshot-YYYYmmdd-HHMM.txt`): the
//! newest complete one is the snapshot a restore takes and the recovery point of the files.

use std::path::Path;

use super::layout;

/// The newest complete snapshot whose marker is in `dir`, taken at or before `until` (an
/// incomplete one is no recovery point).
pub struct Marker {
    pub id: String,
    /// When the marker was written (the plan's clock): the recovery point.
    pub taken: chrono::DateTime<chrono::Utc>,
    /// The real time restic was started, when the marker says (since this version).
    pub began: Option<chrono::DateTime<chrono::Utc>>,
}

pub fn newest_complete(
    dir: &Path,
    tz: chrono_tz::Tz,
    until: chrono::DateTime<chrono::Utc>,
) -> Option<Marker> {
    layout::list_stamped(dir, "snapshot-", ".txt", tz)
        .into_iter()
        .filter(|m| m.taken <= until)
        .find_map(|m| {
            let text = std::fs::read_to_string(&m.path).ok()?;
            // Incomplete snapshots are no recovery point; the markers of further repositories
            // (`repository: 2` …) are not the step's own.
            if text
                .lines()
                .any(|l| l == "incomplete: true" || l.starts_with("repository: "))
            {
                return None;
            }
            let id = text
                .lines()
                .find_map(|l| l.strip_prefix("id: "))
                .filter(|id| !id.trim().is_empty())
                .or_else(|| text.lines().next())?
                .trim()
                .to_string();
            let began = text
                .lines()
                .find_map(|l| l.strip_prefix("began: "))
                .and_then(|b| chrono::DateTime::parse_from_rfc3339(b.trim()).ok())
                .map(|b| b.with_timezone(&chrono::Utc));
            (!id.is_empty()).then_some(Marker {
                id,
                taken: m.taken,
                began,
            })
        })
}
