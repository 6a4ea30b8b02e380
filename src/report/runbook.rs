//! `ops-run runbook`: the disaster-recovery runbook of a plan, written from its configuration
//! and its files. For each database the check and load commands a shell on a new machine runs
//! without ops-run (`sha256sum -c`, `createdb`, `gunzip -c … | psql …`), then the same with
//! `ops-run restore`; for each snapshot its `restic restore`. Commands are built here, quoted for
//! the shell; secrets appear only as the variables or files that hold them.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::ReportError;
use crate::artifact::layout::{self, Area};
use crate::artifact::sha;
use crate::exec::shell_quote as q;
use crate::plan::compile::{Compiled, CompiledPlan};
use crate::plan::model::{Database, Engine, Sourced, StepKind, ValueSource};
use crate::plan::settings::Env;
use crate::units::duration;

/// The built-in runbook template.
pub const TEMPLATE: &str = include_str!("../../templates/dr-runbook.md.hbs");

/// A secret as a shell expression: `"$VAR"` or `"$(cat 'FILE')"`; `None` when it is written in
/// the plan (it is never copied into the runbook).
fn secret_expr(s: &Sourced) -> Option<String> {
    match &s.source {
        ValueSource::Env(v) => Some(format!("\"${v}\"")),
        ValueSource::File(p) => Some(format!("\"$(cat {})\"", q(p))),
        ValueSource::Credential(c) => Some(format!(
            "\"$(cat {})\"",
            q(&format!("/etc/ops-run/credentials/{c}"))
        )),
        ValueSource::Literal(_) => None,
    }
}

/// Where a secret comes from, in words.
fn secret_words(s: &Sourced) -> String {
    match &s.source {
        ValueSource::Env(v) => format!("the environment variable `{v}`"),
        ValueSource::File(p) => format!("the file `{p}`"),
        ValueSource::Credential(c) => format!(
            "the systemd credential `{c}` (`LoadCredential={c}:…` of the unit; by hand, the file it loads)"
        ),
        ValueSource::Literal(_) => "the plan file itself (not copied here)".into(),
    }
}

/// A repository written in the plan as a local path (no scheme, no user): no secret, and the
/// runbook needs it; absolute. Any other written value (`rest:https://user:…@…`) stays out.
fn plain_repository(s: &Sourced) -> Option<String> {
    let ValueSource::Literal(v) = &s.source else {
        return None;
    };
    let path = v.strip_prefix("local:").unwrap_or(v);
    if path.contains(':') || path.contains('@') {
        return None;
    }
    Some(std::path::absolute(path).map_or_else(|_| path.to_string(), |p| p.display().to_string()))
}

/// `export NAME=…` for a secret, or a comment saying where it is.
fn export(name: &str, s: Option<&Sourced>) -> Option<String> {
    let s = s?;
    Some(match secret_expr(s) {
        Some(e) => format!("export {name}={e}"),
        None => format!("# {name}: written in the plan file; export it by hand"),
    })
}

fn minute(t: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    crate::clock::local_minute(t, tz)
}

/// The newest good dump of a folder: name, path, size, sha256 and when it was taken.
fn newest_dump(dir: &Path, tz: chrono_tz::Tz, now: DateTime<Utc>) -> Option<Value> {
    let d = layout::good_dumps(dir, tz, now).next()?;
    let sidecar = std::fs::read_to_string(layout::sidecar_path(&d.path)).ok()?;
    let sha256 = sha::parse_sidecar(&sidecar, &d.name)?;
    let size = std::fs::metadata(&d.path).map(|m| m.len()).unwrap_or(0);
    let manifest = crate::artifact::manifest::read(&d.path).ok().flatten();
    let tables: Vec<Value> = manifest.as_ref().map_or_else(Vec::new, |m| {
        m.tables
            .iter()
            .map(|(t, n)| json!({ "table": t, "rows": crate::artifact::manifest::thousands(*n) }))
            .collect()
    });
    Some(json!({
        "rows": manifest.as_ref().map(|m| crate::artifact::manifest::thousands(m.rows)),
        "table_count": tables.len(),
        "tables": tables,
        "name": d.name,
        "path": d.path.display().to_string(),
        "dir": dir.display().to_string(),
        "size": crate::units::size::format(size),
        "sha256": sha256,
        "taken": minute(d.taken, tz),
        "age": duration::format(std::time::Duration::from_secs((now - d.taken).num_seconds().max(0) as u64)),
    }))
}

