//! PostgreSQL: `pg_dump` in plain SQL; the password through a temporary PGPASSFILE.

use std::collections::HashMap;

use super::secret_file::SecretFile;
use super::{DumpSource, EngineError, Login, Server, Target, address_args, tool};
use crate::exec::ProcessSpec;
use crate::plan::settings::Setting;

/// pg_dump's last comment block in a plain dump.
pub const MARKER: &str = "-- PostgreSQL database dump complete";

/// A `.pgpass` line matching any host, port, database and user.
fn pgpass_line(password: &str) -> String {
    let escaped = password.replace('\\', "\\\\").replace(':', "\\:");
    format!("*:*:*:*:{escaped}\n")
}

pub struct Postgres;

/// A PostgreSQL server program (`pg_basebackup`, `pg_verifybackup`, `pg_ctl`): the plan's
/// `tools` entry for `key`, else the one of the server's major `version` in Debian's
/// `/usr/lib/postgresql/VERSION/bin`, else the newest installed there, else `program` on the
/// PATH (Debian puts only the client wrappers there).
pub fn server_tool(
    tools: &HashMap<String, Setting<String>>,
    key: &str,
    program: &str,
    version: Option<&str>,
) -> String {
    if let Some(t) = tools.get(key) {
        return t.value.clone();
    }
    let root = std::path::Path::new("/usr/lib/postgresql");
    if let Some(v) = version.filter(|v| !v.is_empty()) {
        let p = root.join(v).join("bin").join(program);
        if p.exists() {
            return p.display().to_string();
        }
    }
    let mut installed: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let p = e.path().join("bin").join(program);
            p.exists().then_some((v, p))
        })
        .collect();
    installed.sort();
    installed
        .pop()
        .map_or_else(|| program.to_string(), |(_, p)| p.display().to_string())
}

impl Server for Postgres {
    fn login(&self, target: &Target) -> Result<Login, EngineError> {
        let mut args = vec!["--no-password".to_string()];
        args.extend(address_args(target.db, "username"));
        let mut env = Vec::new();
        let secret = match &target.password {
            Some(pw) => {
                let f = SecretFile::create("pgpass", &pgpass_line(pw))?;
                env.push(("PGPASSFILE".into(), f.path().display().to_string()));
                Some(f)
            }
            None => None,
        };
        Ok(Login { args, env, secret })
    }

    fn dump(
        &self,
        target: &Target,
        tools: &HashMap<String, Setting<String>>,
    ) -> Result<DumpSource, EngineError> {
        let program = tool(tools, "pg-dump", "pg_dump");
        let login = self.login(target)?;
        let mut args = vec!["--format=plain".to_string()];
        args.extend(login.args);
        if let Some(n) = &target.db.dbname {
            args.push(format!("--dbname={}", n.value));
        }
        let mut spec = ProcessSpec::new(&program, args);
        spec.env = login.env;
        Ok(DumpSource::Process {
            spec: Box::new(spec),
            secret: login.secret,
            marker: MARKER,
            version: ProcessSpec::new(&program, ["--version"]),
        })
    }

    fn globals(
        &self,
        target: &Target,
        tools: &HashMap<String, Setting<String>>,
        role_passwords: bool,
    ) -> Result<(ProcessSpec, Option<SecretFile>), EngineError> {
        let login = self.login(target)?;
        let mut args = vec!["--globals-only".to_string()];
        if !role_passwords {
            args.push("--no-role-passwords".into());
        }
        args.extend(login.args);
        let mut spec = ProcessSpec::new(tool(tools, "pg-dumpall", "pg_dumpall"), args);
        spec.env = login.env;
        Ok((spec, login.secret))
    }

    fn globals_import_args(&self) -> Vec<String> {
        vec!["-X".into(), "-q".into(), "--dbname=postgres".into()]
    }

    fn client(&self, tools: &HashMap<String, Setting<String>>) -> String {
        tool(tools, "psql", "psql")
    }

    fn sql_args(&self, db: &str, sql: &str) -> Vec<String> {
        ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
            .map(String::from)
            .into_iter()
            .chain([format!("--dbname={db}"), "-c".into(), sql.into()])
            .collect()
    }

