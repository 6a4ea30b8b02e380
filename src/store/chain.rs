//! The activity log's hash chain. A row is sealed when it reaches its final state (finished,
//! failed, skipped, abandoned, …): it gets the next seal number and
//! `hash = sha256(previous hash, "\n", its fields as a JSON array)`. Rows are sealed in the order
//! they end, under a write lock, so concurrent processes keep one chain. `activities verify`
//! recomputes it and names the first row that was changed, the first seal number missing (a
//! removed row), or a finished row left unsealed; the newest hash goes to /metrics and each
//! report, so an outside copy of either proves what the log said.

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

/// The columns a seal covers, in this order.
const FIELDS: &str = "id, plan, step, type, status, trigger, started_at, finished_at, duration_ms, meta, log_excerpt";

type Row = (
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<i64>,
    String,
    String,
);

fn read_row(r: &rusqlite::Row) -> rusqlite::Result<Row> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
    ))
}

/// The hash of a row after `previous`.
fn hash(previous: &str, row: &Row) -> String {
    let fields = serde_json::json!([
        row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8, row.9, row.10
    ]);
    let mut h = Sha256::new();
    h.update(previous.as_bytes());
    h.update(b"\n");
    h.update(fields.to_string().as_bytes());
    crate::artifact::sha::hex(&h.finalize())
}

/// The newest seal: its number and hash (`None`: nothing sealed yet).
pub fn head(conn: &Connection) -> rusqlite::Result<Option<(i64, String)>> {
    conn.query_row(
        "SELECT seal, hash FROM ops_activities WHERE seal IS NOT NULL ORDER BY seal DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

/// Whether an ended row waits for its seal (one indexed lookup).
pub fn unsealed(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM ops_activities WHERE seal IS NULL AND status != 'running')",
        [],
        |r| r.get(0),
    )
}

/// How many rows one write transaction seals: a backlog (the rows an older ops-run wrote, sealed
/// after the migration) goes in short transactions, so no other process waits for it longer
/// than its busy timeout.
const BATCH: usize = 20_000;

/// Seals every ended row not sealed yet, oldest first; the number sealed. Runs in write
/// transactions of its own (`BATCH` rows each) unless one is open, then in that one.
pub fn seal_pending(conn: &Connection) -> rusqlite::Result<usize> {
    seal_in_batches(conn, BATCH)
}

fn seal_in_batches(conn: &Connection, batch: usize) -> rusqlite::Result<usize> {
    if !conn.is_autocommit() {
        return seal_some(conn, None);
    }
    let mut total = 0;
    loop {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let sealed = match seal_some(conn, Some(batch)) {
            Ok(n) => n,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        };
        conn.execute_batch("COMMIT")?;
        total += sealed;
        if sealed < batch {
            return Ok(total);
        }
    }
}

/// Seals up to `limit` ended rows not sealed yet, oldest first, in the open transaction.
fn seal_some(conn: &Connection, limit: Option<usize>) -> rusqlite::Result<usize> {
    let pending: Vec<Row> = {
        let mut stmt = conn.prepare(&format!(
            "SELECT {FIELDS} FROM ops_activities
             WHERE seal IS NULL AND status != 'running' ORDER BY id LIMIT ?1"
        ))?;
        stmt.query_map([limit.map_or(-1, |l| l as i64)], read_row)?
            .collect::<rusqlite::Result<_>>()?
    };
    if pending.is_empty() {
        return Ok(0);
    }
    let (mut seal, mut previous) = head(conn)?.unwrap_or((0, String::new()));
    for row in &pending {
        seal += 1;
        previous = hash(&previous, row);
        conn.execute(
            "UPDATE ops_activities SET seal = ?2, hash = ?3 WHERE id = ?1",
            params![row.0, seal, previous],
        )?;
    }
    Ok(pending.len())
}

/// What `activities verify` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The chain holds: how many rows, and the newest hash.
    Intact { sealed: i64, head: Option<String> },
    /// The first place it breaks, in words naming the row.
    Broken(String),
}

/// Recomputes the chain from its first seal.
pub fn verify(conn: &Connection) -> rusqlite::Result<Verdict> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {FIELDS}, seal, hash FROM ops_activities WHERE seal IS NOT NULL ORDER BY seal"
    ))?;
    let mut rows = stmt.query([])?;
    let mut expected_seal = 1;
    let mut previous = String::new();
    let mut previous_id: Option<i64> = None;
    while let Some(r) = rows.next()? {
        let row = read_row(r)?;
        let seal: i64 = r.get(11)?;
        let stored: String = r.get(12)?;
        if seal != expected_seal {
            return Ok(Verdict::Broken(format!(
                "the activity sealed #{expected_seal} is gone (removed): the chain jumps from {} to activity {} (sealed #{seal})",
                previous_id.map_or("its start".to_string(), |id| format!("activity {id}")),
                row.0
            )));
        }
        let computed = hash(&previous, &row);
        if computed != stored {
            return Ok(Verdict::Broken(format!(
                "activity {} (sealed #{seal}, {} {}/{} {}) was changed: its fields no longer match its hash",
                row.0, row.6, row.1, row.2, row.4
            )));
        }
        previous = stored;
        previous_id = Some(row.0);
        expected_seal += 1;
    }
    drop(rows);
    let unsealed: Option<i64> = conn
        .query_row(
            "SELECT id FROM ops_activities WHERE seal IS NULL AND status != 'running' ORDER BY id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = unsealed {
        return Ok(Verdict::Broken(format!(
            "activity {id} has ended but carries no seal (its seal was removed, or it was written by hand)"
        )));
    }
    Ok(Verdict::Intact {
        sealed: expected_seal - 1,
        head: (!previous.is_empty()).then_some(previous),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backlog sealed in several short transactions is one chain, the same as one long
    /// transaction makes.
    #[test]
    fn a_backlog_sealed_in_batches_is_one_chain() {
        let sealed_with = |batch: Option<usize>| {
            let conn = Connection::open_in_memory().unwrap();
            for sql in super::super::migrations::MIGRATIONS {
                conn.execute_batch(sql).unwrap();
            }
            for i in 1..=7 {
                conn.execute(
                    "INSERT INTO ops_activities (plan, step, type, status, trigger, started_at, finished_at, duration_ms)
                     VALUES ('p', 's', 'db_backup', 'success', 'schedule', ?1, ?1, 5)",
                    [format!("2026-01-0{i}T02:00:00.000Z")],
                )
                .unwrap();
            }
            let n = match batch {
                Some(b) => seal_in_batches(&conn, b).unwrap(),
                None => {
                    conn.execute_batch("BEGIN").unwrap();
                    let n = seal_some(&conn, None).unwrap();
                    conn.execute_batch("COMMIT").unwrap();
                    n
                }
            };
            assert_eq!(n, 7);
            verify(&conn).unwrap()
        };
        let batched = sealed_with(Some(2));
        assert!(
            matches!(
                &batched,
                Verdict::Intact {
                    sealed: 7,
                    head: Some(_)
                }
            ),
            "{batched:?}"
        );
        assert_eq!(batched, sealed_with(None));
        // Exactly a batch's worth: the loop ends on the empty batch after it.
        assert_eq!(sealed_with(Some(7)), batched);
    }
}
