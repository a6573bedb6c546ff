//! The per-twin budget: at most `per_twin_writes_per_s` writes per second on one twin (a
//! relationship write counts against its source and its target), and at most
//! `per_twin_in_flight` requests outstanding on one twin.
//!
//! The GCRA tolerates a tenth of an interval early: a write that went out a few milliseconds
//! after its permit (the coordinator's timer, the hop to a writer) would otherwise lose that
//! time for good, and a hub twin bound by 10 writes/s lost about 6 ms per write, 6% of its
//! makespan. The tolerance lets the next write make it up, and no second holds more than one
//! write over the rate.
//!
//! Hand-written GCRA rather than governor's keyed limiter, because a relationship must take a
//! permit from two twins atomically (governor would spend the source's permit even when the
//! target has none), the coordinator must be able to ask "is this twin ready?" without
//! spending anything, and the in-flight count lives in the same entry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

/// What a twin's budget allows right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwinBudget {
    Ready,
    /// Rate-limited: the earliest permit is this far away.
    WaitFor(Duration),
    /// As many requests in flight on one of the twins as the limit allows.
    InFlightFull,
}

#[derive(Debug, Default)]
struct Slot {
    /// GCRA's theoretical arrival time: the next permit is free from then on.
    tat: Option<Instant>,
    in_flight: u32,
}

#[derive(Debug)]
pub struct TwinLimiter {
    interval: Duration,
    /// How early a permit may be taken (GCRA's tolerance).
    tolerance: Duration,
    max_in_flight: u32,
    slots: Mutex<HashMap<String, Slot>>,
    granted: AtomicU64,
    waited: AtomicU64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TwinStats {
    pub writes_per_s: f64,
    pub max_in_flight: u32,
    pub twins_tracked: usize,
    pub permits_granted: u64,
    pub permits_waited: u64,
}

/// A reservation of in-flight room on some twins; released when dropped.
#[derive(Debug)]
pub struct InFlight {
    limiter: Arc<TwinLimiter>,
    twins: Vec<String>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut slots = self.limiter.slots.lock();
        for twin in &self.twins {
            if let Some(slot) = slots.get_mut(twin) {
                slot.in_flight = slot.in_flight.saturating_sub(1);
            }
        }
    }
}

fn dedup(twins: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = twins.iter().map(|t| t.to_string()).collect();
    v.sort();
    v.dedup();
    v
}

impl TwinLimiter {
    pub fn new(writes_per_s: u32, max_in_flight: u32) -> TwinLimiter {
        TwinLimiter {
            interval: Duration::from_secs_f64(1.0 / f64::from(writes_per_s.max(1))),
            tolerance: Duration::from_secs_f64(0.1 / f64::from(writes_per_s.max(1))),
            max_in_flight: max_in_flight.max(1),
            slots: Mutex::new(HashMap::new()),
            granted: AtomicU64::new(0),
            waited: AtomicU64::new(0),
        }
    }

    fn budget_locked(
        &self,
        slots: &HashMap<String, Slot>,
        twins: &[String],
        now: Instant,
        count_in_flight: bool,
    ) -> TwinBudget {
        let mut wait = Duration::ZERO;
        for twin in twins {
            if let Some(slot) = slots.get(twin) {
                if count_in_flight && slot.in_flight >= self.max_in_flight {
                    return TwinBudget::InFlightFull;
                }
                if let Some(tat) = slot.tat {
                    wait = wait.max(tat.saturating_duration_since(now + self.tolerance));
                }
            }
        }
        if wait.is_zero() {
            TwinBudget::Ready
        } else {
            TwinBudget::WaitFor(wait)
        }
    }

    /// Whether a write to these twins could go now, without spending anything.
    pub fn peek(&self, twins: &[&str]) -> TwinBudget {
        let twins = dedup(twins);
        self.budget_locked(&self.slots.lock(), &twins, Instant::now(), true)
    }

    /// Reserves in-flight room on every twin, or none (`None` when one is full).
    pub fn reserve(self: &Arc<Self>, twins: &[&str]) -> Option<InFlight> {
        let twins = dedup(twins);
        let mut slots = self.slots.lock();
        if twins.iter().any(|t| slots.get(t).is_some_and(|s| s.in_flight >= self.max_in_flight)) {
            return None;
        }
        for twin in &twins {
            slots.entry(twin.clone()).or_default().in_flight += 1;
        }
        Some(InFlight { limiter: Arc::clone(self), twins })
    }

