//! The restore test, shared by `verify` (alone) and `drill` (with the files; `verify.rs` is
//! the kind that runs it alone): restore the newest good dump into a scratch database and
//! check it. The checksum and the dump's age are checked before anything is imported; the scratch database
//! is always dropped (also on failure, timeout and SIGTERM); the evidence is a log file in
//! `verify/`.

use super::Settings;
use crate::graph::EdgeKind;
use crate::plan::compile::{Compiling, VERIFY_OVERDUE};
use crate::plan::decode::Decoder;
use crate::plan::diagnostic::Diagnostic;
use crate::plan::model::{Expect, Spanned};
use crate::plan::settings::Origin;
use crate::plan::validate::{self, Scope};
use kdl::KdlNode;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use super::import::import_dump;
use super::{Context, Outcome, Status, StepError};
use crate::artifact::codec::Form;
use crate::artifact::end::StreamEnd;
use crate::artifact::layout::{self, Area, DumpFile};
use crate::artifact::seal::{Key, Keyring};
use crate::artifact::sha;
use crate::engines::client::Client;
use crate::exec::{self, ProcessResult};
use crate::plan::model::{Database, Engine, Ownership, Sourced, StepKind, ValueSource, Verify};
use crate::store::meta::VerifyMeta;
use crate::units::duration;

/// The settings of a `verify` block (beside the common ones).
pub const SETTINGS: Settings = Settings {
    keys: &[
        "dump",
        "base-backup",
        "overdue-after",
        "min-tables",
        "expect",
        "verify-database",
        "ownership",
        "from",
        "sessions",
        "identity",
    ],
    repeatable: &["expect"],
};

pub fn decode(v: &mut Verify, key: &str, node: &KdlNode, dec: &mut Decoder) {
    match key {
        "base-backup" => v.base_backup = dec.string(node),
        "dump" => v.dump = dec.string(node),
        "overdue-after" => v.overdue_after = dec.duration(node),
        "min-tables" => {
            v.min_tables = dec
                .int(node, 0, 1_000_000)
                .map(|n| Spanned::new(n.value as u64, n.span))
        }
        "verify-database" => v.verify_database = dec.string(node),
        "from" => v.from = dec.string(node),
        "identity" => {
            v.identity = dec.sourced(node);
            if let Some(s) = &v.identity
                && let ValueSource::Literal(_) = s.source
            {
                dec.error_help(
                    s.span,
                    "an identity is a secret: not in the plan",
                    "written in the plan",
                    "write `identity file=\"/etc/ops-run/restore.key\"`, `identity env=VARIABLE` or `identity credential=\"NAME\"` (a file as age-keygen writes it)",
                );
            }
        }
        "sessions" => {
            v.sessions = dec
                .int(node, 1, 2)
                .map(|n| Spanned::new(n.value as u32, n.span))
        }
        "ownership" => {
            v.ownership = dec.parsed(node, "`ignore` or `keep`", |o| match o {
                "ignore" => Ok(Ownership::Ignore),
                "keep" => Ok(Ownership::Keep),
                other => Err(format!("`{other}` is neither `ignore` nor `keep`")),
            })
        }
        "expect" if dec.shape(node, 1, 1, &["min"]) => {
            let sql = dec.entry_text(dec.positional(node)[0], "an SQL query");
            let min = node
                .entries()
                .iter()
                .find(|e| e.name().is_some_and(|n| n.value() == "min"))
                .and_then(|e| dec.entry_int(e, 0, i64::MAX as i128))
                .map(|n| Spanned::new(n.value as i64, n.span));
            if let Some(sql) = sql {
                v.expects.push(Expect { sql, min });
            }
        }
        _ => {}
    }
}

/// A `verify`'s compiled form: the edge from its dump, its threshold, table floor and
/// ownership; `OPS_VERIFY_AUTO=false` takes it off the schedule.
pub fn compile(v: &Verify, c: &mut Compiling) {
    if let Some(dump) = &v.dump
        && c.needs(dump, EdgeKind::Requires)
    {
        c.plan_setting("dump", dump.value.clone(), dump.span);
    }
    if let Some(b) = &v.base_backup
        && c.needs(b, EdgeKind::Requires)
    {
        c.plan_setting("base-backup", b.value.clone(), b.span);
    }
    c.threshold(
        "overdue-after",
        "OPS_VERIFY_OVERDUE_HOURS",
        3600,
        v.overdue_after.as_ref(),
        VERIFY_OVERDUE,
    );
    if let Some(m) = &v.min_tables {
        c.plan_setting("min-tables", m.value.to_string(), m.span);
    }
    // From a copy: after the copy when both run (a failed copy still leaves older copies to
    // prove).
    if let Some(from) = &v.from
        && c.needs(from, EdgeKind::Order)
    {
        c.plan_setting("from", from.value.clone(), from.span);
    }
    match &v.ownership {
        Some(o) if o.value == Ownership::Keep => c.plan_setting("ownership", "keep", o.span),
        Some(o) => c.plan_setting("ownership", "ignore", o.span),
        None => c.setting("ownership", "ignore", Origin::Default),
    }
    match &v.sessions {
        Some(n) => c.plan_setting("sessions", n.value.to_string(), n.span),
        None => c.setting("sessions", "2", Origin::Default),
    }
    c.auto = c.verify_auto.clone();
}

