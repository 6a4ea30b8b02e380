//! `POST /api/actions/STEP`: a manual action from the page or an API client. The run takes the
//! apply lock (waiting a bounded time, else 409), is recorded with trigger `http` and the
//! token's name, and the request is answered 202 with the activity id as soon as the step
//! starts; the worker then stays with the run until it ends.

use serde_json::json;
use tiny_http::{Method, Request};

use super::{Reply, Site};
use crate::console::Tee;
use crate::lock::{self, LockError};
use crate::runner::{self, Event, Planned, Sink, Trigger};
use crate::store::recorder::Recorder;

fn reply_json(status: u16, body: serde_json::Value) -> Reply {
    let mut r = Reply::json(&body);
    r.status = status;
    r
}

pub fn run(site: &Site, request: Request, step: usize, token: &str, as_form: bool) {
    let compiled = site.compiled;
    let app = site.app;
    let step_id = compiled.steps[step].id.clone();
    let lock = match lock::acquire(
        &app.state.value,
        site.action_wait,
        &crate::clock::stamp(app.clock.now()),
    ) {
        Ok(l) => l,
        Err(LockError::Held(holder)) => {
            let body = json!({ "error": format!("another apply holds the lock ({holder}); try again later"), "step": step_id });
            return super::send(request, &Method::Post, reply_json(409, body));
        }
        Err(LockError::Io(e)) => return super::send(request, &Method::Post, Reply::text(500, &e)),
    };
    let redactor = app.redactor(compiled);
    let planned = crate::commands::apply::with_hooks(
        compiled,
        vec![Planned {
            step,
            trigger: Trigger::Http,
            reason: format!("requested over HTTP by {token}"),
        }],
    );
    let executor = crate::commands::apply::StepExecutor {
        app,
        compiled,
        redactor: &redactor,
    };
    let mut recorder = Recorder::new(&site.store, compiled, &app.clock, &redactor);
    recorder.extra_meta = Some(json!({ "token": token }));
    let names: Vec<String> = compiled.steps.iter().map(|s| s.id.clone()).collect();
    let mut pending = Pending {
        request: Some(request),
        step,
        step_id: step_id.clone(),
        as_form,
    };
    {
        let mut ordered = Ordered {
            recorder: &mut recorder,
            answer: &mut pending,
        };
        let mut tee = Tee(vec![&mut ordered]);
        runner::run(
            &compiled.graph,
            &names,
            &planned,
            1,
            &executor,
            &mut tee,
            &crate::exec::signals::interrupted,
        );
    }
    if let Some(request) = pending.request.take() {
        super::send(
            request,
            &Method::Post,
            reply_json(
                500,
                json!({ "error": "the step did not start", "step": step_id }),
            ),
        );
    }
    drop(lock);
}

/// The request still to be answered, for the step it asked for.
struct Pending {
    request: Option<Request>,
    step: usize,
    step_id: String,
    as_form: bool,
}

/// The recorder first (so the row exists), then the answer with the row's id.
struct Ordered<'a, 's> {
    recorder: &'a mut Recorder<'s>,
    answer: &'a mut Pending,
}

impl Sink for Ordered<'_, '_> {
    fn event(&mut self, event: &Event) {
        self.recorder.event(event);
        let (step, skipped) = match event {
            Event::Started { step, .. } => (*step, false),
            Event::Skipped { step, .. } => (*step, true),
            Event::Finished { .. } => return,
        };
        if step != self.answer.step {
            return;
        }
        let Some(request) = self.answer.request.take() else {
            return;
        };
        let reply = if self.answer.as_form && !skipped {
            // A browser form goes back to the page, which shows the run.
            let mut r = Reply::text(303, "started; back to the status page");
            r.extra.push(("Location", "/".into()));
            r
        } else {
            reply_json(
                202,
                json!({
                    "activity": self.recorder.id_of(step),
                    "step": self.answer.step_id,
                    "status": if skipped { "skipped" } else { "running" },
                }),
            )
        };
        super::send(request, &Method::Post, reply);
    }
}
