//! Stop: the end of the run, reached or asked for.

use std::time::Duration;

use actix::prelude::*;

use crate::reason::ReasonCode;

use super::super::journal::Journal;
use super::super::messages::{StopReason, Stopping};
use super::{Coordinator, Task};

/// What the coordinator hands back when writing is over.
pub struct WriteEnd {
    pub journal: Journal,
    pub stop: Option<StopReason>,
    /// From the first write handed out to the last report.
    pub write_elapsed: Duration,
    /// The first error writing the dead-letter file, if any (the run goes on without it).
    pub journal_error: Option<String>,
}

impl Coordinator {
    /// Stops cleanly: no new work; what waits for a retry and what was never handed out is
    /// journaled now; requests in flight get `shutdown_grace` to answer.
    pub(super) fn begin_stop(&mut self, reason: StopReason, ctx: &mut Context<Self>) {
        if self.stopping.is_some() {
            return;
        }
        tracing::warn!("{reason}: no new work is handed out; {} requests in flight finish", self.in_flight.len());
        self.supervisor.stopping.do_send(Stopping(reason.clone()));
        let text = format!("not sent: {reason}. Load it again");
        self.stopping = Some(reason);
        self.drain_unattempted(&text);
        let mut waiting: Vec<Task> = self.parked.drain().map(|(_, t)| t).collect();
        waiting.extend(self.retry_ready.drain(..));
        let retry_reason = format!("{text} (it had failed and was waiting for a retry)");
        let throttled_reason = format!("{text} (ADT throttled every attempt, so it was never written)");
        for task in waiting {
            // Only throttled so far: never written, so not attempted as far as ADT is concerned.
            if task.history.may_have_written {
                self.fail_task(task, ReasonCode::StoppedEarly, &retry_reason);
            } else {
                self.fail_task(task, ReasonCode::NotAttempted, &throttled_reason);
            }
        }
        ctx.run_later(self.shutdown_grace, |act, ctx| {
            let abandoned: Vec<Task> = act.in_flight.drain().map(|(_, t)| t).collect();
            for task in abandoned {
                act.fail_task(
                    task,
                    ReasonCode::InFlightAtStop,
                    "the run stopped while this request was in flight and no answer came within the shutdown grace; it may or may not have landed. Load it again",
                );
            }
            act.check_finished(ctx);
        });
        self.check_finished(ctx);
    }

    /// Journals every item never handed out as not attempted, streaming them.
    pub(super) fn drain_unattempted(&mut self, reason: &str) {
        let Self { scheduler, journal, journal_error, .. } = self;
        scheduler.drain_unattempted_into(reason, |rejected| {
            let Some(journal) = journal.as_mut() else { return };
            if let Err(e) = journal.dead_letter(&rejected.into()) {
                if journal_error.is_none() {
                    tracing::error!("{e}");
                    *journal_error = Some(e.to_string());
                }
            }
        });
    }

    /// Ends the run when nothing is in flight or waiting and nothing more will come.
    pub(super) fn check_finished(&mut self, ctx: &mut Context<Self>) {
        let nothing_moving = self.in_flight.is_empty() && self.retry_ready.is_empty() && self.parked.is_empty();
        if !nothing_moving {
            return;
        }
        if self.stopping.is_none() && !self.scheduler.is_finished() {
            if self.pump_scheduled || self.scheduler.outstanding() > 0 {
                return;
            }
            // Nothing in flight, nothing waiting, yet items pending that next() will not give:
            // a scheduler that cannot release them. End instead of hanging, and say so.
            let pending = self.scheduler.pending();
            tracing::error!("{pending} items are pending but none is ready and nothing is in flight; ending the run");
            let reason =
                "internal: the scheduler never released this item (its dependencies never settled). Please report this";
            self.drain_unattempted(reason);
        }
        self.finish(ctx);
    }

    fn finish(&mut self, ctx: &mut Context<Self>) {
        let (Some(done), Some(journal)) = (self.done.take(), self.journal.take()) else { return };
        let end = WriteEnd {
            journal,
            stop: self.stopping.clone(),
            write_elapsed: self.last_report.saturating_duration_since(self.started),
            journal_error: self.journal_error.take(),
        };
        let _ = done.send(end);
        ctx.stop();
    }
}
