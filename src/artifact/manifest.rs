//! A dump's manifest, `<dump>.manifest.json`, beside its sha256 sidecar: what the file is
//! (sha256, bytes, uncompressed length, engine and tool, when it was taken) and what it holds
//! — the rows of every table, counted while the dump was written. Every restore compares the
//! tables it brought back with it; each new dump is compared with the previous one's, so data
//! that vanished upstream is named. The sidecar stays as it was (`sha256sum -c` keeps
//! working); a dump made before manifests has none and keeps working.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::layout;

/// Rows per table, by the table's name as the dump writes it (`public.orders`, `orders`).
pub type Tables = BTreeMap<String, u64>;

/// The format this ops-run writes; a manifest of a newer one is still read for its tables.
pub const FORMAT: u32 = 1;

/// The largest manifest read (a dump of a million tables stays well below).
const MAX_BYTES: u64 = 64 << 20;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The dump's file name.
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
    pub uncompressed_bytes: u64,
    pub engine: String,
    pub tool_version: String,
    pub started_at: String,
    pub finished_at: String,
    /// Rows per table, as the dump holds them.
    pub tables: Tables,
    /// All rows.
    pub rows: u64,
    /// Tables that lost rows (or vanished) since the previous good dump, found when this one
    /// was made: the older dump is kept while this one exists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drops: Vec<RowDrop>,
    /// An encrypted dump: `sha256` and `bytes` are of the encrypted file (the sidecar's);
    /// this says what it decrypts to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
}

/// What an encrypted dump decrypts to, and to whom it was encrypted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    /// `age`.
    pub format: String,
    /// The public keys (`age1…`).
    pub recipients: Vec<String>,
    /// SHA-256 and length of the compressed dump inside (what `age -d` gives).
    pub plaintext_sha256: String,
    pub plaintext_bytes: u64,
}

/// A table that lost rows between two dumps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowDrop {
    pub table: String,
    /// Rows in the previous good dump.
    pub before: u64,
    /// Rows in this one; `None`: the table is gone.
    pub after: Option<u64>,
    /// The previous dump's file name and when it was taken.
    pub previous: String,
    pub since: String,
    /// `warn` or `fail`.
    pub severity: String,
}

impl RowDrop {
    /// `orders: 182,344 → 12 rows (−99.99 %) since 2026-12-03 02:00`, or `orders: gone (had
    /// 182,344 rows) since …`.
    pub fn describe(&self) -> String {
        if self.previous.is_empty() && self.after.is_none() {
            return format!("{}: not in the dump (expect-tables)", self.table);
        }
        match self.after {
            Some(after) => {
                let pct = if self.before == 0 {
                    0.0
                } else {
                    (self.before - after.min(self.before)) as f64 * 100.0 / self.before as f64
                };
                format!(
                    "{}: {} → {} rows (−{} %) since {}",
                    self.table,
                    thousands(self.before),
                    thousands(after),
                    percent(pct),
                    self.since
                )
            }
            None => format!(
                "{}: gone (had {} rows) since {}",
                self.table,
                thousands(self.before),
                self.since
            ),
        }
    }
}

/// A share of 100 with as many decimals as it takes to not round a loss to 100 or to 0.
fn percent(p: f64) -> String {
    if (99.995..100.0).contains(&p) {
        format!("{p:.4}").trim_end_matches('0').to_string()
    } else if p == p.trunc() {
        format!("{p:.0}")
    } else {
        format!("{p:.2}")
    }
}

/// `182344` → `182,344`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The tables whose rows moved most between two dumps, biggest change first: `orders
/// +1,204`, `sessions −3,400`, `audit (new) 12`, `old (gone)`; at most `n`.
pub fn movers(before: &Tables, now: &Tables, n: usize) -> Vec<String> {
    let mut moved: Vec<(u64, String)> = Vec::new();
    for (table, &rows) in now {
        match before.get(table) {
            Some(&had) if had != rows => {
                let (sign, by) = if rows > had {
                    ('+', rows - had)
                } else {
                    ('−', had - rows)
                };
                moved.push((by, format!("{table} {sign}{}", thousands(by))));
            }
            Some(_) => {}
            None => moved.push((rows, format!("{table} (new) {}", thousands(rows)))),
        }
    }
    for (table, &had) in before {
        if !now.contains_key(table) {
            moved.push((had.max(1), format!("{table} (gone)")));
        }
    }
    moved.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    moved.into_iter().take(n).map(|(_, s)| s).collect()
}

/// `<dump>.manifest.json`.
pub fn path(dump: &Path) -> PathBuf {
    let mut s = dump.as_os_str().to_owned();
    s.push(".manifest.json");
    PathBuf::from(s)
}

