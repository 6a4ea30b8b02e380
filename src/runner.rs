//! Walks the selected steps in graph order, independent ones in parallel up to `jobs`, and
//! emits events; it knows nothing of the store or the console.

use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::activity::Outcome;
use crate::graph::{EdgeKind, Graph};

pub use crate::activity::Trigger;

/// A step chosen to run, and why.
#[derive(Clone, Debug)]
pub struct Planned {
    pub step: usize,
    pub trigger: Trigger,
    pub reason: String,
}

pub enum Event<'a> {
    Started {
        step: usize,
        trigger: Trigger,
    },
    Finished {
        step: usize,
        outcome: &'a Outcome,
        duration: Duration,
    },
    Skipped {
        step: usize,
        trigger: Trigger,
        why: String,
    },
}

pub trait Sink {
    fn event(&mut self, event: &Event);
}

/// Runs one step to its end; called from worker threads.
pub trait Executor: Sync {
    /// Whether the step can run now (asked on the main thread when its turn comes);
    /// `Err(why)` skips it and what requires it.
    fn ready(&self, _step: usize) -> Result<(), String> {
        Ok(())
    }

    fn execute(&self, step: usize) -> Outcome;
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub succeeded: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Summary {
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.skipped == 0
    }
}

/// Runs `planned` respecting `graph` among them. A step whose requirement failed (or was
/// skipped) is skipped; after an interruption nothing new starts.
pub fn run(
    graph: &Graph,
    names: &[String],
    planned: &[Planned],
    jobs: usize,
    executor: &dyn Executor,
    sink: &mut dyn Sink,
    interrupted: &dyn Fn() -> bool,
) -> Summary {
    let jobs = jobs.max(1);
    let selected: BTreeSet<usize> = planned.iter().map(|p| p.step).collect();
    let trigger: HashMap<usize, Trigger> = planned.iter().map(|p| (p.step, p.trigger)).collect();
    let mut pending: Vec<usize> = planned.iter().map(|p| p.step).collect();
    let mut done: HashMap<usize, bool> = HashMap::new();
    let mut skipped: BTreeSet<usize> = BTreeSet::new();
    let mut summary = Summary::default();
    let (tx, rx) = mpsc::channel::<(usize, Outcome, Duration)>();

    std::thread::scope(|scope| {
        let mut running = 0usize;
        loop {
            let mut i = 0;
            while i < pending.len() {
                let s = pending[i];
                let preds: Vec<_> = graph
                    .predecessors(s)
                    .filter(|e| selected.contains(&e.from))
                    .collect();
                if preds
                    .iter()
                    .any(|e| !done.contains_key(&e.from) && !skipped.contains(&e.from))
                {
                    i += 1;
                    continue;
                }
                // An `on-failure` hook whose step did not fail is left out, without a record:
                // it only exists for the failure.
                if preds.iter().any(|e| {
                    e.kind == EdgeKind::OnFailure
                        && (skipped.contains(&e.from) || done.get(&e.from) == Some(&true))
                }) {
                    skipped.insert(s);
                    pending.remove(i);
                    continue;
                }
                let blocker = preds.iter().find(|e| {
                    e.kind == EdgeKind::Requires
                        && (skipped.contains(&e.from) || done.get(&e.from) != Some(&true))
                });
                // A failed requirement, an interruption, or (when a slot is free) a step
                // with nothing to work on: each is recorded as skipped, the same way.
                let blocked = blocker
                    .map(|b| {
                        if skipped.contains(&b.from) {
                            format!("skipped: {} was skipped", names[b.from])
                        } else {
                            format!("skipped: {} did not succeed", names[b.from])
                        }
                    })
                    .or_else(|| {
                        interrupted()
                            .then(|| "skipped: ops-run was interrupted before it started".into())
                    });
                let why = match blocked {
                    Some(why) => Some(why),
                    None if running >= jobs => break,
                    None => executor.ready(s).err().map(|why| format!("skipped: {why}")),
                };
                if let Some(why) = why {
                    sink.event(&Event::Skipped {
                        step: s,
                        trigger: trigger[&s],
                        why,
                    });
                    skipped.insert(s);
                    summary.skipped += 1;
                    pending.remove(i);
                    continue;
                }
                sink.event(&Event::Started {
                    step: s,
                    trigger: trigger[&s],
                });
                let tx = tx.clone();
                scope.spawn(move || {
                    let start = Instant::now();
                    // A panic is a bug, but it must not leave the apply waiting for ever with
                    // the lock held: it fails this step like any other error.
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        executor.execute(s)
                    }))
                    .unwrap_or_else(|panic| {
                        let why = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        Outcome::failed(format!(
                            "ops-run failed inside this step (a bug; please report it): {why}"
                        ))
                    });
                    let _ = tx.send((s, outcome, start.elapsed()));
                });
                running += 1;
                pending.remove(i);
            }
            if running == 0 {
                break;
            }
            let Ok((s, outcome, duration)) = rx.recv() else {
                break;
            };
            running -= 1;
            sink.event(&Event::Finished {
                step: s,
                outcome: &outcome,
                duration,
            });
            if outcome.passed() {
                summary.succeeded += 1;
            } else {
                summary.failed += 1;
            }
            done.insert(s, outcome.passed());
        }
    });
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::Status;
    use std::sync::Mutex;

    struct Mock {
        fail: Vec<usize>,
        unready: Vec<usize>,
        panics: Vec<usize>,
        log: Mutex<Vec<usize>>,
        concurrent: Mutex<(usize, usize)>,
    }

    impl Executor for Mock {
        fn ready(&self, step: usize) -> Result<(), String> {
            match self.unready.contains(&step) {
                true => Err("nothing to test".into()),
                false => Ok(()),
            }
        }

        fn execute(&self, step: usize) -> Outcome {
            {
                let mut c = self.concurrent.lock().unwrap();
                c.0 += 1;
                c.1 = c.1.max(c.0);
            }
            std::thread::sleep(Duration::from_millis(20));
            self.log.lock().unwrap().push(step);
            if self.panics.contains(&step) {
                self.concurrent.lock().unwrap().0 -= 1;
                panic!("step {step} overflowed");
            }
            self.concurrent.lock().unwrap().0 -= 1;
            if self.fail.contains(&step) {
                Outcome::failed("boom")
            } else {
                Outcome {
                    status: Status::Success,
                    meta: serde_json::json!({}),
                    log_excerpt: String::new(),
                    summary: "ok".into(),
                    extra: Vec::new(),
                    tolerated: false,
                }
            }
        }
    }

    #[derive(Default)]
    struct Record(Vec<String>);

    impl Sink for Record {
        fn event(&mut self, e: &Event) {
            self.0.push(match e {
                Event::Started { step, .. } => format!("start {step}"),
                Event::Finished { step, outcome, .. } => {
                    format!("end {step} {}", outcome.status.as_str())
                }
                Event::Skipped { step, .. } => format!("skip {step}"),
            });
        }
    }

    fn go(
        graph: &Graph,
        steps: &[usize],
        fail: Vec<usize>,
        jobs: usize,
    ) -> (Summary, Vec<String>, usize) {
        go_with(graph, steps, fail, vec![], vec![], jobs)
    }

    fn go_with(
        graph: &Graph,
        steps: &[usize],
        fail: Vec<usize>,
        unready: Vec<usize>,
        panics: Vec<usize>,
        jobs: usize,
    ) -> (Summary, Vec<String>, usize) {
        let names: Vec<String> = (0..graph.len).map(|i| format!("s{i}")).collect();
        let planned: Vec<Planned> = steps
            .iter()
            .map(|&s| Planned {
                step: s,
                trigger: Trigger::Schedule,
                reason: String::new(),
            })
            .collect();
        let mock = Mock {
            fail,
            unready,
            panics,
            log: Mutex::new(vec![]),
            concurrent: Mutex::new((0, 0)),
        };
        let mut rec = Record::default();
        let summary = run(graph, &names, &planned, jobs, &mock, &mut rec, &|| false);
        let peak = mock.concurrent.lock().unwrap().1;
        (summary, rec.0, peak)
    }

    #[test]
    fn a_failure_skips_dependents_not_neighbours() {
        // 0 → 1 → 2, and 3 unrelated.
        let mut g = Graph::new(4);
        g.add(0, 1, EdgeKind::Requires);
        g.add(1, 2, EdgeKind::Requires);
        let (summary, events, _) = go(&g, &[0, 1, 2, 3], vec![0], 1);
        assert_eq!(
            summary,
            Summary {
                succeeded: 1,
                failed: 1,
                skipped: 2
            }
        );
        assert!(events.contains(&"skip 1".to_string()) && events.contains(&"skip 2".to_string()));
        assert!(events.contains(&"end 3 success".to_string()));
    }

    #[test]
    fn a_step_not_ready_is_skipped_with_what_requires_it_never_run() {
        // 0 → 1 → 2: 1 has nothing to work on when its turn comes.
        let mut g = Graph::new(3);
        g.add(0, 1, EdgeKind::Requires);
        g.add(1, 2, EdgeKind::Requires);
        let (summary, events, _) = go_with(&g, &[0, 1, 2], vec![], vec![1], vec![], 1);
        assert_eq!(
            summary,
            Summary {
                succeeded: 1,
                failed: 0,
                skipped: 2
            }
        );
        assert_eq!(events, vec!["start 0", "end 0 success", "skip 1", "skip 2"]);
    }

    #[test]
    fn a_step_that_panics_fails_and_the_run_goes_on() {
        // 0 → 1, and 2 beside: 0 panics.
        let mut g = Graph::new(3);
        g.add(0, 1, EdgeKind::Requires);
        let (summary, events, _) = go_with(&g, &[0, 1, 2], vec![], vec![], vec![0], 1);
        assert_eq!(
            summary,
            Summary {
                succeeded: 1,
                failed: 1,
                skipped: 1
            }
        );
        assert!(events.contains(&"end 0 failed".to_string()), "{events:?}");
    }

    #[test]
    fn an_ordering_edge_waits_but_does_not_skip() {
        let mut g = Graph::new(2);
        g.add(0, 1, EdgeKind::Order);
        let (summary, events, _) = go(&g, &[0, 1], vec![0], 2);
        assert_eq!(
            summary,
            Summary {
                succeeded: 1,
                failed: 1,
                skipped: 0
            }
        );
        assert_eq!(
            events,
            vec!["start 0", "end 0 failed", "start 1", "end 1 success"]
        );
    }

    #[test]
    fn independent_steps_run_concurrently_up_to_jobs() {
        let g = Graph::new(6);
        let (_, _, peak) = go(&g, &[0, 1, 2, 3, 4, 5], vec![], 2);
        assert_eq!(peak, 2);
        let (_, _, peak) = go(&g, &[0, 1, 2, 3, 4, 5], vec![], 1);
        assert_eq!(peak, 1);
    }

    #[test]
    fn unselected_requirements_do_not_block() {
        let mut g = Graph::new(2);
        g.add(0, 1, EdgeKind::Requires);
        let (summary, _, _) = go(&g, &[1], vec![0], 1);
        assert_eq!(
            summary,
            Summary {
                succeeded: 1,
                failed: 0,
                skipped: 0
            }
        );
    }
}
