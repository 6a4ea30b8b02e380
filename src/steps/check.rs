//! The `check` step (`type` `repo_check`): `restic check` of a snapshot step's repository or a
//! copy's destination, optionally reading back part of the data (`read-data-subset "1/7"`,
//! one part per run in turn, or `"5%"`). A failed check is critical; a check not run within
//! `overdue-after` is overdue, as a verify is.

use std::time::{Duration, Instant};

use kdl::KdlNode;
use serde_json::json;

use super::{Context, Outcome, Settings, Status, StepError};
use crate::graph::EdgeKind;
use crate::plan::compile::Compiling;
use crate::plan::decode::Decoder;
use crate::plan::diagnostic::Diagnostic;
use crate::plan::model::{DataSubset, RepoCheck, Spanned, StepKind};
use crate::plan::settings::Origin;
use crate::plan::validate::{self, Scope};

/// A weekly check is overdue after eight days.
pub const CHECK_OVERDUE: Duration = Duration::from_secs(192 * 3600);

pub const SETTINGS: Settings = Settings {
    keys: &["snapshot", "copy", "read-data-subset", "overdue-after"],
    repeatable: &[],
};

fn parse_subset(v: &str) -> Result<DataSubset, String> {
    if let Some(p) = v.strip_suffix('%') {
        return match p.trim().parse::<f64>() {
            Ok(n) if n > 0.0 && n <= 100.0 => Ok(DataSubset::Percent(v.trim().to_string())),
            _ => Err(format!("`{v}` is not a share between 0% and 100%")),
        };
    }
    let (n, m) = v
        .split_once('/')
        .ok_or_else(|| format!("`{v}` is neither `n/M` nor a percentage"))?;
    match (n.trim().parse::<u32>(), m.trim().parse::<u32>()) {
        (Ok(n), Ok(m)) if m >= 1 && (1..=m).contains(&n) && m <= 10_000 => {
            Ok(DataSubset::Rotating(m))
        }
        _ => Err(format!(
            "`{v}`: n/M with 1 ≤ n ≤ M ≤ 10000 (the part read turns on each run)"
        )),
    }
}

pub fn decode(c: &mut RepoCheck, key: &str, node: &KdlNode, dec: &mut Decoder) {
    match key {
        "snapshot" => c.snapshot = dec.string(node),
        "copy" => c.copy = dec.string(node),
        "read-data-subset" => {
            c.read_data_subset = dec.parsed(node, "a part such as \"1/7\" or \"5%\"", parse_subset)
        }
        "overdue-after" => c.overdue_after = dec.duration(node),
        _ => {}
    }
}

fn subset_words(s: &DataSubset) -> String {
    match s {
        DataSubset::Rotating(m) => format!("1/{m} … {m}/{m}, one part per run"),
        DataSubset::Percent(p) => format!("{p} at random"),
    }
}

/// A `check`'s compiled form: after the step whose repository it checks (when both run),
/// its `overdue-after`, and how much data it reads.
pub fn compile(c: &RepoCheck, cc: &mut Compiling) {
    for (key, of) in [("snapshot", &c.snapshot), ("copy", &c.copy)] {
        if let Some(of) = of
            && cc.needs(of, EdgeKind::Order)
        {
            cc.plan_setting(key, of.value.clone(), of.span);
        }
    }
    // `restic check` locks the repository exclusively: a verify or drill reading the same
    // copy, or a drill restoring the same snapshot, goes first instead of failing on the lock.
    let (copy, snapshot) = (c.copy.as_ref(), c.snapshot.as_ref());
    cc.after_all(
        |k| match k {
            StepKind::Verify(v) => v
                .from
                .as_ref()
                .zip(copy)
                .is_some_and(|(f, c)| f.value == c.value),
            StepKind::Drill(d) => {
                d.restore
                    .from
                    .as_ref()
                    .zip(copy)
                    .is_some_and(|(f, c)| f.value == c.value)
                    || d.snapshot
                        .as_ref()
                        .zip(snapshot)
                        .is_some_and(|(s, c)| s.value == c.value)
            }
            _ => false,
        },
        EdgeKind::Order,
    );
    cc.own_threshold("overdue-after", c.overdue_after.as_ref(), CHECK_OVERDUE);
    match &c.read_data_subset {
        Some(s) => cc.plan_setting("read-data-subset", subset_words(&s.value), s.span),
        None => cc.setting("read-data-subset", "none (structure only)", Origin::Default),
    }
}

