//! `plan show [--json]`: the compiled graph in order, schedules, next due, setting origins.

use serde_json::{Value, json};

use crate::app::App;
use crate::due::{self, Decision};
use crate::error::Failure;
use crate::plan::compile::{Compiled, HookWhen};
use crate::plan::settings::Origin;
use crate::plan::source::Sources;
use crate::store::activities::History;
use crate::units::duration;

fn origin_json(o: &Origin, sources: &Sources) -> Value {
    let from = match o {
        Origin::Plan(span) => {
            let loc = sources.locate(*span);
            Value::String(format!("{}:{}:{}", loc.path.display(), loc.line, loc.col))
        }
        Origin::Env(v) | Origin::Flag(v) => Value::String(v.clone()),
        Origin::Default => Value::Null,
    };
    json!({ "origin": o.kind(), "from": from })
}

fn setting_json(value: impl Into<Value>, o: &Origin, sources: &Sources) -> Value {
    let mut v = origin_json(o, sources);
    v["value"] = value.into();
    v
}

/// The due decision for every step, from the store when it exists (show never creates it).
pub fn decisions(app: &App, compiled: &Compiled) -> Result<Vec<Decision>, Failure> {
    let store = app.open_reader()?;
    decisions_from(compiled, store.as_ref(), app.clock.now())
}

