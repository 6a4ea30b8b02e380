//! `plan validate`: every diagnostic of every file, then a one-line verdict.

use crate::app::App;
use crate::artifact::layout::Area;
use crate::error::Failure;
use crate::plan;

/// Renders every report template against a sample context in strict mode, so a typo fails
/// validation, not the 06:00 report.
fn check_templates(app: &App, loaded: &mut plan::Loaded) {
    let Some(compiled) = &loaded.compiled else {
        return;
    };
    let registry = match crate::help::registry() {
        Ok(r) => r,
        Err(e) => {
            loaded.diagnostics.push(plan::diagnostic::Diagnostic {
                severity: plan::diagnostic::Severity::Error,
                message: e.to_string(),
                span: None,
                label: String::new(),
                help: None,
                related: Vec::new(),
            });
            return;
        }
    };
    let mut found = Vec::new();
    for step in &compiled.steps {
        let crate::plan::model::StepKind::Report(r) = &step.decl.kind else {
            continue;
        };
        let name = r
            .template
            .as_ref()
            .map_or("backup-report", |t| t.value.as_str());
        let span = r.template.as_ref().map_or(step.decl.name.span, |t| t.span);
        let result = crate::report::template(name, &app.plans).and_then(|text| {
            crate::report::render::render(&text, &crate::report::sample_context(), &registry)
        });
        if let Err(e) = result {
            found.push(plan::diagnostic::Diagnostic::error(span, format!("template `{name}` does not render: {e}"), "this template").with_help(
                "templates are rendered in strict mode: every variable must exist (see the book, Reports)",
            ));
        }
    }
    loaded.diagnostics.extend(found);
    if loaded.diagnostics.iter().any(|d| d.is_error()) {
        loaded.compiled = None;
    }
}

/// A plan with several steps of one kind keeps each step's files in `AREA/<step>/`: files
/// still in the shared folder (made when the plan had one such step) are named, with the
/// command that moves them.
fn check_shared_folders(loaded: &mut plan::Loaded) {
    let Some(compiled) = &loaded.compiled else {
        return;
    };
    let mut found = Vec::new();
    for p in &compiled.plans {
        for area in Area::ALL {
            let writers: Vec<_> = p.steps_where(|k| k.area() == Some(area)).collect();
            let [_, second, ..] = writers.as_slice() else {
                continue;
            };
            let root = std::path::Path::new(&p.base.value).join(area.folder());
            let waiting = std::fs::read_dir(&root)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count();
            if waiting == 0 {
                continue;
            }
            let names: Vec<&str> = writers.iter().map(|s| s.name.value.as_str()).collect();
            found.push(
                plan::diagnostic::Diagnostic::warning(
                    second.name.span,
                    format!(
                        "{waiting} file(s) in {} were made when the plan had one such step: \
                         steps {} keep their files in {}/<step>/ now",
                        root.display(),
                        names.join(", "),
                        area.folder()
                    ),
                    "a second step of this kind",
                )
                .with_help(
                    "`ops-run backups migrate --dry-run` shows which step's folder each file moves to; without --dry-run it moves them",
                ),
            );
        }
    }
    loaded.diagnostics.extend(found);
}

pub fn run(app: &App) -> Result<(), Failure> {
    let mut loaded = plan::load(&app.plans, &app.env, &crate::steps::KINDS)?;
    check_templates(app, &mut loaded);
    check_shared_folders(&mut loaded);
    let errors = loaded.diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = loaded.diagnostics.len() - errors;
    if !loaded.diagnostics.is_empty() {
        eprintln!("{}", loaded.render_diagnostics());
    }
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    if errors > 0 {
        let mut summary = plural(errors, "error");
        if warnings > 0 {
            summary.push_str(&format!(", {}", plural(warnings, "warning")));
        }
        return Err(Failure::Plan(format!(
            "{summary} in {}\n",
            app.plans.display()
        )));
    }
    let compiled = loaded.compiled.as_ref();
    let plans = compiled.map_or(0, |c| c.plans.len());
    let steps = compiled.map_or(0, |c| c.steps.len());
    let mut line = format!(
        "ok: {}, {} in {}",
        plural(plans, "plan"),
        plural(steps, "step"),
        app.plans.display()
    );
    if warnings > 0 {
        line.push_str(&format!(" ({})", plural(warnings, "warning")));
    }
    crate::outln!("{line}");
    Ok(())
}
