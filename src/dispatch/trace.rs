//! The dispatcher's spans (see `crate::telemetry`): a notification's routing, and each attempt
//! of each run made from it, under the routing. Nothing is made while traces are off.

use crate::actions::run_id;
use crate::store::{Claim, Finish, NewRun, RunRow, StoredNotification};
use crate::telemetry::{Kind, Span};

/// The span of one attempt of a run, under its notification's routing; `None` when traces are
/// off or the notification belongs to no trace.
pub(super) fn action_span(run: &RunRow, claim: &Claim) -> Option<Span> {
    let stored = &claim.notification;
    let ingest = crate::telemetry::stored(stored.notification.trace.as_deref())?;
    let route = crate::telemetry::route_context(&ingest, stored.id);
    let mut span = Span::start(
        format!("action {}", run.action),
        Kind::Internal,
        Some(route),
    );
    span.set("hub.action", run.action.clone());
    span.set("hub.problem_id", run.problem_key.clone());
    span.set("hub.source", run.source.as_str());
    span.set("hub.state", run.state.clone());
    span.set("hub.run_id", run_id(&run.idem_key));
    Some(span)
}

/// The routing span of each notification of a pass that belongs to a trace: which actions it
/// chose, and how many runs were new (a redelivery's are already known).
pub(super) fn routing(planned: &[(StoredNotification, Vec<NewRun>)], new: &[usize], began: u64) {
    for ((stored, runs), new) in planned.iter().zip(new) {
        let n = &stored.notification;
        let Some(ingest) = crate::telemetry::stored(n.trace.as_deref()) else {
            continue;
        };
        let context = crate::telemetry::route_context(&ingest, stored.id);
        let mut span = Span::with_context("route", Kind::Internal, context, Some(ingest.span_id));
        span.start_ns = began;
        let mut actions: Vec<String> = runs.iter().map(|r| r.action.clone()).collect();
        actions.sort();
        actions.dedup();
        span.set("hub.problem_id", n.problem_key.clone());
        span.set("hub.source", n.source.as_str());
        span.set("hub.state", n.state.clone());
        span.set("hub.actions", actions);
        span.set("hub.runs", runs.len());
        span.set("hub.new_runs", *new);
        span.end();
    }
}

/// Ends an attempt's span with what became of it; a retry or a failure is an error.
pub(super) fn attempted(mut span: Span, attempt: i64, manual: bool, finish: &Finish) {
    span.set("hub.attempt", attempt);
    span.set("hub.manual", i64::from(manual));
    let outcome = match finish {
        Finish::Succeeded { .. } => "succeeded",
        Finish::Retry { error, .. } => {
            span.fail(error.clone());
            "retry"
        }
        Finish::Failed { error, .. } => {
            span.fail(error.clone());
            "failed"
        }
        Finish::HeldBack { .. } => "held_back",
    };
    span.set("hub.outcome", outcome);
    span.end();
}
