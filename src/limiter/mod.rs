//! The one rate limiter that all writers share: a token bucket per ADT limit class with the
//! configured rates ([`class_bucket`], governor), made adaptive ([`adaptive`]: multiplicative
//! decrease on congestion, CUBIC recovery, never above the configured rate; [`throttle_share`]
//! tells congestion from 429s that come at one share whatever the rate), and the per-twin
//! budget ([`per_twin`]: writes per second and requests in flight on one twin).
//!
//! Bursts are small (`adaptive.burst_seconds`, default 1/20 s of the rate) so the stream is
//! smooth and never exceeds what ADT's buckets allow. Everything is observable through
//! [`Limiter::stats`]: current rate per class, permits granted, waits.

pub mod adaptive;
pub mod class_bucket;
pub mod per_twin;
pub mod throttle_share;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::config::AdaptiveRate;
use crate::limits::{LimitClass, Limits};

pub use adaptive::Throttle;
pub use class_bucket::{ClassBucket, ClassStats, ThrottleVerdict};
pub use per_twin::{InFlight, TwinBudget, TwinLimiter, TwinStats};
pub use throttle_share::WALL_SHARE;

pub struct Limiter {
    classes: Vec<ClassBucket>,
    twins: Arc<TwinLimiter>,
}

/// A snapshot of the limiter, for the summary and progress lines.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LimiterStats {
    pub classes: Vec<ClassStats>,
    pub twins: TwinStats,
}

impl Limiter {
    pub fn new(limits: &Limits, adaptive: &AdaptiveRate) -> Limiter {
        Limiter {
            classes: LimitClass::ALL
                .iter()
                .map(|c| ClassBucket::new(*c, f64::from(limits.rate_of(*c)), adaptive))
                .collect(),
            twins: Arc::new(TwinLimiter::new(limits.per_twin_writes_per_s, limits.per_twin_in_flight)),
        }
    }

    fn class(&self, class: LimitClass) -> &ClassBucket {
        let i = LimitClass::ALL.iter().position(|c| *c == class).unwrap_or(0);
        &self.classes[i]
    }

    /// Waits for a permit of the class.
    pub async fn acquire(&self, class: LimitClass) {
        self.class(class).acquire().await
    }

    /// The per-twin budget (peek, reserve in-flight room, acquire write permits).
    pub fn twins(&self) -> &Arc<TwinLimiter> {
        &self.twins
    }

    /// A request of this class, sent at `sent_at` (when known), was throttled: feed the
    /// adaptive rate. The answer says whether the whole class should also honour the server's
    /// `Retry-After` ([`ThrottleVerdict::pauses_class`]) or only the item waits.
    pub fn on_throttle(&self, class: LimitClass, sent_at: Option<std::time::Instant>) -> ThrottleVerdict {
        self.class(class).on_throttle(sent_at)
    }

    /// A request of this class came back without a throttle (whatever else it said).
    pub fn on_reply(&self, class: LimitClass) {
        self.class(class).on_reply()
    }

    /// The server asked (`Retry-After`) that this class wait `wait`: every writer of the class
    /// holds off until then; the other classes go on.
    pub fn pause(&self, class: LimitClass, wait: Duration) {
        self.class(class).pause(wait)
    }

    /// Work of this class is held back by a throttle for `wait` from now (for
    /// `throttled_wait_s`: the wall time during which something of the class waited on a 429).
    pub fn held_back(&self, class: LimitClass, wait: Duration) {
        self.class(class).held_back(wait)
    }

    pub fn current_rate(&self, class: LimitClass) -> f64 {
        self.class(class).current_rate()
    }