/// A `dump NAME` setting (of a verify, drill or copy): present, and naming a dump step.
pub(crate) fn dump_reference(
    keyword: &str,
    dump: &Option<Spanned<String>>,
    name: &Spanned<String>,
    scope: &Scope,
    diags: &mut Vec<Diagnostic>,
) {
    match dump {
        None => diags.push(
            Diagnostic::error(
                name.span,
                format!("{keyword} `{}` needs `dump`", name.value),
                "dump missing",
            )
            .with_help("name the dump step whose newest artifact it restores: `dump db`"),
        ),
        Some(r) if !scope.dumps.contains(&r.value.as_str()) => {
            let mut d = validate::reference_error(r.span, "dump step", &r.value, &scope.dumps);
            if let Some(other) = scope.plan.steps.iter().find(|s| s.name.value == r.value) {
                d = Diagnostic::error(
                    r.span,
                    format!(
                        "`{}` is a {} step, not a dump",
                        r.value,
                        other.kind.keyword()
                    ),
                    "not a dump",
                );
            }
            diags.push(d);
        }
        Some(_) => {}
    }
}

/// Checks a `verify` block on its own (references to its plan's databases and steps).
pub fn validate(v: &Verify, name: &Spanned<String>, scope: &Scope, diags: &mut Vec<Diagnostic>) {
    encrypted_needs_identity(v, name, scope, diags);
    if let Some(b) = &v.base_backup {
        super::cluster::validate_verify(v, b, scope, diags);
        return;
    }
    dump_reference("verify", &v.dump, name, scope, diags);
    if let Some(from) = &v.from {
        let copies: Vec<(&str, Option<&str>)> = scope
            .plan
            .steps
            .iter()
            .filter_map(|s| match &s.kind {
                StepKind::Copy(c) => Some((
                    s.name.value.as_str(),
                    c.dump.as_ref().map(|d| d.value.as_str()),
                )),
                _ => None,
            })
            .collect();
        match copies.iter().find(|(n, _)| *n == from.value) {
            None => {
                let names: Vec<&str> = copies.iter().map(|(n, _)| *n).collect();
                diags.push(validate::reference_error(
                    from.span,
                    "copy step",
                    &from.value,
                    &names,
                ));
            }
            Some((_, copied)) if *copied != v.dump.as_ref().map(|d| d.value.as_str()) => {
                diags.push(
                    Diagnostic::error(
                        from.span,
                        format!(
                            "copy `{}` copies `{}`, not `{}`",
                            from.value,
                            copied.unwrap_or("-"),
                            v.dump.as_ref().map_or("-", |d| d.value.as_str())
                        ),
                        "another dump's copy",
                    )
                    .with_help("name the copy of the dump this step restores"),
                );
            }
            Some(_) => {}
        }
    }
    if let Some(r) = &v.verify_database
        && !scope.databases.contains(&r.value.as_str())
    {
        diags.push(validate::reference_error(
            r.span,
            "database",
            &r.value,
            &scope.databases,
        ));
    }
}

/// The key that decrypts `dump`: none for a plain dump; for an encrypted one, the identity
/// given (a file as age-keygen writes it), or an error that says the two ways out.
pub(crate) fn dump_key(
    env: &crate::plan::settings::Env,
    identity: Option<&Sourced>,
    dump: &DumpFile,
) -> Result<Option<Keyring>, StepError> {
    sealed_key(env, identity, Form::of_path(&dump.path).sealed, &dump.name)
}

/// The key of a file that is encrypted (`sealed`) or not, named `name` in errors.
pub(crate) fn sealed_key(
    env: &crate::plan::settings::Env,
    identity: Option<&Sourced>,
    sealed: bool,
    name: &str,
) -> Result<Option<Keyring>, StepError> {
    if !sealed {
        return Ok(None);
    }
    let Some(identity) = identity else {
        return Err(format!(
            "{name} is encrypted and no identity was given: give this step `identity file=\"…\"` (or env=, credential=), or restore-test on a host that holds the identity"
        )
        .into());
    };
    let text = env
        .resolve(&identity.source)
        .map_err(|e| format!("cannot read the identity: {e}"))?;
    let key = Key::parse(&text).map_err(|e| format!("the identity: {e}"))?;
    Ok(Some(std::sync::Arc::new(key)))
}

