//! Dispatch: ready work to idle writers, retries first, under the per-twin budget.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::item::Item;
use crate::limiter::{TwinBudget, TwinLimiter};
use crate::plan::{ItemId, Work};
use crate::reason::ReasonCode;

use super::super::messages::{Assign, Attempt, ModelToSend, Request};
use super::{Coordinator, Task, TaskWork};

/// Consecutive deferrals after which the coordinator stops looking for work and waits for the
/// earliest twin budget (or the next report) instead of spinning through the ready queue.
const MAX_DEFER_STREAK: usize = 256;
/// Wait before looking again at a twin whose in-flight room is full.
const IN_FLIGHT_FULL_RECHECK: Duration = Duration::from_millis(5);

impl Coordinator {
    fn new_task(&mut self, work: Work) -> Task {
        self.next_task += 1;
        let work = match work {
            Work::Models(ids) => TaskWork::Models(ids),
            Work::Twin(id) => TaskWork::Twin(id),
            Work::Relationship(id) => TaskWork::Relationship(id),
        };
        Task { id: self.next_task, work, attempts: 0, history: Attempt::default(), sent_at: None, in_flight: None }
    }

    /// Hands ready work to idle writers until one or the other runs out.
    pub(super) fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.stopping.is_some() {
            self.check_finished(ctx);
            return;
        }
        let mut defer_streak = 0;
        let mut earliest_wait: Option<Duration> = None;
        let mut deferred_retries = Vec::new();
        while !self.idle.is_empty() && defer_streak < MAX_DEFER_STREAK {
            let mut task = match self.retry_ready.pop_front() {
                Some(t) => t,
                None => match self.scheduler.next() {
                    Some(work) => self.new_task(work),
                    None => break,
                },
            };
            match self.reserve_twins(&mut task) {
                Ok(()) => {
                    defer_streak = 0;
                    if let Some(slot) = self.idle.pop() {
                        self.dispatch(slot, task);
                    }
                }
                Err(wait) => {
                    defer_streak += 1;
                    earliest_wait = Some(earliest_wait.map_or(wait, |w| w.min(wait)));
                    if task.attempts > 0 {
                        deferred_retries.push(task);
                    } else {
                        self.scheduler.defer_for_wait(into_work(task.work), wait);
                    }
                }
            }
        }
        self.retry_ready.extend(deferred_retries);
        crate::observe::catalog::queue_depths(
            self.scheduler.pending(),
            self.in_flight.len(),
            self.retry_ready.len(),
            self.parked.len(),
        );
        if let Some(wait) = earliest_wait {
            if !self.pump_scheduled {
                self.pump_scheduled = true;
                ctx.run_later(wait.max(Duration::from_millis(1)), |act, ctx| {
                    act.pump_scheduled = false;
                    act.pump(ctx);
                });
            }
        }
        self.check_finished(ctx);
    }

    /// Spends the per-twin budget of the twins a write touches (a write permit each and room
    /// in flight), if it allows the write now; else how long until it may.
    fn reserve_twins(&self, task: &mut Task) -> Result<(), Duration> {
        let id = match task.work {
            TaskWork::Twin(id) | TaskWork::Relationship(id) => id,
            TaskWork::Models(_) => return Ok(()),
        };
        let twins = self.scheduler.twins_written(id);
        let limiter: &Arc<TwinLimiter> = self.limiter.twins();
        match limiter.try_spend(&twins) {
            Ok(guard) => {
                task.in_flight = Some(guard);
                Ok(())
            }
            Err(TwinBudget::WaitFor(wait)) => Err(wait),
            Err(TwinBudget::InFlightFull | TwinBudget::Ready) => Err(IN_FLIGHT_FULL_RECHECK),
        }
    }

    fn dispatch(&mut self, slot: usize, mut task: Task) {
        let request = match self.build_request(&task.work) {
            Ok(r) => r,
            Err(reason) => {
                self.fail_task(task, ReasonCode::Internal, &reason);
                self.idle.push(slot);
                return;
            }
        };
        task.attempts += 1;
        self.writers[slot].do_send(Assign { task: task.id, request });
        self.in_flight.insert(slot, task);
    }

    fn build_request(&self, work: &TaskWork) -> Result<Request, String> {
        let wrong = |id: ItemId, want: &str| format!("internal: item {id} is not a {want}");
        let item = |id: ItemId| self.scheduler.item(id).map_err(|e| e.to_string());
        Ok(match work {
            TaskWork::Models(ids) => Request::Models(
                ids.iter()
                    .map(|id| match item(*id)? {
                        Item::Model(m) => {
                            Ok(ModelToSend { item: *id, model_id: m.id, depends_on: m.depends_on, body: m.body })
                        }
                        _ => Err(wrong(*id, "model")),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            TaskWork::Twin(id) => match item(*id)? {
                Item::Twin(t) if t.patch => Request::TwinPatch { item: *id, twin_id: t.id, body: t.body },
                Item::Twin(t) => Request::Twin { item: *id, twin_id: t.id, body: t.body },
                _ => return Err(wrong(*id, "twin")),
            },
            TaskWork::Relationship(id) => match item(*id)? {
                Item::Relationship(r) => Request::Relationship {
                    item: *id,
                    source: r.source,
                    relationship_id: r.id,
                    target: r.target,
                    body: r.body,
                },
                _ => return Err(wrong(*id, "relationship")),
            },
        })
    }
}

fn into_work(work: TaskWork) -> Work {
    match work {
        TaskWork::Models(ids) => Work::Models(ids),
        TaskWork::Twin(id) => Work::Twin(id),
        TaskWork::Relationship(id) => Work::Relationship(id),
    }
}
