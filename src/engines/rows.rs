//! Rows per table of a dump, counted from its SQL as it streams by (the read-back of the
//! written file: what is counted is what is on disk). PostgreSQL: the lines of each
//! `COPY … FROM stdin` block; MySQL/MariaDB: the row tuples of each `INSERT … VALUES`, with
//! quotes and backslash escapes followed (a `),(` inside a string is not a row). SQLite's
//! dump counts its rows itself (`sqlite::dump`).

use std::collections::BTreeMap;

use super::ownership::{Lines, PgLine, PgLines, write_lines};
use crate::artifact::manifest::Tables;
use crate::artifact::proof::Tap;

/// pg_dump's plain SQL: each `COPY name (…) FROM stdin;` names a table (as pg_dump writes
/// it: `public.orders`, `public."Order Items"`), and each line until `\.` is one row.
#[derive(Default)]
pub struct PgRows {
    lines: PgLines,
    pending: Vec<u8>,
    current: Option<String>,
    tables: Tables,
}

/// The qualified name after `COPY ` as written: identifiers, bare or double-quoted (`""`
/// inside), joined by `.`.
pub fn copy_table(line: &[u8]) -> Option<String> {
    let rest = line.strip_prefix(b"COPY ")?;
    let mut i = 0;
    loop {
        if rest.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match rest.get(i) {
                    None => return None,
                    Some(b'"') if rest.get(i + 1) == Some(&b'"') => i += 2,
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(_) => i += 1,
                }
            }
        } else {
            let start = i;
            while rest
                .get(i)
                .is_some_and(|b| !matches!(b, b'.' | b' ' | b'(' | b'"'))
            {
                i += 1;
            }
            if i == start {
                return None;
            }
        }
        if rest.get(i) == Some(&b'.') {
            i += 1;
            continue;
        }
        break;
    }
    Some(String::from_utf8_lossy(&rest[..i]).into_owned())
}

impl Lines for PgRows {
    fn in_copy(&self) -> bool {
        self.lines.in_copy()
    }

    fn rows(&mut self, rows: &[u8]) -> std::io::Result<()> {
        let n = memchr::memchr_iter(b'\n', rows).count() as u64;
        if let Some(t) = &self.current {
            *self.tables.entry(t.clone()).or_default() += n;
        }
        Ok(())
    }

    fn line(&mut self, line: &[u8]) -> std::io::Result<()> {
        match self.lines.next(line) {
            PgLine::Start { copy: true, .. } => {
                self.current = copy_table(line);
                if let Some(t) = &self.current {
                    self.tables.entry(t.clone()).or_default();
                }
            }
            PgLine::CopyData => {
                if let Some(t) = &self.current {
                    *self.tables.entry(t.clone()).or_default() += 1;
                }
            }
            PgLine::CopyEnd => self.current = None,
            _ => {}
        }
        Ok(())
    }
}

impl Tap for PgRows {
    fn feed(&mut self, buf: &[u8]) {
        let mut pending = std::mem::take(&mut self.pending);
        // Counting cannot fail: `Lines` returns `Ok` throughout.
        let _ = write_lines(self, &mut pending, buf);
        self.pending = pending;
    }

    fn tables(self: Box<Self>) -> Tables {
        self.tables
    }
}

/// The longest line start looked at for `INSERT INTO … VALUES ` or `CREATE TABLE `…``.
const HEAD_MAX: usize = 64 * 1024;

enum Mode {
    /// At or near a line start: the line so far is in `head`.
    Head,
    /// The rest of a line that is neither.
    Skip,
    /// Inside the values of an `INSERT` into `table`.
    Values(Values),
}

struct Values {
    table: String,
    depth: u32,
    /// The quote a string is in (`'`, `"`), or 0.
    quote: u8,
    /// The previous byte was a backslash inside a string.
    escaped: bool,
    /// The previous byte was the string's quote: it ends the string unless another follows.
    closing: bool,
}