/// The due decision for every step, from an open store (or none: nothing ran yet).
pub fn decisions_from(
    compiled: &Compiled,
    store: Option<&crate::store::Store>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Decision>, Failure> {
    compiled
        .steps
        .iter()
        .map(|s| {
            let plan = &compiled.plans[s.plan];
            let history = match store {
                Some(st) => st
                    .history(&plan.decl.name.value, s.name())
                    .map_err(|e| Failure::Runtime(format!("cannot read history: {e}")))?,
                None => History::default(),
            };
            Ok(due::decide(&due::Input {
                schedule: s.schedule.as_ref().map(|x| &x.value),
                tz: plan.timezone.value,
                auto: s.auto.value,
                retry_after: s.retry_after.value,
                history: &history,
                now,
            }))
        })
        .collect()
}

/// For a `wal` step: the `postgresql.conf` lines that make the server archive into it.
pub fn conf_lines(app: &App, compiled: &Compiled, i: usize) -> Option<Vec<String>> {
    let s = &compiled.steps[i];
    matches!(s.decl.kind, crate::plan::model::StepKind::Wal(_)).then(|| {
        crate::steps::wal::conf_lines(
            &compiled.plans[s.plan].decl.name.value,
            s.name(),
            &app.plans,
        )
    })
}

pub fn run(app: &App, json_out: bool) -> Result<(), Failure> {
    let (loaded, compiled) = app.load()?;
    let sources = &loaded.sources;
    let decisions = decisions(app, &compiled)?;
    let position: Vec<usize> = {
        let mut p = vec![0; compiled.steps.len()];
        for (i, &s) in compiled.order.iter().enumerate() {
            p[s] = i + 1;
        }
        p
    };
    if json_out {
        let plans: Vec<Value> = compiled
            .plans
            .iter()
            .map(|p| {
                let tools: serde_json::Map<String, Value> = p
                    .tools
                    .iter()
                    .map(|(k, v)| (k.clone(), setting_json(v.value.clone(), &v.origin, sources)))
                    .collect();
                json!({
                    "name": p.decl.name.value,
                    "file": sources.files[p.decl.file].path.display().to_string(),
                    "timezone": setting_json(p.timezone.value.name(), &p.timezone.origin, sources),
                    "base": setting_json(p.base.value.clone(), &p.base.origin, sources),
                    "tools": tools,
                })
            })
            .collect();
        let steps: Vec<Value> = compiled
            .order
            .iter()
            .map(|&i| {
                let s = &compiled.steps[i];
                let tz = compiled.plans[s.plan].timezone.value;
                let d = &decisions[i];
                let (due_now, next) = match d {
                    Decision::Due { .. } => (true, Some(app.clock.now())),
                    Decision::NotDue { next, .. } => (false, *next),
                };
                let settings: serde_json::Map<String, Value> = s
                    .settings
                    .iter()
                    .map(|(k, v, o)| (k.clone(), setting_json(v.clone(), o, sources)))
                    .collect();
                json!({
                    "id": s.id,
                    "plan": compiled.plans[s.plan].decl.name.value,
                    "name": s.name(),
                    "kind": s.decl.kind.keyword(),
                    "type": s.decl.kind.activity_type(),
                    "order": position[i],
                    "schedule": s.schedule.as_ref().map(|x| setting_json(x.value.expr.clone(), &x.origin, sources)),
                    "timeout": setting_json(duration::format(s.timeout.value), &s.timeout.origin, sources),
                    "retry_after": setting_json(duration::format(s.retry_after.value), &s.retry_after.origin, sources),
                    "auto": setting_json(s.auto.value, &s.auto.origin, sources),
                    "after": compiled.graph.predecessors(i).map(|e| json!({
                        "step": compiled.steps[e.from].id,
                        "kind": match e.kind { crate::graph::EdgeKind::Requires => "requires", crate::graph::EdgeKind::Order => "order", crate::graph::EdgeKind::OnFailure => "on-failure" },
                    })).collect::<Vec<_>>(),
                    "hook_of": s.hook_of.iter().map(|(t, w)| json!({
                        "step": compiled.steps[*t].id,
                        "when": match w { HookWhen::Before => "before", HookWhen::After => "after", HookWhen::OnFailure => "on-failure" },
                    })).collect::<Vec<_>>(),
                    "due": due_now,
                    "reason": d.reason(),
                    "next_due": next.map(crate::clock::stamp),
                    "next_due_local": next.map(|n| due::local(n, tz)),
                    "settings": settings,
                    "postgresql_conf": conf_lines(app, &compiled, i),
                })
            })
            .collect();
        let out =
            json!({ "now": crate::clock::stamp(app.clock.now()), "plans": plans, "steps": steps });
        crate::outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }

    let mut out = String::new();
    for (pi, p) in compiled.plans.iter().enumerate() {
        if pi > 0 {
            out.push('\n');
        }
        out.push_str(&format!(
            "plan {}  ({})\n",
            p.decl.name.value,
            sources.files[p.decl.file].path.display()
        ));
        out.push_str(&format!(
            "  timezone  {}  [{}]\n",
            p.timezone.value.name(),
            p.timezone.origin.describe(sources)
        ));
        out.push_str(&format!(
            "  base      {}  [{}]\n",
            p.base.value,
            p.base.origin.describe(sources)
        ));
        let mut tools: Vec<_> = p.tools.iter().collect();
        tools.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in tools {
            out.push_str(&format!(
                "  tool {k}  {}  [{}]\n",
                v.value,
                v.origin.describe(sources)
            ));
        }
        for &i in compiled
            .order
            .iter()
            .filter(|&&i| compiled.steps[i].plan == pi)
        {
            let s = &compiled.steps[i];
            let tz = p.timezone.value;
            out.push_str(&format!(
                "\n  {}. {}  {}\n",
                position[i],
                s.id,
                s.decl.kind.keyword()
            ));
            let mut rows: Vec<(String, String, String)> = Vec::new();
            match &s.schedule {
                Some(sch) => rows.push((
                    "schedule".into(),
                    format!("\"{}\"", sch.value.expr),
                    sch.origin.describe(sources),
                )),
                None => rows.push((
                    "schedule".into(),
                    "none: runs only when named".into(),
                    String::new(),
                )),
            }
            match &decisions[i] {
                Decision::Due { reason, .. } => {
                    rows.push(("due".into(), format!("now: {reason}"), String::new()))
                }
                Decision::NotDue {
                    next: Some(n),
                    reason,
                } => rows.push((
                    "next due".into(),
                    format!("{} ({reason})", due::local(*n, tz)),
                    String::new(),
                )),
                Decision::NotDue { next: None, reason } if s.schedule.is_some() => rows.push((
                    "next due".into(),
                    format!("never ({reason})"),
                    String::new(),
                )),
                Decision::NotDue { .. } => {}
            }
            let preds: Vec<String> = compiled
                .graph
                .predecessors(i)
                .map(|e| match e.kind {
                    crate::graph::EdgeKind::Requires => compiled.steps[e.from].id.clone(),
                    crate::graph::EdgeKind::Order => {
                        format!("{} (order only)", compiled.steps[e.from].id)
                    }
                    crate::graph::EdgeKind::OnFailure => {
                        format!("{} (only when it fails)", compiled.steps[e.from].id)
                    }
                })
                .collect();
            if !preds.is_empty() {
                rows.push(("after".into(), preds.join(", "), String::new()));
            }
            for (t, w) in &s.hook_of {
                let when = w.words();
                rows.push((
                    "hook".into(),
                    format!("runs {when} {}", compiled.steps[*t].id),
                    String::new(),
                ));
            }
            rows.push((
                "timeout".into(),
                duration::format(s.timeout.value),
                s.timeout.origin.describe(sources),
            ));
            rows.push((
                "retry-after".into(),
                duration::format(s.retry_after.value),
                s.retry_after.origin.describe(sources),
            ));
            if !s.auto.value {
                rows.push(("auto".into(), "off".into(), s.auto.origin.describe(sources)));
            }
            for (k, v, o) in &s.settings {
                rows.push((k.clone(), v.clone(), o.describe(sources)));
            }
            let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
            for (k, v, o) in rows {
                let origin = if o.is_empty() {
                    String::new()
                } else {
                    format!("  [{o}]")
                };
                out.push_str(&format!("       {k:<w$}  {v}{origin}\n"));
            }
            if let Some(lines) = conf_lines(app, &compiled, i) {
                out.push_str(&format!(
                    "       postgresql.conf of the server (it archives into {}):\n",
                    p.dir(s.name(), crate::artifact::layout::Area::Wal)
                        .display()
                ));
                for l in lines {
                    out.push_str(&format!("         {l}\n"));
                }
            }
        }
    }
    crate::out!("{out}");
    Ok(())
}
