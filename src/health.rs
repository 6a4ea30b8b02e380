//! Backup health (pure): what is on disk and in the activity log, the thresholds and "now" →
//! one check per dump, snapshot and verify step. `status`, reports, metrics and alerts all
//! read this one evaluation, so they never disagree.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::activity::ActivityStatus;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Warn,
    Crit,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warn => "warn",
            Severity::Crit => "crit",
        }
    }

    /// Monitoring-plugin exit code: 0 OK, 1 WARNING, 2 CRITICAL.
    pub fn exit_code(self) -> i32 {
        match self {
            Severity::Ok => 0,
            Severity::Warn => 1,
            Severity::Crit => 2,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Ok,
    Stale,
    Overdue,
    Incomplete,
    Fail,
    Missing,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Stale => "stale",
            State::Overdue => "overdue",
            State::Incomplete => "incomplete",
            State::Fail => "fail",
            State::Missing => "missing",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    Dump,
    Snapshot,
    Verify,
    Drill,
    /// An offsite copy: its artifact is the newest dump the destination holds.
    Copy,
    /// A repository check (`restic check`): overdue like a verify.
    #[serde(rename = "repo_check")]
    RepoCheck,
    /// The dead-man: the newest `plan apply` of this state database (`ops-run/apply`).
    Apply,
    /// Whether the plans load (`ops-run/plans`): a typo in a live plan stops every backup.
    Plans,
    /// A PostgreSQL base backup: stale and failed by age, as a dump.
    #[serde(rename = "base_backup")]
    BaseBackup,
    /// The WAL archive: its newest segment's age, and no segment missing since the oldest
    /// kept base backup.
    Wal,
}

/// The `plan` of the checks that belong to the whole state database, not to one plan: every
/// plan's alert channels carry them.
pub const GLOBAL: &str = "ops-run";

/// Default thresholds of the `apply` check (plan settings `apply-stale-after`,
/// `apply-fail-after`): the timer runs every 5 minutes.
pub const APPLY_STALE: Duration = Duration::from_secs(15 * 60);
pub const APPLY_FAIL: Duration = Duration::from_secs(3600);

/// A check of the whole state database.
fn global(step: &str, kind: CheckKind, state: State, severity: Severity, detail: String) -> Check {
    Check {
        id: format!("{GLOBAL}/{step}"),
        plan: GLOBAL.to_string(),
        step: step.to_string(),
        kind,
        state,
        severity,
        age_seconds: None,
        last_success: None,
        last_attempt: None,
        last_attempt_status: None,
        artifact: None,
        artifact_size: None,
        detail,
        stale_after_seconds: None,
        fail_after_seconds: None,
        overdue_after_seconds: None,
        excerpt: None,
        tables: None,
        rows: None,
        row_changes: Vec::new(),
    }
}

/// `ops-run/apply`: the newest `plan apply` against its thresholds. Never applied is no
/// alarm: steps may be run by another scheduler, and a new install's missing dumps speak.
pub fn apply_check(
    last: Option<DateTime<Utc>>,
    stale: Duration,
    fail: Duration,
    now: DateTime<Utc>,
) -> Check {
    let age = last.map(|at| Duration::from_secs((now - at).num_seconds().max(0) as u64));
    let (state, severity, detail) = match age {
        // Steps run only by `run` (a scheduler of the application's own) need no apply; a
        // timer that stopped is seen by the age of the last apply it made.
        None => (
            State::Ok,
            Severity::Ok,
            "no plan apply recorded yet (the timer or cron runs `ops-run plan apply`)".to_string(),
        ),
        Some(a) if a > fail => (
            State::Fail,
            Severity::Crit,
            format!(
                "the last plan apply was {} ago, past apply-fail-after {}: backups have stopped (the timer or cron is not running ops-run)",
                secs(a),
                secs(fail)
            ),
        ),
        Some(a) if a > stale => (
            State::Stale,
            Severity::Warn,
            format!(
                "the last plan apply was {} ago, past apply-stale-after {}",
                secs(a),
                secs(stale)
            ),
        ),
        Some(a) => (
            State::Ok,
            Severity::Ok,
            format!("the last plan apply was {} ago", secs(a)),
        ),
    };
    let mut c = global("apply", CheckKind::Apply, state, severity, detail);
    c.age_seconds = age.map(|a| a.as_secs());
    c.last_success = last;
    c.stale_after_seconds = Some(stale.as_secs());
    c.fail_after_seconds = Some(fail.as_secs());
    c
}

/// `ops-run/plans`: the plans load, or do not (`problems`: the diagnostics, one per line).
pub fn plans_check(problems: Option<&str>, files: usize) -> Check {
    match problems {
        None => global(
            "plans",
            CheckKind::Plans,
            State::Ok,
            Severity::Ok,
            format!(
                "the plans load ({files} file{})",
                if files == 1 { "" } else { "s" }
            ),
        ),
        Some(p) => global(
            "plans",
            CheckKind::Plans,
            State::Fail,
            Severity::Crit,
            format!(
                "the plans do not load: nothing runs until they do\n{}",
                p.trim_end()
            ),
        ),
    }
}

/// The newest finished run of a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub at: DateTime<Utc>,
    pub status: ActivityStatus,
    pub excerpt: String,
}

