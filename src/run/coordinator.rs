//! The coordinator actor: owns the scheduler, hands ready work to idle writers, and settles
//! what they report.
//!
//! - Before handing out a twin or relationship it checks and spends the per-twin budget of
//!   every twin the write touches, in one place ([`TwinLimiter::try_spend`], before the
//!   writer's class permit, so the class bucket meters what really goes on the wire); if one is
//!   saturated the work is `defer`red, so one hot twin never ties up writers while other work
//!   waits.
//! - On a report it marks items landed (releasing their dependents) or asks the supervisor
//!   what to do with a failure: retry later, or fail the item, whose dependents the scheduler
//!   rejects and the journal records.
//! - A throttle pauses the item's whole limit class for the server's `Retry-After` and cuts
//!   the class's adaptive rate; the item waits and goes again (never failed for it).
//! - Retries of failures wait for the supervisor's retry budget after their backoff.
//! - It knows when the run is finished (everything settled), and stops cleanly at the
//!   deadline, on SIGTERM/SIGINT, when ADT refuses the credentials, or when nothing landed for
//!   `no_progress_timeout` (the watchdog): no new work, in-flight requests finish (bounded by
//!   `shutdown_grace`), items never sent are journaled as not attempted.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::client::{Outcome, Reply, RequestStats};
use crate::config::LoadConfig;
use crate::item::{Item, ItemKey};
use crate::limiter::{InFlight, Limiter, TwinBudget, TwinLimiter};
use crate::limits::LimitClass;
use crate::plan::{ItemId, Scheduler, Work};

use super::journal::{Completion, DeadLetter, Journal, NOT_ATTEMPTED};
use super::supervisor::{describe, start_writers, Attempt, Decision, RetryStats, Supervisor};
use super::writer::{Assign, Finished, ModelReport, ModelToSend, Report, Request, Writer, WriterEnv, WriterRestarted};

/// Consecutive deferrals after which the coordinator stops looking for work and waits for the
/// earliest twin budget (or the next report) instead of spinning through the ready queue.
const MAX_DEFER_STREAK: usize = 256;
/// Wait before looking again at a twin whose in-flight room is full.
const IN_FLIGHT_FULL_RECHECK: Duration = Duration::from_millis(5);
/// How often progress is logged and idle per-twin state is pruned.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);
/// How often retries waiting for the retry budget look again (the budget also refills with
/// every report, which releases them sooner).
const BUDGET_RECHECK: Duration = Duration::from_millis(100);
/// Longest interval between two looks of the no-progress watchdog.
const WATCHDOG_MAX_INTERVAL: Duration = Duration::from_secs(1);

/// Why a run stopped before finishing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    Deadline,
    Signal(&'static str),
    /// ADT answered 401/403 to a write: every other write would fail the same way.
    AuthFailed(String),
    /// Nothing landed for this long (the no-progress watchdog).
    NoProgress(Duration),
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Deadline => f.write_str("the run reached its deadline"),
            StopReason::Signal(s) => write!(f, "the run was stopped by {s}"),
            StopReason::AuthFailed(m) => write!(f, "ADT refused the credentials ({m})"),
            StopReason::NoProgress(d) => write!(
                f,
                "nothing landed for {:.0} s (the no-progress watchdog, --no-progress-timeout-s); the instance throttled or failed every request",
                d.as_secs_f64()
            ),
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop(pub StopReason);

/// What the coordinator hands back when the run is over.
pub struct RunEnd {
    pub journal: Journal,
    pub retries: RetryStats,
    pub stop: Option<StopReason>,
    /// From the first write handed out to the last report.
    pub write_elapsed: Duration,
    /// The first error writing the dead-letter file, if any (the run goes on without it).
    pub journal_error: Option<String>,
}

#[derive(Debug)]
enum TaskWork {
    Models(Vec<ItemId>),
    Twin(ItemId),
    Relationship(ItemId),
}

/// Work as the coordinator tracks it across attempts.
#[derive(Debug)]
struct Task {
    id: u64,
    work: TaskWork,
    /// Attempts made so far (throttled ones included).
    attempts: u32,
    /// Attempts that failed for reasons of their own (not throttles).
    failures: u32,
    /// Attempts that were throttled.
    throttles: u32,
    /// An earlier attempt may have written (it timed out, its connection dropped, its writer
    /// died mid-request, the server erred): a 412/409 now means our own write landed.
    may_have_written: bool,
    first_not_visible: Option<Instant>,
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
            TaskWork::Twin(id) if matches!(scheduler.item(id), Item::Twin(t) if t.patch) => LimitClass::Patch,
            TaskWork::Twin(_) | TaskWork::Relationship(_) => LimitClass::CreateDelete,
        }
    }
}

