//! One ADT call outside the write phase (start-up checks, sync's reads and writes, an import
//! job's calls and polling), retried by the same [`FailurePolicy`] the supervisor applies to
//! the writers' attempts: a 429 is back-pressure (never an attempt, never the retry budget;
//! it waits the larger of `Retry-After` and a short backoff, bounded only by the no-progress
//! timeout); a failure is retried at most `max_attempts` times, paced by the run-wide retry
//! budget; what retrying cannot change is answered at once. Every call takes its class's
//! permit (and its twins' budget), every reply feeds the adaptive limiter, and every wait, and
//! the call itself, ends when the run is to stop ([`Shutdown`]).

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::client::{ClientError, Outcome, Reply};
use crate::config::{LoadConfig, RetryPolicy};
use crate::limiter::Limiter;
use crate::limits::LimitClass;
use crate::run::messages::{Attempt, StopReason};
use crate::run::shutdown::Shutdown;

use super::policy::{Decision, FailurePolicy, RetryStats};

/// How often a retry waiting for the retry budget looks again.
const BUDGET_RECHECK: Duration = Duration::from_millis(100);

/// What the retry loop needs to know of an answer.
pub trait Answer {
    /// The answer as the policy judges it when a retry may change it (throttled, or a failure
    /// that may heal); `None` when it is final (a success, or a refusal).
    fn retryable(&self) -> Option<Reply>;
    /// The wait the server asked for with a failure (a 503's `Retry-After`).
    fn server_wait(&self) -> Option<Duration> {
        None
    }
}

impl Answer for Reply {
    fn retryable(&self) -> Option<Reply> {
        matches!(self.outcome, Outcome::Throttled { .. } | Outcome::Transient { .. } | Outcome::TooLarge { .. })
            .then(|| self.clone())
    }
}

impl<T> Answer for Result<T, ClientError> {
    fn retryable(&self) -> Option<Reply> {
        let Err(e) = self else { return None };
        let outcome = if e.is_throttle() {
            Outcome::Throttled { retry_after: e.retry_after() }
        } else if e.is_retryable() {
            Outcome::Transient { detail: e.to_string() }
        } else {
            return None;
        };
        let status = match e {
            ClientError::Status(s) => Some(s.status),
            _ => None,
        };
        Some(Reply { outcome, status, code: None, etag: None })
    }

    fn server_wait(&self) -> Option<Duration> {
        self.as_ref().err().and_then(ClientError::retry_after)
    }
}

/// A call that ended because the run is to stop.
#[derive(Debug, Clone, PartialEq)]
pub struct Stopped {
    pub reason: StopReason,
    /// The stop came while a request was out: it may or may not have been carried out.
    pub in_flight: bool,
    /// An earlier attempt may have been carried out (it failed after it was sent).
    pub may_have_written: bool,
}

impl Stopped {
    /// Whether ADT may have carried out the call (so it is "stopped early", not "not attempted").
    pub fn may_have_written(&self) -> bool {
        self.in_flight || self.may_have_written
    }
}

/// Why a call that must succeed did not.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{}", .0.reason)]
    Stopped(Stopped),
    #[error(transparent)]
    Failed(#[from] ClientError),
}

/// The retry policy, the limiter and the stop every call outside the write phase shares (one
/// per run, so the retry budget is the run's).
pub struct Retrier {
    settings: RetryPolicy,
    policy: Mutex<FailurePolicy>,
    server_wait_cap: Duration,
    limiter: Arc<Limiter>,
    shutdown: Shutdown,
    /// How long a call may be throttled without a break before its last answer is final.
    throttle_limit: Duration,
}

impl Retrier {
    pub fn new(policy: RetryPolicy, limiter: Arc<Limiter>, shutdown: Shutdown, throttle_limit: Duration) -> Retrier {
        Retrier {
            server_wait_cap: policy.max_server_wait,
            policy: Mutex::new(FailurePolicy::new(policy.clone())),
            settings: policy,
            limiter,
            shutdown,
            throttle_limit,
        }
    }

    /// The run's retry policy and no-progress timeout.
    pub fn for_run(config: &LoadConfig, limiter: &Arc<Limiter>, shutdown: Shutdown) -> Retrier {
        Retrier::new(config.retry.clone(), Arc::clone(limiter), shutdown, config.no_progress_timeout)
    }

