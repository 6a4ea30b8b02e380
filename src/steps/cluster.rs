//! A PostgreSQL cluster brought back from a base backup and its archived WAL, shared by
//! `restore cluster` and the restore test of a base backup (`verify { base-backup … }`):
//! unpack into an empty data directory, write the recovery settings, start PostgreSQL (as
//! `postgres` when ops-run is root), read its log until recovery ended, stop it.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::artifact::base::{self, BaseManifest};
use crate::artifact::layout::DumpFile;
use crate::exec::{self, ProcessSpec, shell_quote};

/// Who runs the restored server: ops-run's own user, or `postgres` when that is root
/// (PostgreSQL refuses to run as root).
pub fn server_user() -> Result<Option<crate::identity::User>, String> {
    if !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    crate::identity::lookup_name("postgres")
        .map(Some)
        .ok_or_else(|| {
            "PostgreSQL does not run as root, and there is no `postgres` user to run it as".into()
        })
}

/// `program args…`, through `runuser -u USER --` when the server runs as another user.
fn as_user(user: Option<&crate::identity::User>, program: &str, args: Vec<String>) -> ProcessSpec {
    match user {
        Some(u) => ProcessSpec::new(
            "runuser",
            [
                "-u".to_string(),
                u.name.clone(),
                "--".into(),
                program.to_string(),
            ]
            .into_iter()
            .chain(args),
        ),
        None => ProcessSpec::new(program, args),
    }
}

pub fn chown_tree(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
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
    /// `None`: no archive to read; the base's own WAL makes it consistent (no recovery.signal).
    pub restore_command: Option<String>,
    pub at: Option<DateTime<Utc>>,
    pub archive: bool,
    pub port: Option<u16>,
    pub note: &'a str,
    /// The identity of an encrypted base.
    pub key: Option<&'a crate::artifact::seal::Key>,
}

/// Where an encrypted archive's WAL is written back in plain for the recovery, inside the
/// data directory (the server's user reads it there); removed once recovery ended.
pub const PLAIN_WAL: &str = "ops-run-wal-plain";

/// The `restore_command` that copies from a folder of plain WAL files.
pub fn copy_restore_command(dir: &Path) -> String {
    let d = shell_quote(&dir.display().to_string());
    format!("test -f {d}/%f && cp -- {d}/%f \"%p\"")
}

/// Unpacks `base` into the empty `to` and writes the recovery settings.
pub fn prepare(base: &DumpFile, to: &Path, r: &Recovery) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot set the mode of {}: {e}", to.display()))?;
    base::unpack(&base.path, to, r.key)
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
    ];
    if let Some(rc) = &r.restore_command {
        lines.push(format!("restore_command = {}", conf_quote(rc)));
        lines.push("recovery_target_timeline = 'latest'".to_string());
    }
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
    if r.restore_command.is_some() {
        std::fs::write(to.join("recovery.signal"), "")
            .map_err(|e| format!("cannot write recovery.signal: {e}"))?;
    }
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

/// The words of a recovery that ended before its target.
pub const NOT_REACHED: &str = "the target was not reached";

/// Starts the restored server and waits for recovery to end.
pub struct Started {
    pub log: PathBuf,
    pub reached: Option<String>,
    /// When the last transaction replayed was committed (PostgreSQL's "last completed
    /// transaction was at log time …"): the recovery point achieved.
    pub last_transaction: Option<DateTime<Utc>>,
    pub pg_ctl: String,
    pub socket: Option<PathBuf>,
}

/// Where a started server listens.
pub struct Listen {
    pub port: u16,
    /// On localhost's TCP port too (`restore cluster`); else only on the socket, with a
    /// `trust` pg_hba.conf of its own (a restore test's private server).
    pub tcp: bool,
    /// The socket's folder (`None`: no socket).
    pub socket: Option<PathBuf>,
}

/// Writes the private server's pg_hba.conf: `trust` on its socket, nothing else. The socket's
/// folder is the scratch folder (0700), so only ops-run's user (and root) reach it.
pub fn private_hba(to: &Path) -> std::io::Result<PathBuf> {
    let p = to.join("ops-run-verify-hba.conf");
    std::fs::write(&p, "local all all trust\n")?;
    Ok(p)
}