impl Values {
    /// Reads `buf` until the statement's `;`; how much it read, and whether it ended.
    fn scan(&mut self, buf: &[u8], rows: &mut u64) -> (usize, bool) {
        let mut i = 0;
        while i < buf.len() {
            if self.escaped {
                self.escaped = false;
                i += 1;
                continue;
            }
            if self.closing {
                self.closing = false;
                if buf[i] == self.quote {
                    // A doubled quote: still inside.
                    i += 1;
                    continue;
                }
                self.quote = 0;
            }
            if self.quote != 0 {
                match memchr::memchr2(b'\\', self.quote, &buf[i..]) {
                    None => return (buf.len(), false),
                    Some(j) => {
                        i += j;
                        if buf[i] == b'\\' {
                            self.escaped = true;
                        } else {
                            self.closing = true;
                        }
                        i += 1;
                    }
                }
                continue;
            }
            match buf[i] {
                b'(' => {
                    if self.depth == 0 {
                        *rows += 1;
                    }
                    self.depth += 1;
                }
                b')' => self.depth = self.depth.saturating_sub(1),
                b'\'' | b'"' => self.quote = buf[i],
                b';' if self.depth == 0 => return (i + 1, true),
                _ => {}
            }
            i += 1;
        }
        (buf.len(), false)
    }
}

/// mysqldump's SQL: `CREATE TABLE `t`` names a table (with no rows yet), and every
/// top-level `(…)` of an `INSERT INTO `t` … VALUES …;` is one row of it.
pub struct MysqlRows {
    head: Vec<u8>,
    mode: Mode,
    tables: Tables,
}

impl Default for MysqlRows {
    fn default() -> Self {
        MysqlRows {
            head: Vec::new(),
            mode: Mode::Head,
            tables: BTreeMap::new(),
        }
    }
}

/// The name in backquotes at the start of `text` (`` `a``b` `` is `` a`b ``).
fn backquoted(text: &[u8]) -> Option<String> {
    backquoted_at(text).map(|(name, _)| name)
}

/// …and how many bytes of `text` it took, quotes included.
fn backquoted_at(text: &[u8]) -> Option<(String, usize)> {
    let rest = text.strip_prefix(b"`")?;
    let mut name = Vec::new();
    let mut i = 0;
    loop {
        match rest.get(i)? {
            b'`' if rest.get(i + 1) == Some(&b'`') => {
                name.push(b'`');
                i += 2;
            }
            b'`' => return Some((String::from_utf8_lossy(&name).into_owned(), i + 2)),
            b => {
                name.push(*b);
                i += 1;
            }
        }
    }
}

/// `INSERT INTO `t` [(`a`, …)] VALUES` and one blank at the start of `head` (mysqldump
/// writes `VALUES (1),(2);` on one line, mariadb-dump `VALUES` and then a row per line): the
/// table, and where its values start.
fn insert_values(head: &[u8]) -> Option<(String, usize)> {
    let rest = head.strip_prefix(INSERT)?;
    let (table, mut i) = backquoted_at(rest)?;
    let blank = |b: &u8| b.is_ascii_whitespace();
    while rest.get(i).is_some_and(blank) {
        i += 1;
    }
    if rest.get(i) == Some(&b'(') {
        // A column list (`--complete-insert`): backquoted names, which may hold anything.
        i += 1;
        loop {
            match rest.get(i)? {
                b'`' => i += backquoted_at(&rest[i..])?.1,
                b')' => {
                    i += 1;
                    break;
                }
                _ => i += 1,
            }
        }
        while rest.get(i).is_some_and(blank) {
            i += 1;
        }
    }
    let after = rest.get(i..)?.strip_prefix(b"VALUES")?;
    after
        .first()
        .filter(|b| blank(b))
        .map(|_| (table, INSERT.len() + i + b"VALUES".len() + 1))
}

const INSERT: &[u8] = b"INSERT INTO ";
const CREATE: &[u8] = b"CREATE TABLE ";

