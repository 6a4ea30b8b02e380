//! Validated plans → the step graph: resolved settings (with origins), hooks and edges.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;

use super::diagnostic::Diagnostic;
use super::model::*;
use super::source::Span;
use super::validate::effective_base;
use crate::artifact::layout::{self, Area};
use crate::graph::{EdgeKind, Graph};
use crate::settings::{Env, Origin, Setting};
use crate::units::{duration, schedule::Schedule};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);
pub const DUMP_STALE: Duration = Duration::from_secs(26 * 3600);
pub const DUMP_FAIL: Duration = Duration::from_secs(50 * 3600);
pub const SNAPSHOT_STALE: Duration = Duration::from_secs(26 * 3600);
pub const VERIFY_OVERDUE: Duration = Duration::from_secs(192 * 3600);

#[derive(Clone, Debug)]
pub struct CompiledPlan {
    pub decl: Plan,
    pub timezone: Setting<Tz>,
    pub base: Setting<String>,
    /// Program paths by tool name (`pg-dump`, `git`, …); unset tools are looked up on PATH.
    pub tools: HashMap<String, Setting<String>>,
}

impl CompiledPlan {
    /// The folder where step `step` of this plan keeps its files of `area`.
    pub fn dir(&self, step: &str, area: Area) -> PathBuf {
        layout::step_dir(Path::new(&self.base.value), &self.decl.steps, step, area)
    }

