//! Rows of `ops_activities`: start, finish, skipped, the history the due decision needs, listing.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde_json::{Value, json};

use super::Store;
use super::meta::{Made, VerifyMeta};
use crate::activity::Trigger;
use crate::activity::{ActivityStatus, ActivityType};
use crate::clock::parse_stamp;

#[derive(Clone, Debug, Serialize)]
pub struct Activity {
    pub id: i64,
    pub plan: String,
    pub step: String,
    #[serde(rename = "type")]
    pub kind: ActivityType,
    pub status: ActivityStatus,
    pub trigger: Trigger,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
    pub meta: Value,
    pub log_excerpt: String,
}

/// What the due decision needs to know of one step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    pub last_success: Option<DateTime<Utc>>,
    /// When the newest failed attempt after the last success ended.
    pub last_failure: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub limit: usize,
    pub kind: Option<ActivityType>,
    pub status: Option<ActivityStatus>,
    pub plan: Option<String>,
    pub before_id: Option<i64>,
}

/// This process as the owner of a `running` row: pid, its start time and the boot it belongs
/// to, so a reused pid is not mistaken for the original.
pub fn owner() -> Value {
    let pid = std::process::id();
    json!({ "pid": pid, "pid_start": process_start(pid), "boot": boot_id() })
}

