//! Value types of the plan language, one concept per file.

pub mod duration;
pub mod keep;
pub mod schedule;
pub mod size;
pub mod smtp;

/// Why a value written in a plan, a flag or the environment could not be read. The message
/// names the text; the caller adds what was expected and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    #[error("empty {0}")]
    Empty(&'static str),
    #[error("unknown unit `{unit}` in `{text}`")]
    UnknownUnit { unit: String, text: String },
    #[error("unknown unit `{0}` (B, KB, KiB, MB, MiB, GB, GiB, TB, TiB)")]
    UnknownSizeUnit(String),
    #[error("a number must come before `{unit}` in `{text}`")]
    NumberFirst { unit: char, text: String },
    #[error("`{0}` ends with a number without a unit")]
    TrailingNumber(String),
    #[error("`{0}` has no unit{1}")]
    NoUnit(String, &'static str),
    #[error("`{0}` is too large")]
    TooLarge(String),
    #[error("`{0}` is longer than the longest duration ops-run takes, 3650d (ten years)")]
    TooLong(String),
    #[error("`{0}` does not start with a number")]
    NoNumber(String),
    #[error("`{0}` is not a number")]
    NotANumber(String),
    #[error("`{0}` must end with `%`")]
    NoPercent(String),
    #[error("`{0}` is not between 0% and 100%")]
    PercentRange(String),
    #[error("`{expr}` has {fields} fields, a cron expression has 5")]
    CronFields { expr: String, fields: usize },
    #[error("`{expr}` is not a valid cron expression: {why}")]
    Cron { expr: String, why: String },
    #[error("`{0}` is not an IANA time zone name")]
    TimeZone(String),
}
