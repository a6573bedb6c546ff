//! Faults on switches: what goes wrong with a real ADT instance, on demand and reproducibly.
//!
//! Each data-plane request gets a sequence number N (in arrival order, from 0). Whether it is
//! dropped, throttled, failed or delayed is a pure function of (seed, N) — [`FaultConfig::decide`]
//! — so two mocks started with the same seed fault the same request numbers, and a different
//! seed faults different ones.
//!
//! The eventual-consistency switches (`query_index_lag`, `new_twin_invisible_for`) are not
//! per-request decisions: the server passes them to the store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use bytes::Bytes;

use super::inspect::DroppedConnection;
use super::server::{drop_connection, pass_on};
use crate::adt::{codes, ErrorBody};

/// The fault switches. All rates are probabilities per request in `[0, 1]`; the default is no
/// faults at all.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    /// Seeds every per-request decision.
    pub seed: u64,
    /// Share of requests answered `429 QuotaReachedError` with `Retry-After`.
    pub rate_429: f64,
    /// Share of requests answered 500 `InternalServerError` or 503 `ServiceUnavailable`.
    pub rate_5xx: f64,
    /// Added to every request before it is answered.
    pub latency: Duration,
    /// Added on top of `latency` to a share `latency_spike_rate` of requests.
    pub latency_spike: Duration,
    pub latency_spike_rate: f64,
    /// Share of requests whose connection is closed without an answer.
    pub drop_rate: f64,
    /// The Retry-After an injected 429 carries.
    pub injected_retry_after: Duration,
    /// Query results reflect writes only after this lag (ADT's index lags up to 10 s).
    pub query_index_lag: Duration,
    /// A twin created less than this ago is not seen by relationship writes
    /// (`TargetDigitalTwinNotFound`, ADT's eventual consistency).
    pub new_twin_invisible_for: Duration,
}

impl Default for FaultConfig {
    fn default() -> FaultConfig {
        FaultConfig {
            seed: 0,
            rate_429: 0.0,
            rate_5xx: 0.0,
            latency: Duration::ZERO,
            latency_spike: Duration::ZERO,
            latency_spike_rate: 0.0,
            drop_rate: 0.0,
            injected_retry_after: DEFAULT_INJECTED_RETRY_AFTER,
            query_index_lag: Duration::ZERO,
            new_twin_invisible_for: Duration::ZERO,
        }
    }
}

/// The default Retry-After of an injected 429 (ADT does not document its values; one second is
/// the smallest whole-second answer).
pub const DEFAULT_INJECTED_RETRY_AFTER: Duration = Duration::from_secs(1);

/// What happens to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// Served normally.
    Pass,
    /// Answered 429 with Retry-After.
    Throttle,
    /// Answered with this 5xx status.
    ServerError(u16),
    /// The connection is closed without an answer: before the request is handled, or after
    /// (the write landed but its answer is lost, as when a connection breaks on the way back).
    Drop { after_handling: bool },
}

/// The decision for request number N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultDecision {
    pub action: FaultAction,
    /// Waited before the request is served (or failed, or dropped).
    pub delay: Duration,
}

impl FaultConfig {
    /// True when some per-request fault can happen (otherwise the middleware is a no-op).
    pub fn injects_per_request_faults(&self) -> bool {
        self.rate_429 > 0.0
            || self.rate_5xx > 0.0
            || self.drop_rate > 0.0
            || !self.latency.is_zero()
            || (self.latency_spike_rate > 0.0 && !self.latency_spike.is_zero())
    }

    /// Checks the rates are probabilities; the message names the switch to fix.
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("fault-429-rate", self.rate_429),
            ("fault-5xx-rate", self.rate_5xx),
            ("latency-spike-rate", self.latency_spike_rate),
            ("drop-rate", self.drop_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("--{name} must be between 0 and 1, got {rate}"));
            }
        }
        Ok(())
    }

    /// The decision for request number `n`: a pure function of (seed, n). Each kind of fault
    /// draws its own independent uniform number, so turning one switch on does not change
    /// which requests another switch picks.
    pub fn decide(&self, n: u64) -> FaultDecision {
        let draw = |stream: u64| unit_interval(mix(self.seed, n, stream));
        let spike = self.latency_spike_rate > 0.0 && draw(STREAM_SPIKE) < self.latency_spike_rate;
        let delay = self.latency + if spike { self.latency_spike } else { Duration::ZERO };
        let action = if draw(STREAM_DROP) < self.drop_rate {
            FaultAction::Drop { after_handling: mix(self.seed, n, STREAM_DROP_WHEN) & 1 == 1 }
        } else if draw(STREAM_429) < self.rate_429 {
            FaultAction::Throttle
        } else if draw(STREAM_5XX) < self.rate_5xx {
            // 500 and 503 alike: both are what clients must retry.
            let status = if mix(self.seed, n, STREAM_5XX_KIND) & 1 == 0 { 500 } else { 503 };
            FaultAction::ServerError(status)
        } else {
            FaultAction::Pass
        };
        FaultDecision { action, delay }
    }
}

