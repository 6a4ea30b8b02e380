//! One apply session: what `plan apply`, `run STEP` and an action over HTTP share. It takes the
//! lock, sweeps what a killed ops-run left behind, chooses the steps (with their hooks), runs
//! them with a recorder (failing when the log could not be written), and at the end of an apply
//! evaluates health, sends alerts and writes the metrics textfile. The commands only parse
//! their arguments and print.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::app::App;
use crate::artifact::layout;
use crate::clock::stamp;
use crate::due::Decision;
use crate::error::Failure;
use crate::exec::redact::Redactor;
use crate::exec::signals;
use crate::lock::{self, ApplyLock};
use crate::plan::compile::Compiled;
use crate::recorder::Recorder;
use crate::runner::{self, Event, Executor, Planned, Sink, Summary, Trigger};
use crate::steps::{self, Context, Outcome};
use crate::store::Store;

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
    fn ready(&self, step: usize) -> Result<(), String> {
        steps::ready(&self.context(step)).map_err(|e| e.to_string())
    }

    /// Every process the step starts shares its `timeout`: the deadline is absolute. A step
    /// that failed at its deadline is recorded `timeout`.
    fn execute(&self, step: usize) -> Outcome {
        let ctx = self.context(step);
        let timeout = ctx.step.timeout.value;
        let started = std::time::Instant::now();
        let mut outcome = crate::exec::escape::with_step_deadline(timeout, || steps::execute(&ctx));
        if outcome.status == steps::Status::Failed && started.elapsed() >= timeout {
            outcome.status = steps::Status::Timeout;
        }
        // A failed tool's own error line travels with the summary (`psql exited with status
        // 1` says nothing; `ERROR:  permission denied to create database` says what to fix).
        if outcome.status != steps::Status::Success
            && let Some(line) = crate::health::first_tool_error(&outcome.log_excerpt)
            && !outcome.summary.contains(&line)
        {
            outcome.summary = format!("{}: {line}", outcome.summary.trim_end());
        }
        outcome
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
                let when = when.words();
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
pub fn select(
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

/// One step asked for by hand (`run STEP`, an HTTP action), with its hooks.
pub fn one(compiled: &Compiled, step: usize, trigger: Trigger, reason: String) -> Vec<Planned> {
    with_hooks(
        compiled,
        vec![Planned {
            step,
            trigger,
            reason,
        }],
    )
}

/// An apply in progress: the lock is held while this value lives.
pub struct Session<'a> {
    pub app: &'a App,
    pub compiled: &'a Compiled,
    pub redactor: Redactor,
    /// What the session's run did, for the apply's heartbeat (the page shows it).
    ran: std::cell::RefCell<Option<Summary>>,
    _lock: ApplyLock,
}

impl<'a> Session<'a> {
    /// Takes the lock (waiting up to `wait`) and sweeps the temporary files of killed runs.
    pub fn begin(app: &'a App, compiled: &'a Compiled, wait: Duration) -> Result<Self, Failure> {
        let lock = take_lock(app, wait)?;
        for plan in &compiled.plans {
            lock::claim_base(Path::new(&plan.base.value), &app.state.value)?;
        }
        remove_orphans(compiled);
        let session = Session {
            app,
            compiled,
            redactor: app.redactor(compiled),
            ran: std::cell::RefCell::new(None),
            _lock: lock,
        };
        let executor = session.executor();
        for step in 0..compiled.steps.len() {
            for line in steps::sweep(&executor.context(step)) {
                eprintln!("{line}");
            }
        }
        Ok(session)
    }

    fn executor(&self) -> StepExecutor<'_> {
        StepExecutor {
            app: self.app,
            compiled: self.compiled,
            redactor: &self.redactor,
        }
    }

    /// Runs `planned` (up to `jobs` at once), recording every event in `store` (with
    /// `extra_meta` merged into each row's meta) and then handing it to `after`, which sees
    /// the recorder (for a row's id). Fails when a row could not be written.
    pub fn run(
        &self,
        store: &Store,
        planned: &[Planned],
        jobs: usize,
        extra_meta: Option<Value>,
        after: &mut dyn FnMut(&Event, &Recorder),
    ) -> Result<Summary, Failure> {
        let executor = self.executor();
        let mut recorder = Recorder::new(store, self.compiled, &self.app.clock, &self.redactor);
        recorder.extra_meta = extra_meta;
        let names: Vec<String> = self.compiled.steps.iter().map(|s| s.id.clone()).collect();
        let summary = {
            let mut sink = Recorded {
                recorder: &mut recorder,
                after,
            };
            runner::run(
                &self.compiled.graph,
                &names,
                planned,
                jobs,
                &executor,
                &mut sink,
                &signals::interrupted,
            )
        };
        *self.ran.borrow_mut() = Some(summary.clone());
        for e in &recorder.errors {
            eprintln!("error: {e}");
        }
        if recorder.errors.is_empty() {
            Ok(summary)
        } else {
            Err(Failure::Runtime(
                "activities could not all be recorded".into(),
            ))
        }
    }

    /// The end of an apply, whatever ran: health, alerts on changes, the `last apply` mark and
    /// the metrics textfile. None of it changes the apply's result; problems are printed.
    pub fn finish(&self, store: &Store, metrics_textfile: Option<&Path>) {
        let app = self.app;
        let compiled = self.compiled;
        // The dead-man's heartbeat first: this apply counts in the health it evaluates.
        let now = stamp(app.clock.now());
        let ran = self.ran.borrow().clone().unwrap_or_default();
        let result = match (ran.failed, ran.skipped) {
            (0, 0) => "ok",
            _ => "failed",
        };
        let steps = (ran.succeeded + ran.failed + ran.skipped) as i64;
        for p in &compiled.plans {
            if let Err(e) = store.record_apply(&p.decl.name.value, &now, result, steps) {
                eprintln!("warning: cannot record the apply: {e}");
            }
        }
        match crate::facts::checks(compiled, Some(store), app.clock.now()) {
            Ok(checks) => {
                // Kept for the day the plans stop loading: who to tell.
                crate::alert::remembered::keep(store, compiled);
                let _sender = crate::alert::sender_lock(&app.state.value);
                let _delivered =
                    crate::alert::notify(app.alerting(), compiled, store, &checks, &self.redactor);
                if let Some(path) = metrics_textfile
                    && let Err(e) =
                        crate::web::metrics::write_textfile(compiled, store, &checks, path)
                {
                    eprintln!(
                        "warning: cannot write the metrics textfile {}: {e}",
                        path.display()
                    );
                }
            }
            Err(e) => eprintln!("warning: cannot evaluate health: {e}"),
        }
    }
}

