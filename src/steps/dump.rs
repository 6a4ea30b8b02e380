//! The `dump` step: a database dump as a transaction. The tool's stdout streams through
//! parallel gzip (or multi-threaded zstd) into a hidden temporary file, which a thread reads
//! back as it grows (SHA-256 of the bytes on disk, decompressed and compared with what went
//! in: `artifact::proof`); only when the tool exited 0, the completion marker is there, the
//! read-back confirms the file and the size checks pass does it get its final name and its
//! sidecar. Anything else removes the temporary file.

use super::Settings;
use crate::plan::compile::{Compiling, DUMP_FAIL, DUMP_STALE, plan_or_default};
use crate::plan::decode::Decoder;
use crate::plan::diagnostic::Diagnostic;
use crate::plan::model::Spanned;
use crate::plan::settings::Origin;
use crate::plan::validate::{self, Scope};
use kdl::KdlNode;
use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use super::{Context, Outcome, Status, StepError};
use crate::artifact::codec::{Codec, Form};
use crate::artifact::end::{StreamEnd, TeeEnd};
use crate::artifact::gzip::ParallelGzip;
use crate::artifact::layout::{self, Area, DumpFile};
use crate::artifact::manifest::{self, DropRules, Manifest, RowDrop, Tables};
use crate::artifact::proof::Proof;
use crate::artifact::seal;
use crate::artifact::sha;
use crate::engines::{self, DumpSource};
use crate::exec;
use crate::plan::model::{Database, Dump, Encrypt, Engine, StepKind};
use crate::units::size;

/// The settings of a `dump` block (beside the common ones: schedule, after, timeout, …).
pub const SETTINGS: Settings = Settings {
    keys: &[
        "database",
        "stale-after",
        "fail-after",
        "min-size",
        "max-shrink",
        "keep",
        "compression",
        "compression-level",
        "zstd-long",
        "globals",
        "role-passwords",
        "row-drop",
        "min-rows",
        "allow-drop",
        "expect-tables",
        "encrypt",
    ],
    repeatable: &["allow-drop", "expect-tables"],
};

pub fn decode(d: &mut Dump, key: &str, node: &KdlNode, dec: &mut Decoder) {
    match key {
        "database" => d.database = dec.string(node),
        "globals" => d.globals = dec.boolean(node),
        "role-passwords" => d.role_passwords = dec.boolean(node),
        "stale-after" => d.stale_after = dec.duration(node),
        "fail-after" => d.fail_after = dec.duration(node),
        "min-size" => d.min_size = dec.parsed(node, size::EXPECTED, size::parse),
        "max-shrink" => {
            d.max_shrink = dec.parsed(node, "a percentage such as \"50%\"", size::parse_percent)
        }
        "keep" => d.keep = dec.keep(node),
        "compression" => {
            d.compression = dec.parsed(node, "\"gzip\" or \"zstd\"", |v| match v {
                "gzip" => Ok(Codec::Gzip),
                "zstd" => Ok(Codec::Zstd),
                other => Err(format!("`{other}` is neither gzip nor zstd")),
            })
        }
        "zstd-long" => d.zstd_long = dec.boolean(node),
        "row-drop" if dec.shape(node, 0, 0, &["warn", "fail"]) => {
            let mut any = false;
            for e in node.entries() {
                let Some(p) = e.name() else { continue };
                any = true;
                let v = dec.entry_parsed(
                    e,
                    "row-drop",
                    "a percentage such as \"50%\"",
                    size::parse_percent,
                );
                match p.value() {
                    "warn" => d.row_drop_warn = v,
                    _ => d.row_drop_fail = v,
                }
            }
            if !any {
                let span = dec.node_span(node);
                dec.error_help(
                    span,
                    "`row-drop` needs `warn=` or `fail=`",
                    "no threshold",
                    "write `row-drop warn=\"50%\" fail=\"90%\"`",
                );
            }
        }
        "min-rows" => {
            d.min_rows = dec
                .int(node, 0, u32::MAX as i128 * 1000)
                .map(|v| Spanned::new(v.value as u64, v.span))
        }
        "allow-drop" => dec.string_list(node, &mut d.allow_drop),
        "encrypt" => d.encrypt = dec.encrypt(node),
        "expect-tables" => dec.string_list(node, &mut d.expect_tables),
        // gzip takes 1–9, zstd 1–19; checked against the compression in `validate`.
        "compression-level" => {
            d.compression_level = dec
                .int(node, 1, 19)
                .map(|v| Spanned::new(v.value as u32, v.span))
        }
        _ => {}
    }
}

