//! `ops-run init [--from-env FILE] [--name NAME]`: writes a commented starter plan into the
//! plans folder, never over an existing file. With `--from-env` it reads an application's
//! `.env` (a Laravel one: `DB_CONNECTION`, `DB_HOST`, `DB_PORT`, `DB_DATABASE`, `DB_USERNAME`,
//! `DB_PASSWORD`, `APP_NAME`, `APP_TIMEZONE`) and the ops variables of the product brief, and
//! writes the plan the Ops module ran: a nightly dump with retention, the uploads snapshot, a
//! weekly restore test on Sunday 03:15, a weekly report and Slack alerts. Secrets are never
//! copied into the plan: it names the variables that hold them (`env=`), and the `.env` stays
//! where they live (`ops-run --env-file FILE plan apply`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::app::App;
use crate::error::Failure;
use crate::plan::settings::Env;
use crate::plan::source::Sources;

/// What `init` was asked.
pub struct InitArgs<'a> {
    pub from_env: Option<&'a Path>,
    pub name: Option<&'a str>,
}

/// A KDL string literal.
fn kdl(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A plan name from free text (`APP_NAME="Acme CRM"` → `acme-crm`).
fn slug(text: &str) -> Option<String> {
    let mut s = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') && !s.is_empty() {
            s.push('-');
        }
    }
    let s = s.trim_end_matches('-').to_string();
    crate::plan::decode::valid_name(&s).then_some(s)
}

/// The `.env`'s variables as init may copy them into a plan: one line of printable text
/// each, and never a secret (dotenv's `${VAR}` can make `DB_DATABASE` hold the password).
struct Vars<'a> {
    vars: &'a HashMap<String, String>,
    file: &'a Path,
    /// The file's text: which values were written with a `$` reference.
    text: String,
}

/// Variables whose values are secrets: the plan names them (`env=`), never copies them.
fn is_secret(name: &str) -> bool {
    ["PASSWORD", "SECRET", "TOKEN", "KEY", "WEBHOOK", "PASS"]
        .iter()
        .any(|w| name.to_ascii_uppercase().contains(w))
}

impl Vars<'_> {
    fn bad(&self, var: &str, why: String) -> Failure {
        Failure::Usage(format!(
            "{}: {var} {why}; nothing written",
            self.file.display()
        ))
    }

    /// A value set and not empty, fit to be written into the plan.
    fn get(&self, var: &str) -> Result<Option<&str>, Failure> {
        let Some(v) = self
            .vars
            .get(var)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
        else {
            return Ok(None);
        };
        if v.chars().any(char::is_control) {
            return Err(self.bad(var, "holds a control character (a line break?)".into()));
        }
        if let Some((secret, _)) = self
            .vars
            .iter()
            .filter(|(k, s)| is_secret(k) && k.as_str() != var && !s.is_empty())
            .find(|(_, s)| v.contains(s.as_str()) && self.refers(var))
        {
            return Err(self.bad(
                var,
                format!(
                    "holds the value of {secret} (a `${{{secret}}}` in the .env?): a secret is never copied into a plan"
                ),
            ));
        }
        Ok(Some(v))
    }

    /// Whether the file writes `var` with a `$` (dotenv expands `$NAME` and `${NAME}`).
    fn refers(&self, var: &str) -> bool {
        self.text.lines().any(|l| {
            let l = l.trim_start();
            let l = l.strip_prefix("export ").unwrap_or(l).trim_start();
            l.strip_prefix(var)
                .map(str::trim_start)
                .and_then(|r| r.strip_prefix('='))
                .is_some_and(|value| value.contains('$'))
        })
    }

    /// A whole number of `unit`s, at least 1 (a threshold in minutes or hours).
    fn count(&self, var: &str, unit: &str) -> Result<Option<u64>, Failure> {
        match self.get(var)? {
            None => Ok(None),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (1..=10_000_000).contains(&n) => Ok(Some(n)),
                _ => Err(self.bad(var, format!("is not a whole number of {unit} (1 or more)"))),
            },
        }
    }
}

