//! Database engines, one file each: how to log in, dump (argv and credentials as plain
//! values), talk to the server with its client, and which line proves a dump complete. A
//! server engine implements `Server`; `server` is the one place an engine is mapped to it.

pub mod client;
pub mod mysql;
pub mod ownership;
pub mod postgres;
pub mod rows;
pub mod secret_file;
pub mod split;
pub mod sqlite;

use std::collections::HashMap;

use crate::exec::ProcessSpec;
use crate::plan::model::{Database, Engine};
use crate::plan::settings::Setting;
use secret_file::SecretFile;

/// A database as a dump needs it: the plan's block with its password resolved.
pub struct Target<'a> {
    pub db: &'a Database,
    pub password: Option<String>,
}

/// How to produce a dump's SQL text.
pub enum DumpSource {
    /// An external tool writing SQL to stdout; the file holding its password lives as long as
    /// this value.
    Process {
        spec: Box<ProcessSpec>,
        secret: Option<SecretFile>,
        /// A line near the end of the output that only a complete dump has.
        marker: &'static str,
        /// `TOOL --version`, for the activity's meta.
        version: ProcessSpec,
    },
    /// SQLite, dumped in-process from a consistent snapshot.
    Sqlite { path: std::path::PathBuf },
}

/// How to reach a server: options for its tools, their environment, and the 0600 file that
/// holds the password (removed when this value is dropped).
pub struct Login {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub secret: Option<SecretFile>,
}

/// What ops-run knows of a database server engine, in one file per engine.
pub trait Server: Sync {
    /// Options and credentials file every tool of the engine takes first.
    fn login(&self, target: &Target) -> Result<Login, EngineError>;
    /// The dump: its program and the argv after the login options, and the completion line.
    fn dump(
        &self,
        target: &Target,
        tools: &HashMap<String, Setting<String>>,
    ) -> Result<DumpSource, EngineError>;
    /// The roles (users) and their grants, as SQL: `pg_dumpall --globals-only`,
    /// `mariadb-dump --system=users`. Passwords (hashes) only with `role_passwords`.
    fn globals(
        &self,
        target: &Target,
        tools: &HashMap<String, Setting<String>>,
        role_passwords: bool,
    ) -> Result<(ProcessSpec, Option<SecretFile>), EngineError>;
    /// The roles dump as written to disk: password hashes left out unless `role_passwords`,
    /// where the tool cannot leave them out itself.
    fn clean_globals(&self, sql: String, _role_passwords: bool) -> String {
        sql
    }
    /// Client argv reading globals from stdin into the maintenance database, going on past
    /// errors (a role that exists already).
    fn globals_import_args(&self) -> Vec<String>;
    /// The command-line client (`psql`, `mariadb`).
    fn client(&self, tools: &HashMap<String, Setting<String>>) -> String;
    /// Client argv (after the login) running one statement in `db`, unaligned, no headers.
    fn sql_args(&self, db: &str, sql: &str) -> Vec<String>;
    /// Client argv reading SQL from stdin into `db`, stopping at the first error.
    fn import_args(&self, db: &str) -> Vec<String>;
    /// SQL sent before a dump on an import session.
    fn import_prelude(&self) -> &'static str {
        ""
    }
    /// An identifier, quoted.
    fn quote(&self, name: &str) -> String;
    /// Whether an import may load the data section on two sessions (`split`).
    fn split_import(&self) -> bool {
        false
    }
    /// Drops a (scratch) database; `end_sessions`: and ends the sessions connected to it,
    /// where the statement can.
    fn drop_sql(&self, name: &str, _end_sessions: bool) -> String {
        format!("DROP DATABASE IF EXISTS {}", self.quote(name))
    }
    /// A query listing the ids of the other sessions connected to database `name`, when
    /// they must be ended before it can be dropped (`None`: the drop ends them itself).
    fn sessions_sql(&self, _name: &str) -> Option<String> {
        None
    }
    /// Ends the sessions `ids` (from `sessions_sql`).
    fn end_sessions_sql(&self, _ids: &[u64]) -> String {
        String::new()
    }
    /// The number of base tables in the current database.
    fn count_tables_sql(&self) -> &'static str;
    /// `1` when database `name` exists, else `0` (run in the maintenance database). `name` is
    /// a plain identifier (letters, digits, `_`), checked by the caller.
    fn exists_sql(&self, name: &str) -> String;
    /// A database every login may connect to, for statements about other databases.
    fn maintenance_db(&self) -> &'static str;
    /// Renames a database, when the engine can (`restore --replace` swaps names with it).
    fn rename_sql(&self, from: &str, to: &str) -> Option<String>;
    /// The line only a complete dump has.
    fn marker(&self) -> &'static str;
    /// What leaves ownership and privileges out of an import (`ownership ignore`).
    fn ownership(&self) -> Box<dyn ownership::LineFilter>;
    /// Counts the rows per table of this engine's dump SQL (see `rows`).
    fn rows(&self) -> Box<dyn crate::artifact::proof::Tap>;
    /// A manifest's table name as SQL (`None`: not a name this engine's dumps write).
    fn table_sql(&self, name: &str) -> Option<String>;
}

