//! MySQL and MariaDB: `mariadb-dump` (or `mysqldump`) with a temporary `--defaults-extra-file`
//! holding the password.

use super::secret_file::SecretFile;
use super::{DumpSource, Target};
use crate::exec::ProcessSpec;

/// mariadb-dump's closing comment (unless --skip-comments, which ops-run never passes).
pub const MARKER: &str = "-- Dump completed";

fn option_file(password: &str) -> String {
    let escaped = password.replace('\\', "\\\\").replace('"', "\\\"");
    format!("[client]\npassword=\"{escaped}\"\n")
}

/// The argv after the defaults file (which must come first).
pub fn dump_args(target: &Target) -> Vec<String> {
    let db = target.db;
    let mut args = vec![
        "--single-transaction".to_string(),
        "--routines".to_string(),
        "--events".to_string(),
        "--triggers".to_string(),
        "--hex-blob".to_string(),
    ];
    if let Some(h) = &db.host {
        args.push(format!("--host={}", h.value));
    }
    if let Some(p) = &db.port {
        args.push(format!("--port={}", p.value));
    }
    if let Some(u) = &db.user {
        args.push(format!("--user={}", u.value));
    }
    // The database as a plain argument (not --databases): no CREATE DATABASE / USE in the
    // dump, so it restores into any database, a scratch one included.
    if let Some(n) = &db.dbname {
        args.push(n.value.clone());
    }
    args
}

pub fn dump(target: &Target, program: &str) -> Result<DumpSource, String> {
    let mut args = Vec::new();
    let secret = match &target.password {
        Some(pw) => {
            let f = SecretFile::create("my", &option_file(pw))?;
            args.push(format!("--defaults-extra-file={}", f.path().display()));
            Some(f)
        }
        None => None,
    };
    args.extend(dump_args(target));
    Ok(DumpSource::Process {
        spec: Box::new(ProcessSpec::new(program, args)),
        secret,
        marker: MARKER,
        version: ProcessSpec::new(program, ["--version"]),
    })
}
