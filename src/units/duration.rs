//! Durations written as `90s`, `15m`, `26h`, `7d`, `2w` or combined (`1h30m`).

use std::time::Duration;

use super::ValueError;

pub const EXPECTED: &str = "a duration such as \"90s\", \"15m\", \"26h\", \"7d\" or \"1h30m\"";

/// The longest duration a plan may write: ten years (3650d). Longer ones are typos, and every
/// sum of a duration and a date stays far from overflowing.
pub const MAX: Duration = Duration::from_secs(3650 * 86_400);

pub fn parse(text: &str) -> Result<Duration, ValueError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ValueError::Empty("duration"));
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut saw_unit = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => {
                return Err(ValueError::UnknownUnit {
                    unit: c.to_string(),
                    text: text.into(),
                });
            }
        };
        if digits.is_empty() {
            return Err(ValueError::NumberFirst {
                unit: c,
                text: text.into(),
            });
        }
        let n: u64 = digits
            .parse()
            .map_err(|_| ValueError::TooLarge(text.into()))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| ValueError::TooLarge(text.into()))?;
        digits.clear();
        saw_unit = true;
    }
    if !digits.is_empty() {
        return Err(if saw_unit {
            ValueError::TrailingNumber(text.into())
        } else {
            ValueError::NoUnit(text.into(), "")
        });
    }
    if total > MAX.as_secs() {
        return Err(ValueError::TooLong(text.into()));
    }
    Ok(Duration::from_secs(total))
}

/// An age for people: exact under an hour, to the minute beyond.
pub fn age(secs: u64) -> String {
    let secs = if secs < 3600 { secs } else { secs - secs % 60 };
    format(Duration::from_secs(secs))
}

/// Formats the way the plan language writes it: `26h`, `1h30m`, `0s`.
/// A measured figure in seconds as people read it (at least `1s`).
pub fn figure(seconds: f64) -> String {
    format(Duration::from_secs((seconds as u64).max(1)))
}

pub fn format(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    // Whole days read as days ("8d"); otherwise hours stay hours ("26h", not "1d2h").
    let units: &[(u64, &str)] = if secs.is_multiple_of(86_400) {
        &[(86_400, "d")]
    } else {
        &[(3600, "h"), (60, "m"), (1, "s")]
    };
    for &(unit, name) in units {
        if secs >= unit {
            out.push_str(&format!("{}{name}", secs / unit));
            secs %= unit;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse("26h").unwrap(), Duration::from_secs(26 * 3600));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("2w").unwrap(), Duration::from_secs(14 * 86_400));
        assert_eq!(parse("45s").unwrap(), Duration::from_secs(45));
    }

    #[test]
    fn rejects_missing_or_unknown_units() {
        assert!(parse("26").unwrap_err().to_string().contains("no unit"));
        assert!(
            parse("1h30")
                .unwrap_err()
                .to_string()
                .contains("without a unit")
        );
        assert!(
            parse("5y")
                .unwrap_err()
                .to_string()
                .contains("unknown unit")
        );
        assert!(parse("h").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn formats_round_trip() {
        for s in ["26h", "1h30m", "7d", "45s", "26h3m4s"] {
            assert_eq!(format(parse(s).unwrap()), s);
        }
    }
}