/// A restore test of an encrypted dump without an identity could never read it: refused
/// with the two ways out.
fn encrypted_needs_identity(
    v: &Verify,
    name: &Spanned<String>,
    scope: &Scope,
    diags: &mut Vec<Diagnostic>,
) {
    let Some((what, dump)) = v
        .dump
        .as_ref()
        .map(|d| ("dump", d))
        .or(v.base_backup.as_ref().map(|b| ("base-backup", b)))
    else {
        return;
    };
    let encrypted = scope.plan.steps.iter().any(|s| {
        s.name.value == dump.value
            && match &s.kind {
                StepKind::Dump(d) => d.encrypt.is_some(),
                StepKind::BaseBackup(b) => b.encrypt.is_some(),
                _ => false,
            }
    });
    if encrypted && v.identity.is_none() {
        diags.push(
            Diagnostic::error(
                dump.span,
                format!(
                    "`{}` restores {what} `{}`, which is encrypted, and has no identity to decrypt it",
                    name.value, dump.value
                ),
                "an encrypted dump",
            )
            .with_help(
                "give it the identity: `identity file=\"/etc/ops-run/restore.key\"` (or env=, credential=), or run this step on another host, one that holds the identity, and not on the backup host",
            ),
        );
    }
}

/// What a verify found, line by line, for the log file and the activity.
#[derive(Default)]
struct Evidence {
    lines: Vec<String>,
    dump: Option<PathBuf>,
    age: Option<Duration>,
    tables: Option<u64>,
    /// Rows restored, all tables (checked against the manifest); `None` without one.
    rows: Option<u64>,
}

impl Evidence {
    fn line(&mut self, l: impl Into<String>) {
        self.lines.push(l.into());
    }
}

/// `ops_verify_<plan>_<random>`: unique, and never a name an operator would use.
fn scratch_name(plan: &str) -> String {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let plan: String = plan
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("ops_verify_{plan}_{:08x}", random as u32)
}

/// The newest dump that has a sidecar: the one a verify must test (an older one would report
/// green on yesterday's file). A dump dated after `now` is never taken: it is no evidence.
pub(crate) fn newest_with_sidecar(
    dir: &Path,
    tz: chrono_tz::Tz,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<DumpFile> {
    layout::good_dumps(dir, tz, now).next()
}

pub fn preview(ctx: &Context, v: &Verify) -> Result<String, StepError> {
    if let Some(b) = &v.base_backup {
        return Ok(super::cluster::preview_verify(ctx, &b.value));
    }
    let (source, fail_after, dir) = dump_of(ctx, v)?;
    let target = match &v.verify_database {
        Some(t) => ctx.database(&t.value)?,
        None => source,
    };
    let dump = newest_with_sidecar(&dir, ctx.plan.timezone.value, ctx.clock.now()).map_or_else(
        || "(no dump with a sidecar yet)".to_string(),
        |d| d.path.display().to_string(),
    );
    Ok(format!(
        "restore {dump} into a scratch database on `{}` (checksum and age ≤ {} checked first), then drop it",
        target.name.value,
        duration::format(fail_after)
    ))
}

/// The dump step's database and its `fail-after`.
/// The dump step a verify tests: its database, its `fail-after`, and its folder.
fn dump_of<'a>(
    ctx: &'a Context,
    v: &Verify,
) -> Result<(&'a Database, Duration, PathBuf), StepError> {
    let name = v
        .dump
        .as_ref()
        .map(|d| d.value.as_str())
        .unwrap_or_default();
    let step = ctx
        .compiled
        .steps
        .iter()
        .find(|s| s.plan == ctx.step.plan && s.name() == name)
        .ok_or_else(|| format!("no dump step `{name}`"))?;
    let StepKind::Dump(d) = &step.decl.kind else {
        return Err(format!("`{name}` is not a dump step").into());
    };
    let db = ctx.database(d.database.as_ref().map_or("", |n| n.value.as_str()))?;
    Ok((
        db,
        step.threshold("fail-after")
            .unwrap_or(crate::plan::compile::DUMP_FAIL),
        ctx.plan.dir(name, Area::Dumps),
    ))
}

/// A verify needs a dump to test: without a good one (the dump never succeeded) it is
/// skipped, not failed: the dump's own check already says why, and one cause gets one alert.
pub fn ready(ctx: &Context, v: &Verify) -> Result<(), StepError> {
    if let Some(b) = &v.base_backup {
        let tz = ctx.plan.timezone.value;
        return match crate::artifact::base::good(&ctx.plan.dir(&b.value, Area::Base), tz).first() {
            Some(_) => Ok(()),
            None => Err(format!("no good base backup of `{}` to restore yet", b.value).into()),
        };
    }
    let (_, _, dir) = dump_of(ctx, v)?;
    if v.from.is_some() {
        // The destination is asked when the restore runs; this machine may hold no dump.
        return Ok(());
    }
    match newest_with_sidecar(&dir, ctx.plan.timezone.value, ctx.clock.now()) {
        Some(_) => Ok(()),
        None => Err(format!(
            "no good dump of `{}` to restore yet",
            v.dump.as_ref().map_or("", |d| d.value.as_str())
        )
        .into()),
    }
}