impl Tap for MysqlRows {
    fn feed(&mut self, mut buf: &[u8]) {
        while !buf.is_empty() {
            match &mut self.mode {
                Mode::Values(v) => {
                    let mut rows = 0;
                    let (used, ended) = v.scan(buf, &mut rows);
                    *self.tables.entry(v.table.clone()).or_default() += rows;
                    buf = &buf[used..];
                    if ended {
                        self.mode = Mode::Skip;
                    }
                }
                Mode::Skip => match memchr::memchr(b'\n', buf) {
                    Some(i) => {
                        buf = &buf[i + 1..];
                        self.mode = Mode::Head;
                    }
                    None => return,
                },
                Mode::Head => {
                    let end = memchr::memchr(b'\n', buf).map_or(buf.len(), |i| i + 1);
                    let take = end.min(HEAD_MAX - self.head.len()).max(1);
                    self.head.extend_from_slice(&buf[..take]);
                    buf = &buf[take..];
                    let head = &self.head;
                    let line_ended = head.ends_with(b"\n");
                    let may_insert = INSERT.starts_with(&head[..head.len().min(INSERT.len())])
                        || head.starts_with(INSERT);
                    let may_create = CREATE.starts_with(&head[..head.len().min(CREATE.len())])
                        || head.starts_with(CREATE);
                    if let Some((table, p)) = insert_values(head) {
                        self.tables.entry(table.clone()).or_default();
                        let rest = head[p..].to_vec();
                        self.head.clear();
                        self.mode = Mode::Values(Values {
                            table,
                            depth: 0,
                            quote: 0,
                            escaped: false,
                            closing: false,
                        });
                        self.feed(&rest);
                        continue;
                    }
                    if line_ended {
                        if head.starts_with(CREATE)
                            && let Some(t) = backquoted(&head[CREATE.len()..])
                        {
                            self.tables.entry(t).or_default();
                        }
                        self.head.clear();
                    } else if !(may_insert || may_create) || self.head.len() >= HEAD_MAX {
                        self.head.clear();
                        self.mode = Mode::Skip;
                    }
                }
            }
        }
    }

    fn tables(self: Box<Self>) -> Tables {
        self.tables
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text` in pieces of every size from 1 to 7 bytes and in one piece: the counts
    /// never depend on where a read ends.
    fn counted(make: fn() -> Box<dyn Tap>, text: &[u8]) -> Tables {
        let whole = {
            let mut t = make();
            t.feed(text);
            t.tables()
        };
        for size in 1..=7 {
            let mut t = make();
            for piece in text.chunks(size) {
                t.feed(piece);
            }
            assert_eq!(t.tables(), whole, "pieces of {size}");
        }
        whole
    }

    fn tables(pairs: &[(&str, u64)]) -> Tables {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn postgres_rows_are_the_lines_of_each_copy_block() {
        let sql = b"SET x = 1;\nCREATE FUNCTION f() RETURNS text AS $$\nCOPY fake (a) FROM stdin;\nx\n$$ LANGUAGE sql;\nCOPY public.orders (id, note) FROM stdin;\n1\ta),(b\n2\tit''s \\\\ \\n\n3\t\\N\n\\.\nCOPY public.\"Order \"\"Items\" (id) FROM stdin;\n\\.\nCOPY public.big (id) FROM stdin;\n1\n2\n\\.\n";
        assert_eq!(
            counted(|| Box::new(PgRows::default()), sql),
            tables(&[
                ("public.orders", 3),
                ("public.\"Order \"\"Items\"", 0),
                ("public.big", 2)
            ])
        );
    }

    #[test]
    fn mysql_rows_are_the_tuples_of_each_insert() {
        let sql = b"/*!40101 SET NAMES utf8mb4 */;\nCREATE TABLE `empty` (\n  `id` int\n);\nCREATE TABLE `orders` (\n  `id` int\n);\nINSERT INTO `orders` VALUES (1,'a),(b'),(2,'it\\'s \\\\'),(3,'say \"(\"'),(4,'doubled '' ),( quote');\nINSERT INTO `orders` VALUES (5,NULL);\nINSERT INTO `we``ird` (`a`, `b`) VALUES (1,2),(3,4);\nINSERT INTO `lines` VALUES\n(1,'x'),\n(2,'y\\n)'),\n(3,NULL);\nINSERT INTO `cols` (`a VALUES b`, `c)`) VALUES\n(1,2);\n/*!50001 CREATE VIEW `v` AS SELECT 1 AS `id` */;\n";
        assert_eq!(
            counted(|| Box::new(MysqlRows::default()), sql),
            tables(&[
                ("cols", 1),
                ("empty", 0),
                ("lines", 3),
                ("orders", 5),
                ("we`ird", 2)
            ])
        );
    }

    #[test]
    fn a_copy_header_names_its_table_as_written() {
        assert_eq!(
            copy_table(b"COPY public.orders (id) FROM stdin;\n").as_deref(),
            Some("public.orders")
        );
        assert_eq!(
            copy_table(b"COPY \"S p\".\"a\"\"b\" (id) FROM stdin;\n").as_deref(),
            Some("\"S p\".\"a\"\"b\"")
        );
        assert_eq!(copy_table(b"COPY (id) FROM stdin;\n"), None);
    }
}
