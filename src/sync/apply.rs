//! Sending the sync's own writes: JSON Patches, replaces, checks against ADT and deletes, as
//! many at once as there are writers, each through the run's [`Retrier`] (the supervisor's
//! retry policy under the limiter: its limit class and the per-twin budget). A 429 is
//! back-pressure: the limiter slows the class and the request waits its turn, without
//! spending an attempt; a transient failure is retried up to `retry.max_attempts`; a delete
//! that finds the item gone counts as done. What lands is recorded in the ledger as it lands;
//! what fails goes to the dead-letter file with its reason. When the run is to stop, a request
//! in flight is abandoned and nothing more is sent: each piece of work left is journaled as
//! not attempted (or in flight at the stop), so every one is accounted for.

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;

use crate::adt::paths;
use crate::client::{AdtClient, Outcome, Reply};
use crate::config::LoadConfig;
use crate::item::{Item, ItemKey, Origin};
use crate::ledger::Ledger;
use crate::limits::LimitClass;
use crate::reason::ReasonCode;
use crate::run::journal::{Completion, DeadLetter, Journal};
use crate::run::messages::StopReason;
use crate::run::supervisor::retrier::{CallError, Retrier, Stopped};

use super::classify::Work;
use super::diff::{self, PatchOp, RelationshipChange, TwinChange};
use super::report::SyncReport;

/// What the sync's writes run with.
pub struct Env<'a> {
    pub config: &'a LoadConfig,
    pub client: &'a AdtClient,
    pub retrier: &'a Retrier,
    /// The run stopped before these writes (the write phase's deadline or watchdog): none is sent.
    pub stopped: Option<StopReason>,
}

impl Env<'_> {
    /// Why nothing more is to be sent, if so.
    fn stop(&self) -> Option<StopReason> {
        self.stopped.clone().or_else(|| self.retrier.shutdown().reason())
    }
}

/// What became of one piece of work.
enum Done {
    /// Written, with the `ETag` ADT answered (if any).
    Landed(Item, Option<String>),
    Unchanged(Item),
    Deleted(ItemKey),
    Failed {
        key: ItemKey,
        item: Option<Item>,
        reply: Option<Reply>,
        reason_code: ReasonCode,
        reason: String,
    },
}

#[derive(Default)]
struct Outcomes {
    done: Vec<Done>,
    writes: u64,
    reads: u64,
    /// The run's stop left this work unsent (or abandoned in flight).
    stopped: Option<StopReason>,
}

/// Runs `works` and records their outcomes. Returns the run's stop if it left any of them unsent.
pub async fn run(
    works: Vec<Work>,
    env: &Env<'_>,
    mut ledger: Option<&mut Ledger>,
    journal: &mut Journal,
    report: &mut SyncReport,
) -> Option<StopReason> {
    let mut stopped = None;
    let mut results = futures::stream::iter(works).map(|w| perform(w, env)).buffer_unordered(env.config.writers.max(1));
    while let Some(outcomes) = results.next().await {
        stopped = stopped.or(outcomes.stopped);
        report.writes += outcomes.writes;
        report.reads += outcomes.reads;
        for done in outcomes.done {
            match done {
                Done::Landed(item, etag) => {
                    journal.completed(item.kind(), Completion::Landed);
                    if let Some(l) = ledger.as_deref_mut() {
                        l.landed(&item, etag);
                    }
                }
                Done::Unchanged(item) => {
                    if let Some(l) = ledger.as_deref_mut() {
                        l.landed(&item, None);
                    }
                }
                Done::Deleted(key) => {
                    if let Some(l) = ledger.as_deref_mut() {
                        l.deleted(&key);
                    }
                }
                Done::Failed { key, item, reply, reason_code, reason } => {
                    if reason_code != ReasonCode::NotAttempted {
                        report.failed += 1;
                    }
                    let letter = DeadLetter {
                        origin: item
                            .as_ref()
                            .map(|i| i.origin().clone())
                            .unwrap_or_else(|| Origin { file: Arc::from("(prune: not in the inputs)"), line: 0 }),
                        item_json: item.as_ref().map(|i| i.body().get().to_string()),
                        status: reply.as_ref().and_then(|r| r.status),
                        error_code: reply.as_ref().and_then(|r| r.code.clone()),
                        reason_code: match reply.as_ref().map(|r| &r.outcome) {
                            Some(Outcome::Redirected { .. }) => ReasonCode::Redirected,
                            _ => reason_code,
                        },
                        reason: format!("{key}: {reason}"),
                        key,
                    };
                    if let Err(e) = journal.dead_letter(&letter) {
                        tracing::error!("{e}");
                    }
                }
            }
        }
    }
    stopped
}

