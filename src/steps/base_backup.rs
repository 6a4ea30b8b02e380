//! The `base-backup` step (type `base_backup`): a PostgreSQL cluster's physical copy.
//! `pg_basebackup` writes the data directory (plain format, `-X fetch`, so each base holds the
//! WAL it needs to be consistent, with a SHA-256 backup manifest) into a hidden folder,
//! `pg_verifybackup` checks it against that manifest, and it is stored as one zstd tar with its
//! sidecar and manifest (`base/<step>/base-YYYYmmdd-HHMM.tar.zst`). All or nothing, as a dump:
//! a failure leaves no file with a final name. Retention (`keep`) then prunes bases, and the
//! WAL no kept base needs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kdl::KdlNode;
use serde_json::json;

use super::{Context, Extra, Outcome, Settings, Status, StepError};
use crate::artifact::base::{self, BaseManifest};
use crate::artifact::layout::{self, Area};
use crate::artifact::{sha, wal};
use crate::engines::Server;
use crate::engines::postgres::{self, Postgres};
use crate::exec::{self, ProcessSpec};
use crate::plan::compile::Compiling;
use crate::plan::decode::Decoder;
use crate::plan::diagnostic::Diagnostic;
use crate::plan::model::{BaseBackup, Spanned};
use crate::plan::validate::{self, Scope};
use crate::units::size;

/// A nightly base backup is stale after 26 hours and failed after 50, as a dump.
pub const BASE_STALE: Duration = Duration::from_secs(26 * 3600);
pub const BASE_FAIL: Duration = Duration::from_secs(50 * 3600);

pub const SETTINGS: Settings = Settings {
    keys: &[
        "database",
        "stale-after",
        "fail-after",
        "keep",
        "compression-level",
        "encrypt",
    ],
    repeatable: &[],
};

pub fn decode(b: &mut BaseBackup, key: &str, node: &KdlNode, dec: &mut Decoder) {
    match key {
        "database" => b.database = dec.string(node),
        "stale-after" => b.stale_after = dec.duration(node),
        "fail-after" => b.fail_after = dec.duration(node),
        "keep" => b.keep = dec.keep(node),
        "encrypt" => b.encrypt = dec.encrypt(node),
        "compression-level" => {
            b.compression_level = dec
                .int(node, 1, 19)
                .map(|v| Spanned::new(v.value as u32, v.span))
        }
        _ => {}
    }
}

pub fn compile(b: &BaseBackup, c: &mut Compiling) {
    if let Some(db) = &b.database {
        c.plan_setting("database", db.value.clone(), db.span);
    }
    c.own_threshold("stale-after", b.stale_after.as_ref(), BASE_STALE);
    c.own_threshold("fail-after", b.fail_after.as_ref(), BASE_FAIL);
    if let Some(k) = &b.keep {
        c.plan_setting("keep", k.value.to_string(), k.span);
    }
    let level = crate::plan::compile::plan_or_default(b.compression_level.as_ref(), 3);
    c.setting("compression-level", level.value.to_string(), level.origin);
    if let Some(e) = &b.encrypt {
        c.plan_setting("encrypt", e.describe(), e.span);
    }
}

pub fn validate(
    b: &BaseBackup,
    name: &Spanned<String>,
    scope: &Scope,
    diags: &mut Vec<Diagnostic>,
) {
    validate::postgres_database("base-backup", b.database.as_ref(), name, scope, diags);
    validate::fail_after_stale(&b.stale_after, &b.fail_after, diags);
}

/// `.tar.zst`, or `.tar.zst.age` for an encrypted base.
fn suffix(b: &BaseBackup) -> &'static str {
    match b.encrypt {
        Some(_) => base::SEALED_SUFFIX,
        None => base::SUFFIX,
    }
}

fn level(b: &BaseBackup) -> i32 {
    b.compression_level.as_ref().map_or(3, |l| l.value as i32)
}

/// The `pg_basebackup` of this step into `work`, and the file holding its password.
fn command(
    ctx: &Context,
    b: &BaseBackup,
    work: &Path,
) -> Result<(ProcessSpec, Option<crate::engines::secret_file::SecretFile>), StepError> {
    let db = ctx.database(b.database.as_ref().map_or("", |d| d.value.as_str()))?;
    let target = ctx.target(db)?;
    let login = Postgres.login(&target)?;
    let mut args = login.args;
    match b.encrypt {
        // Encrypted: the tar on stdout, never a plain folder on this disk.
        Some(_) => args.extend(["--pgdata=-".to_string(), "--format=tar".into()]),
        None => args.extend([
            format!("--pgdata={}", work.display()),
            "--format=plain".into(),
            // The tar is fsynced once it is whole; the folder is thrown away.
            "--no-sync".into(),
        ]),
    }
    args.extend([
        "--wal-method=fetch".into(),
        "--manifest-checksums=SHA256".into(),
        "--checkpoint=fast".into(),
    ]);
    let mut spec = ProcessSpec::new(
        postgres::server_tool(&ctx.plan.tools, "pg-basebackup", "pg_basebackup", None),
        args,
    );
    spec.env = login.env;
    spec.timeout = Some(ctx.step.timeout.value);
    Ok((spec, login.secret))
}