/// What is known of one step, gathered from disk and the store.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// The newest good artifact (dump with its sidecar, snapshot marker): path and time taken.
    pub artifact: Option<(String, DateTime<Utc>)>,
    pub artifact_size: Option<u64>,
    pub last_success: Option<DateTime<Utc>>,
    pub last_attempt: Option<Run>,
    /// A layout file dated after now (a copied or renamed file, a wrong clock): never
    /// evidence; it makes the check at least a warning, naming the file.
    pub future: Option<String>,
    /// A dump of the step found damaged (its name, and what found it): critical while it is
    /// there.
    pub damaged: Option<(String, String)>,
    /// The newest good dump's manifest: what it holds, and the tables it found had lost rows
    /// since the dump before (a warning or, by the plan's `row-drop fail=`, critical).
    pub manifest: Option<crate::artifact::manifest::Manifest>,
    /// WAL files missing from the archive (named): recovery cannot pass them.
    pub gaps: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Thresholds {
    /// Dump and snapshot: warn past this age.
    pub stale_after: Option<Duration>,
    /// Dump: critical past this age.
    pub fail_after: Option<Duration>,
    /// Verify: warn when the last success is older.
    pub overdue_after: Option<Duration>,
    /// Snapshot: `incomplete fail` makes an incomplete run critical, `warn` a warning.
    pub incomplete_is_crit: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// `plan/step`.
    pub id: String,
    pub plan: String,
    pub step: String,
    pub kind: CheckKind,
    pub state: State,
    pub severity: Severity,
    /// Seconds since the newest good artifact (dump, snapshot) or last success (verify).
    pub age_seconds: Option<u64>,
    #[serde(serialize_with = "crate::clock::ser_opt_stamp")]
    pub last_success: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::clock::ser_opt_stamp")]
    pub last_attempt: Option<DateTime<Utc>>,
    pub last_attempt_status: Option<ActivityStatus>,
    pub artifact: Option<String>,
    pub artifact_size: Option<u64>,
    pub detail: String,
    pub stale_after_seconds: Option<u64>,
    pub fail_after_seconds: Option<u64>,
    pub overdue_after_seconds: Option<u64>,
    /// The failed run's output tail, for reports (never sent by alerts unless asked).
    #[serde(skip)]
    pub excerpt: Option<String>,
    /// A dump: the rows per table of the newest good dump, from its manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tables: Option<crate::artifact::manifest::Tables>,
    /// …and their sum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// The tables whose rows moved most since the dump before (`orders +1,204`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub row_changes: Vec<String>,
}

fn secs(d: Duration) -> String {
    crate::units::duration::format(Duration::from_secs(d.as_secs()))
}

