//! Step kinds: each file builds its command as a plain value and turns a run into an outcome.

pub mod command;
pub mod pending;

use serde_json::Value;

use crate::clock::Clock;
use crate::exec::redact::Redactor;
use crate::plan::compile::{Compiled, CompiledPlan, CompiledStep};
use crate::plan::model::StepKind;
use crate::settings::Env;

pub struct Context<'a> {
    pub compiled: &'a Compiled,
    pub plan: &'a CompiledPlan,
    pub step: &'a CompiledStep,
    pub env: &'a Env,
    pub redactor: &'a Redactor,
    pub clock: &'a Clock,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Success,
    Failed,
    Timeout,
    Incomplete,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Failed => "failed",
            Status::Timeout => "timeout",
            Status::Incomplete => "incomplete",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub status: Status,
    /// JSON for the activity's `meta` (artifact, exit code, …).
    pub meta: Value,
    /// The redacted tail of the tool's output.
    pub log_excerpt: String,
    /// One line for the console: why it failed, or what it made.
    pub summary: String,
}

impl Outcome {
    pub fn failed(summary: impl Into<String>) -> Outcome {
        let summary = summary.into();
        Outcome {
            status: Status::Failed,
            meta: Value::Object(Default::default()),
            log_excerpt: summary.clone(),
            summary,
        }
    }
}

/// What `--dry-run` shows for a step: the exact argv (redacted), or why it cannot be built.
pub fn preview(ctx: &Context) -> Result<String, String> {
    match &ctx.step.decl.kind {
        StepKind::Command(c) => command::build(ctx, c).map(|spec| spec.display(ctx.redactor)),
        _ => Err(pending::message(ctx.step)),
    }
}

pub fn execute(ctx: &Context) -> Outcome {
    match &ctx.step.decl.kind {
        StepKind::Command(c) => command::execute(ctx, c),
        _ => Outcome::failed(pending::message(ctx.step)),
    }
}
