//! The mock's rate limits, per instance, from [`Limits`] (ADT-REFERENCE.md §3).
//!
//! Two layers, both shared by every client of one mock instance (several loader processes share
//! one mock as several Batch tasks share one ADT instance):
//! - one token bucket per limit class (create/delete, patch, read, models, query, jobs), applied
//!   by [`class_throttle`] to every data-plane request before its handler runs;
//! - per twin: `per_twin_writes_per_s` writes per second and at most `per_twin_in_flight`
//!   writes outstanding, spent by the data-plane handlers through
//!   [`Throttle::admit_twin_writes`] once they know every twin a write touches (a relationship
//!   write counts against its source and its target).
//!
//! Over a limit the answer is [`too_many_requests`]: 429 with `Retry-After`.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;

use super::server::pass_on;
use crate::adt::{classify, codes, ErrorBody};
use crate::limits::{LimitClass, Limits};

/// How many seconds of its rate a bucket can hold, i.e. the burst a quiet client may send at
/// once. One second matches governor's `Quota::per_second` default and ADT's "per second"
/// wording; it is the `burst` term in the tolerance the limit tests state.
pub const BURST_SECONDS: u32 = 1;

/// Number of lock shards of the per-twin table. Writes to twins in different shards never
/// contend; a power of two well above the core count keeps collisions rare.
pub const PER_TWIN_SHARDS: usize = 64;

/// How often a shard of the per-twin table drops twins that are idle (bucket full again, no
/// write in flight), so the table does not grow with every twin ever written.
pub const IDLE_TWIN_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// What a write refused for the in-flight bound is told to wait: a slot frees when some
/// outstanding write finishes, which the mock cannot predict, so it suggests a short pause.
pub const IN_FLIGHT_RETRY_AFTER: Duration = Duration::from_millis(100);

/// The instance's rate limits. Cheap to share (`web::Data<Throttle>` wraps it in an `Arc`).
pub struct Throttle {
    /// One bucket per [`LimitClass`], indexed like `LimitClass::ALL`; `None` when limits are off.
    classes: Option<Vec<DefaultDirectRateLimiter>>,
    /// Per-twin rate and in-flight bound; `None` when limits are off.
    per_twin: Option<Arc<PerTwin>>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("class_buckets", &self.classes.is_some())
            .field("per_twin", &self.per_twin.as_ref().map(|p| (p.rate_per_s, p.in_flight_max)))
            .finish()
    }
}

impl Throttle {
    /// Enforces `limits`: the class buckets and the per-twin rate and in-flight bound.
    pub fn new(limits: &Limits) -> Throttle {
        let classes = LimitClass::ALL.iter().map(|class| RateLimiter::direct(quota(limits.rate_of(*class)))).collect();
        Throttle {
            classes: Some(classes),
            per_twin: Some(Arc::new(PerTwin::new(limits.per_twin_writes_per_s, limits.per_twin_in_flight))),
        }
    }

    /// Admits everything (limits off).
    pub fn unlimited() -> Throttle {
        Throttle { classes: None, per_twin: None }
    }

    /// Spends one request of `class`'s instance-wide bucket, or says how long until one is free.
    pub fn admit_class(&self, class: LimitClass) -> Result<(), Duration> {
        let Some(buckets) = &self.classes else { return Ok(()) };
        let index = LimitClass::ALL.iter().position(|c| *c == class).unwrap_or(0);
        match buckets[index].check() {
            Ok(()) => Ok(()),
            Err(not_until) => Err(not_until.wait_time_from(DefaultClock::default().now())),
        }
    }

    /// Spends one of each twin's per-second writes and holds one in-flight slot per twin until
    /// the returned permit is dropped. On refusal nothing is spent and the error is the time
    /// until a retry can succeed. Duplicate ids count once.
    pub fn admit_twin_writes(&self, twins: &[&str]) -> Result<TwinWritePermit, Duration> {
        match &self.per_twin {
            None => Ok(TwinWritePermit { held: None }),
            Some(per_twin) => per_twin.admit(twins),
        }
    }

