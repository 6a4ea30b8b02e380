//! `ops-run restore cluster STEP --at TIME --to DATADIR [--port P] [--start]`: point-in-time
//! recovery of a PostgreSQL cluster from a `base-backup` step and its `wal` archive. The newest
//! base backup that finished before TIME is checked against its sidecar and unpacked into an
//! empty DATADIR; the recovery settings (`restore_command` reading the archive with plain
//! `zstd`, `recovery_target_time`, `recovery_target_action 'promote'`) and `recovery.signal`
//! are written. With `--start`, PostgreSQL is started on `--port`, and the restore succeeds
//! only when the server's log says the target was reached and recovery ended. Recorded as a
//! `restore` activity. A restored server archives nothing unless `--archive` (a rehearsal
//! never forks the archive's history).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::activity::ActivityStatus;
use crate::app::App;
use crate::artifact::base::{self, BaseManifest};
use crate::artifact::layout::{Area, DumpFile};
use crate::artifact::sha;
use crate::error::Failure;
use crate::exec::{self, ProcessSpec, shell_quote};
use crate::plan::compile::{Compiled, CompiledPlan};
use crate::plan::model::StepKind;
use crate::session::StepExecutor;

/// What `restore cluster` was asked.
pub struct ClusterArgs<'a> {
    pub step: &'a str,
    pub at: &'a str,
    pub to: &'a Path,
    pub port: Option<u16>,
    pub start: bool,
    pub archive: bool,
}

/// A base-backup step and the archive that continues it.
pub struct Pair {
    pub base_dir: PathBuf,
    pub wal_dir: Option<PathBuf>,
    pub wal_step: Option<String>,
}

/// The base-backup step and its WAL for `step` (either of the two).
pub fn pair(compiled: &Compiled, si: usize) -> Result<(usize, Pair), Failure> {
    let step = &compiled.steps[si];
    let plan: &CompiledPlan = &compiled.plans[step.plan];
    let base_name = match &step.decl.kind {
        StepKind::BaseBackup(_) => step.name().to_string(),
        StepKind::Wal(w) => plan
            .decl
            .wal_base(w)
            .ok_or_else(|| Failure::Usage(format!("`{}` has no base-backup step", step.id)))?
            .to_string(),
        _ => {
            return Err(Failure::Usage(format!(
                "`{}` is not a base-backup or wal step: restore cluster recovers a PostgreSQL cluster from base backups and archived WAL",
                step.id
            )));
        }
    };
    let wal_step = plan.decl.steps.iter().find(|s| match &s.kind {
        StepKind::Wal(w) => plan.decl.wal_base(w) == Some(base_name.as_str()),
        _ => false,
    });
    let base_index = compiled
        .find(&format!("{}/{base_name}", plan.decl.name.value))
        .map_err(|e| Failure::Usage(e.to_string()))?;
    Ok((
        base_index,
        Pair {
            base_dir: plan.dir(&base_name, Area::Base),
            wal_dir: wal_step.map(|s| plan.dir(&s.name.value, Area::Wal)),
            wal_step: wal_step.map(|s| s.name.value.clone()),
        },
    ))
}

/// Who runs the restored server: ops-run's own user, or `postgres` when that is root
/// (PostgreSQL refuses to run as root).
fn server_user() -> Result<Option<crate::identity::User>, String> {
    if !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    crate::identity::lookup_name("postgres")
        .map(Some)
        .ok_or_else(|| {
            "PostgreSQL does not run as root, and there is no `postgres` user to run it as".into()
        })
}

fn chown_tree(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            chown_tree(&e.path(), uid, gid)?;
        } else {
            std::os::unix::fs::lchown(e.path(), Some(uid), Some(gid))?;
        }
    }
    Ok(())
}

/// A setting's value in `postgresql.conf` syntax.
fn conf_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// The `restore_command` reading `wal_dir`: plain `zstd` when it is installed (it works
/// without ops-run, as the runbook's), else ops-run's `wal fetch`.
pub fn restore_command(wal_dir: &Path, plan: &str, wal_step: &str, plans: &Path) -> String {
    if on_path("zstd") {
        // `%f` is a WAL file name (hex digits and a dot): safe outside the quotes.
        format!(
            "test -f {d}/%f.zst && zstd -dcq -- {d}/%f.zst > \"%p\"",
            d = shell_quote(&wal_dir.display().to_string())
        )
    } else {
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("ops-run"));
        let plans = std::fs::canonicalize(plans).unwrap_or_else(|_| plans.to_path_buf());
        format!(
            "{} --plans {} wal fetch {plan}/{wal_step} %f %p",
            shell_quote(&exe.display().to_string()),
            shell_quote(&plans.display().to_string())
        )
    }
}

