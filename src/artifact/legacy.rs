//! Recognising backup files of an older layout (pure): what a file is, and when it was made,
//! from dates in its name (`crm-2024-01-02.sql.gz`, `backup_20240102_0300.sql.gz`,
//! `2024-01-02T03:00.sql.gz`) or, failing that, from its modification time.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

use super::codec::Codec;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A dump, gzip or zstd.
    Dump(Codec),
    Snapshot,
    Verify {
        failed: bool,
    },
    Report,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Dump(_) => "dump",
            Kind::Snapshot => "snapshot marker",
            Kind::Verify { .. } => "verify log",
            Kind::Report => "report",
        }
    }
}

pub fn classify(name: &str) -> Option<Kind> {
    let lower = name.to_ascii_lowercase();
    if lower.starts_with('.') {
        return None;
    }
    if let Some(codec) = Codec::of_name(&lower) {
        Some(Kind::Dump(codec))
    } else if lower.ends_with(".txt") && lower.contains("snapshot") {
        Some(Kind::Snapshot)
    } else if lower.ends_with(".log") && lower.contains("verify") {
        Some(Kind::Verify {
            failed: lower.contains("fail"),
        })
    } else if lower.ends_with(".md") && lower.contains("report") {
        Some(Kind::Report)
    } else {
        None
    }
}

fn digits(s: &[u8], at: usize, n: usize) -> Option<u32> {
    let part = s.get(at..at + n)?;
    if !part.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(part).ok()?.parse().ok()
}

/// A date (and time, when the name has one) found in a file name.
pub fn date_in_name(name: &str) -> Option<NaiveDateTime> {
    let b = name.as_bytes();
    for start in 0..b.len() {
        // The date must not be the tail of a longer number.
        if start > 0 && b[start - 1].is_ascii_digit() {
            continue;
        }
        // YYYY-mm-dd or YYYYmmdd
        let (date, mut at) = if let (Some(y), Some(b'-'), Some(m), Some(b'-'), Some(d)) = (
            digits(b, start, 4),
            b.get(start + 4),
            digits(b, start + 5, 2),
            b.get(start + 7),
            digits(b, start + 8, 2),
        ) {
            (NaiveDate::from_ymd_opt(y as i32, m, d), start + 10)
        } else if let (Some(y), Some(m), Some(d)) = (
            digits(b, start, 4),
            digits(b, start + 4, 2),
            digits(b, start + 6, 2),
        ) {
            (NaiveDate::from_ymd_opt(y as i32, m, d), start + 8)
        } else {
            continue;
        };
        let Some(date) = date.filter(|d| (1990..=2200).contains(&chrono::Datelike::year(d))) else {
            continue;
        };
        if b.get(at).is_some_and(u8::is_ascii_digit) {
            continue;
        }
        // An optional time: separator, then HH:MM, HH-MM or HHMM.
        let mut time = NaiveTime::MIN;
        if matches!(b.get(at), Some(b'T' | b'_' | b'-' | b' ')) {
            at += 1;
            let hm = if let (Some(h), Some(b':' | b'-'), Some(m)) =
                (digits(b, at, 2), b.get(at + 2), digits(b, at + 3, 2))
            {
                Some((h, m, at + 5))
            } else if let (Some(h), Some(m)) = (digits(b, at, 2), digits(b, at + 2, 2)) {
                Some((h, m, at + 4))
            } else {
                None
            };
            if let Some((h, m, end)) = hm
                && !b.get(end).is_some_and(u8::is_ascii_digit)
                && let Some(t) = NaiveTime::from_hms_opt(h, m, 0)
            {
                time = t;
            }
        }
        return Some(date.and_time(time));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Option<String> {
        date_in_name(s).map(|d| d.format("%Y-%m-%d %H:%M").to_string())
    }

    #[test]
    fn dates_in_names() {
        assert_eq!(
            at("crm-2024-01-02.sql.gz").as_deref(),
            Some("2024-01-02 00:00")
        );
        assert_eq!(
            at("backup_20240102_0300.sql.gz").as_deref(),
            Some("2024-01-02 03:00")
        );
        assert_eq!(
            at("2024-01-02T03:00.sql.gz").as_deref(),
            Some("2024-01-02 03:00")
        );
        assert_eq!(
            at("db-2024-01-02_23-45.sql.gz").as_deref(),
            Some("2024-01-02 23:45")
        );
        assert_eq!(at("dump.sql.gz"), None);
        assert_eq!(at("crm-v2-1234567.sql.gz"), None);
        assert_eq!(at("backup-20241399.sql.gz"), None);
    }

    #[test]
    fn kinds() {
        assert_eq!(
            classify("crm-2024-01-02.sql.gz"),
            Some(Kind::Dump(Codec::Gzip))
        );
        assert_eq!(
            classify("crm-2024-01-02.SQL.ZST"),
            Some(Kind::Dump(Codec::Zstd))
        );
        assert_eq!(classify("snapshot-20240102.txt"), Some(Kind::Snapshot));
        assert_eq!(
            classify("verify-2024-01-02-fail.log"),
            Some(Kind::Verify { failed: true })
        );
        assert_eq!(classify("weekly-report-2024-01-08.md"), Some(Kind::Report));
        assert_eq!(classify("notes.txt"), None);
        assert_eq!(classify("crm.sql"), None);
    }
}
