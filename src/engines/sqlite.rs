//! SQLite, dumped in-process through rusqlite from one read transaction (a consistent
//! snapshot), as SQL text that `sqlite3 new.db < dump` restores; no sqlite3 program needed.

use std::io::Write;
use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use super::EngineError;
use crate::artifact::manifest::Tables;

/// The last line of a complete SQLite dump.
pub const MARKER: &str = "-- ops-run sqlite dump complete";

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn write_value(out: &mut dyn Write, v: ValueRef) -> std::io::Result<()> {
    match v {
        ValueRef::Null => out.write_all(b"NULL"),
        ValueRef::Integer(i) => write!(out, "{i}"),
        ValueRef::Real(f) if f.is_nan() => out.write_all(b"NULL"),
        ValueRef::Real(f) if f.is_infinite() => {
            out.write_all(if f > 0.0 { b"9.0e999" } else { b"-9.0e999" })
        }
        // `{:?}` is the shortest text that reads back as the same f64, always with a `.` or `e`.
        ValueRef::Real(f) => write!(out, "{f:?}"),
        ValueRef::Text(t) => {
            out.write_all(b"'")?;
            // Text is written byte for byte, quotes doubled; NUL cannot appear in SQL text.
            let mut start = 0;
            for (i, b) in t.iter().enumerate() {
                if *b == b'\'' {
                    out.write_all(&t[start..=i])?;
                    out.write_all(b"'")?;
                    start = i + 1;
                }
            }
            out.write_all(&t[start..])?;
            out.write_all(b"'")
        }
        ValueRef::Blob(b) => {
            out.write_all(b"X'")?;
            for byte in b {
                write!(out, "{byte:02X}")?;
            }
            out.write_all(b"'")
        }
    }
}

