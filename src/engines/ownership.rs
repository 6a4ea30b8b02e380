//! Ownership and privileges in a dump's SQL, left out of an import (as `pg_restore --no-owner
//! --no-acl` does): a scratch database belongs to whoever loads it. A backup role that owns
//! nothing cannot run `ALTER TABLE … OWNER TO postgres` or create a view `DEFINER=root`, and
//! a restore test must not fail on what the role may not do. The filter works line by line on
//! bytes (a dump need not be UTF-8) and only at statement starts outside strings, dollar
//! quotes and `COPY` data, so no row and no function body is ever touched.

use std::borrow::Cow;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Decides, line by line, what of a dump reaches the client.
pub trait LineFilter: Send {
    /// The line (with its `\n`) as it goes on; an empty result leaves it out.
    fn line<'a>(&mut self, line: &'a [u8]) -> Cow<'a, [u8]>;
    /// Inside `COPY` rows: lines pass unchanged until one starts with `\.`.
    fn in_copy(&self) -> bool {
        false
    }
    /// Every line passes unchanged.
    fn passes_all(&self) -> bool {
        false
    }
}

/// How much of `buf` is whole `COPY` rows: up to the first line that starts with `\.` (the
/// end of the rows, which must go through the line-by-line path), or else up to the last
/// newline. Rows are most of a dump: they pass in bulk instead of line by line.
pub fn copy_rows(buf: &[u8]) -> usize {
    if buf.starts_with(b"\\.") {
        return 0;
    }
    match memchr::memmem::find(buf, b"\n\\.") {
        Some(i) => i + 1,
        None => memchr::memrchr(b'\n', buf).map_or(0, |i| i + 1),
    }
}

/// Something that takes a dump's SQL line by line, and `COPY` rows in bulk.
pub trait Lines {
    /// Inside `COPY` rows (they may come in bulk).
    fn in_copy(&self) -> bool;
    /// Whole rows of a `COPY` block, many lines at once.
    fn rows(&mut self, rows: &[u8]) -> std::io::Result<()>;
    /// One whole line, with its `\n`.
    fn line(&mut self, line: &[u8]) -> std::io::Result<()>;
}

/// Hands `buf` to `sink` as whole lines (rows in bulk); `pending` keeps the unterminated end
/// between writes.
pub fn write_lines<S: Lines + ?Sized>(
    sink: &mut S,
    pending: &mut Vec<u8>,
    buf: &[u8],
) -> std::io::Result<()> {
    let mut rest = buf;
    loop {
        if pending.is_empty() && sink.in_copy() {
            let n = copy_rows(rest);
            if n > 0 {
                sink.rows(&rest[..n])?;
                rest = &rest[n..];
                continue;
            }
        }
        let Some(i) = memchr::memchr(b'\n', rest) else {
            break;
        };
        let (line, after) = rest.split_at(i + 1);
        if pending.is_empty() {
            sink.line(line)?;
        } else {
            pending.extend_from_slice(line);
            let whole = std::mem::take(pending);
            sink.line(&whole)?;
        }
        rest = after;
    }
    pending.extend_from_slice(rest);
    Ok(())
}

/// A writer passing whole lines through a filter; `finish` passes the last, unterminated one.
pub struct Filtered<'a, W: Write + ?Sized> {
    inner: &'a mut W,
    filter: Box<dyn LineFilter>,
    pending: Vec<u8>,
    /// How many lines were left out or rewritten.
    pub changed: Arc<AtomicU64>,
}

impl<'a, W: Write + ?Sized> Filtered<'a, W> {
    pub fn new(inner: &'a mut W, filter: Box<dyn LineFilter>, changed: Arc<AtomicU64>) -> Self {
        Filtered {
            inner,
            filter,
            pending: Vec::new(),
            changed,
        }
    }

    fn pass(&mut self, line: &[u8]) -> std::io::Result<()> {
        let out = self.filter.line(line);
        // A borrowed line is the line itself: no need to compare it byte by byte.
        if matches!(out, Cow::Owned(_)) && out.as_ref() != line {
            self.changed.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.write_all(&out)
    }

    pub fn get_ref(&self) -> &W {
        self.inner
    }

    pub fn finish(mut self) -> std::io::Result<()> {
        let rest = std::mem::take(&mut self.pending);
        if !rest.is_empty() {
            self.pass(&rest)?;
        }
        self.inner.flush()
    }
}

impl<W: Write + ?Sized> Lines for Filtered<'_, W> {
    fn in_copy(&self) -> bool {
        self.filter.in_copy()
    }

