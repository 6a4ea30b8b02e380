//! Validated plans → the step graph: resolved settings (with origins), hooks and edges.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;

use super::PlanError;
use super::diagnostic::Diagnostic;
use super::model::*;
use super::source::Span;
use super::validate::effective_base;
use crate::artifact::layout::{self, Area};
use crate::graph::{EdgeKind, Graph};
use crate::plan::settings::{Env, Origin, Setting};
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
        layout::step_dir(
            Path::new(&self.base.value),
            self.decl.step_areas(),
            step,
            area,
        )
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
    /// After the step, only when it failed.
    OnFailure,
}

impl HookWhen {
    pub fn words(self) -> &'static str {
        match self {
            HookWhen::Before => "before",
            HookWhen::After => "after",
            HookWhen::OnFailure => "when it fails, after",
        }
    }
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
    pub fn plan_named(&self, name: Option<&str>) -> Result<&CompiledPlan, PlanError> {
        match name {
            Some(n) => self
                .plans
                .iter()
                .find(|p| p.decl.name.value == n)
                .ok_or_else(|| PlanError::NoPlan(n.to_string())),
            None => match self.plans.as_slice() {
                [one] => Ok(one),
                many => {
                    let names: Vec<&str> =
                        many.iter().map(|p| p.decl.name.value.as_str()).collect();
                    Err(PlanError::SeveralPlans(names.join(", ")))
                }
            },
        }
    }

    /// Finds `PLAN/STEP`, or `STEP` when exactly one plan has it.
    pub fn find(&self, name: &str) -> Result<usize, PlanError> {
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
                Err(PlanError::NoStep {
                    name: name.to_string(),
                    hint,
                })
            }
            many => {
                let ids: Vec<&str> = many.iter().map(|&i| self.steps[i].id.as_str()).collect();
                Err(PlanError::AmbiguousStep {
                    name: name.to_string(),
                    ids: ids.join(", "),
                })
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

/// What compiling one step collects; each kind's `compile` (in `steps/`) adds its own
/// settings, thresholds and implicit edges through it.
pub struct Compiling<'a> {
    pub env: &'a Env,
    /// The plan's declared steps, and their indexes in the compiled list.
    pub plan: &'a Plan,
    index: &'a HashMap<&'a str, usize>,
    /// This step's index.
    pub me: usize,
    implicit: &'a mut Vec<(usize, usize, EdgeKind)>,
    edge_spans: &'a mut HashMap<(usize, usize), Span>,
    /// `OPS_VERIFY_AUTO`, resolved.
    pub verify_auto: &'a Setting<bool>,
    pub settings: Vec<(String, String, Origin)>,
    pub thresholds: Vec<(&'static str, Setting<Duration>)>,
    pub auto: Setting<bool>,
}

impl Compiling<'_> {
    /// A setting written in the plan, for `plan show`.
    pub fn plan_setting(&mut self, key: &str, value: impl Into<String>, span: Span) {
        self.settings
            .push((key.to_string(), value.into(), Origin::Plan(span)));
    }

    /// A setting with its origin, for `plan show`.
    pub fn setting(&mut self, key: &str, value: impl Into<String>, origin: Origin) {
        self.settings.push((key.to_string(), value.into(), origin));
    }

    /// A health threshold: `var` (in units of `unit_secs`) over the plan's value over `default`.
    pub fn threshold(
        &mut self,
        key: &'static str,
        var: &str,
        unit_secs: u64,
        own: Option<&Spanned<Duration>>,
        default: Duration,
    ) {
        let t = threshold(self.env, var, unit_secs, own, default);
        self.settings
            .push((key.to_string(), duration::format(t.value), t.origin.clone()));
        self.thresholds.push((key, t));
    }

    /// A health threshold no environment variable overrides: the plan's value or `default`.
    pub fn own_threshold(
        &mut self,
        key: &'static str,
        own: Option<&Spanned<Duration>>,
        default: Duration,
    ) {
        let t = plan_or_default(own, default);
        self.settings
            .push((key.to_string(), duration::format(t.value), t.origin.clone()));
        self.thresholds.push((key, t));
    }

    /// An edge this kind implies from the step named `name` (declared in the plan) to this one.
    pub fn needs(&mut self, name: &Spanned<String>, kind: EdgeKind) -> bool {
        let Some(&dep) = self.index.get(name.value.as_str()) else {
            return false;
        };
        self.implicit.push((dep, self.me, kind));
        self.edge_spans.insert((dep, self.me), name.span);
        true
    }

    /// Edges from every other step of the plan that `keep` selects to this one.
    pub fn after_all(&mut self, keep: impl Fn(&StepKind) -> bool, kind: EdgeKind) {
        for other in &self.plan.steps {
            if keep(&other.kind) {
                self.implicit
                    .push((self.index[other.name.value.as_str()], self.me, kind));
            }
        }
    }
}

pub fn plan_or_default<T: Clone>(own: Option<&Spanned<T>>, default: T) -> Setting<T> {
    match own {
        Some(v) => Setting::new(v.value.clone(), Origin::Plan(v.span)),
        None => Setting::new(default, Origin::Default),
    }
}

pub fn describe_source(s: &Sourced) -> String {
    match &s.source {
        ValueSource::Literal(_) => "(written in the plan)".into(),
        ValueSource::Env(v) => format!("env {v}"),
        ValueSource::File(p) => format!("file {p}"),
        ValueSource::Credential(c) => format!("credential {c}"),
    }
}

/// Resolves settings and builds the graph. Plans must already be valid.
pub fn compile(
    plans: Vec<Plan>,
    env: &Env,
    diags: &mut Vec<Diagnostic>,
    kinds: &dyn super::kinds::Kinds,
) -> Compiled {
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
            let mut hook_of = Vec::new();
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
            if let StepKind::Command(c) = &step.kind {
                for r in &c.on_failure {
                    if let Some(&dep) = index.get(r.value.as_str()) {
                        explicit.push((dep, me, EdgeKind::OnFailure));
                        edge_spans.insert((dep, me), r.span);
                        hook_of.push((dep, HookWhen::OnFailure));
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
            let mut c = Compiling {
                env,
                plan: &plan,
                index: &index,
                me,
                implicit: &mut implicit,
                edge_spans: &mut edge_spans,
                verify_auto: &verify_auto,
                settings: Vec::new(),
                thresholds: Vec::new(),
                auto: Setting::new(true, Origin::Default),
            };
            kinds.compile(&step.kind, &mut c);
            let Compiling {
                settings,
                thresholds,
                auto,
                ..
            } = c;
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
