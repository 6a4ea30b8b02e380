//! PostgreSQL: `pg_dump` in plain SQL; the password through a temporary PGPASSFILE.

use super::secret_file::SecretFile;
use super::{DumpSource, Target};
use crate::exec::ProcessSpec;

/// pg_dump's last comment block in a plain dump.
pub const MARKER: &str = "-- PostgreSQL database dump complete";

/// A `.pgpass` line matching any host, port, database and user.
fn pgpass_line(password: &str) -> String {
    let escaped = password.replace('\\', "\\\\").replace(':', "\\:");
    format!("*:*:*:*:{escaped}\n")
}

pub fn dump_args(target: &Target) -> Vec<String> {
    let db = target.db;
    let mut args = vec!["--format=plain".to_string(), "--no-password".to_string()];
    if let Some(h) = &db.host {
        args.push(format!("--host={}", h.value));
    }
    if let Some(p) = &db.port {
        args.push(format!("--port={}", p.value));
    }
    if let Some(u) = &db.user {
        args.push(format!("--username={}", u.value));
    }
    if let Some(n) = &db.dbname {
        args.push(format!("--dbname={}", n.value));
    }
    args
}

pub fn dump(target: &Target, program: &str) -> Result<DumpSource, String> {
    let mut spec = ProcessSpec::new(program, dump_args(target));
    let secret = match &target.password {
        Some(pw) => {
            let f = SecretFile::create("pgpass", &pgpass_line(pw))?;
            spec.env
                .push(("PGPASSFILE".into(), f.path().display().to_string()));
            Some(f)
        }
        None => None,
    };
    Ok(DumpSource::Process {
        spec: Box::new(spec),
        secret,
        marker: MARKER,
        version: ProcessSpec::new(program, ["--version"]),
    })
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
        let DumpSource::Process { spec, secret, .. } = dump(&target, "pg_dump").unwrap() else {
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
