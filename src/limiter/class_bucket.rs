//! One limit class's token bucket (governor GCRA) with an adjustable rate.
//!
//! governor's quotas are fixed per limiter, so a rate change builds a new limiter and swaps it
//! in (behind a lock taken only for a pointer clone). Why a swap rather than an extra delay in
//! front of a fixed bucket: the swapped bucket *is* the rate, so what the loader sends never
//! depends on two mechanisms agreeing. A fresh limiter starts full, so its burst is drained
//! before it goes in; a swap therefore never lets extra requests through. Waiters re-read the
//! current bucket at least every [`MAX_POLL`], so a cut takes effect within that time.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use crate::config::AdaptiveRate;
use crate::limits::LimitClass;

use super::adaptive::{AdaptiveState, Throttle};
use super::throttle_share::WALL_SHARE;

/// Longest a waiter sleeps before looking at the (maybe swapped) bucket again.
pub const MAX_POLL: Duration = Duration::from_millis(50);
/// A new bucket is built when the adaptive rate moved by more than this share.
const SWAP_THRESHOLD: f64 = 0.02;

pub struct ClassBucket {
    class: LimitClass,
    burst_seconds: f64,
    adaptive: Mutex<AdaptiveState>,
    bucket: RwLock<Arc<DefaultDirectRateLimiter>>,
    /// The rate the bucket in force was built with (f64 bits).
    bucket_rate: AtomicU64,
    granted: AtomicU64,
    waited: AtomicU64,
    wait_nanos: AtomicU64,
    throttles: AtomicU64,
    /// Until when the server asked this class to wait (`Retry-After`); tokio's clock, so a
    /// test on a paused clock sees pauses pass.
    paused_until: Mutex<Option<tokio::time::Instant>>,
    held: Mutex<Held>,
    clock: DefaultClock,
}

/// What a throttle meant, and whether the class should hold off as a whole.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThrottleVerdict {
    pub throttle: Throttle,
    /// The share of the class's recent replies that were throttled.
    pub recent_share: f64,
}

impl ThrottleVerdict {
    /// Should every writer of the class hold off for the server's `Retry-After`? When the
    /// instance is a wall (congestion, and [`WALL_SHARE`] of recent requests throttled). Below that the rate
    /// cut is the answer and only the throttled item waits: pausing a whole class for each of a
    /// trickle of 429s caps it at a few requests per `Retry-After` (a 10% share held a load
    /// at 50/s of 2,000/s), and a pause-bound rate never shows whether the 429s follow the rate.
    pub fn pauses_class(&self) -> bool {
        self.throttle.is_congestion() && self.recent_share >= WALL_SHARE
    }
}

/// The union of the intervals during which work of the class was held back by a throttle.
#[derive(Debug, Default)]
struct Held {
    until: Option<tokio::time::Instant>,
    total: Duration,
}

impl Held {
    /// Adds [now, now + wait) to the union. Intervals start at "now", which only moves forward,
    /// so only the part past the current end is new.
    fn add(&mut self, now: tokio::time::Instant, wait: Duration) {
        let end = now + wait;
        let from = self.until.map_or(now, |u| u.max(now));
        if end > from {
            self.total += end - from;
            self.until = Some(end);
        }
    }
}

/// What a class bucket has done so far.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassStats {
    pub class: LimitClass,
    pub configured_per_s: f64,
    pub current_per_s: f64,
    pub permits_granted: u64,
    /// Permits that had to wait, and for how long in total.
    pub permits_waited: u64,
    pub wait_seconds: f64,
    pub throttles_reported: u64,
    pub rate_decreases: u64,
    /// Cuts undone because the throttles behind them turned out to be background (the same
    /// share whatever the rate), and that share.
    pub rate_undos: u64,
    pub background_throttle_share: f64,
    /// Wall time during which work of this class was held back by 429s (a class pause from
    /// `Retry-After`, or a throttled item waiting to go again).
    pub throttled_wait_s: f64,
}

/// A bucket of `rate` per second with a burst of `burst_seconds` of it, started empty.
fn build_bucket(rate: f64, burst_seconds: f64) -> Arc<DefaultDirectRateLimiter> {
    let rate = rate.max(0.001);
    let burst = (rate * burst_seconds).round().clamp(1.0, u32::MAX as f64) as u32;
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
    let quota = Quota::with_period(period).unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN)).allow_burst(burst);
    let limiter = RateLimiter::direct(quota);
    // Drain the initial burst: a new bucket must not add to what the old one let through.
    let _ = limiter.check_n(burst);
    Arc::new(limiter)
}