/// The shell commands that find the newest dump in `dir`, check it against its sidecar,
/// create the database and load the dump into it, without ops-run; `example` is today's
/// newest dump, named in a comment. One block: a shell on the worst day runs it top to
/// bottom.
fn load_commands(db: &Database, dir: &str, example: &str, sealed: bool) -> Vec<String> {
    let opt = |flag: &str, v: Option<String>| v.map(|v| format!("{flag}={}", q(&v)));
    let host = opt("--host", db.host.as_ref().map(|h| h.value.clone()));
    let port = opt("--port", db.port.as_ref().map(|p| p.value.to_string()));
    let name = db
        .dbname
        .as_ref()
        .map_or(String::new(), |n| n.value.clone());
    let engine = db.engine.as_ref().map(|e| e.value);
    let join =
        |words: Vec<Option<String>>| words.into_iter().flatten().collect::<Vec<_>>().join(" ");
    let mut lines = vec![
        format!("cd {}", q(dir)),
        format!(
            "# the newest dump, by the time and counter in its name (today: {example}), and its checksum (OK)"
        ),
        NEWEST_DUMP.to_string(),
        "sha256sum -c \"$DUMP.sha256\"".to_string(),
    ];
    if sealed {
        // Encrypted to the restore identity: age decrypts, then gunzip or zstd.
        lines.extend([
            "# the dumps are encrypted (….age): AGE_IDENTITY is the identity file that restores, never kept on the backup host".to_string(),
            ": \"${AGE_IDENTITY:?set AGE_IDENTITY to the age identity file}\"".to_string(),
            "unage() { age -d -i \"$AGE_IDENTITY\" \"$1\" | case \"$1\" in *.zst.age) zstd -dc ;; *) gunzip -c ;; esac; }".to_string(),
            "case \"$DUMP\" in *.age) CAT=unage ;; *.zst) CAT='zstd -dc' ;; *) CAT='gunzip -c' ;; esac".to_string(),
        ]);
    } else {
        // gunzip or zstd, as the dump's name says.
        lines.push(
            "case \"$DUMP\" in *.zst) CAT='zstd -dc' ;; *) CAT='gunzip -c' ;; esac".to_string(),
        );
    }
    match engine {
        Some(Engine::Postgres) => {
            let user = opt("--username", db.user.as_ref().map(|u| u.value.clone()));
            lines.extend(export("PGPASSWORD", db.password.as_ref()));
            lines.push(join(vec![
                Some("createdb".into()),
                host.clone(),
                port.clone(),
                user.clone(),
                Some("--".into()),
                Some(q(&name)),
            ]));
            // Quiet: only errors (the dump's `set_config` and `setval` answers go nowhere).
            lines.push(format!(
                "$CAT \"$DUMP\" | {}",
                join(vec![
                    Some("psql -X -q -v ON_ERROR_STOP=1 -o /dev/null".into()),
                    host,
                    port,
                    user,
                    Some(format!("--dbname={}", q(&name))),
                ])
            ));
        }
        Some(Engine::Mysql | Engine::Mariadb) => {
            let user = opt("--user", db.user.as_ref().map(|u| u.value.clone()));
            let client = join(vec![Some("mariadb".into()), host, port, user]);
            lines.extend(export("MYSQL_PWD", db.password.as_ref()));
            lines.push(format!(
                "{client} -e {}",
                q(&format!("CREATE DATABASE `{}`", name.replace('`', "``")))
            ));
            lines.push(format!("$CAT \"$DUMP\" | {client} -- {}", q(&name)));
        }
        Some(Engine::Sqlite) => {
            let path = db.path.as_ref().map_or(String::new(), |p| p.value.clone());
            let path = std::path::absolute(&path).unwrap_or_else(|_| PathBuf::from(&path));
            lines.push(format!(
                "$CAT \"$DUMP\" | sqlite3 {}",
                q(&path.display().to_string())
            ));
        }
        None => lines.push("# the database has no engine in the plan".into()),
    }
    lines
}