fn process_start(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22 (starttime) comes after the parenthesised command name, which may hold spaces.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(19).map(str::to_string)
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

fn owner_alive(meta: &Value) -> bool {
    let Some(pid) = meta.get("pid").and_then(Value::as_u64) else {
        return false;
    };
    let same_boot = meta.get("boot").and_then(Value::as_str).map(str::to_string) == boot_id();
    let start = meta
        .get("pid_start")
        .and_then(Value::as_str)
        .map(str::to_string);
    same_boot && start.is_some() && process_start(pid as u32) == start
}

/// The newest finished run of a step (not running, not skipped).
#[derive(Clone, Debug)]
pub struct Finished {
    /// When it ended (its start, for a row that never got an end).
    pub at: String,
    pub started_at: String,
    pub duration_ms: Option<i64>,
    pub status: ActivityStatus,
    pub log_excerpt: String,
    pub meta: Value,
}

impl Store {
    /// When `step` last succeeded (its start), and its newest finished run, of activity
    /// type `kind`.
    pub fn last_runs(
        &self,
        plan: &str,
        step: &str,
        kind: ActivityType,
    ) -> rusqlite::Result<(Option<String>, Option<Finished>)> {
        let success: Option<String> = self
            .conn
            .query_row(
                "SELECT max(started_at) FROM ops_activities WHERE plan = ?1 AND step = ?2 AND type = ?3 AND status = 'success'",
                params![plan, step, kind],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        let last = self
            .conn
            .query_row(
                "SELECT coalesce(finished_at, started_at), started_at, duration_ms, status, log_excerpt, meta
                 FROM ops_activities
                 WHERE plan = ?1 AND step = ?2 AND type = ?3 AND status NOT IN ('running', 'skipped')
                 ORDER BY id DESC LIMIT 1",
                params![plan, step, kind],
                |r| {
                    Ok(Finished {
                        at: r.get(0)?,
                        started_at: r.get(1)?,
                        duration_ms: r.get(2)?,
                        status: r.get(3)?,
                        log_excerpt: r.get(4)?,
                        meta: serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or_default(),
                    })
                },
            )
            .optional()?;
        Ok((success, last))
    }

    /// The dumps that the newest successful run of each of `verify_steps` restored
    /// (`meta.verify_dump`). An error is an error: retention must not guess that nothing was
    /// verified.
    pub fn newest_verified_dumps(
        &self,
        plan: &str,
        verify_steps: &[&str],
    ) -> rusqlite::Result<Vec<std::path::PathBuf>> {
        let mut out = Vec::new();
        for step in verify_steps {
            let dump = self
                .newest_success_meta(plan, step, ActivityType::VerifyRestore)?
                .and_then(|m| {
                    VerifyMeta::read(&m)
                        .verify_dump
                        .map(std::path::PathBuf::from)
                });
            out.extend(dump);
        }
        Ok(out)
    }

    /// `(artifact, started_at)` of every successful dump of a step that names its artifact.
    pub fn artifact_times(
        &self,
        plan: &str,
        step: &str,
    ) -> rusqlite::Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT json_extract(meta, '$.artifact'), started_at FROM ops_activities
             WHERE plan = ?1 AND step = ?2 AND type = ?3 AND status = 'success'
             AND json_valid(meta) AND json_type(meta, '$.artifact') = 'text'",
        )?;
        let rows = stmt.query_map(params![plan, step, ActivityType::DbBackup], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        rows.collect()
    }

    /// The `meta` of the newest successful run of a step.
    pub fn newest_success_meta(
        &self,
        plan: &str,
        step: &str,
        kind: ActivityType,
    ) -> rusqlite::Result<Option<Value>> {
        self.newest_meta(
            "SELECT meta FROM ops_activities WHERE plan = ?1 AND step = ?2 AND type = ?3
             AND status = 'success' ORDER BY id DESC LIMIT 1",
            plan,
            step,
            kind,
        )
    }

    /// The `meta` of the newest run of a step that completed its work: `success`, or
    /// `incomplete` (a drill over its objectives still measured them).
    pub fn newest_measured_meta(
        &self,
        plan: &str,
        step: &str,
        kind: ActivityType,
    ) -> rusqlite::Result<Option<Value>> {
        self.newest_meta(
            "SELECT meta FROM ops_activities WHERE plan = ?1 AND step = ?2 AND type = ?3
             AND status IN ('success', 'incomplete') ORDER BY id DESC LIMIT 1",
            plan,
            step,
            kind,
        )
    }

    fn newest_meta(
        &self,
        sql: &str,
        plan: &str,
        step: &str,
        kind: ActivityType,
    ) -> rusqlite::Result<Option<Value>> {
        let meta: Option<String> = self
            .conn
            .prepare_cached(sql)?
            .query_row(params![plan, step, kind], |r| r.get(0))
            .optional()?;
        Ok(meta.and_then(|m| serde_json::from_str(&m).ok()))
    }

    /// When each plan's last apply ended: `(plan, finished_at)`.
    pub fn applies(&self) -> rusqlite::Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT plan, finished_at FROM ops_applies ORDER BY plan")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }

    /// Finished activities by `(type, status)`, kept by triggers (no scan of the log).
    pub fn activity_counts(&self) -> rusqlite::Result<Vec<(ActivityType, ActivityStatus, i64)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT type, status, count FROM ops_activity_counts ORDER BY type, status")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect()
    }

    pub fn start(
        &self,
        plan: &str,
        step: &str,
        kind: ActivityType,
        trigger: Trigger,
        started_at: &str,
    ) -> rusqlite::Result<i64> {
        self.conn.execute(
            "INSERT INTO ops_activities (plan, step, type, status, trigger, started_at, meta)
             VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6)",
            params![plan, step, kind, trigger, started_at, owner().to_string()],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Every dump a copy step recorded shipping (its runs' `copied`), for retention at the
    /// destination: a snapshot of a dump not in here was not made by this step.
    pub fn copied_names(
        &self,
        plan: &str,
        step: &str,
    ) -> rusqlite::Result<std::collections::BTreeSet<String>> {
        let mut stmt = self.conn.prepare(
            "SELECT meta FROM ops_activities
             WHERE plan = ?1 AND step = ?2 AND type = 'offsite_copy' AND status != 'running'",
        )?;
        let metas = stmt.query_map(params![plan, step], |r| r.get::<_, String>(0))?;
        let mut names = std::collections::BTreeSet::new();
        for m in metas {
            let v: serde_json::Value = serde_json::from_str(&m?).unwrap_or_default();
            names.extend(
                v["copied"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n.as_str().map(str::to_string)),
            );
        }
        Ok(names)
    }

    /// The newest seal of the hash chain: its number and hash.
    pub fn chain_head(&self) -> rusqlite::Result<Option<(i64, String)>> {
        super::chain::head(&self.conn)
    }

    /// The hash chain, recomputed.
    pub fn verify_chain(&self) -> rusqlite::Result<super::chain::Verdict> {
        super::chain::verify(&self.conn)
    }

    pub fn finish(
        &self,
        id: i64,
        status: ActivityStatus,
        finished_at: &str,
        duration_ms: i64,
        meta: &Value,
        log_excerpt: &str,
    ) -> rusqlite::Result<()> {
        self.conn.execute(
            "UPDATE ops_activities SET status = ?2, finished_at = ?3, duration_ms = ?4, meta = ?5, log_excerpt = ?6
             WHERE id = ?1",
            params![id, status, finished_at, duration_ms, meta.to_string(), log_excerpt],
        )?;
        super::chain::seal_pending(&self.conn)?;
        Ok(())
    }

    /// A step that did not run because something it needs failed.
    #[allow(clippy::too_many_arguments)]
    pub fn skipped(
        &self,
        plan: &str,
        step: &str,
        kind: ActivityType,
        trigger: Trigger,
        at: &str,
        meta: &Value,
        why: &str,
    ) -> rusqlite::Result<i64> {
        self.conn.execute(
            "INSERT INTO ops_activities (plan, step, type, status, trigger, started_at, finished_at, duration_ms, meta, log_excerpt)
             VALUES (?1, ?2, ?3, 'skipped', ?4, ?5, ?5, 0, ?6, ?7)",
            params![plan, step, kind, trigger, at, meta.to_string(), why],
        )?;
        let id = self.conn.last_insert_rowid();
        super::chain::seal_pending(&self.conn)?;
        Ok(id)
    }

    /// Marks `running` rows whose process is gone as `abandoned`.
    pub fn mark_abandoned(&self, now: &str) -> rusqlite::Result<usize> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, meta FROM ops_activities WHERE status = 'running'")?;
        let rows: Vec<(i64, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut n = 0;
        for (id, meta) in rows {
            let meta: Value = serde_json::from_str(&meta).unwrap_or(Value::Null);
            if owner_alive(&meta) {
                continue;
            }
            n += self.conn.execute(
                "UPDATE ops_activities SET status = 'abandoned', finished_at = ?2,
                   duration_ms = CAST((julianday(?2) - julianday(started_at)) * 86400000 AS INTEGER),
                   log_excerpt = log_excerpt || ?3
                 WHERE id = ?1 AND status = 'running'",
                params![id, now, "ops-run stopped before this step finished (process gone)"],
            )?;
        }
        if n > 0 {
            super::chain::seal_pending(&self.conn)?;
        }
        Ok(n)
    }

    /// When the step last ran to its end, and failed since, for the due decision. An
    /// `incomplete` run ran to its end (a drill over its objectives, a snapshot that could not
    /// read some files under `incomplete warn`, a dump that found data gone): its schedule
    /// waits for the next time, as after a success — retrying at once would only say the same
    /// again. A snapshot left without a marker (`incomplete fail`) is no snapshot: a failure,
    /// retried after `retry-after`.
    pub fn history(&self, plan: &str, step: &str) -> rusqlite::Result<History> {
        // Each status on its own, so every part is a range of the (plan, step, status,
        // started_at) index: only `incomplete` rows are read whole (to see a snapshot's marker).
        const NO_SNAPSHOT: &str =
            "type = 'storage_snapshot' AND json_extract(meta, '$.marker') IS NULL";
        let last_success: Option<String> = self
            .conn
            .query_row(
                &format!(
                    "SELECT max(t) FROM (
                       SELECT max(started_at) AS t FROM ops_activities
                        WHERE plan = ?1 AND step = ?2 AND status = 'success'
                       UNION ALL
                       SELECT max(started_at) FROM ops_activities
                        WHERE plan = ?1 AND step = ?2 AND status = 'incomplete' AND NOT ({NO_SNAPSHOT}))"
                ),
                params![plan, step],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        let since = last_success.clone().unwrap_or_default();
        let last_failure: Option<String> = self
            .conn
            .query_row(
                &format!(
                    "SELECT max(t) FROM (
                       SELECT max(coalesce(finished_at, started_at)) AS t FROM ops_activities
                        WHERE plan = ?1 AND step = ?2 AND status IN ('failed', 'timeout', 'abandoned')
                          AND started_at > ?3
                       UNION ALL
                       SELECT max(coalesce(finished_at, started_at)) FROM ops_activities
                        WHERE plan = ?1 AND step = ?2 AND status = 'incomplete' AND ({NO_SNAPSHOT})
                          AND started_at > ?3)"
                ),
                params![plan, step, since],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        Ok(History {
            last_success: last_success.as_deref().and_then(parse_stamp),
            last_failure: last_failure.as_deref().and_then(parse_stamp),
        })
    }

    /// Which step made each file a successful run of `plan` recorded (a dump's `artifact`, a
    /// snapshot's `marker`, a verify's `verify_log`): `backups migrate` moves the files of a
    /// shared folder into the folder of the step that made them.
    pub fn artifact_owners(
        &self,
        plan: &str,
    ) -> rusqlite::Result<std::collections::HashMap<std::path::PathBuf, String>> {
        let mut stmt = self.conn.prepare(
            "SELECT step, meta FROM ops_activities WHERE plan = ?1 AND status IN ('success', 'incomplete')
             AND type IN ('db_backup', 'storage_snapshot', 'verify_restore')",
        )?;
        let rows = stmt.query_map(params![plan], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = std::collections::HashMap::new();
        for row in rows {
            let (step, meta) = row?;
            let Ok(meta) = serde_json::from_str::<Value>(&meta) else {
                continue;
            };
            for file in Made::read(&meta).files() {
                out.insert(file, step.clone());
            }
        }
        Ok(out)
    }

    /// What the newest drill of a step that restored everything measured: recovery time and
    /// recovery point, in seconds (from its activity's meta; a drill over its objectives
    /// counts).
    pub fn drill_figures(&self, plan: &str, step: &str) -> rusqlite::Result<Option<(f64, f64)>> {
        let meta = self.newest_measured_meta(plan, step, ActivityType::DrDrill)?;
        Ok(meta.and_then(|m| Some((m["rto_seconds"].as_f64()?, m["rpo_seconds"].as_f64()?))))
    }

    /// Notes the end of an apply of `plan` (the dead-man's heartbeat, the `last apply`
    /// metric): when, whether every step that ran succeeded (`ok` / `failed`), how many ran.
    pub fn record_apply(
        &self,
        plan: &str,
        at: &str,
        result: &str,
        steps: i64,
    ) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT INTO ops_applies (plan, finished_at, result, steps) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (plan) DO UPDATE SET finished_at = ?2, result = ?3, steps = ?4",
            params![plan, at, result, steps],
        )?;
        Ok(())
    }

    /// The newest apply of any of `plans`: when it ended, its result, how many steps ran.
    pub fn last_apply(&self, plans: &[&str]) -> rusqlite::Result<Option<(String, String, i64)>> {
        let mut stmt = self.conn.prepare(
            "SELECT plan, finished_at, coalesce(result, 'ok'), coalesce(steps, 0) FROM ops_applies",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut newest: Option<(String, String, i64)> = None;
        for row in rows {
            let (plan, at, result, steps) = row?;
            if plans.contains(&plan.as_str()) && newest.as_ref().is_none_or(|n| at > n.0) {
                newest = Some((at, result, steps));
            }
        }
        Ok(newest)
    }

    pub fn list(&self, f: &Filter) -> rusqlite::Result<Vec<Activity>> {
        let mut sql = String::from(
            "SELECT id, plan, step, type, status, trigger, started_at, finished_at, duration_ms, meta, log_excerpt
             FROM ops_activities WHERE 1=1",
        );
        let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
        let filters: [(&str, Option<Box<dyn rusqlite::ToSql>>); 3] = [
            (
                "type",
                f.kind.map(|k| Box::new(k) as Box<dyn rusqlite::ToSql>),
            ),
            (
                "status",
                f.status.map(|s| Box::new(s) as Box<dyn rusqlite::ToSql>),
            ),
            (
                "plan",
                f.plan
                    .clone()
                    .map(|p| Box::new(p) as Box<dyn rusqlite::ToSql>),
            ),
        ];
        for (col, v) in filters {
            if let Some(v) = v {
                args.push(v);
                sql.push_str(&format!(" AND {col} = ?{}", args.len()));
            }
        }
        if let Some(b) = f.before_id {
            args.push(Box::new(b));
            sql.push_str(&format!(" AND id < ?{}", args.len()));
        }
        args.push(Box::new(f.limit as i64));
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ?{}", args.len()));
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
            let meta: String = r.get(9)?;
            Ok(Activity {
                id: r.get(0)?,
                plan: r.get(1)?,
                step: r.get(2)?,
                kind: r.get(3)?,
                status: r.get(4)?,
                trigger: r.get(5)?,
                started_at: r.get(6)?,
                finished_at: r.get(7)?,
                duration_ms: r.get(8)?,
                meta: serde_json::from_str(&meta).unwrap_or(Value::Null),
                log_excerpt: r.get(10)?,
            })
        })?;
        rows.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db"), "2026-01-01T00:00:00.000Z").unwrap();
        (dir, s)
    }

    /// A `command` row of step `p/a`, running since `at`.
    fn begin(s: &Store, at: &str) -> i64 {
        s.start("p", "a", ActivityType::Command, Trigger::Schedule, at)
            .unwrap()
    }

    #[test]
    fn history_sees_last_success_and_later_failures_only() {
        let (_d, s) = store();
        let id = begin(&s, "2026-01-01T01:00:00.000Z");
        s.finish(
            id,
            ActivityStatus::Failed,
            "2026-01-01T01:00:05.000Z",
            5000,
            &json!({}),
            "",
        )
        .unwrap();
        let id = begin(&s, "2026-01-01T02:00:00.000Z");
        s.finish(
            id,
            ActivityStatus::Success,
            "2026-01-01T02:00:05.000Z",
            5000,
            &json!({}),
            "",
        )
        .unwrap();
        let h = s.history("p", "a").unwrap();
        assert_eq!(h.last_success, parse_stamp("2026-01-01T02:00:00.000Z"));
        assert_eq!(h.last_failure, None);
        let id = begin(&s, "2026-01-01T03:00:00.000Z");
        s.finish(
            id,
            ActivityStatus::Timeout,
            "2026-01-01T03:10:00.000Z",
            1,
            &json!({}),
            "",
        )
        .unwrap();
        assert_eq!(
            s.history("p", "a").unwrap().last_failure,
            parse_stamp("2026-01-01T03:10:00.000Z")
        );
        assert_eq!(s.history("p", "other").unwrap(), History::default());
        // An incomplete run ran to its end: the schedule counts from it, no retry is due.
        let id = begin(&s, "2026-01-01T04:00:00.000Z");
        s.finish(
            id,
            ActivityStatus::Incomplete,
            "2026-01-01T04:00:05.000Z",
            5000,
            &json!({}),
            "",
        )
        .unwrap();
        let h = s.history("p", "a").unwrap();
        assert_eq!(h.last_success, parse_stamp("2026-01-01T04:00:00.000Z"));
        assert_eq!(h.last_failure, None);
        // …but a snapshot left without a marker (`incomplete fail`) is a failure, retried.
        let id = s
            .start(
                "p",
                "a",
                ActivityType::StorageSnapshot,
                Trigger::Schedule,
                "2026-01-01T05:00:00.000Z",
            )
            .unwrap();
        s.finish(
            id,
            ActivityStatus::Incomplete,
            "2026-01-01T05:00:05.000Z",
            5000,
            &json!({ "marker": null }),
            "",
        )
        .unwrap();
        let h = s.history("p", "a").unwrap();
        assert_eq!(h.last_success, parse_stamp("2026-01-01T04:00:00.000Z"));
        assert_eq!(h.last_failure, parse_stamp("2026-01-01T05:00:05.000Z"));
    }

    #[test]
    fn a_running_row_of_a_dead_process_becomes_abandoned() {
        let (_d, s) = store();
        let id = begin(&s, "2026-01-01T01:00:00.000Z");
        // Our own row stays: this process is alive.
        assert_eq!(s.mark_abandoned("2026-01-01T01:00:01.000Z").unwrap(), 0);
        s.conn
            .execute("UPDATE ops_activities SET meta = '{\"pid\": 999999999, \"pid_start\": \"1\"}' WHERE id = ?1", [id])
            .unwrap();
        assert_eq!(s.mark_abandoned("2026-01-01T01:00:02.000Z").unwrap(), 1);
        let rows = s
            .list(&Filter {
                limit: 10,
                ..Filter::default()
            })
            .unwrap();
        assert_eq!(rows[0].status, ActivityStatus::Abandoned);
        assert_eq!(rows[0].duration_ms, Some(2000));
    }
}
