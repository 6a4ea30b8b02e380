//! The `runbook` step: writes the plan's disaster-recovery runbook (`report/runbook.rs`) to
//! `reports/dr-runbook.md` on its schedule, after the plan's dumps and snapshots, so the
//! printed copy always names the newest backups.

use kdl::KdlNode;
use serde_json::json;

use super::{Context, Outcome, Settings, Status, StepError};
use crate::graph::EdgeKind;
use crate::plan::compile::Compiling;
use crate::plan::decode::Decoder;
use crate::plan::diagnostic::Diagnostic;
use crate::plan::model::{Runbook, Spanned, StepKind};
use crate::plan::validate::Scope;

/// A `runbook` block has no settings beside the common ones.
pub const SETTINGS: Settings = Settings {
    keys: &[],
    repeatable: &[],
};

pub fn decode(_: &mut Runbook, _: &str, _: &KdlNode, _: &mut Decoder) {}

/// Ordered after every step that makes or proves backups, so it names the newest ones and the
/// last drill.
pub fn compile(_: &Runbook, c: &mut Compiling) {
    c.after_all(
        |k| {
            matches!(
                k,
                StepKind::Dump(_)
                    | StepKind::Snapshot(_)
                    | StepKind::Verify(_)
                    | StepKind::Drill(_)
            )
        },
        EdgeKind::Order,
    );
}

pub fn validate(_: &Runbook, _: &Spanned<String>, _: &Scope, _: &mut Vec<Diagnostic>) {}

pub fn preview(ctx: &Context, _: &Runbook) -> Result<String, StepError> {
    Ok(format!(
        "write the disaster-recovery runbook to {}/reports/dr-runbook.md",
        ctx.plan.base.value
    ))
}

pub fn execute(ctx: &Context, _: &Runbook) -> Outcome {
    let store = ctx
        .state
        .and_then(|p| crate::store::Store::open_read_only(p).ok().flatten());
    match crate::report::runbook::write(
        ctx.compiled,
        ctx.plan,
        ctx.env,
        ctx.clock.now(),
        None,
        store.as_ref(),
    ) {
        Ok(path) => Outcome {
            status: Status::Success,
            meta: json!({ "report": path.display().to_string(), "template": "dr-runbook" }),
            log_excerpt: String::new(),
            summary: path.display().to_string(),
            extra: Vec::new(),
            tolerated: false,
        },
        Err(e) => Outcome::failed(ctx.redactor.redact(&e.to_string())),
    }
}
