//! The supervisor actor owns failure, so the coordinator only dispatches and settles:
//! - Every attempt that did not land comes here ([`AttemptFailed`]). The supervisor counts it
//!   into the task's history, asks the [`FailurePolicy`] what to do, and answers with an
//!   [`Order`]: `Retry` once the task's wait is over (and, for a failure, once the run-wide
//!   retry budget has a token), or `GiveUp` with a reason code.
//! - Throttles: it feeds the limiter's adaptive rate (`Limiter::on_throttle`) and, when the
//!   limiter calls it congestion (a wall of 429s, not a background share), pauses the whole
//!   limit class for the server's `Retry-After`, capped by `max_server_wait`.
//! - Writers run under `actix::Supervisor`, which restarts a writer that died on the same
//!   mailbox; the writer tells the supervisor ([`WriterRestarted`]), which counts it and orders
//!   the coordinator to re-send what that writer held (safe: every write is idempotent).
//! - The run's deadline and the no-progress watchdog (nothing landed for
//!   `no_progress_timeout`) send [`Stop`]; so does ADT refusing the credentials.
//! - Once the coordinator says it is [`Stopping`], the retries it holds are dropped (the
//!   coordinator journals their items) and later failures are given up at once.
//!
//! Its time is tokio's, so tests drive it on a paused clock.

pub mod policy;
pub mod retrier;
pub mod signals;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::time::Instant;

use crate::client::Outcome;
use crate::limiter::Limiter;
use crate::reason::ReasonCode;

use super::messages::{Attempt, AttemptFailed, Order, Progress, Stop, StopReason, Stopping, TaskId, WriterRestarted};
use super::writer::{Writer, WriterEnv};

pub use policy::{describe, Decision, FailurePolicy, RetryReason, RetryStats};
pub use signals::StopSignals;

/// How often retries waiting for the retry budget look again (the budget also refills with
/// every report of traffic, which releases them sooner).
const BUDGET_RECHECK: Duration = Duration::from_millis(100);
/// Longest interval between two looks of the no-progress watchdog.
const WATCHDOG_MAX_INTERVAL: Duration = Duration::from_secs(1);

/// What the supervisor starts with.
pub struct SupervisorSetup {
    pub policy: crate::config::RetryPolicy,
    pub limiter: Arc<Limiter>,
    /// Its orders go here (the coordinator).
    pub orders: Recipient<Order>,
    /// Its stops (deadline, watchdog, credentials refused) go here (the coordinator).
    pub stop: Recipient<Stop>,
    /// Time left of the run's deadline when writing starts.
    pub deadline: Option<Duration>,
    pub no_progress_timeout: Duration,
}

pub struct Supervisor {
    policy: FailurePolicy,
    limiter: Arc<Limiter>,
    orders: Recipient<Order>,
    stop: Recipient<Stop>,
    /// Retries waiting out their backoff or `Retry-After`.
    waiting: HashMap<TaskId, SpawnHandle>,
    /// Retries of failures whose wait is over but that wait for a retry-budget token.
    budget_waiting: VecDeque<(TaskId, Attempt)>,
    stopping: Option<StopReason>,
    /// A stop was asked for (so the watchdog asks once).
    stop_asked: bool,
    deadline: Option<Duration>,
    no_progress_timeout: Duration,
    /// When an item last landed (or writing started).
    last_landed: Instant,
}

impl Supervisor {
    pub fn new(setup: SupervisorSetup) -> Supervisor {
        Supervisor {
            policy: FailurePolicy::new(setup.policy),
            limiter: setup.limiter,
            orders: setup.orders,
            stop: setup.stop,
            waiting: HashMap::new(),
            budget_waiting: VecDeque::new(),
            stopping: None,
            stop_asked: false,
            deadline: setup.deadline,
            no_progress_timeout: setup.no_progress_timeout,
            last_landed: Instant::now(),
        }
    }

    fn ask_stop(&mut self, reason: StopReason) {
        if !self.stop_asked {
            self.stop_asked = true;
            self.stop.do_send(Stop(reason));
        }
    }

    /// A throttle: feeds the class's adaptive rate and, when the limiter calls it congestion,
    /// pauses the class for the server's (capped) `Retry-After`.
    fn on_throttle(&mut self, msg: &AttemptFailed, retry_after: Option<Duration>) {
        let verdict = self.limiter.on_throttle(msg.class, msg.sent_at);
        if let (Some(asked), true) = (retry_after, verdict.pauses_class()) {
            self.limiter.pause(msg.class, self.policy.server_wait(asked));
        }
    }

