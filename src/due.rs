//! The due decision: has a fire time passed since the step's last success? (pure)

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::store::activities::History;
use crate::units::schedule::Schedule;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Due {
        /// The newest fire time that has passed (None: never succeeded).
        fire: Option<DateTime<Utc>>,
        /// How many fire times passed since the last success; they make one run.
        missed: usize,
        reason: String,
    },
    NotDue {
        next: Option<DateTime<Utc>>,
        reason: String,
    },
}

impl Decision {
    pub fn is_due(&self) -> bool {
        matches!(self, Decision::Due { .. })
    }

    pub fn reason(&self) -> &str {
        match self {
            Decision::Due { reason, .. } | Decision::NotDue { reason, .. } => reason,
        }
    }
}

pub struct Input<'a> {
    pub schedule: Option<&'a Schedule>,
    pub tz: Tz,
    /// False when taken off the schedule (`OPS_VERIFY_AUTO=false`).
    pub auto: bool,
    pub retry_after: Duration,
    pub history: &'a History,
    pub now: DateTime<Utc>,
}

pub fn local(t: DateTime<Utc>, tz: Tz) -> String {
    crate::clock::local_minute(t, tz)
}

pub fn decide(i: &Input) -> Decision {
    let Some(schedule) = i.schedule else {
        return Decision::NotDue {
            next: None,
            reason: "no schedule: runs only when named".into(),
        };
    };
    if !i.auto {
        return Decision::NotDue {
            next: None,
            reason: "off the schedule (OPS_VERIFY_AUTO=false)".into(),
        };
    }
    if let Some(failed) = i.history.last_failure {
        let retry = failed + i.retry_after;
        if i.now < retry {
            return Decision::NotDue {
                next: Some(retry),
                reason: format!(
                    "failed at {}; retried no sooner than {}",
                    local(failed, i.tz),
                    local(retry, i.tz)
                ),
            };
        }
    }
    let Some(success) = i.history.last_success else {
        let after_failure = if i.history.last_failure.is_some() {
            " (retry)"
        } else {
            ""
        };
        return Decision::Due {
            fire: None,
            missed: 0,
            reason: format!("never succeeded{after_failure}"),
        };
    };
    match schedule.next_after(success, i.tz) {
        Some(fire) if fire <= i.now => {
            let mut missed = 1;
            let mut newest = fire;
            let mut t = fire;
            while missed < 10_000 {
                match schedule.next_after(t, i.tz) {
                    Some(n) if n <= i.now => {
                        missed += 1;
                        newest = n;
                        t = n;
                    }
                    _ => break,
                }
            }
            let extra = if missed > 1 {
                format!(" ({missed} fire times missed, one run)")
            } else {
                String::new()
            };
            Decision::Due {
                fire: Some(newest),
                missed,
                reason: format!(
                    "fire time {} passed since last success {}{extra}",
                    local(newest, i.tz),
                    local(success, i.tz)
                ),
            }
        }
        next => Decision::NotDue {
            next,
            reason: format!("last success {}", local(success, i.tz)),
        },
    }
}

