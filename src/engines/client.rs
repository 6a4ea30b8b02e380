//! A database server's command-line client (`psql`, `mariadb`) as plain argv values: run one
//! statement, import a dump from stdin, create and drop a scratch database. The password goes
//! through a 0600 file, as for dumps.

use std::collections::HashMap;

use super::Target;
use super::secret_file::SecretFile;
use super::tool;
use crate::exec::ProcessSpec;
use crate::plan::model::Engine;
use crate::settings::Setting;

pub struct Client {
    pub engine: Engine,
    program: String,
    /// Connection options (host, port, user, credentials file).
    conn: Vec<String>,
    env: Vec<(String, String)>,
    _secret: Option<SecretFile>,
}

/// `"name"` / `` `name` ``: scratch names are generated, but quote them all the same.
pub fn quote(engine: Engine, name: &str) -> String {
    match engine {
        Engine::Mysql | Engine::Mariadb => format!("`{}`", name.replace('`', "``")),
        _ => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

impl Client {
    pub fn new(
        target: &Target,
        tools: &HashMap<String, Setting<String>>,
    ) -> Result<Client, String> {
        let db = target.db;
        let engine = db
            .engine
            .as_ref()
            .map(|e| e.value)
            .ok_or("database has no engine")?;
        let mut conn = Vec::new();
        let mut env = Vec::new();
        let mut secret = None;
        let program = match engine {
            Engine::Postgres => {
                conn.push("--no-password".into());
                if let Some(h) = &db.host {
                    conn.push(format!("--host={}", h.value));
                }
                if let Some(p) = &db.port {
                    conn.push(format!("--port={}", p.value));
                }
                if let Some(u) = &db.user {
                    conn.push(format!("--username={}", u.value));
                }
                if let Some(pw) = &target.password {
                    let escaped = pw.replace('\\', "\\\\").replace(':', "\\:");
                    let f = SecretFile::create("pgpass", &format!("*:*:*:*:{escaped}\n"))?;
                    env.push(("PGPASSFILE".into(), f.path().display().to_string()));
                    secret = Some(f);
                }
                tool(tools, "psql", "psql")
            }
            Engine::Mysql | Engine::Mariadb => {
                if let Some(pw) = &target.password {
                    let escaped = pw.replace('\\', "\\\\").replace('"', "\\\"");
                    let f =
                        SecretFile::create("my", &format!("[client]\npassword=\"{escaped}\"\n"))?;
                    // Must be the first option.
                    conn.push(format!("--defaults-extra-file={}", f.path().display()));
                    secret = Some(f);
                }
                if let Some(h) = &db.host {
                    conn.push(format!("--host={}", h.value));
                }
                if let Some(p) = &db.port {
                    conn.push(format!("--port={}", p.value));
                }
                if let Some(u) = &db.user {
                    conn.push(format!("--user={}", u.value));
                }
                tool(
                    tools,
                    "mariadb",
                    if engine == Engine::Mysql {
                        "mysql"
                    } else {
                        "mariadb"
                    },
                )
            }
            Engine::Sqlite => return Err("sqlite has no server client".into()),
        };
        Ok(Client {
            engine,
            program,
            conn,
            env,
            _secret: secret,
        })
    }

    fn spec(&self, args: Vec<String>) -> ProcessSpec {
        let mut spec = ProcessSpec::new(&self.program, self.conn.iter().cloned().chain(args));
        spec.env = self.env.clone();
        spec
    }

    /// One statement in `db`, output unaligned without headers (`a|b` / tab-separated).
    pub fn sql(&self, db: &str, sql: &str) -> ProcessSpec {
        match self.engine {
            Engine::Postgres => self.spec(vec![
                "-X".into(),
                "-q".into(),
                "-A".into(),
                "-t".into(),
                "-v".into(),
                "ON_ERROR_STOP=1".into(),
                format!("--dbname={db}"),
                "-c".into(),
                sql.into(),
            ]),
            _ => self.spec(vec![
                "-N".into(),
                "-B".into(),
                "-e".into(),
                sql.into(),
                db.into(),
            ]),
        }
    }

    /// Reads SQL from stdin into `db`, stopping at the first error.
    pub fn import(&self, db: &str) -> ProcessSpec {
        match self.engine {
            Engine::Postgres => self.spec(vec![
                "-X".into(),
                "-q".into(),
                "-v".into(),
                "ON_ERROR_STOP=1".into(),
                "-o".into(),
                "/dev/null".into(),
                format!("--dbname={db}"),
            ]),
            _ => self.spec(vec![db.into()]),
        }
    }

    pub fn create(&self, maintenance: &str, name: &str) -> ProcessSpec {
        self.sql(
            maintenance,
            &format!("CREATE DATABASE {}", quote(self.engine, name)),
        )
    }

    pub fn drop_database(&self, maintenance: &str, name: &str) -> ProcessSpec {
        let sql = match self.engine {
            Engine::Postgres => format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote(self.engine, name)
            ),
            _ => format!("DROP DATABASE IF EXISTS {}", quote(self.engine, name)),
        };
        let mut spec = self.sql(maintenance, &sql);
        spec.ignore_interrupt = true;
        spec.timeout = Some(std::time::Duration::from_secs(60));
        spec
    }

    /// The number of base tables in the current database.
    pub fn count_tables_sql(&self) -> &'static str {
        match self.engine {
            Engine::Postgres => {
                "SELECT count(*) FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')"
            }
            _ => {
                "SELECT count(*) FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema = DATABASE()"
            }
        }
    }
}
