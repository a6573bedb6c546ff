//! What the mock tells about itself, under paths ADT cannot have: `GET /_mock/stats` (JSON),
//! `GET /_mock/export` (the whole graph as Import-Jobs NDJSON), `POST /_mock/reset`,
//! `GET /_mock/ping` (a trivial endpoint, the baseline of throughput measurements), and
//! `GET /metrics` (Prometheus text format). None of them needs a token, and none is throttled
//! or faulted.
//!
//! Counting is lock-free: one atomic per (limit class, status) pair, bumped by [`record_stats`],
//! the outermost middleware, so it sees every answer, including 401s and 429s.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};

use super::faults::Faults;
use super::jobs::Jobs;
use super::server::pass_on;
use super::store::Store;
use crate::adt::classify;
use crate::limits::LimitClass;

/// Slots of the per-class counters: the six limit classes, then "other" (paths that are not
/// ADT data-plane paths, e.g. an unknown path answered 404).
const CLASS_SLOTS: usize = LimitClass::ALL.len() + 1;
const OTHER_CLASS: usize = LimitClass::ALL.len();

/// Status codes 100..=599 get one slot each; slot 0 counts connections dropped on purpose.
const STATUS_SLOTS: usize = 600;
const DROPPED_SLOT: usize = 0;

/// The HTTP methods counted by operation (method and limit class), the last slot for any other.
const METHODS: [&str; 5] = ["GET", "PUT", "PATCH", "DELETE", "POST"];
const METHOD_SLOTS: usize = METHODS.len() + 1;

/// How many one-second windows of per-class counts `/_mock/stats` keeps (the last minute).
pub const RATE_WINDOW_SECONDS: u64 = 60;

/// Put into a response's extensions by the fault layer when it drops the connection, so the
/// stats count a drop rather than the status of the response that was never sent.
#[derive(Debug, Clone, Copy)]
pub struct DroppedConnection;

/// Request counters of one mock instance.
pub struct Stats {
    started: Instant,
    by_class_status: Vec<[AtomicU64; STATUS_SLOTS]>,
    /// Requests by (method, class): `requests_by_operation`, e.g. "DELETE create_delete", so a
    /// test can tell creates from deletes and patches from reads.
    by_method_class: [[AtomicU64; CLASS_SLOTS]; METHOD_SLOTS],
    in_flight: AtomicI64,
    windows: Vec<RateWindow>,
}

/// Requests per class during one second (second number `second` since the mock started).
struct RateWindow {
    second: AtomicU64,
    by_class: [AtomicU64; CLASS_SLOTS],
}

impl std::fmt::Debug for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stats").field("requests_total", &self.requests_total()).finish()
    }
}

