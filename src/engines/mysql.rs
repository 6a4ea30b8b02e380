//! MySQL and MariaDB: `mariadb-dump` (or `mysqldump`) with a temporary `--defaults-extra-file`
//! holding the password.

use std::collections::HashMap;

use super::secret_file::SecretFile;
use super::{DumpSource, EngineError, Login, Server, Target, address_args, tool};
use crate::exec::ProcessSpec;
use crate::plan::settings::Setting;

/// mariadb-dump's closing comment (unless --skip-comments, which ops-run never passes).
pub const MARKER: &str = "-- Dump completed";

fn option_file(password: &str) -> String {
    let escaped = password.replace('\\', "\\\\").replace('"', "\\\"");
    format!("[client]\npassword=\"{escaped}\"\n")
}

/// MySQL (`mysqldump`, `mysql`) or MariaDB (`mariadb-dump`, `mariadb`): one dialect.
pub struct MySql {
    pub mariadb: bool,
}

impl Server for MySql {
    fn login(&self, target: &Target) -> Result<Login, EngineError> {
        let mut args = Vec::new();
        let secret = match &target.password {
            Some(pw) => {
                let f = SecretFile::create("my", &option_file(pw))?;
                // Must be the first option.
                args.push(format!("--defaults-extra-file={}", f.path().display()));
                Some(f)
            }
            None => None,
        };
        args.extend(address_args(target.db, "user"));
        Ok(Login {
            args,
            env: Vec::new(),
            secret,
        })
    }

    fn dump(
        &self,
        target: &Target,
        tools: &HashMap<String, Setting<String>>,
    ) -> Result<DumpSource, EngineError> {
        let default = if self.mariadb {
            "mariadb-dump"
        } else {
            "mysqldump"
        };
        let program = tool(tools, "mariadb-dump", default);
        let login = self.login(target)?;
        let mut args = login.args;
        args.extend(
            [
                "--single-transaction",
                "--routines",
                "--events",
                "--triggers",
                "--hex-blob",
            ]
            .map(String::from),
        );
        // The database as a plain argument (not --databases): no CREATE DATABASE / USE in the
        // dump, so it restores into any database, a scratch one included.
        // After `--`: a name is never taken for an option.
        if let Some(n) = &target.db.dbname {
            args.push("--".into());
            args.push(n.value.clone());
        }
        Ok(DumpSource::Process {
            spec: Box::new(ProcessSpec::new(&program, args)),
            secret: login.secret,
            marker: MARKER,
            version: ProcessSpec::new(&program, ["--version"]),
        })
    }

    fn globals(
        &self,
        target: &Target,
        tools: &HashMap<String, Setting<String>>,
        _role_passwords: bool,
    ) -> Result<(ProcessSpec, Option<SecretFile>), EngineError> {
        if !self.mariadb {
            return Err(EngineError::Unsupported(
                "roles (globals) are dumped for MariaDB only (mariadb-dump --system=users)",
            ));
        }
        let login = self.login(target)?;
        let mut args = login.args;
        args.push("--system=users".into());
        args.push("--insert-ignore".into());
        let mut spec = ProcessSpec::new(tool(tools, "mariadb-dump", "mariadb-dump"), args);
        spec.env = login.env;
        Ok((spec, login.secret))
    }

    /// mariadb-dump has no option to leave password hashes out: they are removed here.
    fn clean_globals(&self, sql: String, role_passwords: bool) -> String {
        if role_passwords {
            sql
        } else {
            without_password_hashes(&sql)
        }
    }

    fn globals_import_args(&self) -> Vec<String> {
        vec!["--force".into(), "--".into(), "mysql".into()]
    }

    fn client(&self, tools: &HashMap<String, Setting<String>>) -> String {
        tool(
            tools,
            "mariadb",
            if self.mariadb { "mariadb" } else { "mysql" },
        )
    }

    fn sql_args(&self, db: &str, sql: &str) -> Vec<String> {
        vec![
            "-N".into(),
            "-B".into(),
            "-e".into(),
            sql.into(),
            "--".into(),
            db.into(),
        ]
    }

    fn import_args(&self, db: &str) -> Vec<String> {
        vec!["--".into(), db.into()]
    }

    fn quote(&self, name: &str) -> String {
        format!("`{}`", name.replace('`', "``"))
    }

    // A killed client's statement goes on holding its locks: DROP DATABASE would wait for it.
    fn sessions_sql(&self, name: &str) -> Option<String> {
        Some(format!(
            "SELECT id FROM information_schema.processlist WHERE db = '{}' AND id <> CONNECTION_ID()",
            name.replace('\\', "\\\\").replace('\'', "''")
        ))
    }

    fn end_sessions_sql(&self, ids: &[u64]) -> String {
        ids.iter()
            .map(|id| format!("KILL CONNECTION {id};"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn count_tables_sql(&self) -> &'static str {
        "SELECT count(*) FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema = DATABASE()"
    }

    fn maintenance_db(&self) -> &'static str {
        "information_schema"
    }

    fn exists_sql(&self, name: &str) -> String {
        format!("SELECT count(*) FROM information_schema.schemata WHERE schema_name = '{name}'")
    }

    /// MariaDB and MySQL cannot rename a database (tables could be moved one by one, but not
    /// their views, routines and events): `restore --replace` refuses a non-empty target.
    fn rename_sql(&self, _from: &str, _to: &str) -> Option<String> {
        None
    }

    fn marker(&self) -> &'static str {
        MARKER
    }

    fn ownership(&self) -> Box<dyn super::ownership::LineFilter> {
        Box::new(super::ownership::Definers)
    }

    fn rows(&self) -> Box<dyn crate::artifact::proof::Tap> {
        Box::new(super::rows::MysqlRows::default())
    }

    fn table_sql(&self, name: &str) -> Option<String> {
        (!name.is_empty()).then(|| self.quote(name))
    }
}

/// Leaves password hashes out of MariaDB's `CREATE USER` statements.
fn without_password_hashes(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    for line in sql.lines() {
        let mut line = line.to_string();
        for start in [" IDENTIFIED BY PASSWORD '", " USING '"] {
            while let Some(i) = line.find(start) {
                let from = i + start.len();
                let Some(len) = line[from..].find('\'') else {
                    break;
                };
                line.replace_range(i..from + len + 1, "");
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}