    pub fn stats(&self) -> LimiterStats {
        LimiterStats {
            classes: self
                .classes
                .iter()
                .map(|c| c.stats())
                .filter(|s| s.permits_granted > 0 || s.throttles_reported > 0)
                .collect(),
            twins: self.twins.stats(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// Starting at the configured rate (not ramping up), so rates are easy to check.
    fn at_ceiling() -> AdaptiveRate {
        AdaptiveRate { initial_share: 1.0, cooldown: Duration::from_secs(1), ..AdaptiveRate::default() }
    }

    fn limits(create_per_s: u32, per_twin: u32, in_flight: u32) -> Limits {
        let mut l = Limits::adt_default();
        l.create_delete_per_s = create_per_s;
        l.per_twin_writes_per_s = per_twin;
        l.per_twin_in_flight = in_flight;
        l
    }

    /// Bounds every timing test: a broken limiter fails instead of hanging.
    const TEST_BOUND: Duration = Duration::from_secs(10);

    /// How long `n` create/delete permits take, one after the other.
    async fn time_to_acquire(limiter: &Limiter, n: usize) -> Duration {
        let started = Instant::now();
        tokio::time::timeout(TEST_BOUND, async {
            for _ in 0..n {
                limiter.acquire(LimitClass::CreateDelete).await;
            }
        })
        .await
        .expect("permits come");
        started.elapsed()
    }

    #[tokio::test]
    async fn a_class_never_grants_faster_than_its_rate() {
        let limiter = Limiter::new(&limits(200, 10, 500), &AdaptiveRate::default());
        let n = 60;
        let took = time_to_acquire(&limiter, n).await;
        // The bucket starts empty (its burst drained): n permits need at least (n-1)/200 s.
        let floor = Duration::from_secs_f64((n - 1) as f64 / 200.0 * 0.95);
        assert!(took >= floor, "{took:?} < {floor:?}");
        let stats = limiter.stats();
        let cd = stats.classes.iter().find(|c| c.class == LimitClass::CreateDelete).unwrap();
        assert_eq!(cd.permits_granted, n as u64);
        assert!(cd.permits_waited > 0);
    }

    #[tokio::test]
    async fn a_throttle_slows_the_class_down() {
        let limiter = Limiter::new(&limits(400, 10, 500), &at_ceiling());
        limiter.on_throttle(LimitClass::CreateDelete, None);
        limiter.on_throttle(LimitClass::CreateDelete, None);
        let rate = limiter.current_rate(LimitClass::CreateDelete);
        assert!((rate - 280.0).abs() < 2.0, "one cut per cooldown: {rate}");
        assert!(limiter.current_rate(LimitClass::Read) > 999.0, "other classes untouched");
        let n = 57;
        let took = time_to_acquire(&limiter, n).await;
        let floor = Duration::from_secs_f64((n - 1) as f64 / 280.0 * 0.95);
        assert!(took >= floor, "{took:?} < {floor:?}");
    }

    #[tokio::test]
    async fn per_twin_writes_are_spaced_and_count_on_both_ends() {
        let limiter = Limiter::new(&limits(1000, 20, 500), &AdaptiveRate::default());
        let twins = limiter.twins();
        let started = Instant::now();
        tokio::time::timeout(TEST_BOUND, async {
            twins.acquire(&["a"]).await;
            // A relationship a -> b: spends a's budget too, so it waits for a's next permit.
            twins.acquire(&["a", "b"]).await;
            // b was just written: its next permit is one interval away.
            assert!(matches!(twins.peek(&["b"]), TwinBudget::WaitFor(_)));
            assert_eq!(twins.peek(&["c"]), TwinBudget::Ready);
            twins.acquire(&["b", "c"]).await;
        })
        .await
        .expect("permits come");
        // Three writes touching a or b in a chain: at least two intervals of 50 ms, less the
        // GCRA's tolerance of a tenth of one each (per_twin.rs).
        assert!(started.elapsed() >= Duration::from_millis(90), "{:?}", started.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_its_class_back_and_not_the_others() {
        let limiter = Limiter::new(&limits(1000, 10, 500), &at_ceiling());
        let started = tokio::time::Instant::now();
        limiter.pause(LimitClass::CreateDelete, Duration::from_secs(3));
        limiter.acquire(LimitClass::Read).await;
        assert!(started.elapsed() < Duration::from_secs(1), "read is not paused");
        limiter.acquire(LimitClass::CreateDelete).await;
        assert!(started.elapsed() >= Duration::from_secs(3), "{:?}", started.elapsed());
        let stats = limiter.stats();
        let cd = stats.classes.iter().find(|c| c.class == LimitClass::CreateDelete).unwrap();
        assert!(cd.throttled_wait_s >= 3.0 && cd.throttled_wait_s < 3.5, "{cd:?}");
    }

    #[test]
    fn only_a_wall_of_429s_pauses_the_class() {
        let limiter = Limiter::new(&limits(500, 10, 500), &at_ceiling());
        let cd = LimitClass::CreateDelete;
        for _ in 0..50 {
            limiter.on_reply(cd);
        }
        // One 429 among 50 replies: congestion (nothing says otherwise), so the rate is cut,
        // but the class is not paused for it.
        let trickle = limiter.on_throttle(cd, None);
        assert_eq!(trickle.throttle, Throttle::Cut);
        assert!(!trickle.pauses_class(), "{trickle:?}");
        // Then everything comes back 429: the instance is a wall, the class holds off.
        let mut last = trickle;
        for _ in 0..60 {
            last = limiter.on_throttle(cd, None);
        }
        assert!(last.pauses_class(), "{last:?}");
    }

    #[test]
    fn in_flight_room_is_bounded_and_released() {
        let limiter = Limiter::new(&limits(500, 10, 2), &AdaptiveRate::default());
        let twins = limiter.twins();
        let first = twins.reserve(&["hub", "x"]).expect("room");
        let second = twins.reserve(&["hub", "y"]).expect("room");
        assert!(twins.reserve(&["z", "hub"]).is_none(), "hub is full: all or nothing");
        assert_eq!(twins.peek(&["hub"]), TwinBudget::InFlightFull);
        assert!(twins.reserve(&["z"]).is_some(), "z was not reserved by the failed attempt");
        drop(first);
        assert!(twins.reserve(&["hub"]).is_some());
        drop(second);
        twins.prune();
    }
}