/// Sets `DUMP` to the newest dump of the working directory: the newest time in its name,
/// then the highest counter (`full-…-0200-2` is newer than `full-…-0200`).
const NEWEST_DUMP: &str = "DUMP=$(ls -1 | grep -E '^full-[0-9]{8}-[0-9]{4}(-[0-9]+)?\\.sql\\.(gz|zst)(\\.age)?$' | awk -F'[-.]' '{ n = ($4 ~ /^[0-9]+$/) ? $4 : 1; print $2 $3, n, $0 }' | sort -k1,1n -k2,2n | tail -n 1 | cut -d' ' -f3)";

const NEWEST_BASE: &str = "BASE=$(ls -1 | grep -E '^base-[0-9]{8}-[0-9]{4}(-[0-9]+)?\\.tar\\.zst(\\.age)?$' | awk -F'[-.]' '{ n = ($4 ~ /^[0-9]+$/) ? $4 : 1; print $2 $3, n, $0 }' | sort -k1,1n -k2,2n | tail -n 1 | cut -d' ' -f3)";

/// The roles a plan's databases connect as, by engine, for step 3.
fn roles(plan: &CompiledPlan) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for db in &plan.decl.databases {
        let Some(user) = db.user.as_ref().map(|u| u.value.clone()) else {
            continue;
        };
        let command = match db.engine.as_ref().map(|e| e.value) {
            Some(Engine::Postgres) => format!("createuser {}", q(&user)),
            Some(Engine::Mysql | Engine::Mariadb) => format!(
                "CREATE USER '{}'@'%' IDENTIFIED BY '…';",
                user.replace('\'', "''")
            ),
            _ => continue,
        };
        let item = json!({ "role": user, "command": command, "database": db.name.value });
        if !out.iter().any(|o| o["command"] == item["command"]) {
            out.push(item);
        }
    }
    out
}

/// What `restore db --to` takes for a database: its name, or (SQLite) its file's absolute
/// path, so the command runs from any folder.
fn restore_target(db: &Database) -> String {
    match db.engine.as_ref().map(|e| e.value) {
        Some(Engine::Sqlite) => db.path.as_ref().map_or(String::new(), |p| {
            std::path::absolute(&p.value)
                .map_or_else(|_| p.value.clone(), |a| a.display().to_string())
        }),
        _ => db
            .dbname
            .as_ref()
            .map_or(String::new(), |n| n.value.clone()),
    }
}

/// Where a database lives, in words.
fn address(db: &Database) -> String {
    match db.engine.as_ref().map(|e| e.value) {
        Some(Engine::Sqlite) => db.path.as_ref().map_or("?".into(), |p| {
            std::path::absolute(&p.value)
                .map_or_else(|_| p.value.clone(), |a| a.display().to_string())
        }),
        _ => format!(
            "{} on {}:{}{}",
            db.dbname.as_ref().map_or("?", |n| n.value.as_str()),
            db.host.as_ref().map_or("localhost", |h| h.value.as_str()),
            db.port
                .as_ref()
                .map_or_else(|| "default port".into(), |p| p.value.to_string()),
            db.user
                .as_ref()
                .map_or(String::new(), |u| format!(" as {}", u.value)),
        ),
    }
}

/// A copy's destination as the runbook may show it: a repository written in the plan without
/// a password in it, or the variable that holds it.
fn destination(s: &Sourced) -> (String, Option<String>) {
    if let Some(path) = plain_repository(s) {
        return (
            format!("`{path}`"),
            Some(format!("export RESTIC_REPOSITORY={}", q(&path))),
        );
    }
    match &s.source {
        ValueSource::Literal(v) if crate::exec::redact::url_password(v).is_none() => (
            format!("`{v}`"),
            Some(format!("export RESTIC_REPOSITORY={}", q(v))),
        ),
        _ => (secret_words(s), export("RESTIC_REPOSITORY", Some(s))),
    }
}

