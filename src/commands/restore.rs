//! `ops-run restore db STEP --to TARGET`: loads a good dump of a `dump` step into a database,
//! never destroying anything before the replacement is complete. The dump is the newest good
//! one (a sidecar, not from the future), or the one named (`--dump`), or the newest taken at or
//! before `--at`; its sha256 is checked against its sidecar before anything is created.
//!
//! A target that exists and holds tables is refused unless `--replace`. With `--replace`,
//! PostgreSQL loads into a new database and only then swaps names, keeping the old one as
//! `TARGET_before_YYYYmmddHHMM`; SQLite loads into a new file and renames it over the target,
//! keeping the old file as `TARGET.before-YYYYmmdd-HHMM`; MariaDB and MySQL cannot rename a
//! database, so `--replace` of a non-empty target is refused there. Every restore is recorded
//! as a `restore` activity.

use std::cell::{OnceCell, RefCell};
use std::path::{Path, PathBuf};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde_json::json;

use crate::activity::Trigger;
use crate::activity::{ActivityStatus, ActivityType};
use crate::app::App;
use crate::artifact::layout::{self, Area, DumpFile};
use crate::artifact::seal::Keyring;
use crate::artifact::sha;
use crate::clock::stamp;
use crate::engines::EngineError;
use crate::engines::client::Client;
use crate::error::Failure;
use crate::exec;
use crate::plan::model::{Database, Engine, Sourced, StepKind, ValueSource};
use crate::session::{Session, StepExecutor};
use crate::steps::import::import_dump;
use crate::steps::restore_test::{check_rows, load_sqlite, number, sqlite_tables};
use crate::steps::{Context, StepError};

/// What `restore db` was asked.
pub struct DbArgs<'a> {
    pub step: &'a str,
    pub to: &'a str,
    pub dump: Option<&'a str>,
    pub at: Option<&'a str>,
    /// A copy step: the newest dump at its destination.
    pub from: Option<&'a str>,
    pub replace: bool,
    pub dry_run: bool,
    pub keep_ownership: bool,
    pub with_globals: bool,
    /// PostgreSQL import sessions (1 or 2).
    pub sessions: u32,
    /// The age identity file of an encrypted dump.
    pub identity: Option<&'a Path>,
}

/// Why a restore stopped: refused before anything was touched (exit 2, nothing recorded), or
/// failed on the way (exit 1, recorded).
enum Stop {
    Refused(String),
    Failed(String),
    /// The dump does not match its sidecar: nothing was created (exit 1, nothing recorded).
    Damaged(String),
}

/// The dump's checksum, computed in a thread of its own while the target is probed (and the
/// lock taken): waited for before any decision, and before anything is created.
struct Checksum<'s> {
    dump: &'s DumpFile,
    pending: RefCell<Option<ScopedJoinHandle<'s, Result<String, String>>>>,
    result: OnceCell<Result<String, String>>,
}

impl<'s> Checksum<'s> {
    fn start(scope: &'s Scope<'s, '_>, dump: &'s DumpFile) -> Checksum<'s> {
        Checksum {
            dump,
            pending: RefCell::new(Some(scope.spawn(|| check_sidecar(dump)))),
            result: OnceCell::new(),
        }
    }

    /// The sha256, once it is known to match the sidecar.
    fn wait(&self) -> Result<&str, Stop> {
        let result = self.result.get_or_init(|| {
            let r = match self.pending.borrow_mut().take() {
                Some(h) => h
                    .join()
                    .unwrap_or_else(|_| Err("the checksum could not be computed".into())),
                None => Err("the checksum could not be computed".into()),
            };
            if let Ok(sha256) = &r {
                crate::outln!(
                    "dump: {} (sha256 {sha256}, matches its sidecar)",
                    self.dump.path.display()
                );
            }
            r
        });
        result.as_deref().map_err(|e| Stop::Damaged(e.to_string()))
    }
}

impl From<String> for Stop {
    fn from(e: String) -> Stop {
        Stop::Failed(e)
    }
}

impl From<StepError> for Stop {
    fn from(e: StepError) -> Stop {
        Stop::Failed(e.to_string())
    }
}

impl From<EngineError> for Stop {
    fn from(e: EngineError) -> Stop {
        Stop::Failed(e.to_string())
    }
}

/// What a restore did, for its activity and the operator.
#[derive(Default)]
struct Done {
    target: String,
    tables: u64,
    /// The rows checked against the dump's manifest (`None`: a dump without one).
    rows: Option<u64>,
    kept_as: Option<String>,
    lines: Vec<String>,
}

pub fn db(app: &App, a: &DbArgs) -> Result<(), Failure> {
    let (_loaded, compiled) = app.load()?;
    let si = compiled.find(a.step)?;
    let step = &compiled.steps[si];
    let StepKind::Dump(d) = &step.decl.kind else {
        return Err(Failure::Usage(format!(
            "`{}` is not a dump step: restore db loads the dumps of a `dump` step",
            step.id
        )));
    };
    let redactor = app.redactor(&compiled);
    let executor = StepExecutor {
        app,
        compiled: &compiled,
        redactor: &redactor,
    };
    let ctx = executor.context(si);
    let source = ctx
        .database(d.database.as_ref().map_or("", |n| n.value.as_str()))
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let dir = ctx.plan.dir(step.name(), Area::Dumps);
    // From a copy: fetched into a scratch folder, removed when the restore is done.
    let fetched;
    let dump = match a.from {
        None => choose(&dir, &ctx, a)?,
        Some(copy) => {
            fetched = crate::steps::restic::fetch_into_scratch(&ctx, copy, step.name())
                .map_err(|e| Failure::Runtime(redactor.redact(&e.to_string())))?;
            crate::outln!(
                "from: copy `{copy}`, snapshot {} at its destination",
                fetched.snapshot
            );
            fetched.dump.clone()
        }
    };
    let engine =
        source.engine.as_ref().map(|e| e.value).ok_or_else(|| {
            Failure::Usage(format!("database `{}` has no engine", source.name.value))
        })?;
    let sealed = crate::artifact::codec::Form::of_path(&dump.path).sealed;
    let key = restore_key(&ctx, a.identity, step.name(), (sealed, &dump.name))?;
    // The checksum first: a damaged dump is never loaded, and nothing is created for it. It
    // is read while the lock is taken and the target probed.
    std::thread::scope(|scope| {
        let checksum = Checksum::start(scope, &dump);
        load(
            app,
            &ctx,
            a,
            (source, engine),
            (&dump, key.as_ref()),
            &checksum,
        )
    })
}