/// A `dump`'s compiled form: database, thresholds (with their environment overrides),
/// retention, size floor and compression level, each with its origin for `plan show`.
pub fn compile(d: &Dump, c: &mut Compiling) {
    if let Some(db) = &d.database {
        c.plan_setting("database", db.value.clone(), db.span);
    }
    c.threshold(
        "stale-after",
        "OPS_DB_DUMP_STALE_MIN",
        60,
        d.stale_after.as_ref(),
        DUMP_STALE,
    );
    c.threshold(
        "fail-after",
        "OPS_DB_DUMP_FAIL_MIN",
        60,
        d.fail_after.as_ref(),
        DUMP_FAIL,
    );
    if let Some(k) = &d.keep {
        c.plan_setting("keep", k.value.to_string(), k.span);
    }
    if let Some(m) = &d.min_size {
        c.plan_setting("min-size", size::format(m.value), m.span);
    }
    match &d.compression {
        Some(x) => c.plan_setting("compression", x.value.name(), x.span),
        None => c.setting("compression", "gzip", Origin::Default),
    }
    if let Some(e) = &d.encrypt {
        let mut to: Vec<String> = e.recipients.iter().map(|r| r.value.clone()).collect();
        to.extend(
            e.files
                .iter()
                .map(|f| format!("the recipients in {}", f.value)),
        );
        c.plan_setting("encrypt", format!("age, to {}", to.join(", ")), e.span);
    }
    let level = plan_or_default(d.compression_level.as_ref(), default_level(codec(d)));
    c.setting("compression-level", level.value.to_string(), level.origin);
    let rules = drop_rules(d);
    let row_drop = match rules.fail {
        Some(f) => format!("warn={}% fail={f}%", rules.warn),
        None => format!("warn={}%", rules.warn),
    };
    match d.row_drop_warn.as_ref().or(d.row_drop_fail.as_ref()) {
        Some(s) => c.plan_setting("row-drop", row_drop, s.span),
        None => c.setting("row-drop", row_drop, Origin::Default),
    }
    let min = plan_or_default(d.min_rows.as_ref(), rules.min_rows);
    c.setting("min-rows", min.value.to_string(), min.origin);
    for (key, list) in [
        ("allow-drop", &d.allow_drop),
        ("expect-tables", &d.expect_tables),
    ] {
        if let Some(first) = list.first() {
            let names: Vec<&str> = list.iter().map(|s| s.value.as_str()).collect();
            c.plan_setting(key, names.join(" "), first.span);
        }
    }
}

/// What counts as data gone since the previous dump, from the plan (defaults: a loss of more
/// than half a table's rows, and at least 1000 rows, is a warning).
pub fn drop_rules(d: &Dump) -> DropRules {
    let default = DropRules::default();
    DropRules {
        warn: d.row_drop_warn.as_ref().map_or(default.warn, |w| w.value),
        fail: d.row_drop_fail.as_ref().map(|f| f.value),
        min_rows: d.min_rows.as_ref().map_or(default.min_rows, |m| m.value),
        allow: d.allow_drop.iter().map(|a| a.value.clone()).collect(),
    }
}

/// Checks a `dump` block on its own (references to its plan's databases and steps).
pub fn validate(d: &Dump, name: &Spanned<String>, scope: &Scope, diags: &mut Vec<Diagnostic>) {
    if let Some(l) = &d.compression_level
        && codec(d) == Codec::Gzip
        && l.value > 9
    {
        diags.push(
            Diagnostic::error(
                l.span,
                format!("gzip has levels 1 to 9, not {}", l.value),
                "level",
            )
            .with_help("zstd takes 1 to 19: `compression \"zstd\"`"),
        );
    }
    if let Some(long) = &d.zstd_long
        && codec(d) != Codec::Zstd
    {
        diags.push(Diagnostic::error(
            long.span,
            "`zstd-long` needs `compression \"zstd\"`",
            "gzip has no long window",
        ));
    }
    match &d.database {
        None => diags.push(
            Diagnostic::error(
                name.span,
                format!("dump `{}` needs `database`", name.value),
                "database missing",
            )
            .with_help("name one of this plan's `database` blocks: `database main`"),
        ),
        Some(r) if !scope.databases.contains(&r.value.as_str()) => diags.push(
            validate::reference_error(r.span, "database", &r.value, &scope.databases),
        ),
        Some(_) => {}
    }
    validate::fail_after_stale(&d.stale_after, &d.fail_after, diags);
    if let (Some(w), Some(f)) = (&d.row_drop_warn, &d.row_drop_fail)
        && f.value < w.value
    {
        diags.push(
            Diagnostic::error(
                f.span,
                "`row-drop fail=` must not be below `warn=`",
                "below warn",
            )
            .with_related(w.span, "warn"),
        );
    }
    if let Some(g) = d.globals.as_ref().filter(|g| g.value) {
        let engine = scope
            .plan
            .databases
            .iter()
            .find(|db| Some(&db.name.value) == d.database.as_ref().map(|n| &n.value))
            .and_then(|db| db.engine.as_ref().map(|e| e.value));
        if let Some(e @ (Engine::Sqlite | Engine::Mysql)) = engine {
            diags.push(
                Diagnostic::error(
                    g.span,
                    format!(
                        "`globals` is for PostgreSQL and MariaDB servers, not {}",
                        e.name()
                    ),
                    "no roles to dump",
                )
                .with_help("remove `globals`"),
            );
        }
    }
}

