//! Gathers what health needs for each step: the newest good artifact on disk (the file is the
//! truth, whatever the store remembers) and the newest runs from the activity log.

use chrono::{DateTime, Utc};

use crate::activity::ActivityType;
use crate::artifact::layout::{self, Area};
use crate::clock::parse_stamp;
use crate::health::{self, Check, CheckKind, Facts, Run, Thresholds};
use crate::plan::compile::{Compiled, CompiledStep};
use crate::plan::model::{IncompletePolicy, StepKind};
use crate::store::Store;
use crate::store::meta::CopyMeta;

fn kind_of(step: &CompiledStep) -> Option<CheckKind> {
    match step.decl.kind {
        StepKind::Dump(_) => Some(CheckKind::Dump),
        StepKind::Snapshot(_) => Some(CheckKind::Snapshot),
        StepKind::Verify(_) => Some(CheckKind::Verify),
        StepKind::Drill(_) => Some(CheckKind::Drill),
        StepKind::Copy(_) => Some(CheckKind::Copy),
        StepKind::Check(_) => Some(CheckKind::RepoCheck),
        StepKind::BaseBackup(_) => Some(CheckKind::BaseBackup),
        StepKind::Wal(_) => Some(CheckKind::Wal),
        StepKind::Report(_) | StepKind::GitTag(_) | StepKind::Command(_) | StepKind::Runbook(_) => {
            None
        }
    }
}

fn last_run(
    store: Option<&Store>,
    plan: &str,
    step: &str,
    kind: ActivityType,
) -> rusqlite::Result<(Option<DateTime<Utc>>, Option<Run>)> {
    let Some(store) = store else {
        return Ok((None, None));
    };
    let (success, last) = store.last_runs(plan, step, kind)?;
    Ok((
        success.as_deref().and_then(parse_stamp),
        last.and_then(|f| {
            parse_stamp(&f.at).map(|at| Run {
                at,
                status: f.status,
                excerpt: f.log_excerpt,
            })
        }),
    ))
}