/// The database block of a Laravel `.env`.
fn database(vars: &Vars, env_dir: &Path, file: &Path) -> Result<String, Failure> {
    let connection = vars.get("DB_CONNECTION")?.ok_or_else(|| {
        Failure::Usage(format!(
            "{} has no database settings: DB_CONNECTION (and DB_DATABASE, DB_HOST, DB_USERNAME, DB_PASSWORD) name the application's database",
            file.display()
        ))
    })?;
    let engine = match connection {
        "pgsql" => "postgres",
        "mysql" => "mysql",
        "mariadb" => "mariadb",
        "sqlite" => "sqlite",
        other => {
            return Err(vars.bad(
                "DB_CONNECTION",
                format!("is {other}: ops-run dumps pgsql, mysql, mariadb and sqlite"),
            ));
        }
    };
    let mut lines = vec![format!("        engine {engine}")];
    if engine == "sqlite" {
        // Laravel's default: database/database.sqlite beside the application.
        let path = vars.get("DB_DATABASE")?.map_or_else(
            || env_dir.join("database/database.sqlite"),
            |p| {
                let p = PathBuf::from(p);
                if p.is_absolute() { p } else { env_dir.join(p) }
            },
        );
        lines.push(format!("        path {}", kdl(&path.display().to_string())));
    } else {
        let name = vars.get("DB_DATABASE")?.ok_or_else(|| {
            vars.bad(
                "DB_DATABASE",
                format!("is not set, but DB_CONNECTION={connection} needs a database name"),
            )
        })?;
        if name.starts_with('-') {
            return Err(vars.bad(
                "DB_DATABASE",
                "starts with `-`: the dump tools would read it as an option".into(),
            ));
        }
        lines.push(format!(
            "        host {}",
            kdl(vars.get("DB_HOST")?.unwrap_or("127.0.0.1"))
        ));
        if let Some(port) = vars.get("DB_PORT")? {
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p >= 1)
                .ok_or_else(|| {
                    vars.bad("DB_PORT", format!("={port} is not a port (1 to 65535)"))
                })?;
            lines.push(format!("        port {port}"));
        }
        lines.push(format!("        name {}", kdl(name)));
        if let Some(user) = vars.get("DB_USERNAME")? {
            lines.push(format!("        user {}", kdl(user)));
        }
        if vars.vars.contains_key("DB_PASSWORD") {
            lines.push(
                "        password env=DB_PASSWORD     // read from the .env, never copied here"
                    .into(),
            );
        }
    }
    Ok(format!(
        "    // The application's database, as its .env describes it (DB_CONNECTION={connection}).\n    database main {{\n{}\n    }}\n",
        lines.join("\n")
    ))
}

/// A threshold line: the `.env`'s value (a checked number of minutes or hours) as the plan's
/// own setting, or the default. Written into the plan rather than left to the variable: a
/// plan that says its thresholds cannot fall back to a default when the service's
/// environment lacks the variable.
fn threshold(
    vars: &Vars,
    var: &str,
    unit: &str,
    key: &str,
    default: &str,
) -> Result<String, Failure> {
    Ok(match vars.count(var, unit)? {
        Some(n) => format!(
            "        {key} {}    // {var}={n} in the .env",
            kdl(&format!("{n}{}", &unit[..1]))
        ),
        None => format!("        {key} {}", kdl(default)),
    })
}

/// The plan of an application's `.env`.
/// What `from_env` made: the plan's name and text, and the variables the plan names
/// (`env=`) with their values, for the service's env file.
struct FromEnv {
    name: String,
    text: String,
    named: Vec<(String, String)>,
}