/// `--host`, `--port` and the user option (`--username` for psql, `--user` for MariaDB) of a
/// database block, as far as it names them.
pub fn address_args(db: &Database, user_option: &str) -> Vec<String> {
    let mut args = Vec::new();
    args.extend(db.host.as_ref().map(|h| format!("--host={}", h.value)));
    args.extend(db.port.as_ref().map(|p| format!("--port={}", p.value)));
    args.extend(
        db.user
            .as_ref()
            .map(|u| format!("--{user_option}={}", u.value)),
    );
    args
}

/// The server behind an engine; `None` for SQLite, which ops-run reads in-process.
pub fn server(engine: Engine) -> Option<&'static dyn Server> {
    match engine {
        Engine::Postgres => Some(&postgres::Postgres),
        Engine::Mysql => Some(&mysql::MySql { mariadb: false }),
        Engine::Mariadb => Some(&mysql::MySql { mariadb: true }),
        Engine::Sqlite => None,
    }
}

/// The program for a tool: the plan's `tools` entry, else its usual name on PATH.
pub fn tool(tools: &HashMap<String, Setting<String>>, key: &str, default: &str) -> String {
    tools
        .get(key)
        .map(|s| s.value.clone())
        .unwrap_or_else(|| default.to_string())
}

pub fn dump_source(
    target: &Target,
    tools: &HashMap<String, Setting<String>>,
) -> Result<DumpSource, EngineError> {
    let engine = target
        .db
        .engine
        .as_ref()
        .map(|e| e.value)
        .ok_or(EngineError::NoEngine)?;
    match server(engine) {
        Some(server) => server.dump(target, tools),
        None => Ok(DumpSource::Sqlite {
            path: target
                .db
                .path
                .as_ref()
                .map(|p| p.value.clone().into())
                .ok_or(EngineError::NoPath)?,
        }),
    }
}

/// Why an engine could not build a tool's command line or dump a database itself.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("database has no engine")]
    NoEngine,
    #[error("sqlite database has no path")]
    NoPath,
    #[error("{0} has no server client")]
    NoClient(&'static str),
    #[error("{0}")]
    Unsupported(&'static str),
    #[error("cannot create the credentials folder {path}: {source}")]
    CredentialsFolder {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create a credentials file in {path}: {source}")]
    Credentials {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create a credentials file: too many attempts")]
    CredentialsExhausted,
    /// SQLite read by ops-run itself (`path`: what failed).
    #[error("{what}: {source}")]
    Sqlite {
        what: String,
        source: rusqlite::Error,
    },
    #[error("cannot write the dump: {0}")]
    Write(#[from] std::io::Error),
    /// A check between rows stopped the dump (timeout, interruption).
    #[error("{0}")]
    Stopped(String),
    /// The server refused to drop a scratch database (the client's last words).
    #[error("{0}")]
    Refused(String),
}

/// Into the words an activity records.
impl From<EngineError> for String {
    fn from(e: EngineError) -> String {
        e.to_string()
    }
}

pub fn engine_name(db: &Database) -> &'static str {
    db.engine.as_ref().map_or("unknown", |e| e.value.name())
}