pub struct Coordinator {
    scheduler: Scheduler,
    journal: Option<Journal>,
    journal_error: Option<String>,
    supervisor: Supervisor,
    limiter: Arc<Limiter>,
    request_stats: Arc<RequestStats>,
    writers: Vec<Addr<Writer>>,
    idle: Vec<usize>,
    in_flight: HashMap<usize, Task>,
    retry_ready: VecDeque<Task>,
    retry_waiting: HashMap<u64, (SpawnHandle, Task)>,
    /// Retries of failures whose backoff is over but that wait for the retry budget.
    budget_waiting: VecDeque<Task>,
    next_task: u64,
    pump_scheduled: bool,
    stopping: Option<StopReason>,
    deadline: Option<Duration>,
    no_progress_timeout: Duration,
    /// When an item last landed (or the run started).
    last_landed: Instant,
    shutdown_grace: Duration,
    started: Instant,
    last_report: Instant,
    done: Option<oneshot::Sender<RunEnd>>,
}

/// Everything the coordinator starts with.
pub struct CoordinatorSetup {
    pub scheduler: Scheduler,
    pub journal: Journal,
    pub limiter: Arc<Limiter>,
    pub client: crate::client::AdtClient,
    pub config: LoadConfig,
    /// Time left of the overall deadline when writing starts.
    pub deadline: Option<Duration>,
    pub done: oneshot::Sender<RunEnd>,
}

impl Coordinator {
    /// Starts the coordinator and its writers.
    pub fn start(setup: CoordinatorSetup) -> Addr<Coordinator> {
        Coordinator::create(move |ctx| {
            let env = WriterEnv {
                client: setup.client.clone(),
                limiter: Arc::clone(&setup.limiter),
                mode: setup.config.mode,
                coordinator: ctx.address(),
                crash_every: setup.config.chaos.writer_crash_every,
                panic_every: setup.config.chaos.writer_panic_every,
                sent: Default::default(),
            };
            let writers = start_writers(setup.config.writers, &env);
            let now = Instant::now();
            Coordinator {
                scheduler: setup.scheduler,
                journal: Some(setup.journal),
                journal_error: None,
                supervisor: Supervisor::new(setup.config.retry.clone()),
                limiter: setup.limiter,
                request_stats: Arc::clone(setup.client.stats()),
                idle: (0..writers.len()).rev().collect(),
                writers,
                in_flight: HashMap::new(),
                retry_ready: VecDeque::new(),
                retry_waiting: HashMap::new(),
                budget_waiting: VecDeque::new(),
                next_task: 0,
                pump_scheduled: false,
                stopping: None,
                deadline: setup.deadline,
                no_progress_timeout: setup.config.no_progress_timeout,
                last_landed: now,
                shutdown_grace: setup.config.shutdown_grace,
                started: now,
                last_report: now,
                done: Some(setup.done),
            }
        })
    }

    fn new_task(&mut self, work: Work) -> Task {
        self.next_task += 1;
        let work = match work {
            Work::Models(ids) => TaskWork::Models(ids),
            Work::Twin(id) => TaskWork::Twin(id),
            Work::Relationship(id) => TaskWork::Relationship(id),
        };
        Task {
            id: self.next_task,
            work,
            attempts: 0,
            failures: 0,
            throttles: 0,
            may_have_written: false,
            first_not_visible: None,
            sent_at: None,
            in_flight: None,
        }
    }

