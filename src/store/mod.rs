//! The SQLite state database: open (WAL, migrations), activities, and abandoned-run recovery.

pub mod activities;
mod alert_state;
pub mod chain;
pub mod meta;
mod migrations;

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

/// The state database. Every query lives in `store/`: no SQL elsewhere.
pub struct Store {
    conn: Connection,
    pub path: PathBuf,
}

/// What can go wrong with the state database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state folder {}: {source} (set --state or OPS_STATE)", .path.display())]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the state database {}: {source} (set --state or OPS_STATE)", .path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the state database {}: {source}", .path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("the state database {} was written by a newer ops-run (schema {found}; this one knows up to {known}): upgrade ops-run; nothing was written", .path.display())]
    Newer {
        path: PathBuf,
        found: usize,
        known: usize,
    },
    #[error("state database {}: {source}", .path.display())]
    Query {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// The state database when neither `--state` nor `OPS_STATE` names one.
pub const DEFAULT_PATH: &str = "/var/lib/ops-run/state.db";

impl Store {
    /// Opens (creating) the database, migrates it, and marks runs whose process is gone as
    /// `abandoned`.
    pub fn open(path: &Path, now: &str) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        // The log holds what every step did: readable by its owner only. SQLite gives the
        // `-wal` and `-shm` files the database file's mode.
        if !path.exists() {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|source| StoreError::Create {
                    path: path.to_path_buf(),
                    source,
                })?;
        }
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let err = |source: rusqlite::Error| StoreError::Query {
            path: path.to_path_buf(),
            source,
        };
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        check_version(&conn, path)?;
        migrations::migrate(&conn).map_err(err)?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.mark_abandoned(now).map_err(err)?;
        // Rows that ended without their seal (a process killed between the two writes, rows
        // written by another program) join the chain now.
        if chain::unsealed(&store.conn).map_err(err)? {
            chain::seal_pending(&store.conn).map_err(err)?;
        }
        Ok(store)
    }

    /// Opens an existing database for a command that only reads (`status`, `health`,
    /// `activities`, `plan show`, the page); `None` when there is no database yet. Its owner
    /// opens it as `open` does (runs of killed processes are marked `abandoned`); a user who
    /// may read but not write it gets a read-only connection, and nothing is written. A
    /// database of an older schema must be migrated by its owner first.
    pub fn open_reader(path: &Path, now: &str) -> Result<Option<Store>, StoreError> {
        if !path.exists() {
            return Ok(None);
        }
        match Store::open(path, now) {
            Ok(s) => return Ok(Some(s)),
            Err(e @ StoreError::Newer { .. }) => return Err(e),
            Err(_) => {}
        }
        let open = |uri: String| -> rusqlite::Result<Connection> {
            let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                | rusqlite::OpenFlags::SQLITE_OPEN_URI
                | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let conn = Connection::open_with_flags(uri, flags)?;
            conn.busy_timeout(std::time::Duration::from_secs(10))?;
            conn.pragma_query_value(None, "user_version", |r| r.get::<_, usize>(0))?;
            Ok(conn)
        };
        let file = percent_encoding::utf8_percent_encode(
            &path.to_string_lossy(),
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string()
        .replace("%2F", "/");
        // A reader that cannot create the WAL's shared-memory file reads the file as it is.
        let conn = open(format!("file:{file}?mode=ro"))
            .or_else(|_| open(format!("file:{file}?mode=ro&immutable=1")))
            .map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        check_version(&conn, path)?;
        Ok(Some(Store {
            conn,
            path: path.to_path_buf(),
        }))
    }

    /// A small page cache (serve's four workers each hold a connection).
    pub fn limit_cache(&self, kib: i64) -> rusqlite::Result<()> {
        self.conn.pragma_update(None, "cache_size", -kib)
    }

    /// Opens an existing database only to read it (a step on a worker thread, a reader without
    /// write permission); `None` when there is none yet. Nothing is migrated or written.
    pub fn open_read_only(path: &Path) -> rusqlite::Result<Option<Store>> {
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        Ok(Some(Store {
            conn,
            path: path.to_path_buf(),
        }))
    }
}

/// Refuses a database from a newer ops-run: its schema may mean things this one does not know.
fn check_version(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let found = migrations::current(conn).map_err(|source| StoreError::Query {
        path: path.to_path_buf(),
        source,
    })?;
    if found > migrations::KNOWN {
        return Err(StoreError::Newer {
            path: path.to_path_buf(),
            found,
            known: migrations::KNOWN,
        });
    }
    Ok(())
}