/// The next time the step would become due, for `plan show`.
pub fn next_due(i: &Input) -> Option<DateTime<Utc>> {
    match decide(i) {
        Decision::Due { .. } => Some(i.now),
        Decision::NotDue { next, .. } => next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn decide_at(
        cron: &str,
        tz: &str,
        success: Option<&str>,
        failure: Option<&str>,
        now: &str,
    ) -> Decision {
        let schedule = Schedule::parse(cron).unwrap();
        let history = History {
            last_success: success.map(utc),
            last_failure: failure.map(utc),
        };
        decide(&Input {
            schedule: Some(&schedule),
            tz: tz.parse().unwrap(),
            auto: true,
            retry_after: Duration::from_secs(15 * 60),
            history: &history,
            now: utc(now),
        })
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            cron: &'static str,
            tz: &'static str,
            success: Option<&'static str>,
            failure: Option<&'static str>,
            now: &'static str,
            due: bool,
            fire_or_next: Option<&'static str>,
            missed: usize,
        }
        let cases = [
            Case {
                name: "never succeeded: due at once",
                cron: "0 2 * * *",
                tz: "UTC",
                success: None,
                failure: None,
                now: "2026-03-01T12:00:00Z",
                due: true,
                fire_or_next: None,
                missed: 0,
            },
            Case {
                name: "fire time passed since success",
                cron: "0 2 * * *",
                tz: "UTC",
                success: Some("2026-03-01T02:00:05Z"),
                failure: None,
                now: "2026-03-02T02:00:00Z",
                due: true,
                fire_or_next: Some("2026-03-02T02:00:00Z"),
                missed: 1,
            },
            Case {
                name: "one minute before the fire time",
                cron: "0 2 * * *",
                tz: "UTC",
                success: Some("2026-03-01T02:00:05Z"),
                failure: None,
                now: "2026-03-02T01:59:00Z",
                due: false,
                fire_or_next: Some("2026-03-02T02:00:00Z"),
                missed: 0,
            },
            Case {
                name: "catch-up after three days down: one run",
                cron: "0 2 * * *",
                tz: "UTC",
                success: Some("2026-03-01T02:00:05Z"),
                failure: None,
                now: "2026-03-04T09:00:00Z",
                due: true,
                fire_or_next: Some("2026-03-04T02:00:00Z"),
                missed: 3,
            },
            Case {
                name: "failed 5 minutes ago: wait for retry-after",
                cron: "0 2 * * *",
                tz: "UTC",
                success: Some("2026-03-01T02:00:05Z"),
                failure: Some("2026-03-02T02:01:00Z"),
                now: "2026-03-02T02:06:00Z",
                due: false,
                fire_or_next: Some("2026-03-02T02:16:00Z"),
                missed: 0,
            },
            Case {
                name: "failed 20 minutes ago: retried",
                cron: "0 2 * * *",
                tz: "UTC",
                success: Some("2026-03-01T02:00:05Z"),
                failure: Some("2026-03-02T02:01:00Z"),
                now: "2026-03-02T02:21:00Z",
                due: true,
                fire_or_next: Some("2026-03-02T02:00:00Z"),
                missed: 1,
            },
            Case {
                name: "never succeeded, failed just now: retry-after holds",
                cron: "0 2 * * *",
                tz: "UTC",
                success: None,
                failure: Some("2026-03-02T02:01:00Z"),
                now: "2026-03-02T02:02:00Z",
                due: false,
                fire_or_next: Some("2026-03-02T02:16:00Z"),
                missed: 0,
            },
            // Europe/Prague springs forward on 2026-03-29: 02:00 CET becomes 03:00 CEST.
            Case {
                name: "spring forward: 02:30 does not exist, runs once at 03:00 CEST",
                cron: "30 2 * * *",
                tz: "Europe/Prague",
                success: Some("2026-03-28T01:30:05Z"),
                failure: None,
                now: "2026-03-29T01:00:00Z",
                due: true,
                fire_or_next: Some("2026-03-29T01:00:00Z"),
                missed: 1,
            },
            Case {
                name: "spring forward: not due before the gap ends",
                cron: "30 2 * * *",
                tz: "Europe/Prague",
                success: Some("2026-03-28T01:30:05Z"),
                failure: None,
                now: "2026-03-29T00:59:00Z",
                due: false,
                fire_or_next: Some("2026-03-29T01:00:00Z"),
                missed: 0,
            },
            Case {
                name: "spring forward: after the run, next is the following day",
                cron: "30 2 * * *",
                tz: "Europe/Prague",
                success: Some("2026-03-29T01:00:05Z"),
                failure: None,
                now: "2026-03-29T12:00:00Z",
                due: false,
                fire_or_next: Some("2026-03-30T00:30:00Z"),
                missed: 0,
            },
            // Europe/Prague falls back on 2026-10-25: 02:30 happens twice (CEST, then CET).
            Case {
                name: "fall back: first 02:30 (CEST) fires",
                cron: "30 2 * * *",
                tz: "Europe/Prague",
                success: Some("2026-10-24T00:30:05Z"),
                failure: None,
                now: "2026-10-25T00:30:00Z",
                due: true,
                fire_or_next: Some("2026-10-25T00:30:00Z"),
                missed: 1,
            },
            Case {
                name: "fall back: the repeated 02:30 (CET) does not fire again",
                cron: "30 2 * * *",
                tz: "Europe/Prague",
                success: Some("2026-10-25T00:30:05Z"),
                failure: None,
                now: "2026-10-25T01:45:00Z",
                due: false,
                fire_or_next: Some("2026-10-26T01:30:00Z"),
                missed: 0,
            },
            Case {
                name: "weekly: Sunday 03:15 in Prague",
                cron: "15 3 * * 0",
                tz: "Europe/Prague",
                success: Some("2026-11-22T02:15:10Z"),
                failure: None,
                now: "2026-11-28T12:00:00Z",
                due: false,
                fire_or_next: Some("2026-11-29T02:15:00Z"),
                missed: 0,
            },
        ];
        for c in cases {
            let d = decide_at(c.cron, c.tz, c.success, c.failure, c.now);
            assert_eq!(d.is_due(), c.due, "{}: {d:?}", c.name);
            match d {
                Decision::Due { fire, missed, .. } => {
                    assert_eq!(fire, c.fire_or_next.map(utc), "{}", c.name);
                    assert_eq!(missed, c.missed, "{}", c.name);
                }
                Decision::NotDue { next, .. } => {
                    assert_eq!(next, c.fire_or_next.map(utc), "{}", c.name)
                }
            }
        }
    }

    #[test]
    fn unscheduled_and_switched_off_steps_are_never_due() {
        let history = History::default();
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut input = Input {
            schedule: None,
            tz: chrono_tz::UTC,
            auto: true,
            retry_after: Duration::from_secs(900),
            history: &history,
            now,
        };
        assert!(!decide(&input).is_due());
        let s = Schedule::parse("* * * * *").unwrap();
        input.schedule = Some(&s);
        input.auto = false;
        assert!(decide(&input).reason().contains("OPS_VERIFY_AUTO=false"));
    }
}
