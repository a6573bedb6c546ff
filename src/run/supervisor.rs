//! The supervisor owns failure:
//! - [`Supervisor::decide`]: whether a failed attempt is retried and after how long (the
//!   larger of the server's `Retry-After` and a jittered exponential backoff), within a
//!   per-item attempt limit and a run-wide retry budget (retries at most a share of requests,
//!   plus a minimum so a small run can still retry); a relationship whose twin ADT does not
//!   see yet (`TargetDigitalTwinNotFound`, or `DigitalTwinNotFound` for its source) is retried for
//!   a bounded grace period (ADT is eventually consistent; outside the budget, which guards
//!   against overload); everything else fails with a reason
//!   a person can act on;
//! - [`start_writers`]: writers run under `actix::Supervisor`, which restarts a writer that
//!   died on the same mailbox; the writer then tells the coordinator, which re-sends the item
//!   it held (safe: every write is idempotent) and the supervisor counts the restart;
//! - [`StopSignals`]: SIGTERM and SIGINT (how Batch and ADF cancel a task) ask the
//!   coordinator to stop cleanly. The overall deadline is armed by the coordinator with the
//!   same stop.
//!
//! Throttles also feed the limiter's adaptive rate (the coordinator calls
//! `Limiter::on_throttle` with the outcome the supervisor classified).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix::Addr;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::client::{Outcome, Reply};
use crate::config::RetryPolicy;

use super::coordinator::{Coordinator, Stop, StopReason};
use super::writer::{Writer, WriterEnv};

/// What to do with a failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Send it again after this long. `reason` is the retry's tally key.
    Retry { after: Duration, reason: &'static str },
    /// Give up: dead-letter the item with this reason code and reason.
    Fail { reason_code: &'static str, reason: String },
}

/// Retry counts for the summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RetryStats {
    pub retries_total: u64,
    pub retries_by_reason: BTreeMap<&'static str, u64>,
    pub writer_restarts: u64,
    /// Items that failed because the retry budget was spent.
    pub budget_exhausted: u64,
}

pub struct Supervisor {
    policy: RetryPolicy,
    stats: RetryStats,
    rng: SmallRng,
}

/// One attempt's context, as the supervisor needs it.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    /// Attempts made so far, this one included (1 = the first).
    pub number: u32,
    /// When ADT first said one of this relationship's twins was not there.
    pub first_not_visible: Option<Instant>,
}

impl Supervisor {
    pub fn new(policy: RetryPolicy) -> Supervisor {
        Supervisor { policy, stats: RetryStats::default(), rng: SmallRng::from_entropy() }
    }

    pub fn stats(&self) -> &RetryStats {
        &self.stats
    }

    /// A writer died and was restarted; its item is re-sent (counted as a retry, outside the
    /// budget: the item must not be lost to a crash of ours).
    pub fn on_writer_restart(&mut self) {
        self.stats.writer_restarts += 1;
        self.count_retry("writer_restart");
    }

    fn count_retry(&mut self, reason: &'static str) {
        self.stats.retries_total += 1;
        *self.stats.retries_by_reason.entry(reason).or_default() += 1;
    }

    /// Jittered exponential backoff for the given attempt ("equal jitter": half fixed, half
    /// random, so retries of a burst spread out but never come back at once).
    pub fn backoff(&mut self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let full = self.policy.backoff_base.saturating_mul(1u32 << exp).min(self.policy.backoff_max);
        let half = full / 2;
        half + half.mul_f64(self.rng.gen::<f64>())
    }

    fn budget_allows(&self, requests_so_far: u64) -> bool {
        let allowed = self.policy.budget_min as f64 + self.policy.budget_share * requests_so_far as f64;
        (self.stats.retries_total as f64) < allowed
    }