/// The most telling line of a run's output: the tool's first error line (its later lines
/// often follow from the first), else the tool's last words, else ops-run's own closing line.
/// Cut to 200 characters; `None` for an empty output.
pub fn cause(excerpt: &str) -> Option<String> {
    const SIGNS: [&str; 10] = [
        "error",
        "fatal",
        "failed",
        "denied",
        "cannot",
        "could not",
        "no such",
        "refused",
        "timed out",
        "killed",
    ];
    let lines: Vec<&str> = excerpt
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tool = || lines.iter().filter(|l| !l.starts_with("ops-run: "));
    let line = tool()
        .find(|l| tool_error(l).is_some())
        .or_else(|| {
            tool().find(|l| {
                let l = l.to_lowercase();
                SIGNS.iter().any(|s| l.contains(s))
            })
        })
        .or_else(|| tool().next_back())
        .or(lines.last())?;
    let mut cut: String = line.chars().take(200).collect();
    if cut.len() < line.len() {
        cut.push('…');
    }
    Some(cut)
}

/// A tool's own error line, from its marker on: `psql:…: ERROR:  permission denied …`,
/// `FATAL:`, `PANIC:`, restic's `Fatal:`, MariaDB's `ERROR 1044 (42000) …`, git's `fatal:`.
pub fn tool_error(line: &str) -> Option<&str> {
    const MARKERS: [&str; 6] = ["ERROR:", "FATAL:", "PANIC:", "Fatal:", "fatal:", "ERROR "];
    MARKERS
        .iter()
        .filter_map(|m| line.find(m))
        .min()
        .map(|i| line[i..].trim())
}

/// The first tool error line of an output, cut to 200 characters.
pub fn first_tool_error(excerpt: &str) -> Option<String> {
    let line = excerpt.lines().find_map(tool_error)?;
    let mut cut: String = line.chars().take(200).collect();
    if cut.len() < line.len() {
        cut.push('…');
    }
    Some(cut)
}

fn failed(status: ActivityStatus) -> bool {
    matches!(
        status,
        ActivityStatus::Failed | ActivityStatus::Timeout | ActivityStatus::Abandoned
    )
}