fn from_env(file: &Path, name: Option<&str>) -> Result<FromEnv, Failure> {
    let pairs = crate::plan::settings::read_dotenv(file)?;
    let all: HashMap<String, String> = pairs.into_iter().collect();
    let text = crate::plan::source::read_limited(file, crate::plan::settings::MAX_ENV_BYTES)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let vars = Vars {
        vars: &all,
        file,
        text,
    };
    if file.display().to_string().chars().any(char::is_control) {
        return Err(Failure::Usage(
            "--from-env: the path holds a control character".into(),
        ));
    }
    let env_dir = std::path::absolute(file)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let name = match name {
        Some(n) => n.to_string(),
        None => vars
            .get("APP_NAME")?
            .and_then(slug)
            .unwrap_or_else(|| "app".into()),
    };
    let mut out = format!(
        "// Written by `ops-run init --from-env {file}`:\n\
         // what the application's Ops module did — a nightly dump with retention, the uploads\n\
         // snapshot, a weekly restore test and drill, the runbook, a weekly report and Slack\n\
         // alerts. Secrets are not in this plan: it names the variables that hold them (env=…),\n\
         // which init copied into the service's env file (/etc/ops-run/ops-run.env, or the\n\
         // --env-file it was given). Edit freely: `ops-run plan validate` says what is wrong,\n\
         // with file, line and column; `ops-run doctor` checks logins, folders and tools.\n\
         plan {name} {{\n",
        file = std::path::absolute(file)
            .unwrap_or_else(|_| file.to_path_buf())
            .display(),
    );
    match vars.get("OPS_BACKUP_BASE")? {
        Some(base) if crate::plan::validate::base_problem(base).is_some() => {
            return Err(vars.bad(
                "OPS_BACKUP_BASE",
                format!(
                    "={base} is not an absolute path: a relative base would depend on the folder cron starts ops-run in"
                ),
            ));
        }
        Some(base) => out.push_str(&format!(
            "    base {}     // OPS_BACKUP_BASE in the .env overrides it\n",
            kdl(base)
        )),
        None => out.push_str(&format!(
            "    base {}\n",
            kdl(&format!("/srv/backups/{name}"))
        )),
    }
    out.push_str(&format!(
        "    timezone {}\n\n",
        kdl(vars.get("APP_TIMEZONE")?.unwrap_or("UTC"))
    ));
    out.push_str(&database(&vars, &env_dir, file)?);
    out.push_str(&format!(
        "\n    // Nightly at 02:00: gzip + sha256 sidecar in BASE/db/, a week of dailies, a month of\n    // weeklies, half a year of monthlies.\n    dump db {{\n        database main\n        schedule \"0 2 * * *\"\n{}\n{}\n        keep daily=7 weekly=4 monthly=6\n    }}\n",
        threshold(&vars, "OPS_DB_DUMP_STALE_MIN", "minutes", "stale-after", "26h")?,
        threshold(&vars, "OPS_DB_DUMP_FAIL_MIN", "minutes", "fail-after", "50h")?,
    ));
    let uploads = env_dir.join("storage/app");
    if all.contains_key("RESTIC_REPO") {
        out.push_str(&format!(
            "\n    // The uploads, snapshotted with restic at 02:30 (RESTIC_REPO and RESTIC_PASSWORD from\n    // the .env).\n    snapshot uploads {{\n        paths {}\n        repository env=RESTIC_REPO\n        password env=RESTIC_PASSWORD\n        init #true\n        schedule \"30 2 * * *\"\n{}\n    }}\n",
            kdl(&uploads.display().to_string()),
            threshold(&vars, "OPS_SNAPSHOT_STALE_MIN", "minutes", "stale-after", "26h")?,
        ));
    } else {
        out.push_str(&format!(
            "\n    // No RESTIC_REPO in the .env: the uploads are not snapshotted. To add them:\n    // snapshot uploads {{\n    //     paths {}\n    //     repository env=RESTIC_REPO\n    //     password env=RESTIC_PASSWORD\n    //     init #true\n    //     schedule \"30 2 * * *\"\n    // }}\n",
            kdl(&uploads.display().to_string()),
        ));
    }
    let auto = match vars.get("OPS_VERIFY_AUTO")? {
        Some("false" | "0") => {
            "        // OPS_VERIFY_AUTO=false in the .env takes it off the schedule (manual runs work)\n"
        }
        None | Some("true" | "1") => "",
        Some(_) => {
            return Err(vars.bad("OPS_VERIFY_AUTO", "is neither true nor false".into()));
        }
    };
    out.push_str(&format!(
        "\n    // The proof: every Sunday at 03:15 the newest dump is restored into a scratch database.\n    verify restore {{\n        dump db\n        schedule \"15 3 * * 0\"\n{}\n{auto}    }}\n",
        threshold(&vars, "OPS_VERIFY_OVERDUE_HOURS", "hours", "overdue-after", "192h")?,
    ));
    let snapshot = match all.contains_key("RESTIC_REPO") {
        true => "        snapshot uploads\n",
        false => "",
    };
    out.push_str(&format!(
        "\n    // The rehearsal, Sundays at 04:00: the newest dump restored and{} its recovery\n    // time and point measured.\n    drill rehearsal {{\n        dump db\n{snapshot}        schedule \"0 4 * * 0\"\n        rto \"1h\"\n        rpo \"26h\"\n    }}\n",
        if snapshot.is_empty() { "" } else { " the uploads brought back," }
    ));
    out.push_str("\n    // The disaster-recovery runbook, BASE/reports/dr-runbook.md, written after the nightly\n    // dump (and by `ops-run runbook`).\n    runbook printed {\n        schedule \"0 2 * * *\"\n    }\n");
    out.push_str("\n    // The weekly report, Mondays at 06:00: BASE/reports/backup-report-YYYYmmdd.md\n    report weekly {\n        schedule \"0 6 * * 1\"\n    }\n");
    if all
        .get("ALERT_SLACK_WEBHOOK")
        .is_some_and(|w| !w.is_empty())
    {
        out.push_str("\n    // Alerts on every change of health (ALERT_SLACK_WEBHOOK from the .env; empty: off).\n    alert slack {\n        webhook env=ALERT_SLACK_WEBHOOK\n    }\n");
    } else {
        out.push_str("\n    // ALERT_SLACK_WEBHOOK is unset or empty in the .env: no alerts. To add them, set it and:\n    // alert slack {\n    //     webhook env=ALERT_SLACK_WEBHOOK\n    // }\n");
    }
    out.push_str("}\n");
    // The variables the plan names, for the service's environment.
    let mut named = Vec::new();
    for var in [
        "DB_PASSWORD",
        "RESTIC_REPO",
        "RESTIC_PASSWORD",
        "ALERT_SLACK_WEBHOOK",
    ] {
        if out.contains(&format!("env={var}"))
            && let Some(v) = all.get(var).filter(|v| !v.is_empty())
        {
            named.push((var.to_string(), v.clone()));
        }
    }
    Ok(FromEnv {
        name,
        text: out,
        named,
    })
}

