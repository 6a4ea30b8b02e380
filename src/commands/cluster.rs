//! `ops-run restore cluster STEP --at TIME --to DATADIR [--port P] [--start]`: point-in-time
//! recovery of a PostgreSQL cluster from a `base-backup` step and its `wal` archive. The newest
//! base backup that finished before TIME is checked against its sidecar and unpacked into an
//! empty DATADIR; the recovery settings (`restore_command` reading the archive with plain
//! `zstd`, `recovery_target_time`, `recovery_target_action 'promote'`) and `recovery.signal`
//! are written. With `--start`, PostgreSQL is started on `--port`, and the restore succeeds
//! only when the server's log says the target was reached and recovery ended. Recorded as a
//! `restore` activity. A restored server archives nothing unless `--archive` (a rehearsal
//! never forks the archive's history).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use crate::activity::ActivityStatus;
use crate::app::App;
use crate::artifact::base;
use crate::artifact::layout::Area;
use crate::error::Failure;
use crate::exec::shell_quote;
use crate::plan::compile::{Compiled, CompiledPlan};
use crate::plan::model::StepKind;
use crate::session::StepExecutor;
use crate::steps::cluster::{Listen, Recovery, Started, chown_tree, prepare, server_user, start};

/// What `restore cluster` was asked.
pub struct ClusterArgs<'a> {
    pub step: &'a str,
    /// A copy step: the base and the WAL archive read back from its destination.
    pub from: Option<&'a str>,
    pub at: &'a str,
    pub to: &'a Path,
    pub port: Option<u16>,
    pub start: bool,
    pub archive: bool,
    /// The age identity file of an encrypted base and archive.
    pub identity: Option<&'a Path>,
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
    let wal_step = plan.decl.wals_of(&base_name).next();
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
    // From a copy: the base and the WAL archive as the destination holds them; the WAL lands
    // in DATADIR/ops-run-wal (the server's user reads it there), removed once recovery ended.
    let fetched = match a.from {
        None => None,
        Some(copy) => Some(
            crate::steps::cluster::from_copy(&ctx, copy, ctx.step.name(), at)
                .map_err(|e| Failure::Runtime(redactor.redact(&e.to_string())))?,
        ),
    };
    let fetched_wal = a.to.join("ops-run-wal");
    let bases = base::good(&pair.base_dir, tz);
    let (chosen, m, actual, wal_dir) = match &fetched {
        Some(f) => {
            crate::outln!(
                "from: copy `{}`, snapshot {} at its destination",
                a.from.unwrap_or_default(),
                f.snapshot
            );
            let wal = f.wal_dir(&fetched_wal).ok_or_else(|| {
                Failure::Runtime(format!(
                    "copy `{}` holds no WAL archive: the base alone restores only to its own end",
                    a.from.unwrap_or_default()
                ))
            })?;
            (&f.base, &f.manifest, f.manifest.sha256.clone(), wal)
        }
        None => {
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
            let (actual, matches) = base::hash_matches(chosen, m).map_err(|e| {
                Failure::Runtime(format!("cannot read {}: {e}", chosen.path.display()))
            })?;
            if !matches {
                return Err(Failure::Runtime(format!(
                    "checksum mismatch: {} is damaged (sha256 {actual}, its sidecar says otherwise); nothing was restored",
                    chosen.name
                )));
            }
            (chosen, m, actual, wal_dir.clone())
        }
    };
    if let Some(at) = at
        && m.finished().is_some_and(|f| f >= at)
    {
        return Err(Failure::Runtime(format!(
            "the newest base before {} finished at {}, after it: no base backup to start from",
            crate::clock::stamp(at),
            m.finished_at
        )));
    }
    crate::outln!(
        "base: {} (finished {}, sha256 {actual}, matches its sidecar)",
        chosen.path.display(),
        m.finished_at
    );
    // An encrypted base (and archive): the identity given, or the plan's verify's or drill's
    // of this base-backup step; refused before anything is written without one.
    // An encrypted base, or a plain one followed by encrypted segments (`encrypt` turned on
    // since): both need the identity, and the archive written back in plain.
    let sealed = base::encrypted(&chosen.path, Some(&wal_dir));
    let key = crate::commands::restore::restore_key(
        &ctx,
        a.identity,
        ctx.step.name(),
        (sealed, &chosen.name),
    )?;
    let plain_wal = a.to.join(crate::steps::cluster::PLAIN_WAL);
    let started_at = app.clock.now();
    let started = Instant::now();
    let recording = crate::commands::restore::Recording::start(app, &ctx, started_at)?;
    let target_words = at.map_or("the end of the archive".to_string(), crate::clock::stamp);
    let result = (|| -> Result<Option<Started>, String> {
        prepare(
            chosen,
            a.to,
            &Recovery {
                restore_command: Some(match sealed {
                    true => crate::steps::cluster::copy_restore_command(&plain_wal),
                    false => crate::steps::cluster::restore_command(
                        &wal_dir,
                        &ctx.plan.decl.name.value,
                        wal_step,
                        ctx.plans,
                    ),
                }),
                at,
                archive: a.archive,
                port: a.port,
                note: &format!("from {} to {target_words}", chosen.name),
                key: key.as_deref(),
            },
        )?;
        if let Some(f) = &fetched {
            f.fetch_wal(&ctx, &fetched_wal)?;
        }
        if let Some(key) = &key {
            let n = crate::artifact::wal::unseal_all(&wal_dir, &plain_wal, key)
                .map_err(|e| e.to_string())?;
            crate::outln!(
                "decrypted {n} archived WAL file(s) into {}",
                plain_wal.display()
            );
        }
        match (a.start, a.port) {
            (true, Some(port)) => start(
                a.to,
                m,
                &Listen {
                    port,
                    tcp: true,
                    // The socket beside the data when the path fits a socket's name.
                    socket: (a.to.as_os_str().len() < 80).then(|| a.to.to_path_buf()),
                },
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
    if matches!(result, Ok(Some(_))) {
        // Recovery has ended: the server reads no more of the fetched or decrypted archive.
        if fetched.is_some() {
            let _ = std::fs::remove_dir_all(&fetched_wal);
        }
        if sealed {
            let _ = std::fs::remove_dir_all(&plain_wal);
        }
    }
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
            if sealed {
                crate::outln!(
                    "the archive's WAL is in {} in plain for the recovery: remove it once the server has recovered",
                    plain_wal.display()
                );
            }
            Ok(())
        }
        Ok(Some(s)) => {
            crate::outln!(
                "recovered to {target_words} in {:.1} s{}",
                duration.as_secs_f64(),
                s.reached
                    .as_ref()
                    .map(|l| format!(": {}", l.trim()))
                    .unwrap_or_default()
            );
            if let Some(t) = s.last_transaction {
                crate::outln!(
                    "the last transaction replayed was committed at {}",
                    crate::clock::stamp(t)
                );
            }
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