/// The manifest of `dump`: `None` when it has none (a dump made before manifests).
pub fn read(dump: &Path) -> Result<Option<Manifest>, String> {
    let p = path(dump);
    let file = match std::fs::File::open(&p) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", p.display())),
    };
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_BYTES), &mut text)
        .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| format!("{} is not a manifest: {e}", p.display()))
}

/// Writes `dump`'s manifest atomically (a temporary name, fsync, rename).
pub fn write(dump: &Path, m: &Manifest) -> std::io::Result<()> {
    let mut text = serde_json::to_vec_pretty(m).map_err(std::io::Error::other)?;
    text.push(b'\n');
    layout::write_atomic(&path(dump), &text)
}

/// A restore's rows against what the dump holds: a line per table for the evidence log, and
/// each difference (a table with other rows, a table not restored).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    pub lines: Vec<String>,
    pub differences: Vec<String>,
}

/// Compares `restored` (each table's `count(*)`, or why it could not be counted) with
/// `expected`, the manifest's tables.
pub fn compare(expected: &Tables, restored: &[(String, Result<u64, String>)]) -> Comparison {
    let mut c = Comparison::default();
    for (table, &want) in expected {
        let got = restored.iter().find(|(t, _)| t == table).map(|(_, r)| r);
        match got {
            Some(Ok(n)) if *n == want => c
                .lines
                .push(format!("rows: {table} {} (as dumped)", thousands(*n))),
            Some(Ok(n)) => {
                c.lines.push(format!(
                    "rows: {table} {} (dump {}): DIFFERENT",
                    thousands(*n),
                    thousands(want)
                ));
                c.differences.push(format!(
                    "{table}: dump {} rows, restored {}",
                    thousands(want),
                    thousands(*n)
                ));
            }
            Some(Err(why)) => {
                c.lines.push(format!(
                    "rows: {table} not restored (dump {}): {why}",
                    thousands(want)
                ));
                c.differences.push(format!(
                    "{table}: in the dump ({} rows), not restored",
                    thousands(want)
                ));
            }
            None => {
                c.lines.push(format!(
                    "rows: {table} not counted (dump {})",
                    thousands(want)
                ));
                c.differences.push(format!(
                    "{table}: in the dump ({} rows), not counted",
                    thousands(want)
                ));
            }
        }
    }
    c
}

impl Comparison {
    /// The differences in one line: the first five, and how many more.
    pub fn summary(&self) -> Option<String> {
        if self.differences.is_empty() {
            return None;
        }
        let mut s = self.differences[..self.differences.len().min(5)].join("; ");
        if self.differences.len() > 5 {
            s.push_str(&format!("; and {} more", self.differences.len() - 5));
        }
        Some(format!("the restored rows are not the dump's: {s}"))
    }
}

/// What counts as data gone between two dumps.
#[derive(Clone, Debug, PartialEq)]
pub struct DropRules {
    /// A table that lost more than this share of its rows is a warning…
    pub warn: f64,
    /// …or a failure (`None`: never).
    pub fail: Option<f64>,
    /// Losses below this many rows are never a drop.
    pub min_rows: u64,
    /// Tables that may shrink or vanish.
    pub allow: Vec<String>,
}

impl Default for DropRules {
    fn default() -> Self {
        DropRules {
            warn: 50.0,
            fail: None,
            min_rows: 1000,
            allow: Vec::new(),
        }
    }
}

/// The tables of `now` that lost rows since `before` (`previous` names that dump, `since`
/// says when it was taken). A vanished table is always a drop (unless allowed), whatever
/// its size.
pub fn drops(
    before: &Tables,
    now: &Tables,
    rules: &DropRules,
    previous: &str,
    since: &str,
) -> Vec<RowDrop> {
    let mut out = Vec::new();
    for (table, &had) in before {
        if rules.allow.iter().any(|a| a == table || short(table) == a) {
            continue;
        }
        let after = now.get(table).copied();
        let severity = match after {
            // A vanished table lost everything, whatever its size.
            None if rules.fail.is_some_and(|f| f < 100.0) => Some("fail"),
            None => Some("warn"),
            Some(n) if n < had => {
                let lost = had - n;
                let share = lost as f64 * 100.0 / had as f64;
                if lost < rules.min_rows {
                    None
                } else if rules.fail.is_some_and(|f| share > f) {
                    Some("fail")
                } else if share > rules.warn {
                    Some("warn")
                } else {
                    None
                }
            }
            Some(_) => None,
        };
        if let Some(severity) = severity {
            out.push(RowDrop {
                table: table.clone(),
                before: had,
                after,
                previous: previous.to_string(),
                since: since.to_string(),
                severity: severity.to_string(),
            });
        }
    }
    out
}