/// Checks a `check` block on its own: exactly one of `snapshot` and `copy`, naming such a step.
pub fn validate(c: &RepoCheck, name: &Spanned<String>, scope: &Scope, diags: &mut Vec<Diagnostic>) {
    match (&c.snapshot, &c.copy) {
        (None, None) => diags.push(
            Diagnostic::error(
                name.span,
                format!("check `{}` needs one of `snapshot` and `copy`", name.value),
                "which repository?",
            )
            .with_help("name the snapshot step or the copy step whose repository it checks"),
        ),
        (Some(_), Some(second)) => diags.push(
            Diagnostic::error(
                second.span,
                format!(
                    "check `{}` names both a `snapshot` and a `copy`",
                    name.value
                ),
                "a second repository",
            )
            .with_help("one repository per check: add a second `check` step for the other"),
        ),
        _ => {}
    }
    for (what, of, wanted) in [
        ("snapshot step", &c.snapshot, "snapshot"),
        ("copy step", &c.copy, "copy"),
    ] {
        let Some(of) = of else { continue };
        let names: Vec<&str> = scope
            .plan
            .steps
            .iter()
            .filter(|s| s.kind.keyword() == wanted)
            .map(|s| s.name.value.as_str())
            .collect();
        if !names.contains(&of.value.as_str()) {
            diags.push(validate::reference_error(of.span, what, &of.value, &names));
        }
    }
}

/// The repository's restic environment: the snapshot's or the copy's credentials.
fn credentials(ctx: &Context, c: &RepoCheck) -> Result<Vec<(String, String)>, StepError> {
    let name = c
        .snapshot
        .as_ref()
        .or(c.copy.as_ref())
        .map_or("", |n| n.value.as_str());
    let step = ctx
        .plan
        .decl
        .steps
        .iter()
        .find(|s| s.name.value == name)
        .ok_or_else(|| StepError::Failed(format!("no step `{name}`")))?;
    match &step.kind {
        StepKind::Snapshot(s) => super::restic::snapshot_credentials(ctx, s),
        StepKind::Copy(cp) => super::restic::copy_credentials(ctx, cp),
        other => Err(format!("`{name}` is a {} step", other.keyword()).into()),
    }
}

/// `k` of a part `k/M` read under this `M`.
fn part_of(part: &str, m: u32) -> Option<u32> {
    part.split_once('/')
        .filter(|(_, pm)| pm.parse() == Ok(m))
        .and_then(|(k, _)| k.parse::<u32>().ok())
        .filter(|k| (1..=m).contains(k))
}

/// The part this run reads: after `k/M` comes `k+1/M`, after `M/M` comes `1/M` again.
fn next_part(previous: Option<&str>, m: u32) -> u32 {
    previous
        .and_then(|p| part_of(p, m))
        .map_or(1, |k| k % m + 1)
}

/// What the newest finished check read, and whether it failed.
#[derive(Clone, Debug, Default)]
struct Previous {
    subset: Option<String>,
    failed: bool,
}

/// The data this run reads. A failed check is not left behind by reading elsewhere: the part
/// that failed is read again (a random share cannot be read again: then everything is), so
/// the check stays red until the damaged data reads clean.
fn args(c: &RepoCheck, previous: &Previous) -> (Vec<String>, Option<String>) {
    let mut args = vec!["check".to_string()];
    let again = previous
        .failed
        .then_some(previous.subset.as_deref())
        .flatten();
    let subset = c
        .read_data_subset
        .as_ref()
        .map(|s| match (&s.value, again) {
            (_, Some(ALL)) => ALL.to_string(),
            (DataSubset::Rotating(m), Some(part)) if part_of(part, *m).is_some() => {
                part.to_string()
            }
            (DataSubset::Rotating(_), Some(_)) | (DataSubset::Percent(_), Some(_)) => {
                ALL.to_string()
            }
            (DataSubset::Rotating(m), None) => {
                format!("{}/{m}", next_part(previous.subset.as_deref(), *m))
            }
            (DataSubset::Percent(p), None) => p.clone(),
        });
    match subset.as_deref() {
        Some(ALL) => args.push("--read-data".into()),
        Some(s) => args.push(format!("--read-data-subset={s}")),
        None => {}
    }
    (args, subset)
}

/// The subset recorded for a check that read all the data.
const ALL: &str = "all";