    /// Hands ready work to idle writers until one or the other runs out.
    fn pump(&mut self, ctx: &mut Context<Self>) {
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
                    } else if let Some(work) = into_work(task) {
                        self.scheduler.defer_for_wait(work, wait);
                    }
                }
            }
        }
        self.retry_ready.extend(deferred_retries);
        crate::observe::catalog::queue_depths(
            self.scheduler.pending(),
            self.in_flight.len(),
            self.retry_ready.len(),
            self.retry_waiting.len(),
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
                for id in task_items(&task.work) {
                    self.fail_item(id, None, "internal", reason.clone());
                }
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
        Ok(match work {
            TaskWork::Models(ids) => Request::Models(
                ids.iter()
                    .map(|id| match self.scheduler.item(*id) {
                        Item::Model(m) => Ok(ModelToSend {
                            item: *id,
                            model_id: m.id.clone(),
                            depends_on: m.depends_on.clone(),
                            body: m.body.clone(),
                        }),
                        _ => Err(wrong(*id, "model")),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            TaskWork::Twin(id) => match self.scheduler.item(*id) {
                Item::Twin(t) if t.patch => {
                    Request::TwinPatch { item: *id, twin_id: t.id.clone(), body: t.body.clone() }
                }
                Item::Twin(t) => Request::Twin { item: *id, twin_id: t.id.clone(), body: t.body.clone() },
                _ => return Err(wrong(*id, "twin")),
            },
            TaskWork::Relationship(id) => match self.scheduler.item(*id) {
                Item::Relationship(r) => Request::Relationship {
                    item: *id,
                    source: r.source.clone(),
                    relationship_id: r.id.clone(),
                    target: r.target.clone(),
                    body: r.body.clone(),
                },
                _ => return Err(wrong(*id, "relationship")),
            },
        })
    }

    fn write_dead_letter(&mut self, letter: DeadLetter) {
        let Some(journal) = self.journal.as_mut() else { return };
        if let Err(e) = journal.dead_letter(&letter) {
            tracing::error!("{e}");
            self.journal_error.get_or_insert(e.to_string());
        }
    }

    /// An item landed (with the `ETag` ADT answered, when it did).
    fn land(&mut self, id: ItemId, how: Completion, etag: Option<String>) {
        self.last_landed = Instant::now();
        // The journal (and the ledger behind it) reads the item before the scheduler releases
        // its body.
        if let Some(j) = self.journal.as_mut() {
            j.landed_item(self.scheduler.item(id), how, etag);
        }
        self.scheduler.landed(id);
    }

    /// Fails one item for good: its dead letter, then its dependents'.
    fn fail_item(&mut self, id: ItemId, reply: Option<&Reply>, reason_code: &str, reason: String) {
        self.fail_items(vec![(id, reply.cloned(), reason_code.to_string(), reason)]);
    }

    /// Fails items for good. Items of one batch may depend on each other: a dependent the
    /// scheduler rejects that is also in `items` is journaled once, with its own reason.
    fn fail_items(&mut self, items: Vec<(ItemId, Option<Reply>, String, String)>) {
        let own: HashSet<ItemKey> = items.iter().map(|(id, ..)| self.scheduler.item(*id).key()).collect();
        let mut failed_by_scheduler: HashSet<ItemKey> = HashSet::new();
        for (id, reply, reason_code, reason) in items {
            let item = self.scheduler.item(id);
            let key = item.key();
            let letter = DeadLetter {
                key: key.clone(),
                origin: item.origin().clone(),
                item_json: Some(item.body().get().to_string()),
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

    /// The supervisor's verdict on a failed attempt, or "stopped" once the run is stopping.
    /// The one place a throttle is observed: it feeds the class's adaptive rate and, when the
    /// limiter calls it congestion, pauses the class for the server's `Retry-After` (background
    /// throttling makes only this item wait).
    fn decide(&mut self, task: &mut Task, reply: &Reply, ctx: &mut Context<Self>) -> Decision {
        match &reply.outcome {
            Outcome::Throttled { retry_after } => {
                task.throttles += 1;
                let verdict = self.limiter.on_throttle(task.class(&self.scheduler), task.sent_at);
                if let (Some(asked), true) = (retry_after, verdict.pauses_class()) {
                    self.limiter.pause(task.class(&self.scheduler), self.supervisor.server_wait(*asked));
                }
            }
            Outcome::Transient { .. } => {
                task.failures += 1;
                task.may_have_written = true;
            }
            Outcome::TwinNotVisible { .. } => {
                task.failures += 1;
                task.first_not_visible.get_or_insert_with(Instant::now);
            }
            Outcome::AuthFailed { message } => self.begin_stop(StopReason::AuthFailed(message.clone()), ctx),
            _ => {}
        }
        if let Some(reason) = &self.stopping {
            if !matches!(reply.outcome, Outcome::Rejected { .. } | Outcome::AuthFailed { .. }) {
                return Decision::Fail {
                    reason_code: if task.may_have_written { "stopped_early" } else { NOT_ATTEMPTED },
                    reason: format!(
                        "{reason} before this item could be retried (last attempt: {}). Load it again",
                        describe(reply)
                    ),
                };
            }
        }
        let attempt =
            Attempt { failures: task.failures, throttles: task.throttles, first_not_visible: task.first_not_visible };
        let decision = self.supervisor.decide(attempt, reply, Instant::now());
        if let (Decision::Retry { after, .. }, Outcome::Throttled { .. }) = (&decision, &reply.outcome) {
            self.limiter.held_back(task.class(&self.scheduler), *after);
        }
        decision
    }

    fn settle_single(&mut self, mut task: Task, id: ItemId, reply: Reply, ctx: &mut Context<Self>) {
        match &reply.outcome {
            Outcome::Landed => self.land(id, Completion::Landed, reply.etag.clone()),
            // A 412/409 after an attempt of ours that may have written means it landed; else
            // (a first attempt, or only throttled ones before) it was there before the run.
            Outcome::AlreadyExists { .. } => {
                self.land(id, if task.may_have_written { Completion::Landed } else { Completion::AlreadyExisted }, None)
            }
            _ => match self.decide(&mut task, &reply, ctx) {
                Decision::Retry { after, budgeted, .. } => self.schedule_retry(task, after, budgeted, ctx),
                Decision::Fail { reason_code, reason } => self.fail_item(id, Some(&reply), reason_code, reason),
            },
        }
    }

    fn settle_models(&mut self, mut task: Task, report: ModelReport, ctx: &mut Context<Self>) {
        let how = if task.may_have_written { Completion::Landed } else { Completion::AlreadyExisted };
        for id in report.landed {
            self.land(id, Completion::Landed, None);
        }
        for id in report.already_existed {
            self.land(id, how, None);
        }
        let failures =
            report.failed.into_iter().map(|f| (f.item, f.reply, f.reason_code.to_string(), f.reason)).collect();
        self.fail_items(failures);
        let (Some(reply), false) = (report.unsettled_reply, report.unsettled.is_empty()) else { return };
        let ids: Vec<ItemId> = report.unsettled.iter().map(|m| m.item).collect();
        task.work = TaskWork::Models(ids.clone());
        match self.decide(&mut task, &reply, ctx) {
            Decision::Retry { after, budgeted, .. } => self.schedule_retry(task, after, budgeted, ctx),
            Decision::Fail { reason_code, reason } => {
                let failures = ids
                    .into_iter()
                    .map(|id| (id, Some(reply.clone()), reason_code.to_string(), reason.clone()))
                    .collect();
                self.fail_items(failures);
            }
        }
    }

    /// Sends the task again after `after`; a `budgeted` retry then also waits for the retry
    /// budget.
    fn schedule_retry(&mut self, mut task: Task, after: Duration, budgeted: bool, ctx: &mut Context<Self>) {
        task.in_flight = None;
        let id = task.id;
        let handle = ctx.run_later(after, move |act, ctx| {
            if let Some((_, task)) = act.retry_waiting.remove(&id) {
                if budgeted && !act.supervisor.take_budget(Instant::now(), true) {
                    act.budget_waiting.push_back(task);
                    return;
                }
                act.retry_ready.push_back(task);
                act.pump(ctx);
            }
        });
        self.retry_waiting.insert(id, (handle, task));
    }

    /// Lets retries that waited for the retry budget go, as far as it allows now.
    fn release_budget_waiters(&mut self, ctx: &mut Context<Self>) {
        let mut released = false;
        while !self.budget_waiting.is_empty() && self.supervisor.take_budget(Instant::now(), false) {
            if let Some(task) = self.budget_waiting.pop_front() {
                self.retry_ready.push_back(task);
                released = true;
            }
        }
        if released {
            self.pump(ctx);
        }
    }

    /// The no-progress watchdog: stops the run when nothing landed for the configured time.
    fn watch_progress(&mut self, ctx: &mut Context<Self>) {
        if self.stopping.is_none() && self.last_landed.elapsed() >= self.no_progress_timeout {
            self.begin_stop(StopReason::NoProgress(self.no_progress_timeout), ctx);
        }
    }

    /// Fails every item of a task with the same reason (used when stopping).
    fn fail_task(&mut self, task: Task, reason_code: &str, reason: &str) {
        let failures = task_items(&task.work)
            .into_iter()
            .map(|id| (id, None, reason_code.to_string(), reason.to_string()))
            .collect();
        self.fail_items(failures);
    }

    fn begin_stop(&mut self, reason: StopReason, ctx: &mut Context<Self>) {
        if self.stopping.is_some() {
            return;
        }
        tracing::warn!("{reason}: no new work is handed out; {} requests in flight finish", self.in_flight.len());
        let text = format!("not sent: {reason}. Load it again");
        self.stopping = Some(reason);
        self.drain_unattempted(&text);
        let waiting: Vec<(SpawnHandle, Task)> = self.retry_waiting.drain().map(|(_, v)| v).collect();
        let mut ready: Vec<Task> = self.retry_ready.drain(..).collect();
        ready.extend(self.budget_waiting.drain(..));
        let mut tasks = Vec::with_capacity(waiting.len() + ready.len());
        for (handle, task) in waiting {
            ctx.cancel_future(handle);
            tasks.push(task);
        }
        tasks.extend(ready);
        let retry_reason = format!("{text} (it had failed and was waiting for a retry)");
        let throttled_reason = format!("{text} (ADT throttled every attempt, so it was never written)");
        for task in tasks {
            // Only throttled so far: never written, so not attempted as far as ADT is concerned.
            if task.may_have_written {
                self.fail_task(task, "stopped_early", &retry_reason);
            } else {
                self.fail_task(task, NOT_ATTEMPTED, &throttled_reason);
            }
        }
        ctx.run_later(self.shutdown_grace, |act, ctx| {
            let abandoned: Vec<Task> = act.in_flight.drain().map(|(_, t)| t).collect();
            for task in abandoned {
                act.fail_task(
                    task,
                    "in_flight_at_stop",
                    "the run stopped while this request was in flight and no answer came within the shutdown grace; it may or may not have landed. Load it again",
                );
            }
            act.check_finished(ctx);
        });
        self.check_finished(ctx);
    }

    /// Journals every item never handed out as not attempted, streaming them.
    fn drain_unattempted(&mut self, reason: &str) {
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

    fn check_finished(&mut self, ctx: &mut Context<Self>) {
        let nothing_moving = self.in_flight.is_empty()
            && self.retry_ready.is_empty()
            && self.retry_waiting.is_empty()
            && self.budget_waiting.is_empty();
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
        let end = RunEnd {
            journal,
            retries: self.supervisor.stats().clone(),
            stop: self.stopping.clone(),
            write_elapsed: self.last_report.saturating_duration_since(self.started),
            journal_error: self.journal_error.take(),
        };
        let _ = done.send(end);
        ctx.stop();
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
            self.retry_ready.len() + self.retry_waiting.len() + self.budget_waiting.len(),
            counts.requests_total,
            counts.throttled_total,
            self.limiter.current_rate(LimitClass::CreateDelete),
        );
    }
}

fn task_items(work: &TaskWork) -> Vec<ItemId> {
    match work {
        TaskWork::Models(ids) => ids.clone(),
        TaskWork::Twin(id) | TaskWork::Relationship(id) => vec![*id],
    }
}

fn into_work(task: Task) -> Option<Work> {
    Some(match task.work {
        TaskWork::Models(ids) => Work::Models(ids),
        TaskWork::Twin(id) => Work::Twin(id),
        TaskWork::Relationship(id) => Work::Relationship(id),
    })
}

impl Actor for Coordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.started = Instant::now();
        self.last_report = self.started;
        if let Some(deadline) = self.deadline {
            ctx.run_later(deadline, |act, ctx| act.begin_stop(StopReason::Deadline, ctx));
        }
        ctx.run_interval(PROGRESS_INTERVAL, |act, _| act.log_progress());
        ctx.run_interval(BUDGET_RECHECK, |act, ctx| act.release_budget_waiters(ctx));
        let watchdog = (self.no_progress_timeout / 4).clamp(Duration::from_millis(10), WATCHDOG_MAX_INTERVAL);
        ctx.run_interval(watchdog, |act, ctx| act.watch_progress(ctx));
        self.pump(ctx);
    }
}

impl Handler<Finished> for Coordinator {
    type Result = ();

    fn handle(&mut self, msg: Finished, ctx: &mut Context<Self>) {
        self.last_report = Instant::now();
        self.supervisor.on_requests(u64::from(msg.requests));
        let Some(mut task) = self.in_flight.remove(&msg.writer) else { return };
        if task.id != msg.task {
            // A report for a task already re-sent after a restart: the newer one counts.
            self.in_flight.insert(msg.writer, task);
            return;
        }
        self.idle.push(msg.writer);
        task.sent_at = msg.sent_at;
        let throttled = match &msg.report {
            Report::Single(reply) => matches!(reply.outcome, Outcome::Throttled { .. }),
            Report::Models(report) => {
                report.unsettled_reply.as_ref().is_some_and(|r| matches!(r.outcome, Outcome::Throttled { .. }))
            }
        };
        if !throttled {
            self.limiter.on_reply(task.class(&self.scheduler));
        }
        match (msg.report, &task.work) {
            (Report::Single(reply), TaskWork::Twin(id) | TaskWork::Relationship(id)) => {
                let id = *id;
                self.settle_single(task, id, reply, ctx)
            }
            (Report::Models(report), TaskWork::Models(_)) => self.settle_models(task, report, ctx),
            (_, _) => self.fail_task(
                task,
                "internal",
                "internal: a writer reported on the wrong kind of work. Please report this",
            ),
        }
        self.release_budget_waiters(ctx);
        self.pump(ctx);
    }
}

impl Handler<WriterRestarted> for Coordinator {
    type Result = ();

    fn handle(&mut self, msg: WriterRestarted, ctx: &mut Context<Self>) {
        self.supervisor.on_writer_restart();
        if let Some(mut task) = self.in_flight.remove(&msg.writer) {
            if let Some(reason) = self.stopping.clone() {
                self.fail_task(
                    task,
                    "stopped_early",
                    &format!("{reason} while this item was being re-sent after a writer restart. Load it again"),
                );
            } else {
                // Re-send first: it was handed out before everything still waiting. Its request
                // may have gone out, so a 412/409 next time means it landed.
                task.in_flight = None;
                task.may_have_written = true;
                self.retry_ready.push_front(task);
            }
        }
        self.idle.push(msg.writer);
        self.pump(ctx);
    }
}

impl Handler<Stop> for Coordinator {
    type Result = ();

    fn handle(&mut self, msg: Stop, ctx: &mut Context<Self>) {
        self.begin_stop(msg.0, ctx);
    }
}