/// One check per dump, snapshot and verify step, in graph order. `store` may be absent (no
/// state database yet): then only the files speak.
pub fn checks(
    compiled: &Compiled,
    store: Option<&Store>,
    now: DateTime<Utc>,
) -> rusqlite::Result<Vec<Check>> {
    let mut out = Vec::new();
    for &i in &compiled.order {
        let step = &compiled.steps[i];
        let Some(kind) = kind_of(step) else { continue };
        let plan = &compiled.plans[step.plan];
        let plan_name = &plan.decl.name.value;
        let tz = plan.timezone.value;
        let (last_success, last_attempt) = last_run(
            store,
            plan_name,
            step.name(),
            step.decl.kind.activity_type(),
        )?;
        // Files dated after now are never evidence (`future` names the newest such one).
        let files = match kind {
            CheckKind::Dump => Some((Area::Dumps, "full-", ".sql.gz")),
            CheckKind::Snapshot => Some((Area::Snapshots, "snapshot-", ".txt")),
            CheckKind::BaseBackup => Some((
                Area::Base,
                crate::artifact::base::PREFIX,
                crate::artifact::base::SUFFIX,
            )),
            CheckKind::Wal
            | CheckKind::Verify
            | CheckKind::Drill
            | CheckKind::Copy
            | CheckKind::RepoCheck
            | CheckKind::Apply
            | CheckKind::Plans => None,
        };
        let (artifact, future) = files.map_or((None, None), |(area, prefix, suffix)| {
            // A dump counts with a sidecar naming it; a snapshot marker is its own proof.
            let good = |d: &layout::DumpFile| area == Area::Snapshots || layout::has_sidecar(d);
            let dir = plan.dir(step.name(), area);
            // Dumps of either compression: a plan that switched keeps its history.
            let (good, future) = match area {
                Area::Dumps => layout::newest_dump(&dir, tz, now, good),
                // Plain and encrypted bases alike: a plan that turned encryption on keeps its
                // history.
                Area::Base => {
                    let (g1, f1) = layout::newest_stamped(&dir, prefix, suffix, tz, now, good);
                    let sealed = crate::artifact::base::SEALED_SUFFIX;
                    let (g2, f2) = layout::newest_stamped(&dir, prefix, sealed, tz, now, good);
                    let newer =
                        |a: Option<layout::DumpFile>, b: Option<layout::DumpFile>| match (a, b) {
                            (Some(a), Some(b)) if (b.taken, b.seq) > (a.taken, a.seq) => Some(b),
                            (a, b) => a.or(b),
                        };
                    (newer(g1, g2), newer(f1, f2))
                }
                _ => layout::newest_stamped(&dir, prefix, suffix, tz, now, good),
            };
            (good, future.map(|d| d.name))
        });
        // A copy's artifact is the newest dump at the destination, as its newest successful
        // run found it there (the destination is asked on every run, not on every view).
        let copied = match (kind, store) {
            (CheckKind::Copy, Some(store)) => store
                .newest_success_meta(plan_name, step.name(), ActivityType::OffsiteCopy)?
                .map(|m| CopyMeta::read(&m)),
            _ => None,
        };
        // The WAL's artifact is its newest segment, dated when it was archived.
        let wal = match &step.decl.kind {
            StepKind::Wal(w) => plan.decl.wal_base(w).map(|b| {
                crate::artifact::base::survey(
                    &plan.dir(b, Area::Base),
                    &plan.dir(step.name(), Area::Wal),
                    tz,
                )
            }),
            _ => None,
        };
        let artifact = artifact.or_else(|| {
            let n = wal.as_ref()?.newest.as_ref()?;
            Some(layout::DumpFile {
                path: n.path.clone(),
                name: n.name.clone(),
                taken: DateTime::<Utc>::from(n.modified).min(now),
                seq: 1,
            })
        });
        let artifact = artifact.or_else(|| {
            let c = copied.as_ref()?;
            let at = parse_stamp(c.newest_taken.as_deref()?)?;
            Some(layout::DumpFile {
                path: c.newest.clone()?.into(),
                name: c.newest.clone()?,
                taken: at,
                seq: 1,
            })
        });
        // The newest good dump's manifest (a dump made before manifests has none).
        let manifest = match (kind, &artifact) {
            (CheckKind::Dump, Some(a)) => crate::artifact::manifest::read(&a.path).ok().flatten(),
            _ => None,
        };
        let facts = Facts {
            manifest,
            artifact_size: artifact
                .as_ref()
                .and_then(|a| std::fs::metadata(&a.path).ok())
                .map(|m| m.len()),
            artifact: artifact.map(|a| (a.path.display().to_string(), a.taken)),
            last_success,
            last_attempt,
            future,
            gaps: wal
                .as_ref()
                .and_then(|s| s.gaps.as_ref())
                .filter(|g| !g.missing.is_empty())
                .map(|g| {
                    format!(
                        "{}{}",
                        g.missing.join(", "),
                        if g.count as usize > g.missing.len() {
                            format!(" ({} files in all)", g.count)
                        } else {
                            String::new()
                        }
                    )
                }),
            damaged: match kind {
                CheckKind::Dump => layout::damaged_dump(&plan.dir(step.name(), Area::Dumps), tz),
                _ => None,
            },
        };
        let incomplete_is_crit = match &step.decl.kind {
            StepKind::Snapshot(s) => s
                .incomplete
                .as_ref()
                .is_none_or(|p| p.value == IncompletePolicy::Fail),
            _ => true,
        };
        let thresholds = Thresholds {
            stale_after: step.threshold("stale-after"),
            fail_after: step.threshold("fail-after"),
            overdue_after: step.threshold("overdue-after"),
            incomplete_is_crit,
        };
        let mut check = health::evaluate(
            &step.id,
            plan_name,
            step.name(),
            kind,
            &facts,
            &thresholds,
            now,
        );
        // What moved since the dump before the newest (both with manifests).
        if let (CheckKind::Dump, Some(tables)) = (kind, &check.tables) {
            let dir = plan.dir(step.name(), Area::Dumps);
            // The cached listing and sidecars, as for the newest: health never re-hashes dumps.
            let previous = layout::good_dumps(&dir, tz, now)
                .find(|d| Some(d.path.display().to_string()) != check.artifact)
                .and_then(|d| crate::artifact::manifest::read(&d.path).ok().flatten());
            if let Some(p) = previous {
                check.row_changes = crate::artifact::manifest::movers(&p.tables, tables, 5);
            }
        }
        if let Some(c) = &copied
            && check.state == health::State::Ok
        {
            check.detail = format!(
                "{} at {}{}",
                check.detail,
                c.destination.as_deref().unwrap_or("the destination"),
                match (&c.newest_local, &c.newest) {
                    (Some(local), Some(there)) if local != there =>
                        format!("; {local} is not there yet"),
                    _ => String::new(),
                }
            );
        }
        // Snapshots at the destination retention does not trust: said, never silently kept.
        if let Some(c) = copied.as_ref().filter(|c| !c.suspicious.is_empty()) {
            if check.state == health::State::Ok {
                check.state = health::State::Incomplete;
            }
            check.severity = check.severity.max(health::Severity::Warn);
            check.detail = format!(
                "{}; retention does not trust: {}",
                check.detail,
                c.suspicious.join("; ")
            );
        }
        if let (StepKind::Drill(d), Some(store), health::State::Ok) =
            (&step.decl.kind, store, check.state)
        {
            // What the last drill measured, against its objectives: on the page, in status,
            // the report and alerts.
            if let Some((rto, rpo)) = store.drill_figures(plan_name, step.name())? {
                let against = |measured: f64,
                               objective: &Option<
                    crate::plan::model::Spanned<std::time::Duration>,
                >| {
                    let measured = crate::units::duration::figure(measured);
                    match objective {
                        Some(o) => format!(
                            "{measured} (objective {})",
                            crate::units::duration::format(o.value)
                        ),
                        None => measured,
                    }
                };
                check.detail = format!(
                    "{}; recovery time {}, recovery point {}",
                    check.detail,
                    against(rto, &d.rto),
                    against(rpo, &d.rpo)
                );
            }
        }
        out.push(check);
    }
    out.extend(global_checks(compiled, store, now)?);
    Ok(out)
}

