//! `POST /api/actions/STEP`: a manual action from the page or an API client. The run takes the
//! apply lock (waiting a bounded time, else 409), is recorded with trigger `http` and the
//! token's name, and the request is answered 202 with the activity id as soon as the step
//! starts; the worker then stays with the run until it ends.

use serde_json::json;

use super::{Reply, Request, Site};
use crate::error::Failure;
use crate::recorder::Recorder;
use crate::runner::{Event, Trigger};
use crate::session::{self, Session};

fn reply_json(status: u16, body: serde_json::Value) -> Reply {
    let mut r = Reply::json(&body);
    r.status = status;
    r
}

pub fn run(site: &Site, request: Request, step: usize, token: &str, as_form: bool) {
    let compiled = site.compiled;
    let step_id = compiled.steps[step].id.clone();
    // The same session as `ops-run run STEP`: the lock, the orphan sweep, the hooks, the
    // recorder and its checks.
    let session = match Session::begin(site.app, compiled, site.action_wait) {
        Ok(s) => s,
        Err(Failure::Locked(holder)) => {
            let body = json!({ "error": format!("another apply holds the lock ({holder}); try again later"), "step": step_id });
            return super::send(request, reply_json(409, body));
        }
        Err(e) => {
            let msg = e.message();
            return super::send(request, Reply::text(500, msg.trim()));
        }
    };
    let planned = session::one(
        compiled,
        step,
        Trigger::Http,
        format!("requested over HTTP by {token}"),
    );
    let mut pending = Pending {
        request: Some(request),
        step,
        step_id: step_id.clone(),
        as_form,
    };
    let result = session.run(
        site.store,
        &planned,
        1,
        Some(json!({ "token": token })),
        &mut |event, recorder| pending.answer(event, recorder),
    );
    if let Err(e) = result {
        eprintln!("serve: action {step_id}: {}", e.message().trim());
    }
    if let Some(request) = pending.request.take() {
        super::send(
            request,
            reply_json(
                500,
                json!({ "error": "the step did not start", "step": step_id }),
            ),
        );
    }
}

/// The request still to be answered, for the step it asked for.
struct Pending {
    request: Option<Request>,
    step: usize,
    step_id: String,
    as_form: bool,
}

impl Pending {
    /// Answers the request when its step starts (or is skipped), with the activity's id: the
    /// recorder has written the row already.
    fn answer(&mut self, event: &Event, recorder: &Recorder) {
        let (step, skipped) = match event {
            Event::Started { step, .. } => (*step, false),
            Event::Skipped { step, .. } => (*step, true),
            Event::Finished { .. } => return,
        };
        if step != self.step {
            return;
        }
        let Some(request) = self.request.take() else {
            return;
        };
        let reply = if self.as_form && !skipped {
            // A browser form goes back to the page, which shows the run.
            let mut r = Reply::text(303, "started; back to the status page");
            r.extra.push(("Location", "/".into()));
            r
        } else {
            reply_json(
                202,
                json!({
                    "activity": recorder.id_of(step),
                    "step": self.step_id,
                    "status": if skipped { "skipped" } else { "running" },
                }),
            )
        };
        super::send(request, reply);
    }
}
