//! The coordinator actor owns the scheduler and every item's state, in three jobs:
//! - [`dispatch`]: hands ready work to idle writers. Before handing out a twin or relationship
//!   it checks and spends the per-twin budget of every twin the write touches, in one place
//!   (before the writer's class permit, so the class bucket meters what really goes on the
//!   wire); a saturated twin's work is deferred, so one hot twin never ties up writers.
//! - [`settle`]: on a writer's report, marks items landed (releasing their dependents) and
//!   hands every attempt that did not land to the supervisor, which owns failure: the task is
//!   parked until the supervisor orders a retry or gives it up (dead letter, then the
//!   dependents the scheduler rejects).
//! - [`stop`]: knows when the run is finished (everything settled) and stops cleanly when told
//!   to (deadline, signal, watchdog, credentials refused): no new work, in-flight requests
//!   finish (bounded by `shutdown_grace`), items never sent are journaled as not attempted.
//!
//! It talks to writers and the supervisor only through [`Recipient`]s of
//! [`super::messages`], so tests run it with fake writers on tokio's paused clock.

mod dispatch;
mod settle;
mod stop;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::client::RequestStats;
use crate::limiter::{InFlight, Limiter};
use crate::limits::LimitClass;
use crate::plan::{ItemId, Scheduler};

use super::journal::Journal;
use super::messages::{Assign, Attempt, AttemptFailed, Finished, Order, Progress, Stop, StopReason, Stopping, TaskId};

pub use stop::WriteEnd;

/// How often progress is logged and idle per-twin state is pruned.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
enum TaskWork {
    Models(Vec<ItemId>),
    Twin(ItemId),
    Relationship(ItemId),
}

impl TaskWork {
    fn items(&self) -> Vec<ItemId> {
        match self {
            TaskWork::Models(ids) => ids.clone(),
            TaskWork::Twin(id) | TaskWork::Relationship(id) => vec![*id],
        }
    }
}

/// Work as the coordinator tracks it across attempts.
#[derive(Debug)]
struct Task {
    id: TaskId,
    work: TaskWork,
    /// Attempts made so far (throttled ones included).
    attempts: u32,
    /// What the supervisor recorded of its failed attempts.
    history: Attempt,
    /// When its latest request went out.
    sent_at: Option<Instant>,
    /// In-flight room reserved on the twins this write touches; released when dropped.
    in_flight: Option<InFlight>,
}

impl Task {
    /// The limit class its request is metered in (a twin from a mapping is a PATCH).
    fn class(&self, scheduler: &Scheduler) -> LimitClass {
        match self.work {
            TaskWork::Models(_) => LimitClass::Models,
            TaskWork::Twin(id) if scheduler.is_patch(id) => LimitClass::Patch,
            TaskWork::Twin(_) | TaskWork::Relationship(_) => LimitClass::CreateDelete,
        }
    }
}

/// Where the coordinator's messages to the supervisor go.
pub struct SupervisorLink {
    pub failed: Recipient<AttemptFailed>,
    pub progress: Recipient<Progress>,
    pub stopping: Recipient<Stopping>,
}

/// Everything the coordinator starts with.
pub struct CoordinatorSetup {
    pub scheduler: Scheduler,
    pub journal: Journal,
    pub limiter: Arc<Limiter>,
    pub request_stats: Arc<RequestStats>,
    pub writers: Vec<Recipient<Assign>>,
    pub supervisor: SupervisorLink,
    pub shutdown_grace: Duration,
    pub done: oneshot::Sender<WriteEnd>,
}

pub struct Coordinator {
    scheduler: Scheduler,
    journal: Option<Journal>,
    journal_error: Option<String>,
    limiter: Arc<Limiter>,
    request_stats: Arc<RequestStats>,
    writers: Vec<Recipient<Assign>>,
    supervisor: SupervisorLink,
    idle: Vec<usize>,
    in_flight: HashMap<usize, Task>,
    /// Tasks to send again before new work (restarted writers' and the supervisor's retries).
    retry_ready: VecDeque<Task>,
    /// Tasks whose attempt failed, waiting for the supervisor's order.
    parked: HashMap<TaskId, Task>,
    next_task: TaskId,
    pump_scheduled: bool,
    stopping: Option<StopReason>,
    shutdown_grace: Duration,
    started: Instant,
    last_report: Instant,
    done: Option<oneshot::Sender<WriteEnd>>,
}

impl Coordinator {
    pub fn new(setup: CoordinatorSetup) -> Coordinator {
        let now = Instant::now();
        Coordinator {
            scheduler: setup.scheduler,
            journal: Some(setup.journal),
            journal_error: None,
            limiter: setup.limiter,
            request_stats: setup.request_stats,
            idle: (0..setup.writers.len()).rev().collect(),
            writers: setup.writers,
            supervisor: setup.supervisor,
            in_flight: HashMap::new(),
            retry_ready: VecDeque::new(),
            parked: HashMap::new(),
            next_task: 0,
            pump_scheduled: false,
            stopping: None,
            shutdown_grace: setup.shutdown_grace,
            started: now,
            last_report: now,
            done: Some(setup.done),
        }
    }

    fn log_progress(&mut self) {
        self.limiter.twins().prune();
        if crate::observe::progress::bars_shown() {
            return;
        }
        let Some(j) = self.journal.as_ref() else { return };
        let landed = j.landed_total();
        let failed = j.dead_letters_total();
        let elapsed = self.started.elapsed().as_secs_f64();
        let counts = self.request_stats.snapshot();
        tracing::info!(
            "{:.0} s: {landed} landed, {failed} dead-lettered, {} in flight, {} waiting to retry, {} requests ({} throttled), create/delete rate now {:.0}/s",
            elapsed,
            self.in_flight.len(),
            self.retry_ready.len() + self.parked.len(),
            counts.requests_total,
            counts.throttled_total,
            self.limiter.current_rate(LimitClass::CreateDelete),
        );
    }
}

impl Actor for Coordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.started = Instant::now();
        self.last_report = self.started;
        ctx.run_interval(PROGRESS_INTERVAL, |act, _| act.log_progress());
        self.pump(ctx);
    }
}

impl Handler<Finished> for Coordinator {
    type Result = ();

    fn handle(&mut self, msg: Finished, ctx: &mut Context<Self>) {
        self.on_finished(msg);
        self.pump(ctx);
    }
}

impl Handler<Order> for Coordinator {
    type Result = ();

    fn handle(&mut self, msg: Order, ctx: &mut Context<Self>) {
        self.on_order(msg);
        self.pump(ctx);
    }
}

impl Handler<Stop> for Coordinator {
    type Result = ();

    fn handle(&mut self, msg: Stop, ctx: &mut Context<Self>) {
        self.begin_stop(msg.0, ctx);
    }
}
