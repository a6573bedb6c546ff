//! The mock ADT's entry point: [`start`] serves the data plane on a loopback port, on its own
//! thread and actix System, and returns a [`MockHandle`] once it is listening.
//!
//! It works from plain tests, from `#[tokio::test]`, and from inside another actix System (the
//! loader's), because nothing of the caller's runtime is used.
//!
//! Every data-plane request goes through, in order:
//! stats (counts every answer) → auth (401) → faults (injected 429/5xx, latency, drops) →
//! class throttle (429) → the handlers of [`crate::api`] (which spend the per-twin limits).
//! `/_mock/*` and `/metrics` need no token and are neither faulted nor throttled.

use std::net::{Shutdown, SocketAddr};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Extensions, ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Condition, Next};
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;

use super::auth::{self, AuthConfig};
use super::faults::{self, FaultConfig, Faults};
use super::inspect::{self, Stats};
use super::jobs::{Jobs, JobsConfig};
use super::store::{Store, StoreOptions};
use super::throttle::{self, Throttle};
use super::tls::{self, TlsMode};
use crate::limits::Limits;

/// The default listen address: loopback, a free port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:0";

/// How long a graceful stop waits for requests in progress before closing their connections.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// With limits off, the count caps (twins, models, relationships per twin) are raised to this,
/// so a load test is never refused for size; payload size and page sizes stay ADT's.
pub const CAP_WHEN_LIMITS_OFF: usize = 1_000_000_000_000;

/// How to run one mock instance. `MockConfig::default()` is what `twinload mock-adt` does with
/// no flags: ADT's documented limits, a bearer token required, plain HTTP, no faults.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Where to listen; port 0 picks a free port (see `MockHandle::url`).
    pub listen: SocketAddr,
    /// The limits to enforce; `None` lifts every rate limit and raises the count caps.
    pub limits: Option<Limits>,
    pub auth: AuthConfig,
    pub tls: TlsMode,
    pub faults: FaultConfig,
    /// HTTP worker threads (each runs its own single-threaded runtime).
    pub workers: usize,
    pub shutdown_timeout: Duration,
    /// Import and Delete Jobs: the server-side import rate.
    pub jobs: JobsConfig,
}

impl Default for MockConfig {
    fn default() -> MockConfig {
        MockConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            limits: Some(Limits::adt_default()),
            auth: AuthConfig::default(),
            tls: TlsMode::Off,
            faults: FaultConfig::default(),
            workers: default_workers(),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            jobs: JobsConfig::default(),
        }
    }
}

impl MockConfig {
    /// No rate limits and raised caps (throughput tests, demos that only need a place to write).
    pub fn without_limits(mut self) -> MockConfig {
        self.limits = None;
        self
    }

    /// Accept requests without a token.
    pub fn without_auth(mut self) -> MockConfig {
        self.auth = AuthConfig::Off;
        self
    }

    pub fn with_limits(mut self, limits: Limits) -> MockConfig {
        self.limits = Some(limits);
        self
    }

    pub fn with_faults(mut self, faults: FaultConfig) -> MockConfig {
        self.faults = faults;
        self
    }

    pub fn with_tls(mut self, tls: TlsMode) -> MockConfig {
        self.tls = tls;
        self
    }
}

/// One worker per core (at least one).
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The limits the store applies when rate limits are off: ADT's functional limits (payload,
/// page sizes, models per call) with the count caps raised.
pub fn functional_limits_when_off() -> Limits {
    Limits {
        max_relationships_per_twin: CAP_WHEN_LIMITS_OFF,
        max_twins: CAP_WHEN_LIMITS_OFF,
        max_models: CAP_WHEN_LIMITS_OFF,
        ..Limits::adt_default()
    }
}

/// A running mock. Dropping it stops the server (abruptly); [`MockHandle::stop`] lets requests
/// in progress finish first.
pub struct MockHandle {
    /// The base URL clients use, e.g. `https://127.0.0.1:41234` (no trailing slash).
    pub url: String,
    /// The CA certificate (PEM) to trust, when the mock generated its own certificate.
    pub ca_cert_pem: Option<String>,
    pub addr: SocketAddr,
    store: Store,
    stats: web::Data<Stats>,
    server: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MockHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockHandle").field("url", &self.url).finish()
    }
}