/// A table's name without its schema: `public.orders` → `orders` (as `allow-drop` and
/// `expect-tables` may write it).
pub fn short(table: &str) -> &str {
    // A quoted name may hold dots; the schema ends at the last dot outside quotes.
    let mut quoted = false;
    let mut cut = None;
    for (i, c) in table.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => cut = Some(i),
            _ => {}
        }
    }
    match cut {
        Some(i) => &table[i + 1..],
        None => table,
    }
}

/// Whether `name` (as a plan writes it: `orders`, `public.orders`, `"Order Items"`) is the
/// table `table` of a manifest.
pub fn names(table: &str, name: &str) -> bool {
    let unquote = |s: &str| {
        s.strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .map_or_else(|| s.to_string(), |s| s.replace("\"\"", "\""))
    };
    table == name || short(table) == name || unquote(short(table)) == unquote(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(pairs: &[(&str, u64)]) -> Tables {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn a_table_that_lost_most_rows_or_vanished_is_a_drop() {
        let before = t(&[
            ("public.orders", 182_344),
            ("public.small", 900),
            ("public.gone", 3),
            ("public.sessions", 50_000),
            ("public.half", 10_000),
        ]);
        let now = t(&[
            ("public.orders", 12),
            ("public.small", 0),
            ("public.sessions", 0),
            ("public.half", 5_000),
        ]);
        let rules = DropRules {
            allow: vec!["sessions".into()],
            ..DropRules::default()
        };
        let d = drops(&before, &now, &rules, "full-x.sql.gz", "2026-12-03 02:00");
        let described: Vec<String> = d.iter().map(RowDrop::describe).collect();
        assert_eq!(
            described,
            [
                "public.gone: gone (had 3 rows) since 2026-12-03 02:00",
                "public.orders: 182,344 → 12 rows (−99.99 %) since 2026-12-03 02:00",
            ]
        );
        let fail = DropRules {
            fail: Some(90.0),
            ..DropRules::default()
        };
        let d = drops(&before, &now, &fail, "p", "s");
        let orders = d.iter().find(|d| d.table == "public.orders").unwrap();
        assert_eq!(orders.severity, "fail");
        assert!(
            d.iter()
                .any(|d| d.table == "public.sessions" && d.severity == "fail")
        );
    }

    #[test]
    fn a_restore_is_compared_table_by_table() {
        let expected = t(&[("a", 3), ("b", 182_344), ("c", 1)]);
        let restored = vec![
            ("a".to_string(), Ok(3)),
            ("b".to_string(), Ok(182_300)),
            (
                "c".to_string(),
                Err("relation \"c\" does not exist".to_string()),
            ),
        ];
        let c = compare(&expected, &restored);
        assert_eq!(
            c.differences,
            [
                "b: dump 182,344 rows, restored 182,300",
                "c: in the dump (1 rows), not restored"
            ]
        );
        assert_eq!(c.lines[0], "rows: a 3 (as dumped)");
        assert!(
            c.summary()
                .unwrap()
                .starts_with("the restored rows are not the dump's: b: dump")
        );
        assert_eq!(
            compare(
                &expected,
                &[
                    ("a".into(), Ok(3)),
                    ("b".into(), Ok(182_344)),
                    ("c".into(), Ok(1))
                ]
            )
            .summary(),
            None
        );
    }

    #[test]
    fn the_biggest_movers_come_first() {
        let before = t(&[("a", 10), ("b", 5000), ("c", 7), ("gone", 3)]);
        let now = t(&[("a", 12), ("b", 1000), ("c", 7), ("new", 40)]);
        assert_eq!(
            movers(&before, &now, 3),
            ["b −4,000", "new (new) 40", "gone (gone)"]
        );
    }

    #[test]
    fn names_match_with_or_without_schema_and_quotes() {
        assert!(names("public.orders", "orders"));
        assert!(names("public.orders", "public.orders"));
        assert!(names("public.\"Order Items\"", "Order Items"));
        assert!(names("public.\"a.b\"", "\"a.b\""));
        assert!(!names("public.orders", "order"));
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(12), "12");
    }

    #[test]
    fn a_manifest_round_trips_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let dump = dir.path().join("full-20261204-0200.sql.gz");
        assert_eq!(read(&dump).unwrap(), None);
        let m = Manifest {
            format: FORMAT,
            file: "full-20261204-0200.sql.gz".into(),
            tables: t(&[("orders", 3)]),
            rows: 3,
            ..Manifest::default()
        };
        write(&dump, &m).unwrap();
        assert_eq!(read(&dump).unwrap(), Some(m));
        std::fs::write(path(&dump), "{").unwrap();
        assert!(read(&dump).unwrap_err().contains("is not a manifest"));
    }
}