struct Written {
    /// SHA-256 and length of the file (encrypted, when it is).
    sha256: String,
    compressed: u64,
    encryption: Option<manifest::Encryption>,
    uncompressed: u64,
    stderr: String,
    /// Rows per table of what was written (counted from the read-back, or by SQLite's dump).
    tables: Tables,
}

struct Failed {
    reason: String,
    stderr: String,
}

fn fail(reason: impl Into<String>) -> Failed {
    Failed {
        reason: reason.into(),
        stderr: String::new(),
    }
}

/// This dump step's folder: `db/`, or `db/<step>/` when the plan has several dumps.
pub fn db_dir(ctx: &Context) -> PathBuf {
    ctx.plan.dir(ctx.step.name(), Area::Dumps)
}

fn database<'a>(ctx: &Context<'a>, d: &Dump) -> Result<&'a Database, StepError> {
    ctx.database(d.database.as_ref().map_or("", |n| n.value.as_str()))
}

fn source(ctx: &Context, db: &Database) -> Result<DumpSource, StepError> {
    Ok(engines::dump_source(&ctx.target(db)?, &ctx.plan.tools)?)
}

/// `--dry-run`: the tool's argv (the password is in a file, never here), the final name, and
/// what retention would delete now.
pub fn preview(ctx: &Context, d: &Dump) -> Result<String, StepError> {
    let db = database(ctx, d)?;
    let dir = db_dir(ctx);
    let now = ctx.clock.now();
    let name = layout::stamp_name("full", now, ctx.plan.timezone.value);
    let mut out = match source(ctx, db)? {
        DumpSource::Process { spec, .. } => spec.display(ctx.redactor),
        DumpSource::Sqlite { path } => format!("(built in) sqlite dump of {}", path.display()),
    };
    let ext = form(d).ext();
    // Encrypted: the age step between the compression and the file.
    let age = match &d.encrypt {
        Some(e) => {
            let mut to: Vec<String> = e
                .recipients
                .iter()
                .map(|r| format!(" -r {}", r.value))
                .collect();
            to.extend(
                e.files
                    .iter()
                    .map(|f| format!(" -R {}", exec::shell_quote(&f.value))),
            );
            format!(" | age{}", to.concat())
        }
        None => String::new(),
    };
    out.push_str(&match codec(d) {
        Codec::Gzip => format!(
            " | gzip -{}{age} > {}/{name}.{ext}",
            level(d),
            dir.display()
        ),
        Codec::Zstd => format!(
            " | zstd -{} -T0{}{age} > {}/{name}.{ext}",
            level(d),
            if long(d) { " --long=27" } else { "" },
            dir.display()
        ),
    });
    if let Some(keep) = &d.keep {
        let upcoming = DumpFile {
            path: dir.join(format!("{name}.{ext}")),
            name: format!("{name}.{ext}"),
            taken: now,
            seq: u32::MAX,
        };
        let sel = super::prune::plan(
            &dir,
            &keep.value,
            ctx.plan.timezone.value,
            &history(ctx)?,
            Some(upcoming),
        );
        if sel.delete.is_empty() {
            out.push_str(&format!(
                "\n       retention ({}): nothing to delete yet",
                keep.value
            ));
        } else {
            out.push_str(&format!(
                "\n       retention ({}) would delete after a good dump:",
                keep.value
            ));
            for p in &sel.delete {
                out.push_str(&format!("\n         {}", p.display()));
            }
        }
    }
    Ok(out)
}

/// Removes what a killed `restore db` of this step left: the folder it fetched a dump from
/// a copy into, the database or file it was loading under a temporary name.
pub fn sweep(ctx: &Context) -> Vec<String> {
    let whose = format!("a restore of {}", ctx.step.id);
    let mut said = super::restic::sweep_fetched(ctx, &whose);
    said.extend(super::scratch::sweep_announced(
        ctx,
        &ctx.plan.dir(ctx.step.name(), Area::VerifyLogs),
        // The folder may be a verify's too: its scratch databases are its own to sweep.
        |name| !name.starts_with("ops_verify_"),
        &whose,
    ));
    said
}