impl Default for Stats {
    fn default() -> Stats {
        Stats::new()
    }
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            started: Instant::now(),
            by_class_status: (0..CLASS_SLOTS).map(|_| std::array::from_fn(|_| AtomicU64::new(0))).collect(),
            by_method_class: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            in_flight: AtomicI64::new(0),
            windows: (0..RATE_WINDOW_SECONDS)
                .map(|_| RateWindow {
                    second: AtomicU64::new(u64::MAX),
                    by_class: std::array::from_fn(|_| AtomicU64::new(0)),
                })
                .collect(),
        }
    }

    /// Counts one answered request. `status` is `None` for a connection dropped on purpose.
    pub fn record(&self, class: Option<LimitClass>, status: Option<u16>) {
        let class_slot = class_slot(class);
        let status_slot = status.map_or(DROPPED_SLOT, |s| usize::from(s).min(STATUS_SLOTS - 1));
        self.by_class_status[class_slot][status_slot].fetch_add(1, Ordering::Relaxed);
        self.record_window(class_slot);
    }

    /// Counts one request by its method and class (any answer).
    pub fn record_operation(&self, method: &str, class: Option<LimitClass>) {
        let method_slot = METHODS.iter().position(|m| *m == method).unwrap_or(METHODS.len());
        self.by_method_class[method_slot][class_slot(class)].fetch_add(1, Ordering::Relaxed);
    }

    fn operations_json(&self) -> Value {
        let mut map = Map::new();
        for (m, by_class) in self.by_method_class.iter().enumerate() {
            for (c, counter) in by_class.iter().enumerate() {
                let n = counter.load(Ordering::Relaxed);
                if n > 0 {
                    let method = METHODS.get(m).copied().unwrap_or("OTHER");
                    map.insert(format!("{method} {}", class_name(c)), json!(n));
                }
            }
        }
        Value::Object(map)
    }

    /// Bumps this second's window. A window slot is reused every `RATE_WINDOW_SECONDS`; the
    /// thread that claims it for the new second zeroes it. Counts from another thread that land
    /// between the claim and the zeroing are lost: acceptable for a rate display, and it keeps
    /// the hot path free of locks.
    fn record_window(&self, class_slot: usize) {
        let second = self.started.elapsed().as_secs();
        let window = &self.windows[(second % RATE_WINDOW_SECONDS) as usize];
        let seen = window.second.load(Ordering::Acquire);
        if seen != second && window.second.compare_exchange(seen, second, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            for counter in &window.by_class {
                counter.store(0, Ordering::Relaxed);
            }
        }
        window.by_class[class_slot].fetch_add(1, Ordering::Relaxed);
    }

    fn sum(&self, mut keep: impl FnMut(usize, usize) -> bool) -> u64 {
        let mut total = 0;
        for (class, statuses) in self.by_class_status.iter().enumerate() {
            for (status, counter) in statuses.iter().enumerate() {
                if keep(class, status) {
                    total += counter.load(Ordering::Relaxed);
                }
            }
        }
        total
    }

    pub fn requests_total(&self) -> u64 {
        self.sum(|_, _| true)
    }

    /// Requests answered 429, whether by a limit or by an injected fault.
    pub fn throttled_total(&self) -> u64 {
        self.sum(|_, status| status == 429)
    }

    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Zeroes every counter (`POST /_mock/reset`).
    pub fn reset(&self) {
        for statuses in &self.by_class_status {
            for counter in statuses {
                counter.store(0, Ordering::Relaxed);
            }
        }
        for counter in self.by_method_class.iter().flatten() {
            counter.store(0, Ordering::Relaxed);
        }
        for window in &self.windows {
            window.second.store(u64::MAX, Ordering::Relaxed);
            for counter in &window.by_class {
                counter.store(0, Ordering::Relaxed);
            }
        }
    }

    fn class_status_counts(&self) -> impl Iterator<Item = (usize, usize, u64)> + '_ {
        self.by_class_status.iter().enumerate().flat_map(|(class, statuses)| {
            statuses.iter().enumerate().filter_map(move |(status, counter)| {
                let n = counter.load(Ordering::Relaxed);
                (n > 0).then_some((class, status, n))
            })
        })
    }

    /// The stats as `/_mock/stats` serves them (without the store's part).
    pub fn to_json(&self) -> Map<String, Value> {
        let mut by_class = Map::new();
        for slot in 0..CLASS_SLOTS {
            by_class.insert(class_name(slot).to_string(), json!(self.sum(|c, _| c == slot)));
        }
        let mut by_status = Map::new();
        for status in 0..STATUS_SLOTS {
            let n = self.sum(|_, s| s == status);
            if n > 0 {
                by_status.insert(status_name(status), json!(n));
            }
        }
        let mut map = Map::new();
        map.insert("requests_total".into(), json!(self.requests_total()));
        map.insert("throttled_total".into(), json!(self.throttled_total()));
        map.insert("requests_by_class".into(), Value::Object(by_class));
        map.insert("requests_by_status".into(), Value::Object(by_status));
        map.insert("requests_by_operation".into(), self.operations_json());
        map.insert("requests_in_flight".into(), json!(self.in_flight()));
        map.insert("uptime_seconds".into(), json!(self.started.elapsed().as_secs_f64()));
        map.insert("requests_per_second_by_class".into(), self.windows_json());
        map
    }

    /// Completed one-second windows of the last minute, newest first, as
    /// `[{"seconds_ago":1,"read":950,…},…]` (classes with no request are left out).
    fn windows_json(&self) -> Value {
        let now = self.started.elapsed().as_secs();
        let mut out = Vec::new();
        for ago in 1..RATE_WINDOW_SECONDS.min(now + 1) {
            let second = now - ago;
            let window = &self.windows[(second % RATE_WINDOW_SECONDS) as usize];
            if window.second.load(Ordering::Acquire) != second {
                continue;
            }
            let mut entry = Map::new();
            entry.insert("seconds_ago".into(), json!(ago));
            for (slot, counter) in window.by_class.iter().enumerate() {
                let n = counter.load(Ordering::Relaxed);
                if n > 0 {
                    entry.insert(class_name(slot).to_string(), json!(n));
                }
            }
            out.push(Value::Object(entry));
        }
        Value::Array(out)
    }
}

