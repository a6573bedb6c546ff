//! Every metric twinload exports: its name, type, help text and labels, and one typed function
//! per thing recorded. The rest of the code calls these functions (one line at each of the few
//! places that already centralize things: the client's stats, the journal, the supervisor, the
//! limiter sampler), never the `metrics` macros directly, so names and labels live here only.
//!
//! Conventions (Prometheus): `twinload_` prefix, base units, `_total` on counters, `_seconds`
//! on durations. Label values are limit classes, statuses, kinds, outcomes, reason codes and
//! the Batch pool/job/task ids (global labels, see [`super::labels`]): never a twin id, so the
//! series count stays small whatever the load.
//!
//! Each call also feeds [`super::tally`], the in-process counters the progress bars and the
//! run report's timeline read.
//!
//! Without an installed recorder (no `--metrics-listen`, no `--pushgateway`) every call is a
//! no-op of a few nanoseconds (the tally's atomic adds remain).

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};

use crate::item::ItemKind;
use crate::limits::LimitClass;
use crate::plan::PlanCounts;

use super::tally;

pub const ITEMS: &str = "twinload_items_total";
pub const ITEMS_PLANNED: &str = "twinload_items_planned";
pub const REQUESTS: &str = "twinload_requests_total";
pub const THROTTLED: &str = "twinload_throttled_requests_total";
pub const RETRIES: &str = "twinload_retries_total";
pub const REQUEST_DURATION: &str = "twinload_request_duration_seconds";
pub const IN_FLIGHT: &str = "twinload_requests_in_flight";
pub const QUEUE_DEPTH: &str = "twinload_queue_depth";
pub const LIMITER_RATE: &str = "twinload_limiter_rate_per_second";
pub const LIMITER_LIMIT: &str = "twinload_limiter_limit_per_second";
pub const RETRY_BACKOFF: &str = "twinload_retry_backoff_seconds";
pub const DEAD_LETTERS: &str = "twinload_dead_letters_total";
pub const RUN_PHASE: &str = "twinload_run_phase";
pub const RUN_START: &str = "twinload_run_start_time_seconds";
pub const BUILD_INFO: &str = "twinload_build_info";

/// Buckets of [`REQUEST_DURATION`], in seconds: ADT answers in tens of milliseconds, the mock
/// in about one; timeouts default to 30 s.
pub const DURATION_BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Buckets of [`RETRY_BACKOFF`], in seconds: backoffs start at 200 ms, Retry-After is often
/// 1 s and backoffs stop at 30 s.
pub const BACKOFF_BUCKETS: [f64; 10] = [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0];

/// The phases of a run, for [`RUN_PHASE`] (1 on the current one, 0 on the others).
pub const PHASES: [&str; 3] = ["prepare", "write", "finished"];

/// Registers help texts and units (rendered as `# HELP` lines), and the build info.
pub fn describe() {
    describe_counter!(
        ITEMS,
        "Items that ended, by kind and outcome (landed, already_existed, dead_lettered, not_attempted)."
    );
    describe_gauge!(ITEMS_PLANNED, "Items the plan will write, by kind.");
    describe_counter!(REQUESTS, "HTTP requests sent to ADT, by limit class and status (or transport failure kind).");
    describe_counter!(THROTTLED, "Requests ADT throttled (429 or a throttle error code), by limit class.");
    describe_counter!(RETRIES, "Retries decided by the supervisor, by reason.");
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time from sending a request to its whole answer, by operation and limit class."
    );
    describe_gauge!(IN_FLIGHT, "Requests sent and not answered yet, by limit class.");
    describe_gauge!(
        QUEUE_DEPTH,
        "Work waiting in each stage of the coordinator (ready, in_flight, retry_ready, retry_waiting)."
    );
    describe_gauge!(LIMITER_RATE, "The adaptive rate the limiter allows now, by limit class.");
    describe_gauge!(LIMITER_LIMIT, "The configured rate limit, by limit class.");
    describe_histogram!(
        RETRY_BACKOFF,
        Unit::Seconds,
        "How long an item is held back before its retry, by reason; the sum for reason=\"throttled\" is the time held back by 429s."
    );
    describe_counter!(DEAD_LETTERS, "Items written to the dead-letter file, by reason code.");
    describe_gauge!(RUN_PHASE, "1 on the phase the run is in (prepare, write, finished), 0 on the others.");
    describe_gauge!(RUN_START, Unit::Seconds, "When the run started, as a Unix timestamp.");
    describe_gauge!(BUILD_INFO, "Always 1; the version is a label.");
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// One answered (or failed) request, from the client's stats: `status` is the HTTP status or
/// the transport failure kind ("timeout", "connection").
pub fn request(class: LimitClass, status: &str, throttled: bool) {
    tally::request(class, status, throttled);
    counter!(REQUESTS, "class" => class.as_str(), "status" => status.to_string()).increment(1);
    if throttled {
        counter!(THROTTLED, "class" => class.as_str()).increment(1);
    }
}