/// The checks of the whole state database: the plans load (they did, to get here), and the
/// dead-man — the newest `plan apply` of any plan against the strictest thresholds.
fn global_checks(
    compiled: &Compiled,
    store: Option<&Store>,
    now: DateTime<Utc>,
) -> rusqlite::Result<Vec<Check>> {
    let names: Vec<&str> = compiled
        .plans
        .iter()
        .map(|p| p.decl.name.value.as_str())
        .collect();
    let last = match store {
        Some(s) => s
            .applies()?
            .into_iter()
            .filter(|(plan, _)| names.contains(&plan.as_str()))
            .filter_map(|(_, at)| parse_stamp(&at))
            .max(),
        None => None,
    };
    let strictest = |pick: fn(&crate::plan::model::Plan) -> Option<std::time::Duration>,
                     default: std::time::Duration| {
        compiled
            .plans
            .iter()
            .filter_map(|p| pick(&p.decl))
            .min()
            .unwrap_or(default)
    };
    let stale = strictest(
        |p| p.apply_stale_after.as_ref().map(|d| d.value),
        health::APPLY_STALE,
    );
    let fail = strictest(
        |p| p.apply_fail_after.as_ref().map(|d| d.value),
        health::APPLY_FAIL,
    );
    let files = compiled
        .plans
        .iter()
        .map(|p| p.decl.name.span.file)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    Ok(vec![
        health::plans_check(None, files),
        health::apply_check(last, stale, fail.max(stale), now),
    ])
}