const STREAM_DROP: u64 = 1;
const STREAM_429: u64 = 2;
const STREAM_5XX: u64 = 3;
const STREAM_5XX_KIND: u64 = 4;
const STREAM_SPIKE: u64 = 5;
const STREAM_DROP_WHEN: u64 = 6;

/// SplitMix64's finaliser over (seed, n, stream): a well-mixed 64-bit hash, cheap and stable
/// across platforms and releases (unlike `std`'s hashers, which may change).
fn mix(seed: u64, n: u64, stream: u64) -> u64 {
    let mut z = seed
        .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Maps 64 random bits to a uniform float in [0, 1).
fn unit_interval(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// The running fault state of one mock instance: the config and the request counter.
#[derive(Debug)]
pub struct Faults {
    pub config: FaultConfig,
    next_request: AtomicU64,
    counts: FaultCounts,
}

/// How many faults were injected, by kind (for `/_mock/stats` and `/metrics`).
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub throttled: AtomicU64,
    pub server_errors: AtomicU64,
    pub dropped: AtomicU64,
    pub delayed: AtomicU64,
}

/// A snapshot of [`FaultCounts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FaultTotals {
    pub throttled: u64,
    pub server_errors: u64,
    pub dropped: u64,
    pub delayed: u64,
}

impl Faults {
    pub fn new(config: FaultConfig) -> Faults {
        Faults { config, next_request: AtomicU64::new(0), counts: FaultCounts::default() }
    }

    /// Numbers the next request and decides its fate.
    pub fn next_decision(&self) -> FaultDecision {
        let n = self.next_request.fetch_add(1, Ordering::Relaxed);
        self.config.decide(n)
    }

    pub fn totals(&self) -> FaultTotals {
        FaultTotals {
            throttled: self.counts.throttled.load(Ordering::Relaxed),
            server_errors: self.counts.server_errors.load(Ordering::Relaxed),
            dropped: self.counts.dropped.load(Ordering::Relaxed),
            delayed: self.counts.delayed.load(Ordering::Relaxed),
        }
    }

    /// Restarts the request numbering and the counts (`POST /_mock/reset`), so a test can
    /// replay the same fault sequence.
    pub fn reset(&self) {
        self.next_request.store(0, Ordering::Relaxed);
        for counter in [&self.counts.throttled, &self.counts.server_errors, &self.counts.dropped, &self.counts.delayed]
        {
            counter.store(0, Ordering::Relaxed);
        }
    }
}

/// Middleware: applies the per-request faults to data-plane requests.
pub async fn inject_faults(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(faults) = req.app_data::<web::Data<Faults>>().cloned() else {
        return pass_on(req, next).await;
    };
    if !faults.config.injects_per_request_faults() {
        return pass_on(req, next).await;
    }
    let decision = faults.next_decision();
    if !decision.delay.is_zero() {
        faults.counts.delayed.fetch_add(1, Ordering::Relaxed);
        actix_web::rt::time::sleep(decision.delay).await;
    }
    match decision.action {
        FaultAction::Pass => pass_on(req, next).await,
        FaultAction::Throttle => {
            faults.counts.throttled.fetch_add(1, Ordering::Relaxed);
            let res = super::throttle::too_many_requests(faults.config.injected_retry_after, "injected fault");
            Ok(req.into_response(res))
        }
        FaultAction::ServerError(status) => {
            faults.counts.server_errors.fetch_add(1, Ordering::Relaxed);
            let (status, code) = if status == 503 {
                (StatusCode::SERVICE_UNAVAILABLE, codes::SERVICE_UNAVAILABLE)
            } else {
                (StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL_SERVER_ERROR)
            };
            let body = ErrorBody::new(code, "Injected fault: the service could not complete the request. Retry later.");
            Ok(req.into_response(HttpResponse::build(status).json(body)))
        }
        FaultAction::Drop { after_handling: false } => {
            faults.counts.dropped.fetch_add(1, Ordering::Relaxed);
            let closed = drop_connection(req.conn_data());
            Ok(req.into_response(dropped_connection(closed)))
        }
        FaultAction::Drop { after_handling: true } => {
            faults.counts.dropped.fetch_add(1, Ordering::Relaxed);
            let handled = next.call(req).await?;
            let closed = drop_connection(handled.request().conn_data());
            let (request, _answer) = handled.into_parts();
            Ok(ServiceResponse::new(request, dropped_connection(closed)))
        }
    }
}

