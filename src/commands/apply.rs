//! `plan apply` and `run STEP`: choose the steps, take the lock, run them, record everything.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::time::Duration;

use crate::alert::ping;
use crate::app::App;
use crate::artifact::layout;
use crate::cli::ApplyArgs;
use crate::clock::stamp;
use crate::console::{Console, Tee};
use crate::due::{self, Decision};
use crate::error::Failure;
use crate::exec::redact::Redactor;
use crate::exec::signals;
use crate::lock::{self, LockError};
use crate::plan::compile::{Compiled, HookWhen};
use crate::runner::{self, Executor, Planned, Trigger};
use crate::steps::{self, Context, Outcome};
use crate::store::recorder::Recorder;
use crate::units::duration;

/// The real executor: builds each step's context and runs its kind.
pub struct StepExecutor<'a> {
    pub app: &'a App,
    pub compiled: &'a Compiled,
    pub redactor: &'a Redactor,
}

impl StepExecutor<'_> {
    /// What a step of kind `step` sees of the world.
    pub fn context(&self, step: usize) -> Context<'_> {
        let s = &self.compiled.steps[step];
        Context {
            compiled: self.compiled,
            plan: &self.compiled.plans[s.plan],
            step: s,
            env: &self.app.env,
            redactor: self.redactor,
            clock: &self.app.clock,
            state: Some(&self.app.state.value),
            plans: &self.app.plans,
        }
    }
}

impl Executor for StepExecutor<'_> {
    fn execute(&self, step: usize) -> Outcome {
        steps::execute(&self.context(step))
    }
}

/// Adds the hooks of every planned step (and their hooks), then sorts in graph order.
pub fn with_hooks(compiled: &Compiled, mut planned: Vec<Planned>) -> Vec<Planned> {
    let mut chosen: BTreeSet<usize> = planned.iter().map(|p| p.step).collect();
    let mut i = 0;
    while i < planned.len() {
        let target = planned[i].step;
        let trigger = planned[i].trigger;
        for (h, s) in compiled.steps.iter().enumerate() {
            if chosen.contains(&h) {
                continue;
            }
            if let Some((_, when)) = s.hook_of.iter().find(|(t, _)| *t == target) {
                let when = if *when == HookWhen::Before {
                    "before"
                } else {
                    "after"
                };
                chosen.insert(h);
                planned.push(Planned {
                    step: h,
                    trigger,
                    reason: format!("hook: runs {when} {}", compiled.steps[target].id),
                });
            }
        }
        i += 1;
    }
    let position: Vec<usize> = {
        let mut p = vec![0; compiled.steps.len()];
        for (i, &s) in compiled.order.iter().enumerate() {
            p[s] = i;
        }
        p
    };
    planned.sort_by_key(|p| position[p.step]);
    planned
}

/// Due steps (or the `--only` ones), with `--force` overriding the due decision.
fn select(
    compiled: &Compiled,
    decisions: &[Decision],
    only: &[usize],
    force: bool,
) -> Vec<Planned> {
    let mut planned = Vec::new();
    for (i, s) in compiled.steps.iter().enumerate() {
        if !only.is_empty() && !only.contains(&i) {
            continue;
        }
        let d = &decisions[i];
        if d.is_due() {
            planned.push(Planned {
                step: i,
                trigger: Trigger::Schedule,
                reason: format!("due: {}", d.reason()),
            });
        } else if force {
            planned.push(Planned {
                step: i,
                trigger: Trigger::Force,
                reason: format!("forced ({})", d.reason()),
            });
        } else if only.contains(&i) && s.schedule.is_none() {
            planned.push(Planned {
                step: i,
                trigger: Trigger::Manual,
                reason: "named with --only".into(),
            });
        }
    }
    with_hooks(compiled, planned)
}

fn parse_wait(wait: Option<&str>) -> Result<Duration, Failure> {
    match wait {
        None => Ok(Duration::ZERO),
        Some(w) => duration::parse(w).map_err(|e| Failure::Usage(format!("--wait: {e}"))),
    }
}