/// What a recovery's settings are.
pub struct Recovery<'a> {
    pub restore_command: String,
    pub at: Option<DateTime<Utc>>,
    pub archive: bool,
    pub port: Option<u16>,
    pub note: &'a str,
}

/// Unpacks `base` into the empty `to` and writes the recovery settings.
pub fn prepare(base: &DumpFile, to: &Path, r: &Recovery) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot set the mode of {}: {e}", to.display()))?;
    base::unpack(&base.path, to)
        .map_err(|e| format!("cannot unpack {} into {}: {e}", base.name, to.display()))?;
    // A Debian cluster keeps its configuration in /etc: the copy then has none of it.
    let minimal = [
        (
            "postgresql.conf",
            "# Written by ops-run restore cluster: the backup held no postgresql.conf.\nlisten_addresses = 'localhost'\n",
        ),
        (
            "pg_hba.conf",
            "# Written by ops-run restore cluster: the backup held no pg_hba.conf.\nlocal all all peer\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n",
        ),
        ("pg_ident.conf", ""),
    ];
    for (name, text) in minimal {
        let p = to.join(name);
        if !p.exists() {
            std::fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
        }
    }
    let mut lines = vec![
        String::new(),
        format!("# ops-run restore cluster: {}", r.note),
        format!("restore_command = {}", conf_quote(&r.restore_command)),
        "recovery_target_timeline = 'latest'".to_string(),
    ];
    if let Some(at) = r.at {
        lines.push(format!(
            "recovery_target_time = {}",
            conf_quote(&at.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string())
        ));
        lines.push("recovery_target_action = 'promote'".into());
    }
    if !r.archive {
        lines.push("archive_mode = 'off'".into());
    }
    if let Some(p) = r.port {
        lines.push(format!("port = {p}"));
    }
    let auto = to.join("postgresql.auto.conf");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&auto)
        .map_err(|e| format!("cannot write {}: {e}", auto.display()))?;
    f.write_all((lines.join("\n") + "\n").as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", auto.display()))?;
    std::fs::write(to.join("recovery.signal"), "")
        .map_err(|e| format!("cannot write recovery.signal: {e}"))?;
    Ok(())
}

/// What the server's log says of a recovery that ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Promoted; the line that says where recovery stopped (with a target).
    Reached(Option<String>),
    /// Recovery stopped at the end of the archive: PostgreSQL found no transaction after the
    /// target.
    NotReached(String),
    Failed(String),
}

/// Reads a recovery's log: `None` while it goes on.
pub fn read_log(log: &str, target: bool) -> Option<Ended> {
    if let Some(l) = log
        .lines()
        .find(|l| l.contains("recovery ended before configured recovery target was reached"))
    {
        return Some(Ended::NotReached(l.to_string()));
    }
    if let Some(l) = log
        .lines()
        .find(|l| l.contains("FATAL:") || l.contains("PANIC:"))
    {
        return Some(Ended::Failed(l.to_string()));
    }
    if !log.lines().any(|l| {
        l.contains("database system is ready to accept connections") && !l.contains("read-only")
    }) {
        return None;
    }
    let stopped = log
        .lines()
        .find(|l| l.contains("recovery stopping "))
        .map(str::to_string);
    if target && stopped.is_none() {
        return Some(Ended::NotReached(
            "recovery ended without stopping at the target".into(),
        ));
    }
    Some(Ended::Reached(stopped))
}

/// Starts the restored server and waits for recovery to end.
pub struct Started {
    pub log: PathBuf,
    pub reached: Option<String>,
    pub pg_ctl: String,
    pub socket: Option<PathBuf>,
}