    /// The task waits `after`, then (a `budgeted` retry) for a retry-budget token, then goes.
    fn schedule_retry(
        &mut self,
        task: TaskId,
        history: Attempt,
        after: Duration,
        budgeted: bool,
        ctx: &mut Context<Self>,
    ) {
        let handle = ctx.run_later(after, move |act, _| {
            if act.waiting.remove(&task).is_none() {
                return; // dropped at a stop
            }
            if budgeted && !act.policy.take_budget(Instant::now(), true) {
                act.budget_waiting.push_back((task, history));
                return;
            }
            act.orders.do_send(Order::Retry { task, history });
        });
        self.waiting.insert(task, handle);
    }

    /// Lets retries that waited for the retry budget go, as far as it allows now.
    fn release_budget_waiters(&mut self) {
        while !self.budget_waiting.is_empty() && self.policy.take_budget(Instant::now(), false) {
            if let Some((task, history)) = self.budget_waiting.pop_front() {
                self.orders.do_send(Order::Retry { task, history });
            }
        }
    }

    fn watch_progress(&mut self) {
        if self.stopping.is_none() && self.last_landed.elapsed() >= self.no_progress_timeout {
            self.ask_stop(StopReason::NoProgress(self.no_progress_timeout));
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.last_landed = Instant::now();
        if let Some(deadline) = self.deadline {
            ctx.run_later(deadline, |act, _| act.ask_stop(StopReason::Deadline));
        }
        ctx.run_interval(BUDGET_RECHECK, |act, _| act.release_budget_waiters());
        let watchdog = (self.no_progress_timeout / 4).clamp(Duration::from_millis(10), WATCHDOG_MAX_INTERVAL);
        ctx.run_interval(watchdog, |act, _| act.watch_progress());
    }
}

impl Handler<AttemptFailed> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: AttemptFailed, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let mut history = msg.history;
        FailurePolicy::record(&mut history, &msg.reply, now);
        let throttled = match &msg.reply.outcome {
            Outcome::Throttled { retry_after } => {
                self.on_throttle(&msg, *retry_after);
                true
            }
            _ => false,
        };
        let give_up =
            |reason_code, reason| Order::GiveUp { task: msg.task, reply: msg.reply.clone(), reason_code, reason };
        if let Some(stop) = &self.stopping {
            if !matches!(msg.reply.outcome, Outcome::Rejected { .. } | Outcome::AuthFailed { .. }) {
                let code = if history.may_have_written { ReasonCode::StoppedEarly } else { ReasonCode::NotAttempted };
                let reason = format!(
                    "{stop} before this item could be retried (last attempt: {}). Load it again",
                    describe(&msg.reply)
                );
                self.orders.do_send(give_up(code, reason));
                return;
            }
        }
        match self.policy.decide(history, &msg.reply, now) {
            Decision::Retry { after, budgeted, .. } => {
                if throttled {
                    self.limiter.held_back(msg.class, after);
                }
                self.schedule_retry(msg.task, history, after, budgeted, ctx);
            }
            Decision::Fail { reason_code, reason } => self.orders.do_send(give_up(reason_code, reason)),
        }
        // After the give-up, so the coordinator journals this item with its own reason before
        // it stops and journals the rest as not attempted.
        if let Outcome::AuthFailed { message } = &msg.reply.outcome {
            self.ask_stop(StopReason::AuthFailed(message.clone()));
        }
    }
}

impl Handler<Progress> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Progress, _: &mut Context<Self>) {
        self.policy.on_requests(u64::from(msg.requests));
        if msg.landed > 0 {
            self.last_landed = Instant::now();
        }
        self.release_budget_waiters();
    }
}

impl Handler<Stopping> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Stopping, ctx: &mut Context<Self>) {
        self.stopping = Some(msg.0);
        self.stop_asked = true;
        for (_, handle) in self.waiting.drain() {
            ctx.cancel_future(handle);
        }
        self.budget_waiting.clear();
    }
}

impl Handler<WriterRestarted> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: WriterRestarted, _: &mut Context<Self>) {
        self.policy.on_writer_restart();
        self.orders.do_send(Order::Resend { writer: msg.writer });
    }
}

/// The run is over: the supervisor answers with its retry tally (for the summary) and stops.
#[derive(Message)]
#[rtype(result = "RetryStats")]
pub struct RetryTally;

impl Handler<RetryTally> for Supervisor {
    type Result = MessageResult<RetryTally>;

    fn handle(&mut self, _: RetryTally, ctx: &mut Context<Self>) -> MessageResult<RetryTally> {
        ctx.stop();
        MessageResult(self.policy.stats().clone())
    }
}

/// Starts `n` writers, each under `actix::Supervisor` (restarted on the same mailbox if it
/// stops; the restarted writer tells this supervisor).
pub fn start_writers(n: usize, env: &WriterEnv) -> Vec<Addr<Writer>> {
    (0..n)
        .map(|slot| {
            let env = env.clone();
            actix::Supervisor::start(move |_| Writer::new(slot, env))
        })
        .collect()
}