/// The key of an encrypted dump or base (`sealed`) named `name`: `--identity FILE`, else the
/// identity of a verify or drill of step `step` in the plan; refused (exit 2) before anything is
/// touched when there is neither.
pub(crate) fn restore_key(
    ctx: &Context,
    given: Option<&Path>,
    step: &str,
    (sealed, name): (bool, &str),
) -> Result<Option<Keyring>, Failure> {
    let identity = given
        .map(|p| Sourced {
            source: ValueSource::File(p.display().to_string()),
            span: Default::default(),
        })
        .or_else(|| {
            ctx.plan
                .decl
                .restore_tests_of(step)
                .find_map(|(_, v)| v.identity.clone())
        });
    if sealed && identity.is_none() {
        return Err(Failure::Usage(format!(
            "{name} is encrypted: give the identity that decrypts it with --identity FILE (a file as age-keygen writes it)"
        )));
    }
    crate::steps::restore_test::sealed_key(ctx.env, identity.as_ref(), sealed, name)
        .map_err(|e| Failure::Runtime(e.to_string()))
}

/// `restore db` once the dump is chosen: under the lock, recorded. The target is probed
/// and every refusal made before a `running` row is written; the row is written before
/// anything is created, so a restore killed on the way is found `abandoned`.
fn load(
    app: &App,
    ctx: &Context,
    a: &DbArgs,
    (source, engine): (&Database, Engine),
    (dump, key): (&DumpFile, Option<&Keyring>),
    checksum: &Checksum,
) -> Result<(), Failure> {
    let redactor = ctx.redactor;
    // Loading is writing: under the apply lock, so retention cannot take the dump meanwhile.
    let _session = match a.dry_run {
        true => None,
        false => Some(Session::begin(app, ctx.compiled, Duration::ZERO)?),
    };
    let started_at = app.clock.now();
    let started = Instant::now();
    let prepared = match engine {
        Engine::Sqlite => prepare_sqlite(ctx, a, dump, checksum).map(Prepared::File),
        Engine::Postgres | Engine::Mysql | Engine::Mariadb => {
            prepare_server(ctx, a, source, dump, checksum).map(Prepared::Server)
        }
    };
    let prepared = match prepared {
        Err(Stop::Damaged(why)) => {
            crate::artifact::layout::mark_damaged(&dump.path, &why);
            return Err(Failure::Runtime(why));
        }
        Err(Stop::Refused(why)) => return Err(Failure::Usage(redactor.redact(&why))),
        Err(Stop::Failed(why)) => Err(why),
        Ok(p) => Ok(p),
    };
    // Known by now unless the probe failed first: then the failure is recorded only for a
    // good dump.
    let sha256 = match checksum.wait() {
        Ok(sha256) => sha256.to_string(),
        Err(Stop::Damaged(why) | Stop::Refused(why) | Stop::Failed(why)) => {
            return Err(Failure::Runtime(why));
        }
    };
    if a.dry_run {
        return prepared
            .map(|p| p.preview(ctx, a, dump))
            .map_err(Failure::Runtime);
    }
    let recording = Recording::start(app, ctx, started_at)?;
    let result = prepared.and_then(|p| match p {
        Prepared::File(f) => sqlite(ctx, dump, key, &f).map_err(|e| match e {
            Stop::Refused(w) | Stop::Failed(w) | Stop::Damaged(w) => w,
        }),
        Prepared::Server(s) => server(ctx, a, (dump, key), s).map_err(|e| match e {
            Stop::Refused(w) | Stop::Failed(w) | Stop::Damaged(w) => w,
        }),
    });
    let duration = started.elapsed();
    let (status, log, done) = match &result {
        Ok(done) => (ActivityStatus::Success, done.lines.join("\n"), Some(done)),
        Err(e) => (ActivityStatus::Failed, redactor.redact(e), None),
    };
    let meta = json!({
        "dump": dump.path.display().to_string(),
        "sha256": sha256,
        "target": done.map_or(a.to.to_string(), |d| d.target.clone()),
        "replaced": done.and_then(|d| d.kept_as.clone()),
        "tables": done.map(|d| d.tables),
        "rows": done.and_then(|d| d.rows),
        "duration_ms": duration.as_millis() as u64,
    });
    recording.finish(app, duration, (status, &meta, &log))?;
    match result {
        Ok(done) => {
            let rows = match done.rows {
                Some(r) => format!(
                    ", {} rows (every table as dumped)",
                    crate::artifact::manifest::thousands(r)
                ),
                None => " (rows not checked: the dump has no manifest)".to_string(),
            };
            crate::outln!(
                "restored {} into {}: {} tables{rows} in {:.1} s",
                dump.name,
                done.target,
                done.tables,
                duration.as_secs_f64()
            );
            if let Some(old) = &done.kept_as {
                crate::outln!("the previous {} is kept as {old}", done.target);
            }
            Ok(())
        }
        Err(e) => Err(Failure::Runtime(format!(
            "restore of {} failed: {}",
            dump.name,
            redactor.redact(&e)
        ))),
    }
}

