//! A writer actor: one HTTP call at a time. For each assignment it takes a permit of the
//! request's class from the shared limiter (the per-twin budget was already spent by the
//! coordinator when it handed the work out), calls the client, and reports what happened to
//! the coordinator. It never retries on its own account: the supervisor
//! decides. Model batches are the exception the brief asks of the writer: a `409` drops the
//! ids it lists (they count as already there) and resends the rest; a `400` for a batch falls
//! back to one model at a time, in dependency order, so the bad model is isolated and the rest
//! land.
//!
//! Writers run under `actix::Supervisor`. When one dies it is restarted on the same mailbox and
//! tells the supervisor, which has the coordinator re-send the item it held. Each assignment's request runs in a
//! task of its own, so a panic in it (ours or a library's) ends that task, not the run: the
//! writer sees the panic, stops, and is replaced like a writer that died. Test-only chaos:
//! `chaos.writer_crash_every` makes a writer die after sending a request and before reporting
//! it; `chaos.writer_panic_every` makes the request's task panic after sending.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use serde_json::value::RawValue;

use crate::client::{AdtClient, Outcome, Reply};
use crate::config::WriteMode;
use crate::limiter::Limiter;
use crate::limits::LimitClass;
use crate::reason::ReasonCode;

use super::messages::{Assign, Finished, ModelFailure, ModelReport, ModelToSend, Report, Request, WriterRestarted};

/// What a writer needs, shared by all writers.
#[derive(Clone)]
pub struct WriterEnv {
    pub client: AdtClient,
    pub limiter: Arc<Limiter>,
    pub mode: WriteMode,
    /// Reports go here (the coordinator).
    pub finished: Recipient<Finished>,
    /// A restarted writer says so here (the supervisor).
    pub restarted: Recipient<WriterRestarted>,
    pub crash_every: Option<u64>,
    pub panic_every: Option<u64>,
    /// Requests sent by all writers (for the panic chaos switch).
    pub sent: Arc<AtomicU64>,
}

pub struct Writer {
    slot: usize,
    env: WriterEnv,
    /// Requests this writer sent, across restarts (for the chaos switch).
    sent: u64,
}

impl Writer {
    pub fn new(slot: usize, env: WriterEnv) -> Writer {
        Writer { slot, env, sent: 0 }
    }
}

impl Actor for Writer {
    type Context = Context<Self>;
}

impl Supervised for Writer {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        tracing::warn!(writer = self.slot, "writer restarted; its item is sent again");
        self.env.restarted.do_send(WriterRestarted { writer: self.slot });
    }
}

impl Handler<Assign> for Writer {
    type Result = ();

    fn handle(&mut self, msg: Assign, ctx: &mut Context<Self>) {
        let env = self.env.clone();
        let task = msg.task;
        let work = async move {
            let mut requests = Sends::default();
            let report = perform(&env, msg.request, &mut requests).await;
            (report, requests)
        };
        // A task of its own: a panic in the request ends the task and comes back as an error
        // here, instead of unwinding through the actor system and leaving the run waiting.
        let request = actix::spawn(work);
        ctx.spawn(request.into_actor(self).map(move |joined, act, ctx| {
            let (report, requests) = match joined {
                Ok(done) => done,
                Err(e) => {
                    let what = if e.is_panic() { "panicked" } else { "was cancelled" };
                    tracing::error!(
                        writer = act.slot,
                        "a writer's request {what}; the writer is replaced and its item sent again"
                    );
                    ctx.stop();
                    return;
                }
            };
            let before = act.sent;
            act.sent += u64::from(requests.count);
            let crash = act.env.crash_every.is_some_and(|n| before / n != act.sent / n);
            if crash {
                // Test-only chaos: die with the outcome unreported (the request went out).
                tracing::warn!(writer = act.slot, "chaos: writer dies mid-request");
                ctx.stop();
                return;
            }
            act.env.finished.do_send(Finished {
                writer: act.slot,
                task,
                report,
                requests: requests.count,
                sent_at: requests.last_at,
            });
        }));
    }
}

/// The requests an assignment sent: how many, and when the last went out.
#[derive(Debug, Default)]
struct Sends {
    count: u32,
    last_at: Option<std::time::Instant>,
}

impl Sends {
    /// A request goes out now (called right before the client sends it).
    fn record(&mut self) {
        self.count += 1;
        self.last_at = Some(std::time::Instant::now());
    }
}

async fn perform(env: &WriterEnv, request: Request, requests: &mut Sends) -> Report {
    // Sync sends through the writers only what it creates; changes go through crate::sync.
    let create_only = matches!(env.mode, WriteMode::CreateOnly | WriteMode::Sync);
    match request {
        Request::Twin { twin_id, body, .. } => {
            env.limiter.acquire(LimitClass::CreateDelete).await;
            requests.record();
            let reply = env.client.put_twin(&twin_id, &body, create_only).await;
            chaos_after_send(env);
            Report::Single(reply)
        }
        Request::TwinPatch { twin_id, body, .. } => {
            env.limiter.acquire(LimitClass::Patch).await;
            requests.record();
            let reply = env.client.patch_twin(&twin_id, &body).await;
            chaos_after_send(env);
            Report::Single(reply)
        }
        Request::Relationship { source, relationship_id, body, .. } => {
            env.limiter.acquire(LimitClass::CreateDelete).await;
            requests.record();
            let reply = env.client.put_relationship(&source, &relationship_id, &body, create_only).await;
            chaos_after_send(env);
            Report::Single(reply)
        }
        Request::Models(models) => Report::Models(upload_models(env, models, requests).await),
    }
}