    /// The steps of this plan of one kind, in declaration order.
    pub fn steps_where(&self, keep: impl Fn(&StepKind) -> bool) -> impl Iterator<Item = &Step> {
        self.decl.steps.iter().filter(move |s| keep(&s.kind))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookWhen {
    Before,
    After,
}

#[derive(Clone, Debug)]
pub struct CompiledStep {
    /// `plan/step`.
    pub id: String,
    pub plan: usize,
    pub decl: Step,
    pub schedule: Option<Setting<Schedule>>,
    pub timeout: Setting<Duration>,
    pub retry_after: Setting<Duration>,
    /// False when the step is taken off the schedule (`OPS_VERIFY_AUTO=false`).
    pub auto: Setting<bool>,
    /// Steps this command runs alongside as a hook, and when.
    pub hook_of: Vec<(usize, HookWhen)>,
    /// Every other setting, rendered for `plan show`.
    pub settings: Vec<(String, String, Origin)>,
    /// Health thresholds by name (`stale-after`, `fail-after`, `overdue-after`), resolved.
    pub thresholds: Vec<(&'static str, Setting<Duration>)>,
}

impl CompiledStep {
    pub fn threshold(&self, name: &str) -> Option<Duration> {
        self.thresholds
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s.value)
    }
}

impl CompiledStep {
    pub fn name(&self) -> &str {
        &self.decl.name.value
    }
}

#[derive(Clone, Debug, Default)]
pub struct Compiled {
    pub plans: Vec<CompiledPlan>,
    pub steps: Vec<CompiledStep>,
    pub graph: Graph,
    /// Steps in graph order.
    pub order: Vec<usize>,
}

impl Compiled {
    /// The plan named by `--plan`, or the only one when there is only one.
    pub fn plan_named(&self, name: Option<&str>) -> Result<&CompiledPlan, String> {
        match name {
            Some(n) => self
                .plans
                .iter()
                .find(|p| p.decl.name.value == n)
                .ok_or_else(|| format!("no plan named `{n}`")),
            None => match self.plans.as_slice() {
                [one] => Ok(one),
                many => {
                    let names: Vec<&str> =
                        many.iter().map(|p| p.decl.name.value.as_str()).collect();
                    Err(format!(
                        "several plans: name one with --plan ({})",
                        names.join(", ")
                    ))
                }
            },
        }
    }

    /// Finds `PLAN/STEP`, or `STEP` when exactly one plan has it.
    pub fn find(&self, name: &str) -> Result<usize, String> {
        if let Some(i) = self.steps.iter().position(|s| s.id == name) {
            return Ok(i);
        }
        let matches: Vec<usize> = (0..self.steps.len())
            .filter(|&i| self.steps[i].name() == name)
            .collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => {
                let ids: Vec<&str> = self.steps.iter().map(|s| s.id.as_str()).collect();
                let names: Vec<&str> = self.steps.iter().map(|s| s.name()).collect();
                let hint = super::diagnostic::did_you_mean(name, ids.iter().chain(&names).copied())
                    .map(|m| format!("; did you mean `{m}`?"))
                    .unwrap_or_default();
                Err(format!("no step named `{name}`{hint}"))
            }
            many => {
                let ids: Vec<&str> = many.iter().map(|&i| self.steps[i].id.as_str()).collect();
                Err(format!(
                    "step name `{name}` is ambiguous; name one of: {}",
                    ids.join(", ")
                ))
            }
        }
    }
}

fn threshold(
    env: &Env,
    var: &str,
    unit_secs: u64,
    own: Option<&Spanned<Duration>>,
    default: Duration,
) -> Setting<Duration> {
    // Validation refuses a value out of range; this never wraps whatever it is given.
    if let Some(secs) = env
        .get(var)
        .and_then(|v| v.parse::<u64>().ok())
        .and_then(|n| n.checked_mul(unit_secs))
    {
        let secs = secs.min(crate::units::duration::MAX.as_secs());
        return Setting::new(Duration::from_secs(secs), Origin::Env(var.into()));
    }
    match own {
        Some(v) => Setting::new(v.value, Origin::Plan(v.span)),
        None => Setting::new(default, Origin::Default),
    }
}

fn push_threshold(
    settings: &mut Vec<(String, String, Origin)>,
    thresholds: &mut Vec<(&'static str, Setting<Duration>)>,
    key: &'static str,
    t: Setting<Duration>,
) {
    settings.push((key.to_string(), duration::format(t.value), t.origin.clone()));
    thresholds.push((key, t));
}

fn plan_or_default<T: Clone>(own: Option<&Spanned<T>>, default: T) -> Setting<T> {
    match own {
        Some(v) => Setting::new(v.value.clone(), Origin::Plan(v.span)),
        None => Setting::new(default, Origin::Default),
    }
}

fn describe_source(s: &Sourced) -> String {
    match &s.source {
        ValueSource::Literal(_) => "(written in the plan)".into(),
        ValueSource::Env(v) => format!("env {v}"),
        ValueSource::File(p) => format!("file {p}"),
    }
}

/// Resolves settings and builds the graph. Plans must already be valid.
pub fn compile(plans: Vec<Plan>, env: &Env, diags: &mut Vec<Diagnostic>) -> Compiled {
    let mut out = Compiled::default();
    let verify_auto = match env.get("OPS_VERIFY_AUTO") {
        Some("false" | "0") => Setting::new(false, Origin::Env("OPS_VERIFY_AUTO".into())),
        _ => Setting::new(true, Origin::Default),
    };
    // (from, to) → span of the reference that made the edge, for cycle diagnostics.
    let mut edge_spans: HashMap<(usize, usize), Span> = HashMap::new();
    let mut implicit: Vec<(usize, usize, EdgeKind)> = Vec::new();
    let mut explicit: Vec<(usize, usize, EdgeKind)> = Vec::new();

    for (pi, plan) in plans.into_iter().enumerate() {
        let timezone = match &plan.timezone {
            Some(tz) => Setting::new(tz.value, Origin::Plan(tz.span)),
            None => Setting::new(chrono_tz::UTC, Origin::Default),
        };
        // Artifacts are recorded by absolute path: a relative base is taken from the working
        // directory once, here.
        let base_value = effective_base(&plan, env);
        let base_value = std::path::absolute(&base_value)
            .map(|p| p.display().to_string())
            .unwrap_or(base_value);
        let base = if env.get("OPS_BACKUP_BASE").is_some() {
            Setting::new(base_value, Origin::Env("OPS_BACKUP_BASE".into()))
        } else if let Some(b) = &plan.base {
            Setting::new(base_value, Origin::Plan(b.span))
        } else {
            Setting::new(base_value, Origin::Default)
        };
        let tools = plan
            .tools
            .iter()
            .map(|(k, v)| {
                (
                    k.value.clone(),
                    Setting::new(v.value.clone(), Origin::Plan(v.span)),
                )
            })
            .collect();

        let first = out.steps.len();
        let index: HashMap<&str, usize> = plan
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.value.as_str(), first + i))
            .collect();
        for step in &plan.steps {
            let me = index[step.name.value.as_str()];
            let mut settings: Vec<(String, String, Origin)> = Vec::new();
            let mut thresholds = Vec::new();
            let mut hook_of = Vec::new();
            let mut auto = Setting::new(true, Origin::Default);
            let is_command = matches!(step.kind, StepKind::Command(_));
            // An `always` command only waits for what it follows; it runs whatever happened.
            let after_kind = match &step.kind {
                StepKind::Command(c) if c.always.as_ref().is_some_and(|a| a.value) => {
                    EdgeKind::Order
                }
                _ => EdgeKind::Requires,
            };
            for r in &step.after {
                if let Some(&dep) = index.get(r.value.as_str()) {
                    explicit.push((dep, me, after_kind));
                    edge_spans.insert((dep, me), r.span);
                    if is_command {
                        hook_of.push((dep, HookWhen::After));
                    }
                }
            }
            for r in &step.before {
                if let Some(&target) = index.get(r.value.as_str()) {
                    explicit.push((me, target, EdgeKind::Requires));
                    edge_spans.insert((me, target), r.span);
                    hook_of.push((target, HookWhen::Before));
                }
            }
            match &step.kind {
                StepKind::Dump(d) => {
                    if let Some(db) = &d.database {
                        settings.push(("database".into(), db.value.clone(), Origin::Plan(db.span)));
                    }
                    let stale = threshold(
                        env,
                        "OPS_DB_DUMP_STALE_MIN",
                        60,
                        d.stale_after.as_ref(),
                        DUMP_STALE,
                    );
                    push_threshold(&mut settings, &mut thresholds, "stale-after", stale);
                    let fail = threshold(
                        env,
                        "OPS_DB_DUMP_FAIL_MIN",
                        60,
                        d.fail_after.as_ref(),
                        DUMP_FAIL,
                    );
                    push_threshold(&mut settings, &mut thresholds, "fail-after", fail);
                    if let Some(k) = &d.keep {
                        settings.push(("keep".into(), k.value.to_string(), Origin::Plan(k.span)));
                    }
                    if let Some(m) = &d.min_size {
                        settings.push((
                            "min-size".into(),
                            crate::units::size::format(m.value),
                            Origin::Plan(m.span),
                        ));
                    }
                    let level = plan_or_default(d.compression_level.as_ref(), 6);
                    settings.push((
                        "compression-level".into(),
                        level.value.to_string(),
                        level.origin,
                    ));
                }
                StepKind::Snapshot(s) => {
                    let stale = threshold(
                        env,
                        "OPS_SNAPSHOT_STALE_MIN",
                        60,
                        s.stale_after.as_ref(),
                        SNAPSHOT_STALE,
                    );
                    push_threshold(&mut settings, &mut thresholds, "stale-after", stale);
                    let paths: Vec<&str> = s.paths.iter().map(|p| p.value.as_str()).collect();
                    if let Some(p) = s.paths.first() {
                        settings.push(("paths".into(), paths.join(" "), Origin::Plan(p.span)));
                    }
                    if env.get("RESTIC_REPO").is_some() {
                        settings.push((
                            "repository".into(),
                            "env RESTIC_REPO".into(),
                            Origin::Env("RESTIC_REPO".into()),
                        ));
                    } else if let Some(r) = &s.repository {
                        settings.push((
                            "repository".into(),
                            describe_source(r),
                            Origin::Plan(r.span),
                        ));
                    }
                    let policy = match &s.incomplete {
                        Some(p) => (
                            if p.value == IncompletePolicy::Warn {
                                "warn"
                            } else {
                                "fail"
                            },
                            Origin::Plan(p.span),
                        ),
                        None => ("fail", Origin::Default),
                    };
                    settings.push(("incomplete".into(), policy.0.into(), policy.1));
                }
                StepKind::Verify(v) => {
                    if let Some(dump) = &v.dump
                        && let Some(&dep) = index.get(dump.value.as_str())
                    {
                        implicit.push((dep, me, EdgeKind::Requires));
                        edge_spans.insert((dep, me), dump.span);
                        settings.push(("dump".into(), dump.value.clone(), Origin::Plan(dump.span)));
                    }
                    let overdue = threshold(
                        env,
                        "OPS_VERIFY_OVERDUE_HOURS",
                        3600,
                        v.overdue_after.as_ref(),
                        VERIFY_OVERDUE,
                    );
                    push_threshold(&mut settings, &mut thresholds, "overdue-after", overdue);
                    if let Some(m) = &v.min_tables {
                        settings.push((
                            "min-tables".into(),
                            m.value.to_string(),
                            Origin::Plan(m.span),
                        ));
                    }
                    settings.push(match &v.ownership {
                        Some(o) if o.value == Ownership::Keep => {
                            ("ownership".into(), "keep".into(), Origin::Plan(o.span))
                        }
                        Some(o) => ("ownership".into(), "ignore".into(), Origin::Plan(o.span)),
                        None => ("ownership".into(), "ignore".into(), Origin::Default),
                    });
                    auto = verify_auto.clone();
                }
                StepKind::Report(r) => {
                    let t = r
                        .template
                        .as_ref()
                        .map(|t| Setting::new(t.value.clone(), Origin::Plan(t.span)))
                        .unwrap_or_else(|| Setting::new("backup-report".into(), Origin::Default));
                    settings.push(("template".into(), t.value, t.origin));
                    for other in &plan.steps {
                        if !matches!(other.kind, StepKind::Report(_) | StepKind::GitTag(_)) {
                            implicit.push((index[other.name.value.as_str()], me, EdgeKind::Order));
                        }
                    }
                }
                StepKind::GitTag(g) => {
                    if let Some(n) = &g.name {
                        settings.push(("name".into(), n.value.clone(), Origin::Plan(n.span)));
                    }
                    if let Some(r) = &g.repository {
                        settings.push(("repository".into(), r.value.clone(), Origin::Plan(r.span)));
                    }
                    for other in &plan.steps {
                        if !matches!(other.kind, StepKind::GitTag(_)) {
                            implicit.push((
                                index[other.name.value.as_str()],
                                me,
                                EdgeKind::Requires,
                            ));
                        }
                    }
                }
                StepKind::Command(c) => {
                    if let Some(dir) = &c.dir {
                        settings.push(("dir".into(), dir.value.clone(), Origin::Plan(dir.span)));
                    }
                    for (k, v) in &c.env {
                        // A literal command variable is configuration, not a secret: show it.
                        let shown = match &v.source {
                            ValueSource::Literal(text) => text.clone(),
                            _ => describe_source(v),
                        };
                        settings.push((format!("env {}", k.value), shown, Origin::Plan(v.span)));
                    }
                }
            }
            out.steps.push(CompiledStep {
                id: format!("{}/{}", plan.name.value, step.name.value),
                plan: pi,
                decl: step.clone(),
                schedule: step
                    .schedule
                    .as_ref()
                    .map(|s| Setting::new(s.value.clone(), Origin::Plan(s.span))),
                timeout: plan_or_default(step.timeout.as_ref(), DEFAULT_TIMEOUT),
                retry_after: plan_or_default(step.retry_after.as_ref(), DEFAULT_RETRY_AFTER),
                auto,
                hook_of,
                settings,
                thresholds,
            });
        }
        out.plans.push(CompiledPlan {
            decl: plan,
            timezone,
            base,
            tools,
        });
    }

