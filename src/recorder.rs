//! The runner's events written to `ops_activities`: a row at start, finished at the end.

use std::collections::HashMap;

use serde_json::Value;

use crate::clock::{Clock, stamp};
use crate::exec::redact::Redactor;
use crate::plan::compile::Compiled;
use crate::runner::{Event, Sink, Trigger};
use crate::store::Store;

pub struct Recorder<'a> {
    pub store: &'a Store,
    pub compiled: &'a Compiled,
    pub clock: &'a Clock,
    pub redactor: &'a Redactor,
    ids: HashMap<usize, i64>,
    triggers: HashMap<usize, Trigger>,
    /// Store errors seen (the run goes on; the command fails at the end).
    pub errors: Vec<String>,
    /// Added to every row's `meta` (who asked, for actions over HTTP).
    pub extra_meta: Option<Value>,
}

impl<'a> Recorder<'a> {
    pub fn new(
        store: &'a Store,
        compiled: &'a Compiled,
        clock: &'a Clock,
        redactor: &'a Redactor,
    ) -> Self {
        Recorder {
            store,
            compiled,
            clock,
            redactor,
            ids: HashMap::new(),
            triggers: HashMap::new(),
            errors: Vec::new(),
            extra_meta: None,
        }
    }

    /// The activity id of a step that has started.
    pub fn id_of(&self, step: usize) -> Option<i64> {
        self.ids.get(&step).copied()
    }

    /// A step's follow-up activities (a dump's prune), each a finished row of its own.
    fn extras(
        &self,
        step: usize,
        outcome: &crate::activity::Outcome,
        now: &str,
    ) -> rusqlite::Result<()> {
        let s = &self.compiled.steps[step];
        let plan = &self.compiled.plans[s.plan].decl.name.value;
        let trigger = self
            .triggers
            .get(&step)
            .copied()
            .unwrap_or(Trigger::Schedule);
        for x in &outcome.extra {
            let started = crate::clock::stamp(self.clock.now() - x.duration);
            let id = self
                .store
                .start(plan, s.name(), x.kind, trigger, &started)?;
            self.store.finish(
                id,
                x.status.into(),
                now,
                x.duration.as_millis() as i64,
                &self.redact_json(&x.meta),
                &self.redactor.redact(&x.log_excerpt),
            )?;
        }
        Ok(())
    }

    /// Meta goes through the redactor value by value, whatever the step put in it;
    /// `extra_meta` is merged in.
    fn redact_json(&self, v: &Value) -> Value {
        let mut v = v.clone();
        if let (Some(Value::Object(extra)), Value::Object(map)) = (&self.extra_meta, &mut v) {
            for (k, x) in extra {
                map.insert(k.clone(), x.clone());
            }
        }
        self.redactor.redact_json(&v)
    }
}

impl Sink for Recorder<'_> {
    fn event(&mut self, event: &Event) {
        let now = stamp(self.clock.now());
        let result = match event {
            Event::Started { step, trigger } => {
                let s = &self.compiled.steps[*step];
                let plan = &self.compiled.plans[s.plan].decl.name.value;
                self.store
                    .start(plan, s.name(), s.decl.kind.activity_type(), *trigger, &now)
                    .map(|id| {
                        self.ids.insert(*step, id);
                        self.triggers.insert(*step, *trigger);
                    })
            }
            Event::Finished {
                step,
                outcome,
                duration,
            } => match self.ids.get(step) {
                Some(&id) => self
                    .store
                    .finish(
                        id,
                        outcome.status.into(),
                        &now,
                        duration.as_millis() as i64,
                        &self.redact_json(&outcome.meta),
                        &self.redactor.redact(&outcome.log_excerpt),
                    )
                    .and_then(|()| self.extras(*step, outcome, &now)),
                None => Ok(()),
            },
            Event::Skipped { step, trigger, why } => {
                let s = &self.compiled.steps[*step];
                let plan = &self.compiled.plans[s.plan].decl.name.value;
                self.store
                    .skipped(
                        plan,
                        s.name(),
                        s.decl.kind.activity_type(),
                        *trigger,
                        &now,
                        &self.redact_json(&serde_json::json!({})),
                        why,
                    )
                    .map(|_| ())
            }
        };
        if let Err(e) = result {
            self.errors.push(format!(
                "cannot record an activity in {}: {e}",
                self.store.path.display()
            ));
        }
    }
}
