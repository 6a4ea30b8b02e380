//! The runner's events as terminal lines: one per finished or skipped step.

use std::io::Write;

use crate::exec::redact::Redactor;
use crate::plan::compile::Compiled;
use crate::runner::{Event, Sink};
use crate::steps::Status;

pub struct Console<'a, W: Write> {
    pub out: W,
    pub compiled: &'a Compiled,
    pub redactor: &'a Redactor,
}

/// How many lines of a failed step's output the console shows.
const FAILURE_LINES: usize = 5;

impl<W: Write> Sink for Console<'_, W> {
    fn event(&mut self, event: &Event) {
        let line = match event {
            Event::Started { .. } => return,
            Event::Finished {
                step,
                outcome,
                duration,
            } => {
                let id = &self.compiled.steps[*step].id;
                let secs = duration.as_secs_f64();
                let mut l = if outcome.status == Status::Success {
                    match outcome.summary.as_str() {
                        "" => format!("ok       {id} ({secs:.2}s)\n"),
                        what => format!("ok       {id} ({secs:.2}s): {what}\n"),
                    }
                } else {
                    let mut l = format!(
                        "{:<8} {id} ({secs:.2}s): {}\n",
                        outcome.status.as_str(),
                        outcome.summary
                    );
                    let lines: Vec<&str> = outcome
                        .log_excerpt
                        .lines()
                        .filter(|l| !l.starts_with("ops-run: ") && *l != outcome.summary)
                        .collect();
                    for tail in &lines[lines.len().saturating_sub(FAILURE_LINES)..] {
                        l.push_str(&format!("         | {tail}\n"));
                    }
                    l
                };
                for x in &outcome.extra {
                    let status = if x.status == Status::Success {
                        "ok"
                    } else {
                        x.status.as_str()
                    };
                    l.push_str(&format!("{status:<8} {id} {}: {}\n", x.kind, x.summary));
                }
                l
            }
            Event::Skipped { step, why, .. } => {
                format!(
                    "skipped  {} ({})\n",
                    self.compiled.steps[*step].id,
                    why.trim_start_matches("skipped: ")
                )
            }
        };
        let _ = self.out.write_all(self.redactor.redact(&line).as_bytes());
        let _ = self.out.flush();
    }
}

/// Sends each event to several sinks in turn.
pub struct Tee<'a>(pub Vec<&'a mut dyn Sink>);

impl Sink for Tee<'_> {
    fn event(&mut self, event: &Event) {
        for s in self.0.iter_mut() {
            s.event(event);
        }
    }
}