/// One offsite copy: where it is, its newest dump there, and how to bring the dumps back.
fn copy_context(
    compiled: &Compiled,
    plan: &CompiledPlan,
    step: &crate::plan::compile::CompiledStep,
    c: &crate::plan::model::OffsiteCopy,
    store: Option<&crate::store::Store>,
) -> Value {
    let tz = plan.timezone.value;
    let newest = store
        .and_then(|s| {
            s.newest_success_meta(
                &plan.decl.name.value,
                step.name(),
                crate::activity::ActivityType::OffsiteCopy,
            )
            .ok()
            .flatten()
        })
        .map(|m| crate::store::meta::CopyMeta::read(&m));
    let (words, repo) = c
        .repository
        .as_ref()
        .map_or(("?".into(), None), destination);
    let tags = format!("ops-run,plan={},step={}", plan.decl.name.value, step.name());
    let restore: Vec<String> = repo
        .into_iter()
        .chain(export("RESTIC_PASSWORD", c.password.as_ref()))
        .chain([
            format!("restic snapshots --tag {tags}"),
            format!("restic restore latest --tag {tags} --target /"),
        ])
        .collect();
    let dump_step = c.dump.as_ref().map_or("", |d| d.value.as_str());
    let sealed = plan.decl.steps.iter().any(|s| {
        s.name.value == dump_step && matches!(&s.kind, StepKind::Dump(d) if d.encrypt.is_some())
    });
    // Where the copied dump goes back to: its database's name (SQLite: its file).
    let target = plan
        .decl
        .steps
        .iter()
        .find(|s| s.name.value == dump_step)
        .and_then(|s| match &s.kind {
            StepKind::Dump(d) => d.database.as_ref(),
            _ => None,
        })
        .and_then(|n| {
            plan.decl
                .databases
                .iter()
                .find(|db| db.name.value == n.value)
        })
        .map_or_else(|| "TARGET".to_string(), restore_target);
    let dump_id = compiled
        .steps
        .iter()
        .find(|s| s.plan == step.plan && s.name() == dump_step)
        .map_or_else(|| dump_step.to_string(), |s| s.id.clone());
    json!({
        "step": step.id,
        "dump": dump_id,
        "destination": words,
        "password": c.password.as_ref().map_or("?".into(), secret_words),
        "schedule": step.schedule.as_ref().map_or_else(|| "none (run by hand)".into(), |s| s.value.expr.clone()),
        "newest": newest.and_then(|n| Some(json!({
            "name": n.newest?,
            "taken": crate::clock::parse_stamp(&n.newest_taken?).map(|t| minute(t, tz)),
        }))),
        "restore": restore.join("\n"),
        "ops_run": format!(
            "ops-run restore db {} --from {} --to {}{}",
            q(&dump_id),
            q(step.name()),
            q(&target),
            if sealed { " --identity \"$AGE_IDENTITY\"" } else { "" }
        ),
    })
}

