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

use crate::app::App;
use crate::artifact::layout::{self, Area, DumpFile};
use crate::artifact::sha;
use crate::clock::stamp;
use crate::engines::EngineError;
use crate::engines::client::Client;
use crate::error::Failure;
use crate::exec;
use crate::plan::model::{Database, Engine, StepKind};
use crate::runner::Trigger;
use crate::session::{Session, StepExecutor};
use crate::steps::import::import_dump;
use crate::steps::verify::{RemoveOnDrop, load_sqlite, number, sqlite_tables};
use crate::steps::{Context, StepError};
use crate::store::kinds::{ActivityStatus, ActivityType};

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
            fetched = crate::steps::copy::fetch_into_scratch(&ctx, copy, step.name())
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
    // The checksum first: a damaged dump is never loaded, and nothing is created for it. It
    // is read while the lock is taken and the target probed.
    std::thread::scope(|scope| {
        let checksum = Checksum::start(scope, &dump);
        load(app, &ctx, a, (source, engine), &dump, &checksum)
    })
}

/// `restore db` once the dump is chosen: under the lock, recorded.
fn load(
    app: &App,
    ctx: &Context,
    a: &DbArgs,
    (source, engine): (&Database, Engine),
    dump: &DumpFile,
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
    let result = match engine {
        Engine::Sqlite => sqlite(ctx, a, dump, checksum),
        Engine::Postgres | Engine::Mysql | Engine::Mariadb => {
            server(ctx, a, source, dump, checksum)
        }
    };
    let result = match result {
        Err(Stop::Damaged(why)) => return Err(Failure::Runtime(why)),
        Err(Stop::Refused(why)) => return Err(Failure::Usage(redactor.redact(&why))),
        Err(Stop::Failed(why)) => Err(why),
        Ok(done) => Ok(done),
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
        return result.map(|_| ()).map_err(Failure::Runtime);
    }
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
        "duration_ms": duration.as_millis() as u64,
    });
    record(app, ctx, started_at, duration, (status, &meta, &log))?;
    match result {
        Ok(done) => {
            crate::outln!(
                "restored {} into {}: {} tables in {:.1} s",
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

/// Records a `restore` activity of the step `ctx` is about.
fn record(
    app: &App,
    ctx: &Context,
    started_at: DateTime<Utc>,
    duration: Duration,
    (status, meta, log): (ActivityStatus, &serde_json::Value, &str),
) -> Result<(), Failure> {
    let store = app.open_store()?;
    let now = app.clock.now();
    store
        .start(
            &ctx.plan.decl.name.value,
            ctx.step.name(),
            ActivityType::Restore,
            Trigger::Manual,
            &stamp(started_at),
        )
        .and_then(|id| {
            store.finish(
                id,
                status,
                &stamp(now),
                duration.as_millis() as i64,
                meta,
                log,
            )
        })
        .map_err(|e| Failure::Runtime(format!("cannot record the restore: {e}")))
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
    let env = crate::steps::snapshot::credentials(&ctx, snap)
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
    let mut spec = crate::steps::snapshot::restic(&ctx, &env, &args);
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
    let count = count_files(a.to);
    let meta = json!({
        "snapshot": id,
        "target": a.to.display().to_string(),
        "include": a.include,
        "files": count,
        "duration_ms": duration.as_millis() as u64,
    });
    let (status, log) = match &result {
        Ok(r) => (ActivityStatus::Success, r.tail.clone()),
        Err(e) => (ActivityStatus::Failed, e.clone()),
    };
    record(app, &ctx, started_at, duration, (status, &meta, &log))?;
    match result {
        Ok(_) => {
            crate::outln!(
                "restored snapshot {id} into {}: {count} files in {:.1} s (each under its absolute path)",
                a.to.display(),
                duration.as_secs_f64()
            );
            Ok(())
        }
        Err(e) => Err(Failure::Runtime(format!(
            "restore of snapshot {id} failed: {e}"
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
    if let Some(marker) = crate::steps::snapshot::newest_complete(&dir, tz, until) {
        return Ok(marker.id);
    }
    Err(Failure::Usage(format!(
        "no complete snapshot of {} recorded in {}{}; name one with --snapshot ID (`restic snapshots` lists them)",
        ctx.step.id,
        dir.display(),
        at.map(|t| format!(" at or before {t}")).unwrap_or_default()
    )))
}

/// Regular files under `dir`, for the record.
fn count_files(dir: &Path) -> u64 {
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
fn parse_at(s: &str, tz: chrono_tz::Tz) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"] {
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

/// A database name ops-run may create, rename and put into SQL literals: letters, digits and
/// `_`, at most 63 characters (PostgreSQL's limit).
fn plain_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 63
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(format!(
            "--to `{name}`: a database name of letters, digits and `_` (at most 63), or a `database` block of the plan"
        ));
    }
    Ok(())
}

fn suffix(ctx: &Context) -> String {
    ctx.clock
        .now()
        .with_timezone(&ctx.plan.timezone.value)
        .format("%Y%m%d%H%M")
        .to_string()
}

/// PostgreSQL, MariaDB, MySQL: see the module's comment.
fn server(
    ctx: &Context,
    a: &DbArgs,
    source: &Database,
    dump: &DumpFile,
    checksum: &Checksum,
) -> Result<Done, Stop> {
    // `--to` names a `database` block of the plan (its server and name), or a database on the
    // dump's own server.
    let (server_db, name) = match ctx.database(a.to) {
        Ok(db) => (
            db,
            db.dbname.as_ref().map(|n| n.value.clone()).ok_or_else(|| {
                Stop::Refused(format!("database `{}` names no database (`name`)", a.to))
            })?,
        ),
        Err(_) => (source, a.to.to_string()),
    };
    plain_name(&name).map_err(Stop::Refused)?;
    let client = Client::new(&ctx.target(server_db)?, &ctx.plan.tools)?;
    let maintenance = client.maintenance_db();
    let run = |spec: &exec::ProcessSpec| -> Result<exec::ProcessResult, String> {
        let r = exec::run(spec, ctx.redactor);
        if r.success() {
            Ok(r)
        } else {
            Err(format!(
                "{} failed: {}",
                spec.display(ctx.redactor),
                r.tail.trim()
            ))
        }
    };
    let count = |db: &str| -> Result<i64, String> {
        let r = run(&client.sql(db, client.count_tables_sql()))?;
        number(&r).ok_or_else(|| format!("cannot count the tables of {db}: {}", r.tail.trim()))
    };
    let exists = number(&run(&client.sql(maintenance, &client.exists_sql(&name)))?) == Some(1);
    let tables = if exists { count(&name)? } else { 0 };
    checksum.wait()?;
    let stamp = suffix(ctx);
    let kept_as = format!("{name}_before_{stamp}");
    // Names are swapped where the server can rename a database.
    let swap = exists && client.rename_sql(&name, &kept_as).is_some();
    if exists && tables > 0 && !a.replace {
        return Err(Stop::Refused(format!(
            "{name} exists and holds {tables} tables: nothing restored. Add --replace to keep it as {name}_before_… and put the restore in its place, or choose another --to"
        )));
    }
    if exists && tables > 0 && !swap {
        return Err(Stop::Refused(format!(
            "{name} holds {tables} tables and this server cannot rename a database, so --replace cannot keep it: nothing restored. Restore into a new name (--to {name}_restored) and point the application at it, or empty {name} first"
        )));
    }
    // Loaded under a new name first when the target exists (swapped in afterwards); into the
    // target itself when it does not exist, or exists empty where names cannot be swapped.
    let load_into = if swap {
        format!("{name}_restore_{stamp}")
    } else {
        name.clone()
    };
    plain_name(&load_into)?;
    let create = !exists || swap;
    if a.dry_run {
        crate::outln!("would run:");
        if create {
            crate::outln!(
                "  {}",
                client.create(maintenance, &load_into).display(ctx.redactor)
            );
        }
        crate::outln!(
            "  {} {} | {} (owners and privileges {})",
            crate::artifact::codec::Codec::of_path(&dump.path).cat(),
            exec::shell_quote(&dump.path.display().to_string()),
            client.import(&load_into).display(ctx.redactor),
            if a.keep_ownership { "kept" } else { "left out" }
        );
        if swap {
            for (from, to) in [(&name, &kept_as), (&load_into, &name)] {
                let sql = client.rename_sql(from, to).unwrap_or_default();
                crate::outln!("  {}", client.sql(maintenance, &sql).display(ctx.redactor));
            }
        }
        return Ok(Done::default());
    }
    let mut done = Done {
        target: name.clone(),
        ..Done::default()
    };
    if a.with_globals {
        apply_globals(ctx, &client, dump, &mut done)?;
    }
    if create {
        run(&client.create(maintenance, &load_into))?;
    }
    let loaded = (|| {
        let imported = import_dump(
            &client,
            &load_into,
            &dump.path,
            a.keep_ownership,
            a.sessions,
            None,
            ctx.redactor,
        );
        done.lines.extend(imported.lines(a.keep_ownership));
        imported.result.map_err(|e| e.to_string())?;
        count(&load_into)
    })();
    let tables = match loaded {
        Ok(n) => n as u64,
        Err(e) => {
            if create {
                let _ = client.drop_scratch(maintenance, &load_into, ctx.redactor);
                return Err(format!(
                    "{e}\n(the partial {load_into} was dropped; nothing else changed)"
                )
                .into());
            }
            return Err(format!(
                "{e}\n({name} was empty before and now holds what loaded before the error)"
            )
            .into());
        }
    };
    done.tables = tables;
    done.lines.push(format!(
        "loaded {} into {load_into}: {tables} tables",
        dump.path.display()
    ));
    if swap {
        let rename = |from: &str, to: &str| {
            run(&client.sql(
                maintenance,
                &client.rename_sql(from, to).unwrap_or_default(),
            ))
        };
        rename(&name, &kept_as).map_err(|e| {
            format!("{e}\nthe restore is complete in {load_into}; {name} was left as it was (are sessions connected to it?)")
        })?;
        if let Err(e) = rename(&load_into, &name) {
            let back = rename(&kept_as, &name).is_ok();
            return Err(format!(
                "{e}\nthe restore is complete in {load_into}; {}",
                if back {
                    format!("{name} was put back")
                } else {
                    format!("the previous database is {kept_as}")
                }
            )
            .into());
        }
        done.lines.push(format!(
            "renamed {name} to {kept_as}, {load_into} to {name}"
        ));
        done.kept_as = Some(kept_as);
    }
    Ok(done)
}

/// Applies the roles dumped beside `dump` (`globals #true`) before the load, checked against
/// their sidecar first. A role that exists already is said, not fatal.
fn apply_globals(
    ctx: &Context,
    client: &Client,
    dump: &DumpFile,
    done: &mut Done,
) -> Result<(), Stop> {
    let path = crate::steps::dump::globals_path(&dump.path)
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
    let (r, feed_error) = exec::run_feeding(
        &spec,
        ctx.redactor,
        Box::new(move |w| {
            let file = std::fs::File::open(&path)?;
            let mut gz = flate2::read::MultiGzDecoder::new(file);
            std::io::copy(&mut gz, w).map(|_| ())
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

/// SQLite: `--to` is a file (or a `database` block with a `path`).
fn sqlite(ctx: &Context, a: &DbArgs, dump: &DumpFile, checksum: &Checksum) -> Result<Done, Stop> {
    let target = match ctx.database(a.to) {
        Ok(db) => PathBuf::from(
            db.path
                .as_ref()
                .map(|p| p.value.clone())
                .ok_or_else(|| Stop::Refused(format!("database `{}` has no path", a.to)))?,
        ),
        Err(_) => PathBuf::from(a.to),
    };
    let tables = |path: &Path| -> Result<i64, String> {
        let conn =
            rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        sqlite_tables(&conn).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let exists = target.exists();
    let held = if exists { tables(&target)? } else { 0 };
    checksum.wait()?;
    if held > 0 && !a.replace {
        return Err(Stop::Refused(format!(
            "{} exists and holds {held} tables: nothing restored. Add --replace to keep it as {}.before-… and put the restore in its place, or choose another --to",
            target.display(),
            target.display()
        )));
    }
    let kept_as = PathBuf::from(format!(
        "{}.before-{}",
        target.display(),
        ctx.clock
            .now()
            .with_timezone(&ctx.plan.timezone.value)
            .format("%Y%m%d-%H%M")
    ));
    if a.dry_run {
        crate::outln!(
            "would load {} into a new file beside {}",
            dump.name,
            target.display()
        );
        if exists {
            crate::outln!("would keep the previous file as {}", kept_as.display());
        }
        crate::outln!("would rename the new file to {}", target.display());
        return Ok(Done::default());
    }
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file = target
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .ok_or_else(|| format!("--to {}: not a file name", target.display()))?;
    let temp = dir.join(format!(".{file}.restore.{}", std::process::id()));
    let guard = RemoveOnDrop(temp.clone());
    // No deadline of its own: the operator watches a restore and stops it with Ctrl-C.
    let conn = load_sqlite(&temp, &dump.path, Duration::from_secs(10 * 365 * 86400))?;
    let loaded = sqlite_tables(&conn)? as u64;
    drop(conn);

    let mut done = Done {
        target: target.display().to_string(),
        tables: loaded,
        ..Done::default()
    };
    if exists {
        // The old file keeps its name until the new one is in place: a hard link first, then
        // one rename replaces the target.
        std::fs::hard_link(&target, &kept_as).map_err(|e| {
            format!(
                "cannot keep {} as {}: {e}",
                target.display(),
                kept_as.display()
            )
        })?;
        std::fs::rename(&temp, &target).map_err(|e| {
            format!(
                "cannot put the restore in place of {}: {e}",
                target.display()
            )
        })?;
        done.kept_as = Some(kept_as.display().to_string());
    } else {
        layout::rename_new(&temp, &target)
            .map_err(|e| format!("cannot create {}: {e}", target.display()))?;
    }
    drop(guard);
    done.lines.push(format!(
        "loaded {} into {}: {loaded} tables",
        dump.path.display(),
        target.display()
    ));
    Ok(done)
}
