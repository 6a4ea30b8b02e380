//! The `meta` of each kind's activities as serde structs: written by the step, read back here
//! and nowhere else by hand. Unknown keys are kept by the JSON, missing ones are `None`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A `verify_restore` activity.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct VerifyMeta {
    /// The dump it restored.
    pub verify_dump: Option<String>,
    pub verify_table_count: Option<u64>,
    /// Rows restored, every table checked against the dump's manifest (none without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    pub dump_age_seconds: Option<u64>,
    /// The evidence log it wrote.
    pub verify_log: Option<String>,
    pub duration_ms: Option<u64>,
}

/// An `offsite_copy` activity.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CopyMeta {
    /// The repository, without credentials.
    pub destination: Option<String>,
    /// The dumps this run shipped, newest first.
    #[serde(default)]
    pub copied: Vec<String>,
    /// How many of the step's dumps the destination holds after the run.
    pub at_destination: Option<u64>,
    /// The newest dump at the destination and when it was taken (the store's time format).
    pub newest: Option<String>,
    pub newest_taken: Option<String>,
    /// The newest good dump on this machine when the run began.
    pub newest_local: Option<String>,
    pub duration_ms: Option<u64>,
    /// Snapshots at the destination that retention does not trust (a time that is not their
    /// dump's, a dump this step never recorded copying), each in words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suspicious: Vec<String>,
}

impl CopyMeta {
    pub fn read(meta: &Value) -> CopyMeta {
        read(meta)
    }
}

/// A kind's meta from an activity's JSON; what does not fit reads as the default (empty).
pub fn read<T: serde::de::DeserializeOwned + Default>(meta: &Value) -> T {
    serde_json::from_value(meta.clone()).unwrap_or_default()
}

impl VerifyMeta {
    pub fn read(meta: &Value) -> VerifyMeta {
        read(meta)
    }

    /// The restored dump's file name, or `-`.
    pub fn dump_name(&self) -> String {
        self.verify_dump
            .as_deref()
            .and_then(|p| std::path::Path::new(p).file_name())
            .map_or_else(|| "-".into(), |n| n.to_string_lossy().into_owned())
    }
}

/// The files an activity of a step that keeps artifacts made: a dump's `artifact`, a
/// snapshot's `marker`, a verify's `verify_log`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Made {
    pub artifact: Option<String>,
    pub marker: Option<String>,
    pub verify_log: Option<String>,
}

impl Made {
    pub fn read(meta: &Value) -> Made {
        read(meta)
    }

    pub fn files(&self) -> impl Iterator<Item = PathBuf> + '_ {
        [&self.artifact, &self.marker, &self.verify_log]
            .into_iter()
            .flatten()
            .map(PathBuf::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_and_read_back() {
        let m = VerifyMeta {
            verify_dump: Some("/b/db/full-20261128-0100.sql.gz".into()),
            verify_table_count: Some(3),
            ..VerifyMeta::default()
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(VerifyMeta::read(&v), m);
        assert_eq!(m.dump_name(), "full-20261128-0100.sql.gz");
        assert_eq!(VerifyMeta::read(&Value::Null), VerifyMeta::default());
        let made = Made::read(&serde_json::json!({ "artifact": "a", "size": 3 }));
        assert_eq!(made.files().collect::<Vec<_>>(), [PathBuf::from("a")]);
    }
}