    /// Twins currently tracked by the per-twin table (for tests of eviction).
    pub fn tracked_twins(&self) -> usize {
        self.per_twin.as_ref().map_or(0, |p| p.shards.iter().map(|s| s.lock().twins.len()).sum())
    }
}

fn quota(per_s: u32) -> Quota {
    // A limit of 0 would refuse everything forever; the limits file documents rates ≥ 1, so a 0
    // is treated as the smallest meaningful rate rather than a lock-out.
    let rate = NonZeroU32::new(per_s).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(per_s.saturating_mul(BURST_SECONDS)).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(burst)
}

/// Proof that a write was admitted for some twins; dropping it frees their in-flight slots.
#[must_use = "the in-flight slots are freed when the permit is dropped: hold it until the write is done"]
pub struct TwinWritePermit {
    held: Option<(Arc<PerTwin>, Vec<String>)>,
}

impl std::fmt::Debug for TwinWritePermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwinWritePermit").field("twins", &self.held.as_ref().map(|(_, t)| t.len())).finish()
    }
}

impl Drop for TwinWritePermit {
    fn drop(&mut self) {
        if let Some((per_twin, twins)) = self.held.take() {
            per_twin.release(&twins);
        }
    }
}

/// Per-twin write rate and in-flight bound.
///
/// Not a governor keyed limiter: a relationship write must spend on its source and its target
/// together or on neither, and governor has no way to test several keys before spending (or to
/// give a token back). So each twin keeps its own GCRA state (the same algorithm governor uses)
/// next to its in-flight count, in a sharded table whose shards are locked in index order when
/// one write touches two twins.
struct PerTwin {
    /// Time between two writes at the sustained rate.
    emission_interval: Duration,
    /// How far ahead of now a twin's theoretical arrival time may run (burst × interval).
    burst_window: Duration,
    rate_per_s: u32,
    in_flight_max: u32,
    hasher: RandomState,
    shards: Vec<Mutex<Shard>>,
}

struct Shard {
    twins: HashMap<String, TwinState>,
    last_swept: Instant,
}

#[derive(Clone, Copy)]
struct TwinState {
    /// GCRA's theoretical arrival time of the next write at the sustained rate.
    theoretical_arrival: Instant,
    in_flight: u32,
}

impl PerTwin {
    fn new(rate_per_s: u32, in_flight_max: u32) -> PerTwin {
        let rate = rate_per_s.max(1);
        let emission_interval = Duration::from_secs(1) / rate;
        let burst = rate.saturating_mul(BURST_SECONDS).max(1);
        let now = Instant::now();
        PerTwin {
            emission_interval,
            burst_window: emission_interval * burst,
            rate_per_s: rate,
            in_flight_max: in_flight_max.max(1),
            hasher: RandomState::new(),
            shards: (0..PER_TWIN_SHARDS)
                .map(|_| Mutex::new(Shard { twins: HashMap::new(), last_swept: now }))
                .collect(),
        }
    }

    fn shard_of(&self, twin: &str) -> usize {
        (self.hasher.hash_one(twin) as usize) % self.shards.len()
    }

