//! Schema migrations, numbered by SQLite's `user_version`.

use rusqlite::Connection;

pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: the activity log, with the indexes the due decision and the status page use.
    "CREATE TABLE ops_activities (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        plan        TEXT    NOT NULL,
        step        TEXT    NOT NULL,
        type        TEXT    NOT NULL,
        status      TEXT    NOT NULL,
        trigger     TEXT    NOT NULL,
        started_at  TEXT    NOT NULL,
        finished_at TEXT,
        duration_ms INTEGER,
        meta        TEXT    NOT NULL DEFAULT '{}',
        log_excerpt TEXT    NOT NULL DEFAULT ''
    );
    CREATE INDEX ops_activities_step ON ops_activities (plan, step, status, started_at);
    CREATE INDEX ops_activities_running ON ops_activities (status) WHERE status = 'running';
    CREATE INDEX ops_activities_type ON ops_activities (type, id);
    CREATE INDEX ops_activities_status ON ops_activities (status, id);
    CREATE INDEX ops_activities_plan ON ops_activities (plan, id);",
    // 2: what each alert channel last delivered for each check (no row: ok, nothing owed).
    "CREATE TABLE ops_alert_state (
        channel     TEXT NOT NULL,
        check_id    TEXT NOT NULL,
        state       TEXT NOT NULL,
        severity    TEXT NOT NULL,
        notified_at TEXT NOT NULL,
        PRIMARY KEY (channel, check_id)
    );",
    // 3: counters of finished activities by type and status, kept by triggers so /metrics
    // never scans the log; and the end of the last apply of each plan.
    "CREATE TABLE ops_activity_counts (
        type   TEXT NOT NULL,
        status TEXT NOT NULL,
        count  INTEGER NOT NULL,
        PRIMARY KEY (type, status)
    );
    INSERT INTO ops_activity_counts (type, status, count)
        SELECT type, status, count(*) FROM ops_activities WHERE status != 'running' GROUP BY type, status;
    CREATE TRIGGER ops_activity_counts_insert AFTER INSERT ON ops_activities WHEN NEW.status != 'running'
    BEGIN
        INSERT INTO ops_activity_counts (type, status, count) VALUES (NEW.type, NEW.status, 1)
            ON CONFLICT (type, status) DO UPDATE SET count = count + 1;
    END;
    CREATE TRIGGER ops_activity_counts_finish AFTER UPDATE OF status ON ops_activities
        WHEN OLD.status = 'running' AND NEW.status != 'running'
    BEGIN
        INSERT INTO ops_activity_counts (type, status, count) VALUES (NEW.type, NEW.status, 1)
            ON CONFLICT (type, status) DO UPDATE SET count = count + 1;
    END;
    CREATE TABLE ops_applies (
        plan TEXT PRIMARY KEY,
        finished_at TEXT NOT NULL
    );",
    // 4: "the newest finished run of a step" (health, metrics) walks this index backwards
    // instead of sorting a step's whole history.
    "CREATE INDEX ops_activities_step_type ON ops_activities (plan, step, type, id);",
    // 5: the alert channels of the plans that loaded last, without their secrets (where
    // each one is read from instead): a plan that stops loading can still page someone.
    "CREATE TABLE ops_alert_channels (
        plan TEXT NOT NULL,
        name TEXT NOT NULL,
        spec TEXT NOT NULL,
        PRIMARY KEY (plan, name)
    );",
    // 6: what the newest apply did, for the page.
    "ALTER TABLE ops_applies ADD COLUMN result TEXT;
     ALTER TABLE ops_applies ADD COLUMN steps INTEGER;",
    // 7: the hash chain (store/chain.rs): each ended row's seal number and hash; the rows
    // already there are sealed, oldest first, right after this migration.
    "ALTER TABLE ops_activities ADD COLUMN seal INTEGER;
     ALTER TABLE ops_activities ADD COLUMN hash TEXT;
     CREATE UNIQUE INDEX ops_activities_seal ON ops_activities (seal) WHERE seal IS NOT NULL;
     CREATE INDEX ops_activities_unsealed ON ops_activities (id) WHERE seal IS NULL;",
];

/// The schema version this ops-run writes.
pub const KNOWN: usize = MIGRATIONS.len();

/// The database's schema version.
pub fn current(conn: &Connection) -> rusqlite::Result<usize> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

pub fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version >= MIGRATIONS.len() {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    // Re-read under the write lock: another process may have migrated meanwhile.
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        if let Err(e) = conn.execute_batch(sql) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
        conn.pragma_update(None, "user_version", i + 1)?;
    }
    conn.execute_batch("COMMIT")?;
    // The chain over the rows an older ops-run wrote, in short transactions; a process killed
    // meanwhile leaves the rest to the next writer (which seals what is pending first).
    super::chain::seal_pending(conn).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log written before the chain existed is sealed, oldest first, by the migration that
    /// adds it; an edit or a removal afterwards is named.
    #[test]
    fn the_migration_seals_the_rows_already_there() {
        let conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..6] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 6).unwrap();
        for i in 1..=3 {
            conn.execute(
                "INSERT INTO ops_activities (plan, step, type, status, trigger, started_at, finished_at, duration_ms)
                 VALUES ('p', 's', 'db_backup', 'success', 'schedule', ?1, ?1, 5)",
                [format!("2026-01-0{i}T02:00:00.000Z")],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO ops_activities (plan, step, type, status, trigger, started_at)
             VALUES ('p', 's', 'db_backup', 'running', 'schedule', '2026-01-04T02:00:00.000Z')",
            [],
        )
        .unwrap();
        migrate(&conn).unwrap();
        let intact = super::super::chain::verify(&conn).unwrap();
        assert!(
            matches!(
                intact,
                super::super::chain::Verdict::Intact {
                    sealed: 3,
                    head: Some(_)
                }
            ),
            "{intact:?}"
        );
        conn.execute("UPDATE ops_activities SET duration_ms = 6 WHERE id = 2", [])
            .unwrap();
        let broken = super::super::chain::verify(&conn).unwrap();
        assert!(
            matches!(&broken, super::super::chain::Verdict::Broken(w) if w.starts_with("activity 2 ")),
            "{broken:?}"
        );
        conn.execute("UPDATE ops_activities SET duration_ms = 5 WHERE id = 2", [])
            .unwrap();
        conn.execute("DELETE FROM ops_activities WHERE id = 2", [])
            .unwrap();
        let gone = super::super::chain::verify(&conn).unwrap();
        assert!(
            matches!(&gone, super::super::chain::Verdict::Broken(w) if w.contains("#2 is gone") && w.contains("activity 1") && w.contains("activity 3")),
            "{gone:?}"
        );
    }
}