/// A request on the wire: counts it in flight until dropped, then records its duration.
pub struct RequestTimer {
    class: LimitClass,
    operation: &'static str,
    started: std::time::Instant,
}

impl RequestTimer {
    pub fn start(class: LimitClass, operation: &'static str) -> RequestTimer {
        tally::in_flight(1);
        gauge!(IN_FLIGHT, "class" => class.as_str()).increment(1.0);
        RequestTimer { class, operation, started: std::time::Instant::now() }
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        let took = self.started.elapsed();
        tally::in_flight(-1);
        tally::duration(took);
        gauge!(IN_FLIGHT, "class" => self.class.as_str()).decrement(1.0);
        histogram!(REQUEST_DURATION, "operation" => self.operation, "class" => self.class.as_str())
            .record(took.as_secs_f64());
    }
}

/// An item ended (from the journal). `outcome`: landed, already_existed, dead_lettered,
/// not_attempted.
pub fn item(kind: ItemKind, outcome: &'static str) {
    tally::item(kind, outcome);
    counter!(ITEMS, "kind" => kind.singular(), "outcome" => outcome).increment(1);
}

/// An item will not land (from the journal): its outcome (not_attempted when its reason is
/// `not_attempted_code`, else dead_lettered) and its reason code.
pub fn dead_letter_item(kind: ItemKind, reason_code: crate::reason::ReasonCode) {
    let not_attempted = reason_code == crate::reason::ReasonCode::NotAttempted;
    item(kind, if not_attempted { "not_attempted" } else { "dead_lettered" });
    counter!(DEAD_LETTERS, "reason" => reason_code.as_str()).increment(1);
}

/// The operation label of a write: what the client's one send path was asked to do.
pub fn operation(class: LimitClass, relationship: bool) -> &'static str {
    match (class, relationship) {
        (LimitClass::Models, _) => "add_models",
        (_, true) => "put_relationship",
        (LimitClass::CreateDelete, false) => "put_twin",
        (other, false) => other.as_str(),
    }
}

/// The supervisor decided to retry, after `wait`.
pub fn retry(reason: &'static str, wait: Duration) {
    tally::retry();
    counter!(RETRIES, "reason" => reason).increment(1);
    // A histogram rather than a counter of seconds: `metrics` counters are integers, and its
    // `_sum` is the float total a counter would have been.
    histogram!(RETRY_BACKOFF, "reason" => reason).record(wait.as_secs_f64());
}

/// What the plan will write, per kind.
pub fn planned(counts: &PlanCounts) {
    for kind in ItemKind::ALL {
        tally::planned(kind, counts.of(kind).to_write);
        gauge!(ITEMS_PLANNED, "kind" => kind.singular()).set(counts.of(kind).to_write as f64);
    }
}

/// Depth of each coordinator stage.
pub fn queue_depths(ready: usize, in_flight: usize, retry_ready: usize, retry_waiting: usize) {
    for (stage, n) in
        [("ready", ready), ("in_flight", in_flight), ("retry_ready", retry_ready), ("retry_waiting", retry_waiting)]
    {
        gauge!(QUEUE_DEPTH, "stage" => stage).set(n as f64);
    }
}

/// The limiter of one class: the rate it allows now and the configured limit.
pub fn limiter_class(class: LimitClass, current_per_s: f64, configured_per_s: f64) {
    gauge!(LIMITER_RATE, "class" => class.as_str()).set(current_per_s);
    gauge!(LIMITER_LIMIT, "class" => class.as_str()).set(configured_per_s);
}

/// The run entered `phase` (one of [`PHASES`]).
pub fn phase(phase: &str) {
    for p in PHASES {
        gauge!(RUN_PHASE, "phase" => p).set(if p == phase { 1.0 } else { 0.0 });
    }
}

/// When the run started (Unix seconds), for the dashboards' elapsed time and ETA.
pub fn run_started(unix_seconds: f64) {
    gauge!(RUN_START).set(unix_seconds);
}
