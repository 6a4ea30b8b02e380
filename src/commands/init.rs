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
use crate::plan::source::Sources;
use crate::settings::Env;

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

/// The database block of a Laravel `.env`.
fn database(
    vars: &HashMap<String, String>,
    env_dir: &Path,
    file: &Path,
) -> Result<String, Failure> {
    let get = |k: &str| vars.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let connection = get("DB_CONNECTION").ok_or_else(|| {
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
            return Err(Failure::Usage(format!(
                "{}: DB_CONNECTION={other}: ops-run dumps pgsql, mysql, mariadb and sqlite",
                file.display()
            )));
        }
    };
    let mut lines = vec![format!("        engine {engine}")];
    if engine == "sqlite" {
        // Laravel's default: database/database.sqlite beside the application.
        let path = get("DB_DATABASE").map_or_else(
            || env_dir.join("database/database.sqlite"),
            |p| {
                let p = PathBuf::from(p);
                if p.is_absolute() { p } else { env_dir.join(p) }
            },
        );
        lines.push(format!("        path {}", kdl(&path.display().to_string())));
    } else {
        let name = get("DB_DATABASE").ok_or_else(|| {
            Failure::Usage(format!(
                "{}: DB_CONNECTION={connection} but no DB_DATABASE names the database",
                file.display()
            ))
        })?;
        lines.push(format!(
            "        host {}",
            kdl(get("DB_HOST").unwrap_or("127.0.0.1"))
        ));
        if let Some(port) = get("DB_PORT") {
            let port: u16 = port.parse().map_err(|_| {
                Failure::Usage(format!("{}: DB_PORT={port} is not a port", file.display()))
            })?;
            lines.push(format!("        port {port}"));
        }
        lines.push(format!("        name {}", kdl(name)));
        if let Some(user) = get("DB_USERNAME") {
            lines.push(format!("        user {}", kdl(user)));
        }
        if vars.contains_key("DB_PASSWORD") {
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

/// A threshold line, or a comment saying the .env's variable sets it.
fn threshold(vars: &HashMap<String, String>, var: &str, key: &str, default: &str) -> String {
    match vars.get(var).filter(|v| !v.is_empty()) {
        Some(v) => format!("        // {key}: {var}={v} in the .env sets it"),
        None => format!("        {key} {}", kdl(default)),
    }
}

/// The plan of an application's `.env`.
fn from_env(file: &Path, name: Option<&str>) -> Result<(String, String), Failure> {
    let pairs = crate::settings::read_dotenv(file)?;
    let vars: HashMap<String, String> = pairs.into_iter().collect();
    let env_dir = std::path::absolute(file)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let name = match name {
        Some(n) => n.to_string(),
        None => vars
            .get("APP_NAME")
            .and_then(|n| slug(n))
            .unwrap_or_else(|| "app".into()),
    };
    let get = |k: &str| vars.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let mut out = format!(
        "// Written by `ops-run init --from-env {file}`:\n\
         // what the application's Ops module did — a nightly dump with retention, the uploads\n\
         // snapshot, a weekly restore test on Sunday 03:15, a weekly report and Slack alerts. Secrets stay in the .env: this plan names the\n\
         // variables that hold them (env=…), so run it with that file:\n\
         //     ops-run --env-file {file} plan apply\n\
         // (from cron every few minutes, or the ops-run-apply timer). Edit freely: `ops-run plan\n\
         // validate` says what is wrong, with file, line and column.\n\
         plan {name} {{\n",
        file = std::path::absolute(file)
            .unwrap_or_else(|_| file.to_path_buf())
            .display(),
    );
    match get("OPS_BACKUP_BASE") {
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
        kdl(get("APP_TIMEZONE").unwrap_or("UTC"))
    ));
    out.push_str(&database(&vars, &env_dir, file)?);
    out.push_str(&format!(
        "\n    // Nightly at 02:00: gzip + sha256 sidecar in BASE/db/, a week of dailies, a month of\n    // weeklies, half a year of monthlies.\n    dump db {{\n        database main\n        schedule \"0 2 * * *\"\n{}\n{}\n        keep daily=7 weekly=4 monthly=6\n    }}\n",
        threshold(&vars, "OPS_DB_DUMP_STALE_MIN", "stale-after", "26h"),
        threshold(&vars, "OPS_DB_DUMP_FAIL_MIN", "fail-after", "50h"),
    ));
    let uploads = env_dir.join("storage/app");
    if vars.contains_key("RESTIC_REPO") {
        out.push_str(&format!(
            "\n    // The uploads, snapshotted with restic at 02:30 (RESTIC_REPO and RESTIC_PASSWORD from\n    // the .env).\n    snapshot uploads {{\n        paths {}\n        repository env=RESTIC_REPO\n        password env=RESTIC_PASSWORD\n        init #true\n        schedule \"30 2 * * *\"\n{}\n    }}\n",
            kdl(&uploads.display().to_string()),
            threshold(&vars, "OPS_SNAPSHOT_STALE_MIN", "stale-after", "26h"),
        ));
    } else {
        out.push_str(&format!(
            "\n    // No RESTIC_REPO in the .env: the uploads are not snapshotted. To add them:\n    // snapshot uploads {{\n    //     paths {}\n    //     repository env=RESTIC_REPO\n    //     password env=RESTIC_PASSWORD\n    //     init #true\n    //     schedule \"30 2 * * *\"\n    // }}\n",
            kdl(&uploads.display().to_string()),
        ));
    }
    let auto = match get("OPS_VERIFY_AUTO") {
        Some("false") => {
            "        // OPS_VERIFY_AUTO=false in the .env takes it off the schedule (manual runs work)\n"
        }
        _ => "",
    };
    out.push_str(&format!(
        "\n    // The proof: every Sunday at 03:15 the newest dump is restored into a scratch database.\n    verify restore {{\n        dump db\n        schedule \"15 3 * * 0\"\n{}\n{auto}    }}\n",
        threshold(&vars, "OPS_VERIFY_OVERDUE_HOURS", "overdue-after", "192h"),
    ));
    out.push_str("\n    // The weekly report, Mondays at 06:00: BASE/reports/backup-report-YYYYmmdd.md\n    report weekly {\n        schedule \"0 6 * * 1\"\n    }\n");
    if get("ALERT_SLACK_WEBHOOK").is_some() {
        out.push_str("\n    // Alerts on every change of health (ALERT_SLACK_WEBHOOK from the .env; empty: off).\n    alert slack {\n        webhook env=ALERT_SLACK_WEBHOOK\n    }\n");
    } else {
        out.push_str("\n    // ALERT_SLACK_WEBHOOK is unset or empty in the .env: no alerts. To add them, set it and:\n    // alert slack {\n    //     webhook env=ALERT_SLACK_WEBHOOK\n    // }\n");
    }
    out.push_str("}\n");
    Ok((name, out))
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
    let (name, text) = match a.from_env {
        Some(file) => from_env(file, a.name)?,
        None => {
            let name = a.name.unwrap_or("app").to_string();
            let text = starter(&name);
            (name, text)
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
    let loaded = crate::plan::load_sources(sources, &env);
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
    match a.from_env {
        Some(file) => crate::outln!(
            "next: ops-run --plans {} --env-file {} plan validate",
            app.plans.display(),
            file.display()
        ),
        None => crate::outln!(
            "next: edit it, then ops-run --plans {} plan validate",
            app.plans.display()
        ),
    }
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
    }
}