    /// The same policy and limiter, ending on another stop (the calls that cancel an import
    /// job after the run's stop, bounded by the shutdown grace).
    pub fn until(&self, shutdown: Shutdown) -> Retrier {
        Retrier::new(self.settings.clone(), Arc::clone(&self.limiter), shutdown, self.throttle_limit)
    }

    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// The retries made through this retrier, for the summary.
    pub fn stats(&self) -> RetryStats {
        self.policy().stats().clone()
    }

    fn policy(&self) -> MutexGuard<'_, FailurePolicy> {
        // A panic elsewhere while holding it leaves plain counters: still usable.
        self.policy.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends `call` (after its class permit and its `twins`' budget) until its answer is final
    /// or the policy gives up (then the last answer is returned), or until the run is to stop.
    pub async fn call<A, F, Fut>(&self, class: LimitClass, twins: &[&str], mut call: F) -> Result<A, Stopped>
    where
        A: Answer,
        F: FnMut() -> Fut,
        Fut: Future<Output = A>,
    {
        let mut history = Attempt::default();
        let mut throttled_since: Option<Instant> = None;
        let stopped = |reason, in_flight, history: &Attempt| Stopped {
            reason,
            in_flight,
            may_have_written: history.may_have_written,
        };
        loop {
            let permit = async {
                self.limiter.acquire(class).await;
                if !twins.is_empty() {
                    self.limiter.twins().acquire(twins).await;
                }
            };
            self.shutdown.unless_stopped(permit).await.map_err(|r| stopped(r, false, &history))?;
            let sent_at = std::time::Instant::now();
            let answer = self.shutdown.unless_stopped(call()).await.map_err(|r| stopped(r, true, &history))?;
            self.policy().on_requests(1);
            let Some(reply) = answer.retryable() else {
                self.limiter.on_reply(class);
                return Ok(answer);
            };
            let now = Instant::now();
            FailurePolicy::record(&mut history, &reply, now);
            if let Outcome::Throttled { retry_after } = reply.outcome {
                // Back-pressure: bounded, as in the write phase, only by the no-progress timeout.
                if now.saturating_duration_since(*throttled_since.get_or_insert(now)) >= self.throttle_limit {
                    return Ok(answer);
                }
                let verdict = self.limiter.on_throttle(class, Some(sent_at));
                if let (Some(asked), true) = (retry_after, verdict.pauses_class()) {
                    self.limiter.pause(class, asked.min(self.server_wait_cap));
                }
            } else {
                throttled_since = None;
                self.limiter.on_reply(class);
            }
            let decision = self.policy().decide(history, &reply, now);
            let Decision::Retry { after, budgeted, reason } = decision else { return Ok(answer) };
            let after = after.max(answer.server_wait().unwrap_or_default().min(self.server_wait_cap));
            if reason == super::RetryReason::Throttled {
                self.limiter.held_back(class, after);
            }
            tracing::info!(
                "{} call {}; again in {:.1} s",
                class.as_str(),
                super::policy::describe(&reply),
                after.as_secs_f64()
            );
            self.shutdown.unless_stopped(self.wait(after, budgeted)).await.map_err(|r| stopped(r, false, &history))?;
        }
    }

    /// A call that must succeed: its error, or the stop, as a [`CallError`].
    pub async fn call_ok<T, F, Fut>(&self, class: LimitClass, call: F) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        Ok(self.call(class, &[], call).await.map_err(CallError::Stopped)??)
    }

