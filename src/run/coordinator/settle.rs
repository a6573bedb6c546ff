//! Settle: what a writer reported becomes landed items, or a parked task the supervisor
//! decides on; the supervisor's orders bring parked tasks back or fail them.

use std::collections::HashSet;
use std::time::Instant;

use crate::client::{Outcome, Reply};
use crate::item::ItemKey;
use crate::plan::ItemId;
use crate::reason::ReasonCode;

use super::super::journal::{Completion, DeadLetter};
use super::super::messages::{AttemptFailed, Finished, ModelReport, Order, Progress, Report};
use super::{Coordinator, Task, TaskWork};

/// One item to fail for good: its id, the reply that sealed it (if any), code and reason.
type Failure = (ItemId, Option<Reply>, ReasonCode, String);

impl Coordinator {
    /// A writer's report on its assignment.
    pub(super) fn on_finished(&mut self, msg: Finished) {
        self.last_report = Instant::now();
        let Some(mut task) = self.in_flight.remove(&msg.writer) else {
            self.supervisor.progress.do_send(Progress { requests: msg.requests, landed: 0 });
            return;
        };
        if task.id != msg.task {
            // A report for a task already re-sent after a restart: the newer one counts.
            self.in_flight.insert(msg.writer, task);
            self.supervisor.progress.do_send(Progress { requests: msg.requests, landed: 0 });
            return;
        }
        self.idle.push(msg.writer);
        task.sent_at = msg.sent_at;
        if !msg.report.throttled() {
            self.limiter.on_reply(task.class(&self.scheduler));
        }
        let landed = match (msg.report, &task.work) {
            (Report::Single(reply), TaskWork::Twin(id) | TaskWork::Relationship(id)) => {
                let id = *id;
                self.settle_single(task, id, reply)
            }
            (Report::Models(report), TaskWork::Models(_)) => self.settle_models(task, report),
            (_, _) => {
                let reason = "internal: a writer reported on the wrong kind of work. Please report this";
                self.fail_task(task, ReasonCode::Internal, reason);
                0
            }
        };
        self.supervisor.progress.do_send(Progress { requests: msg.requests, landed });
    }

    /// Settles a twin or relationship; returns how many items landed (0 or 1).
    fn settle_single(&mut self, task: Task, id: ItemId, reply: Reply) -> u32 {
        match &reply.outcome {
            Outcome::Landed => self.land(id, Completion::Landed, reply.etag.clone()),
            // A 412/409 after an attempt of ours that may have written means it landed; else
            // (a first attempt, or only throttled ones before) it was there before the run.
            Outcome::AlreadyExists { .. } => {
                let how = if task.history.may_have_written { Completion::Landed } else { Completion::AlreadyExisted };
                self.land(id, how, None)
            }
            _ => {
                self.park(task, reply);
                return 0;
            }
        }
        1
    }

    /// Settles what a model batch came to; returns how many models landed.
    fn settle_models(&mut self, mut task: Task, report: ModelReport) -> u32 {
        let how = if task.history.may_have_written { Completion::Landed } else { Completion::AlreadyExisted };
        let landed = (report.landed.len() + report.already_existed.len()) as u32;
        for id in report.landed {
            self.land(id, Completion::Landed, None);
        }
        for id in report.already_existed {
            self.land(id, how, None);
        }
        let failures = report.failed.into_iter().map(|f| (f.item, f.reply, f.reason_code, f.reason)).collect();
        self.fail_items(failures);
        if let (Some(reply), false) = (report.unsettled_reply, report.unsettled.is_empty()) {
            task.work = TaskWork::Models(report.unsettled.iter().map(|m| m.item).collect());
            self.park(task, reply);
        }
        landed
    }

    /// The attempt did not land: the task waits for the supervisor's order.
    fn park(&mut self, mut task: Task, reply: Reply) {
        task.in_flight = None;
        self.supervisor.failed.do_send(AttemptFailed {
            task: task.id,
            class: task.class(&self.scheduler),
            history: task.history,
            reply,
            sent_at: task.sent_at,
        });
        self.parked.insert(task.id, task);
    }