/// A PostgreSQL cluster's point-in-time recovery: the newest base backup, the archive, and
/// the commands that bring it back without ops-run (plain zstd, tar and the server's pg_ctl).
fn cluster(
    plan: &CompiledPlan,
    step: &crate::plan::compile::CompiledStep,
    now: DateTime<Utc>,
    points: &mut Vec<Value>,
) -> Value {
    let tz = plan.timezone.value;
    let base_dir = plan.dir(step.name(), Area::Base);
    let wal = plan.decl.wals_of(step.name()).next();
    let wal_dir = wal.map(|w| plan.dir(&w.name.value, Area::Wal));
    let bases = crate::artifact::base::good(&base_dir, tz);
    let newest = bases.first();
    let sealed = matches!(&step.decl.kind, StepKind::BaseBackup(b) if b.encrypt.is_some());
    let survey = wal_dir
        .as_ref()
        .map(|w| crate::artifact::base::survey(&base_dir, w, tz));
    let newest_segment = survey.as_ref().and_then(|s| s.newest.clone());
    let age = |t: DateTime<Utc>| {
        duration::format(std::time::Duration::from_secs(
            (now - t).num_seconds().max(0) as u64,
        ))
    };
    match (&newest_segment, newest) {
        (Some(seg), _) => {
            let at: DateTime<Utc> = seg.modified.into();
            points.push(json!({ "what": step.id, "kind": "PostgreSQL WAL", "taken": minute(at, tz), "age": age(at) }));
        }
        (None, Some((_, m))) => {
            if let Some(at) = m.finished() {
                points.push(json!({ "what": step.id, "kind": "PostgreSQL base backup", "taken": minute(at, tz), "age": age(at) }));
            }
        }
        _ => {}
    }
    let version = newest.map_or(String::new(), |(_, m)| m.pg_version.clone());
    let pg_ctl =
        crate::engines::postgres::server_tool(&plan.tools, "pg-ctl", "pg_ctl", Some(&version));
    let mut lines = vec![
        "# The instant to recover to (empty: everything archived), the new data directory, its port"
            .to_string(),
        "TARGET_TIME=''   # e.g. '2026-12-04 16:59:30+01'".to_string(),
        "DATADIR=/var/lib/postgresql/restored".to_string(),
        "PORT=5433".to_string(),
        "as_pg() { if [ \"$(id -u)\" = 0 ]; then runuser -u postgres -- \"$@\"; else \"$@\"; fi; }"
            .to_string(),
        format!("cd {}", q(&base_dir.display().to_string())),
        "# the newest base backup (by the time and counter in its name) and its checksum (OK)"
            .to_string(),
        NEWEST_BASE.to_string(),
        "sha256sum -c \"$BASE.sha256\"".to_string(),
        "install -d -m 0700 \"$DATADIR\" && { [ \"$(id -u)\" != 0 ] || chown postgres: \"$DATADIR\"; }"
            .to_string(),
    ];
    if sealed {
        lines.extend([
            "# the base and the WAL are encrypted: AGE_IDENTITY is the identity file that restores, never kept on the backup host".to_string(),
            ": \"${AGE_IDENTITY:?set AGE_IDENTITY to the age identity file}\"".to_string(),
            "age -d -i \"$AGE_IDENTITY\" \"$BASE\" | zstd -dc | as_pg tar -x -C \"$DATADIR\"".to_string(),
        ]);
    } else {
        lines.push("zstd -dc \"$BASE\" | as_pg tar -x -C \"$DATADIR\"".to_string());
    }
    match &wal_dir {
        Some(w) if sealed => {
            lines.push("# the archive written back in plain inside the new data directory (remove it once recovered)".to_string());
            lines.push("as_pg install -d -m 0700 \"$DATADIR/ops-run-wal-plain\"".to_string());
            lines.push(format!(
                "for f in {}/*.zst.age; do age -d -i \"$AGE_IDENTITY\" \"$f\" | zstd -dc | as_pg tee \"$DATADIR/ops-run-wal-plain/$(basename \"$f\" .zst.age)\" >/dev/null; done",
                q(&w.display().to_string())
            ));
            lines.push("echo \"restore_command = 'cp -- $DATADIR/ops-run-wal-plain/%f \\\"%p\\\"'\" | as_pg tee -a \"$DATADIR/postgresql.auto.conf\" >/dev/null".to_string());
            lines.push("# archive_mode off: the recovered server writes nothing into the archive (turn it on once it is the primary)".to_string());
            lines.push("printf \"recovery_target_timeline = 'latest'\\narchive_mode = 'off'\\n\" | as_pg tee -a \"$DATADIR/postgresql.auto.conf\" >/dev/null".to_string());
            lines.push("[ -z \"$TARGET_TIME\" ] || printf \"recovery_target_time = '%s'\\nrecovery_target_action = 'promote'\\n\" \"$TARGET_TIME\" | as_pg tee -a \"$DATADIR/postgresql.auto.conf\" >/dev/null".to_string());
            lines.push("as_pg touch \"$DATADIR/recovery.signal\"".to_string());
        }
        Some(w) => {
            lines.push(format!(
                "echo \"restore_command = 'zstd -dcq -- {}/%f.zst > \\\"%p\\\"'\" | as_pg tee -a \"$DATADIR/postgresql.auto.conf\" >/dev/null",
                q(&w.display().to_string())
            ));
            lines.push("# archive_mode off: the recovered server writes nothing into the archive (turn it on once it is the primary)".to_string());
            lines.push("printf \"recovery_target_timeline = 'latest'\\narchive_mode = 'off'\\n\" | as_pg tee -a \"$DATADIR/postgresql.auto.conf\" >/dev/null".to_string());
            lines.push("[ -z \"$TARGET_TIME\" ] || printf \"recovery_target_time = '%s'\\nrecovery_target_action = 'promote'\\n\" \"$TARGET_TIME\" | as_pg tee -a \"$DATADIR/postgresql.auto.conf\" >/dev/null".to_string());
            lines.push("as_pg touch \"$DATADIR/recovery.signal\"".to_string());
        }
        None => {
            lines.push("# no archived WAL: the base alone, as it was when it finished".to_string())
        }
    }
    lines.push(
        "# a backup made on Debian has its configuration in /etc: give the copy a minimal one"
            .to_string(),
    );
    lines.push("[ -f \"$DATADIR/postgresql.conf\" ] || echo \"listen_addresses = 'localhost'\" | as_pg tee \"$DATADIR/postgresql.conf\" >/dev/null".to_string());
    lines.push("[ -f \"$DATADIR/pg_hba.conf\" ] || echo 'local all all peer' | as_pg tee \"$DATADIR/pg_hba.conf\" >/dev/null".to_string());
    lines.push(
        "[ -f \"$DATADIR/pg_ident.conf\" ] || as_pg touch \"$DATADIR/pg_ident.conf\"".to_string(),
    );
    lines.push(format!(
        "as_pg {} -D \"$DATADIR\" -o \"-p $PORT -k $DATADIR\" -l \"$DATADIR/recovery.log\" -w -t 3600 start",
        q(&pg_ctl)
    ));
    lines.push("# wait until recovery has ended (promoted), then say where it stopped".to_string());
    lines.push("until grep -q 'database system is ready to accept connections' \"$DATADIR/recovery.log\"; do grep -q FATAL \"$DATADIR/recovery.log\" && break; sleep 1; done".to_string());
    lines.push("grep -E 'recovery stopping|last completed transaction|FATAL' \"$DATADIR/recovery.log\" || true".to_string());
    json!({
        "step": step.id,
        "dir": base_dir.display().to_string(),
        "wal": wal_dir.as_ref().map(|w| w.display().to_string()),
        "schedule": step.schedule.as_ref().map_or_else(|| "none (run by hand)".into(), |s| s.value.expr.clone()),
        "newest": newest.map(|(d, m)| json!({
            "name": d.name,
            "finished": m.finished().map(|t| minute(t, tz)),
            "sha256": m.sha256,
            "start_wal": m.start_wal,
        })),
        "newest_segment": newest_segment.map(|s| json!({
            "name": s.name,
            "archived": minute(s.modified.into(), tz),
        })),
        "missing": survey.and_then(|s| s.gaps).map(|g| g.missing).unwrap_or_default(),
        "restore": lines.join("\n"),
        "ops_run": format!(
            "ops-run restore cluster {} --at latest --to /var/lib/postgresql/restored --port 5433 --start{}",
            q(&step.id),
            if sealed { " --identity \"$AGE_IDENTITY\"" } else { "" }
        ),
    })
}