fn class_slot(class: Option<LimitClass>) -> usize {
    class.and_then(|c| LimitClass::ALL.iter().position(|x| *x == c)).unwrap_or(OTHER_CLASS)
}

fn class_name(slot: usize) -> &'static str {
    LimitClass::ALL.get(slot).map_or("other", |c| c.as_str())
}

fn status_name(slot: usize) -> String {
    if slot == DROPPED_SLOT {
        "dropped".to_string()
    } else {
        slot.to_string()
    }
}

/// Decrements the in-flight gauge when a request ends, however it ends (even when the client
/// goes away and the request future is dropped).
struct InFlight<'a>(&'a AtomicI64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Middleware (outermost): counts every data-plane request by limit class and answer.
pub async fn record_stats(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(stats) = req.app_data::<web::Data<Stats>>().cloned() else {
        return pass_on(req, next).await;
    };
    let class = classify(req.method().as_str(), req.path()).map(|shape| shape.class);
    stats.record_operation(req.method().as_str(), class);
    stats.in_flight.fetch_add(1, Ordering::Relaxed);
    let _in_flight = InFlight(&stats.in_flight);
    let result = next.call(req).await;
    match &result {
        Ok(res) if res.response().extensions().contains::<DroppedConnection>() => stats.record(class, None),
        Ok(res) => stats.record(class, Some(res.status().as_u16())),
        Err(err) => stats.record(class, Some(err.as_response_error().status_code().as_u16())),
    }
    result.map(|res| res.map_into_boxed_body())
}

/// Registers `/_mock/*` and `/metrics`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/_mock/stats", web::get().to(stats_handler))
        .route("/_mock/export", web::get().to(export_handler))
        .route("/_mock/reset", web::post().to(reset_handler))
        .route("/_mock/ping", web::get().to(ping_handler))
        .route("/metrics", web::get().to(metrics_handler));
}

async fn ping_handler() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("ok")
}

async fn stats_handler(stats: web::Data<Stats>, store: web::Data<Store>, faults: web::Data<Faults>) -> HttpResponse {
    let mut map = stats.to_json();
    map.insert("faults_injected".into(), json!(faults.totals()));
    map.insert("order_violations_total".into(), json!(store.order_violations_total()));
    map.insert("models".into(), json!(store.model_count()));
    map.insert("twins".into(), json!(store.twin_count()));
    map.insert("relationships".into(), json!(store.relationship_count()));
    HttpResponse::Ok().json(Value::Object(map))
}

async fn export_handler(store: web::Data<Store>) -> actix_web::Result<HttpResponse> {
    // Writing a large graph takes a while; keep it off the worker that serves other requests.
    let ndjson = web::block(move || {
        let mut out = Vec::new();
        store.export_ndjson(&mut out).map(|()| out)
    })
    .await?
    .map_err(actix_web::error::ErrorInternalServerError)?;
    Ok(HttpResponse::Ok().content_type("application/x-ndjson").body(ndjson))
}

/// How long `POST /_mock/reset` waits for running import and delete jobs to stop.
const RESET_JOBS_GRACE: Duration = Duration::from_secs(5);

/// Empties everything (import and delete jobs, then the store) and zeroes the counters and the
/// fault sequence, so a test can start over.
async fn reset_handler(
    stats: web::Data<Stats>,
    store: web::Data<Store>,
    faults: web::Data<Faults>,
    jobs: Option<web::Data<Jobs>>,
) -> actix_web::Result<HttpResponse> {
    if let Some(jobs) = jobs {
        // Stopping a running job may take a moment; keep it off the worker that serves others.
        let stuck = web::block(move || jobs.reset(RESET_JOBS_GRACE)).await?;
        if stuck > 0 {
            tracing::warn!("reset: {stuck} bulk job(s) did not stop within {RESET_JOBS_GRACE:?}; they were forgotten");
        }
    }
    store.reset();
    stats.reset();
    faults.reset();
    Ok(HttpResponse::NoContent().finish())
}