/// The recorder first (so the row exists), then whoever else listens.
struct Recorded<'r, 's, 'f> {
    recorder: &'r mut Recorder<'s>,
    after: &'f mut dyn FnMut(&Event, &Recorder),
}

impl Sink for Recorded<'_, '_, '_> {
    fn event(&mut self, event: &Event) {
        self.recorder.event(event);
        (self.after)(event, self.recorder);
    }
}

/// Temporary files left by a killed ops-run (a half-written dump, marker, log or report, a
/// credentials file) are removed by the next apply, under the lock, whether or not their step
/// runs now.
fn remove_orphans(compiled: &Compiled) {
    for p in crate::engines::secret_file::remove_orphans() {
        eprintln!(
            "removed the credentials file {} (left by an ops-run that was killed)",
            p.display()
        );
    }
    for plan in &compiled.plans {
        let base = Path::new(&plan.base.value);
        let mut dirs = vec![base.join("reports")];
        for area in layout::Area::ALL {
            dirs.push(base.join(area.folder()));
            dirs.extend(layout::area_dirs(base, plan.decl.step_areas(), area));
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

fn take_lock(app: &App, wait: Duration) -> Result<ApplyLock, Failure> {
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
    Ok(lock::acquire(
        &app.state.value,
        wait,
        &stamp(app.clock.now()),
    )?)
}