pub fn execute(ctx: &Context, v: &Verify) -> Outcome {
    let started = Instant::now();
    let mut ev = Evidence::default();
    let result = run(ctx, v, &mut ev);
    let duration_ms = started.elapsed().as_millis() as u64;
    ev.line(format!("duration_ms: {duration_ms}"));
    let (status, summary) = match &result {
        Ok(()) => (
            Status::Success,
            match ev.rows {
                Some(r) => format!(
                    "restored {} tables, {} rows (every table as dumped)",
                    ev.tables.unwrap_or(0),
                    crate::artifact::manifest::thousands(r)
                ),
                None => format!("restored {} tables", ev.tables.unwrap_or(0)),
            },
        ),
        Err(why) => (Status::Failed, why.to_string()),
    };
    ev.line(match &result {
        Ok(()) => "result: ok".to_string(),
        Err(why) => format!("result: failed: {why}"),
    });
    let text = ctx.redactor.redact(&(ev.lines.join("\n") + "\n"));
    let log = write_log(ctx, status == Status::Success, &text);
    let mut log_excerpt = text.clone();
    if let Err(e) = &log {
        log_excerpt.push_str(&format!("ops-run: cannot write the verify log: {e}\n"));
    }
    Outcome {
        status: if log.is_err() { Status::Failed } else { status },
        meta: json!(VerifyMeta {
            verify_dump: ev.dump.as_ref().map(|p| p.display().to_string()),
            verify_table_count: ev.tables,
            rows: ev.rows,
            dump_age_seconds: ev.age.map(|a| a.as_secs()),
            verify_log: log.as_ref().ok().map(|p| p.display().to_string()),
            duration_ms: Some(duration_ms),
        }),
        log_excerpt,
        summary: ctx.redactor.redact(&summary),
        extra: Vec::new(),
        tolerated: false,
    }
}

/// A restore test as a drill runs it: the verify's work without its log file or activity.
pub(crate) struct RestoreTest {
    pub result: Result<u64, StepError>,
    pub lines: Vec<String>,
    pub dump: Option<PathBuf>,
    /// When the restored dump was taken.
    pub age: Option<Duration>,
}

/// Restores the newest good dump of `v.dump` into a scratch database, checks it, drops it.
pub(crate) fn restore_test(ctx: &Context, v: &Verify) -> RestoreTest {
    let mut ev = Evidence::default();
    let result = run(ctx, v, &mut ev);
    RestoreTest {
        result: result.map(|()| ev.tables.unwrap_or(0)),
        lines: ev.lines,
        dump: ev.dump,
        age: ev.age,
    }
}

fn write_log(ctx: &Context, ok: bool, text: &str) -> std::io::Result<PathBuf> {
    let dir = ctx.plan.dir(ctx.step.name(), Area::VerifyLogs);
    std::fs::create_dir_all(&dir)?;
    let mut stem = layout::stamp_name("verify", ctx.clock.now(), ctx.plan.timezone.value);
    if !ok {
        stem.push_str("-fail");
    }
    layout::write_new(&dir, &stem, "log", text.as_bytes())
}