    fn rows(&mut self, rows: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(rows)
    }

    fn line(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.pass(line)
    }
}

impl<W: Write + ?Sized> Write for Filtered<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.filter.passes_all() && self.pending.is_empty() {
            return self.inner.write_all(buf).map(|()| buf.len());
        }
        let mut pending = std::mem::take(&mut self.pending);
        let r = write_lines(self, &mut pending, buf);
        self.pending = pending;
        r.map(|()| buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Keeps every line (`ownership keep`, SQLite).
pub struct Keep;

impl LineFilter for Keep {
    fn line<'a>(&mut self, line: &'a [u8]) -> Cow<'a, [u8]> {
        Cow::Borrowed(line)
    }

    fn passes_all(&self) -> bool {
        true
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Quote {
    #[default]
    None,
    Single,
    Double,
    Dollar(Vec<u8>),
}

/// Where a line of pg_dump's plain SQL stands: statement starts, quotes, `COPY` data.
#[derive(Default)]
pub struct PgLines {
    quote: Quote,
    copy: bool,
    /// The previous statement has not ended: this line goes on with it.
    mid_statement: bool,
}

/// What a line of pg_dump's plain SQL is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgLine {
    /// A row of a `COPY … FROM stdin` block.
    CopyData,
    /// The `\.` that ends a `COPY` block.
    CopyEnd,
    /// A psql meta-command at a statement start (`\connect`, `\restrict`).
    Meta,
    /// Blank, or only a comment, at a statement start.
    Blank,
    /// The first line of a statement; `copy`: a `COPY … FROM stdin;` whose rows follow;
    /// `whole`: the statement ends on this line.
    Start { copy: bool, whole: bool },
    /// A line inside a statement that began before.
    Continued,
}

impl PgLines {
    /// Inside the rows of a `COPY … FROM stdin`.
    pub fn in_copy(&self) -> bool {
        self.copy
    }

    /// This line starts a statement (not inside one, a quote or `COPY` data).
    pub fn at_start(&self) -> bool {
        !self.copy && !self.mid_statement && self.quote == Quote::None
    }

    /// Classifies `line` (with its `\n`) and moves past it.
    pub fn next(&mut self, line: &[u8]) -> PgLine {
        if self.copy {
            if line.trim_ascii_end() == b"\\." {
                self.copy = false;
                return PgLine::CopyEnd;
            }
            return PgLine::CopyData;
        }
        let at_start = self.at_start();
        // psql meta-commands (`\connect`, `\restrict`) end at the newline.
        if at_start && line.starts_with(b"\\") {
            return PgLine::Meta;
        }
        if at_start && {
            let t = line.trim_ascii();
            t.is_empty() || t.starts_with(b"--")
        } {
            return PgLine::Blank;
        }
        let starts_copy = at_start && line.starts_with(b"COPY ");
        let ended = self.scan(line);
        self.mid_statement = !(ended && self.quote == Quote::None);
        if !at_start {
            return PgLine::Continued;
        }
        let copy =
            starts_copy && !self.mid_statement && line.trim_ascii_end().ends_with(b"FROM stdin;");
        self.copy = copy;
        PgLine::Start {
            copy,
            whole: !self.mid_statement,
        }
    }
}

/// pg_dump's plain SQL: leaves out `ALTER … OWNER TO …;`, `GRANT …;`, `REVOKE …;` and
/// `ALTER DEFAULT PRIVILEGES …;` when such a statement is a whole line of its own (as pg_dump
/// writes them) at a statement start.
#[derive(Default)]
pub struct PgOwnership {
    lines: PgLines,
}

fn ownership_statement(line: &[u8]) -> bool {
    let l = line.trim_ascii();
    if !l.ends_with(b";") {
        return false;
    }
    l.starts_with(b"GRANT ")
        || l.starts_with(b"REVOKE ")
        || l.starts_with(b"ALTER DEFAULT PRIVILEGES ")
        || (l.starts_with(b"ALTER ") && memchr::memmem::find(l, b" OWNER TO ").is_some())
}