    /// Decides what to do after a failed attempt. `requests_so_far` is every request the run
    /// sent (the retry budget is a share of it).
    pub fn decide(&mut self, attempt: Attempt, reply: &Reply, requests_so_far: u64, now: Instant) -> Decision {
        let (retry_reason, wait) = match &reply.outcome {
            Outcome::Landed | Outcome::AlreadyExists { .. } => {
                return Decision::Fail { reason_code: "internal", reason: "a success was handed to the retry policy".into() }
            }
            Outcome::Rejected { message } => {
                return Decision::Fail { reason_code: "write_failed", reason: format!("ADT rejected it: {message}. Fix the item and load it again") }
            }
            Outcome::AuthFailed { message } => {
                return Decision::Fail {
                    reason_code: "auth_failed",
                    reason: format!("ADT refused the credentials ({message}). Check the token and that the identity has the 'Azure Digital Twins Data Owner' role"),
                }
            }
            Outcome::Throttled { retry_after } => {
                let backoff = self.backoff(attempt.number);
                ("throttled", retry_after.map_or(backoff, |ra| ra.max(backoff)))
            }
            Outcome::Transient { .. } => ("transient", self.backoff(attempt.number)),
            Outcome::TwinNotVisible { message } => {
                // The planner releases a relationship only after both its twins landed in this
                // run or were found in ADT, so a missing twin is ADT's eventual consistency, for
                // a while.
                let since = attempt.first_not_visible.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
                if since >= self.policy.target_grace {
                    return Decision::Fail {
                        reason_code: "twin_not_found",
                        reason: format!(
                            "ADT still did not see the relationship's twin {:.0} s after it was created or found ({message}). Check that nothing deleted it, then load the relationship again",
                            since.as_secs_f64()
                        ),
                    };
                }
                ("twin_not_visible", self.backoff(attempt.number))
            }
        };
        let last = describe(reply);
        if attempt.number >= self.policy.max_attempts {
            return Decision::Fail {
                reason_code: "retries_exhausted",
                reason: format!("gave up after {} attempts; the last one: {last}. Load it again later", attempt.number),
            };
        }
        // The budget guards an overloaded service against retry storms. A twin that is not
        // visible yet is ADT's eventual consistency, not overload: those retries are bounded
        // by the grace period and the attempt limit instead.
        if retry_reason != "twin_not_visible" && !self.budget_allows(requests_so_far) {
            self.stats.budget_exhausted += 1;
            return Decision::Fail {
                reason_code: "retry_budget_exhausted",
                reason: format!(
                    "not retried: retries already reached {} of {} requests (budget {:.0}% + {}), so ADT is failing persistently; the last error: {last}. Check the instance's health, then load it again",
                    self.stats.retries_total,
                    requests_so_far,
                    self.policy.budget_share * 100.0,
                    self.policy.budget_min
                ),
            };
        }
        self.count_retry(retry_reason);
        Decision::Retry { after: wait, reason: retry_reason }
    }
}

/// A reply in a few words, for reasons.
pub fn describe(reply: &Reply) -> String {
    let status = reply.status.map_or_else(|| "no response".to_string(), |s| format!("HTTP {s}"));
    let detail = match &reply.outcome {
        Outcome::Throttled { .. } => "throttled".to_string(),
        Outcome::Transient { detail } => detail.clone(),
        Outcome::TwinNotVisible { message } | Outcome::Rejected { message } | Outcome::AuthFailed { message } => {
            message.clone()
        }
        Outcome::Landed => "landed".to_string(),
        Outcome::AlreadyExists { .. } => "already exists".to_string(),
    };
    format!("{status} {detail}")
}

/// Starts `n` writers, each under `actix::Supervisor` (restarted on the same mailbox if it
/// stops).
pub fn start_writers(n: usize, env: &WriterEnv) -> Vec<Addr<Writer>> {
    (0..n)
        .map(|slot| {
            let env = env.clone();
            actix::Supervisor::start(move |_| Writer::new(slot, env))
        })
        .collect()
}

/// SIGTERM and SIGINT, listened for from [`StopSignals::install`] on (install it before the
/// run's preparation, so a signal that comes while the inputs are read is not lost: the
/// coordinator then stops as soon as it starts).
pub struct StopSignals {
    #[cfg(unix)]
    listeners: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl StopSignals {
    /// Takes over SIGTERM and SIGINT for this process. Must run inside the run's runtime.
    pub fn install() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let listeners = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
                (Ok(term), Ok(int)) => Some((term, int)),
                _ => {
                    tracing::warn!("cannot listen for SIGTERM/SIGINT; the run stops only at its end or deadline");
                    None
                }
            };
            StopSignals { listeners }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// Asks the coordinator to stop cleanly when a signal comes (or came since `install`).
    pub fn forward_to(self, coordinator: Addr<Coordinator>) {
        actix::spawn(async move {
            let signal = self.wait().await;
            tracing::warn!(
                "{signal} received: no new work is handed out; in-flight requests finish, then the summary is written"
            );
            coordinator.do_send(Stop(StopReason::Signal(signal)));
        });
    }

