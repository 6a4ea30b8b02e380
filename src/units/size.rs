//! Byte sizes written as `512B`, `10KB`, `1MiB`, `2GiB` (SI and binary units), and percentages.

use super::ValueError;

pub const EXPECTED: &str = "a size such as \"512KiB\", \"1MiB\" or \"2GB\"";

const UNIT_NAMES: &str = " (B, KB, KiB, MB, MiB, GB, GiB, TB, TiB)";

pub fn parse(text: &str) -> Result<u64, ValueError> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(ValueError::NoNumber(text.into()));
    }
    let n: f64 = num
        .parse()
        .map_err(|_| ValueError::NotANumber(num.into()))?;
    let mult: u64 = match unit.trim() {
        "B" => 1,
        "KB" | "kB" => 1000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        "TB" => 1_000_000_000_000,
        "TiB" => 1 << 40,
        "" => {
            return Err(ValueError::NoUnit(text.into(), UNIT_NAMES));
        }
        other => {
            return Err(ValueError::UnknownSizeUnit(other.into()));
        }
    };
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(ValueError::TooLarge(text.into()));
    }
    Ok(bytes.round() as u64)
}

/// `"50%"` → 50.0; between 0 and 100.
pub fn parse_percent(text: &str) -> Result<f64, ValueError> {
    let t = text.trim();
    let num = t
        .strip_suffix('%')
        .ok_or_else(|| ValueError::NoPercent(text.into()))?;
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| ValueError::NotANumber(num.into()))?;
    if !(0.0..=100.0).contains(&v) {
        return Err(ValueError::PercentRange(text.into()));
    }
    Ok(v)
}

/// Human form for output: `1.5 MiB`.
pub fn format(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_si_and_binary_units() {
        assert_eq!(parse("1MiB").unwrap(), 1_048_576);
        assert_eq!(parse("1MB").unwrap(), 1_000_000);
        assert_eq!(parse("512B").unwrap(), 512);
        assert_eq!(parse("1.5KiB").unwrap(), 1536);
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(parse("10").unwrap_err().to_string().contains("no unit"));
        assert!(
            parse("10 parsecs")
                .unwrap_err()
                .to_string()
                .contains("unknown unit")
        );
        assert!(parse("MiB").is_err());
    }

    #[test]
    fn percentages() {
        assert_eq!(parse_percent("50%").unwrap(), 50.0);
        assert!(parse_percent("50").is_err());
        assert!(parse_percent("150%").is_err());
    }
}