/// A dollar-quote tag (`$$`, `$body$`) starting at `at`, if there is one.
fn dollar_tag(line: &[u8], at: usize) -> Option<Vec<u8>> {
    if at > 0 && (line[at - 1].is_ascii_alphanumeric() || line[at - 1] == b'_') {
        return None; // `a$b` is an identifier, not a quote
    }
    let rest = &line[at + 1..];
    let end = rest.iter().position(|&b| b == b'$')?;
    let tag = &rest[..end];
    let valid = tag
        .first()
        .is_none_or(|c| c.is_ascii_alphabetic() || *c == b'_')
        && tag.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
    valid.then(|| line[at..at + end + 2].to_vec())
}

impl PgLines {
    /// Follows quotes through the line; whether it ends a statement (a `;` outside quotes is
    /// its last significant character).
    fn scan(&mut self, line: &[u8]) -> bool {
        let mut ended = false;
        let mut i = 0;
        while i < line.len() {
            let b = line[i];
            match &self.quote {
                Quote::None => match b {
                    b'\'' => self.quote = Quote::Single,
                    b'"' => self.quote = Quote::Double,
                    b'-' if line.get(i + 1) == Some(&b'-') => break,
                    b'$' => match dollar_tag(line, i) {
                        Some(tag) => {
                            i += tag.len();
                            self.quote = Quote::Dollar(tag);
                            ended = false;
                            continue;
                        }
                        None => ended = false,
                    },
                    b';' => ended = true,
                    _ if b.is_ascii_whitespace() => {}
                    _ => ended = false,
                },
                Quote::Single | Quote::Double => {
                    let close = if self.quote == Quote::Single {
                        b'\''
                    } else {
                        b'"'
                    };
                    if b == close {
                        if line.get(i + 1) == Some(&close) {
                            i += 1; // a doubled quote stays inside
                        } else {
                            self.quote = Quote::None;
                            ended = false;
                        }
                    }
                }
                Quote::Dollar(tag) => {
                    if line[i..].starts_with(tag) {
                        i += tag.len();
                        self.quote = Quote::None;
                        ended = false;
                        continue;
                    }
                }
            }
            i += 1;
        }
        ended
    }
}

impl LineFilter for PgOwnership {
    fn in_copy(&self) -> bool {
        self.lines.copy
    }

    fn line<'a>(&mut self, line: &'a [u8]) -> Cow<'a, [u8]> {
        if self.lines.at_start() && ownership_statement(line) && {
            // The whole statement on this line: the scan must end outside quotes.
            let mut probe = PgLines::default();
            probe.scan(line) && probe.quote == Quote::None
        } {
            return Cow::Owned(Vec::new());
        }
        self.lines.next(line);
        Cow::Borrowed(line)
    }
}

/// mysqldump / mariadb-dump: drops the `DEFINER=user@host` clause of views, triggers,
/// routines and events (they then belong to the importing user). Row data (`INSERT INTO`
/// lines) is never touched.
pub struct Definers;