pub fn start(
    to: &Path,
    m: &BaseManifest,
    port: u16,
    target: bool,
    tools: &std::collections::HashMap<String, crate::plan::settings::Setting<String>>,
    redactor: &crate::exec::redact::Redactor,
    wait: Duration,
) -> Result<Started, String> {
    let user = server_user()?;
    let logdir = to.join("log");
    std::fs::create_dir_all(&logdir)
        .map_err(|e| format!("cannot create {}: {e}", logdir.display()))?;
    if let Some(u) = &user {
        chown_tree(to, u.uid, u.gid)
            .map_err(|e| format!("cannot give {} to {}: {e}", to.display(), u.name))?;
    }
    let log = logdir.join("ops-run-recovery.log");
    let pg_ctl =
        crate::engines::postgres::server_tool(tools, "pg-ctl", "pg_ctl", Some(&m.pg_version));
    // The socket beside the data when the path fits a socket's name (107 bytes).
    let socket = (to.as_os_str().len() < 80).then(|| to.to_path_buf());
    let mut options = format!("-p {port} -c listen_addresses=localhost");
    match &socket {
        Some(s) => options.push_str(&format!(" -k {}", shell_quote(&s.display().to_string()))),
        None => options.push_str(" -c unix_socket_directories=''"),
    }
    let mut args: Vec<String> = vec![
        "-D".into(),
        to.display().to_string(),
        "-l".into(),
        log.display().to_string(),
        "-o".into(),
        options,
        "-w".into(),
        "-t".into(),
        wait.as_secs().max(1).to_string(),
        "start".into(),
    ];
    let program = match &user {
        Some(u) => {
            let mut a = vec![
                "-u".to_string(),
                u.name.clone(),
                "--".into(),
                pg_ctl.clone(),
            ];
            a.append(&mut args);
            args = a;
            "runuser".to_string()
        }
        None => pg_ctl.clone(),
    };
    let mut spec = ProcessSpec::new(program, args);
    spec.detach = true;
    spec.minimal_env = true;
    spec.timeout = Some(wait + Duration::from_secs(30));
    let r = exec::run(&spec, redactor);
    let deadline = Instant::now() + wait;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        match read_log(&text, target) {
            Some(Ended::Reached(line)) => {
                return Ok(Started {
                    log,
                    reached: line,
                    pg_ctl,
                    socket,
                });
            }
            Some(Ended::NotReached(line)) => {
                return Err(format!(
                    "the target was not reached: {line} (the archive holds no transaction after it; `--at latest` replays all there is). Server log: {}",
                    log.display()
                ));
            }
            Some(Ended::Failed(line)) => {
                return Err(format!(
                    "the server failed: {line}. Server log: {}",
                    log.display()
                ));
            }
            None if Instant::now() > deadline || (!r.success() && !text.contains("redo")) => {
                return Err(format!(
                    "recovery did not end in {} ({}). Server log: {}",
                    crate::units::duration::format(wait),
                    r.exit
                        .reason("pg_ctl")
                        .unwrap_or_else(|| "still running".into()),
                    log.display()
                ));
            }
            None => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Stops a server `start` started (fast shutdown), as its user.
pub fn stop(
    to: &Path,
    pg_ctl: &str,
    redactor: &crate::exec::redact::Redactor,
) -> Result<(), String> {
    let user = server_user()?;
    let base = vec![
        "-D".to_string(),
        to.display().to_string(),
        "-m".into(),
        "fast".into(),
        "-w".into(),
        "stop".into(),
    ];
    let (program, args) = match &user {
        Some(u) => {
            let mut a = vec![
                "-u".to_string(),
                u.name.clone(),
                "--".into(),
                pg_ctl.to_string(),
            ];
            a.extend(base);
            ("runuser".to_string(), a)
        }
        None => (pg_ctl.to_string(), base),
    };
    let mut spec = ProcessSpec::new(program, args);
    spec.minimal_env = true;
    spec.ignore_interrupt = true;
    spec.timeout = Some(Duration::from_secs(120));
    let r = exec::run(&spec, redactor);
    match r.exit.reason("pg_ctl stop") {
        None => Ok(()),
        Some(why) => Err(format!("{why}: {}", r.tail.trim())),
    }
}

fn empty_or_absent(p: &Path) -> bool {
    match std::fs::read_dir(p) {
        Ok(mut d) => d.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

pub fn run(app: &App, a: &ClusterArgs) -> Result<(), Failure> {
    let (_loaded, compiled) = app.load()?;
    let asked = compiled.find(a.step)?;
    let (si, pair) = pair(&compiled, asked)?;
    let redactor = app.redactor(&compiled);
    let executor = StepExecutor {
        app,
        compiled: &compiled,
        redactor: &redactor,
    };
    let ctx = executor.context(si);
    let tz = ctx.plan.timezone.value;
    let at = match a.at {
        "latest" => None,
        s => Some(crate::commands::restore::parse_at(s, tz).map_err(Failure::Usage)?),
    };
    if a.start && a.port.is_none() {
        return Err(Failure::Usage(
            "--start needs --port: the port the restored server listens on (not the live server's)"
                .into(),
        ));
    }
    let (Some(wal_dir), Some(wal_step)) = (&pair.wal_dir, &pair.wal_step) else {
        return Err(Failure::Usage(format!(
            "`{}` has no wal step: without archived WAL a base backup restores only to its own end",
            ctx.step.id
        )));
    };
    if !empty_or_absent(a.to) {
        return Err(Failure::Usage(format!(
            "{} is not empty: restore cluster unpacks into an empty or new folder",
            a.to.display()
        )));
    }
    let bases = base::good(&pair.base_dir, tz);
    let Some((chosen, m)) = base::choose(&bases, at) else {
        return Err(Failure::Runtime(match (at, bases.last()) {
            (_, None) => format!("no good base backup in {}", pair.base_dir.display()),
            (Some(at), Some((_, oldest))) => format!(
                "no base backup finished before {}: the oldest finished at {}",
                crate::clock::stamp(at),
                oldest.finished_at
            ),
            (None, Some(_)) => "no base backup".into(),
        }));
    };
    let actual = sha::file_sha256(&chosen.path)
        .map_err(|e| Failure::Runtime(format!("cannot read {}: {e}", chosen.path.display())))?;
    if actual != m.sha256 || !crate::artifact::layout::is_good(chosen) {
        return Err(Failure::Runtime(format!(
            "checksum mismatch: {} is damaged (sha256 {actual}, its sidecar says otherwise); nothing was restored",
            chosen.name
        )));
    }
    crate::outln!(
        "base: {} (finished {}, sha256 {actual}, matches its sidecar)",
        chosen.path.display(),
        m.finished_at
    );
    let started_at = app.clock.now();
    let started = Instant::now();
    let recording = crate::commands::restore::Recording::start(app, &ctx, started_at)?;
    let target_words = at.map_or("the end of the archive".to_string(), crate::clock::stamp);
    let result = (|| -> Result<Option<Started>, String> {
        prepare(
            chosen,
            a.to,
            &Recovery {
                restore_command: restore_command(
                    wal_dir,
                    &ctx.plan.decl.name.value,
                    wal_step,
                    ctx.plans,
                ),
                at,
                archive: a.archive,
                port: a.port,
                note: &format!("from {} to {target_words}", chosen.name),
            },
        )?;
        match (a.start, a.port) {
            (true, Some(port)) => start(
                a.to,
                m,
                port,
                at.is_some(),
                &ctx.plan.tools,
                &redactor,
                ctx.step.timeout.value,
            )
            .map(Some),
            _ => {
                if let Some(u) = server_user()? {
                    chown_tree(a.to, u.uid, u.gid).map_err(|e| {
                        format!("cannot give {} to {}: {e}", a.to.display(), u.name)
                    })?;
                }
                Ok(None)
            }
        }
    })();
    let duration = started.elapsed();
    let (status, log) = match &result {
        Ok(s) => (
            ActivityStatus::Success,
            s.as_ref()
                .and_then(|s| s.reached.clone())
                .unwrap_or_default(),
        ),
        Err(e) => (ActivityStatus::Failed, redactor.redact(e)),
    };
    let meta = json!({
        "base": chosen.path.display().to_string(),
        "sha256": actual,
        "target_time": at.map(crate::clock::stamp),
        "to": a.to.display().to_string(),
        "started": a.start,
        "reached": result.as_ref().ok().and_then(|s| s.as_ref()).and_then(|s| s.reached.clone()),
        "duration_ms": duration.as_millis() as u64,
    });
    recording.finish(app, duration, (status, &meta, &log))?;
    match result {
        Err(e) => Err(Failure::Runtime(format!(
            "restore cluster failed: {}; {} is left as it is for inspection",
            redactor.redact(&e),
            a.to.display()
        ))),
        Ok(None) => {
            crate::outln!(
                "unpacked into {} with recovery to {target_words}; start it with: pg_ctl -D {} start",
                a.to.display(),
                shell_quote(&a.to.display().to_string())
            );
            Ok(())
        }
        Ok(Some(s)) => {
            crate::outln!(
                "recovered to {target_words} in {:.1} s{}",
                duration.as_secs_f64(),
                s.reached
                    .map(|l| format!(": {}", l.trim()))
                    .unwrap_or_default()
            );
            crate::outln!(
                "the server runs on port {}{}; log {}; stop it with: {} -D {} stop",
                a.port.unwrap_or_default(),
                s.socket
                    .map(|p| format!(" (socket in {})", p.display()))
                    .unwrap_or_default(),
                s.log.display(),
                s.pg_ctl,
                shell_quote(&a.to.display().to_string())
            );
            Ok(())
        }
    }
}
