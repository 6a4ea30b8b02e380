//! The `command` step: an argv run directly (or `sh -c` when the plan says `shell`).

use super::Settings;
use crate::plan::compile::{Compiling, describe_source};
use crate::plan::decode::Decoder;
use crate::plan::decode::valid_env_name;
use crate::plan::diagnostic::Diagnostic;
use crate::plan::model::Spanned;
use crate::plan::model::ValueSource;
use crate::plan::validate::Scope;
use kdl::KdlNode;
use serde_json::json;

use super::{Context, Outcome, Status, StepError};
use crate::exec::{self, Exit, ProcessSpec};
use crate::plan::model::Command;

/// The settings of a `command` block (beside the common ones; `before` makes it a hook).
pub const SETTINGS: Settings = Settings {
    keys: &[
        "run",
        "shell",
        "env",
        "dir",
        "before",
        "always",
        "on-failure",
    ],
    repeatable: &["before", "on-failure"],
};

pub fn decode(c: &mut Command, key: &str, node: &KdlNode, dec: &mut Decoder) {
    match key {
        "run" => c.run = dec.strings(node),
        "shell" => c.shell = dec.text(node),
        "dir" => c.dir = dec.string(node),
        "always" => c.always = dec.boolean(node),
        "on-failure" => dec.string_list(node, &mut c.on_failure),
        "env" => env(c, node, dec),
        _ => {}
    }
}

/// A `command`'s compiled form: its folder and environment (a literal value is
/// configuration and shown; one from the environment or a file is named, never shown).
pub fn compile(cmd: &Command, c: &mut Compiling) {
    if let Some(dir) = &cmd.dir {
        c.plan_setting("dir", dir.value.clone(), dir.span);
    }
    for (k, v) in &cmd.env {
        let shown = match &v.source {
            ValueSource::Literal(text) => text.clone(),
            _ => describe_source(v),
        };
        c.plan_setting(&format!("env {}", k.value), shown, v.span);
    }
}

/// Checks a `command` block on its own (references to its plan's databases and steps).
pub fn validate(c: &Command, name: &Spanned<String>, _: &Scope, diags: &mut Vec<Diagnostic>) {
    match (&c.run, &c.shell) {
        (None, None) => diags.push(
            Diagnostic::error(
                name.span,
                format!("command `{}` needs `run` or `shell`", name.value),
                "nothing to run",
            )
            .with_help("add `run \"program\" \"arg\"` (no shell) or `shell \"…\"`"),
        ),
        (Some(r), Some(s)) => diags.push(
            Diagnostic::error(
                s.span,
                format!("command `{}` has both `run` and `shell`", name.value),
                "second way to run",
            )
            .with_related(r.span, "`run` is here"),
        ),
        _ => {}
    }
}

/// `env { NAME "value"; TOKEN env=SOURCE_VAR }`.
fn env(c: &mut Command, node: &KdlNode, dec: &mut Decoder) {
    dec.shape_block_only(node);
    let Some(children) = node.children() else {
        let span = dec.node_span(node);
        dec.error_help(
            span,
            "`env` needs a block",
            "block missing",
            "write `env { NAME \"value\"; OTHER env=SOURCE }`",
        );
        return;
    };
    for child in children.nodes() {
        let name = child.name().value().to_string();
        let span = dec.node_span(child);
        if !valid_env_name(&name) {
            dec.error(
                span,
                format!("`{name}` is not an environment variable name"),
                "expected letters, digits and `_`",
            );
            continue;
        }
        if let Some(v) = dec.sourced(child) {
            c.env.push((Spanned::new(name, span), v));
        }
    }
}

/// Builds the process; fails when an `env=` / `file=` value cannot be resolved.
pub fn build(ctx: &Context, c: &Command) -> Result<ProcessSpec, StepError> {
    let mut spec = match (&c.run, &c.shell) {
        (Some(run), _) => {
            let mut argv = run.value.iter();
            let program = argv.next().cloned().unwrap_or_default();
            ProcessSpec::new(program, argv.cloned())
        }
        (None, Some(shell)) => ProcessSpec::new("sh", ["-c".to_string(), shell.value.clone()]),
        (None, None) => return Err("nothing to run".into()),
    };
    spec.env
        .push(("OPS_PLAN".into(), ctx.plan.decl.name.value.clone()));
    spec.env
        .push(("OPS_STEP".into(), ctx.step.name().to_string()));
    spec.env
        .push(("OPS_BACKUP_BASE".into(), ctx.plan.base.value.clone()));
    for (name, value) in &c.env {
        let v = ctx
            .env
            .resolve(&value.source)
            .map_err(|e| format!("env {}: {e}", name.value))?;
        spec.env.push((name.value.clone(), v));
    }
    spec.dir = c.dir.as_ref().map(|d| d.value.clone().into());
    spec.timeout = Some(ctx.step.timeout.value);
    // A command (a hook above all) gets what the plan passes by name, never the rest of
    // ops-run's environment: under the package's unit that is every secret of its env file.
    spec.minimal_env = true;
    Ok(spec)
}

pub fn execute(ctx: &Context, c: &Command) -> Outcome {
    let spec = match build(ctx, c) {
        Ok(s) => s,
        Err(e) => return Outcome::failed(ctx.redactor.redact(&e.to_string())),
    };
    let result = exec::run(&spec, ctx.redactor);
    let argv = spec.display(ctx.redactor);
    let (status, summary, code) = match &result.exit {
        Exit::Code(0) => (Status::Success, String::new(), Some(0)),
        Exit::Code(n) => (Status::Failed, format!("exited with status {n}"), Some(*n)),
        Exit::Signal(s) => (Status::Failed, format!("killed by signal {s}"), None),
        Exit::TimedOut(t) => (
            Status::Timeout,
            format!(
                "timed out after {}; its process group was killed",
                crate::units::duration::format(*t)
            ),
            None,
        ),
        Exit::Interrupted => (
            Status::Failed,
            "interrupted: ops-run was stopped (SIGINT/SIGTERM)".to_string(),
            None,
        ),
        Exit::SpawnFailed(why) => (Status::Failed, why.clone(), None),
    };
    let mut log = result.tail.clone();
    if status != Status::Success {
        if !log.is_empty() && !log.ends_with('\n') {
            log.push('\n');
        }
        log.push_str(&format!("ops-run: {summary}"));
    }
    Outcome {
        status,
        meta: json!({ "argv": argv, "exit_code": code }),
        log_excerpt: ctx.redactor.redact(&log),
        summary: ctx.redactor.redact(&summary),
        extra: Vec::new(),
        tolerated: false,
    }
}