    /// The supervisor's order. One for a task no longer parked (failed at a stop) is moot.
    pub(super) fn on_order(&mut self, order: Order) {
        match order {
            Order::Retry { task, history } => {
                if let Some(mut task) = self.parked.remove(&task) {
                    task.history = history;
                    self.retry_ready.push_back(task);
                }
            }
            Order::GiveUp { task, reply, reason_code, reason } => {
                if let Some(task) = self.parked.remove(&task) {
                    let failures =
                        task.work.items().into_iter().map(|id| (id, Some(reply.clone()), reason_code, reason.clone()));
                    self.fail_items(failures.collect());
                }
            }
            Order::Resend { writer } => self.resend(writer),
        }
    }

    /// The writer was restarted: whatever it held goes again, first.
    fn resend(&mut self, writer: usize) {
        if let Some(mut task) = self.in_flight.remove(&writer) {
            if let Some(reason) = self.stopping.clone() {
                let reason =
                    format!("{reason} while this item was being re-sent after a writer restart. Load it again");
                self.fail_task(task, ReasonCode::StoppedEarly, &reason);
            } else {
                // Re-send first: it was handed out before everything still waiting. Its request
                // may have gone out, so a 412/409 next time means it landed.
                task.in_flight = None;
                task.history.may_have_written = true;
                self.retry_ready.push_front(task);
            }
        }
        self.idle.push(writer);
    }

    /// An item landed (with the `ETag` ADT answered, when it did).
    fn land(&mut self, id: ItemId, how: Completion, etag: Option<String>) {
        if let Some(j) = self.journal.as_mut() {
            if !j.records_items() {
                // Without a ledger only the tally needs it: no body is read back from its file.
                j.completed(self.scheduler.kind(id), how);
            } else {
                match self.scheduler.item(id) {
                    Ok(item) => j.landed_item(&item, how, etag),
                    // It landed; only a ledger misses it, and the next run sends it again.
                    Err(e) => {
                        tracing::error!("{e}");
                        j.completed(self.scheduler.kind(id), how);
                    }
                }
            }
        }
        self.scheduler.landed(id);
    }

    pub(super) fn write_dead_letter(&mut self, letter: DeadLetter) {
        let Some(journal) = self.journal.as_mut() else { return };
        if let Err(e) = journal.dead_letter(&letter) {
            tracing::error!("{e}");
            self.journal_error.get_or_insert(e.to_string());
        }
    }

    /// Fails every item of a task with the same reason.
    pub(super) fn fail_task(&mut self, task: Task, reason_code: ReasonCode, reason: &str) {
        let failures = task.work.items().into_iter().map(|id| (id, None, reason_code, reason.to_string())).collect();
        self.fail_items(failures);
    }

    /// Fails items for good: their dead letters, then their dependents'. Items of one batch may
    /// depend on each other: a dependent the scheduler rejects that is also in `items` is
    /// journaled once, with its own reason.
    fn fail_items(&mut self, items: Vec<Failure>) {
        let own: HashSet<ItemKey> = items.iter().map(|(id, ..)| self.scheduler.key(*id)).collect();
        let mut failed_by_scheduler: HashSet<ItemKey> = HashSet::new();
        for (id, reply, reason_code, reason) in items {
            let key = self.scheduler.key(id);
            let letter = DeadLetter {
                key: key.clone(),
                origin: self.scheduler.origin(id),
                item_json: self.scheduler.body_json(id),
                status: reply.as_ref().and_then(|r| r.status),
                error_code: reply.as_ref().and_then(|r| r.code.clone()),
                reason_code,
                reason: reason.clone(),
            };
            self.write_dead_letter(letter);
            if failed_by_scheduler.contains(&key) {
                continue;
            }
            for dependent in self.scheduler.failed(id, &reason) {
                if own.contains(&dependent.key) {
                    failed_by_scheduler.insert(dependent.key);
                } else {
                    self.write_dead_letter(dependent.into());
                }
            }
        }
    }
}
