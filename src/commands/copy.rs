//! `ops-run copy forget STEP`: retention at a copy's destination, run from any host that has
//! the plan and the destination's credentials (a trusted one, so the backup host itself needs
//! no right to delete). What goes is decided by ops-run from the snapshots' tags — the dump's
//! own stamp against the time the snapshot claims — and, where this host keeps the log, the
//! copies it recorded; snapshots that do not add up are reported and never counted or deleted.

use crate::app::App;
use crate::error::Failure;
use crate::plan::model::StepKind;
use crate::session::StepExecutor;

pub fn forget(app: &App, step: &str) -> Result<(), Failure> {
    let (_loaded, compiled) = app.load()?;
    let si = compiled.find(step)?;
    let s = &compiled.steps[si];
    let StepKind::Copy(c) = &s.decl.kind else {
        return Err(Failure::Usage(format!("`{}` is not a copy step", s.id)));
    };
    let Some(keep) = &c.forget else {
        return Err(Failure::Usage(format!(
            "copy `{}` has no `forget` rule: add `forget last=… daily=…` to it",
            s.id
        )));
    };
    let redactor = app.redactor(&compiled);
    let executor = StepExecutor {
        app,
        compiled: &compiled,
        redactor: &redactor,
    };
    let ctx = executor.context(si);
    let env = crate::steps::restic::copy_credentials(&ctx, c)
        .map_err(|e| Failure::Runtime(redactor.redact(&e.to_string())))?;
    // Every host's snapshots of the step: this host need not be the one that copied.
    let there = crate::steps::restic::at_destination(&ctx, &env, s.name(), false)
        .map_err(|e| Failure::Runtime(redactor.redact(&e)))?;
    let recorded = app
        .open_reader()
        .ok()
        .flatten()
        .and_then(|store| store.copied_names(&ctx.plan.decl.name.value, s.name()).ok())
        .filter(|r| !r.is_empty());
    if recorded.is_none() {
        crate::outln!(
            "no log of this step's copies on this host: snapshots are checked by their tags and times only"
        );
    }
    let (extra, suspicious) =
        crate::steps::copy::forget(&ctx, &env, &keep.value, &there, recorded.as_ref());
    crate::outln!("{}", redactor.redact(&extra.summary));
    for s in &suspicious {
        crate::outln!("not trusted, kept: {s}");
    }
    match extra.status {
        crate::activity::Status::Success if suspicious.is_empty() => Ok(()),
        crate::activity::Status::Success => Err(crate::error::Failure::Checks(1)),
        _ => Err(Failure::Runtime(redactor.redact(&extra.log_excerpt))),
    }
}
