//! Cron schedules (5 fields) evaluated in a plan's time zone.

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use super::ValueError;

pub const EXPECTED: &str =
    "a 5-field cron expression such as \"0 2 * * *\" (minute hour day-of-month month day-of-week)";

#[derive(Clone, Debug)]
pub struct Schedule {
    pub expr: String,
    cron: Cron,
}

impl Schedule {
    pub fn parse(expr: &str) -> Result<Schedule, ValueError> {
        let fields = expr.split_whitespace().count();
        if !expr.trim_start().starts_with('@') && fields != 5 {
            return Err(ValueError::CronFields {
                expr: expr.into(),
                fields,
            });
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| ValueError::Cron {
                expr: expr.into(),
                why: e.to_string(),
            })?;
        Ok(Schedule {
            expr: expr.to_string(),
            cron,
        })
    }

    /// The first fire time strictly after `after`, in `tz`.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        // Fire times are whole minutes; croner would carry the fraction of `after` along.
        let after = after.with_nanosecond(0).unwrap_or(after);
        self.cron
            .find_next_occurrence(&after.with_timezone(&tz), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The last fire time at or before `at`, in `tz`.
    pub fn last_at_or_before(&self, at: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let at = at.with_nanosecond(0).unwrap_or(at);
        self.cron
            .find_previous_occurrence(&at.with_timezone(&tz), true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

pub fn parse_timezone(name: &str) -> Result<Tz, ValueError> {
    name.parse::<Tz>()
        .map_err(|_| ValueError::TimeZone(name.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_wrong_field_counts_and_values() {
        assert!(
            Schedule::parse("0 2 * *")
                .unwrap_err()
                .to_string()
                .contains("4 fields")
        );
        assert!(
            Schedule::parse("0 0 2 * * *")
                .unwrap_err()
                .to_string()
                .contains("6 fields")
        );
        assert!(Schedule::parse("61 2 * * *").is_err());
        assert!(Schedule::parse("0 2 * * 0").is_ok());
    }

    #[test]
    fn time_zones() {
        assert!(parse_timezone("Europe/Prague").is_ok());
        assert!(parse_timezone("Europe/Praha").is_err());
    }
}