/// Test-only: panics on every n-th request sent (`chaos.writer_panic_every`).
fn chaos_after_send(env: &WriterEnv) {
    let sent = env.sent.fetch_add(1, Ordering::Relaxed) + 1;
    if env.panic_every.is_some_and(|n| sent % n == 0) {
        panic!("chaos: writer_panic_every: this request's task panics after sending request {sent}");
    }
}

async fn post_models(env: &WriterEnv, models: &[ModelToSend], requests: &mut Sends) -> Reply {
    env.limiter.acquire(LimitClass::Models).await;
    requests.record();
    let bodies: Vec<&RawValue> = models.iter().map(|m| m.body.as_ref()).collect();
    env.client.add_models(&bodies).await
}

/// A batch: POST it whole; on 409 drop the listed ids and resend the rest; on 400 go one at a
/// time.
async fn upload_models(env: &WriterEnv, mut remaining: Vec<ModelToSend>, requests: &mut Sends) -> ModelReport {
    let mut report = ModelReport::default();
    // Each round settles at least one model or ends, so this is bounded by the batch size.
    for _ in 0..=remaining.len() {
        if remaining.is_empty() {
            return report;
        }
        let reply = post_models(env, &remaining, requests).await;
        match &reply.outcome {
            Outcome::Landed => {
                report.landed.extend(remaining.iter().map(|m| m.item));
                return report;
            }
            Outcome::AlreadyExists { ids } => {
                let listed: HashSet<&str> = ids.iter().map(String::as_str).collect();
                let before = remaining.len();
                let (exist, rest): (Vec<_>, Vec<_>) =
                    remaining.into_iter().partition(|m| listed.contains(m.model_id.as_str()));
                report.already_existed.extend(exist.iter().map(|m| m.item));
                remaining = rest;
                if remaining.len() == before {
                    // The message named none of ours: find out one model at a time.
                    one_at_a_time(env, remaining, requests, &mut report).await;
                    return report;
                }
            }
            Outcome::Rejected { .. } if remaining.len() > 1 => {
                one_at_a_time(env, remaining, requests, &mut report).await;
                return report;
            }
            Outcome::Rejected { message } => {
                let m = &remaining[0];
                report.failed.push(ModelFailure {
                    item: m.item,
                    reason_code: ReasonCode::WriteFailed,
                    reason: format!("ADT rejected model {}: {message}. Fix the model and load it again", m.model_id),
                    reply: Some(reply.clone()),
                });
                return report;
            }
            // A redirect is the supervisor's to fail (with its own reason), like an auth failure.
            Outcome::Throttled { .. }
            | Outcome::Transient { .. }
            | Outcome::TooLarge { .. }
            | Outcome::AuthFailed { .. }
            | Outcome::Redirected { .. }
            | Outcome::TwinNotVisible { .. } => {
                report.unsettled = remaining;
                report.unsettled_reply = Some(reply);
                return report;
            }
        }
    }
    report
}

/// Uploads models one by one in (dependency) order; a model whose dependency failed here is
/// not sent but failed with that reason.
async fn one_at_a_time(env: &WriterEnv, models: Vec<ModelToSend>, requests: &mut Sends, report: &mut ModelReport) {
    let mut failed_ids: HashSet<String> = HashSet::new();
    let mut queue = models.into_iter();
    while let Some(m) = queue.next() {
        if let Some(failure) = dependency_failure(&m, &failed_ids) {
            report.failed.push(failure);
            failed_ids.insert(m.model_id);
            continue;
        }
        let reply = post_models(env, std::slice::from_ref(&m), requests).await;
        match &reply.outcome {
            Outcome::Landed => report.landed.push(m.item),
            Outcome::AlreadyExists { .. } => report.already_existed.push(m.item),
            Outcome::Rejected { message } => {
                report.failed.push(ModelFailure {
                    item: m.item,
                    reason_code: ReasonCode::WriteFailed,
                    reason: format!("ADT rejected model {}: {message}. Fix the model and load it again", m.model_id),
                    reply: Some(reply.clone()),
                });
                failed_ids.insert(m.model_id);
            }
            _ => {
                // Throttled or transient: the rest is the supervisor's to retry, minus what
                // depends on a model that failed here.
                let mut rest = vec![m];
                for next in queue.by_ref() {
                    if let Some(failure) = dependency_failure(&next, &failed_ids) {
                        report.failed.push(failure);
                        failed_ids.insert(next.model_id);
                    } else {
                        rest.push(next);
                    }
                }
                report.unsettled = rest;
                report.unsettled_reply = Some(reply);
                return;
            }
        }
    }
}

/// The failure of a model one of whose dependencies failed in this batch, if one did.
fn dependency_failure(m: &ModelToSend, failed_ids: &HashSet<String>) -> Option<ModelFailure> {
    let dep = m.depends_on.iter().find(|d| failed_ids.contains(d.as_str()))?;
    Some(ModelFailure {
        item: m.item,
        reply: None,
        reason_code: ReasonCode::DependencyFailed,
        reason: format!("dependency model {dep} failed, so model {} was not sent", m.model_id),
    })
}