fn run(ctx: &Context, v: &Verify, ev: &mut Evidence) -> Result<(), StepError> {
    if let Some(b) = &v.base_backup {
        return run_base(ctx, v, &b.value, ev);
    }
    let (source, fail_after, dir) = dump_of(ctx, v)?;
    let tz = ctx.plan.timezone.value;
    // `from COPY`: the newest dump at that copy's destination, fetched into a scratch folder
    // (removed when done) and checked against the sha256 it was copied with.
    let fetched;
    let dump = match &v.from {
        None => newest_with_sidecar(&dir, tz, ctx.clock.now())
            .ok_or_else(|| format!("no dump with a sidecar in {}", dir.display()))?,
        Some(copy) => {
            let dump_step = v.dump.as_ref().map_or("", |d| d.value.as_str());
            fetched = super::restic::fetch_into_scratch(ctx, &copy.value, dump_step)?;
            ev.line(format!(
                "from: copy `{}`, snapshot {} at its destination",
                copy.value, fetched.snapshot
            ));
            fetched.dump.clone()
        }
    };
    ev.dump = Some(dump.path.clone());
    ev.line(format!("dump: {}", dump.path.display()));
    // The checksum first: a damaged dump is never imported.
    let sidecar = std::fs::read_to_string(layout::sidecar_path(&dump.path))
        .map_err(|e| format!("cannot read the sidecar: {e}"))?;
    let claimed =
        sha::parse_sidecar(&sidecar, &dump.name).ok_or("the sidecar does not name this dump")?;
    let actual = sha::file_sha256(&dump.path)
        .map_err(|e| format!("cannot read {}: {e}", dump.path.display()))?;
    if actual != claimed {
        ev.line(format!("sha256: {actual} (the sidecar says {claimed})"));
        // A local dump (one fetched from a copy goes with its scratch folder).
        if v.from.is_none() {
            layout::mark_damaged(
                &dump.path,
                &format!(
                    "verify {}: sha256 {actual}, the sidecar says {claimed}",
                    ctx.step.id
                ),
            );
        }
        return Err(format!("checksum mismatch: {} is damaged; not imported", dump.name).into());
    }
    ev.line(format!("sha256: {actual} (matches the sidecar)"));
    let key = dump_key(ctx.env, v.identity.as_ref(), &dump)?;
    if key.is_some() {
        ev.line("encrypted: age, decrypted with the step's identity as it is read");
    }
    let age = (ctx.clock.now() - dump.taken).to_std().unwrap_or_default();
    ev.age = Some(age);
    ev.line(format!(
        "dump_age: {} ({} s)",
        duration::format(Duration::from_secs(age.as_secs())),
        age.as_secs()
    ));
    if age > fail_after {
        return Err(format!(
            "the newest dump {} is {} old, older than the dump's fail-after {}: not a current backup",
            dump.name,
            duration::format(Duration::from_secs(age.as_secs())),
            duration::format(fail_after)
        ).into());
    }
    let target = match &v.verify_database {
        Some(t) => ctx.database(&t.value)?,
        None => source,
    };
    let engine = source.engine.as_ref().map(|e| e.value).ok_or("no engine")?;
    if target.engine.as_ref().map(|e| e.value) != Some(engine)
        && !matches!(
            (engine, target.engine.as_ref().map(|e| e.value)),
            (
                Engine::Mysql | Engine::Mariadb,
                Some(Engine::Mysql | Engine::Mariadb)
            )
        )
    {
        return Err(format!(
            "verify-database `{}` is not a {} server",
            target.name.value,
            crate::engines::engine_name(source)
        )
        .into());
    }
    ev.line(format!("engine: {}", crate::engines::engine_name(source)));
    let scratch = scratch_name(&ctx.plan.decl.name.value);
    if Some(scratch.as_str()) == source.dbname.as_ref().map(|n| n.value.as_str()) {
        return Err("refusing to restore into the source database".into());
    }
    let tables = match engine {
        Engine::Sqlite => verify_sqlite(ctx, v, &dump, key.as_ref(), &scratch, ev)?,
        _ => verify_server(ctx, v, target, &dump, key.as_ref(), &scratch, ev)?,
    };
    ev.tables = Some(tables);
    Ok(())
}