    #[cfg(unix)]
    pub async fn wait(self) -> &'static str {
        let Some((mut term, mut int)) = self.listeners else { return std::future::pending().await };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }

    #[cfg(not(unix))]
    pub async fn wait(self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(outcome: Outcome, status: Option<u16>) -> Reply {
        Reply { outcome, status, code: None }
    }

    fn first() -> Attempt {
        Attempt { number: 1, first_not_visible: None }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy { budget_min: 2, budget_share: 0.1, max_attempts: 3, ..RetryPolicy::default() }
    }

    #[test]
    fn throttles_wait_at_least_retry_after() {
        let mut s = Supervisor::new(policy());
        let r = reply(Outcome::Throttled { retry_after: Some(Duration::from_secs(5)) }, Some(429));
        match s.decide(first(), &r, 1000, Instant::now()) {
            Decision::Retry { after, reason } => {
                assert!(after >= Duration::from_secs(5));
                assert_eq!(reason, "throttled");
            }
            d => panic!("{d:?}"),
        }
        // Without Retry-After: the backoff, jittered within [base/2, base] on the first retry.
        let r = reply(Outcome::Throttled { retry_after: None }, Some(429));
        match s.decide(first(), &r, 1000, Instant::now()) {
            Decision::Retry { after, .. } => {
                assert!(after >= Duration::from_millis(100) && after <= Duration::from_millis(200), "{after:?}")
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let mut s = Supervisor::new(RetryPolicy { backoff_max: Duration::from_secs(2), ..RetryPolicy::default() });
        for _ in 0..20 {
            let b3 = s.backoff(3); // 800 ms nominal
            assert!(b3 >= Duration::from_millis(400) && b3 <= Duration::from_millis(800), "{b3:?}");
            let b20 = s.backoff(20);
            assert!(b20 >= Duration::from_secs(1) && b20 <= Duration::from_secs(2), "{b20:?}");
        }
    }

    #[test]
    fn rejections_and_auth_failures_are_not_retried() {
        let mut s = Supervisor::new(policy());
        let d = s.decide(
            first(),
            &reply(Outcome::Rejected { message: "ValidationFailed: bad".into() }, Some(400)),
            10,
            Instant::now(),
        );
        assert!(
            matches!(d, Decision::Fail { reason_code: "write_failed", ref reason } if reason.contains("ValidationFailed"))
        );
        let d = s.decide(first(), &reply(Outcome::AuthFailed { message: "403".into() }, Some(403)), 10, Instant::now());
        assert!(matches!(d, Decision::Fail { reason_code: "auth_failed", .. }));
        assert_eq!(s.stats().retries_total, 0);
    }

    #[test]
    fn attempts_are_bounded_per_item() {
        let mut s = Supervisor::new(policy());
        let r = reply(Outcome::Transient { detail: "HTTP 503".into() }, Some(503));
        let third = Attempt { number: 3, first_not_visible: None };
        let d = s.decide(third, &r, 1000, Instant::now());
        assert!(
            matches!(d, Decision::Fail { reason_code: "retries_exhausted", ref reason } if reason.contains("3 attempts") && reason.contains("503")),
            "{d:?}"
        );
    }

    #[test]
    fn the_retry_budget_caps_retries_at_a_share_of_traffic() {
        let mut s = Supervisor::new(policy());
        let r = reply(Outcome::Transient { detail: "reset".into() }, None);
        // 20 requests: budget = 2 + 0.1 * 20 = 4 retries.
        let mut retried = 0;
        for _ in 0..10 {
            if let Decision::Retry { .. } = s.decide(first(), &r, 20, Instant::now()) {
                retried += 1;
            }
        }
        assert_eq!(retried, 4);
        assert_eq!(s.stats().budget_exhausted, 6);
        match s.decide(first(), &r, 20, Instant::now()) {
            Decision::Fail { reason_code, reason } => {
                assert_eq!(reason_code, "retry_budget_exhausted");
                assert!(reason.contains("budget"), "{reason}");
            }
            d => panic!("{d:?}"),
        }
        // More traffic, more budget.
        assert!(matches!(s.decide(first(), &r, 100, Instant::now()), Decision::Retry { .. }));
    }

    #[test]
    fn a_missing_target_is_retried_for_the_grace_period_only() {
        let mut s = Supervisor::new(RetryPolicy {
            max_attempts: 100,
            target_grace: Duration::from_secs(10),
            ..RetryPolicy::default()
        });
        let r = reply(Outcome::TwinNotVisible { message: "TargetDigitalTwinNotFound".into() }, Some(404));
        let t0 = Instant::now();
        let early = Attempt { number: 2, first_not_visible: Some(t0) };
        assert!(matches!(
            s.decide(early, &r, 100, t0 + Duration::from_secs(3)),
            Decision::Retry { reason: "twin_not_visible", .. }
        ));
        // Outside the retry budget: eventual consistency is not overload.
        let mut spent = Supervisor::new(RetryPolicy {
            max_attempts: 100,
            budget_min: 0,
            budget_share: 0.0,
            ..RetryPolicy::default()
        });
        assert!(matches!(spent.decide(early, &r, 100, t0 + Duration::from_secs(1)), Decision::Retry { .. }));
        let late = Attempt { number: 5, first_not_visible: Some(t0) };
        let d = s.decide(late, &r, 100, t0 + Duration::from_secs(11));
        assert!(matches!(d, Decision::Fail { reason_code: "twin_not_found", .. }), "{d:?}");
    }

    #[test]
    fn restarts_are_counted() {
        let mut s = Supervisor::new(policy());
        s.on_writer_restart();
        assert_eq!(s.stats().writer_restarts, 1);
        assert_eq!(s.stats().retries_by_reason["writer_restart"], 1);
    }
}