/// A value as a line of an env file that both systemd (`EnvironmentFile=`) and dotenv read
/// the same: single-quoted, literal. A value holding a `'` or a line break has no such form:
/// it is left for the operator to add.
fn env_line(key: &str, value: &str) -> Option<String> {
    (!value.contains(['\'', '\n', '\r'])).then(|| format!("{key}='{value}'\n"))
}

/// Adds `named` to the service's env file (created `0600`), never replacing a key that is
/// there; says what it added and what it left.
fn add_to_env_file(path: &Path, named: &[(String, String)]) -> Result<(), Failure> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let present: Vec<String> = match path.exists() {
        true => crate::plan::settings::read_dotenv(path)?
            .into_iter()
            .map(|(k, _)| k)
            .collect(),
        false => Vec::new(),
    };
    let mut lines = String::new();
    let (mut added, mut kept, mut by_hand) = (Vec::new(), Vec::new(), Vec::new());
    for (k, v) in named {
        if present.contains(k) {
            kept.push(k.as_str());
        } else if let Some(line) = env_line(k, v) {
            lines.push_str(&line);
            added.push(k.as_str());
        } else {
            by_hand.push(k.as_str());
        }
    }
    if !lines.is_empty() {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Failure::Runtime(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Failure::Runtime(format!("cannot write {}: {e}", path.display())))?;
        let text = std::fs::read(path).unwrap_or_default();
        let sep = if text.is_empty() || text.ends_with(b"\n") {
            ""
        } else {
            "\n"
        };
        f.write_all(format!("{sep}# added by ops-run init\n{lines}").as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| Failure::Runtime(format!("cannot write {}: {e}", path.display())))?;
    }
    let said = |what: &str, keys: &[&str]| {
        if !keys.is_empty() {
            crate::outln!("{what} {}: {}", path.display(), keys.join(", "));
        }
    };
    said("added to", &added);
    said("already in (left as they are)", &kept);
    said(
        "add by hand to (a quote or a line break in the value)",
        &by_hand,
    );
    Ok(())
}