pub fn run(app: &App, args: &ApplyArgs) -> Result<(), Failure> {
    let (_loaded, compiled) = app.load()?;
    let only = args
        .only
        .iter()
        .map(|n| compiled.find(n).map_err(Failure::Usage))
        .collect::<Result<Vec<usize>, Failure>>()?;
    let wait = parse_wait(args.wait.as_deref())?;
    let redactor = app.redactor(&compiled);
    if args.dry_run {
        let decisions = crate::commands::show::decisions(app, &compiled)?;
        let planned = select(&compiled, &decisions, &only, args.force);
        crate::out!(
            "{}",
            dry_run(app, &compiled, &decisions, &planned, &redactor, args.jobs)
        );
        return Ok(());
    }
    let _lock = take_lock(app, wait)?;
    remove_orphans(&compiled);
    // One connection for the whole apply: the due decisions, the run, health and alerts.
    let store = app.open_store()?;
    let decisions =
        crate::commands::show::decisions_from(&compiled, Some(&store), app.clock.now())?;
    let planned = select(&compiled, &decisions, &only, args.force);
    ping::send(app, &compiled, ping::Signal::Start, &redactor);
    let result = if planned.is_empty() {
        if std::io::stdout().is_terminal() {
            crate::outln!("nothing due");
        }
        Ok(())
    } else {
        execute(
            app,
            &compiled,
            &redactor,
            &planned,
            args.jobs as usize,
            &store,
        )
    };
    // Health and alerts at the end of every apply, whatever ran; they never change its result.
    match crate::facts::checks(&compiled, Some(&store), app.clock.now()) {
        Ok(checks) => {
            crate::alert::notify(app, &compiled, &store, &checks, &redactor);
            record_applies(app, &compiled, &store);
            if let Some(path) = &args.metrics_textfile
                && let Err(e) =
                    crate::web::metrics::write_textfile(&compiled, &store, &checks, path)
            {
                eprintln!(
                    "warning: cannot write the metrics textfile {}: {e}",
                    path.display()
                );
            }
        }
        Err(e) => eprintln!("warning: cannot evaluate health: {e}"),
    }
    let signal = if result.is_ok() {
        ping::Signal::Success
    } else {
        ping::Signal::Fail
    };
    ping::send(app, &compiled, signal, &redactor);
    result
}

pub fn run_one(app: &App, name: &str, wait: Option<&str>) -> Result<(), Failure> {
    let (_loaded, compiled) = app.load()?;
    let step = compiled.find(name).map_err(Failure::Usage)?;
    let wait = parse_wait(wait)?;
    let redactor = app.redactor(&compiled);
    let _lock = take_lock(app, wait)?;
    remove_orphans(&compiled);
    let planned = with_hooks(
        &compiled,
        vec![Planned {
            step,
            trigger: Trigger::Manual,
            reason: "run by hand".into(),
        }],
    );
    let store = app.open_store()?;
    execute(app, &compiled, &redactor, &planned, 1, &store)
}

fn record_applies(app: &App, compiled: &Compiled, store: &crate::store::Store) {
    let now = stamp(app.clock.now());
    for p in &compiled.plans {
        if let Err(e) = store.record_apply(&p.decl.name.value, &now) {
            eprintln!("warning: cannot record the apply: {e}");
        }
    }
}

/// Temporary files left by a killed ops-run (a half-written dump, marker, log or report) are
/// removed by the next apply, under the lock, whether or not their step runs now.
fn remove_orphans(compiled: &Compiled) {
    for plan in &compiled.plans {
        let base = std::path::Path::new(&plan.base.value);
        let mut dirs = vec![base.join("reports")];
        for area in layout::Area::ALL {
            dirs.push(base.join(area.folder()));
            dirs.extend(layout::area_dirs(base, &plan.decl.steps, area));
        }
        dirs.dedup();
        for dir in dirs {
            for p in layout::remove_orphans(&dir) {
                eprintln!(
                    "removed {} (left by an ops-run that was stopped)",
                    p.display()
                );
            }
        }
    }
}

fn take_lock(app: &App, wait: Duration) -> Result<lock::ApplyLock, Failure> {
    if let Some(dir) = app
        .state
        .value
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|e| {
            Failure::Runtime(format!(
                "cannot create the state folder {}: {e} (set --state or OPS_STATE)",
                dir.display()
            ))
        })?;
    }
    lock::acquire(&app.state.value, wait, &stamp(app.clock.now())).map_err(|e| match e {
        LockError::Held(holder) => Failure::Locked(holder),
        LockError::Io(m) => Failure::Runtime(m),
    })
}

fn execute(
    app: &App,
    compiled: &Compiled,
    redactor: &Redactor,
    planned: &[Planned],
    jobs: usize,
    store: &crate::store::Store,
) -> Result<(), Failure> {
    signals::install();
    let executor = StepExecutor {
        app,
        compiled,
        redactor,
    };
    let mut recorder = Recorder::new(store, compiled, &app.clock, redactor);
    let mut console = Console {
        out: std::io::stdout(),
        compiled,
        redactor,
    };
    let names: Vec<String> = compiled.steps.iter().map(|s| s.id.clone()).collect();
    let summary = {
        let mut tee = Tee(vec![&mut recorder, &mut console]);
        runner::run(
            &compiled.graph,
            &names,
            planned,
            jobs,
            &executor,
            &mut tee,
            &signals::interrupted,
        )
    };
    for e in &recorder.errors {
        eprintln!("error: {e}");
    }
    crate::outln!(
        "{} succeeded, {} failed, {} skipped",
        summary.succeeded,
        summary.failed,
        summary.skipped
    );
    if !recorder.errors.is_empty() {
        return Err(Failure::Runtime(
            "activities could not all be recorded".into(),
        ));
    }
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
            Err(why) => out.push_str(&format!("       ! {}\n", redactor.redact(&why))),
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