/// What a restore will do, decided before anything is created.
enum Prepared<'c> {
    File(FilePlan),
    Server(ServerPlan<'c>),
}

impl Prepared<'_> {
    /// `--dry-run`: what would run.
    fn preview(&self, ctx: &Context, a: &DbArgs, dump: &DumpFile) {
        match self {
            Prepared::File(f) => {
                crate::outln!(
                    "would load {} into a new file beside {}",
                    dump.name,
                    f.target.display()
                );
                if let Some(kept) = &f.kept_as {
                    crate::outln!("would keep the previous file as {}", kept.display());
                }
                crate::outln!("would rename the new file to {}", f.target.display());
            }
            Prepared::Server(p) => {
                let client = &p.client;
                let maintenance = client.maintenance_db();
                crate::outln!("would run:");
                if p.create {
                    crate::outln!(
                        "  {}",
                        client
                            .create(maintenance, &p.load_into)
                            .display(ctx.redactor)
                    );
                }
                crate::outln!(
                    "  {} | {} (owners and privileges {})",
                    crate::artifact::codec::Form::of_path(&dump.path).cat(
                        &a.identity.map_or("IDENTITY".into(), |p| exec::shell_quote(
                            &p.display().to_string()
                        )),
                        &exec::shell_quote(&dump.path.display().to_string())
                    ),
                    client.import(&p.load_into).display(ctx.redactor),
                    if a.keep_ownership { "kept" } else { "left out" }
                );
                if let Some(sql) = p.swap_sql() {
                    crate::outln!("  {}", client.sql(maintenance, &sql).display(ctx.redactor));
                }
            }
        }
    }
}

/// A `restore` activity: its row is written `running` when the restore starts changing
/// things, and finished when it ends.
pub(crate) struct Recording {
    id: i64,
}

impl Recording {
    pub(crate) fn start(
        app: &App,
        ctx: &Context,
        started_at: DateTime<Utc>,
    ) -> Result<Recording, Failure> {
        let store = app.open_store()?;
        store
            .start(
                &ctx.plan.decl.name.value,
                ctx.step.name(),
                ActivityType::Restore,
                Trigger::Manual,
                &stamp(started_at),
            )
            .map(|id| Recording { id })
            .map_err(|e| Failure::Runtime(format!("cannot record the restore: {e}")))
    }

    pub(crate) fn finish(
        self,
        app: &App,
        duration: Duration,
        (status, meta, log): (ActivityStatus, &serde_json::Value, &str),
    ) -> Result<(), Failure> {
        let store = app.open_store()?;
        store
            .finish(
                self.id,
                status,
                &stamp(app.clock.now()),
                duration.as_millis() as i64,
                meta,
                log,
            )
            .map_err(|e| Failure::Runtime(format!("cannot record the restore: {e}")))
    }
}

/// What `restore files` was asked.
pub struct FilesArgs<'a> {
    pub step: &'a str,
    pub to: &'a Path,
    pub snapshot: Option<&'a str>,
    pub at: Option<&'a str>,
    pub include: &'a [String],
    pub overwrite: bool,
    pub dry_run: bool,
}

