//! `plan apply` and `run STEP`: their arguments, the dry run and the console; the session
//! (`session.rs`) does the rest.

use std::io::IsTerminal;
use std::time::Duration;

use crate::alert::ping;
use crate::app::App;
use crate::cli::ApplyArgs;
use crate::clock::stamp;
use crate::console::Console;
use crate::due::{self, Decision};
use crate::error::Failure;
use crate::exec::redact::Redactor;
use crate::exec::signals;
use crate::plan::compile::Compiled;
use crate::runner::{Planned, Sink, Trigger};
use crate::session::{self, Session, StepExecutor};
use crate::steps;
use crate::units::duration;

fn parse_wait(wait: Option<&str>) -> Result<Duration, Failure> {
    match wait {
        None => Ok(Duration::ZERO),
        Some(w) => duration::parse(w).map_err(|e| Failure::Usage(format!("--wait: {e}"))),
    }
}

pub fn run(app: &App, args: &ApplyArgs) -> Result<(), Failure> {
    let (_loaded, compiled) = match app.load_or_check() {
        Ok(x) => x,
        Err(broken) if broken.1.is_some() && !args.dry_run => {
            let (failure, check) = *broken;
            let check = check.unwrap_or_else(|| crate::health::plans_check(None, 0));
            // Nothing runs until the plans load: whoever the last good plans alert hears so.
            plans_broken(app, &check);
            return Err(failure);
        }
        Err(broken) => return Err(broken.0),
    };
    let only = args
        .only
        .iter()
        .map(|n| compiled.find(n).map_err(Failure::from))
        .collect::<Result<Vec<usize>, Failure>>()?;
    let wait = parse_wait(args.wait.as_deref())?;
    if args.dry_run {
        let redactor = app.redactor(&compiled);
        let decisions = crate::commands::show::decisions(app, &compiled)?;
        let planned = session::select(&compiled, &decisions, &only, args.force);
        crate::out!(
            "{}",
            dry_run(app, &compiled, &decisions, &planned, &redactor, args.jobs)
        );
        return Ok(());
    }
    let session = Session::begin(app, &compiled, wait)?;
    // One connection for the whole apply: the due decisions, the run, health and alerts.
    let store = app.open_store()?;
    let decisions =
        crate::commands::show::decisions_from(&compiled, Some(&store), app.clock.now())?;
    let planned = session::select(&compiled, &decisions, &only, args.force);
    ping::send(
        app.alerting(),
        &compiled,
        ping::Signal::Start,
        &session.redactor,
    );
    let result = if planned.is_empty() {
        if std::io::stdout().is_terminal() {
            crate::outln!("nothing due");
        }
        Ok(())
    } else {
        execute(&session, &store, &planned, args.jobs as usize)
    };
    session.finish(&store, args.metrics_textfile.as_deref());
    let signal = if result.is_ok() {
        ping::Signal::Success
    } else {
        ping::Signal::Fail
    };
    ping::send(app.alerting(), &compiled, signal, &session.redactor);
    result
}

pub fn run_one(app: &App, name: &str, wait: Option<&str>) -> Result<(), Failure> {
    let (_loaded, compiled) = app.load()?;
    let step = compiled.find(name)?;
    let wait = parse_wait(wait)?;
    let session = Session::begin(app, &compiled, wait)?;
    let planned = session::one(&compiled, step, Trigger::Manual, "run by hand".into());
    let store = app.open_store()?;
    execute(&session, &store, &planned, 1)
}

/// Runs the planned steps with the console beside the recorder, and prints the summary.
fn execute(
    session: &Session,
    store: &crate::store::Store,
    planned: &[Planned],
    jobs: usize,
) -> Result<(), Failure> {
    signals::install();
    let mut console = Console {
        out: std::io::stdout(),
        compiled: session.compiled,
        redactor: &session.redactor,
    };
    let summary = session.run(store, planned, jobs, None, &mut |event, _| {
        console.event(event)
    })?;
    crate::outln!(
        "{} succeeded, {} failed, {} skipped",
        summary.succeeded,
        summary.failed,
        summary.skipped
    );
    if summary.ok() {
        Ok(())
    } else {
        Err(Failure::StepsFailed)
    }
}

fn dry_run(
    app: &App,
    compiled: &Compiled,
    decisions: &[Decision],
    planned: &[Planned],
    redactor: &Redactor,
    jobs: u16,
) -> String {
    let now = app.clock.now();
    let mut out = format!(
        "dry run at {}: {} step{} would run (jobs {jobs})\n",
        stamp(now),
        planned.len(),
        if planned.len() == 1 { "" } else { "s" }
    );
    let executor = StepExecutor {
        app,
        compiled,
        redactor,
    };
    for (n, p) in planned.iter().enumerate() {
        let s = &compiled.steps[p.step];
        out.push_str(&format!(
            "  {}. {}  {}  [{}] {}\n",
            n + 1,
            s.id,
            s.decl.kind.keyword(),
            p.trigger.as_str(),
            p.reason
        ));
        let waits: Vec<&str> = compiled
            .graph
            .predecessors(p.step)
            .filter(|e| planned.iter().any(|q| q.step == e.from))
            .map(|e| compiled.steps[e.from].id.as_str())
            .collect();
        if !waits.is_empty() {
            out.push_str(&format!("       after: {}\n", waits.join(", ")));
        }
        match steps::preview(&executor.context(p.step)) {
            Ok(argv) => out.push_str(&format!("       $ {argv}\n")),
            Err(why) => out.push_str(&format!("       ! {}\n", redactor.redact(&why.to_string()))),
        }
    }
    let idle: Vec<usize> = compiled
        .order
        .iter()
        .copied()
        .filter(|i| !planned.iter().any(|p| p.step == *i))
        .collect();
    if !idle.is_empty() {
        out.push_str("not running:\n");
        for i in idle {
            let s = &compiled.steps[i];
            let tz = compiled.plans[s.plan].timezone.value;
            let when = match &decisions[i] {
                Decision::NotDue {
                    next: Some(n),
                    reason,
                } => format!("next {} ({reason})", due::local(*n, tz)),
                d => d.reason().to_string(),
            };
            out.push_str(&format!("  {}  {when}\n", s.id));
        }
    }
    out
}

/// The plans do not load: the alert channels the last good plans had get `check` (once, on
/// change); what each said goes to stderr, after the diagnostics.
pub fn plans_broken(app: &App, check: &crate::health::Check) {
    // No state yet: no plan ever loaded here, so no channel is known (nothing is created).
    if !app.state.value.exists() {
        return;
    }
    let store = match app.open_store() {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "warning: cannot alert that the plans do not load: {}",
                e.message().trim()
            );
            return;
        }
    };
    for line in
        crate::alert::remembered::plans_broken(app.alerting(), &store, check, &app.env_redactor())
    {
        eprintln!("{line}");
    }
}