impl MockHandle {
    /// The mock's graph, for tests that check what landed.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The request counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Stops accepting, lets requests in progress finish (up to the shutdown timeout), and
    /// waits for the server thread to end.
    pub fn stop(mut self) {
        self.shutdown(true);
    }

    fn shutdown(&mut self, graceful: bool) {
        if let Some(thread) = self.thread.take() {
            // The server runs on its own thread and System, so blocking here (even on a thread
            // of the caller's async runtime) cannot stall it.
            futures::executor::block_on(self.server.stop(graceful));
            let _ = thread.join();
        }
    }
}

impl Drop for MockHandle {
    fn drop(&mut self) {
        self.shutdown(false);
    }
}

/// Starts a mock and returns once it is listening. The CA PEM (self-signed TLS) is written
/// before this returns.
pub fn start(config: MockConfig) -> anyhow::Result<MockHandle> {
    config.faults.validate().map_err(anyhow::Error::msg)?;
    let tls = tls::server_tls(&config.tls).context("setting up TLS for the mock ADT")?;
    let ca_cert_pem = tls.as_ref().and_then(|t| t.ca_cert_pem.clone());
    let scheme = if tls.is_some() { "https" } else { "http" };

    let store_limits = config.limits.clone().unwrap_or_else(functional_limits_when_off);
    let store = Store::new(
        store_limits,
        StoreOptions {
            query_index_lag: config.faults.query_index_lag,
            new_twin_invisible_for: config.faults.new_twin_invisible_for,
            ..StoreOptions::default()
        },
    );
    let throttle = match &config.limits {
        Some(limits) => Throttle::new(limits),
        None => Throttle::unlimited(),
    };
    let shared = Shared {
        store: web::Data::new(store.clone()),
        throttle: web::Data::new(throttle),
        stats: web::Data::new(Stats::new()),
        faults: web::Data::new(Faults::new(config.faults.clone())),
        auth: web::Data::new(config.auth.clone()),
        jobs: web::Data::new(Jobs::new(store.clone(), config.jobs.clone())),
    };
    let stats = shared.stats.clone();

    let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<(SocketAddr, ServerHandle)>>();
    let thread = std::thread::Builder::new()
        .name("mock-adt".into())
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                match bind(&config, shared, tls.map(|t| t.config)) {
                    Ok((server, addr)) => {
                        let _ = ready_tx.send(Ok((addr, server.handle())));
                        if let Err(e) = server.await {
                            tracing::error!("mock ADT server stopped with an error: {e}");
                        }
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
        })
        .context("starting the mock ADT's server thread")?;
    let (addr, server) = match ready_rx.recv() {
        Ok(Ok(ready)) => ready,
        Ok(Err(e)) => {
            let _ = thread.join();
            return Err(e);
        }
        Err(_) => {
            let _ = thread.join();
            anyhow::bail!("the mock ADT's server thread ended before it was listening");
        }
    };
    Ok(MockHandle {
        url: format!("{scheme}://{addr}"),
        ca_cert_pem,
        addr,
        store,
        stats: stats.clone(),
        server,
        thread: Some(thread),
    })
}

/// The state every worker's App shares (each is an `Arc`).
#[derive(Clone)]
struct Shared {
    store: web::Data<Store>,
    throttle: web::Data<Throttle>,
    stats: web::Data<Stats>,
    faults: web::Data<Faults>,
    auth: web::Data<AuthConfig>,
    jobs: web::Data<Jobs>,
}

/// Binds the listening socket (so the port accepts connections when this returns) and builds
/// the server future.
fn bind(
    config: &MockConfig,
    shared: Shared,
    tls: Option<rustls::ServerConfig>,
) -> anyhow::Result<(actix_web::dev::Server, SocketAddr)> {
    // Layers that have nothing to do are left out (`Condition`), so limits off and no faults
    // cost nothing per request: the throughput measurements run that way.
    let throttled = config.limits.is_some();
    let faulted = config.faults.injects_per_request_faults();
    let authenticated = config.auth != AuthConfig::Off;
    let app = move || {
        App::new()
            .app_data(shared.store.clone())
            .app_data(shared.throttle.clone())
            .app_data(shared.stats.clone())
            .app_data(shared.faults.clone())
            .app_data(shared.auth.clone())
            .app_data(shared.jobs.clone())
            .configure(inspect::configure)
            .service(
                // `.wrap` runs the last-added layer first: stats, auth, faults, class throttle.
                web::scope("")
                    .wrap(Condition::new(throttled, from_fn(throttle::class_throttle)))
                    .wrap(Condition::new(faulted, from_fn(faults::inject_faults)))
                    .wrap(Condition::new(authenticated, from_fn(auth::require_bearer)))
                    .wrap(from_fn(inspect::record_stats))
                    .configure(super::api::configure),
            )
    };
    let mut server = HttpServer::new(app)
        .workers(config.workers.max(1))
        .disable_signals()
        .shutdown_timeout(config.shutdown_timeout.as_secs().max(1));
    if config.faults.drop_rate > 0.0 {
        server = server.on_connect(remember_socket);
    }
    let server = match tls {
        None => server.bind(config.listen),
        Some(tls) => server.bind_rustls_0_23(config.listen, tls),
    }
    .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = *server.addrs().first().context("the mock ADT bound no address")?;
    Ok((server.run(), addr))
}