/// `restore files STEP --to DIR`: `restic restore` of a snapshot of the `snapshot` step into
/// DIR (the snapshot's absolute paths appear under it). The newest complete snapshot ops-run
/// made (its marker), the newest at or before `--at`, or `--snapshot ID`. A DIR that holds
/// anything is refused unless `--overwrite`.
pub fn files(app: &App, a: &FilesArgs) -> Result<(), Failure> {
    let (_loaded, compiled) = app.load()?;
    let si = compiled.find(a.step)?;
    let step = &compiled.steps[si];
    let StepKind::Snapshot(snap) = &step.decl.kind else {
        return Err(Failure::Usage(format!(
            "`{}` is not a snapshot step: restore files reads the snapshots of a `snapshot` step",
            step.id
        )));
    };
    let redactor = app.redactor(&compiled);
    let executor = StepExecutor {
        app,
        compiled: &compiled,
        redactor: &redactor,
    };
    let ctx = executor.context(si);
    let id = match a.snapshot {
        Some(id) => id.to_string(),
        None => newest_snapshot(&ctx, a.at)?,
    };
    let busy = std::fs::read_dir(a.to).is_ok_and(|mut d| d.next().is_some());
    if busy && !a.overwrite {
        return Err(Failure::Usage(format!(
            "{} is not empty: nothing restored. Choose an empty folder, or add --overwrite to let restic write over what is there",
            a.to.display()
        )));
    }
    let env = crate::steps::restic::snapshot_credentials(&ctx, snap)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let mut args: Vec<String> = vec![
        "restore".into(),
        id.clone(),
        "--target".into(),
        a.to.display().to_string(),
    ];
    for p in a.include {
        args.push("--include".into());
        args.push(p.clone());
    }
    let mut spec = crate::steps::restic::restic(&ctx, &env, &args);
    spec.timeout = None;
    if a.dry_run {
        crate::outln!("would run:");
        crate::outln!(
            "  {}   (RESTIC_REPOSITORY and RESTIC_PASSWORD in its environment)",
            spec.display(&redactor)
        );
        return Ok(());
    }
    let _session = Session::begin(app, &compiled, Duration::ZERO)?;
    let started_at = app.clock.now();
    let started = Instant::now();
    // Written before restic starts: a restore killed on the way is found `abandoned`.
    let recording = Recording::start(app, &ctx, started_at)?;
    let result = std::fs::create_dir_all(a.to)
        .map_err(|e| format!("cannot create {}: {e}", a.to.display()))
        .and_then(|()| {
            let r = exec::run(&spec, &redactor);
            if r.success() {
                Ok(r)
            } else {
                Err(format!(
                    "{} failed: {}\n{}",
                    spec.display(&redactor),
                    r.exit.reason("restic").unwrap_or_default(),
                    r.tail.trim()
                ))
            }
        });
    let duration = started.elapsed();
    // The files restic put under DIR: under each restored path (`--to /` is the whole disk).
    let restored: Vec<PathBuf> = match a.include.is_empty() {
        false => a
            .include
            .iter()
            .map(|p| a.to.join(p.trim_start_matches('/')))
            .collect(),
        true => snap
            .paths
            .iter()
            .map(|p| {
                let abs = std::path::absolute(&p.value).unwrap_or_else(|_| PathBuf::from(&p.value));
                a.to.join(abs.strip_prefix("/").unwrap_or(&abs))
            })
            .collect(),
    };
    let count: u64 = restored.iter().map(|r| count_files(r)).sum();
    // Where the files really are, when `--to` is (or passes through) a symbolic link.
    let given = std::path::absolute(a.to).unwrap_or_else(|_| a.to.to_path_buf());
    let real = std::fs::canonicalize(a.to).ok().filter(|r| *r != given);
    let mut meta = json!({
        "snapshot": id,
        "target": a.to.display().to_string(),
        "include": a.include,
        "files": count,
        "duration_ms": duration.as_millis() as u64,
    });
    if let Some(real) = &real {
        meta["target_real"] = json!(real.display().to_string());
    }
    let (status, log) = match &result {
        Ok(r) => (ActivityStatus::Success, r.tail.clone()),
        Err(e) => (ActivityStatus::Failed, e.clone()),
    };
    recording.finish(app, duration, (status, &meta, &log))?;
    let through = real
        .map(|r| {
            format!(
                "\n{} is a symbolic link: the files are under {}",
                a.to.display(),
                r.display()
            )
        })
        .unwrap_or_default();
    match result {
        Ok(_) => {
            crate::outln!(
                "restored snapshot {id} into {}: {count} files in {:.1} s (each under its absolute path){through}",
                a.to.display(),
                duration.as_secs_f64()
            );
            Ok(())
        }
        Err(e) => Err(Failure::Runtime(format!(
            "restore of snapshot {id} failed: {e}{through}"
        ))),
    }
}

/// The full id of the newest complete snapshot the step made (at or before `at`).
fn newest_snapshot(ctx: &Context, at: Option<&str>) -> Result<String, Failure> {
    let tz = ctx.plan.timezone.value;
    let until = match at {
        Some(at) => parse_at(at, tz).map_err(Failure::Usage)?,
        None => ctx.clock.now(),
    };
    let dir = ctx.plan.dir(ctx.step.name(), Area::Snapshots);
    if let Some(marker) = crate::artifact::marker::newest_complete(&dir, tz, until) {
        return Ok(marker.id);
    }
    Err(Failure::Usage(format!(
        "no complete snapshot of {} recorded in {}{}; name one with --snapshot ID (`restic snapshots` lists them)",
        ctx.step.id,
        dir.display(),
        at.map(|t| format!(" at or before {t}")).unwrap_or_default()
    )))
}

/// Regular files under `dir` (or `dir` itself, a file), for the record.
fn count_files(dir: &Path) -> u64 {
    if dir.is_file() {
        return 1;
    }
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => n += 1,
                _ => {}
            }
        }
    }
    n
}

/// The dump to load: named, the newest at or before `--at`, or the newest good one.
fn choose(dir: &Path, ctx: &Context, a: &DbArgs) -> Result<DumpFile, Failure> {
    let tz = ctx.plan.timezone.value;
    let now = ctx.clock.now();
    let good: Vec<DumpFile> = layout::good_dumps(dir, tz, now).collect();
    let none = || {
        Failure::Usage(format!(
            "no good dump (one with its sidecar) of {} in {}",
            ctx.step.id,
            dir.display()
        ))
    };
    if let Some(named) = a.dump {
        let name = Path::new(named)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return good.into_iter().find(|d| d.name == name).ok_or_else(|| {
            Failure::Usage(format!(
                "{named} is not a good dump of {} (it must be in {} and have its sidecar)",
                ctx.step.id,
                dir.display()
            ))
        });
    }
    if let Some(at) = a.at {
        let at = parse_at(at, tz).map_err(Failure::Usage)?;
        return good
            .into_iter()
            .find(|d| d.taken <= at)
            .ok_or_else(|| Failure::Usage(format!("no good dump taken at or before {at}")));
    }
    good.into_iter().next().ok_or_else(none)
}

/// `--at`: RFC 3339, or `YYYY-mm-dd HH:MM` (or with `T`) in the plan's time zone.
pub(crate) fn parse_at(s: &str, tz: chrono_tz::Tz) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, format) {
            return tz
                .from_local_datetime(&naive)
                .earliest()
                .map(|t| t.with_timezone(&Utc))
                .ok_or_else(|| format!("--at {s} does not exist in {}", tz.name()));
        }
    }
    Err(format!(
        "--at {s}: expected RFC 3339 (2026-11-28T02:00:00Z) or `YYYY-mm-dd HH:MM` in the plan's time zone"
    ))
}

