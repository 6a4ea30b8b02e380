//! Retention (pure): which good dumps a `keep` rule keeps, grandfather-father-son in the plan's
//! time zone. Only good dumps count and only good dumps go; the newest good dump and any
//! protected one (the newest verified) always stay; names outside the layout are never seen.

use std::path::PathBuf;

use chrono_tz::Tz;

use crate::artifact::layout::DumpFile;
use crate::units::keep::Keep;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Kept dumps with the first rule that kept each.
    pub keep: Vec<(PathBuf, String)>,
    pub delete: Vec<PathBuf>,
}

/// `dumps` newest first; `good` says which are good; `protected` are never deleted (each with
/// the reason it is kept).
pub fn select(
    dumps: &[DumpFile],
    good: &dyn Fn(&DumpFile) -> bool,
    keep: &Keep,
    tz: Tz,
    protected: &[(PathBuf, String)],
) -> Selection {
    let good: Vec<&DumpFile> = dumps.iter().filter(|d| good(d)).collect();
    let mut reason: Vec<Option<String>> = vec![None; good.len()];
    if let Some(r) = reason.first_mut() {
        *r = Some("newest good dump".into());
    }
    for (i, d) in good.iter().enumerate() {
        if let Some((_, why)) = protected.iter().find(|(p, _)| p == &d.path)
            && reason[i].is_none()
        {
            reason[i] = Some(why.clone());
        }
    }
    for r in reason.iter_mut().take(keep.last as usize) {
        r.get_or_insert_with(|| format!("last {}", keep.last));
    }
    let periods: [(&str, u32, &str); 5] = [
        ("hourly", keep.hourly, "%Y%m%d%H"),
        ("daily", keep.daily, "%Y%m%d"),
        ("weekly", keep.weekly, "%G%V"),
        ("monthly", keep.monthly, "%Y%m"),
        ("yearly", keep.yearly, "%Y"),
    ];
    for (name, count, fmt) in periods {
        let mut seen: Option<String> = None;
        let mut kept = 0;
        for (i, d) in good.iter().enumerate() {
            if kept >= count {
                break;
            }
            let bucket = d.taken.with_timezone(&tz).format(fmt).to_string();
            if seen.as_deref() != Some(bucket.as_str()) {
                // The newest dump of each period is the one that stands for it.
                seen = Some(bucket);
                kept += 1;
                reason[i].get_or_insert_with(|| format!("{name} {kept}"));
            }
        }
    }
    let mut out = Selection::default();
    for (d, r) in good.iter().zip(reason) {
        match r {
            Some(r) => out.keep.push((d.path.clone(), r)),
            None => out.delete.push(d.path.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::layout::parse_dump_name;

    fn dumps(names: &[&str], tz: Tz) -> Vec<DumpFile> {
        let mut v: Vec<DumpFile> = names
            .iter()
            .map(|n| {
                let (taken, seq) = parse_dump_name(n, tz).unwrap();
                DumpFile {
                    path: PathBuf::from(n),
                    name: n.to_string(),
                    taken,
                    seq,
                }
            })
            .collect();
        v.sort_by_key(|d| std::cmp::Reverse((d.taken, d.seq)));
        v
    }

    fn keep(s: &str) -> Keep {
        let mut k = Keep::default();
        for part in s.split_whitespace() {
            let (key, n) = part.split_once('=').unwrap();
            k.set(key, n.parse().unwrap());
        }
        k
    }

    fn deleted(sel: &Selection) -> Vec<String> {
        let mut v: Vec<String> = sel.delete.iter().map(|p| p.display().to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn table() {
        let tz: Tz = "Europe/Prague".parse().unwrap();
        struct Case {
            name: &'static str,
            files: &'static [&'static str],
            bad: &'static [&'static str],
            rule: &'static str,
            protected: &'static [&'static str],
            delete: &'static [&'static str],
        }
        let cases = [
            Case {
                name: "daily=3 over five days keeps the three newest days",
                files: &[
                    "full-20260101-0200.sql.gz",
                    "full-20260102-0200.sql.gz",
                    "full-20260103-0200.sql.gz",
                    "full-20260104-0200.sql.gz",
                    "full-20260105-0200.sql.gz",
                ],
                bad: &[],
                rule: "daily=3",
                protected: &[],
                delete: &["full-20260101-0200.sql.gz", "full-20260102-0200.sql.gz"],
            },
            Case {
                name: "same-day duplicates: the newest of the day stands for it",
                files: &[
                    "full-20260104-0200.sql.gz",
                    "full-20260104-1400.sql.gz",
                    "full-20260104-1400-2.sql.gz",
                    "full-20260105-0200.sql.gz",
                ],
                bad: &[],
                rule: "daily=2",
                protected: &[],
                delete: &["full-20260104-0200.sql.gz", "full-20260104-1400.sql.gz"],
            },
            Case {
                name: "gaps: a week without dumps does not count as kept days",
                files: &[
                    "full-20260101-0200.sql.gz",
                    "full-20260110-0200.sql.gz",
                    "full-20260111-0200.sql.gz",
                ],
                bad: &[],
                rule: "daily=3",
                protected: &[],
                delete: &[],
            },
            Case {
                name: "a corrupt newest dump neither counts nor goes; the newest good one stays",
                files: &[
                    "full-20260101-0200.sql.gz",
                    "full-20260102-0200.sql.gz",
                    "full-20260103-0200.sql.gz",
                ],
                bad: &["full-20260103-0200.sql.gz"],
                rule: "last=1",
                protected: &[],
                delete: &["full-20260101-0200.sql.gz"],
            },
            Case {
                name: "the newest verified dump is never deleted",
                files: &[
                    "full-20260101-0200.sql.gz",
                    "full-20260102-0200.sql.gz",
                    "full-20260103-0200.sql.gz",
                ],
                bad: &[],
                rule: "last=1",
                protected: &["full-20260101-0200.sql.gz"],
                delete: &["full-20260102-0200.sql.gz"],
            },
            Case {
                name: "weekly and monthly over a quarter",
                files: &[
                    "full-20260105-0200.sql.gz",
                    "full-20260112-0200.sql.gz",
                    "full-20260119-0200.sql.gz",
                    "full-20260126-0200.sql.gz",
                    "full-20260202-0200.sql.gz",
                    "full-20260302-0200.sql.gz",
                    "full-20260303-0200.sql.gz",
                ],
                bad: &[],
                rule: "weekly=2 monthly=3",
                protected: &[],
                // weeks: 0303+0302 share ISO week 10 → 0303; week 6 → 0202. months: 03 → 0303, 02 → 0202, 01 → 0126.
                delete: &[
                    "full-20260105-0200.sql.gz",
                    "full-20260112-0200.sql.gz",
                    "full-20260119-0200.sql.gz",
                    "full-20260302-0200.sql.gz",
                ],
            },
            Case {
                name: "days are days in the plan's time zone (00:30 Prague is the previous day in UTC)",
                files: &["full-20260105-0030.sql.gz", "full-20260105-2330.sql.gz"],
                bad: &[],
                rule: "daily=1",
                protected: &[],
                delete: &["full-20260105-0030.sql.gz"],
            },
            Case {
                name: "only bad dumps: nothing is deleted",
                files: &["full-20260101-0200.sql.gz", "full-20260102-0200.sql.gz"],
                bad: &["full-20260101-0200.sql.gz", "full-20260102-0200.sql.gz"],
                rule: "last=1",
                protected: &[],
                delete: &[],
            },
        ];
        for c in cases {
            let d = dumps(c.files, tz);
            let protected: Vec<(PathBuf, String)> = c
                .protected
                .iter()
                .map(|p| (PathBuf::from(p), "newest verified dump".to_string()))
                .collect();
            let bad = c.bad;
            let sel = select(
                &d,
                &|f: &DumpFile| !bad.contains(&f.name.as_str()),
                &keep(c.rule),
                tz,
                &protected,
            );
            assert_eq!(deleted(&sel), c.delete, "{}", c.name);
            for b in c.bad {
                assert!(
                    !sel.keep.iter().any(|(p, _)| p == &PathBuf::from(b)),
                    "{}: a bad dump was counted",
                    c.name
                );
            }
        }
    }
}