async fn metrics_handler(stats: web::Data<Stats>, store: web::Data<Store>, faults: web::Data<Faults>) -> HttpResponse {
    let text = render_prometheus(&stats, &store, &faults);
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(text)
}

/// The Prometheus text exposition of the mock's metrics. Label values are limit classes,
/// statuses and fault kinds only, never ids, so the series count stays small.
///
/// Naming: the mock's own prefix `twinload_mock_` (not shared names with a `side` label), so a
/// query never mixes the two sides by accident and either side's dashboard works alone. Where
/// both count the same thing, the rest of the name and the labels are the loader's
/// (`requests_total{class,status}`, `throttled_requests_total`, `requests_in_flight`; see
/// src/observe/catalog.rs), so the two can be set side by side on one panel.
pub fn render_prometheus(stats: &Stats, store: &Store, faults: &Faults) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP twinload_mock_{name} {help}");
        let _ = writeln!(out, "# TYPE twinload_mock_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "twinload_mock_{name}{labels} {value}");
        }
    };
    let requests: Vec<(String, u64)> = stats
        .class_status_counts()
        .map(|(class, status, n)| {
            (format!("{{class=\"{}\",status=\"{}\"}}", class_name(class), status_name(status)), n)
        })
        .collect();
    family(
        "requests_total",
        "counter",
        "Data-plane requests answered, by limit class and status (\"dropped\": connection closed on purpose).",
        &requests,
    );
    family(
        "throttled_requests_total",
        "counter",
        "Requests answered 429, by a limit or an injected fault.",
        &[(String::new(), stats.throttled_total())],
    );
    let totals = faults.totals();
    let injected = [
        ("throttle", totals.throttled),
        ("server_error", totals.server_errors),
        ("drop", totals.dropped),
        ("delay", totals.delayed),
    ]
    .map(|(kind, n)| (format!("{{kind=\"{kind}\"}}"), n));
    family("faults_injected_total", "counter", "Faults injected on purpose, by kind.", &injected);
    family(
        "order_violations_total",
        "counter",
        "Writes refused because something they depend on was missing (not counting the eventual-consistency window).",
        &[(String::new(), store.order_violations_total())],
    );
    family(
        "requests_in_flight",
        "gauge",
        "Data-plane requests being served now.",
        &[(String::new(), stats.in_flight().max(0) as u64)],
    );
    family("models", "gauge", "Models stored.", &[(String::new(), store.model_count() as u64)]);
    family("twins", "gauge", "Twins stored.", &[(String::new(), store.twin_count() as u64)]);
    family("relationships", "gauge", "Relationships stored.", &[(String::new(), store.relationship_count() as u64)]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_class_and_status() {
        let stats = Stats::new();
        stats.record(Some(LimitClass::Read), Some(200));
        stats.record(Some(LimitClass::Read), Some(429));
        stats.record(Some(LimitClass::CreateDelete), Some(200));
        stats.record(None, Some(404));
        stats.record(Some(LimitClass::Patch), None);
        assert_eq!(stats.requests_total(), 5);
        assert_eq!(stats.throttled_total(), 1);
        let json = stats.to_json();
        assert_eq!(json["requests_by_class"]["read"], 2);
        assert_eq!(json["requests_by_class"]["other"], 1);
        assert_eq!(json["requests_by_status"]["200"], 2);
        assert_eq!(json["requests_by_status"]["dropped"], 1);
        stats.reset();
        assert_eq!(stats.requests_total(), 0);
    }

    #[test]
    fn prometheus_names_are_prefixed_and_counters_end_in_total() {
        let stats = Stats::new();
        stats.record(Some(LimitClass::Read), Some(200));
        let store = Store::new(crate::limits::Limits::adt_default(), Default::default());
        let faults = Faults::new(Default::default());
        let text = render_prometheus(&stats, &store, &faults);
        assert!(text.contains("twinload_mock_requests_total{class=\"read\",status=\"200\"} 1"), "{text}");
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let mut parts = line.split_whitespace().skip(2);
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(name.starts_with("twinload_mock_"), "{line}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
        }
    }
}