/// The sha256 of the dump when it matches its sidecar.
fn check_sidecar(dump: &DumpFile) -> Result<String, String> {
    let sidecar = std::fs::read_to_string(layout::sidecar_path(&dump.path))
        .map_err(|e| format!("cannot read the sidecar of {}: {e}", dump.name))?;
    let claimed = sha::parse_sidecar(&sidecar, &dump.name)
        .ok_or_else(|| format!("the sidecar of {} does not name it", dump.name))?;
    let actual = sha::file_sha256(&dump.path)
        .map_err(|e| format!("cannot read {}: {e}", dump.path.display()))?;
    if actual != claimed {
        return Err(format!(
            "checksum mismatch: {} is damaged (sha256 {actual}, the sidecar says {claimed}); nothing was restored",
            dump.name
        ));
    }
    Ok(actual)
}

/// PostgreSQL's longest identifier, in bytes.
const MAX_NAME: usize = 63;

/// A database name ops-run may create, rename and put into SQL literals: letters, digits and
/// `_` (so never an option), at most 63 bytes (PostgreSQL's limit).
fn plain_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > MAX_NAME
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(format!(
            "--to `{name}`: a database name of letters, digits and `_` (at most {MAX_NAME}), or a `database` block of the plan"
        ));
    }
    Ok(())
}

/// `NAME_TAG`, or, where that passes 63 bytes, NAME cut short with a hash of the whole name
/// (`NAME…_1a2b3c4d_TAG`): two long names never share a derived one.
fn derived_name(name: &str, tag: &str) -> String {
    let plain = format!("{name}_{tag}");
    if plain.len() <= MAX_NAME {
        return plain;
    }
    use sha2::Digest;
    let hash = sha2::Sha256::digest(name.as_bytes());
    let hash: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
    let room = MAX_NAME.saturating_sub(tag.len() + hash.len() + 2);
    format!("{}_{hash}_{tag}", &name[..room.min(name.len())])
}

fn suffix(ctx: &Context) -> String {
    ctx.clock
        .now()
        .with_timezone(&ctx.plan.timezone.value)
        .format("%Y%m%d%H%M")
        .to_string()
}

/// A server restore, decided: where the dump loads and what is renamed afterwards.
struct ServerPlan<'c> {
    client: Client,
    /// The plan's `database` block whose server holds the target.
    block: &'c Database,
    /// The database the operator asked for.
    name: String,
    /// Where the dump loads: a new database under a temporary name that becomes `name` only
    /// after a complete load; `name` itself where the server cannot rename a database.
    load_into: String,
    /// Whether `load_into` is created (else it exists, empty).
    create: bool,
    /// The name the existing `name` is kept under (PostgreSQL, `--replace`).
    kept_as: Option<String>,
}

impl ServerPlan<'_> {
    /// The statements that put the load in place, in one transaction: all or nothing.
    fn swap_sql(&self) -> Option<String> {
        if self.load_into == self.name {
            return None;
        }
        let rename = |from: &str, to: &str| self.client.rename_sql(from, to);
        Some(match &self.kept_as {
            Some(kept) => format!(
                "BEGIN; {}; {}; COMMIT;",
                rename(&self.name, kept)?,
                rename(&self.load_into, &self.name)?
            ),
            None => rename(&self.load_into, &self.name)?,
        })
    }
}

/// Runs one client statement; its output, or why it failed.
fn run_sql(ctx: &Context, spec: &exec::ProcessSpec) -> Result<exec::ProcessResult, String> {
    let r = exec::run(spec, ctx.redactor);
    if r.success() {
        Ok(r)
    } else {
        Err(format!(
            "{} failed: {}\n{}",
            spec.display(ctx.redactor),
            r.exit.reason(&spec.program).unwrap_or_default(),
            r.tail.trim()
        ))
    }
}

/// PostgreSQL, MariaDB, MySQL: see the module's comment. Probes the target and decides,
/// refusing before anything is created.
fn prepare_server<'c>(
    ctx: &Context<'c>,
    a: &DbArgs,
    source: &'c Database,
    _dump: &DumpFile,
    checksum: &Checksum,
) -> Result<ServerPlan<'c>, Stop> {
    // `--to` names a `database` block of the plan (its server and name), or a database on the
    // dump's own server.
    let (block, name) = match ctx.database(a.to) {
        Ok(db) => (
            db,
            db.dbname.as_ref().map(|n| n.value.clone()).ok_or_else(|| {
                Stop::Refused(format!("database `{}` names no database (`name`)", a.to))
            })?,
        ),
        Err(_) => (source, a.to.to_string()),
    };
    plain_name(&name).map_err(Stop::Refused)?;
    let client = Client::new(&ctx.target(block)?, &ctx.plan.tools)?;
    let maintenance = client.maintenance_db();
    let exists = |db: &str| -> Result<bool, String> {
        Ok(number(&run_sql(
            ctx,
            &client.sql(maintenance, &client.exists_sql(db)),
        )?) == Some(1))
    };
    let present = exists(&name)?;
    let tables = if present {
        let r = run_sql(ctx, &client.sql(&name, client.count_tables_sql()))?;
        number(&r).ok_or_else(|| format!("cannot count the tables of {name}: {}", r.tail.trim()))?
    } else {
        0
    };
    checksum.wait()?;
    let renames = client.rename_sql(&name, &name).is_some();
    if present && tables > 0 && !a.replace {
        return Err(Stop::Refused(format!(
            "{name} exists and holds {tables} tables: nothing restored. Add --replace to keep it as {}… and put the restore in its place, or choose another --to",
            derived_name(&name, "before_")
        )));
    }
    if present && tables > 0 && !renames {
        return Err(Stop::Refused(format!(
            "{name} holds {tables} tables and this server cannot rename a database, so --replace cannot keep it: nothing restored. Restore into a new name (--to {name}_restored) and point the application at it, or empty {name} first"
        )));
    }
    // A free name for `tag`: the plain one, else with a counter (a second restore within the
    // same minute).
    let free = |tag: &str| -> Result<String, Stop> {
        for n in 1..100 {
            let tag = match n {
                1 => tag.to_string(),
                n => format!("{tag}_{n}"),
            };
            let candidate = derived_name(&name, &tag);
            if !exists(&candidate)? {
                return Ok(candidate);
            }
        }
        Err(Stop::Failed(format!("no free name for {name}_{tag}")))
    };
    let stamp = suffix(ctx);
    let (load_into, create, kept_as) = match renames {
        // Always under a temporary name, renamed into place only when complete: a restore
        // that is killed leaves no half-loaded database under the name asked for.
        true => (
            free(&format!("restore_{stamp}"))?,
            true,
            match present {
                true => Some(free(&format!("before_{stamp}"))?),
                false => None,
            },
        ),
        // MariaDB, MySQL: into the target itself; a new one is announced as scratch until
        // it is complete, so a killed restore's half is dropped by the next session.
        false => (name.clone(), !present, None),
    };
    Ok(ServerPlan {
        client,
        block,
        name,
        load_into,
        create,
        kept_as,
    })
}