/// Evaluates one step. Boundaries: exactly at a threshold is still inside it; one second past
/// is over.
pub fn evaluate(
    id: &str,
    plan: &str,
    step: &str,
    kind: CheckKind,
    facts: &Facts,
    t: &Thresholds,
    now: DateTime<Utc>,
) -> Check {
    // Whole seconds, as ages are shown and thresholds written: a dump exactly `stale-after`
    // old is still ok, even when the command's clock has moved on by a few milliseconds.
    let age = |at: DateTime<Utc>| Duration::from_secs((now - at).num_seconds().max(0) as u64);
    let over = |age: Duration, limit: Option<Duration>| limit.is_some_and(|l| age > l);
    let attempt_failed = facts.last_attempt.as_ref().filter(|r| failed(r.status));
    let incomplete = facts
        .last_attempt
        .as_ref()
        .filter(|r| r.status == ActivityStatus::Incomplete);
    // `the newest run failed at 2026-11-28 02:00 UTC: pg_dump: error: … password
    // authentication failed`: the cause travels with the state to status, page and alerts.
    let ran = |run: &Run| {
        let what = match kind {
            CheckKind::Verify => "restore test",
            CheckKind::Drill => "drill",
            CheckKind::RepoCheck => "repository check",
            _ => "run",
        };
        let at = run.at.format("%Y-%m-%d %H:%M UTC");
        match cause(&run.excerpt) {
            Some(why) => format!("the newest {what} {} at {at}: {why}", run.status),
            None => format!("the newest {what} {} at {at}", run.status),
        }
    };
    let reference = match kind {
        CheckKind::Verify | CheckKind::Drill | CheckKind::RepoCheck => facts.last_success,
        _ => facts.artifact.as_ref().map(|(_, at)| *at),
    };
    let age_now = reference.map(age);
    let (state, severity, detail) = match kind {
        CheckKind::Dump
        | CheckKind::Snapshot
        | CheckKind::Copy
        | CheckKind::BaseBackup
        | CheckKind::Wal => match (&facts.artifact, age_now) {
            (None, _) | (_, None) => {
                let none = match kind {
                    CheckKind::Dump => "no good dump (a file with its sidecar) on disk",
                    CheckKind::Copy => "nothing copied to the destination yet",
                    CheckKind::BaseBackup => "no base backup (a file with its sidecar) on disk",
                    CheckKind::Wal => {
                        "no WAL segment archived yet (is the server's archive_command set? `ops-run plan show` prints it)"
                    }
                    _ => "no snapshot marker on disk",
                };
                match attempt_failed {
                    // The contract: a newest run that failed is `fail`, and says why.
                    Some(run) => (State::Fail, Severity::Crit, format!("{}; {none}", ran(run))),
                    None => (State::Missing, Severity::Crit, none.to_string()),
                }
            }
            (Some(_), Some(a)) => {
                if let Some(run) = attempt_failed {
                    (State::Fail, Severity::Crit, ran(run))
                } else if matches!(
                    kind,
                    CheckKind::Dump | CheckKind::BaseBackup | CheckKind::Wal
                ) && over(a, t.fail_after)
                {
                    (
                        State::Fail,
                        Severity::Crit,
                        format!(
                            "newest {} is {} old, past fail-after {}",
                            match kind {
                                CheckKind::BaseBackup => "base backup",
                                CheckKind::Wal => "archived WAL segment",
                                _ => "dump",
                            },
                            secs(a),
                            secs(t.fail_after.unwrap_or_default())
                        ),
                    )
                } else if let Some(run) = incomplete.filter(|_| kind == CheckKind::Snapshot) {
                    let sev = if t.incomplete_is_crit {
                        Severity::Crit
                    } else {
                        Severity::Warn
                    };
                    (
                        State::Incomplete,
                        sev,
                        format!(
                            "the newest run at {} could not read some files",
                            run.at.format("%Y-%m-%d %H:%M UTC")
                        ),
                    )
                } else if over(a, t.stale_after) {
                    (
                        State::Stale,
                        Severity::Warn,
                        format!(
                            "newest is {} old, past stale-after {}",
                            secs(a),
                            secs(t.stale_after.unwrap_or_default())
                        ),
                    )
                } else {
                    (
                        State::Ok,
                        Severity::Ok,
                        format!("newest is {} old", secs(a)),
                    )
                }
            }
        },
        // (`Apply` and `Plans` are made by `apply_check` and `plans_check`.)
        CheckKind::Verify
        | CheckKind::Drill
        | CheckKind::RepoCheck
        | CheckKind::Apply
        | CheckKind::Plans => {
            let what = match kind {
                CheckKind::Drill => "drill",
                CheckKind::RepoCheck => "repository check",
                _ => "restore",
            };
            if let Some(run) = attempt_failed {
                (State::Fail, Severity::Crit, ran(run))
            } else if let Some(run) = incomplete.filter(|_| kind == CheckKind::Drill) {
                // A drill that restored everything but took longer, or found older backups,
                // than its objectives allow.
                (State::Incomplete, Severity::Warn, ran(run))
            } else {
                match age_now {
                    None => (
                        State::Overdue,
                        Severity::Warn,
                        match kind {
                            CheckKind::Drill => "never drilled",
                            CheckKind::RepoCheck => "never checked",
                            _ => "never verified",
                        }
                        .to_string(),
                    ),
                    Some(a) if over(a, t.overdue_after) => (
                        State::Overdue,
                        Severity::Warn,
                        format!(
                            "last successful {what} {} ago, past overdue-after {}",
                            secs(a),
                            secs(t.overdue_after.unwrap_or_default())
                        ),
                    ),
                    Some(a) => (
                        State::Ok,
                        Severity::Ok,
                        format!("last successful {what} {} ago", secs(a)),
                    ),
                }
            }
        }
    };
    let (severity, detail) = match &facts.future {
        Some(file) => (
            severity.max(Severity::Warn),
            format!("{detail}; ignored {file}: it is dated in the future"),
        ),
        None => (severity, detail),
    };
    // Data gone since the dump before: named, table by table, while the newest good dump is
    // the one that found it.
    let drops = facts.manifest.as_ref().map_or(&[][..], |m| &m.drops[..]);
    let (state, severity, detail) = if drops.is_empty() || state == State::Fail {
        (state, severity, detail)
    } else {
        let failed = drops.iter().any(|d| d.severity == "fail");
        let said = drops
            .iter()
            .map(crate::artifact::manifest::RowDrop::describe)
            .collect::<Vec<_>>()
            .join("; ");
        let (s, sev) = if failed {
            (State::Fail, Severity::Crit)
        } else {
            (State::Incomplete, Severity::Warn)
        };
        (
            if sev >= severity { s } else { state },
            severity.max(sev),
            format!("data gone: {said}; {detail}"),
        )
    };
    let (state, severity, detail) = match &facts.gaps {
        Some(missing) => (
            State::Fail,
            Severity::Crit,
            format!("WAL missing from the archive: {missing}; no recovery can pass it; {detail}"),
        ),
        None => (state, severity, detail),
    };
    let (state, severity, detail) = match &facts.damaged {
        Some((dump, why)) => (
            State::Fail,
            Severity::Crit,
            format!(
                "{dump} is damaged ({why}); {detail}. Look at it, then delete it with its sidecar"
            ),
        ),
        None => (state, severity, detail),
    };
    Check {
        id: id.to_string(),
        plan: plan.to_string(),
        step: step.to_string(),
        kind,
        state,
        severity,
        age_seconds: age_now.map(|a| a.as_secs()),
        last_success: facts.last_success,
        last_attempt: facts.last_attempt.as_ref().map(|r| r.at),
        last_attempt_status: facts.last_attempt.as_ref().map(|r| r.status),
        artifact: facts.artifact.as_ref().map(|(p, _)| p.clone()),
        artifact_size: facts.artifact_size,
        detail,
        stale_after_seconds: t.stale_after.map(|d| d.as_secs()),
        fail_after_seconds: t.fail_after.map(|d| d.as_secs()),
        overdue_after_seconds: t.overdue_after.map(|d| d.as_secs()),
        excerpt: facts
            .last_attempt
            .as_ref()
            .filter(|r| r.status != ActivityStatus::Success)
            .map(|r| r.excerpt.clone()),
        tables: facts.manifest.as_ref().map(|m| m.tables.clone()),
        rows: facts.manifest.as_ref().map(|m| m.rows),
        row_changes: Vec::new(),
    }
}