/// A commented plan for a PostgreSQL application, with every value to replace marked.
fn starter(name: &str) -> String {
    format!(
        r#"// A starter plan: replace what is marked, then `ops-run plan validate` and
// `ops-run plan apply --dry-run`. README, "Plan language", has every setting.
plan {name} {{
    base "/srv/backups/{name}"          // where dumps, markers, logs and reports go
    timezone "UTC"

    database main {{
        engine postgres                 // postgres | mysql | mariadb | sqlite
        host "127.0.0.1"
        port 5432
        name "{name}"                    // replace: the database
        user "backup"                   // replace: a role that may read it and CREATE DATABASE
        password env=DB_PASSWORD        // or password-file="/etc/ops-run/{name}.pass"
    }}

    dump db {{
        database main
        schedule "0 2 * * *"
        stale-after "26h"
        fail-after "50h"
        keep daily=7 weekly=4 monthly=6
    }}

    verify restore {{
        dump db
        schedule "15 3 * * 0"           // Sundays 03:15
    }}

    report weekly {{
        schedule "0 6 * * 1"
    }}
}}
"#
    )
}

pub fn run(app: &App, a: &InitArgs) -> Result<(), Failure> {
    let (name, text, named) = match a.from_env {
        Some(file) => {
            let f = from_env(file, a.name)?;
            (f.name, f.text, f.named)
        }
        None => {
            let name = a.name.unwrap_or("app").to_string();
            let text = starter(&name);
            (name, text, Vec::new())
        }
    };
    if !crate::plan::decode::valid_name(&name) {
        return Err(Failure::Usage(format!(
            "--name {name}: a plan name starts with a letter and has letters, digits, `-` and `_`"
        )));
    }
    let path = if app.plans.extension().is_some_and(|x| x == "kdl") {
        app.plans.clone()
    } else {
        app.plans.join(format!("{name}.kdl"))
    };
    if path.exists() {
        return Err(Failure::Usage(format!(
            "{} exists: init never overwrites a plan (choose another --name or --plans)",
            path.display()
        )));
    }
    // What init writes must load: checked with the .env's variables before anything is written.
    let env = match a.from_env {
        Some(file) => Env::load(Some(file))?,
        None => app.env.clone(),
    };
    let mut sources = Sources::default();
    sources.add(&path, text.clone());
    let loaded = crate::plan::load_sources(sources, &env, &crate::steps::KINDS);
    if loaded.has_errors() {
        return Err(Failure::Runtime(format!(
            "the written plan would not load (a bug in init):\n{}",
            loaded.render_diagnostics()
        )));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::Runtime(format!("cannot create {}: {e}", dir.display())))?;
    }
    crate::artifact::layout::write_new_exclusive(&path, text.as_bytes())
        .map_err(|e| Failure::Runtime(format!("cannot write {}: {e}", path.display())))?;
    crate::outln!("wrote {}", path.display());
    // The secrets the plan names go where the service reads them: the env file given, or
    // the package's.
    let service_env = app
        .env_file
        .clone()
        .or_else(|| Some(crate::app::installed_env_file()).filter(|p| p.exists()));
    match (&service_env, named.is_empty()) {
        (_, true) => {}
        (Some(file), false) => add_to_env_file(file, &named)?,
        (None, false) => crate::outln!(
            "the plan reads {} from the environment: no env file here (the package's is /etc/ops-run/ops-run.env; or give --env-file FILE to init) — set them where ops-run runs",
            named
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
    let env_flag = match (&service_env, crate::app::default_env_file()) {
        (Some(f), Some(d)) if *f == d => String::new(),
        (Some(f), _) => format!(" --env-file {}", f.display()),
        (None, _) => String::new(),
    };
    crate::outln!(
        "next: ops-run --plans {}{env_flag} plan validate, then ops-run doctor",
        app.plans.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_strings() {
        assert_eq!(slug("Acme CRM").as_deref(), Some("acme-crm"));
        assert_eq!(slug("  Laravel  ").as_deref(), Some("laravel"));
        assert_eq!(slug("123"), None);
        assert_eq!(kdl(r#"a "b" \c"#), r#""a \"b\" \\c""#);
        assert_eq!(env_line("A", "x$y#z").as_deref(), Some("A='x$y#z'\n"));
        assert_eq!(env_line("A", "it's"), None);
    }
}