pub fn start(
    to: &Path,
    m: &BaseManifest,
    listen: &Listen,
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
    let socket = listen.socket.clone();
    let mut options = format!("-p {}", listen.port);
    if listen.tcp {
        options.push_str(" -c listen_addresses=localhost");
    } else {
        let hba = private_hba(to).map_err(|e| format!("cannot write pg_hba.conf: {e}"))?;
        options.push_str(&format!(
            " -c listen_addresses='' -c hba_file={}",
            shell_quote(&hba.display().to_string())
        ));
    }
    match &socket {
        Some(s) => options.push_str(&format!(" -k {}", shell_quote(&s.display().to_string()))),
        None => options.push_str(" -c unix_socket_directories=''"),
    }
    let args: Vec<String> = vec![
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
    let mut spec = as_user(user.as_ref(), &pg_ctl, args);
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
                    last_transaction: last_transaction(&text),
                    log,
                    reached: line,
                    pg_ctl,
                    socket,
                });
            }
            Some(Ended::NotReached(line)) => {
                return Err(format!(
                    "{NOT_REACHED}: {line} (the archive holds no transaction after it; `--at latest` replays all there is). Server log: {}",
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
    let mut spec = as_user(user.as_ref(), pg_ctl, base);
    spec.minimal_env = true;
    spec.ignore_interrupt = true;
    spec.timeout = Some(Duration::from_secs(120));
    let r = exec::run(&spec, redactor);
    match r.exit.reason("pg_ctl stop") {
        None => Ok(()),
        Some(why) => Err(format!("{why}: {}", r.tail.trim())),
    }
}

/// "last completed transaction was at log time 2026-12-06 23:13:41.733327+00", as an instant.
pub fn last_transaction(log: &str) -> Option<DateTime<Utc>> {
    let at = log
        .lines()
        .find_map(|l| l.split_once("last completed transaction was at log time "))?
        .1
        .trim();
    DateTime::parse_from_str(&format!("{at}00"), "%Y-%m-%d %H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_str(at, "%Y-%m-%d %H:%M:%S%.f%#z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A `verify { base-backup STEP }`: the step it names is a base-backup step, and the
/// settings of a dump restore are not given.
pub fn validate_verify(
    v: &crate::plan::model::Verify,
    b: &crate::plan::model::Spanned<String>,
    scope: &crate::plan::validate::Scope,
    diags: &mut Vec<crate::plan::diagnostic::Diagnostic>,
) {
    use crate::plan::diagnostic::Diagnostic;
    scope.reference("base-backup", b, diags);
    let dump_only = [
        ("dump", v.dump.as_ref().map(|d| d.span)),
        ("from", v.from.as_ref().map(|d| d.span)),
        ("sessions", v.sessions.as_ref().map(|d| d.span)),
        ("ownership", v.ownership.as_ref().map(|d| d.span)),
        (
            "verify-database",
            v.verify_database.as_ref().map(|d| d.span),
        ),
    ];
    for (key, span) in dump_only {
        if let Some(span) = span {
            diags.push(
                Diagnostic::error(
                    span,
                    format!("`{key}` is for the restore test of a dump, not of a base backup"),
                    "not with base-backup",
                )
                .with_help("a base backup is restored whole, into a scratch cluster of its own: remove it, or make a second verify"),
            );
        }
    }
}

/// What `--dry-run` says a base backup's restore test does.
pub fn preview_verify(ctx: &super::Context, step: &str) -> String {
    let tz = ctx.plan.timezone.value;
    let newest = base::good(&ctx.plan.dir(step, crate::artifact::layout::Area::Base), tz)
        .first()
        .map_or_else(
            || "(no base backup yet)".to_string(),
            |(d, _)| d.path.display().to_string(),
        );
    format!(
        "recover {newest} with all archived WAL into a scratch cluster on a private socket, count and query it, stop it, remove it"
    )
}

/// A random instant between `after` (a base backup's end) and the newest archived segment of
/// the step's WAL: where a PITR drill recovers to. `None` without archived WAL after it.
pub fn random_instant(
    ctx: &super::Context,
    step: &str,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let plan = ctx.plan;
    let wal = plan.decl.wals_of(step).next()?;
    let survey = base::survey(
        &plan.dir(step, crate::artifact::layout::Area::Base),
        &plan.dir(&wal.name.value, crate::artifact::layout::Area::Wal),
        plan.timezone.value,
    );
    let newest: DateTime<Utc> = survey.newest?.modified.into();
    let span = (newest - after).num_milliseconds();
    if span <= 1000 {
        return None;
    }
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).ok()?;
    let offset = 1000 + (u64::from_le_bytes(bytes) % (span as u64 - 1000)) as i64;
    Some(after + chrono::Duration::milliseconds(offset))
}

/// What a rehearsal's recovery achieved.
pub struct Recovered {
    pub reached: Option<String>,
    pub last_transaction: Option<DateTime<Utc>>,
    pub duration: Duration,
}

/// The folder a rehearsal recovers into: hidden in the step's verify folder, named like a
/// temporary file so a later run removes it when its ops-run is gone.
fn scratch_dir(ctx: &super::Context) -> PathBuf {
    let dir = ctx
        .plan
        .dir(ctx.step.name(), crate::artifact::layout::Area::VerifyLogs);
    crate::artifact::layout::temp_path(&dir.join("cluster"))
}

/// Recovers the base `base` of the base-backup step `step` (with its wal step's archive, to
/// `at` or to the end) into a scratch folder, serves it on a private socket, hands a client
/// of it to `work`, then stops the server and removes the folder, whatever `work` did.
pub fn rehearse<T>(
    ctx: &super::Context,
    step: &str,
    base: &DumpFile,
    m: &BaseManifest,
    at: Option<DateTime<Utc>>,
    (lines, key): (&mut Vec<String>, Option<&crate::artifact::seal::Key>),
    work: &mut dyn FnMut(&crate::engines::client::Client, &str) -> Result<T, super::StepError>,
) -> Result<(T, Recovered), super::StepError> {
    use crate::plan::model::StepKind;
    let plan = ctx.plan;
    let wal = plan.decl.wals_of(step).next();
    let scratch = scratch_dir(ctx);
    let wal_dir = wal.map(|w| plan.dir(&w.name.value, crate::artifact::layout::Area::Wal));
    // The caller gives a key when the base or its archive is encrypted (`base::encrypted`).
    let sealed = key.is_some();
    let restore_command = wal.map(|w| match sealed {
        // Encrypted: written back in plain inside the scratch folder first (below).
        true => copy_restore_command(&scratch.join(PLAIN_WAL)),
        false => restore_command(
            &plan.dir(&w.name.value, crate::artifact::layout::Area::Wal),
            &plan.decl.name.value,
            &w.name.value,
            ctx.plans,
        ),
    });
    let db = plan
        .decl
        .steps
        .iter()
        .find_map(|s| match &s.kind {
            StepKind::BaseBackup(b) if s.name.value == step => b.database.as_ref(),
            _ => None,
        })
        .ok_or_else(|| format!("no base-backup step `{step}`"))?;
    let source = ctx.database(&db.value)?;
    if scratch.as_os_str().len() > 90 {
        return Err(format!(
            "{} is too long a path for the scratch server's socket (at most 90 bytes): use a shorter base",
            scratch.display()
        )
        .into());
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))?;
    if let Some(parent) = scratch.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    lines.push(format!(
        "recovery: {} into {} ({})",
        base.name,
        scratch.display(),
        match (&wal, at) {
            (None, _) => "the base alone: no wal step".to_string(),
            (Some(w), None) => format!("all of `{}`", w.name.value),
            (Some(w), Some(t)) => format!("`{}` to {}", w.name.value, crate::clock::stamp(t)),
        }
    ));
    let started = Instant::now();
    // Once a start was tried, the server is stopped before the folder goes, started or not.
    let mut tried_start = false;
    let result = (|| -> Result<(T, Recovered), super::StepError> {
        prepare(
            base,
            &scratch,
            &Recovery {
                restore_command,
                at,
                archive: false,
                port: Some(port),
                note: "a restore test",
                key,
            },
        )?;
        if let (true, Some(dir), Some(key)) = (sealed, &wal_dir, key) {
            let n = crate::artifact::wal::unseal_all(dir, &scratch.join(PLAIN_WAL), key)
                .map_err(|e| e.to_string())?;
            lines.push(format!(
                "decrypted {n} archived WAL file(s) for the recovery"
            ));
        }
        tried_start = true;
        let s = start(
            &scratch,
            m,
            &Listen {
                port,
                tcp: false,
                socket: Some(scratch.clone()),
            },
            at.is_some(),
            &plan.tools,
            ctx.redactor,
            exec::escape::remaining(ctx.step.timeout.value),
        )?;
        let recovered = Recovered {
            reached: s.reached.clone(),
            last_transaction: s.last_transaction,
            duration: started.elapsed(),
        };
        if let Some(r) = &recovered.reached {
            lines.push(format!("reached: {}", r.trim()));
        }
        if let Some(t) = recovered.last_transaction {
            lines.push(format!("last transaction: {}", crate::clock::stamp(t)));
        }
        lines.push(format!(
            "recovered in {:.1} s",
            recovered.duration.as_secs_f64()
        ));
        let mut scratch_db = source.clone();
        scratch_db.host = Some(crate::plan::model::Spanned::new(
            scratch.display().to_string(),
            source.name.span,
        ));
        scratch_db.port = Some(crate::plan::model::Spanned::new(port, source.name.span));
        scratch_db.password = None;
        let client = crate::engines::client::Client::new(
            &crate::engines::Target {
                db: &scratch_db,
                password: None,
            },
            &plan.tools,
        )?;
        let name = source
            .dbname
            .as_ref()
            .map_or("postgres", |d| d.value.as_str());
        let out = work(&client, name)?;
        Ok((out, recovered))
    })();
    if tried_start {
        let pg_ctl = crate::engines::postgres::server_tool(
            &plan.tools,
            "pg-ctl",
            "pg_ctl",
            Some(&m.pg_version),
        );
        let _ = stop(&scratch, &pg_ctl, ctx.redactor);
    }
    match std::fs::remove_dir_all(&scratch) {
        Ok(()) => lines.push("scratch: removed".into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => lines.push(format!(
            "scratch: NOT removed ({e}); the next run tries again"
        )),
    }
    result
}

/// Removes the scratch clusters of rehearsals whose ops-run is gone (their server stopped
/// first); one line for each.
pub fn sweep_scratch(ctx: &super::Context) -> Vec<String> {
    let dir = ctx
        .plan
        .dir(ctx.step.name(), crate::artifact::layout::Area::VerifyLogs);
    let mut said = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return said;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(owner) = name.strip_prefix(".cluster.tmp.") else {
            continue;
        };
        let pid = owner.split('.').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_none_or(exec::escape::still_running) || !e.path().is_dir() {
            continue;
        }
        if e.path().join("postmaster.pid").exists() {
            let pg_ctl =
                crate::engines::postgres::server_tool(&ctx.plan.tools, "pg-ctl", "pg_ctl", None);
            let _ = stop(&e.path(), &pg_ctl, ctx.redactor);
        }
        if std::fs::remove_dir_all(e.path()).is_ok() {
            said.push(format!(
                "removed the scratch cluster {} (left by an ops-run that was stopped)",
                e.path().display()
            ));
        }
    }
    said
}

/// A base backup and the WAL archive read back from a `copy` step's destination.
pub struct FromCopy {
    /// The base, fetched into a scratch folder (removed when this is dropped) and checked
    /// against the sha256 it was copied with.
    pub base: DumpFile,
    pub manifest: BaseManifest,
    pub snapshot: String,
    /// The newest snapshot of the WAL archive, and the path it had on the source host.
    wal: Option<(String, String)>,
    env: Vec<(String, String)>,
    _scratch: super::scratch::RemoveTree,
}

impl FromCopy {
    /// Where the WAL lands under `into` once `fetch_wal` ran.
    pub fn wal_dir(&self, into: &Path) -> Option<PathBuf> {
        self.wal
            .as_ref()
            .map(|(_, path)| into.join(path.trim_start_matches('/')))
    }

    /// `restic restore` of the WAL archive's newest snapshot into `into`.
    pub fn fetch_wal(&self, ctx: &super::Context, into: &Path) -> Result<(), String> {
        let Some((id, _)) = &self.wal else {
            return Ok(());
        };
        let args = vec![
            "restore".to_string(),
            id.clone(),
            format!("--target={}", into.display()),
        ];
        let r = exec::run(&super::restic::restic(ctx, &self.env, &args), ctx.redactor);
        match r.success() {
            true => Ok(()),
            false => Err(format!(
                "restic restore of the WAL archive failed: {}\n{}",
                super::restic::exit_reason("restic", &r.exit),
                r.tail.trim()
            )),
        }
    }
}

/// The newest base backup at copy `copy`'s destination taken before `at` (any host's: the
/// restore may run on a new machine), fetched and checked, and the newest snapshot of the
/// WAL archive there.
pub fn from_copy(
    ctx: &super::Context,
    copy: &str,
    base_step: &str,
    at: Option<DateTime<Utc>>,
) -> Result<FromCopy, super::StepError> {
    use crate::plan::model::StepKind;
    let Some(StepKind::Copy(c)) = ctx
        .compiled
        .steps
        .iter()
        .find(|s| s.plan == ctx.step.plan && s.name() == copy)
        .map(|s| &s.decl.kind)
    else {
        return Err(format!("no copy step `{copy}`").into());
    };
    if c.base_backup.as_ref().map(|b| b.value.as_str()) != Some(base_step) {
        return Err(
            format!("copy `{copy}` does not ship the base backups of `{base_step}`").into(),
        );
    }
    let env = super::restic::copy_credentials(ctx, c)?;
    let tz = ctx.plan.timezone.value;
    let newest = super::restic::at_destination(ctx, &env, copy, false)?
        .into_iter()
        .filter_map(|s| {
            let (taken, seq) = super::restic::parse_copied_name(&s.dump, tz)?;
            at.is_none_or(|at| taken < at).then_some((taken, seq, s))
        })
        .max_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)))
        .ok_or_else(|| {
            format!("no base backup of copy `{copy}` at its destination before the target")
        })?;
    let (taken, seq, copied) = newest;
    let scratch = ctx
        .plan
        .dir(ctx.step.name(), crate::artifact::layout::Area::VerifyLogs)
        .join(format!(".copy-fetch.{}", std::process::id()));
    let guard = super::scratch::RemoveTree(scratch.clone());
    let path = super::restic::fetch(ctx, &env, &copied, &scratch)?;
    let manifest = base::read(&path)
        .ok_or_else(|| format!("{} came back without its manifest", copied.dump))?;
    let mut args = vec![
        "snapshots".to_string(),
        "--json".into(),
        format!("--tag={}", super::restic::wal_tag(ctx, copy)),
    ];
    args.push("--latest=1".into());
    let (r, out) = exec::run_capturing(&super::restic::restic(ctx, &env, &args), ctx.redactor);
    if !r.success() {
        return Err(format!("cannot list the destination: {}", r.tail.trim()).into());
    }
    let list: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
    let wal = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            Some((
                s["time"].as_str()?.to_string(),
                s["id"].as_str()?.to_string(),
                s["paths"].as_array()?.first()?.as_str()?.to_string(),
            ))
        })
        .max()
        .map(|(_, id, path)| (id, path));
    Ok(FromCopy {
        base: DumpFile {
            path,
            name: copied.dump.clone(),
            taken,
            seq,
        },
        manifest,
        snapshot: copied.id,
        wal,
        env,
        _scratch: guard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REACHED: &str = "\
LOG:  starting point-in-time recovery to 2026-12-06 23:13:43.247+00
LOG:  recovery stopping before commit of transaction 726, time 2026-12-06 23:13:44.875534+00
LOG:  last completed transaction was at log time 2026-12-06 23:13:41.733327+00
LOG:  database system is ready to accept read-only connections
LOG:  archive recovery complete
LOG:  database system is ready to accept connections
";

    #[test]
    fn the_log_says_whether_the_target_was_reached() {
        assert_eq!(
            read_log(REACHED, true),
            Some(Ended::Reached(Some(
                "LOG:  recovery stopping before commit of transaction 726, time 2026-12-06 23:13:44.875534+00".into()
            )))
        );
        // Read-only during recovery is not the end of it.
        assert_eq!(
            read_log(
                "LOG:  database system is ready to accept read-only connections\n",
                true
            ),
            None
        );
        let early = "FATAL:  recovery ended before configured recovery target was reached\n";
        assert!(matches!(read_log(early, true), Some(Ended::NotReached(_))));
        let ended = "LOG:  database system is ready to accept connections\n";
        assert!(matches!(read_log(ended, true), Some(Ended::NotReached(_))));
        assert_eq!(read_log(ended, false), Some(Ended::Reached(None)));
        assert!(matches!(
            read_log(
                "PANIC:  could not locate a valid checkpoint record\n",
                false
            ),
            Some(Ended::Failed(_))
        ));
    }

    #[test]
    fn the_last_transaction_is_the_recovery_point() {
        assert_eq!(
            last_transaction(REACHED)
                .map(crate::clock::stamp)
                .as_deref(),
            Some("2026-12-06T23:13:41.733Z")
        );
        assert_eq!(last_transaction("nothing"), None);
    }
}