/// Loads the dump as `p` decided, then renames it into place.
fn server(
    ctx: &Context,
    a: &DbArgs,
    (dump, key): (&DumpFile, Option<&Keyring>),
    p: ServerPlan,
) -> Result<Done, Stop> {
    let client = &p.client;
    let maintenance = client.maintenance_db();
    let mut done = Done {
        target: p.name.clone(),
        ..Done::default()
    };
    if a.with_globals {
        apply_globals(ctx, client, (dump, key), &mut done)?;
    }
    // Announced before it exists: a restore killed from here on leaves a marker that the
    // next session (apply or restore) acts on.
    let announced = match p.create {
        true => Some(crate::steps::scratch::announce(
            &ctx.plan.dir(ctx.step.name(), Area::VerifyLogs),
            &p.load_into,
            &crate::steps::scratch::Scratch::Database {
                block: p.block.name.value.clone(),
                maintenance: Some(maintenance.to_string()),
            },
        )?),
        false => None,
    };
    if p.create
        && let Err(e) = run_sql(ctx, &client.create(maintenance, &p.load_into))
    {
        announced.into_iter().for_each(|m| m.done());
        return Err(e.into());
    }
    let loaded = (|| {
        let imported = import_dump(
            client,
            &p.load_into,
            (&dump.path, key),
            a.keep_ownership,
            a.sessions,
            None,
            ctx.redactor,
        );
        done.lines.extend(imported.lines(a.keep_ownership));
        imported.result.map_err(|e| e.to_string())?;
        // Every table with the rows it had when it was dumped, before anything is swapped.
        let rows = check_rows(&dump.path, &mut |l| done.lines.push(l), |t| {
            client.count_rows(&p.load_into, t, None, ctx.redactor)
        })?;
        let r = run_sql(ctx, &client.sql(&p.load_into, client.count_tables_sql()))?;
        number(&r)
            .ok_or_else(|| {
                format!(
                    "cannot count the tables of {}: {}",
                    p.load_into,
                    r.tail.trim()
                )
            })
            .map(|n| (n, rows))
    })();
    let tables = match loaded {
        Ok((n, rows)) => {
            done.rows = rows;
            n as u64
        }
        Err(e) if p.create => {
            let dropped = client.drop_scratch(maintenance, &p.load_into, ctx.redactor);
            let said = match dropped {
                Ok(()) => {
                    announced.into_iter().for_each(|m| m.done());
                    format!("the partial {} was dropped", p.load_into)
                }
                Err(_) => format!(
                    "the partial {} could not be dropped yet; the next apply or restore drops it",
                    p.load_into
                ),
            };
            return Err(format!("{e}\n({said}; nothing else changed)").into());
        }
        Err(e) => {
            return Err(format!(
                "{e}\n({} was empty before and now holds what loaded before the error)",
                p.name
            )
            .into());
        }
    };
    done.tables = tables;
    done.lines.push(format!(
        "loaded {} into {}: {tables} tables",
        dump.path.display(),
        p.load_into
    ));
    if let Some(sql) = p.swap_sql() {
        if let Err(e) = run_sql(ctx, &client.sql(maintenance, &sql)) {
            // All or nothing: the target is as it was; the complete load stays for the
            // operator, no longer scratch.
            announced.into_iter().for_each(|m| m.done());
            return Err(format!(
                "{e}\nthe restore is complete in {}; {} was left as it was (are sessions connected to it? stop the application, then run: ALTER DATABASE … RENAME)",
                p.load_into, p.name
            )
            .into());
        }
        done.lines.push(match &p.kept_as {
            Some(kept) => format!(
                "renamed {} to {kept} and {} to {} in one transaction",
                p.name, p.load_into, p.name
            ),
            None => format!("renamed {} to {}", p.load_into, p.name),
        });
        done.kept_as = p.kept_as.clone();
    }
    announced.into_iter().for_each(|m| m.done());
    Ok(done)
}

