//! A PostgreSQL import on two sessions, as `pg_restore -j 2` does for its own format: the
//! schema (pre-data) and everything after the data (keys, indexes, foreign keys: post-data)
//! run in order on the main session; the `COPY` blocks of the data section are shared
//! between the main session and a helper, so two server processes load tables at once.
//!
//! Each session is fed by its own reader of the dump (decompressed twice: cheap beside the
//! load), and both readers see the same stream, so they agree on what is what:
//! - the main session takes an advisory lock as its first statement and, when the data
//!   section starts, takes a second one and lets go of the first: the helper waits until the
//!   main session holds either, then for the first to be free, so no row is loaded before its
//!   table exists;
//! - each `COPY` block belongs to whichever reader reaches it first (`Claims`): the other one
//!   skips it, so the helper takes the tables behind the one the main session is loading;
//! - at the first statement after the data section, the main session waits until the helper
//!   has ended (all its rows committed) before it goes on: no key or foreign key is checked
//!   before every row is in.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use super::ownership::{Lines, PgLine, PgLines, write_lines};

/// The advisory locks of the handshake (two int4 keys each), in the fresh database being
/// loaded: the main session holds `SCHEMA` while it creates the schema, and takes `DATA`
/// (held to its end) before it lets go of `SCHEMA`: one of the two is always held once it
/// has started.
const SCHEMA: (i32, i32) = (0x6f70_7372, 1);
const DATA: (i32, i32) = (0x6f70_7372, 2);

fn lock_sql() -> String {
    format!(
        "SELECT pg_catalog.pg_advisory_lock({}, {});\n",
        SCHEMA.0, SCHEMA.1
    )
}

fn unlock_sql() -> String {
    format!(
        "SELECT pg_catalog.pg_advisory_lock({}, {});\nSELECT pg_catalog.pg_advisory_unlock({}, {});\n",
        DATA.0, DATA.1, SCHEMA.0, SCHEMA.1
    )
}