    let mut graph = Graph::new(out.steps.len());
    for &(a, b, kind) in &explicit {
        graph.add(a, b, kind);
    }
    // Implicit edges never override what the plan says: one that would close a loop is dropped.
    for (a, b, kind) in implicit {
        if !reaches(&graph, b, a) {
            graph.add(a, b, kind);
        }
    }
    match graph.order() {
        Ok(order) => out.order = order,
        Err(cycle) => {
            let names: Vec<&str> = cycle.iter().map(|&i| out.steps[i].id.as_str()).collect();
            let first = &out.steps[cycle[0]];
            let mut d = Diagnostic::error(
                first.decl.name.span,
                format!(
                    "steps wait for each other in a cycle: {} → {}",
                    names.join(" → "),
                    names[0]
                ),
                format!("`{}` is in the cycle", first.name()),
            )
            .with_help("remove one of these `after`/`before` references");
            for i in 0..cycle.len() {
                let (a, b) = (cycle[i], cycle[(i + 1) % cycle.len()]);
                let span = edge_spans
                    .get(&(a, b))
                    .copied()
                    .unwrap_or(out.steps[b].decl.name.span);
                d = d.with_related(
                    span,
                    format!(
                        "`{}` waits for `{}`",
                        out.steps[b].name(),
                        out.steps[a].name()
                    ),
                );
            }
            diags.push(d);
        }
    }
    out.graph = graph;
    out
}

fn reaches(g: &Graph, from: usize, to: usize) -> bool {
    let mut stack = vec![from];
    let mut seen = vec![false; g.len];
    while let Some(n) = stack.pop() {
        if n == to {
            return true;
        }
        if std::mem::replace(&mut seen[n], true) {
            continue;
        }
        stack.extend(g.edges.iter().filter(|e| e.from == n).map(|e| e.to));
    }
    false
}
