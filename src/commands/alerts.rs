//! `alerts test [CHANNEL]` and `report [--plan P] [--out FILE]`.

use std::path::Path;

use crate::alert;
use crate::app::App;
use crate::error::Failure;

pub fn test(app: &App, only: Option<&str>) -> Result<(), Failure> {
    let (_loaded, compiled) = app.load()?;
    let redactor = app.redactor(&compiled);
    let mut sent = 0;
    let mut failed = 0;
    for plan in &compiled.plans {
        for channel in alert::channels(app.alerting(), plan) {
            let channel = match channel {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {}", redactor.redact(&e.to_string()));
                    failed += 1;
                    continue;
                }
            };
            if let Some(o) = only
                && channel.name != o
                && channel.alert.name.value != o
            {
                continue;
            }
            let body = alert::payload(&plan.decl.name.value, &[], false, app.clock.now(), true);
            match alert::deliver(&channel, &body, &redactor) {
                Ok(n) => {
                    sent += 1;
                    crate::outln!("ok      {} (attempts: {n})", channel.name);
                }
                Err(e) => {
                    failed += 1;
                    crate::outln!(
                        "failed  {}: {}",
                        channel.name,
                        redactor.redact(&e.to_string())
                    );
                }
            }
        }
    }
    if sent + failed == 0 {
        return Err(Failure::Usage(match only {
            Some(o) => format!("no alert channel named `{o}` (or it is switched off)"),
            None => "no alert channel is configured (or all are switched off)".into(),
        }));
    }
    if failed > 0 {
        Err(Failure::StepsFailed)
    } else {
        Ok(())
    }
}

pub fn report(app: &App, plan: Option<&str>, out: Option<&Path>) -> Result<(), Failure> {
    let (_loaded, compiled) = app.load()?;
    let plan = compiled.plan_named(plan)?;
    let redactor = app.redactor(&compiled);
    // The plan's own report step names its template; otherwise the built-in one.
    let template = compiled
        .steps
        .iter()
        .filter(|s| std::ptr::eq(&compiled.plans[s.plan], plan))
        .find_map(|s| match &s.decl.kind {
            crate::plan::model::StepKind::Report(r) => r.template.as_ref().map(|t| t.value.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "backup-report".into());
    let step = compiled
        .steps
        .iter()
        .position(|s| std::ptr::eq(&compiled.plans[s.plan], plan))
        .ok_or_else(|| Failure::Usage("the plan has no steps to report on".into()))?;
    let executor = crate::session::StepExecutor {
        app,
        compiled: &compiled,
        redactor: &redactor,
    };
    let ctx = executor.context(step);
    let path = crate::steps::report::make(&ctx, &template, out)?;
    crate::outln!("{}", path.display());
    Ok(())
}
