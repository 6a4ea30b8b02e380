//! `plan validate`: every diagnostic of every file, then a one-line verdict.

use crate::app::App;
use crate::error::Failure;
use crate::plan;

pub fn run(app: &App) -> Result<(), Failure> {
    let loaded = plan::load(&app.plans, &app.env).map_err(Failure::Usage)?;
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
    println!("{line}");
    Ok(())
}