/// The answer to a dropped request, which never reaches the client. When the socket was shut
/// down (`closed`, see [`drop_connection`]) any answer will do: writing it fails. Otherwise the
/// body fails before its first byte, and actix-web's HTTP/1 dispatcher then closes the
/// connection without writing the still-buffered head (it logs that as an error). The marker
/// tells the stats it was a drop.
fn dropped_connection(closed: bool) -> HttpResponse {
    let mut response = if closed {
        HttpResponse::Ok().finish()
    } else {
        let failing = futures::stream::once(async {
            Err::<Bytes, std::io::Error>(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "injected dropped connection",
            ))
        });
        HttpResponse::Ok().streaming(failing)
    };
    response.extensions_mut().insert(DroppedConnection);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faulty(seed: u64) -> FaultConfig {
        FaultConfig { seed, rate_429: 0.1, rate_5xx: 0.05, drop_rate: 0.02, ..FaultConfig::default() }
    }

    #[test]
    fn same_seed_same_decisions_different_seed_different() {
        let a: Vec<_> = (0..1000).map(|n| faulty(7).decide(n)).collect();
        let b: Vec<_> = (0..1000).map(|n| faulty(7).decide(n)).collect();
        let c: Vec<_> = (0..1000).map(|n| faulty(8).decide(n)).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn rates_are_roughly_as_configured() {
        let config = faulty(42);
        let n = 100_000;
        let mut counts = [0u32; 4];
        for i in 0..n {
            match config.decide(i).action {
                FaultAction::Pass => counts[0] += 1,
                FaultAction::Throttle => counts[1] += 1,
                FaultAction::ServerError(_) => counts[2] += 1,
                FaultAction::Drop { .. } => counts[3] += 1,
            }
        }
        // Expected shares: drop 2%, 429 = 98% × 10%, 5xx = 98% × 90% × 5%. Five standard
        // deviations of a binomial with n = 100,000 is under 0.5 percentage points here.
        let share = |c: u32| c as f64 / n as f64;
        assert!((share(counts[3]) - 0.02).abs() < 0.003, "drop {}", share(counts[3]));
        assert!((share(counts[1]) - 0.098).abs() < 0.005, "429 {}", share(counts[1]));
        assert!((share(counts[2]) - 0.0441).abs() < 0.004, "5xx {}", share(counts[2]));
    }

    #[test]
    fn no_switches_no_faults() {
        let config = FaultConfig::default();
        assert!(!config.injects_per_request_faults());
        assert!(
            (0..1000).all(|n| config.decide(n) == FaultDecision { action: FaultAction::Pass, delay: Duration::ZERO })
        );
    }

    #[test]
    fn spikes_add_to_steady_latency() {
        let config = FaultConfig {
            latency: Duration::from_millis(5),
            latency_spike: Duration::from_millis(100),
            latency_spike_rate: 0.5,
            ..FaultConfig::default()
        };
        let delays: Vec<_> = (0..200).map(|n| config.decide(n).delay).collect();
        assert!(delays.iter().all(|d| *d == Duration::from_millis(5) || *d == Duration::from_millis(105)));
        let spikes = delays.iter().filter(|d| **d == Duration::from_millis(105)).count();
        assert!((50..150).contains(&spikes), "{spikes}");
    }

    #[test]
    fn rates_outside_zero_one_are_refused_by_name() {
        let config = FaultConfig { drop_rate: 1.5, ..FaultConfig::default() };
        assert!(config.validate().unwrap_err().contains("--drop-rate"));
    }
}