    /// Sleeps `after`, then (a retry of a failure) until the retry budget has a token.
    async fn wait(&self, after: Duration, budgeted: bool) {
        tokio::time::sleep(after).await;
        let mut first_ask = true;
        while budgeted && !self.policy().take_budget(Instant::now(), first_ask) {
            first_ask = false;
            tokio::time::sleep(BUDGET_RECHECK).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AdaptiveRate;
    use crate::limits::Limits;
    use std::cell::Cell;

    fn retrier(max_attempts: u32, shutdown: Shutdown) -> Retrier {
        let limiter = Arc::new(Limiter::new(&Limits::adt_default(), &AdaptiveRate::default()));
        let policy = RetryPolicy { max_attempts, ..RetryPolicy::default() };
        Retrier::new(policy, limiter, shutdown, Duration::from_secs(900))
    }

    fn status(status: u16, retry_after: Option<Duration>) -> ClientError {
        ClientError::Status(Box::new(crate::client::StatusError {
            method: "GET".into(),
            url: "http://127.0.0.1/models".into(),
            status,
            code: None,
            message: String::new(),
            hint: String::new(),
            retry_after,
            outcome: match status {
                429 => Outcome::Throttled { retry_after },
                s if s >= 500 => Outcome::Transient { detail: format!("{s}") },
                _ => Outcome::Rejected { message: String::new() },
            },
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn throttles_never_spend_attempts_and_wait_what_the_server_asks() {
        let r = retrier(2, Shutdown::never());
        let calls = Cell::new(0);
        let began = Instant::now();
        let answer: Result<u32, ClientError> = r
            .call(LimitClass::Read, &[], || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move {
                    if n <= 10 {
                        Err(status(429, Some(Duration::from_secs(3))))
                    } else {
                        Ok(n)
                    }
                }
            })
            .await
            .expect("not stopped");
        assert_eq!(answer.unwrap(), 11, "ten 429s with max_attempts = 2 still end in the answer");
        assert!(began.elapsed() >= Duration::from_secs(30), "each 429 waited its Retry-After: {:?}", began.elapsed());
        assert_eq!(r.stats().retries_by_reason[&super::super::RetryReason::Throttled], 10);
        let read = r.limiter.stats().classes.into_iter().find(|c| c.class == LimitClass::Read).unwrap();
        assert_eq!(read.throttles_reported, 10, "the limiter heard every throttle");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_retried_up_to_max_attempts_and_refusals_not_at_all() {
        let r = retrier(3, Shutdown::never());
        let calls = Cell::new(0);
        let answer: Result<(), ClientError> = r
            .call(LimitClass::Read, &[], || {
                calls.set(calls.get() + 1);
                async { Err(status(503, None)) }
            })
            .await
            .expect("not stopped");
        assert!(matches!(answer, Err(ClientError::Status(ref s)) if s.status == 503));
        assert_eq!(calls.get(), 3);
        calls.set(0);
        let refused: Result<(), ClientError> = r
            .call(LimitClass::Read, &[], || {
                calls.set(calls.get() + 1);
                async { Err(status(403, None)) }
            })
            .await
            .expect("not stopped");
        assert!(refused.is_err());
        assert_eq!(calls.get(), 1, "a refusal is final");
    }

    /// A shutdown the test triggers by sending on the returned channel (in a `LocalSet`).
    fn test_shutdown(name: &'static str) -> (tokio::sync::oneshot::Sender<()>, Shutdown) {
        let (tell, told) = tokio::sync::oneshot::channel::<()>();
        let shutdown = Shutdown::listen(async move {
            let _ = told.await;
            StopReason::Signal(name)
        });
        (tell, shutdown)
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_a_throttled_wait_and_no_call_goes_out_after_it() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let (tell, shutdown) = test_shutdown("SIGTERM");
                let r = retrier(3, shutdown);
                // A server that throttles with a day's Retry-After (capped at max_server_wait).
                let waiting = r.call(LimitClass::Read, &[], || async {
                    Err::<(), _>(status(429, Some(Duration::from_secs(86_400))))
                });
                let stop_soon = async {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let _ = tell.send(());
                };
                let (stopped, ()) = tokio::join!(waiting, stop_soon);
                let stopped = stopped.expect_err("the stop ends the wait");
                assert_eq!(stopped.reason, StopReason::Signal("SIGTERM"));
                assert!(!stopped.may_have_written(), "only throttled: nothing was carried out");
                let sent = Cell::new(false);
                let after = r
                    .call(LimitClass::Read, &[], || {
                        sent.set(true);
                        std::future::pending::<Result<(), ClientError>>()
                    })
                    .await;
                assert!(after.is_err() && !sent.get(), "once stopped, no call is sent");
            })
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_abandons_a_call_that_never_answers() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let (tell, shutdown) = test_shutdown("SIGINT");
                let r = retrier(3, shutdown);
                let hanging = r.call(LimitClass::Read, &[], std::future::pending::<Result<(), ClientError>>);
                let stop_soon = async {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let _ = tell.send(());
                };
                let stopped = tokio::join!(hanging, stop_soon).0.expect_err("the stop abandons the call");
                assert_eq!(stopped.reason, StopReason::Signal("SIGINT"));
                assert!(stopped.in_flight && stopped.may_have_written());
            })
            .await;
    }
}
