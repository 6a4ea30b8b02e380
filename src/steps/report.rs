//! The `report` step: renders the plan's report template with the current health and the
//! period's activity, and writes it to `reports/`.

use super::Settings;
use crate::graph::EdgeKind;
use crate::plan::compile::Compiling;
use crate::plan::decode::Decoder;
use crate::plan::diagnostic::Diagnostic;
use crate::plan::model::Spanned;
use crate::plan::model::StepKind;
use crate::plan::settings::Origin;
use crate::plan::validate::Scope;
use kdl::KdlNode;
use serde_json::json;

use super::{Context, Outcome, Status, StepError};
use crate::plan::model::Report;
use crate::report;

/// The settings of a `report` block (beside the common ones).
pub const SETTINGS: Settings = Settings {
    keys: &["template"],
    repeatable: &[],
};

pub fn decode(r: &mut Report, key: &str, node: &KdlNode, dec: &mut Decoder) {
    if key == "template" {
        r.template = dec.string(node);
    }
}

/// A `report`'s compiled form: its template, and an order after every step but reports and
/// tags, so it describes what this apply did.
pub fn compile(r: &Report, c: &mut Compiling) {
    match &r.template {
        Some(t) => c.plan_setting("template", t.value.clone(), t.span),
        None => c.setting("template", "backup-report", Origin::Default),
    }
    c.after_all(
        |k| !matches!(k, StepKind::Report(_) | StepKind::GitTag(_)),
        EdgeKind::Order,
    );
}

/// A `report` block has nothing to check on its own (its template is rendered by `plan
/// validate`).
pub fn validate(_: &Report, _: &Spanned<String>, _: &Scope, _: &mut Vec<Diagnostic>) {}

fn template_name(r: &Report) -> &str {
    r.template
        .as_ref()
        .map_or("backup-report", |t| t.value.as_str())
}

pub fn preview(ctx: &Context, r: &Report) -> Result<String, StepError> {
    Ok(format!(
        "render `{}` into {}/reports/backup-report-YYYYmmdd.md",
        template_name(r),
        ctx.plan.base.value
    ))
}

/// Renders and writes the report for the plan of `ctx`; returns its path.
pub fn make(
    ctx: &Context,
    template: &str,
    out: Option<&std::path::Path>,
) -> Result<std::path::PathBuf, StepError> {
    let text = report::template(template, ctx.plans)?;
    // A report only reads the log.
    let store = match ctx.state {
        Some(p) => crate::store::Store::open_read_only(p)
            .map_err(|e| format!("cannot read the activity log: {e}"))?,
        None => None,
    };
    let now = ctx.clock.now();
    let checks = crate::facts::checks(ctx.compiled, store.as_ref(), now)
        .map_err(|e| format!("cannot read the activity log: {e}"))?;
    let context = report::context(
        ctx.compiled,
        ctx.plan,
        store.as_ref(),
        &checks,
        now,
        ctx.redactor,
    );
    let registry = crate::help::registry().map_err(report::ReportError::from)?;
    let markdown = report::render::render(&text, &context, &registry)
        .map_err(|e| format!("template `{template}`: {e}"))?;
    let markdown = ctx.redactor.redact(&markdown);
    Ok(report::write(ctx.plan, &markdown, now, out)
        .map_err(|e| format!("cannot write the report: {e}"))?)
}

pub fn execute(ctx: &Context, r: &Report) -> Outcome {
    match make(ctx, template_name(r), None) {
        Ok(path) => Outcome {
            status: Status::Success,
            meta: json!({ "report": path.display().to_string(), "template": template_name(r) }),
            log_excerpt: String::new(),
            summary: path.display().to_string(),
            extra: Vec::new(),
            tolerated: false,
        },
        Err(e) => Outcome::failed(ctx.redactor.redact(&e.to_string())),
    }
}