/// The runbook's context for one plan.
pub fn context(
    compiled: &Compiled,
    plan: &CompiledPlan,
    env: &Env,
    now: DateTime<Utc>,
    store: Option<&crate::store::Store>,
) -> Value {
    let tz = plan.timezone.value;
    let mut tools = vec!["gzip", "coreutils"];
    let mut databases = Vec::new();
    let mut snapshots = Vec::new();
    let mut points = Vec::new();
    let mut drills = Vec::new();
    let mut copies = Vec::new();
    let mut clusters = Vec::new();
    for step in compiled
        .steps
        .iter()
        .filter(|s| std::ptr::eq(&compiled.plans[s.plan], plan))
    {
        match &step.decl.kind {
            StepKind::Dump(d) => {
                let Some(db) = plan
                    .decl
                    .databases
                    .iter()
                    .find(|db| Some(&db.name.value) == d.database.as_ref().map(|n| &n.value))
                else {
                    continue;
                };
                let engine = db.engine.as_ref().map(|e| e.value);
                if d.codec() == crate::artifact::codec::Codec::Zstd {
                    tools.push("zstd");
                }
                if d.encrypt.is_some() {
                    tools.push("age");
                }
                tools.push(match engine {
                    Some(Engine::Postgres) => "postgresql-client",
                    Some(Engine::Mysql | Engine::Mariadb) => "mariadb-client",
                    Some(Engine::Sqlite) => "sqlite3",
                    None => "gzip",
                });
                let dir = plan.dir(step.name(), Area::Dumps);
                let newest = newest_dump(&dir, tz, now);
                let dump_name = newest
                    .as_ref()
                    .and_then(|n| n["name"].as_str())
                    .map_or_else(
                        || {
                            let form = crate::artifact::codec::Form {
                                codec: d.codec(),
                                sealed: d.encrypt.is_some(),
                            };
                            format!("full-YYYYmmdd-HHMM.{}", form.ext())
                        },
                        str::to_string,
                    );
                if let Some(n) = &newest {
                    points.push(json!({ "what": step.id, "kind": "database dump", "taken": n["taken"], "age": n["age"] }));
                }
                let target = restore_target(db);
                databases.push(json!({
                    "step": step.id,
                    "database": db.name.value,
                    "engine": engine.map_or("?", |e| e.name()),
                    "address": address(db),
                    "password": db.password.as_ref().map(secret_words),
                    "dir": dir.display().to_string(),
                    "schedule": step.schedule.as_ref().map_or_else(|| "none (run by hand)".into(), |s| s.value.expr.clone()),
                    "keep": d.keep.as_ref().map_or_else(|| "all".into(), |k| k.value.to_string()),
                    "newest": newest,
                    "load": load_commands(db, &dir.display().to_string(), &dump_name, d.encrypt.is_some()).join("\n"),
                    "ops_run": match d.encrypt.is_some() {
                        true => format!("ops-run restore db {} --to {} --identity \"$AGE_IDENTITY\"", q(&step.id), q(&target)),
                        false => format!("ops-run restore db {} --to {}", q(&step.id), q(&target)),
                    },
                }));
            }
            StepKind::Snapshot(s) => {
                tools.push("restic");
                let dir = plan.dir(step.name(), Area::Snapshots);
                let newest = crate::artifact::marker::newest_complete(&dir, tz, now)
                    .map(|m| (m.id, m.taken));
                if let Some((_, taken)) = &newest {
                    points.push(json!({
                        "what": step.id,
                        "kind": "file snapshot",
                        "taken": minute(*taken, tz),
                        "age": duration::format(std::time::Duration::from_secs((now - *taken).num_seconds().max(0) as u64)),
                    }));
                }
                let repo = if env.get("RESTIC_REPO").is_some() {
                    Some("export RESTIC_REPOSITORY=\"$RESTIC_REPO\"".to_string())
                } else {
                    match s.repository.as_ref().and_then(plain_repository) {
                        Some(path) => Some(format!("export RESTIC_REPOSITORY={}", q(&path))),
                        None => export("RESTIC_REPOSITORY", s.repository.as_ref()),
                    }
                };
                let password = if env.get("RESTIC_PASSWORD").is_some() {
                    Some("export RESTIC_PASSWORD=\"$RESTIC_PASSWORD\"".to_string())
                } else {
                    export("RESTIC_PASSWORD", s.password.as_ref())
                };
                let id = newest
                    .as_ref()
                    .map_or("latest".to_string(), |(id, _)| id.clone());
                let restore: Vec<String> = repo
                    .into_iter()
                    .chain(password)
                    .chain([format!("restic restore {} --target /", q(&id))])
                    .collect();
                snapshots.push(json!({
                    "step": step.id,
                    "paths": s.paths.iter().map(|p| p.value.clone()).collect::<Vec<_>>().join(", "),
                    "repository": if env.get("RESTIC_REPO").is_some() {
                        "the environment variable `RESTIC_REPO`".to_string()
                    } else {
                        match s.repository.as_ref().and_then(plain_repository) {
                            Some(path) => format!("`{path}`"),
                            None => s.repository.as_ref().map_or("?".into(), secret_words),
                        }
                    },
                    "password": if env.get("RESTIC_PASSWORD").is_some() {
                        "the environment variable `RESTIC_PASSWORD`".to_string()
                    } else {
                        s.password.as_ref().map_or("?".into(), secret_words)
                    },
                    "schedule": step.schedule.as_ref().map_or_else(|| "none (run by hand)".into(), |s| s.value.expr.clone()),
                    "newest": newest.as_ref().map(|(id, taken)| json!({ "id": id, "taken": minute(*taken, tz) })),
                    "restore": restore.join("\n"),
                    "ops_run": format!("ops-run restore files {} --to / --overwrite", q(&step.id)),
                }));
            }
            StepKind::Drill(d) => {
                let figures = store.and_then(|s| {
                    s.drill_figures(&plan.decl.name.value, step.name())
                        .ok()
                        .flatten()
                });
                if let Some((rto, rpo)) = figures {
                    drills.push(json!({
                        "step": step.id,
                        "rto": crate::units::duration::figure(rto),
                        "rpo": crate::units::duration::figure(rpo),
                        "rto_objective": d.rto.as_ref().map(|v| duration::format(v.value)),
                        "rpo_objective": d.rpo.as_ref().map(|v| duration::format(v.value)),
                    }));
                }
            }
            StepKind::Copy(c) => {
                tools.push("restic");
                copies.push(copy_context(compiled, plan, step, c, store));
            }
            StepKind::Verify(_)
            | StepKind::Report(_)
            | StepKind::GitTag(_)
            | StepKind::Command(_)
            | StepKind::Runbook(_)
            | StepKind::Check(_)
            | StepKind::Wal(_) => {}
            StepKind::BaseBackup(b) => {
                tools.push("postgresql");
                tools.push("zstd");
                if b.encrypt.is_some() {
                    tools.push("age");
                }
                clusters.push(cluster(plan, step, now, &mut points));
            }
        }
    }
    tools.sort_unstable();
    tools.dedup();
    let info = plan.decl.runbook.clone().unwrap_or_default();
    let env_file = env.source().map(|p| {
        std::path::absolute(p)
            .unwrap_or(p.to_path_buf())
            .display()
            .to_string()
    });
    let text =
        |v: &Option<crate::plan::model::Spanned<String>>| v.as_ref().map(|s| s.value.clone());
    json!({
        "plan": plan.decl.name.value,
        "timezone": tz.name(),
        "generated_at": minute(now, tz),
        "base": plan.base.value,
        "tools": format!("apt-get install -y {}", tools.join(" ")),
        "databases": databases,
        "snapshots": snapshots,
        "copies": copies,
        "clusters": clusters,
        "recovery_points": points,
        "drills": drills,
        "env_file": env_file.clone(),
        "env_file_quoted": env_file.as_deref().map(q),
        "roles": roles(plan),
        "owner": text(&info.owner),
        "contact": text(&info.contact),
        "note": text(&info.note),
    })
}

/// Renders the runbook of `plan` and writes it to `out`, or to `BASE/reports/dr-runbook.md`
/// (replaced atomically: there is one current runbook). Answers the path.
pub fn write(
    compiled: &Compiled,
    plan: &CompiledPlan,
    env: &Env,
    now: DateTime<Utc>,
    out: Option<&Path>,
    store: Option<&crate::store::Store>,
) -> Result<PathBuf, ReportError> {
    let registry = crate::help::registry()?;
    let text = super::render::render(
        TEMPLATE,
        &context(compiled, plan, env, now, store),
        &registry,
    )
    .map_err(|e| ReportError::Render(format!("the runbook template does not render: {e}")))?;
    let path = match out {
        Some(p) => p.to_path_buf(),
        None => Path::new(&plan.base.value).join("reports/dr-runbook.md"),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| ReportError::Folder {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    layout::write_atomic(&path, text.as_bytes()).map_err(|source| ReportError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}