    fn import_args(&self, db: &str) -> Vec<String> {
        ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-o", "/dev/null"]
            .map(String::from)
            .into_iter()
            .chain([format!("--dbname={db}")])
            .collect()
    }

    /// The session checks every second for a client that went away (PostgreSQL 14 and
    /// later; older servers skip it): the server process of an import whose ops-run was
    /// killed ends within a second, even in the middle of building an index, instead of
    /// holding its locks and its connection for minutes.
    fn import_prelude(&self) -> &'static str {
        "DO $ops_run$ BEGIN PERFORM pg_catalog.set_config('client_connection_check_interval', \
         '1000', false); EXCEPTION WHEN OTHERS THEN NULL; END $ops_run$;\n"
    }

    fn quote(&self, name: &str) -> String {
        format!("\"{}\"", name.replace('"', "\"\""))
    }

    fn drop_sql(&self, name: &str, end_sessions: bool) -> String {
        // FORCE (PostgreSQL 13+) ends the sessions a killed client left behind. It refuses
        // when an autovacuum worker is in the database and the login is not a superuser
        // (PostgreSQL 15: "must be a member of the role whose process is being terminated"),
        // which is right after a large load; the plain statement ends autovacuum itself.
        if end_sessions {
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.quote(name))
        } else {
            format!("DROP DATABASE IF EXISTS {}", self.quote(name))
        }
    }

    fn count_tables_sql(&self) -> &'static str {
        "SELECT count(*) FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')"
    }

    fn maintenance_db(&self) -> &'static str {
        "postgres"
    }

    fn exists_sql(&self, name: &str) -> String {
        format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'")
    }

    fn rename_sql(&self, from: &str, to: &str) -> Option<String> {
        Some(format!(
            "ALTER DATABASE {} RENAME TO {}",
            self.quote(from),
            self.quote(to)
        ))
    }

    fn marker(&self) -> &'static str {
        MARKER
    }

    fn split_import(&self) -> bool {
        true
    }

    fn ownership(&self) -> Box<dyn super::ownership::LineFilter> {
        Box::new(super::ownership::PgOwnership::default())
    }

    fn rows(&self) -> Box<dyn crate::artifact::proof::Tap> {
        Box::new(super::rows::PgRows::default())
    }

    /// The name as pg_dump wrote it after `COPY` is already SQL; anything else is refused.
    fn table_sql(&self, name: &str) -> Option<String> {
        let line = format!("COPY {name} ");
        (super::rows::copy_table(line.as_bytes()).as_deref() == Some(name))
            .then(|| name.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::{Database, Engine, Spanned};
    use crate::plan::source::Span;

    fn sp<T>(v: T) -> Option<Spanned<T>> {
        Some(Spanned::new(
            v,
            Span {
                file: 0,
                offset: 0,
                len: 0,
            },
        ))
    }

    #[test]
    fn argv_has_no_password_and_the_file_has_it_escaped() {
        let db = Database {
            name: Spanned::new(
                "main".into(),
                Span {
                    file: 0,
                    offset: 0,
                    len: 0,
                },
            ),
            span: Span {
                file: 0,
                offset: 0,
                len: 0,
            },
            engine: sp(Engine::Postgres),
            engine_given: true,
            host: sp("127.0.0.1".into()),
            port: sp(5433),
            dbname: sp("crm".into()),
            user: sp("backup".into()),
            password: None,
            path: None,
        };
        let target = Target {
            db: &db,
            password: Some("p:w\\d".into()),
        };
        let DumpSource::Process { spec, secret, .. } =
            Postgres.dump(&target, &HashMap::new()).unwrap()
        else {
            panic!("not a process");
        };
        assert_eq!(
            spec.args,
            [
                "--format=plain",
                "--no-password",
                "--host=127.0.0.1",
                "--port=5433",
                "--username=backup",
                "--dbname=crm"
            ]
        );
        let file = secret.unwrap();
        assert_eq!(
            std::fs::read_to_string(file.path()).unwrap(),
            "*:*:*:*:p\\:w\\\\d\n"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(file.path()).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            spec.env,
            [("PGPASSFILE".to_string(), file.path().display().to_string())]
        );
        let path = file.path().to_path_buf();
        drop(file);
        assert!(!path.exists());
    }
}