/// Dumps the database at `path` into `out`, and says how many rows of each table it wrote
/// (the same read transaction: the tables' `count(*)` at that moment). `check` is called
/// every few thousand rows and stops the dump when it returns an error (timeout,
/// interruption).
pub fn dump(
    path: &Path,
    out: &mut dyn Write,
    check: &dyn Fn() -> Result<(), EngineError>,
) -> Result<Tables, EngineError> {
    let sql = |source: rusqlite::Error| EngineError::Sqlite {
        what: path.display().to_string(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| EngineError::Sqlite {
        what: format!("cannot open {}", path.display()),
        source,
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(sql)?;
    let io = EngineError::Write;
    // One read transaction: every table is read from the same snapshot.
    conn.execute_batch("BEGIN").map_err(sql)?;
    let schema: Vec<(String, String, String)> = {
        let mut stmt = conn
            .prepare(
                "SELECT type, name, sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY rowid",
            )
            .map_err(sql)?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(sql)?
            .collect::<Result<_, _>>()
            .map_err(sql)?
    };
    out.write_all(b"PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n")
        .map_err(io)?;
    let mut rows = 0u64;
    let mut tables = Tables::new();
    for (_, name, create) in schema.iter().filter(|(k, _, _)| k == "table") {
        if name.starts_with("sqlite_") {
            // sqlite_sequence is created by AUTOINCREMENT tables; its rows come below.
            continue;
        }
        if create
            .to_ascii_uppercase()
            .starts_with("CREATE VIRTUAL TABLE")
        {
            writeln!(out, "{create};").map_err(io)?;
            continue;
        }
        writeln!(out, "{create};").map_err(io)?;
        let counted = tables.entry(name.clone()).or_default();
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {}", quote_ident(name)))
            .map_err(sql)?;
        let ncols = stmt.column_count();
        let mut q = stmt.query([]).map_err(sql)?;
        let insert = format!("INSERT INTO {} VALUES(", quote_ident(name));
        while let Some(row) = q.next().map_err(sql)? {
            out.write_all(insert.as_bytes()).map_err(io)?;
            for i in 0..ncols {
                if i > 0 {
                    out.write_all(b",").map_err(io)?;
                }
                write_value(out, row.get_ref(i).map_err(sql)?).map_err(io)?;
            }
            out.write_all(b");\n").map_err(io)?;
            rows += 1;
            *counted += 1;
            if rows.is_multiple_of(4096) {
                check()?;
            }
        }
    }
    let has_sequence = schema
        .iter()
        .any(|(k, n, _)| k == "table" && n == "sqlite_sequence");
    if has_sequence {
        out.write_all(b"DELETE FROM sqlite_sequence;\n")
            .map_err(io)?;
        let mut stmt = conn
            .prepare("SELECT name, seq FROM sqlite_sequence")
            .map_err(sql)?;
        let mut q = stmt.query([]).map_err(sql)?;
        while let Some(row) = q.next().map_err(sql)? {
            out.write_all(b"INSERT INTO sqlite_sequence VALUES(")
                .map_err(io)?;
            write_value(out, row.get_ref(0).map_err(sql)?).map_err(io)?;
            out.write_all(b",").map_err(io)?;
            write_value(out, row.get_ref(1).map_err(sql)?).map_err(io)?;
            out.write_all(b");\n").map_err(io)?;
        }
    }
    for (_, _, create) in schema.iter().filter(|(k, _, _)| k != "table") {
        writeln!(out, "{create};").map_err(io)?;
    }
    conn.execute_batch("COMMIT").map_err(sql)?;
    writeln!(out, "COMMIT;\n{MARKER}").map_err(io)?;
    check()?;
    Ok(tables)
}

/// Rows per table of a SQLite database (a restored scratch copy), by `count(*)`: each of
/// `tables`, a number or why it could not be counted.
pub fn count_rows(conn: &Connection, tables: &[&str]) -> Vec<(String, Result<u64, String>)> {
    tables
        .iter()
        .map(|t| {
            let n = conn
                .query_row(
                    &format!("SELECT count(*) FROM {}", quote_ident(t)),
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .map(|n| n as u64)
                .map_err(|e| e.to_string());
            (t.to_string(), n)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_restores_to_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.db");
        let c = Connection::open(&src).unwrap();
        c.execute_batch(
            "CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, score REAL, avatar BLOB);
             CREATE INDEX users_name ON users(name);
             CREATE VIEW top AS SELECT name FROM users WHERE score > 1;
             CREATE TABLE \"odd \"\"name\" (x);
             INSERT INTO users (name, score, avatar) VALUES ('O''Brien', 1.5, x'00ff10'), ('line\nbreak', NULL, NULL), ('ünïcode', 0.1, x'');
             INSERT INTO \"odd \"\"name\" VALUES (1e300), (-0.0), (9223372036854775807);
             DELETE FROM users WHERE id = 3;",
        )
        .unwrap();
        let mut out = Vec::new();
        let tables = dump(&src, &mut out, &|| Ok(())).unwrap();
        assert_eq!(
            tables.into_iter().collect::<Vec<_>>(),
            [("odd \"name".to_string(), 3), ("users".to_string(), 2)]
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with(&format!("{MARKER}\n")));
        let dst = Connection::open_in_memory().unwrap();
        dst.execute_batch(&text).unwrap();
        let rows = |c: &Connection, q: &str| -> Vec<String> {
            let mut s = c.prepare(q).unwrap();
            s.query_map([], |r| {
                let n = r.as_ref().column_count();
                Ok((0..n)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
        };
        for q in [
            "SELECT * FROM users ORDER BY id",
            "SELECT * FROM \"odd \"\"name\"",
            "SELECT * FROM top",
            "SELECT * FROM sqlite_sequence",
        ] {
            assert_eq!(rows(&c, q), rows(&dst, q), "{q}");
        }
        let indexes = rows(&dst, "SELECT name FROM sqlite_schema WHERE type = 'index'");
        assert_eq!(
            indexes,
            rows(&c, "SELECT name FROM sqlite_schema WHERE type = 'index'")
        );
        assert_eq!(indexes.len(), 1);
    }
}