/// The helper's first statements: check every 100 ms for a client that went away
/// (PostgreSQL 14 and later; older servers skip it), so a helper whose main session never
/// came ends with its ops-run instead of waiting in the server; then wait until the main
/// session has started (it holds one of the two locks; at most two minutes), then until it
/// is done with the schema.
fn wait_sql() -> String {
    format!(
        "DO $ops_run$ BEGIN PERFORM pg_catalog.set_config('client_connection_check_interval', \
         '100', false); EXCEPTION WHEN OTHERS THEN NULL; END $ops_run$;\n\
         DO $ops_run$ BEGIN FOR i IN 1..12000 LOOP IF EXISTS (SELECT FROM pg_catalog.pg_locks \
         WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_catalog.pg_database \
         WHERE datname = pg_catalog.current_database()) AND classid = {0} AND objid IN ({1}, {2}) \
         AND objsubid = 2 AND granted) THEN RETURN; END IF; PERFORM pg_catalog.pg_sleep(0.01); \
         END LOOP; RAISE EXCEPTION 'ops-run: the main import session did not start'; END \
         $ops_run$;\nSELECT pg_catalog.pg_advisory_lock_shared({0}, {1});\n",
        SCHEMA.0, SCHEMA.1, DATA.1
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Main,
    Helper,
}

/// Which session loads each `COPY` block of the data section, in the dump's order.
#[derive(Default)]
pub struct Claims(Mutex<Vec<Role>>);

impl Claims {
    /// Whether block `k` is `me`'s: the first to ask gets it. Both readers pass the blocks
    /// in the same order, so every block before `k` has been claimed already.
    fn claim(&self, k: usize, me: Role) -> bool {
        let Ok(mut owners) = self.0.lock() else {
            return me == Role::Main;
        };
        match owners.get(k) {
            Some(owner) => *owner == me,
            None => {
                owners.push(me);
                true
            }
        }
    }

    /// How many blocks each session loaded: (main, helper).
    pub fn counts(&self) -> (usize, usize) {
        self.0.lock().map_or((0, 0), |o| {
            let helper = o.iter().filter(|r| **r == Role::Helper).count();
            (o.len() - helper, helper)
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Pre,
    Data,
    Post,
}

/// Waits until the helper session has ended; an error when it failed.
pub type Join = Box<dyn FnMut() -> io::Result<()> + Send>;

/// Writes one session's part of a dump: whole lines in, the session's lines out.
pub struct Splitter<W: Write> {
    role: Role,
    inner: W,
    lines: PgLines,
    phase: Phase,
    next_block: usize,
    mine: bool,
    claims: Arc<Claims>,
    join: Option<Join>,
    started: bool,
    done: bool,
    pending: Vec<u8>,
}

impl<W: Write> Splitter<W> {
    /// The main session's part; `join` waits for the helper.
    pub fn main(inner: W, claims: Arc<Claims>, join: Join) -> Self {
        Self::new(Role::Main, inner, claims, Some(join))
    }

    pub fn helper(inner: W, claims: Arc<Claims>) -> Self {
        Self::new(Role::Helper, inner, claims, None)
    }

    fn new(role: Role, inner: W, claims: Arc<Claims>, join: Option<Join>) -> Self {
        Splitter {
            role,
            inner,
            lines: PgLines::default(),
            phase: Phase::Pre,
            next_block: 0,
            mine: false,
            claims,
            join,
            started: false,
            done: false,
            pending: Vec::new(),
        }
    }

    /// The helper's part is over (the data section ended): nothing more will be written.
    pub fn done(&self) -> bool {
        self.done
    }

    fn join(&mut self) -> io::Result<()> {
        // What was written must reach the session first: it may be the unlock the helper
        // waits for.
        self.inner.flush()?;
        match self.join.take() {
            Some(mut join) => join(),
            None => Ok(()),
        }
    }

    /// One whole line: to this session, or not.
    fn route(&mut self, line: &[u8]) -> io::Result<()> {
        if self.done {
            return Ok(());
        }
        let main = self.role == Role::Main;
        if main && !self.started {
            self.started = true;
            self.inner.write_all(lock_sql().as_bytes())?;
        }
        let kind = self.lines.next(line);
        let keep = match (kind, self.phase) {
            (PgLine::CopyData | PgLine::CopyEnd, _) => self.mine,
            (PgLine::Start { copy: true, .. }, Phase::Post) => {
                self.mine = main;
                main
            }
            (PgLine::Start { copy: true, .. }, _) => {
                if self.phase == Phase::Pre {
                    self.phase = Phase::Data;
                    if main {
                        self.inner.write_all(unlock_sql().as_bytes())?;
                        self.inner.flush()?;
                    } else {
                        self.inner.write_all(wait_sql().as_bytes())?;
                    }
                }
                let k = self.next_block;
                self.next_block += 1;
                self.mine = self.claims.claim(k, self.role);
                self.mine
            }
            // Sequence values belong to the data section and wait for nothing.
            (PgLine::Start { .. }, Phase::Data)
                if line.starts_with(b"SELECT pg_catalog.setval(") =>
            {
                main
            }
            (PgLine::Start { .. } | PgLine::Meta, Phase::Data) => {
                self.phase = Phase::Post;
                if main {
                    self.join()?;
                } else {
                    self.done = true;
                    return self.inner.flush();
                }
                main
            }
            // The helper's session takes the dump's settings (encoding, search path).
            (PgLine::Start { whole: true, .. }, Phase::Pre) => {
                main || line.starts_with(b"SET ")
                    || line.starts_with(b"SELECT pg_catalog.set_config(")
            }
            (PgLine::Meta, Phase::Pre) => main || line.starts_with(b"\\restrict "),
            _ => main,
        };
        if keep {
            self.inner.write_all(line)?;
        }
        Ok(())
    }

    /// Passes the last, unterminated line; the main session waits for the helper if the
    /// stream ended before its data section did.
    pub fn finish(mut self) -> io::Result<W> {
        let rest = std::mem::take(&mut self.pending);
        if !rest.is_empty() {
            self.route(&rest)?;
        }
        if self.role == Role::Main {
            self.join()?;
        }
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Lines for Splitter<W> {
    fn in_copy(&self) -> bool {
        self.lines.in_copy()
    }

    /// Rows in bulk: passed when the block is this session's, else skipped.
    fn rows(&mut self, rows: &[u8]) -> io::Result<()> {
        match self.mine {
            true => self.inner.write_all(rows),
            false => Ok(()),
        }
    }

    fn line(&mut self, line: &[u8]) -> io::Result<()> {
        self.route(line)
    }
}

impl<W: Write> Write for Splitter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.done {
            return Ok(buf.len());
        }
        let mut pending = std::mem::take(&mut self.pending);
        let r = write_lines(self, &mut pending, buf);
        self.pending = pending;
        r.map(|()| buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc\n\n\
SET client_encoding = 'UTF8';\nSELECT pg_catalog.set_config('search_path', '', false);\n\
CREATE FUNCTION public.f() RETURNS text\n    LANGUAGE sql\n    AS $$\nSELECT 'COPY x FROM stdin;'\n$$;\n\
CREATE TABLE public.a (id integer);\nCREATE TABLE public.b (id integer);\n\
CREATE TABLE public.c (id integer);\n\n--\n-- Data for Name: a\n--\n\n\
COPY public.a (id) FROM stdin;\n1\n2\n\\.\n\n\
COPY public.b (id) FROM stdin;\n3\n\\.\n\n\
SELECT pg_catalog.setval('public.s', 1, false);\n\n\
COPY public.c (id) FROM stdin;\n4\n\\.\n\n\
ALTER TABLE ONLY public.a\n    ADD CONSTRAINT a_pkey PRIMARY KEY (id);\n\
\\unrestrict abc\n";

    /// Splits DUMP with the helper claiming the blocks listed first.
    fn split(helper_first: &[usize]) -> (String, String, usize) {
        let claims = Arc::new(Claims::default());
        for k in 0..3 {
            let me = if helper_first.contains(&k) {
                Role::Helper
            } else {
                Role::Main
            };
            claims.claim(k, me);
        }
        let joined = Arc::new(Mutex::new(0));
        let j = Arc::clone(&joined);
        let mut main = Splitter::main(
            Vec::new(),
            Arc::clone(&claims),
            Box::new(move || {
                *j.lock().unwrap() += 1;
                Ok(())
            }),
        );
        let mut helper = Splitter::helper(Vec::new(), claims);
        // Uneven writes: lines are cut across writes.
        for chunk in DUMP.as_bytes().chunks(7) {
            main.write_all(chunk).unwrap();
            helper.write_all(chunk).unwrap();
        }
        assert!(helper.done());
        let main = String::from_utf8(main.finish().unwrap()).unwrap();
        let helper = String::from_utf8(helper.finish().unwrap()).unwrap();
        let joins = *joined.lock().unwrap();
        (main, helper, joins)
    }

    #[test]
    fn the_helper_gets_its_blocks_and_the_main_session_the_rest_in_order() {
        let (main, helper, joins) = split(&[1]);
        assert_eq!(joins, 1, "the main session waits for the helper once");
        // Main: the lock first, the unlock before the first COPY, the join before the key.
        assert!(main.starts_with(&lock_sql()));
        let unlock = main.find(&unlock_sql()).unwrap();
        assert!(unlock < main.find("COPY public.a").unwrap());
        assert!(main.find("CREATE TABLE public.c").unwrap() < unlock);
        assert!(main.contains("COPY public.a (id) FROM stdin;\n1\n2\n\\.\n"));
        assert!(!main.contains("COPY public.b"));
        assert!(!main.contains("\n3\n"));
        assert!(main.contains("COPY public.c (id) FROM stdin;\n4\n\\.\n"));
        assert!(main.contains("setval"));
        assert!(main.contains("ADD CONSTRAINT a_pkey"));
        assert!(main.ends_with("\\unrestrict abc\n"));
        // The function body's COPY line is not a block.
        assert!(main.contains("SELECT 'COPY x FROM stdin;'"));
        // Helper: settings, the wait, its one block; no schema, no keys.
        let expected = format!(
            "\\restrict abc\nSET client_encoding = 'UTF8';\nSELECT pg_catalog.set_config('search_path', '', false);\n{}COPY public.b (id) FROM stdin;\n3\n\\.\n",
            wait_sql()
        );
        assert_eq!(helper, expected);
    }

    #[test]
    fn every_row_reaches_exactly_one_session() {
        for helper_first in [&[][..], &[0], &[0, 1, 2], &[2]] {
            let (main, helper, _) = split(helper_first);
            for row in ["\n1\n2\n", "\n3\n", "\n4\n"] {
                assert_eq!(
                    main.contains(row) as u8 + helper.contains(row) as u8,
                    1,
                    "row {row:?} with the helper claiming {helper_first:?}"
                );
            }
        }
    }

    #[test]
    fn claims_go_to_the_first_reader() {
        let c = Claims::default();
        assert!(c.claim(0, Role::Helper));
        assert!(!c.claim(0, Role::Main));
        assert!(c.claim(1, Role::Main));
        assert!(!c.claim(1, Role::Helper));
        assert_eq!(c.counts(), (1, 1));
    }
}
