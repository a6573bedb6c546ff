//! The messages between the actors of a load, in one place so that no actor module needs
//! another's types: each actor holds [`Recipient`](actix::Recipient)s of the messages it
//! sends, never the concrete address of the actor behind them (tests put fakes there).
//!
//! ```text
//!   coordinator ──Assign──────────────▶ writer ──Finished──▶ coordinator
//!   coordinator ──AttemptFailed───────▶ supervisor ──Order──▶ coordinator
//!   coordinator ──Progress, Stopping──▶ supervisor
//!   writer (restarted) ──WriterRestarted──▶ supervisor ──Order::Resend──▶ coordinator
//!   supervisor (deadline, watchdog), signals ──Stop──▶ coordinator
//! ```

use std::time::{Duration, Instant};

use actix::Message;
use serde_json::value::RawValue;

use crate::client::Reply;
use crate::limits::LimitClass;
use crate::plan::{ItemId, ReasonCode};

/// A task: one unit of work (a model batch, a twin, a relationship) across its attempts.
pub type TaskId = u64;

/// One model of a batch, with what the fallback needs to keep dependency order.
#[derive(Debug, Clone)]
pub struct ModelToSend {
    pub item: ItemId,
    pub model_id: String,
    pub depends_on: Vec<String>,
    pub body: Box<RawValue>,
}

/// One unit of work for a writer.
#[derive(Debug, Clone)]
pub enum Request {
    /// One `POST /models` (then the writer's 409/400 handling), dependency-ordered.
    Models(Vec<ModelToSend>),
    Twin {
        item: ItemId,
        twin_id: String,
        body: Box<RawValue>,
    },
    /// `PATCH /digitaltwins/{id}` with a JSON Patch (a mapping without a model, as the
    /// reference prototype writes): the twin must exist.
    TwinPatch {
        item: ItemId,
        twin_id: String,
        body: Box<RawValue>,
    },
    Relationship {
        item: ItemId,
        source: String,
        relationship_id: String,
        target: String,
        body: Box<RawValue>,
    },
}

impl Request {
    /// The limit class its requests are metered in.
    pub fn class(&self) -> LimitClass {
        match self {
            Request::Models(_) => LimitClass::Models,
            Request::Twin { .. } | Request::Relationship { .. } => LimitClass::CreateDelete,
            Request::TwinPatch { .. } => LimitClass::Patch,
        }
    }
}

/// A model the batch handling gave up on.
#[derive(Debug, Clone)]
pub struct ModelFailure {
    pub item: ItemId,
    pub reply: Option<Reply>,
    pub reason_code: ReasonCode,
    pub reason: String,
}

/// What became of a model batch.
#[derive(Debug, Clone, Default)]
pub struct ModelReport {
    pub landed: Vec<ItemId>,
    pub already_existed: Vec<ItemId>,
    pub failed: Vec<ModelFailure>,
    /// Models not settled because a call was throttled or failed transiently (or auth
    /// failed): the supervisor decides on them, with this reply.
    pub unsettled: Vec<ModelToSend>,
    pub unsettled_reply: Option<Reply>,
}

/// What a writer's assignment came to.
#[derive(Debug, Clone)]
pub enum Report {
    Single(Reply),
    Models(ModelReport),
}

impl Report {
    /// The reply that says the work was throttled, if it was.
    pub fn throttled(&self) -> bool {
        let reply = match self {
            Report::Single(reply) => Some(reply),
            Report::Models(report) => report.unsettled_reply.as_ref(),
        };
        reply.is_some_and(|r| matches!(r.outcome, crate::client::Outcome::Throttled { .. }))
    }
}

/// Coordinator → writer: send this.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Assign {
    pub task: TaskId,
    pub request: Request,
}

/// Writer → coordinator: what became of an assignment.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Finished {
    pub writer: usize,
    pub task: TaskId,
    pub report: Report,
    /// HTTP requests this assignment sent.
    pub requests: u32,
    /// When the last of them went out (so a throttle is matched with the rate in force then).
    pub sent_at: Option<Instant>,
}

/// Writer → supervisor: a writer died and was restarted; whatever it held is lost.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WriterRestarted {
    pub writer: usize,
}

/// One task's history, as the supervisor needs it to decide on its latest attempt. The
/// supervisor updates it with each failed attempt and hands it back with its order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attempt {
    /// Failures of its own so far (5xx, timeouts, drops, a twin not visible); throttles do not
    /// count.
    pub failures: u32,
    /// Throttles so far.
    pub throttles: u32,
    /// When ADT first said one of this relationship's twins was not there.
    pub first_not_visible: Option<tokio::time::Instant>,
    /// An earlier attempt may have written (it timed out, its connection dropped, its writer
    /// died mid-request, the server erred): a 412/409 now means our own write landed.
    pub may_have_written: bool,
}

/// Coordinator → supervisor: an attempt did not land; decide.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttemptFailed {
    pub task: TaskId,
    pub class: LimitClass,
    /// The history before this attempt.
    pub history: Attempt,
    pub reply: Reply,
    /// When its request went out.
    pub sent_at: Option<Instant>,
}

/// Coordinator → supervisor: requests were sent and items landed (the retry budget fills
/// with traffic; the watchdog watches landings).
#[derive(Message, Debug, Clone, Copy, Default)]
#[rtype(result = "()")]
pub struct Progress {
    pub requests: u32,
    pub landed: u32,
}

/// Coordinator → supervisor: the run is stopping. Retries it holds are dropped (the
/// coordinator journals their items) and later failures are given up with this reason.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stopping(pub StopReason);

/// Supervisor → coordinator.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum Order {
    /// Send the task again now (its wait and the retry budget allow it).
    Retry { task: TaskId, history: Attempt },
    /// Give the task up: dead-letter its items with this reason.
    GiveUp { task: TaskId, reply: Reply, reason_code: ReasonCode, reason: String },
    /// The writer was restarted: re-send whatever it held.
    Resend { writer: usize },
}

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

/// Anyone (signals, the supervisor's deadline and watchdog) → coordinator: stop cleanly.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop(pub StopReason);