/// The dump's compression: gzip unless the plan says zstd.
/// The dump's file form: its compression, encrypted or not.
pub fn form(d: &Dump) -> Form {
    Form {
        codec: codec(d),
        sealed: d.encrypt.is_some(),
    }
}

/// The recipients of an encrypted dump (its recipients files read now).
fn recipients(e: &Encrypt) -> Result<Vec<age::x25519::Recipient>, Failed> {
    e.resolve().map_err(fail)
}

pub fn codec(d: &Dump) -> Codec {
    d.codec()
}

fn default_level(codec: Codec) -> u32 {
    match codec {
        Codec::Gzip => 6,
        Codec::Zstd => 3,
    }
}

fn long(d: &Dump) -> bool {
    d.zstd_long.as_ref().is_some_and(|l| l.value)
}

fn level(d: &Dump) -> u32 {
    d.compression_level
        .as_ref()
        .map_or(default_level(codec(d)), |l| l.value)
}

/// What retention must know from the log: the dumps of this step that its verify steps
/// restored last (never deleted) and when each dump was made (the order that counts).
fn history(ctx: &Context) -> Result<super::prune::History, StepError> {
    let Some(state) = ctx.state else {
        return Ok(Default::default());
    };
    let me = ctx.step.name();
    let plan = &ctx.plan.decl.name.value;
    let verifies: Vec<&str> = ctx
        .plan
        .steps_where(
            |k| matches!(k, StepKind::Verify(v) if v.dump.as_ref().is_some_and(|d| d.value == me)),
        )
        .map(|s| s.name.value.as_str())
        .collect();
    let store = crate::store::Store::open_read_only(state)
        .map_err(|e| format!("cannot read the activity log: {e}"))?;
    let Some(store) = store else {
        return Ok(Default::default());
    };
    let protected = store
        .newest_verified_dumps(plan, &verifies)
        .map_err(|e| format!("cannot read which dump was verified last: {e}"))?;
    let recorded = store
        .artifact_times(plan, me)
        .map_err(|e| format!("cannot read when the dumps were made: {e}"))?
        .into_iter()
        .filter_map(|(path, at)| Some((PathBuf::from(path), crate::clock::parse_stamp(&at)?)))
        .collect();
    Ok(super::prune::History {
        protected,
        recorded,
        just_made: None,
    })
}

