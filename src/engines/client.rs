//! A database server's command-line client (`psql`, `mariadb`) as plain argv values: run one
//! statement, import a dump from stdin, create and drop a scratch database. The password goes
//! through a 0600 file, as for dumps.

use std::collections::HashMap;

use super::{EngineError, Login, Server, Target};
use crate::exec::ProcessSpec;
use crate::plan::settings::Setting;

pub struct Client {
    server: &'static dyn Server,
    program: String,
    login: Login,
}

impl Client {
    pub fn new(
        target: &Target,
        tools: &HashMap<String, Setting<String>>,
    ) -> Result<Client, EngineError> {
        let engine = target
            .db
            .engine
            .as_ref()
            .map(|e| e.value)
            .ok_or(EngineError::NoEngine)?;
        let server = super::server(engine).ok_or(EngineError::NoClient(engine.name()))?;
        Ok(Client {
            server,
            program: server.client(tools),
            login: server.login(target)?,
        })
    }

    fn spec(&self, args: Vec<String>) -> ProcessSpec {
        let mut spec = ProcessSpec::new(&self.program, self.login.args.iter().cloned().chain(args));
        spec.env = self.login.env.clone();
        spec
    }

    /// One statement in `db`, output unaligned without headers (`a|b` / tab-separated).
    pub fn sql(&self, db: &str, sql: &str) -> ProcessSpec {
        self.spec(self.server.sql_args(db, sql))
    }

    /// Reads SQL from stdin into `db`, stopping at the first error.
    pub fn import(&self, db: &str) -> ProcessSpec {
        self.spec(self.server.import_args(db))
    }

    /// SQL an import session sends before the dump.
    pub fn import_prelude(&self) -> &'static str {
        self.server.import_prelude()
    }

    /// Whether an import loads the data section on two sessions (PostgreSQL).
    pub fn split_import(&self) -> bool {
        self.server.split_import()
    }

    /// Reads globals (roles) from stdin, going on past errors.
    pub fn globals_import(&self) -> ProcessSpec {
        self.spec(self.server.globals_import_args())
    }

    pub fn create(&self, maintenance: &str, name: &str) -> ProcessSpec {
        self.sql(
            maintenance,
            &format!("CREATE DATABASE {}", self.server.quote(name)),
        )
    }

    pub fn drop_database(&self, maintenance: &str, name: &str, end_sessions: bool) -> ProcessSpec {
        let mut spec = self.sql(maintenance, &self.server.drop_sql(name, end_sessions));
        spec.ignore_interrupt = true;
        spec.timeout = Some(std::time::Duration::from_secs(20));
        spec
    }

    /// Drops a scratch database for sure, within about a minute: the sessions a killed client
    /// left are ended first (PostgreSQL's `WITH (FORCE)` does that itself), and the drop is
    /// tried three times, the second time without ending sessions (the form that also ends
    /// an autovacuum worker). Not interrupted by SIGTERM. `Err` holds the last refusal.
    pub fn drop_scratch(
        &self,
        maintenance: &str,
        name: &str,
        redactor: &crate::exec::redact::Redactor,
    ) -> Result<(), EngineError> {
        let mut why = String::new();
        for attempt in 0..3u64 {
            if attempt > 1 {
                std::thread::sleep(std::time::Duration::from_secs(attempt * 2));
            }
            if let Some(query) = self.server.sessions_sql(name) {
                let mut list = self.sql(maintenance, &query);
                list.ignore_interrupt = true;
                list.timeout = Some(std::time::Duration::from_secs(10));
                let ids: Vec<u64> = crate::exec::run(&list, redactor)
                    .tail
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect();
                if !ids.is_empty() {
                    let mut end = self.sql(maintenance, &self.server.end_sessions_sql(&ids));
                    end.ignore_interrupt = true;
                    end.timeout = Some(std::time::Duration::from_secs(10));
                    // A session that ended meanwhile is no error: the drop says what counts.
                    crate::exec::run(&end, redactor);
                }
            }
            let spec = self.drop_database(maintenance, name, attempt != 1);
            let r = crate::exec::run(&spec, redactor);
            if r.success() {
                return Ok(());
            }
            why = format!(
                "{}: {}",
                r.exit.reason(&spec.program).unwrap_or_default(),
                r.tail.trim()
            );
        }
        Err(EngineError::Refused(why))
    }

    /// The number of base tables in the current database.
    pub fn maintenance_db(&self) -> &'static str {
        self.server.maintenance_db()
    }

    pub fn exists_sql(&self, name: &str) -> String {
        self.server.exists_sql(name)
    }

    pub fn rename_sql(&self, from: &str, to: &str) -> Option<String> {
        self.server.rename_sql(from, to)
    }

    pub fn count_tables_sql(&self) -> &'static str {
        self.server.count_tables_sql()
    }

    /// The line that only a complete dump of this engine has.
    pub fn marker(&self) -> &'static str {
        self.server.marker()
    }

    /// What leaves the dump's owners and privileges out of an import.
    pub fn ownership(&self) -> Box<dyn super::ownership::LineFilter> {
        self.server.ownership()
    }

    /// The rows of each of `tables` (a manifest's names) in `db`: a number, or why the table
    /// could not be counted (it was not restored). Many tables in one statement; a statement
    /// that fails is asked again table by table, to name the missing ones.
    pub fn count_rows(
        &self,
        db: &str,
        tables: &[&str],
        timeout: Option<std::time::Duration>,
        redactor: &crate::exec::redact::Redactor,
    ) -> Vec<(String, Result<u64, String>)> {
        let mut out = Vec::new();
        for batch in tables.chunks(200) {
            let refs: Vec<Option<String>> =
                batch.iter().map(|t| self.server.table_sql(t)).collect();
            let sql = refs
                .iter()
                .enumerate()
                .filter_map(|(i, r)| Some(format!("SELECT {i}, count(*) FROM {}", r.as_ref()?)))
                .collect::<Vec<_>>()
                .join(" UNION ALL ");
            let mut counted: Vec<Option<u64>> = vec![None; batch.len()];
            if !sql.is_empty() {
                let mut spec = self.sql(db, &sql);
                spec.timeout = timeout;
                let r = crate::exec::run(&spec, redactor);
                if r.success() {
                    for line in r.tail.lines() {
                        let mut f = line.split(['|', '\t']).map(str::trim);
                        if let (Some(Ok(i)), Some(Ok(n))) = (
                            f.next().map(str::parse::<usize>),
                            f.next().map(str::parse::<u64>),
                        ) && i < counted.len()
                        {
                            counted[i] = Some(n);
                        }
                    }
                }
            }
            for (i, table) in batch.iter().enumerate() {
                let result = match (&refs[i], counted[i]) {
                    (None, _) => Err("not a table name this engine's dumps write".to_string()),
                    (Some(_), Some(n)) => Ok(n),
                    (Some(r), None) => {
                        let mut spec = self.sql(db, &format!("SELECT count(*) FROM {r}"));
                        spec.timeout = timeout;
                        let one = crate::exec::run(&spec, redactor);
                        match one.tail.lines().next().map(|l| l.trim().parse::<u64>()) {
                            Some(Ok(n)) if one.success() => Ok(n),
                            _ => Err(one
                                .tail
                                .lines()
                                .find(|l| !l.trim().is_empty())
                                .unwrap_or("no answer")
                                .trim()
                                .to_string()),
                        }
                    }
                };
                out.push((table.to_string(), result));
            }
        }
        out
    }
}
