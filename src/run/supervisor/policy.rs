//! The failure policy: what the supervisor decides about a failed attempt ([`FailurePolicy::decide`]).
//! - A throttle (429, `QuotaReachedError` or any throttling code) is back-pressure, not a
//!   failure: it is always retried, never spends the item's attempts nor the retry budget, and
//!   waits the larger of the server's `Retry-After` (capped by `max_server_wait`) and a short
//!   jittered backoff. Only the run's deadline and no-progress watchdog bound it.
//! - A failure (5xx, timeout, dropped connection) is retried after a jittered exponential
//!   backoff, at most `max_attempts` times per item, paced by the run-wide [`RetryBudget`]: past
//!   the budget a retry waits until the budget frees, so retries stay a share of the traffic and
//!   a failing service slows the load instead of losing items.
//! - A relationship whose twin ADT does not see yet (`TargetDigitalTwinNotFound`, or
//!   `DigitalTwinNotFound` for its source) is retried for a bounded grace period (ADT is
//!   eventually consistent; outside the budget, which guards against overload).
//! - Everything else fails with a reason a person can act on.
//!
//! Plain data and arithmetic, no actor: the preparation's reads and `--mode sync` use the same
//! backoff and server-wait rules.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::time::Instant;

use crate::client::{Outcome, Reply};
use crate::config::RetryPolicy;
use crate::reason::ReasonCode;
use crate::run::messages::Attempt;

/// Throttled items back off at most this many doubling steps (200 ms … 1.6 s nominal): the
/// class's rate limiter meters what goes out, the item's own wait only spreads the retries.
pub const THROTTLE_BACKOFF_STEPS: u32 = 4;
/// Retry budget refill with no traffic at all, per second (Finagle's `minRetriesPerSec`
/// default), so a load whose last items are failing still moves instead of waiting for traffic
/// that will not come: at 1/s, a service failing 12% of requests left a 2,000-twin load a
/// minute-long tail of retries waiting for tokens.
pub const RETRY_BUDGET_TRICKLE_PER_S: f64 = 10.0;

/// Why an item is sent again: the summary's `retries_by_reason` and the metrics' label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryReason {
    /// ADT said "slower" (429 or a throttling code).
    Throttled,
    /// 5xx, a timeout or a dropped connection.
    Transient,
    /// ADT did not see a relationship's twin yet (eventual consistency).
    TwinNotVisible,
    /// The writer that held it died and was restarted.
    WriterRestart,
}

impl RetryReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RetryReason::Throttled => "throttled",
            RetryReason::Transient => "transient",
            RetryReason::TwinNotVisible => "twin_not_visible",
            RetryReason::WriterRestart => "writer_restart",
        }
    }
}

/// What to do with a failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Send it again after this long. A `budgeted` retry also needs a token of the
    /// [`RetryBudget`] (it waits for one after `after`).
    Retry { after: Duration, reason: RetryReason, budgeted: bool },
    /// Give up: dead-letter the item with this reason code and reason.
    Fail { reason_code: ReasonCode, reason: String },
}

/// Retry counts for the summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RetryStats {
    pub retries_total: u64,
    pub retries_by_reason: BTreeMap<RetryReason, u64>,
    pub writer_restarts: u64,
    /// Retries that found the retry budget spent and waited for it to free.
    pub budget_waits: u64,
}

/// The run-wide retry budget (Google SRE "Handling overload"): a token bucket that every
/// request fills by `budget_share` of a token (plus a trickle over time) up to `budget_min` tokens,
/// and every retry of a failure empties by one. Retries therefore stay near that share of the
/// traffic; a retry that finds it empty waits instead of being dropped.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    tokens: f64,
    cap: f64,
    share: f64,
    last_refill: Option<Instant>,
}

impl RetryBudget {
    pub fn new(policy: &RetryPolicy) -> RetryBudget {
        let cap = (policy.budget_min as f64).max(1.0);
        RetryBudget { tokens: cap, cap, share: policy.budget_share, last_refill: None }
    }

    /// `n` more requests were sent.
    pub fn on_requests(&mut self, n: u64) {
        self.tokens = (self.tokens + self.share * n as f64).min(self.cap);
    }

    /// Takes a token for one retry if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last_refill {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * RETRY_BUDGET_TRICKLE_PER_S).min(self.cap);
        }
        self.last_refill = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub struct FailurePolicy {
    policy: RetryPolicy,
    stats: RetryStats,
    budget: RetryBudget,
    rng: SmallRng,
}