pub fn execute(ctx: &Context, d: &Dump) -> Outcome {
    let started = Instant::now();
    let db = match database(ctx, d) {
        Ok(db) => db,
        Err(e) => return Outcome::failed(e),
    };
    let source = match source(ctx, db) {
        Ok(s) => s,
        Err(e) => return Outcome::failed(ctx.redactor.redact(&e.to_string())),
    };
    let dir = db_dir(ctx);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return Outcome::failed(format!("cannot create {}: {e}", dir.display()));
    }
    let orphans = layout::remove_orphans(&dir);
    let tz = ctx.plan.timezone.value;
    let stem = layout::stamp_name("full", ctx.clock.now(), tz);
    let tmp = layout::temp_path(&dir.join(format!("{stem}.{}", form(d).ext())));
    let tool_version = match &source {
        DumpSource::Process { version, .. } => {
            let r = exec::run(version, ctx.redactor);
            r.tail.lines().next().unwrap_or_default().to_string()
        }
        DumpSource::Sqlite { .. } => format!(
            "ops-run {} (SQLite {})",
            env!("CARGO_PKG_VERSION"),
            rusqlite::version()
        ),
    };

    let began = ctx.clock.now();
    let rows = db
        .engine
        .as_ref()
        .and_then(|e| engines::server(e.value))
        .map(|s| s.rows());
    let result = write(ctx, d, &source, &tmp, rows).and_then(|w| {
        check_sizes(d, &dir, tz, w.compressed)?;
        let mut m = Manifest {
            format: manifest::FORMAT,
            file: String::new(),
            sha256: w.sha256.clone(),
            bytes: w.compressed,
            uncompressed_bytes: w.uncompressed,
            engine: engines::engine_name(db).to_string(),
            tool_version: tool_version.clone(),
            started_at: crate::clock::stamp(began),
            finished_at: crate::clock::stamp(ctx.clock.now()),
            rows: w.tables.values().sum(),
            tables: w.tables.clone(),
            drops: drops(d, &dir, tz, &w.tables),
            encryption: w.encryption.clone(),
        };
        let final_path = publish(&tmp, &dir, &stem, form(d), &used_names(ctx), &mut m)
            .map_err(|e| fail(format!("cannot publish the dump: {e}")))?;
        Ok((w, final_path, m))
    });
    match result {
        Err(f) => {
            let _ = std::fs::remove_file(&tmp);
            let mut log = f.stderr;
            if !log.is_empty() && !log.ends_with('\n') {
                log.push('\n');
            }
            log.push_str(&format!("ops-run: {}; no dump was kept", f.reason));
            Outcome {
                status: Status::Failed,
                meta: json!({ "engine": engines::engine_name(db), "tool_version": tool_version }),
                log_excerpt: ctx.redactor.redact(&log),
                summary: ctx.redactor.redact(&f.reason),
                extra: Vec::new(),
                tolerated: false,
            }
        }
        Ok((w, final_path, m)) => {
            let mut extra = Vec::new();
            // The roles beside the dump: its failure fails the step (the dump itself is kept).
            let globals = match d.globals.as_ref().is_some_and(|g| g.value) {
                true => Some(write_globals(ctx, d, db, &final_path)),
                false => None,
            };
            if let Some(keep) = &d.keep {
                // The dump just made is not in the log yet: it is the newest.
                let history = history(ctx).map(|mut h| {
                    h.recorded.insert(final_path.clone(), ctx.clock.now());
                    h.just_made = Some(final_path.clone());
                    h
                });
                extra.push(super::prune::run(&dir, &keep.value, tz, history));
            }
            let globals_error = globals
                .as_ref()
                .and_then(|g| g.as_ref().err())
                .map(|e| e.to_string());
            // Data gone since the previous dump: the dump is kept (it is what the database
            // holds now), and says so by name.
            let gone: Vec<String> = m.drops.iter().map(RowDrop::describe).collect();
            let mut log = w.stderr.clone();
            if let Some(e) = &globals_error {
                log.push_str(&format!("ops-run: {e}\n"));
            }
            for g in &gone {
                log.push_str(&format!("ops-run: data gone: {g}\n"));
            }
            Outcome {
                status: if globals_error.is_some() {
                    Status::Failed
                } else if !gone.is_empty() {
                    Status::Incomplete
                } else {
                    Status::Success
                },
                meta: json!({
                    "artifact": final_path.display().to_string(),
                    "size": w.compressed,
                    "uncompressed_bytes": w.uncompressed,
                    "sha256": w.sha256,
                    "duration_ms": started.elapsed().as_millis() as u64,
                    "engine": engines::engine_name(db),
                    "tool_version": tool_version,
                    "orphans_removed": orphans.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
                    "globals": globals.as_ref().and_then(|g| g.as_ref().ok()).map(|p| p.display().to_string()),
                    "manifest": manifest::path(&final_path).display().to_string(),
                    "tables": m.tables.len(),
                    "rows": m.rows,
                    "drops": m.drops,
                }),
                log_excerpt: ctx.redactor.redact(&log),
                summary: match &globals_error {
                    Some(e) => ctx.redactor.redact(&e.to_string()),
                    None if !gone.is_empty() => ctx.redactor.redact(&format!(
                        "{}: data gone since the previous dump: {}",
                        final_path.display(),
                        gone.join("; ")
                    )),
                    None => format!(
                        "{} ({}, sha256 {})",
                        final_path.display(),
                        size::format(w.compressed),
                        &w.sha256[..12]
                    ),
                },
                extra,
                // A warning is said by health and the alert; the verify after it still runs.
                // A failure (`row-drop fail=`, `expect-tables`) fails the apply as well.
                tolerated: globals_error.is_none()
                    && !m.drops.is_empty()
                    && m.drops.iter().all(|x| x.severity != "fail"),
            }
        }
    }
}

pub use crate::artifact::layout::globals_path;