fn path_of(item: &Item) -> String {
    match item {
        Item::Twin(t) => paths::twin(&t.id),
        Item::Relationship(r) => paths::relationship(&r.source, &r.id),
        Item::Model(m) => paths::model(&m.id),
    }
}

/// The twins a write to `item` spends per-twin budget on.
fn twins_of(item: &Item) -> Vec<String> {
    match item {
        Item::Twin(t) => vec![t.id.clone()],
        Item::Relationship(r) => vec![r.source.clone(), r.target.clone()],
        Item::Model(_) => vec![],
    }
}

fn is_not_found(reply: &Reply) -> bool {
    reply.status == Some(404)
}

/// What a piece of work writes: its key, and the item when it comes from the inputs.
fn subject(work: Work) -> (ItemKey, Option<Item>) {
    match work {
        Work::Patch { item, .. } | Work::Replace { item } | Work::Check { item } => (item.key(), Some(item)),
        Work::DeleteRelationship { source, id } => (ItemKey::Relationship { source, id }, None),
        Work::DeleteTwin { id } => (ItemKey::Twin { id }, None),
    }
}

async fn perform(work: Work, env: &Env<'_>) -> Outcomes {
    let mut out = Outcomes::default();
    if let Some(reason) = env.stop() {
        let (key, item) = subject(work);
        let stop = Stopped { reason, in_flight: false, may_have_written: false };
        left_by_stop(&mut out, key, item, stop);
        return out;
    }
    match work {
        Work::Patch { item, ops } => patch(item, ops, env, &mut out).await,
        Work::Replace { item } => put(item, false, env, &mut out).await,
        Work::Check { item } => check(item, env, &mut out).await,
        Work::DeleteRelationship { source, id } => {
            let key = ItemKey::Relationship { source: source.clone(), id: id.clone() };
            delete(key, paths::relationship(&source, &id), vec![source], env, &mut out).await
        }
        Work::DeleteTwin { id } => {
            let key = ItemKey::Twin { id: id.clone() };
            delete(key, paths::twin(&id), vec![id], env, &mut out).await
        }
    }
    out
}

async fn patch(item: Item, ops: Vec<PatchOp>, env: &Env<'_>, out: &mut Outcomes) {
    let body = serde_json::to_string(&ops).unwrap_or_else(|_| "[]".into());
    let path = path_of(&item);
    let relationship = matches!(item, Item::Relationship(_));
    let reply =
        write(env, LimitClass::Patch, &twins_of(&item), out, || env.client.patch(&path, body.clone(), relationship))
            .await;
    let reply = match reply {
        Ok(reply) => reply,
        Err(stop) => return left_by_stop(out, item.key(), Some(item), stop),
    };
    match reply.outcome {
        Outcome::Landed => out.done.push(Done::Landed(item, reply.etag.clone())),
        // Gone since it was read: create it.
        _ if is_not_found(&reply) => put(item, true, env, out).await,
        _ => out.done.push(failed(&item, reply, "ADT refused the patch")),
    }
}

async fn put(item: Item, create_only: bool, env: &Env<'_>, out: &mut Outcomes) {
    let twins = twins_of(&item);
    let reply = write(env, LimitClass::CreateDelete, &twins, out, || async {
        match &item {
            Item::Twin(t) => env.client.put_twin(&t.id, &t.body, create_only).await,
            Item::Relationship(r) => env.client.put_relationship(&r.source, &r.id, &r.body, create_only).await,
            Item::Model(_) => Reply::transport("internal: a model is not written by sync".into()),
        }
    })
    .await;
    let reply = match reply {
        Ok(reply) => reply,
        Err(stop) => return left_by_stop(out, item.key(), Some(item), stop),
    };
    match reply.outcome {
        Outcome::Landed | Outcome::AlreadyExists { .. } => out.done.push(Done::Landed(item, reply.etag.clone())),
        _ => out.done.push(failed(&item, reply, "ADT refused the write")),
    }
}

async fn delete(key: ItemKey, path: String, twins: Vec<String>, env: &Env<'_>, out: &mut Outcomes) {
    let reply = match write(env, LimitClass::CreateDelete, &twins, out, || env.client.delete(&path)).await {
        Ok(reply) => reply,
        Err(stop) => return left_by_stop(out, key, None, stop),
    };
    match reply.outcome {
        Outcome::Landed => out.done.push(Done::Deleted(key)),
        _ if is_not_found(&reply) => out.done.push(Done::Deleted(key)),
        _ => {
            let reason = format!("ADT refused the delete: {}", describe(&reply));
            let reason_code = ReasonCode::SyncWriteFailed;
            out.done.push(Done::Failed { key, item: None, reply: Some(reply), reason_code, reason });
        }
    }
}