/// The restore test of a base backup: the newest good base, checked against its sidecar,
/// recovered with all the archived WAL (a drill's `pitr #true`: to a random instant of the
/// archived window) into a scratch data directory by a PostgreSQL of its own (a private
/// socket, no TCP), counted and queried (`min-tables`, `expect`), stopped, removed. The
/// recovery point is how far the last transaction replayed lies behind the target (now, or
/// the instant).
fn run_base(ctx: &Context, v: &Verify, step: &str, ev: &mut Evidence) -> Result<(), StepError> {
    let tz = ctx.plan.timezone.value;
    let bases = crate::artifact::base::good(&ctx.plan.dir(step, Area::Base), tz);
    let (base, m) = bases
        .first()
        .ok_or_else(|| format!("no good base backup of `{step}`"))?;
    ev.dump = Some(base.path.clone());
    ev.line(format!("base: {}", base.path.display()));
    let (actual, matches) = crate::artifact::base::hash_matches(base, m)
        .map_err(|e| format!("cannot read {}: {e}", base.path.display()))?;
    if !matches {
        ev.line(format!("sha256: {actual} (the sidecar says otherwise)"));
        return Err(format!("checksum mismatch: {} is damaged; not restored", base.name).into());
    }
    ev.line(format!("sha256: {actual} (matches the sidecar)"));
    let archive = ctx
        .plan
        .decl
        .wals_of(step)
        .next()
        .map(|w| ctx.plan.dir(&w.name.value, Area::Wal));
    let sealed = crate::artifact::base::encrypted(&base.path, archive.as_deref());
    let key = sealed_key(ctx.env, v.identity.as_ref(), sealed, &base.name)?;
    if key.is_some() {
        ev.line("encrypted: age, the base and its WAL decrypted with the step's identity");
    }
    let now = ctx.clock.now();
    let finished = m.finished().unwrap_or(base.taken);
    let base_age = (now - finished).to_std().unwrap_or_default();
    ev.line(format!(
        "base_age: {} ({} s)",
        duration::format(Duration::from_secs(base_age.as_secs())),
        base_age.as_secs()
    ));
    let at = match v.pitr.as_ref().is_some_and(|p| p.value) {
        true => super::cluster::random_instant(ctx, step, finished),
        false => None,
    };
    let work = &mut |client: &Client, db: &str| {
        let count = exec::run(&client.sql(db, client.count_tables_sql()), ctx.redactor);
        let tables = number(&count)
            .ok_or_else(|| format!("cannot count tables: {}", count.tail.trim()))?
            as u64;
        let answers: Vec<(Option<i64>, String)> = v
            .expects
            .iter()
            .map(|e| {
                let r = exec::run(&client.sql(db, &e.sql.value), ctx.redactor);
                (if r.success() { number(&r) } else { None }, r.tail)
            })
            .collect();
        Ok((tables, answers))
    };
    let mut lines = Vec::new();
    let key = key.as_deref();
    let mut outcome = super::cluster::rehearse(ctx, step, base, m, at, (&mut lines, key), work);
    let mut target = at.unwrap_or(now);
    if let (Err(e), Some(t)) = (&outcome, at)
        && e.to_string().contains(super::cluster::NOT_REACHED)
    {
        // Nothing was committed after the instant: all of the archive is before it.
        lines.push(format!(
            "no transaction after {} in the archive: recovering to its end instead",
            crate::clock::stamp(t)
        ));
        target = now;
        outcome = super::cluster::rehearse(ctx, step, base, m, None, (&mut lines, key), work);
    }
    for l in lines {
        ev.line(l);
    }
    let ((tables, answers), recovered) = outcome?;
    let point = recovered
        .last_transaction
        .map_or(base_age, |t| (target - t).to_std().unwrap_or_default());
    ev.age = Some(point);
    ev.line(format!(
        "recovery point: {} behind {} ({} s)",
        duration::format(Duration::from_secs(point.as_secs())),
        if at.is_some() { "the instant" } else { "now" },
        point.as_secs()
    ));
    check_tables(v, tables, ev)?;
    for (e, (n, tail)) in v.expects.iter().zip(&answers) {
        expectation(ev, &e.sql.value, *n, e.min.as_ref().map(|m| m.value), tail)?;
    }
    ev.tables = Some(tables);
    Ok(())
}

/// Why a client run failed, naming the program that ran.
pub(crate) fn exit_reason(spec: &exec::ProcessSpec, r: &ProcessResult) -> String {
    r.exit
        .reason(&spec.program)
        .unwrap_or_else(|| format!("{} succeeded", spec.program))
}

/// A dump whose stream lacks the completion line was cut short: the import must not pass
/// (a restore of the first half can have every table and look fine).
pub(crate) fn truncated(end: &StreamEnd, marker: &str) -> std::io::Result<()> {
    if end.contains(marker) {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "the dump does not end with the completion line `{marker}`: it is truncated"
        )))
    }
}

/// Drops the scratch database when it goes out of scope, whatever happened. Its marker file
/// (see `scratch::announce`) goes once the database is gone.
struct Scratch<'a> {
    client: &'a Client,
    maintenance: String,
    name: String,
    ctx: &'a Context<'a>,
    marker: Option<super::scratch::Announced>,
    dropped: Option<Result<(), String>>,
}

impl Scratch<'_> {
    /// `Err`: the server's last refusal.
    fn drop_now(&mut self) -> Result<(), String> {
        if let Some(d) = &self.dropped {
            return d.clone();
        }
        let r = self
            .client
            .drop_scratch(&self.maintenance, &self.name, self.ctx.redactor)
            .map_err(String::from);
        if r.is_ok()
            && let Some(m) = self.marker.take()
        {
            m.done();
        }
        self.dropped = Some(r.clone());
        r
    }
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        let _ = self.drop_now();
    }
}

/// Drops the scratch databases a killed ops-run left behind (their markers name a process
/// that is gone, see `scratch::announce`); one line per database for the operator.
pub fn sweep(ctx: &Context, _v: &Verify) -> Vec<String> {
    let dir = ctx.plan.dir(ctx.step.name(), Area::VerifyLogs);
    let mut said = super::restic::sweep_fetched(ctx, &ctx.step.id);
    said.extend(super::cluster::sweep_scratch(ctx));
    said.extend(super::scratch::sweep_announced(
        ctx,
        &dir,
        |name| name.starts_with("ops_verify_"),
        &ctx.step.id,
    ));
    said
}

/// The first field of the first output line as a number.
pub(crate) fn number(r: &ProcessResult) -> Option<i64> {
    r.tail
        .lines()
        .next()?
        .split(['|', '\t'])
        .next()?
        .trim()
        .parse()
        .ok()
}