/// Dumps the server's roles beside the dump `dump` (same stamp, `globals-` prefix), with its
/// sidecar; never a half-written file under the final name.
fn write_globals(
    ctx: &Context,
    d: &Dump,
    db: &Database,
    dump: &Path,
) -> Result<PathBuf, StepError> {
    let engine = db.engine.as_ref().map(|e| e.value).ok_or("no engine")?;
    let server = engines::server(engine).ok_or_else(|| {
        format!(
            "{} has no roles to dump: `globals` is for database servers",
            engine.name()
        )
    })?;
    let role_passwords = d.role_passwords.as_ref().is_some_and(|r| r.value);
    let (mut spec, _secret) = server.globals(&ctx.target(db)?, &ctx.plan.tools, role_passwords)?;
    spec.timeout = Some(ctx.step.timeout.value);
    let mut sql = Vec::new();
    let (r, write_error) = exec::run_streaming(&spec, ctx.redactor, &mut |chunk| {
        sql.extend_from_slice(chunk);
        Ok(())
    });
    if let Some(e) = write_error {
        return Err(format!("cannot read the roles: {e}").into());
    }
    if let Some(why) = r.exit.reason(&spec.program) {
        return Err(format!(
            "the roles (globals) could not be dumped: {why}\n{}",
            r.tail.trim()
        )
        .into());
    }
    let text = server.clean_globals(String::from_utf8_lossy(&sql).into_owned(), role_passwords);
    let path = globals_path(dump).ok_or("the dump has no standard name")?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes())
        .map_err(|e| format!("cannot compress the roles: {e}"))?;
    let mut bytes = gz
        .finish()
        .map_err(|e| format!("cannot compress the roles: {e}"))?;
    // Encrypted with the dump (`globals-….sql.gz.age`): role names and password hashes are
    // no more for the backup host to read than the data.
    if let Some(e) = &d.encrypt {
        let to = recipients(e).map_err(|f| f.reason)?;
        let mut w =
            seal::seal(Vec::new(), &to).map_err(|e| format!("cannot encrypt the roles: {e}"))?;
        w.write_all(&bytes)
            .map_err(|e| format!("cannot encrypt the roles: {e}"))?;
        bytes = w
            .finish()
            .map_err(|e| format!("cannot encrypt the roles: {e}"))?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sha256 = sha::hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    // The file first, then its sidecar: without the sidecar it does not count.
    layout::write_atomic(&path, &bytes)
        .and_then(|()| {
            layout::write_atomic(
                &layout::sidecar_path(&path),
                sha::sidecar_line(&sha256, &name).as_bytes(),
            )
        })
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// Streams the dump into `tmp`: tool → end-marker check → compressor → file, read back
/// beside the write (SHA-256, decompression, length and CRC-32 against the input, and the
/// rows per table counted by `rows`, the engine's counter).
fn write(
    ctx: &Context,
    d: &Dump,
    source: &DumpSource,
    tmp: &Path,
    rows: Option<Box<dyn crate::artifact::proof::Tap>>,
) -> Result<Written, Failed> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(tmp)
        .map_err(|e| fail(format!("cannot create {}: {e}", tmp.display())))?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let to = d.encrypt.as_ref().map(recipients).transpose()?;
    // The read-back follows the file while it is written (see artifact::proof); an encrypted
    // file cannot be read back here, so the proof reads the compressed stream before the
    // encryption, and the encrypted bytes are hashed as they go and read back after.
    let (proof, published) = match &to {
        None => Proof::start(tmp, codec(d), Sink::Plain(file), rows),
        Some(to) => seal::seal(sha::Hashing::new(file), to)
            .and_then(|w| Proof::start_queued(codec(d), Sink::Sealed(w), rows)),
    }
    .map_err(|e| fail(format!("cannot re-read the dump: {e}")))?;
    let mut gz = Compressor::new(BufWriter::with_capacity(1 << 20, published), d, threads)
        .map_err(|e| fail(format!("cannot write the dump: {e}")))?;
    let mut end = StreamEnd::default();
    let mut counted = None;
    let (stderr, marker) = match source {
        DumpSource::Process { spec, marker, .. } => {
            let mut spec = spec.clone();
            spec.timeout = Some(ctx.step.timeout.value);
            let (result, write_error) = exec::run_streaming(&spec, ctx.redactor, &mut |chunk| {
                end.push(chunk);
                gz.write_all(chunk)
            });
            if let Some(e) = write_error {
                return Err(Failed {
                    reason: format!("cannot write the dump: {e}"),
                    stderr: result.tail,
                });
            }
            let why = result.exit.reason(&spec.program);
            if let Some(reason) = why {
                return Err(Failed {
                    reason,
                    stderr: result.tail,
                });
            }
            (result.tail, *marker)
        }
        DumpSource::Sqlite { path } => {
            let deadline = Instant::now() + crate::exec::escape::remaining(ctx.step.timeout.value);
            let check = || {
                if crate::exec::signals::interrupted() {
                    Err(engines::EngineError::Stopped(
                        "interrupted: ops-run was stopped (SIGINT/SIGTERM)".to_string(),
                    ))
                } else if Instant::now() > deadline {
                    Err(engines::EngineError::Stopped(format!(
                        "timed out after {}",
                        crate::units::duration::format(ctx.step.timeout.value)
                    )))
                } else {
                    Ok(())
                }
            };
            let mut tee = TeeEnd {
                end: &mut end,
                inner: &mut gz,
            };
            counted = Some(engines::sqlite::dump(path, &mut tee, &check).map_err(fail)?);
            (String::new(), engines::sqlite::MARKER)
        }
    };
    if !end.contains(marker) {
        return Err(Failed {
            reason: format!(
                "the dump does not end with the completion line `{marker}`: it is incomplete"
            ),
            stderr,
        });
    }
    let uncompressed = gz.total_in();
    let crc = gz.crc();
    let published = gz
        .finish()
        .map_err(|e| fail(format!("cannot write the dump: {e}")))?
        .into_inner()
        .map_err(|e| fail(format!("cannot write the dump: {}", e.error())))?;
    let compressed = published.written();
    let sealed = published
        .into_inner()
        .finish()
        .map_err(|e| fail(format!("cannot write the dump: {e}")))?;
    let read_back = proof
        .finish()
        .map_err(|e| fail(format!("the written dump does not decompress: {e}")))?;
    read_back
        .confirms(compressed, uncompressed, crc)
        .map_err(fail)?;
    let (sha256, bytes, encryption) = match sealed {
        None => (read_back.sha256, compressed, None),
        Some((bytes, sha256)) => {
            // The encrypted file as it is on disk must be the bytes the encryption gave.
            let on_disk =
                sha::file_sha256(tmp).map_err(|e| fail(format!("cannot re-read the dump: {e}")))?;
            if on_disk != sha256 {
                return Err(fail(format!(
                    "the encrypted dump on disk (sha256 {on_disk}) is not what was written ({sha256})"
                )));
            }
            let encryption = manifest::Encryption {
                format: "age".into(),
                recipients: to.iter().flatten().map(|r| r.to_string()).collect(),
                plaintext_sha256: read_back.sha256,
                plaintext_bytes: compressed,
            };
            (sha256, bytes, Some(encryption))
        }
    };
    Ok(Written {
        sha256,
        compressed: bytes,
        encryption,
        uncompressed,
        stderr,
        tables: counted.or(read_back.tables).unwrap_or_default(),
    })
}