/// The end of a `user@host` account (each part quoted with backticks or single quotes, or a
/// bare word such as `CURRENT_USER`) starting at `at`.
fn account_end(s: &[u8], at: usize) -> Option<usize> {
    let part = |i: usize| -> Option<usize> {
        match s.get(i)? {
            q @ (b'`' | b'\'') => {
                let mut j = i + 1;
                loop {
                    match s.get(j)? {
                        c if c == q && s.get(j + 1) == Some(q) => j += 2,
                        c if c == q => return Some(j + 1),
                        _ => j += 1,
                    }
                }
            }
            c if c.is_ascii_alphanumeric() || *c == b'_' => {
                let len = s[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                    .count();
                Some(i + len)
            }
            _ => None,
        }
    };
    let user = part(at)?;
    if s.get(user) == Some(&b'@') {
        part(user + 1)
    } else {
        Some(user)
    }
}

impl LineFilter for Definers {
    fn line<'a>(&mut self, line: &'a [u8]) -> Cow<'a, [u8]> {
        if line.starts_with(b"INSERT INTO") || memchr::memmem::find(line, b"DEFINER=").is_none() {
            return Cow::Borrowed(line);
        }
        let mut out = Vec::with_capacity(line.len());
        let mut rest = line;
        while let Some(i) = memchr::memmem::find(rest, b"DEFINER=") {
            match account_end(rest, i + b"DEFINER=".len()) {
                Some(end) => {
                    out.extend_from_slice(&rest[..i]);
                    rest = &rest[end..];
                }
                None => {
                    out.extend_from_slice(&rest[..i + 1]);
                    rest = &rest[i + 1..];
                }
            }
        }
        out.extend_from_slice(rest);
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_rows_stop_at_the_end_line_or_the_last_newline() {
        assert_eq!(copy_rows(b"1\ta\n2\tb\n\\.\nCREATE"), 8);
        assert_eq!(copy_rows(b"\\.\n"), 0);
        assert_eq!(copy_rows(b"1\n2"), 2);
        assert_eq!(copy_rows(b"12"), 0);
        // A row that only contains `\.` further in is a row.
        assert_eq!(copy_rows(b"a\\.b\nc"), 5);
    }

    fn filter(f: Box<dyn LineFilter>, text: &str, chunk: usize) -> (String, u64) {
        let mut out = Vec::new();
        let changed = Arc::new(AtomicU64::new(0));
        let mut w = Filtered::new(&mut out, f, changed.clone());
        for c in text.as_bytes().chunks(chunk) {
            w.write_all(c).unwrap();
        }
        w.finish().unwrap();
        (
            String::from_utf8(out).unwrap(),
            changed.load(Ordering::Relaxed),
        )
    }

    const PG: &str = "SET client_encoding = 'UTF8';
CREATE TABLE public.t (
    id integer,
    note text DEFAULT 'GRANT x;'
);
ALTER TABLE public.t OWNER TO postgres;
CREATE FUNCTION public.f() RETURNS void
    LANGUAGE plpgsql
    AS $_$
BEGIN
GRANT SELECT ON public.t TO app;
ALTER TABLE public.t OWNER TO app;
END
$_$;
ALTER FUNCTION public.f() OWNER TO postgres;
COMMENT ON TABLE public.t IS 'line one
GRANT ALL ON public.t TO nobody;
end';
COPY public.t (id, note) FROM stdin;
1\tGRANT ALL ON x TO y;
2\tALTER TABLE t OWNER TO z;
\\.
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT SELECT ON TABLE public.t TO backup;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT SELECT ON TABLES TO backup;
-- PostgreSQL database dump complete
";

    #[test]
    fn postgres_ownership_and_privileges_go_bodies_rows_and_strings_stay() {
        for chunk in [1, 7, 4096] {
            let (out, changed) = filter(Box::<PgOwnership>::default(), PG, chunk);
            assert_eq!(changed, 5, "{out}");
            for gone in [
                "ALTER TABLE public.t OWNER TO postgres;",
                "ALTER FUNCTION public.f() OWNER TO postgres;",
                "REVOKE ALL ON SCHEMA public FROM PUBLIC;",
                "GRANT SELECT ON TABLE public.t TO backup;",
                "ALTER DEFAULT PRIVILEGES",
            ] {
                assert!(!out.contains(gone), "{gone} stayed:\n{out}");
            }
            for kept in [
                "note text DEFAULT 'GRANT x;'",
                "GRANT SELECT ON public.t TO app;\nALTER TABLE public.t OWNER TO app;",
                "GRANT ALL ON public.t TO nobody;",
                "1\tGRANT ALL ON x TO y;\n2\tALTER TABLE t OWNER TO z;\n\\.\n",
                "-- PostgreSQL database dump complete\n",
            ] {
                assert!(out.contains(kept), "{kept} went:\n{out}");
            }
        }
    }

    #[test]
    fn keep_keeps_everything() {
        assert_eq!(filter(Box::new(Keep), PG, 3), (PG.to_string(), 0));
    }

    #[test]
    fn mariadb_definers_go_rows_stay() {
        let dump = "/*!50013 DEFINER=`root`@`localhost` SQL SECURITY DEFINER */
/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`%`*/ /*!50003 TRIGGER t BEFORE INSERT ON a FOR EACH ROW SET NEW.x = 1 */;;
CREATE DEFINER=`a``b`@`h` PROCEDURE `p`()
INSERT INTO `a` VALUES (1,'DEFINER=`root`@`localhost`');
-- Dump completed";
        let (out, changed) = filter(Box::new(Definers), dump, 5);
        assert_eq!(changed, 3, "{out}");
        assert!(!out.contains("DEFINER=`root`@`localhost` SQL"), "{out}");
        assert!(out.contains("/*!50013  SQL SECURITY DEFINER */"), "{out}");
        assert!(out.contains("/*!50017 */"), "{out}");
        assert!(out.contains("CREATE  PROCEDURE `p`()"), "{out}");
        assert!(
            out.contains("INSERT INTO `a` VALUES (1,'DEFINER=`root`@`localhost`');"),
            "{out}"
        );
        assert!(out.ends_with("-- Dump completed"), "{out}");
    }
}