fn verify_server(
    ctx: &Context,
    v: &Verify,
    target: &Database,
    dump: &DumpFile,
    key: Option<&Keyring>,
    scratch: &str,
    ev: &mut Evidence,
) -> Result<u64, StepError> {
    let client = Client::new(&ctx.target(target)?, &ctx.plan.tools)?;
    let maintenance = target
        .dbname
        .as_ref()
        .map(|n| n.value.clone())
        .unwrap_or_else(|| "postgres".into());
    let timeout = Some(ctx.step.timeout.value);
    let marker = super::scratch::announce(
        &ctx.plan.dir(ctx.step.name(), Area::VerifyLogs),
        scratch,
        &super::scratch::Scratch::Database {
            block: target.name.value.clone(),
            maintenance: Some(maintenance.clone()),
        },
    )?;
    let mut create = client.create(&maintenance, scratch);
    create.timeout = timeout;
    let r = exec::run(&create, ctx.redactor);
    if !r.success() {
        marker.done();
        return Err(format!(
            "cannot create the scratch database {scratch}: {}\n{}",
            exit_reason(&create, &r),
            r.tail.trim()
        )
        .into());
    }
    let mut guard = Scratch {
        client: &client,
        maintenance,
        name: scratch.to_string(),
        ctx,
        marker: Some(marker),
        dropped: None,
    };
    let host = target
        .host
        .as_ref()
        .map_or("localhost".to_string(), |h| h.value.clone());
    let result: Result<u64, String> = (|| {
        let keep = v
            .ownership
            .as_ref()
            .is_some_and(|o| o.value == Ownership::Keep);
        let sessions = v.sessions.as_ref().map_or(2, |n| n.value);
        let imported = import_dump(
            &client,
            scratch,
            (&dump.path, key),
            keep,
            sessions,
            timeout,
            ctx.redactor,
        );
        for line in imported.lines(keep) {
            ev.line(line);
        }
        imported.result?;
        ev.rows = check_rows(&dump.path, &mut |l| ev.line(l), |tables| {
            client.count_rows(scratch, tables, timeout, ctx.redactor)
        })?;
        let count = exec::run(
            &client.sql(scratch, client.count_tables_sql()),
            ctx.redactor,
        );
        let tables = number(&count)
            .ok_or_else(|| format!("cannot count tables: {}", count.tail.trim()))?
            as u64;
        check_tables(v, tables, ev)?;
        for e in &v.expects {
            let r = exec::run(&client.sql(scratch, &e.sql.value), ctx.redactor);
            let n = if r.success() { number(&r) } else { None };
            expectation(
                ev,
                &e.sql.value,
                n,
                e.min.as_ref().map(|m| m.value),
                &r.tail,
            )?;
        }
        Ok(tables)
    })();
    let dropped = guard.drop_now();
    ev.line(match &dropped {
        Ok(()) => format!("scratch: {scratch} on {host} (dropped)"),
        Err(why) => format!(
            "scratch: {scratch} on {host} (NOT dropped: {}; the next apply tries again)",
            why.trim()
        ),
    });
    let tables = result?;
    if dropped.is_err() {
        return Err(format!("the scratch database {scratch} could not be dropped").into());
    }
    Ok(tables)
}

/// Every table's rows against the dump's manifest: the log gets a line per table, and a
/// difference fails the restore, naming the table and both numbers. A dump made before
/// manifests has none: that is said, and the rows are not checked.
pub fn check_rows(
    dump: &Path,
    line: &mut dyn FnMut(String),
    count: impl FnOnce(&[&str]) -> Vec<(String, Result<u64, String>)>,
) -> Result<Option<u64>, String> {
    let m = match crate::artifact::manifest::read(dump)? {
        Some(m) => m,
        None => {
            line("rows: not checked (the dump has no manifest: it was made before ops-run counted rows)".into());
            return Ok(None);
        }
    };
    let names: Vec<&str> = m.tables.keys().map(String::as_str).collect();
    let counted = count(&names);
    let c = crate::artifact::manifest::compare(&m.tables, &counted);
    for l in c.lines.iter().cloned() {
        line(l);
    }
    match c.summary() {
        Some(s) => Err(s),
        None => {
            line(format!(
                "rows: {} in {} tables, as dumped",
                crate::artifact::manifest::thousands(m.rows),
                m.tables.len()
            ));
            Ok(Some(m.rows))
        }
    }
}

fn check_tables(v: &Verify, tables: u64, ev: &mut Evidence) -> Result<(), StepError> {
    match &v.min_tables {
        Some(min) => {
            ev.line(format!("tables: {tables} (min {})", min.value));
            if tables < min.value {
                return Err(format!(
                    "the restore has {tables} tables, fewer than min-tables {}",
                    min.value
                )
                .into());
            }
        }
        None => ev.line(format!("tables: {tables}")),
    }
    Ok(())
}