/// Where the compressed stream goes: the file, or age encryption into it.
enum Sink {
    Plain(std::fs::File),
    Sealed(age::stream::StreamWriter<sha::Hashing<std::fs::File>>),
}

impl Sink {
    /// Ends the stream (the encryption's last chunk) and syncs the file; for an encrypted
    /// one, the bytes written to the file and their SHA-256.
    fn finish(self) -> std::io::Result<Option<(u64, String)>> {
        match self {
            Sink::Plain(f) => f.sync_all().map(|()| None),
            Sink::Sealed(w) => {
                let (file, n, sha256) = w.finish()?.into_parts();
                file.sync_all()?;
                Ok(Some((n, sha256)))
            }
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(f) => f.write(buf),
            Sink::Sealed(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(f) => f.flush(),
            Sink::Sealed(w) => w.flush(),
        }
    }
}

/// Writes through parallel gzip or multi-threaded zstd, counting what goes in.
enum Compressor<W: Write> {
    Gzip(ParallelGzip<W>),
    /// The encoder, the bytes taken in and their CRC-32.
    Zstd(
        zstd::stream::write::Encoder<'static, W>,
        u64,
        crc32fast::Hasher,
    ),
}

impl<W: Write> Compressor<W> {
    fn new(inner: W, d: &Dump, threads: usize) -> std::io::Result<Compressor<W>> {
        Ok(match codec(d) {
            Codec::Gzip => Compressor::Gzip(ParallelGzip::new(inner, level(d), threads)?),
            Codec::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(inner, level(d) as i32)?;
                e.multithread(threads as u32)?;
                // The frame checksum: a damaged block fails the decompression itself.
                e.include_checksum(true)?;
                // Jobs of 2 MiB keep both cores busy and the buffers in flight small: memory
                // does not grow with the database.
                e.set_parameter(zstd::zstd_safe::CParameter::JobSize(2 << 20))?;
                if long(d) {
                    e.long_distance_matching(true)?;
                    e.window_log(27)?;
                }
                Compressor::Zstd(e, 0, crc32fast::Hasher::new())
            }
        })
    }

    fn total_in(&self) -> u64 {
        match self {
            Compressor::Gzip(g) => g.total_in(),
            Compressor::Zstd(_, n, _) => *n,
        }
    }

    /// CRC-32 of what was taken in.
    fn crc(&self) -> u32 {
        match self {
            Compressor::Gzip(g) => g.crc(),
            Compressor::Zstd(_, _, crc) => crc.clone().finalize(),
        }
    }