impl ClassBucket {
    pub fn new(class: LimitClass, configured_per_s: f64, settings: &AdaptiveRate) -> ClassBucket {
        let mut adaptive = AdaptiveState::new(settings, configured_per_s);
        let rate = adaptive.rate_at(Instant::now());
        ClassBucket {
            class,
            burst_seconds: settings.burst_seconds,
            adaptive: Mutex::new(adaptive),
            bucket: RwLock::new(build_bucket(rate, settings.burst_seconds)),
            bucket_rate: AtomicU64::new(rate.to_bits()),
            granted: AtomicU64::new(0),
            waited: AtomicU64::new(0),
            wait_nanos: AtomicU64::new(0),
            throttles: AtomicU64::new(0),
            paused_until: Mutex::new(None),
            held: Mutex::new(Held::default()),
            clock: DefaultClock::default(),
        }
    }

    /// Swaps in a bucket at the adaptive rate if it moved enough.
    fn refresh(&self) {
        let rate = self.adaptive.lock().rate_at(Instant::now());
        let current = f64::from_bits(self.bucket_rate.load(Ordering::Relaxed));
        let moved = (rate - current).abs() / current.max(f64::MIN_POSITIVE);
        let reached_ceiling = rate != current && rate >= self.adaptive.lock().ceiling();
        if moved > SWAP_THRESHOLD || reached_ceiling {
            *self.bucket.write() = build_bucket(rate, self.burst_seconds);
            self.bucket_rate.store(rate.to_bits(), Ordering::Relaxed);
        }
    }

    /// Holds every writer of this class back for `wait` from now (a longer pause already in
    /// force stays).
    pub fn pause(&self, wait: Duration) {
        let now = tokio::time::Instant::now();
        let until = now + wait;
        {
            let mut paused = self.paused_until.lock();
            if paused.is_none_or(|p| p < until) {
                *paused = Some(until);
            }
        }
        self.held_back(wait);
    }

    /// Records that work of this class waits `wait` from now because of a throttle.
    pub fn held_back(&self, wait: Duration) {
        self.held.lock().add(tokio::time::Instant::now(), wait);
    }

    /// The time left of a pause in force, if any.
    fn pause_left(&self) -> Option<Duration> {
        let until = (*self.paused_until.lock())?;
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// Waits for one permit (after any pause the server asked for).
    pub async fn acquire(&self) {
        let started = Instant::now();
        let mut waited = false;
        while let Some(left) = self.pause_left() {
            waited = true;
            tokio::time::sleep(left).await;
        }
        loop {
            self.refresh();
            let bucket = self.bucket.read().clone();
            match bucket.check() {
                Ok(()) => break,
                Err(not_until) => {
                    waited = true;
                    let wait = not_until.wait_time_from(self.clock.now()).min(MAX_POLL);
                    tokio::time::sleep(wait).await;
                }
            }
        }
        self.granted.fetch_add(1, Ordering::Relaxed);
        if waited {
            self.waited.fetch_add(1, Ordering::Relaxed);
            self.wait_nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
    }

    /// A request of this class came back throttled: on congestion, cut the rate (once per
    /// event).
    pub fn on_throttle(&self, sent_at: Option<Instant>) -> ThrottleVerdict {
        self.throttles.fetch_add(1, Ordering::Relaxed);
        let (throttle, recent_share, undos) = {
            let mut adaptive = self.adaptive.lock();
            let before = adaptive.undos();
            let throttle = adaptive.on_throttle(Instant::now(), sent_at);
            (throttle, adaptive.recent_share(), adaptive.undos() - before)
        };
        if throttle == Throttle::Cut || undos > 0 {
            self.refresh();
        }
        ThrottleVerdict { throttle, recent_share }
    }

    /// A request of this class came back without a throttle.
    pub fn on_reply(&self) {
        let undone = {
            let mut adaptive = self.adaptive.lock();
            let before = adaptive.undos();
            adaptive.on_reply(Instant::now());
            adaptive.undos() > before
        };
        if undone {
            self.refresh();
        }
    }

    pub fn current_rate(&self) -> f64 {
        self.adaptive.lock().rate_at(Instant::now())
    }

    pub fn stats(&self) -> ClassStats {
        let mut adaptive = self.adaptive.lock();
        ClassStats {
            class: self.class,
            configured_per_s: adaptive.ceiling(),
            current_per_s: adaptive.rate_at(Instant::now()),
            permits_granted: self.granted.load(Ordering::Relaxed),
            permits_waited: self.waited.load(Ordering::Relaxed),
            wait_seconds: self.wait_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            throttles_reported: self.throttles.load(Ordering::Relaxed),
            rate_decreases: adaptive.decreases(),
            rate_undos: adaptive.undos(),
            background_throttle_share: adaptive.background_share(),
            throttled_wait_s: self.held.lock().total.as_secs_f64(),
        }
    }
}