fn expectation(
    ev: &mut Evidence,
    sql: &str,
    got: Option<i64>,
    min: Option<i64>,
    output: &str,
) -> Result<(), StepError> {
    let min = min.unwrap_or(1);
    match got {
        Some(n) if n >= min => {
            ev.line(format!("expect: {sql} → {n} (min {min}): ok"));
            Ok(())
        }
        Some(n) => {
            ev.line(format!("expect: {sql} → {n} (min {min}): FAILED"));
            Err(format!("expect `{sql}` gave {n}, less than {min}").into())
        }
        None => {
            ev.line(format!("expect: {sql} → error: {}", output.trim()));
            Err(format!("expect `{sql}` failed: {}", output.trim()).into())
        }
    }
}

/// SQLite: restore statement by statement into a scratch file, in-process.
fn verify_sqlite(
    ctx: &Context,
    v: &Verify,
    dump: &DumpFile,
    key: Option<&Keyring>,
    scratch: &str,
    ev: &mut Evidence,
) -> Result<u64, StepError> {
    let dir = ctx.plan.dir(ctx.step.name(), Area::VerifyLogs);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(format!(".{scratch}.sqlite"));
    let guard = RemoveOnDrop(path.clone());
    let result = (|| {
        let conn = load_sqlite(
            &path,
            &dump.path,
            key,
            crate::exec::escape::remaining(ctx.step.timeout.value),
        )?;
        ev.rows = check_rows(&dump.path, &mut |l| ev.line(l), |tables| {
            crate::engines::sqlite::count_rows(&conn, tables)
        })?;
        let tables = sqlite_tables(&conn)?;
        check_tables(v, tables as u64, ev)?;
        for e in &v.expects {
            let got = conn.query_row(&e.sql.value, [], |r| r.get::<_, i64>(0));
            let output = got
                .as_ref()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            expectation(
                ev,
                &e.sql.value,
                got.ok(),
                e.min.as_ref().map(|m| m.value),
                &output,
            )?;
        }
        Ok(tables as u64)
    })();
    drop(guard);
    ev.line(format!("scratch: {} (removed)", path.display()));
    result
}

/// Removes a file when dropped (a scratch or temporary copy), whatever happened.
pub(crate) struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Loads a gzip SQLite dump into the new file `path` (created `0600`: it holds the whole
/// database), refusing a dump without its completion line.
pub(crate) fn load_sqlite(
    path: &Path,
    dump: &Path,
    key: Option<&Keyring>,
    timeout: Duration,
) -> Result<rusqlite::Connection, StepError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let conn = rusqlite::Connection::open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let gz = crate::artifact::codec::Codec::open(dump, key)
        .map_err(|e| format!("cannot read the dump: {e}"))?;
    let mut end = StreamEnd::default();
    import_sqlite(&conn, gz, timeout, &mut end)?;
    truncated(&end, crate::engines::sqlite::MARKER)
        .map_err(|e| format!("the import failed: {e}"))?;
    Ok(conn)
}

/// The number of tables of a SQLite database.
pub(crate) fn sqlite_tables(conn: &rusqlite::Connection) -> Result<i64, StepError> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        [],
        |r| r.get(0),
    )
    .map_err(|e| StepError::Failed(e.to_string()))
}

/// Executes a SQL stream one complete statement at a time, so memory stays bounded.
fn import_sqlite(
    conn: &rusqlite::Connection,
    input: impl Read,
    timeout: Duration,
    end: &mut StreamEnd,
) -> Result<(), StepError> {
    let deadline = Instant::now() + timeout;
    let mut reader = BufReader::new(input);
    let mut statement = String::new();
    let mut line = String::new();
    let mut n = 0u64;
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the dump: {e}"))?;
        if read == 0 {
            break;
        }
        end.push(line.as_bytes());
        statement.push_str(&line);
        if !line.trim_end().ends_with(';') || !complete(&statement) {
            continue;
        }
        conn.execute_batch(&statement).map_err(|e| {
            let head: String = statement.chars().take(200).collect();
            format!("the import failed: {e}\nin: {head}")
        })?;
        statement.clear();
        n += 1;
        if n.is_multiple_of(1000) {
            if exec::signals::interrupted() {
                return Err("interrupted: ops-run was stopped (SIGINT/SIGTERM)".into());
            }
            if Instant::now() > deadline {
                return Err(format!("timed out after {}", duration::format(timeout)).into());
            }
        }
    }
    let rest_is_comment = statement
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with("--"));
    if !rest_is_comment {
        return Err("the import failed: the dump ends in the middle of a statement".into());
    }
    Ok(())
}

/// SQLite's own test for a complete statement (quotes, comments and triggers considered).
fn complete(sql: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(sql) else {
        return false;
    };
    // SAFETY: sqlite3_complete only reads the NUL-terminated string it is given.
    unsafe { rusqlite::ffi::sqlite3_complete(c.as_ptr()) != 0 }
}
