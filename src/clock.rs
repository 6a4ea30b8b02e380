//! "Now" for every command: the real clock, or `OPS_NOW` advanced by the time elapsed since start.

use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};

#[derive(Clone, Debug)]
pub struct Clock {
    base: DateTime<Utc>,
    start: Instant,
    fixed: bool,
}

/// `OPS_NOW` that is not an RFC 3339 instant.
#[derive(Debug, thiserror::Error)]
#[error("OPS_NOW={value} is not an RFC 3339 instant: {why}")]
pub struct BadNow {
    pub value: String,
    pub why: String,
}

impl Clock {
    pub fn system() -> Clock {
        Clock {
            base: Utc::now(),
            start: Instant::now(),
            fixed: false,
        }
    }

    /// `OPS_NOW` as an RFC 3339 instant; time still moves forward from it during the command,
    /// so activities of one run keep their order.
    pub fn from_env(value: Option<&str>) -> Result<Clock, BadNow> {
        match value {
            None => Ok(Clock::system()),
            Some(v) => {
                let base = DateTime::parse_from_rfc3339(v)
                    .map_err(|e| BadNow {
                        value: v.to_string(),
                        why: e.to_string(),
                    })?
                    .with_timezone(&Utc);
                Ok(Clock {
                    base,
                    start: Instant::now(),
                    fixed: true,
                })
            }
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        if self.fixed {
            self.base + self.start.elapsed()
        } else {
            Utc::now()
        }
    }
}

/// The one timestamp format of the store: UTC, milliseconds, `Z`; sorts as text.
pub fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An instant as people read it in a plan's time zone, to the minute, with the zone's
/// abbreviation so no time is read in the wrong zone: `2026-11-28 03:10 CET`.
pub fn local_minute(t: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()
}

pub fn parse_stamp(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// serde: an optional instant in the store's format (`2026-11-28T01:00:00.000Z`).
pub fn ser_opt_stamp<S: serde::Serializer>(
    t: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&stamp(*t)),
        None => s.serialize_none(),
    }
}