pub fn preview(ctx: &Context, b: &BaseBackup) -> Result<String, StepError> {
    let dir = ctx.plan.dir(ctx.step.name(), Area::Base);
    let stem = layout::stamp_name("base", ctx.clock.now(), ctx.plan.timezone.value);
    let (spec, _secret) = command(ctx, b, &base::work_dir(&dir, &stem))?;
    Ok(format!(
        "{} && pg_verifybackup && tar | zstd > {}",
        spec.display(ctx.redactor),
        dir.join(format!("{stem}{}", base::SUFFIX)).display()
    ))
}

/// Removes what a killed run left: a work folder or a temporary tar whose writer is gone.
pub fn sweep(ctx: &Context) -> Vec<String> {
    layout::remove_orphans(&ctx.plan.dir(ctx.step.name(), Area::Base))
        .into_iter()
        .map(|p| {
            format!(
                "removed {} (left by an ops-run that was stopped)",
                p.display()
            )
        })
        .collect()
}

/// What `backup_manifest` and `backup_label` of a plain base say of its WAL.
struct WalRange {
    timeline: u32,
    start_lsn: String,
    end_lsn: String,
    start_wal: String,
    segment_size: u64,
}

fn wal_range(work: &Path) -> Result<WalRange, String> {
    let label = std::fs::read_to_string(work.join("backup_label"))
        .map_err(|e| format!("cannot read backup_label: {e}"))?;
    let manifest: serde_json::Value = std::fs::read(work.join("backup_manifest"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("cannot read backup_manifest")?;
    // The segment size is the size of any segment -X fetch copied into pg_wal.
    let segment_size = std::fs::read_dir(work.join("pg_wal"))
        .map_err(|e| format!("cannot read pg_wal: {e}"))?
        .flatten()
        .filter(|e| wal::parse_name(&e.file_name().to_string_lossy()).is_some())
        .find_map(|e| e.metadata().ok().map(|m| m.len()).filter(|&l| l > 0))
        .ok_or("the base holds no WAL segment (pg_basebackup -X fetch copies them)")?;
    range_of(&label, &manifest, segment_size)
}

fn range_of(
    label: &str,
    manifest: &serde_json::Value,
    segment_size: u64,
) -> Result<WalRange, String> {
    // START WAL LOCATION: 0/2000028 (file 000000010000000000000002)
    let start = label
        .lines()
        .find_map(|l| l.strip_prefix("START WAL LOCATION: "))
        .ok_or("backup_label has no START WAL LOCATION")?;
    let (lsn, file) = start
        .split_once(" (file ")
        .ok_or("backup_label: START WAL LOCATION unreadable")?;
    let start_wal = file.trim_end_matches(')').to_string();
    let timeline = label
        .lines()
        .find_map(|l| l.strip_prefix("START TIMELINE: "))
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(1);
    let end_lsn = manifest["WAL-Ranges"]
        .as_array()
        .and_then(|r| r.last())
        .and_then(|r| r["End-LSN"].as_str())
        .unwrap_or_default()
        .to_string();
    Ok(WalRange {
        timeline,
        start_lsn: lsn.trim().to_string(),
        end_lsn,
        start_wal,
        segment_size,
    })
}

pub fn execute(ctx: &Context, b: &BaseBackup) -> Outcome {
    let started = Instant::now();
    let dir = ctx.plan.dir(ctx.step.name(), Area::Base);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return Outcome::failed(format!("cannot create {}: {e}", dir.display()));
    }
    layout::remove_orphans(&dir);
    let tz = ctx.plan.timezone.value;
    let stem = layout::stamp_name("base", ctx.clock.now(), tz);
    let work = base::work_dir(&dir, &stem);
    let tmp = layout::temp_path(&dir.join(format!("{stem}{}", suffix(b))));
    let began = ctx.clock.now();
    let result = make(ctx, b, &work, &tmp, &dir, &stem, began);
    let _ = std::fs::remove_dir_all(&work);
    match result {
        Err((reason, tail)) => {
            let _ = std::fs::remove_file(&tmp);
            super::fail(ctx, format!("{reason}; no base backup was kept"), &tail)
        }
        Ok((path, m, tail)) => {
            let mut extra = Vec::new();
            if let Some(keep) = &b.keep {
                extra.push(prune(ctx, &dir, &keep.value, tz));
            }
            Outcome {
                status: Status::Success,
                meta: json!({
                    "artifact": path.display().to_string(),
                    "size": m.bytes,
                    "uncompressed_bytes": m.uncompressed_bytes,
                    "sha256": m.sha256,
                    "duration_ms": started.elapsed().as_millis() as u64,
                    "engine": "postgres",
                    "tool_version": m.tool_version,
                    "timeline": m.timeline,
                    "start_lsn": m.start_lsn,
                    "end_lsn": m.end_lsn,
                    "start_wal": m.start_wal,
                    "manifest": crate::artifact::manifest::path(&path).display().to_string(),
                }),
                log_excerpt: ctx.redactor.redact(&tail),
                summary: format!(
                    "{} ({}, sha256 {}, WAL from {})",
                    path.display(),
                    size::format(m.bytes),
                    &m.sha256[..12],
                    m.start_wal
                ),
                extra,
                tolerated: false,
            }
        }
    }
}

type Made = (PathBuf, BaseManifest, String);

fn make(
    ctx: &Context,
    b: &BaseBackup,
    work: &Path,
    tmp: &Path,
    dir: &Path,
    stem: &str,
    began: chrono::DateTime<chrono::Utc>,
) -> Result<Made, (String, String)> {
    let (spec, _secret) = command(ctx, b, work).map_err(|e| (e.to_string(), String::new()))?;
    let version = exec::run(
        &ProcessSpec::new(spec.program.clone(), ["--version"]),
        ctx.redactor,
    );
    let tool_version = version.tail.lines().next().unwrap_or_default().to_string();
    if let Some(e) = &b.encrypt {
        return make_sealed(ctx, b, e, (spec, tool_version), (tmp, dir, stem), began);
    }
    let r = exec::run(&spec, ctx.redactor);
    let mut tail = r.tail.clone();
    if let Some(why) = r.exit.reason("pg_basebackup") {
        return Err((why, tail));
    }
    // The base is consistent from the moment pg_basebackup returned.
    let finished = ctx.clock.now();
    let pg_version = std::fs::read_to_string(work.join("PG_VERSION"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    let verify = ProcessSpec {
        timeout: Some(crate::exec::escape::remaining(ctx.step.timeout.value)),
        ..ProcessSpec::new(
            postgres::server_tool(
                &ctx.plan.tools,
                "pg-verifybackup",
                "pg_verifybackup",
                Some(&pg_version),
            ),
            ["--quiet".to_string(), work.display().to_string()],
        )
    };
    // The check and the tar read the same files at once (the page cache serves the second
    // reader); the tar gets a final name only once the check has passed.
    let (v, packed) = std::thread::scope(|scope| {
        let check = scope.spawn(|| exec::run(&verify, ctx.redactor));
        let packed = base::pack(work, tmp, level(b));
        (check.join(), packed)
    });
    let v = v.map_err(|_| ("pg_verifybackup could not be run".to_string(), tail.clone()))?;
    tail.push_str(&v.tail);
    if let Some(why) = v.exit.reason("pg_verifybackup") {
        return Err((format!("the base backup does not check out: {why}"), tail));
    }
    let range = wal_range(work).map_err(|e| (e, tail.clone()))?;
    let packed =
        packed.map_err(|e| (format!("cannot write {}: {e}", tmp.display()), tail.clone()))?;
    let m = base_manifest(
        packed,
        range,
        (pg_version, tool_version),
        (began, finished),
        Vec::new(),
    );
    publish(m, (tmp, dir, stem), tail)
}

/// An encrypted base: `pg_basebackup` writes the tar to stdout, which goes through zstd and
/// age into the file and, beside it, through a reader that checks it against its own
/// `backup_manifest` (what `pg_verifybackup` does with a plain folder, which would put the
/// data on this disk in plaintext).
fn make_sealed(
    ctx: &Context,
    b: &BaseBackup,
    e: &crate::plan::model::Encrypt,
    (spec, tool_version): (ProcessSpec, String),
    (tmp, dir, stem): (&Path, &Path, &str),
    began: chrono::DateTime<chrono::Utc>,
) -> Result<Made, (String, String)> {
    let to = e.resolve().map_err(|e| (e, String::new()))?;
    let mut pack = base::StreamPack::create(tmp, level(b), &to).map_err(|e| {
        (
            format!("cannot write {}: {e}", tmp.display()),
            String::new(),
        )
    })?;
    let (r, write_error) = exec::run_streaming(&spec, ctx.redactor, &mut |chunk| pack.write(chunk));
    let tail = r.tail.clone();
    if let Some(e) = write_error {
        return Err((format!("cannot write {}: {e}", tmp.display()), tail));
    }
    if let Some(why) = r.exit.reason("pg_basebackup") {
        return Err((why, tail));
    }
    let finished = ctx.clock.now();
    let (packed, streamed) = pack
        .finish()
        .map_err(|e| (format!("cannot write {}: {e}", tmp.display()), tail.clone()))?;
    let label = streamed
        .label
        .clone()
        .ok_or(("the tar holds no backup_label".to_string(), tail.clone()))?;
    let manifest: serde_json::Value = streamed
        .manifest
        .as_ref()
        .and_then(|m| serde_json::from_slice(m).ok())
        .ok_or((
            "the tar holds no readable backup_manifest".to_string(),
            tail.clone(),
        ))?;
    let segment_size = streamed
        .wal
        .iter()
        .map(|(_, n)| *n)
        .find(|&n| n > 0)
        .ok_or((
            "the base holds no WAL segment (pg_basebackup -X fetch copies them)".to_string(),
            tail.clone(),
        ))?;
    let range = range_of(&label, &manifest, segment_size).map_err(|e| (e, tail.clone()))?;
    streamed
        .check(&range.start_wal, &range.end_lsn, range.segment_size)
        .map_err(|e| {
            (
                format!("the base backup does not check out: {e}"),
                tail.clone(),
            )
        })?;
    let m = base_manifest(
        packed,
        range,
        (
            streamed.pg_version.clone().unwrap_or_default(),
            tool_version,
        ),
        (began, finished),
        to.iter().map(|r| r.to_string()).collect(),
    );
    publish(m, (tmp, dir, stem), tail)
}

type Time = chrono::DateTime<chrono::Utc>;

/// A base's manifest: the archive written, its WAL range, the versions, when it started and
/// finished, and its recipients when it is encrypted.
fn base_manifest(
    packed: base::Packed,
    range: WalRange,
    (pg_version, tool_version): (String, String),
    (began, finished): (Time, Time),
    recipients: Vec<String>,
) -> BaseManifest {
    BaseManifest {
        format: 1,
        kind: "base_backup".into(),
        file: String::new(),
        sha256: packed.sha256,
        bytes: packed.bytes,
        uncompressed_bytes: packed.uncompressed,
        pg_version,
        tool_version,
        started_at: crate::clock::stamp(began),
        finished_at: crate::clock::stamp(finished),
        timeline: range.timeline,
        start_lsn: range.start_lsn,
        end_lsn: range.end_lsn,
        start_wal: range.start_wal,
        wal_segment_size: range.segment_size,
        recipients,
    }
}

/// The final name (claimed, never another's), the manifest, then the sidecar.
fn publish(
    mut m: BaseManifest,
    (tmp, dir, stem): (&Path, &Path, &str),
    tail: String,
) -> Result<Made, (String, String)> {
    let ext = match m.recipients.is_empty() {
        true => base::EXT,
        false => base::SEALED_EXT,
    };
    let path = layout::claim(tmp, dir, stem, ext)
        .map_err(|e| (format!("cannot publish the base backup: {e}"), tail.clone()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    m.file = name.clone();
    let written = base::write(&path, &m).and_then(|()| {
        layout::write_atomic(
            &layout::sidecar_path(&path),
            sha::sidecar_line(&m.sha256, &name).as_bytes(),
        )
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(crate::artifact::manifest::path(&path));
        let _ = std::fs::remove_file(&path);
        return Err((format!("cannot write the sidecar: {e}"), tail));
    }
    let _ = layout::fsync_dir(dir);
    Ok((path, m, tail))
}

/// The WAL archives (`wal` steps) that follow this base-backup step.
pub fn wal_dirs(ctx: &Context) -> Vec<PathBuf> {
    let me = ctx.step.name();
    ctx.plan
        .decl
        .wals_of(me)
        .map(|s| ctx.plan.dir(&s.name.value, Area::Wal))
        .collect()
}

/// Retention of base backups (never the newest good one), then of the WAL no kept base needs.
fn prune(ctx: &Context, dir: &Path, keep: &crate::units::keep::Keep, tz: chrono_tz::Tz) -> Extra {
    let started = Instant::now();
    let all = base::list(dir, tz);
    let sel = crate::retention::select(&all, &layout::has_sidecar, keep, tz, &[]);
    let (deleted, mut errors) = super::prune::delete(dir, &sel);
    let mut wal_deleted = 0usize;
    for wal_dir in wal_dirs(ctx) {
        match base::prune_archive(dir, &wal_dir, tz) {
            Ok(n) => wal_deleted += n,
            Err(e) => errors.push(e),
        }
    }
    let summary = format!(
        "pruned {} base backup(s) and {wal_deleted} WAL file(s), kept {} ({keep})",
        deleted.len(),
        sel.keep.len()
    );
    super::prune::report(
        keep,
        &sel,
        deleted,
        errors,
        summary,
        json!({ "wal_deleted": wal_deleted }),
        started,
    )
}
