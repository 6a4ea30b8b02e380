//! Database engines, one file each: how to dump (argv and credentials as plain values) and
//! which line proves a dump complete.

pub mod client;
pub mod mysql;
pub mod postgres;
pub mod secret_file;
pub mod sqlite;

use std::collections::HashMap;

use crate::exec::ProcessSpec;
use crate::plan::model::{Database, Engine};
use crate::settings::Setting;
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
) -> Result<DumpSource, String> {
    let engine = target
        .db
        .engine
        .as_ref()
        .map(|e| e.value)
        .ok_or("database has no engine")?;
    match engine {
        Engine::Postgres => postgres::dump(target, &tool(tools, "pg-dump", "pg_dump")),
        Engine::Mariadb => mysql::dump(target, &tool(tools, "mariadb-dump", "mariadb-dump")),
        Engine::Mysql => mysql::dump(target, &tool(tools, "mariadb-dump", "mysqldump")),
        Engine::Sqlite => Ok(DumpSource::Sqlite {
            path: target
                .db
                .path
                .as_ref()
                .map(|p| p.value.clone().into())
                .ok_or("sqlite database has no path")?,
        }),
    }
}

/// The line that only a complete dump of `engine` has.
pub fn marker(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => postgres::MARKER,
        Engine::Mysql | Engine::Mariadb => mysql::MARKER,
        Engine::Sqlite => sqlite::MARKER,
    }
}

pub fn engine_name(db: &Database) -> &'static str {
    match db.engine.as_ref().map(|e| e.value) {
        Some(Engine::Postgres) => "postgres",
        Some(Engine::Mysql) => "mysql",
        Some(Engine::Mariadb) => "mariadb",
        Some(Engine::Sqlite) => "sqlite",
        None => "unknown",
    }
}