/// The newest finished check, from its activity.
fn previous(ctx: &Context) -> Previous {
    let last = (|| {
        let store = crate::store::Store::open_read_only(ctx.state?).ok()??;
        let (_, last) = store
            .last_runs(
                &ctx.plan.decl.name.value,
                ctx.step.name(),
                crate::activity::ActivityType::RepoCheck,
            )
            .ok()?;
        last
    })();
    last.map_or_else(Previous::default, |l| Previous {
        subset: l.meta["subset"].as_str().map(str::to_string),
        failed: l.status != crate::activity::ActivityStatus::Success,
    })
}

pub fn preview(ctx: &Context, c: &RepoCheck) -> Result<String, StepError> {
    let env = credentials(ctx, c)?;
    let (args, _) = args(c, &previous(ctx));
    let mut out = super::restic::restic(ctx, &env, &args).display(ctx.redactor);
    out.push_str("   (RESTIC_REPOSITORY and RESTIC_PASSWORD in its environment)");
    Ok(out)
}

pub fn execute(ctx: &Context, c: &RepoCheck) -> Outcome {
    let started = Instant::now();
    let env = match credentials(ctx, c) {
        Ok(e) => e,
        Err(e) => return Outcome::failed(ctx.redactor.redact(&e.to_string())),
    };
    let (args, subset) = args(c, &previous(ctx));
    let spec = super::restic::restic(ctx, &env, &args);
    let r = crate::exec::run(&spec, ctx.redactor);
    let meta = json!({
        "subset": subset,
        "duration_ms": started.elapsed().as_millis() as u64,
    });
    if !r.success() {
        return Outcome {
            meta,
            ..super::fail(
                ctx,
                format!(
                    "the repository check failed: {}",
                    super::restic::exit_reason("restic", &r.exit)
                ),
                &r.tail,
            )
        };
    }
    Outcome {
        status: Status::Success,
        meta,
        log_excerpt: ctx.redactor.redact(&r.tail),
        summary: match &subset {
            Some(s) => format!("no errors (data read: {s})"),
            None => "no errors (structure only)".into(),
        },
        extra: Vec::new(),
        tolerated: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_part_read_turns_on_each_run() {
        assert_eq!(next_part(None, 7), 1);
        assert_eq!(next_part(Some("1/7"), 7), 2);
        assert_eq!(next_part(Some("7/7"), 7), 1);
        // A changed M starts again at 1.
        assert_eq!(next_part(Some("3/5"), 7), 1);
        assert_eq!(next_part(Some("5%"), 7), 1);
    }

    #[test]
    fn a_failed_part_is_read_again_until_it_passes() {
        let check = |subset: &str| RepoCheck {
            read_data_subset: Some(Spanned::new(
                parse_subset(subset).unwrap(),
                crate::plan::source::Span {
                    file: 0,
                    offset: 0,
                    len: 0,
                },
            )),
            ..RepoCheck::default()
        };
        let prev = |subset: &str, failed| Previous {
            subset: Some(subset.into()),
            failed,
        };
        let rotating = check("1/7");
        assert_eq!(
            args(&rotating, &prev("3/7", false)).1.as_deref(),
            Some("4/7")
        );
        assert_eq!(
            args(&rotating, &prev("3/7", true)).1.as_deref(),
            Some("3/7")
        );
        // A part of another division, a random share or everything: read everything.
        assert_eq!(
            args(&rotating, &prev("3/5", true)).1.as_deref(),
            Some("all")
        );
        let (argv, _) = args(&rotating, &prev("5%", true));
        assert_eq!(argv, ["check", "--read-data"]);
        assert_eq!(
            args(&rotating, &prev("all", false)).1.as_deref(),
            Some("1/7")
        );
        let share = check("5%");
        assert_eq!(args(&share, &prev("5%", true)).1.as_deref(), Some("all"));
        assert_eq!(args(&share, &prev("all", false)).1.as_deref(), Some("5%"));
    }

    #[test]
    fn subsets_are_parts_or_shares() {
        assert_eq!(parse_subset("1/7"), Ok(DataSubset::Rotating(7)));
        assert_eq!(parse_subset("5%"), Ok(DataSubset::Percent("5%".into())));
        assert!(parse_subset("0/7").is_err());
        assert!(parse_subset("8/7").is_err());
        assert!(parse_subset("150%").is_err());
        assert!(parse_subset("seven").is_err());
    }
}