impl FailurePolicy {
    pub fn new(policy: RetryPolicy) -> FailurePolicy {
        FailurePolicy {
            budget: RetryBudget::new(&policy),
            policy,
            stats: RetryStats::default(),
            rng: SmallRng::from_entropy(),
        }
    }

    /// Requests were sent: they fill the retry budget.
    pub fn on_requests(&mut self, n: u64) {
        self.budget.on_requests(n);
    }

    /// A budgeted retry is due: true if the budget lets it go now; otherwise it waits (and is
    /// asked again as requests refill the budget).
    pub fn take_budget(&mut self, now: Instant, first_ask: bool) -> bool {
        let ok = self.budget.try_take(now);
        if !ok && first_ask {
            self.stats.budget_waits += 1;
        }
        ok
    }

    pub fn stats(&self) -> &RetryStats {
        &self.stats
    }

    /// A writer died and was restarted; its item is re-sent (counted as a retry, outside the
    /// budget: the item must not be lost to a crash of ours).
    pub fn on_writer_restart(&mut self) {
        self.stats.writer_restarts += 1;
        self.count_retry(RetryReason::WriterRestart, Duration::ZERO);
    }

    /// The one place a retry is counted: the summary's tally and the metrics.
    fn count_retry(&mut self, reason: RetryReason, wait: Duration) {
        self.stats.retries_total += 1;
        *self.stats.retries_by_reason.entry(reason).or_default() += 1;
        crate::observe::catalog::retry(reason.as_str(), wait);
    }

    /// Jittered exponential backoff for the given attempt ("equal jitter": half fixed, half
    /// random, so retries of a burst spread out but never come back at once).
    pub fn backoff(&mut self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let full = self.policy.backoff_base.saturating_mul(1u32 << exp).min(self.policy.backoff_max);
        let half = full / 2;
        half + half.mul_f64(self.rng.gen::<f64>())
    }

    /// Counts a failed attempt into its task's history: throttles apart from failures, and
    /// what a failure says about whether the write may have happened.
    pub fn record(history: &mut Attempt, reply: &Reply, now: Instant) {
        match &reply.outcome {
            Outcome::Throttled { .. } => history.throttles += 1,
            Outcome::Transient { .. } | Outcome::TooLarge { .. } => {
                history.failures += 1;
                history.may_have_written = true;
            }
            Outcome::TwinNotVisible { .. } => {
                history.failures += 1;
                history.first_not_visible.get_or_insert(now);
            }
            Outcome::Landed
            | Outcome::AlreadyExists { .. }
            | Outcome::Rejected { .. }
            | Outcome::AuthFailed { .. }
            | Outcome::Redirected { .. } => {}
        }
    }

    /// Decides what to do after a failed attempt. `attempt` is the task's history with this
    /// attempt already counted in it ([`FailurePolicy::record`]).
    pub fn decide(&mut self, attempt: Attempt, reply: &Reply, now: Instant) -> Decision {
        let (retry_reason, wait, budgeted) = match &reply.outcome {
            Outcome::Landed | Outcome::AlreadyExists { .. } => {
                return Decision::Fail { reason_code: ReasonCode::Internal, reason: "a success was handed to the retry policy".into() }
            }
            Outcome::Rejected { message } => {
                return Decision::Fail { reason_code: ReasonCode::WriteFailed, reason: format!("ADT rejected it: {message}. Fix the item and load it again") }
            }
            Outcome::AuthFailed { message } => {
                return Decision::Fail {
                    reason_code: ReasonCode::AuthFailed,
                    reason: format!("ADT refused the credentials ({message}). Check the token and that the identity has the 'Azure Digital Twins Data Owner' role"),
                }
            }
            Outcome::Redirected { .. } => {
                return Decision::Fail {
                    reason_code: ReasonCode::Redirected,
                    reason: format!(
                        "not written: {}. Check --endpoint (the instance's host name), and any proxy between",
                        reply.outcome.detail()
                    ),
                }
            }
            Outcome::Throttled { retry_after } => {
                // Back-pressure: always retried, outside the attempts and the budget.
                let backoff = self.backoff(attempt.throttles.clamp(1, THROTTLE_BACKOFF_STEPS));
                let wait = retry_after.map_or(backoff, |ra| self.server_wait(ra).max(backoff));
                self.count_retry(RetryReason::Throttled, wait);
                return Decision::Retry { after: wait, reason: RetryReason::Throttled, budgeted: false };
            }
            Outcome::Transient { .. } | Outcome::TooLarge { .. } => {
                (RetryReason::Transient, self.backoff(attempt.failures), true)
            }
            Outcome::TwinNotVisible { message } => {
                // The planner releases a relationship only after both its twins landed in this
                // run or were found in ADT, so a missing twin is ADT's eventual consistency, for
                // a while.
                let since = attempt.first_not_visible.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
                if since >= self.policy.target_grace {
                    return Decision::Fail {
                        reason_code: ReasonCode::TwinNotFound,
                        reason: format!(
                            "ADT still did not see the relationship's twin {:.0} s after it was created or found ({message}). Check that nothing deleted it, then load the relationship again",
                            since.as_secs_f64()
                        ),
                    };
                }
                // Eventual consistency is not overload: outside the budget, bounded by the
                // grace period and the attempt limit.
                (RetryReason::TwinNotVisible, self.backoff(attempt.failures), false)
            }
        };
        if attempt.failures >= self.policy.max_attempts {
            return Decision::Fail {
                reason_code: ReasonCode::RetriesExhausted,
                reason: format!(
                    "gave up after {} failed attempts (throttled attempts not counted); the last one: {}. Load it again later",
                    attempt.failures,
                    describe(reply)
                ),
            };
        }
        self.count_retry(retry_reason, wait);
        Decision::Retry { after: wait, reason: retry_reason, budgeted }
    }