    fn finish(self) -> std::io::Result<W> {
        match self {
            Compressor::Gzip(g) => g.finish(),
            Compressor::Zstd(e, _, _) => e.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Compressor::Gzip(g) => g.write(buf),
            Compressor::Zstd(e, n, crc) => {
                let w = e.write(buf)?;
                *n += w as u64;
                crc.update(&buf[..w]);
                Ok(w)
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Compressor::Gzip(g) => g.flush(),
            Compressor::Zstd(e, _, _) => e.flush(),
        }
    }
}

/// The tables that lost rows since the previous good dump (`drop_rules`), and the tables of
/// `expect-tables` this dump lacks (failures). The previous dump is the newest good one whose
/// own drops were no failure: a failure stays until the data is back or the plan allows it; a
/// warning is said once, by the dump that found it.
fn drops(d: &Dump, dir: &Path, tz: chrono_tz::Tz, tables: &Tables) -> Vec<RowDrop> {
    // A sidecar is enough: the manifest says what the dump held when it was made, whatever
    // became of its bytes since, and re-hashing every earlier dump would cost a pass each.
    let baseline = layout::list_dumps(dir, tz)
        .into_iter()
        .filter(layout::has_sidecar)
        .find_map(|f| match manifest::read(&f.path) {
            Ok(Some(m)) if m.drops.iter().any(|x| x.severity == "fail") => None,
            Ok(Some(m)) => Some(Some((f, m))),
            // A dump without a manifest (made before manifests): nothing to compare with.
            _ => Some(None),
        })
        .flatten();
    let mut out = match &baseline {
        Some((f, m)) => manifest::drops(
            &m.tables,
            tables,
            &drop_rules(d),
            &f.name,
            &crate::clock::local_minute(f.taken, tz),
        ),
        None => Vec::new(),
    };
    for e in &d.expect_tables {
        if let Some(x) = out.iter_mut().find(|x| manifest::names(&x.table, &e.value)) {
            x.severity = "fail".into();
        } else if !tables.keys().any(|t| manifest::names(t, &e.value)) {
            out.push(RowDrop {
                table: e.value.clone(),
                before: 0,
                after: None,
                previous: String::new(),
                since: String::new(),
                severity: "fail".into(),
            });
        }
    }
    out
}

fn check_sizes(d: &Dump, dir: &Path, tz: chrono_tz::Tz, compressed: u64) -> Result<(), Failed> {
    if let Some(min) = &d.min_size
        && compressed < min.value
    {
        return Err(fail(format!(
            "the dump is {}, smaller than min-size {}",
            size::format(compressed),
            size::format(min.value)
        )));
    }
    if let Some(shrink) = &d.max_shrink {
        let previous = layout::list_dumps(dir, tz)
            .into_iter()
            .find(|f: &DumpFile| layout::is_good(f));
        if let Some(prev) = previous {
            let prev_size = std::fs::metadata(&prev.path).map_or(0, |m| m.len());
            let floor = prev_size as f64 * (1.0 - shrink.value / 100.0);
            if (compressed as f64) < floor {
                return Err(fail(format!(
                    "the dump is {}, more than {}% smaller than the previous good dump {} ({})",
                    size::format(compressed),
                    shrink.value,
                    prev.name,
                    size::format(prev_size)
                )));
            }
        }
    }
    Ok(())
}

/// The names of every dump this step ever made, as the log recorded them: a name is never
/// given twice, even after its dump was deleted (an offsite copy or an operator may still
/// know a dump by it). Nothing when the log cannot be read (the folder still decides).
fn used_names(ctx: &Context) -> Vec<String> {
    let Some(Ok(Some(store))) = ctx.state.map(crate::store::Store::open_read_only) else {
        return Vec::new();
    };
    store
        .artifact_times(&ctx.plan.decl.name.value, ctx.step.name())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(path, _)| {
            Path::new(&path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .collect()
}

/// Final name (claimed: never another's, never one used before), then the manifest and the
/// sidecar (each atomically; the sidecar last: with it the dump counts as good), then the
/// directory entry made durable.
fn publish(
    tmp: &Path,
    dir: &Path,
    stem: &str,
    form: Form,
    used: &[String],
    m: &mut Manifest,
) -> std::io::Result<PathBuf> {
    // The other forms' dumps of this minute count as taken names (a zstd dump never
    // shares its time and counter with a gzip one), and so do the names already used.
    let on_disk = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned());
    let taken: Vec<PathBuf> = on_disk
        .chain(used.iter().cloned())
        .filter_map(|n| {
            Form::ALL
                .iter()
                .filter(|c| **c != form || used.contains(&n))
                .find_map(|c| n.strip_suffix(c.suffix()))
                .filter(|base| base.starts_with(stem))
                .map(|base| dir.join(format!("{base}.{}", form.ext())))
        })
        .collect();
    let final_path = &layout::claim_besides(tmp, dir, stem, form.ext(), &taken)?;
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sidecar = layout::sidecar_path(final_path);
    m.file = name.clone();
    let written = manifest::write(final_path, m).and_then(|()| {
        layout::write_atomic(&sidecar, sha::sidecar_line(&m.sha256, &name).as_bytes())
    });
    if let Err(e) = written {
        // Without its sidecar the dump would not count as good: take it back.
        let _ = std::fs::remove_file(manifest::path(final_path));
        let _ = std::fs::rename(final_path, tmp);
        return Err(e);
    }
    layout::fsync_dir(dir)?;
    Ok(final_path.clone())
}