/// Applies the roles dumped beside `dump` (`globals #true`) before the load, checked against
/// their sidecar first. A role that exists already is said, not fatal.
fn apply_globals(
    ctx: &Context,
    client: &Client,
    (dump, key): (&DumpFile, Option<&Keyring>),
    done: &mut Done,
) -> Result<(), Stop> {
    let path = crate::artifact::layout::globals_path(&dump.path)
        .filter(|p| p.exists())
        .ok_or_else(|| {
            Stop::Refused(format!(
                "--with-globals: no roles were dumped beside {} (the dump step needs `globals #true`)",
                dump.name
            ))
        })?;
    let globals = DumpFile {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: path.clone(),
        ..dump.clone()
    };
    check_sidecar(&globals)?;
    let spec = client.globals_import();
    let key = key.cloned();
    let (r, feed_error) = exec::run_feeding(
        &spec,
        ctx.redactor,
        Box::new(move |w| {
            let mut roles = crate::artifact::codec::Codec::open(&path, key.as_ref())?;
            std::io::copy(&mut roles, w).map(|_| ())
        }),
    );
    if let Some(e) = feed_error {
        return Err(Stop::Failed(format!("cannot apply the roles: {e}")));
    }
    if !r.success() {
        return Err(Stop::Failed(format!(
            "the roles could not be applied: {}\n{}",
            r.exit.reason(&spec.program).unwrap_or_default(),
            r.tail.trim()
        )));
    }
    let said: Vec<&str> = r.tail.lines().filter(|l| !l.trim().is_empty()).collect();
    done.lines.push(format!(
        "roles: applied {} ({} message(s))",
        globals.name,
        said.len()
    ));
    for l in said.iter().take(20) {
        crate::outln!("roles: {l}");
    }
    Ok(())
}

/// A SQLite restore, decided: the dump loads into `temp` beside `target`, which then takes
/// the target's name in one rename; an existing target is kept as `kept_as`.
struct FilePlan {
    target: PathBuf,
    temp: PathBuf,
    kept_as: Option<PathBuf>,
    /// The existing target's owner, group and mode, and whether it is in WAL mode.
    existing: Option<(std::fs::Metadata, bool)>,
}

/// SQLite: `--to` is a file (or a `database` block with a `path`).
fn prepare_sqlite(
    ctx: &Context,
    a: &DbArgs,
    _dump: &DumpFile,
    checksum: &Checksum,
) -> Result<FilePlan, Stop> {
    let target = match ctx.database(a.to) {
        Ok(db) => PathBuf::from(
            db.path
                .as_ref()
                .map(|p| p.value.clone())
                .ok_or_else(|| Stop::Refused(format!("database `{}` has no path", a.to)))?,
        ),
        Err(_) => PathBuf::from(a.to),
    };
    let meta = std::fs::metadata(&target).ok();
    if meta.as_ref().is_some_and(|m| !m.is_file()) {
        return Err(Stop::Refused(format!(
            "--to {}: not a file",
            target.display()
        )));
    }
    let (held, wal) = match &meta {
        Some(_) => {
            let conn = rusqlite::Connection::open_with_flags(
                &target,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .map_err(|e| format!("cannot open {}: {e}", target.display()))?;
            let tables = sqlite_tables(&conn)
                .map_err(|e| format!("cannot read {}: {e}", target.display()))?;
            let mode: String = conn
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap_or_default();
            (tables, mode.eq_ignore_ascii_case("wal"))
        }
        None => (0, false),
    };
    checksum.wait()?;
    if held > 0 && !a.replace {
        return Err(Stop::Refused(format!(
            "{} exists and holds {held} tables: nothing restored. Add --replace to keep it as {}.before-… and put the restore in its place, or choose another --to",
            target.display(),
            target.display()
        )));
    }
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file = target
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .ok_or_else(|| Stop::Refused(format!("--to {}: not a file name", target.display())))?;
    let temp = dir.join(format!(".{file}.restore.{}", std::process::id()));
    let kept_as = meta.as_ref().map(|_| {
        let stamp = ctx
            .clock
            .now()
            .with_timezone(&ctx.plan.timezone.value)
            .format("%Y%m%d-%H%M");
        let base = format!("{}.before-{stamp}", target.display());
        (1..)
            .map(|n| match n {
                1 => PathBuf::from(&base),
                n => PathBuf::from(format!("{base}-{n}")),
            })
            .find(|p| std::fs::symlink_metadata(p).is_err())
            .unwrap_or_else(|| PathBuf::from(&base))
    });
    Ok(FilePlan {
        target,
        temp,
        kept_as,
        existing: meta.map(|m| (m, wal)),
    })
}

/// Loads the dump into the temporary file and swaps it in (see `swap_sqlite`).
fn sqlite(
    ctx: &Context,
    dump: &DumpFile,
    key: Option<&Keyring>,
    p: &FilePlan,
) -> Result<Done, Stop> {
    // Announced before it exists: a restore killed while loading leaves a marker, and the
    // next session removes the file and its journals.
    let announced = crate::steps::scratch::announce(
        &ctx.plan.dir(ctx.step.name(), Area::VerifyLogs),
        &format!(
            "{}.restore",
            p.temp.file_name().unwrap_or_default().to_string_lossy()
        ),
        &crate::steps::scratch::Scratch::File(p.temp.clone()),
    )?;
    let result = (|| {
        // No deadline of its own: the operator watches a restore and stops it with Ctrl-C.
        let conn = load_sqlite(
            &p.temp,
            &dump.path,
            key,
            Duration::from_secs(10 * 365 * 86400),
        )?;
        let mut lines = Vec::new();
        let rows = check_rows(&dump.path, &mut |l| lines.push(l), |t| {
            crate::engines::sqlite::count_rows(&conn, t)
        })?;
        let loaded = sqlite_tables(&conn)? as u64;
        if p.existing.as_ref().is_some_and(|(_, wal)| *wal) {
            // As the application had it; the WAL is folded in when this connection closes.
            conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
                .map_err(|e| format!("cannot set WAL mode on {}: {e}", p.temp.display()))?;
        }
        drop(conn);
        give_ownership(p)?;
        let done = swap_sqlite(p)?;
        Ok::<_, Stop>((loaded, done, rows, lines))
    })();
    let (loaded, kept_as, rows, mut lines) = match result {
        Ok(r) => r,
        Err(e) => {
            crate::steps::scratch::remove_sqlite_file(&p.temp);
            announced.done();
            return Err(e);
        }
    };
    announced.done();
    lines.push(format!(
        "loaded {} into {}: {loaded} tables",
        dump.path.display(),
        p.target.display()
    ));
    Ok(Done {
        target: p.target.display().to_string(),
        tables: loaded,
        rows,
        kept_as: kept_as.map(|k| k.display().to_string()),
        lines,
    })
}

/// The restored file gets the owner, group and mode of the file it replaces (the application
/// must still open it); a new file is `0600`, as it was loaded.
fn give_ownership(p: &FilePlan) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Some((meta, _)) = &p.existing else {
        return Ok(());
    };
    let (uid, gid) = (meta.uid(), meta.gid());
    let mine = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    if (uid, gid) != mine {
        std::os::unix::fs::chown(&p.temp, Some(uid), Some(gid)).map_err(|e| {
            format!(
                "cannot give the restored file the owner of {} ({uid}:{gid}): {e}; nothing was replaced (run the restore as root or as that user)",
                p.target.display()
            )
        })?;
    }
    std::fs::set_permissions(
        &p.temp,
        std::fs::Permissions::from_mode(meta.permissions().mode() & 0o7777),
    )
    .map_err(|e| format!("cannot set the mode of {}: {e}", p.temp.display()))
}