    /// A server's requested wait, capped so a broken header cannot park the load.
    pub fn server_wait(&self, asked: Duration) -> Duration {
        asked.min(self.policy.max_server_wait)
    }
}

/// A reply in a few words, for reasons.
pub fn describe(reply: &Reply) -> String {
    let status = reply.status.map_or_else(|| "no response".to_string(), |s| format!("HTTP {s}"));
    let detail = match &reply.outcome {
        Outcome::Landed => "landed".to_string(),
        Outcome::AlreadyExists { .. } => "already exists".to_string(),
        outcome => outcome.detail(),
    };
    format!("{status} {detail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(outcome: Outcome, status: Option<u16>) -> Reply {
        Reply { outcome, status, code: None, etag: None }
    }

    fn failed(n: u32) -> Attempt {
        Attempt { failures: n, ..Attempt::default() }
    }

    fn throttled(n: u32) -> Attempt {
        Attempt { throttles: n, ..Attempt::default() }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy { budget_min: 2, budget_share: 0.1, max_attempts: 3, ..RetryPolicy::default() }
    }

    #[test]
    fn throttles_wait_at_least_retry_after_capped_by_the_server_wait_limit() {
        let mut s = FailurePolicy::new(policy());
        let r = reply(Outcome::Throttled { retry_after: Some(Duration::from_secs(5)) }, Some(429));
        match s.decide(throttled(1), &r, Instant::now()) {
            Decision::Retry { after, reason, budgeted } => {
                assert!(after >= Duration::from_secs(5));
                assert_eq!(reason, RetryReason::Throttled);
                assert!(!budgeted, "a throttle never spends the retry budget");
            }
            d => panic!("{d:?}"),
        }
        // Without Retry-After: the backoff, jittered within [base/2, base] on the first retry.
        let r = reply(Outcome::Throttled { retry_after: None }, Some(429));
        match s.decide(throttled(1), &r, Instant::now()) {
            Decision::Retry { after, .. } => {
                assert!(after >= Duration::from_millis(100) && after <= Duration::from_millis(200), "{after:?}")
            }
            d => panic!("{d:?}"),
        }
        // A broken header cannot park the load.
        let mut capped = FailurePolicy::new(RetryPolicy { max_server_wait: Duration::from_secs(2), ..policy() });
        let r = reply(Outcome::Throttled { retry_after: Some(Duration::from_secs(86_400)) }, Some(429));
        match capped.decide(throttled(1), &r, Instant::now()) {
            Decision::Retry { after, .. } => assert_eq!(after, Duration::from_secs(2)),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn a_throttle_never_fails_an_item_however_often_it_comes() {
        let mut s = FailurePolicy::new(policy());
        let r = reply(Outcome::Throttled { retry_after: None }, Some(429));
        for n in 1..=1000 {
            // Even with failures at the limit already: throttles are not the item's fault.
            let attempt = Attempt { failures: 2, throttles: n, ..Attempt::default() };
            match s.decide(attempt, &r, Instant::now()) {
                Decision::Retry { after, budgeted: false, .. } => {
                    assert!(after <= Duration::from_millis(1600), "{after:?}")
                }
                d => panic!("throttle {n}: {d:?}"),
            }
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let mut s = FailurePolicy::new(RetryPolicy { backoff_max: Duration::from_secs(2), ..RetryPolicy::default() });
        for _ in 0..20 {
            let b3 = s.backoff(3); // 800 ms nominal
            assert!(b3 >= Duration::from_millis(400) && b3 <= Duration::from_millis(800), "{b3:?}");
            let b20 = s.backoff(20);
            assert!(b20 >= Duration::from_secs(1) && b20 <= Duration::from_secs(2), "{b20:?}");
        }
    }

    #[test]
    fn rejections_and_auth_failures_are_not_retried() {
        let mut s = FailurePolicy::new(policy());
        let d = s.decide(
            failed(1),
            &reply(Outcome::Rejected { message: "ValidationFailed: bad".into() }, Some(400)),
            Instant::now(),
        );
        assert!(
            matches!(d, Decision::Fail { reason_code: ReasonCode::WriteFailed, ref reason } if reason.contains("ValidationFailed"))
        );
        let d = s.decide(failed(1), &reply(Outcome::AuthFailed { message: "403".into() }, Some(403)), Instant::now());
        assert!(matches!(d, Decision::Fail { reason_code: ReasonCode::AuthFailed, .. }));
        assert_eq!(s.stats().retries_total, 0);
    }

    #[test]
    fn failures_are_bounded_per_item_and_use_the_budget() {
        let mut s = FailurePolicy::new(policy());
        let r = reply(Outcome::Transient { detail: "HTTP 503".into() }, Some(503));
        assert!(matches!(s.decide(failed(2), &r, Instant::now()), Decision::Retry { budgeted: true, .. }));
        let d = s.decide(failed(3), &r, Instant::now());
        assert!(
            matches!(d, Decision::Fail { reason_code: ReasonCode::RetriesExhausted, ref reason } if reason.contains("3 failed attempts") && reason.contains("503")),
            "{d:?}"
        );
    }

    #[test]
    fn the_retry_budget_paces_retries_at_a_share_of_traffic_and_never_drops_them() {
        let mut s = FailurePolicy::new(policy());
        let t0 = Instant::now();
        // budget_min = 2 tokens to start.
        assert!(s.take_budget(t0, true));
        assert!(s.take_budget(t0, true));
        assert!(!s.take_budget(t0, true), "spent: the retry waits");
        assert_eq!(s.stats().budget_waits, 1);
        // 10 more requests at 10% = one more retry.
        s.on_requests(10);
        assert!(s.take_budget(t0, false));
        assert!(!s.take_budget(t0, false));
        // With no traffic at all, the trickle frees one a second, so the load still ends.
        assert!(s.take_budget(t0 + Duration::from_millis(1100), false));
        // Traffic never fills it past its size.
        s.on_requests(1_000_000);
        let t1 = t0 + Duration::from_secs(2);
        let granted = (0..10).filter(|_| s.take_budget(t1, false)).count();
        assert_eq!(granted, 2);
    }

    #[test]
    fn a_missing_target_is_retried_for_the_grace_period_only() {
        let mut s = FailurePolicy::new(RetryPolicy {
            max_attempts: 100,
            target_grace: Duration::from_secs(10),
            ..RetryPolicy::default()
        });
        let r = reply(Outcome::TwinNotVisible { message: "TargetDigitalTwinNotFound".into() }, Some(404));
        let t0 = Instant::now();
        let early = Attempt { failures: 2, first_not_visible: Some(t0), ..Attempt::default() };
        assert!(matches!(
            s.decide(early, &r, t0 + Duration::from_secs(3)),
            Decision::Retry { reason: RetryReason::TwinNotVisible, budgeted: false, .. }
        ));
        let late = Attempt { failures: 5, first_not_visible: Some(t0), ..Attempt::default() };
        let d = s.decide(late, &r, t0 + Duration::from_secs(11));
        assert!(matches!(d, Decision::Fail { reason_code: ReasonCode::TwinNotFound, .. }), "{d:?}");
    }

    #[test]
    fn restarts_are_counted() {
        let mut s = FailurePolicy::new(policy());
        s.on_writer_restart();
        assert_eq!(s.stats().writer_restarts, 1);
        assert_eq!(s.stats().retries_by_reason[&RetryReason::WriterRestart], 1);
    }
}