/// The ledger says the content changed: read what ADT holds and send only the difference.
async fn check(item: Item, env: &Env<'_>, out: &mut Outcomes) {
    let path = path_of(&item);
    let current = env.retrier.call_ok(LimitClass::Read, || env.client.get_document(&path)).await;
    out.reads += 1;
    let current = match current {
        Ok(c) => c,
        Err(CallError::Stopped(stop)) => return left_by_stop(out, item.key(), Some(item), stop),
        Err(e) => {
            out.done.push(Done::Failed {
                key: item.key(),
                item: Some(item),
                reply: None,
                reason_code: ReasonCode::SyncWriteFailed,
                reason: format!("cannot read it from ADT: {e}"),
            });
            return;
        }
    };
    let Some(current) = current else { return put(item, true, env, out).await };
    let Ok(desired) = serde_json::from_str::<serde_json::Value>(item.body().get()) else {
        return out.done.push(Done::Failed {
            key: item.key(),
            item: Some(item),
            reply: None,
            reason_code: ReasonCode::SyncWriteFailed,
            reason: "its body is not JSON".into(),
        });
    };
    match &item {
        Item::Twin(_) => match diff::twin(&current, &desired) {
            TwinChange::Unchanged => out.done.push(Done::Unchanged(item)),
            TwinChange::Patch(ops) => patch(item, ops, env, out).await,
            TwinChange::Replace => put(item, false, env, out).await,
        },
        Item::Relationship(r) => match diff::relationship(&current, &desired) {
            RelationshipChange::Unchanged => out.done.push(Done::Unchanged(item)),
            RelationshipChange::Patch(ops) => patch(item, ops, env, out).await,
            RelationshipChange::Recreate => {
                let key = item.key();
                let before = out.done.len();
                delete(key, path.clone(), vec![r.source.clone()], env, out).await;
                if matches!(out.done.get(before), Some(Done::Deleted(_))) {
                    out.done.truncate(before);
                    put(item, true, env, out).await;
                }
            }
        },
        Item::Model(_) => out.done.push(Done::Unchanged(item)),
    }
}

/// Sends one write through the run's retrier until it is answered for good (throttles wait and
/// are not attempts; failures are retried up to the retry policy's attempts), or until the run
/// is to stop. Counts every request sent.
async fn write<F, Fut>(
    env: &Env<'_>,
    class: LimitClass,
    twins: &[String],
    out: &mut Outcomes,
    mut call: F,
) -> Result<Reply, Stopped>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Reply>,
{
    if let Some(reason) = env.stopped.clone() {
        return Err(Stopped { reason, in_flight: false, may_have_written: false });
    }
    let twins: Vec<&str> = twins.iter().map(String::as_str).collect();
    let sent = Cell::new(0u64);
    let reply = env
        .retrier
        .call(class, &twins, || {
            sent.set(sent.get() + 1);
            call()
        })
        .await;
    out.writes += sent.get();
    reply
}

/// A piece of work the run's stop left unsent (or abandoned in flight).
fn left_by_stop(out: &mut Outcomes, key: ItemKey, item: Option<Item>, stop: Stopped) {
    let (reason_code, reason) = if stop.in_flight {
        (
            ReasonCode::InFlightAtStop,
            format!(
                "{}, while its request was in flight: it may or may not have been carried out. Sync again",
                stop.reason
            ),
        )
    } else if stop.may_have_written {
        (
            ReasonCode::StoppedEarly,
            format!(
                "{} before it could be retried; an earlier attempt may have been carried out. Sync again",
                stop.reason
            ),
        )
    } else {
        (ReasonCode::NotAttempted, format!("not sent: {}. Sync again", stop.reason))
    };
    out.stopped.get_or_insert(stop.reason);
    out.done.push(Done::Failed { key, item, reply: None, reason_code, reason });
}

fn describe(reply: &Reply) -> String {
    match &reply.outcome {
        Outcome::Rejected { message } | Outcome::AuthFailed { message } | Outcome::TwinNotVisible { message } => {
            format!("{} {message}", reply.status.map(|s| s.to_string()).unwrap_or_default())
        }
        Outcome::Throttled { .. } => "still throttled after many waits".into(),
        Outcome::AlreadyExists { .. } => "already exists".into(),
        Outcome::Landed => "landed".into(),
        outcome => outcome.detail(),
    }
}

fn failed(item: &Item, reply: Reply, what: &str) -> Done {
    let reason = format!("{what}: {}. Fix the item and sync again", describe(&reply));
    let reason_code = ReasonCode::SyncWriteFailed;
    Done::Failed { key: item.key(), item: Some(item.clone()), reply: Some(reply), reason_code, reason }
}