/// Hands a request to the next layer of the chain, boxing the answer's body so that every layer
/// answers with one type whether it passed the request on or answered itself.
pub async fn pass_on(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    next.call(req).await.map(ServiceResponse::map_into_boxed_body)
}

/// A second handle on a connection's socket, so the fault layer can shut the connection down
/// (see [`drop_connection`]). It is a duplicated file descriptor, owned here: it stays valid
/// even if the connection's own handle is closed first.
pub struct ConnectionSocket(std::net::TcpStream);

/// `on_connect` hook (only when drops are switched on): keeps a duplicate of the socket.
fn remember_socket(connection: &dyn std::any::Any, extensions: &mut Extensions) {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
        let fd = if let Some(plain) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
            plain.as_fd().try_clone_to_owned()
        } else if let Some(tls) = connection.downcast_ref::<Tls>() {
            tls.get_ref().0.as_fd().try_clone_to_owned()
        } else {
            return;
        };
        if let Ok(fd) = fd {
            extensions.insert(ConnectionSocket(std::net::TcpStream::from(fd)));
        }
    }
}

/// Shuts down the TCP connection a request came on (both directions), so the client sees the
/// connection end without an answer. (The mock speaks HTTP/1.1 only: actix-web's `http2` feature
/// is off. Were it on, shutting the socket would still drop every stream of the connection.)
/// Returns false when there is no socket handle (drops switched off at start, or a platform
/// without file descriptors), so the caller falls back to another way of closing.
pub fn drop_connection(socket: Option<&ConnectionSocket>) -> bool {
    match socket {
        Some(ConnectionSocket(stream)) => stream.shutdown(Shutdown::Both).is_ok(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starts_serves_inspection_without_a_token_and_stops() {
        let mock = start(MockConfig::default()).unwrap();
        assert!(mock.url.starts_with("http://127.0.0.1:"), "{}", mock.url);
        crate::tls::install_client_crypto_provider();
        let client = reqwest::Client::new();
        let ping = client.get(format!("{}/_mock/ping", mock.url)).send().await.unwrap();
        assert_eq!(ping.status(), 200);
        // Data-plane paths need a token; the refusal is counted.
        let refused = client.get(format!("{}/digitaltwins/x?api-version=2023-10-31", mock.url)).send().await.unwrap();
        assert_eq!(refused.status(), 401);
        let stats: serde_json::Value =
            client.get(format!("{}/_mock/stats", mock.url)).send().await.unwrap().json().await.unwrap();
        assert_eq!(stats["requests_total"], 1, "{stats}");
        assert_eq!(stats["requests_by_status"]["401"], 1, "{stats}");
        assert_eq!(stats["requests_by_class"]["read"], 1, "{stats}");
        let url = mock.url.clone();
        mock.stop();
        assert!(client.get(format!("{url}/_mock/ping")).send().await.is_err(), "still serving after stop");
    }

    #[test]
    fn starts_from_a_plain_thread_and_two_mocks_get_different_ports() {
        let a = start(MockConfig::default().without_limits()).unwrap();
        let b = start(MockConfig::default().without_limits()).unwrap();
        assert_ne!(a.addr, b.addr);
    }

    #[test]
    fn a_port_in_use_is_a_clear_error() {
        let a = start(MockConfig::default()).unwrap();
        let err = start(MockConfig { listen: a.addr, ..MockConfig::default() }).unwrap_err();
        assert!(format!("{err:#}").contains(&a.addr.to_string()), "{err:#}");
    }
}