impl Check {
    /// The thresholds that apply, as people read them: `stale 26h, fail 50h`.
    pub fn limits(&self) -> String {
        [
            ("stale", self.stale_after_seconds),
            ("fail", self.fail_after_seconds),
            ("overdue", self.overdue_after_seconds),
        ]
        .into_iter()
        .filter_map(|(label, v)| v.map(|s| format!("{label} {}", secs(Duration::from_secs(s)))))
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// The worst severity of all checks (ok when there are none).
pub fn overall(checks: &[Check]) -> Severity {
    checks
        .iter()
        .map(|c| c.severity)
        .max()
        .unwrap_or(Severity::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const H: u64 = 3600;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap()
    }

    fn ago(secs: u64) -> DateTime<Utc> {
        now() - chrono::Duration::seconds(secs as i64)
    }

    fn dump_thresholds() -> Thresholds {
        Thresholds {
            stale_after: Some(Duration::from_secs(26 * H)),
            fail_after: Some(Duration::from_secs(50 * H)),
            overdue_after: None,
            incomplete_is_crit: true,
        }
    }

    fn facts(artifact_age: Option<u64>, last: Option<(&str, u64)>) -> Facts {
        Facts {
            artifact: artifact_age.map(|a| ("/b/db/full.sql.gz".to_string(), ago(a))),
            artifact_size: Some(10),
            last_success: artifact_age.map(ago),
            last_attempt: last.map(|(s, a)| Run {
                at: ago(a),
                status: ActivityStatus::parse(s).unwrap(),
                excerpt: "boom".into(),
            }),
            future: None,
            damaged: None,
            manifest: None,
            gaps: None,
        }
    }

    #[test]
    fn dump_table() {
        type Case<'a> = (
            &'a str,
            Option<u64>,
            Option<(&'a str, u64)>,
            State,
            Severity,
        );
        let cases: [Case; 9] = [
            (
                "fresh",
                Some(H),
                Some(("success", H)),
                State::Ok,
                Severity::Ok,
            ),
            (
                "exactly at stale-after",
                Some(26 * H),
                None,
                State::Ok,
                Severity::Ok,
            ),
            (
                "one second past stale-after",
                Some(26 * H + 1),
                None,
                State::Stale,
                Severity::Warn,
            ),
            (
                "exactly at fail-after",
                Some(50 * H),
                None,
                State::Stale,
                Severity::Warn,
            ),
            (
                "one second past fail-after",
                Some(50 * H + 1),
                None,
                State::Fail,
                Severity::Crit,
            ),
            (
                "newest run failed, old dump fresh",
                Some(H),
                Some(("failed", 60)),
                State::Fail,
                Severity::Crit,
            ),
            (
                "newest run abandoned",
                Some(H),
                Some(("abandoned", 60)),
                State::Fail,
                Severity::Crit,
            ),
            (
                "no dump on disk (deleted by hand)",
                None,
                Some(("success", H)),
                State::Missing,
                Severity::Crit,
            ),
            (
                "no dump and the run failed",
                None,
                Some(("failed", 60)),
                State::Fail,
                Severity::Crit,
            ),
        ];
        for (name, age, last, state, sev) in cases {
            let c = evaluate(
                "p/db",
                "p",
                "db",
                CheckKind::Dump,
                &facts(age, last),
                &dump_thresholds(),
                now(),
            );
            assert_eq!((c.state, c.severity), (state, sev), "{name}: {}", c.detail);
        }
    }

    #[test]
    fn a_failed_run_says_why() {
        let mut f = facts(None, Some(("failed", 60)));
        f.last_attempt.as_mut().unwrap().excerpt = "pg_dump: error: connection to server failed: FATAL:  password authentication failed for user \"backup\"\npassword retrieved from file \"/x\"\nops-run: pg_dump exited with status 1; no dump was kept".into();
        let c = evaluate(
            "p/db",
            "p",
            "db",
            CheckKind::Dump,
            &f,
            &dump_thresholds(),
            now(),
        );
        assert_eq!(c.state, State::Fail);
        assert!(
            c.detail.contains("password authentication failed for user")
                && c.detail
                    .ends_with("no good dump (a file with its sidecar) on disk"),
            "{}",
            c.detail
        );
    }

    #[test]
    fn the_cause_is_the_first_error_else_the_tools_last_words() {
        assert_eq!(cause(""), None);
        assert_eq!(cause("a\nb\nops-run: exited 1").as_deref(), Some("b"));
        assert_eq!(
            cause("ops-run: exited 1").as_deref(),
            Some("ops-run: exited 1")
        );
        assert_eq!(
            cause("ERROR: x\nERROR: follows\nops-run: psql exited 3").as_deref(),
            Some("ERROR: x")
        );
        let long = format!("error: {}", "y".repeat(300));
        assert_eq!(cause(&long).unwrap().chars().count(), 201);
        // The tool's own error line wins over ops-run's words that merely say it failed.
        let verify = "dump: full.sql.gz\nresult: failed: the import failed: psql exited with status 1\npsql:<stdin>:3: ERROR:  permission denied to create database";
        assert_eq!(
            cause(verify).as_deref(),
            Some("psql:<stdin>:3: ERROR:  permission denied to create database")
        );
        assert_eq!(
            first_tool_error(verify).as_deref(),
            Some("ERROR:  permission denied to create database")
        );
        assert_eq!(
            first_tool_error("Fatal: unable to open config file").as_deref(),
            Some("Fatal: unable to open config file")
        );
        assert_eq!(first_tool_error("all is well"), None);
    }

    #[test]
    fn snapshot_table() {
        let mut t = Thresholds {
            stale_after: Some(Duration::from_secs(26 * H)),
            fail_after: None,
            overdue_after: None,
            incomplete_is_crit: false,
        };
        let c = evaluate(
            "p/s",
            "p",
            "s",
            CheckKind::Snapshot,
            &facts(Some(2 * H), Some(("incomplete", 60))),
            &t,
            now(),
        );
        assert_eq!((c.state, c.severity), (State::Incomplete, Severity::Warn));
        t.incomplete_is_crit = true;
        let c = evaluate(
            "p/s",
            "p",
            "s",
            CheckKind::Snapshot,
            &facts(Some(2 * H), Some(("incomplete", 60))),
            &t,
            now(),
        );
        assert_eq!((c.state, c.severity), (State::Incomplete, Severity::Crit));
        let c = evaluate(
            "p/s",
            "p",
            "s",
            CheckKind::Snapshot,
            &facts(Some(26 * H + 1), None),
            &t,
            now(),
        );
        assert_eq!(c.state, State::Stale);
        // Snapshots have no fail-after: old is stale, never fail by age.
        let c = evaluate(
            "p/s",
            "p",
            "s",
            CheckKind::Snapshot,
            &facts(Some(900 * H), None),
            &t,
            now(),
        );
        assert_eq!((c.state, c.severity), (State::Stale, Severity::Warn));
        let c = evaluate(
            "p/s",
            "p",
            "s",
            CheckKind::Snapshot,
            &facts(None, None),
            &t,
            now(),
        );
        assert_eq!((c.state, c.severity), (State::Missing, Severity::Crit));
    }

    #[test]
    fn verify_table() {
        let t = Thresholds {
            stale_after: None,
            fail_after: None,
            overdue_after: Some(Duration::from_secs(192 * H)),
            incomplete_is_crit: true,
        };
        let verify = |success: Option<u64>, last: Option<(&str, u64)>| {
            let f = Facts {
                artifact: None,
                artifact_size: None,
                last_success: success.map(ago),
                last_attempt: last.map(|(s, a)| Run {
                    at: ago(a),
                    status: ActivityStatus::parse(s).unwrap(),
                    excerpt: String::new(),
                }),
                future: None,
                damaged: None,
                manifest: None,
                gaps: None,
            };
            let c = evaluate("p/v", "p", "v", CheckKind::Verify, &f, &t, now());
            (c.state, c.severity)
        };
        assert_eq!(verify(Some(192 * H), None), (State::Ok, Severity::Ok));
        assert_eq!(
            verify(Some(192 * H + 1), None),
            (State::Overdue, Severity::Warn)
        );
        assert_eq!(verify(None, None), (State::Overdue, Severity::Warn));
        assert_eq!(
            verify(Some(H), Some(("failed", 60))),
            (State::Fail, Severity::Crit)
        );
        assert_eq!(
            verify(Some(2 * H), Some(("success", 2 * H))),
            (State::Ok, Severity::Ok)
        );
    }

    #[test]
    fn overall_is_the_worst() {
        let t = dump_thresholds();
        let ok = evaluate(
            "a",
            "p",
            "a",
            CheckKind::Dump,
            &facts(Some(H), None),
            &t,
            now(),
        );
        let warn = evaluate(
            "b",
            "p",
            "b",
            CheckKind::Dump,
            &facts(Some(30 * H), None),
            &t,
            now(),
        );
        assert_eq!(overall(&[]), Severity::Ok);
        assert_eq!(overall(std::slice::from_ref(&ok)), Severity::Ok);
        assert_eq!(overall(&[ok, warn]), Severity::Warn);
    }
}