    /// The one place a write's per-twin budget is checked and spent: if every twin has room in
    /// flight and a write permit now, spends a permit on each and reserves the room (released
    /// when the guard drops); otherwise spends nothing and says what it waits for.
    pub fn try_spend(self: &Arc<Self>, twins: &[&str]) -> Result<InFlight, TwinBudget> {
        let twins = dedup(twins);
        let mut slots = self.slots.lock();
        let now = Instant::now();
        match self.budget_locked(&slots, &twins, now, true) {
            TwinBudget::Ready => {}
            other => {
                self.waited.fetch_add(1, Ordering::Relaxed);
                return Err(other);
            }
        }
        for twin in &twins {
            let slot = slots.entry(twin.clone()).or_default();
            let from = slot.tat.map_or(now, |t| t.max(now));
            slot.tat = Some(from + self.interval);
            slot.in_flight += 1;
        }
        self.granted.fetch_add(1, Ordering::Relaxed);
        Ok(InFlight { limiter: Arc::clone(self), twins })
    }

    /// Takes one write permit on every twin at once, waiting until all have one.
    pub async fn acquire(&self, twins: &[&str]) {
        let twins = dedup(twins);
        let mut waited = false;
        loop {
            let wait = {
                let mut slots = self.slots.lock();
                let now = Instant::now();
                match self.budget_locked(&slots, &twins, now, false) {
                    TwinBudget::WaitFor(d) => d,
                    _ => {
                        for twin in &twins {
                            let slot = slots.entry(twin.clone()).or_default();
                            let from = slot.tat.map_or(now, |t| t.max(now));
                            slot.tat = Some(from + self.interval);
                        }
                        break;
                    }
                }
            };
            waited = true;
            tokio::time::sleep(wait).await;
        }
        self.granted.fetch_add(1, Ordering::Relaxed);
        if waited {
            self.waited.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Forgets twins with nothing in flight and a fully refilled budget (keeps memory flat).
    pub fn prune(&self) {
        let now = Instant::now();
        self.slots.lock().retain(|_, s| s.in_flight > 0 || s.tat.is_some_and(|t| t > now));
    }

    pub fn stats(&self) -> TwinStats {
        TwinStats {
            writes_per_s: 1.0 / self.interval.as_secs_f64(),
            max_in_flight: self.max_in_flight,
            twins_tracked: self.slots.lock().len(),
            permits_granted: self.granted.load(Ordering::Relaxed),
            permits_waited: self.waited.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_twin_gets_one_write_per_interval_and_a_late_write_does_not_lose_its_time() {
        let limiter = Arc::new(TwinLimiter::new(10, 4));
        let t0 = Instant::now();
        let spend = |at: Instant| {
            let mut slots = limiter.slots.lock();
            let twins = vec!["hub".to_string()];
            match limiter.budget_locked(&slots, &twins, at, false) {
                TwinBudget::Ready => {
                    let slot = slots.entry("hub".into()).or_default();
                    slot.tat = Some(slot.tat.map_or(at, |t| t.max(at)) + limiter.interval);
                    Ok(())
                }
                other => Err(other),
            }
        };
        assert!(spend(t0).is_ok());
        // The next permit is 100 ms later, less the 10 ms tolerance.
        assert!(
            matches!(spend(t0 + Duration::from_millis(50)), Err(TwinBudget::WaitFor(w)) if w == Duration::from_millis(40))
        );
        assert!(spend(t0 + Duration::from_millis(90)).is_ok());
        // That one was early: the next is due at 200 ms, still 90 ms after it at the soonest.
        assert!(spend(t0 + Duration::from_millis(170)).is_err());
        // Late by 8 ms: the next may go up to 10 ms before its time (308 ms), so the average
        // holds 10/s.
        assert!(spend(t0 + Duration::from_millis(208)).is_ok());
        assert!(spend(t0 + Duration::from_millis(299)).is_ok());
    }

    #[test]
    fn no_second_holds_more_than_one_write_over_the_rate() {
        let limiter = Arc::new(TwinLimiter::new(10, 1_000));
        // Ask every millisecond for 3 s: grants go out as early as the budget allows.
        let t0 = Instant::now();
        let mut grants = Vec::new();
        for ms in 0..3_000u64 {
            let at = t0 + Duration::from_millis(ms);
            let mut slots = limiter.slots.lock();
            let twins = vec!["t".to_string()];
            if limiter.budget_locked(&slots, &twins, at, false) == TwinBudget::Ready {
                let slot = slots.entry("t".into()).or_default();
                slot.tat = Some(slot.tat.map_or(at, |t| t.max(at)) + limiter.interval);
                grants.push(ms);
            }
        }
        for start in 0..2_000u64 {
            let in_window = grants.iter().filter(|&&g| g >= start && g < start + 1_000).count();
            assert!(in_window <= 11, "{in_window} writes in the second from {start} ms");
        }
        assert!(grants.len() >= 30, "{} grants in 3 s", grants.len());
    }
}
