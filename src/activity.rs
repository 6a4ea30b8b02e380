//! What the activity log speaks of, shared by every layer: the log's words as types (an
//! activity's type, its status, what triggered it; strings only at the edges: SQLite, JSON,
//! the command line) and what a step's run comes to (`Outcome`).

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::Serialize;

/// A word that names no activity type, status or trigger.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{word}` is not {what} (one of: {words})")]
pub struct UnknownWord {
    pub word: String,
    pub what: &'static str,
    pub words: String,
}

/// Each enum here: its words, parsing, and the SQLite and JSON conversions.
macro_rules! words {
    ($name:ident, $what:literal, { $($variant:ident => $word:literal),+ $(,)? }) => {
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }

            pub fn parse(s: &str) -> Result<$name, UnknownWord> {
                $name::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
                    let words: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                    UnknownWord {
                        word: s.to_string(),
                        what: $what,
                        words: words.join(", "),
                    }
                })
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
                let s = v.as_str()?;
                $name::parse(s).map_err(|e| FromSqlError::Other(e.into()))
            }
        }
    };
}

/// The `type` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActivityType {
    DbBackup,
    StorageSnapshot,
    VerifyRestore,
    Report,
    GitTag,
    Command,
    Prune,
    Migrate,
    Alert,
    Restore,
    DrDrill,
    OffsiteCopy,
    RepoCheck,
    BaseBackup,
    WalArchive,
}

words!(ActivityType, "an activity type", {
    DbBackup => "db_backup",
    StorageSnapshot => "storage_snapshot",
    VerifyRestore => "verify_restore",
    Report => "report",
    GitTag => "git_tag",
    Command => "command",
    Prune => "prune",
    Migrate => "migrate",
    Alert => "alert",
    Restore => "restore",
    DrDrill => "dr_drill",
    OffsiteCopy => "offsite_copy",
    RepoCheck => "repo_check",
    BaseBackup => "base_backup",
    WalArchive => "wal_archive",
});

/// The `status` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActivityStatus {
    Running,
    Success,
    Failed,
    Timeout,
    Incomplete,
    Skipped,
    Abandoned,
}

words!(ActivityStatus, "an activity status", {
    Running => "running",
    Success => "success",
    Failed => "failed",
    Timeout => "timeout",
    Incomplete => "incomplete",
    Skipped => "skipped",
    Abandoned => "abandoned",
});

words!(Trigger, "a trigger", {
    Schedule => "schedule",
    Manual => "manual",
    Http => "http",
    Force => "force",
});

impl From<Status> for ActivityStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Success => ActivityStatus::Success,
            Status::Failed => ActivityStatus::Failed,
            Status::Timeout => ActivityStatus::Timeout,
            Status::Incomplete => ActivityStatus::Incomplete,
        }
    }
}

/// What started a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    Manual,
    Http,
    Force,
}

/// How a step's run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Success,
    Failed,
    Timeout,
    Incomplete,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Failed => "failed",
            Status::Timeout => "timeout",
            Status::Incomplete => "incomplete",
        }
    }
}

/// What a step's run comes to: recorded as its activity, shown on the console.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub status: Status,
    /// JSON for the activity's `meta` (artifact, exit code, …).
    pub meta: serde_json::Value,
    /// The redacted tail of the tool's output.
    pub log_excerpt: String,
    /// One line for the console: why it failed, or what it made.
    pub summary: String,
    /// Follow-up activities the step ran as its own rows (a dump's `prune`).
    pub extra: Vec<Extra>,
    /// A non-success the plan accepts (`incomplete warn`): recorded as it is, but it neither
    /// skips dependents nor fails the apply.
    pub tolerated: bool,
}

/// A further activity of a step, recorded as its own row after the step's.
#[derive(Clone, Debug)]
pub struct Extra {
    /// The activity `type`, e.g. `prune`.
    pub kind: ActivityType,
    pub status: Status,
    pub meta: serde_json::Value,
    pub log_excerpt: String,
    pub summary: String,
    pub duration: std::time::Duration,
}

impl Outcome {
    pub fn failed(summary: impl Into<String>) -> Outcome {
        let summary = summary.into();
        Outcome {
            status: Status::Failed,
            meta: serde_json::Value::Object(Default::default()),
            log_excerpt: summary.clone(),
            summary,
            extra: Vec::new(),
            tolerated: false,
        }
    }

    /// Whether the run counts as good for what depends on it and for the exit code.
    pub fn passed(&self) -> bool {
        self.status == Status::Success || self.tolerated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_unknown_ones_are_named() {
        for t in ActivityType::ALL {
            assert_eq!(ActivityType::parse(t.as_str()), Ok(*t));
        }
        for s in ActivityStatus::ALL {
            assert_eq!(ActivityStatus::parse(s.as_str()), Ok(*s));
        }
        let e = ActivityType::parse("db-backup").unwrap_err();
        assert!(e.to_string().contains("db_backup"), "{e}");
    }
}