    fn admit(self: &Arc<Self>, twins: &[&str]) -> Result<TwinWritePermit, Duration> {
        let mut unique: Vec<&str> = twins.to_vec();
        unique.sort_unstable();
        unique.dedup();
        let mut shard_ids: Vec<usize> = unique.iter().map(|t| self.shard_of(t)).collect();
        shard_ids.sort_unstable();
        shard_ids.dedup();
        // Lock every shard involved, in index order (so two writes never wait on each other in
        // a cycle), then decide for all twins at once.
        let mut guards: Vec<(usize, parking_lot::MutexGuard<'_, Shard>)> =
            shard_ids.iter().map(|&i| (i, self.shards[i].lock())).collect();
        let now = Instant::now();
        let mut wait = Duration::ZERO;
        let mut next_states = Vec::with_capacity(unique.len());
        for twin in &unique {
            let shard_index = self.shard_of(twin);
            let Some((_, shard)) = guards.iter_mut().find(|(i, _)| *i == shard_index) else {
                continue;
            };
            let state = shard.twins.get(*twin).copied().unwrap_or(TwinState { theoretical_arrival: now, in_flight: 0 });
            if state.in_flight >= self.in_flight_max {
                wait = wait.max(IN_FLIGHT_RETRY_AFTER);
            }
            let next_arrival = state.theoretical_arrival.max(now) + self.emission_interval;
            let ahead = next_arrival.saturating_duration_since(now);
            if ahead > self.burst_window {
                wait = wait.max(ahead - self.burst_window);
            }
            next_states
                .push((shard_index, TwinState { theoretical_arrival: next_arrival, in_flight: state.in_flight + 1 }));
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        for (twin, (shard_index, state)) in unique.iter().zip(next_states) {
            if let Some((_, shard)) = guards.iter_mut().find(|(i, _)| *i == shard_index) {
                shard.twins.insert((*twin).to_string(), state);
            }
        }
        for (_, shard) in guards.iter_mut() {
            if now.saturating_duration_since(shard.last_swept) >= IDLE_TWIN_SWEEP_INTERVAL {
                shard.twins.retain(|_, s| s.in_flight > 0 || s.theoretical_arrival > now);
                shard.last_swept = now;
            }
        }
        drop(guards);
        Ok(TwinWritePermit { held: Some((Arc::clone(self), unique.iter().map(|t| t.to_string()).collect())) })
    }

    fn release(&self, twins: &[String]) {
        for twin in twins {
            let mut shard = self.shards[self.shard_of(twin)].lock();
            if let Some(state) = shard.twins.get_mut(twin) {
                state.in_flight = state.in_flight.saturating_sub(1);
            }
        }
    }
}

/// The 429 every throttled request gets: `Retry-After` in whole seconds (rounded up, at least
/// 1), `x-ms-retry-after-ms` with the exact milliseconds (rounded up), and ADT's error body with
/// code `QuotaReachedError`. `what` names the limit that was hit (never a secret).
pub fn too_many_requests(retry_after: Duration, what: &str) -> HttpResponse {
    let millis = retry_after.as_nanos().div_ceil(1_000_000).max(1);
    let seconds = millis.div_ceil(1000).max(1);
    let body =
        ErrorBody::new(codes::QUOTA_REACHED_ERROR, format!("Too many requests: {what}. Retry after {millis} ms."));
    HttpResponse::build(StatusCode::TOO_MANY_REQUESTS)
        .insert_header(("Retry-After", seconds.to_string()))
        .insert_header(("x-ms-retry-after-ms", millis.to_string()))
        // The live service's Content-Type on every JSON answer (ADT-REFERENCE.md §0).
        .content_type(crate::store::error::JSON_CONTENT_TYPE)
        .body(serde_json::to_vec(&body).unwrap_or_default())
}

/// Middleware: spends one request of the instance-wide bucket of the request's limit class, or
/// answers 429. Requests that are not ADT data-plane paths pass untouched.
pub async fn class_throttle(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    if let Some(throttle) = req.app_data::<web::Data<Throttle>>() {
        if let Some(shape) = classify(req.method().as_str(), req.path()) {
            if let Err(wait) = throttle.admit_class(shape.class) {
                let what = format!("the instance's {} requests per second", shape.class);
                return Ok(req.into_response(too_many_requests(wait, &what)));
            }
        }
    }
    pass_on(req, next).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_twin_per_s: u32, in_flight: u32) -> Limits {
        Limits { per_twin_writes_per_s: per_twin_per_s, per_twin_in_flight: in_flight, ..Limits::adt_default() }
    }

    #[test]
    fn a_twin_gets_its_burst_then_is_refused_with_a_wait() {
        let throttle = Throttle::new(&limits(10, 500));
        let mut admitted = 0;
        let mut refusal = None;
        for _ in 0..20 {
            match throttle.admit_twin_writes(&["t1"]) {
                Ok(_permit) => admitted += 1,
                Err(wait) => {
                    refusal = Some(wait);
                    break;
                }
            }
        }
        assert_eq!(admitted, 10, "burst is one second of the 10/s rate");
        let wait = refusal.expect("the 11th write in the same instant is refused");
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100), "{wait:?}");
        // Another twin is not affected.
        assert!(throttle.admit_twin_writes(&["t2"]).is_ok());
    }

    #[test]
    fn a_refused_pair_spends_nothing_on_the_twin_that_had_room() {
        let throttle = Throttle::new(&limits(2, 500));
        for _ in 0..2 {
            drop(throttle.admit_twin_writes(&["hub"]).unwrap());
        }
        // "hub" is out of budget: a relationship src -> hub is refused...
        assert!(throttle.admit_twin_writes(&["src", "hub"]).is_err());
        // ...and src still has both of its writes.
        assert!(throttle.admit_twin_writes(&["src"]).is_ok());
        assert!(throttle.admit_twin_writes(&["src"]).is_ok());
        assert!(throttle.admit_twin_writes(&["src"]).is_err());
    }

    #[test]
    fn in_flight_slots_are_held_until_the_permit_drops() {
        let throttle = Throttle::new(&limits(1000, 2));
        let a = throttle.admit_twin_writes(&["t"]).unwrap();
        let _b = throttle.admit_twin_writes(&["t"]).unwrap();
        let refused = throttle.admit_twin_writes(&["t"]).unwrap_err();
        assert_eq!(refused, IN_FLIGHT_RETRY_AFTER);
        drop(a);
        assert!(throttle.admit_twin_writes(&["t"]).is_ok());
    }

    #[test]
    fn duplicate_twins_in_one_write_count_once() {
        let throttle = Throttle::new(&limits(1, 500));
        assert!(throttle.admit_twin_writes(&["t", "t"]).is_ok());
    }

    #[test]
    fn idle_twins_are_evicted() {
        let throttle = Throttle::new(&limits(1000, 500));
        for i in 0..200 {
            drop(throttle.admit_twin_writes(&[&format!("twin-{i}")]).unwrap());
        }
        assert!(throttle.tracked_twins() > 0);
        std::thread::sleep(IDLE_TWIN_SWEEP_INTERVAL + Duration::from_millis(50));
        // Touching every shard sweeps it; the idle twins go, the new ones stay. Which shard a
        // name lands in is a hash, so keep adding fresh twins until every shard was touched.
        let mut touched = std::collections::HashSet::new();
        let mut fresh = 0;
        while touched.len() < PER_TWIN_SHARDS && fresh < 100_000 {
            let name = format!("fresh-{fresh}");
            touched.insert(throttle.per_twin.as_ref().expect("limits are on").shard_of(&name));
            drop(throttle.admit_twin_writes(&[&name]).unwrap());
            fresh += 1;
        }
        assert_eq!(touched.len(), PER_TWIN_SHARDS, "could not touch every shard");
        let left = throttle.tracked_twins();
        assert!(left <= fresh, "idle twins were not evicted: {left} tracked, {fresh} fresh");
    }

    #[test]
    fn unlimited_admits_everything() {
        let throttle = Throttle::unlimited();
        for _ in 0..10_000 {
            assert!(throttle.admit_class(LimitClass::CreateDelete).is_ok());
            assert!(throttle.admit_twin_writes(&["t"]).is_ok());
        }
    }

    #[test]
    fn class_bucket_refuses_past_its_burst() {
        let l = Limits { models_per_s: 5, ..Limits::adt_default() };
        let throttle = Throttle::new(&l);
        let admitted = (0..50).filter(|_| throttle.admit_class(LimitClass::Models).is_ok()).count();
        // 5 of burst, plus at most one refill if the loop straddled 200 ms (it takes microseconds).
        assert!((5..=6).contains(&admitted), "{admitted}");
        assert!(throttle.admit_class(LimitClass::Read).is_ok(), "classes have separate buckets");
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_exact_millis() {
        let res = too_many_requests(Duration::from_millis(1500), "test");
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(res.headers().get("Retry-After").unwrap(), "2");
        assert_eq!(res.headers().get("x-ms-retry-after-ms").unwrap(), "1500");
        let res = too_many_requests(Duration::from_micros(10), "test");
        assert_eq!(res.headers().get("Retry-After").unwrap(), "1");
        assert_eq!(res.headers().get("x-ms-retry-after-ms").unwrap(), "1");
    }
}