/// Puts the loaded file in place of the target in one rename. An existing target is first
/// made whole and held still: its WAL is checkpointed into the file, a write lock keeps every
/// writer out while its name is kept (`kept_as`, a hard link: the same file, committed
/// transactions and all) and the new file takes its place; its `-wal` and `-shm` then go, so
/// no reader ever replays the old log onto the restored file. Returns where the old one is.
fn swap_sqlite(p: &FilePlan) -> Result<Option<PathBuf>, Stop> {
    let (Some(kept_as), Some(_)) = (&p.kept_as, &p.existing) else {
        layout::rename_new(&p.temp, &p.target)
            .map_err(|e| format!("cannot create {}: {e}", p.target.display()))?;
        return Ok(None);
    };
    let target = &p.target;
    let journal = |suffix: &str| {
        let mut s = target.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    let conn = rusqlite::Connection::open(target)
        .map_err(|e| format!("cannot open {}: {e}", target.display()))?;
    // Closing this connection must not delete the `-wal` by its name, which by then may be
    // the restored database's.
    persist_wal(&conn);
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let mut held = false;
    for _ in 0..20 {
        // (busy, log frames, checkpointed): TRUNCATE empties the log once all is in the file.
        let busy: i64 = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .map_err(|e| format!("cannot checkpoint {}: {e}", target.display()))?;
        if busy != 0 {
            std::thread::sleep(Duration::from_millis(250));
            continue;
        }
        conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| {
            format!(
                "{} is busy (a writer holds it): {e}; nothing was replaced",
                target.display()
            )
        })?;
        let wal_len = std::fs::metadata(journal("-wal")).map_or(0, |m| m.len());
        if wal_len == 0 {
            held = true;
            break;
        }
        // A writer committed between the checkpoint and the lock: again.
        let _ = conn.execute_batch("ROLLBACK");
    }
    if !held {
        return Err(format!(
            "{} is in use (its log could not be emptied): nothing was replaced; stop the application and try again",
            target.display()
        )
        .into());
    }
    std::fs::hard_link(target, kept_as).map_err(|e| {
        format!(
            "cannot keep {} as {}: {e}; nothing was replaced",
            target.display(),
            kept_as.display()
        )
    })?;
    std::fs::rename(&p.temp, target).map_err(|e| {
        let _ = std::fs::remove_file(kept_as);
        format!(
            "cannot put the restore in place of {}: {e}; nothing was replaced",
            target.display()
        )
    })?;
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(journal(suffix));
    }
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = layout::fsync_dir(dir);
    }
    drop(conn);
    Ok(Some(kept_as.clone()))
}

/// `SQLITE_FCNTL_PERSIST_WAL`: this connection leaves the `-wal` (and `-shm`) files alone
/// when it closes.
fn persist_wal(conn: &rusqlite::Connection) {
    let mut on: std::ffi::c_int = 1;
    // SAFETY: a file control on the open connection's main database, with a pointer to an
    // int that lives for the call, as SQLite documents for SQLITE_FCNTL_PERSIST_WAL.
    unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&raw mut on).cast(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names_fit_postgres_and_stay_apart() {
        assert_eq!(
            derived_name("crm", "before_202611281300"),
            "crm_before_202611281300"
        );
        let long = "a".repeat(50);
        let other = format!("{}b", "a".repeat(49));
        let (one, two) = (
            derived_name(&long, "restore_202611281300_2"),
            derived_name(&other, "restore_202611281300_2"),
        );
        assert!(
            one.len() <= MAX_NAME && two.len() <= MAX_NAME,
            "{one} {two}"
        );
        assert_ne!(one, two);
        assert!(one.ends_with("_restore_202611281300_2"), "{one}");
        assert!(plain_name(&one).is_ok());
        assert!(plain_name("-x").is_err() && plain_name("a-b").is_err());
    }
}
