//! The loader's configuration: a TOML file (`--config <file>`, see
//! `config/twinload.example.toml`), `TWINLOAD_*` environment variables and flags.
//!
//! Precedence: flags > environment > file > defaults. Clap reads a flag or, failing that, its
//! `TWINLOAD_*` variable ([`ConfigArgs`]); the file fills what both left unset ([`FileConfig`],
//! which rejects unknown keys so a typo is an error, not a silent default); the named
//! `DEFAULT_*` constants fill the rest. [`LoadConfig`] is the resolved result the run uses.
//!
//! The token is never printed: [`SecretToken`] redacts itself in `Debug` and `Display`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::azure::identity::{self, CredentialKind, IdentitySettings};
use crate::client::TokenProvider;
use crate::limits::Limits;
use crate::source::blob::BlobReadLog;
use crate::source::select::{Phase, Selection, Shard};
use crate::sync::settings::{MaxDeletes, PruneScope, SyncSettings, DEFAULT_MAX_DELETES};

/// Writer actors, i.e. HTTP requests in flight at once. 500 writes/s at ~50 ms per request
/// needs ~25; the rest is slack for slow responses.
pub const DEFAULT_WRITERS: usize = 32;
/// Models per `POST /models`. ADT allows 250 but rejects big batches sooner in practice
/// (FIELD.md §2, item 2).
pub const DEFAULT_MODEL_BATCH_SIZE: usize = 100;
/// Per-request timeout (the Azure SDKs use 100 s; ADT answers writes in tens of ms).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest answer the client reads: twice the largest ADT gives. That is a query page
/// (at most 1,000 items, each a twin of at most 32 KiB: 32 MiB; Microsoft Learn, "Azure Digital
/// Twins service limits"); a model is at most 1 MB and a model page holds 100. A longer answer
/// (an endless body, a `Content-Length` of gigabytes) is cut off there and fails the request as
/// a transient error, so 32 writers hold at most 32 times this.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;
/// How long in-flight requests may take to finish after a deadline or signal.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Attempts per item, the first included (Google SRE: 3; throttling is routine here, so more).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
/// First backoff step; doubled per attempt, jittered.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(200);
/// Backoff ceiling.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Retries may be at most this share of first attempts (Google SRE: 10%)…
pub const DEFAULT_RETRY_BUDGET_SHARE: f64 = 0.10;
/// …plus this many, so a small run can still retry.
pub const DEFAULT_RETRY_BUDGET_MIN: u64 = 50;
/// How long a relationship whose target this run created (or found) is retried on
/// `TargetDigitalTwinNotFound` (ADT is eventually consistent; query lags up to 10 s).
pub const DEFAULT_TARGET_GRACE: Duration = Duration::from_secs(30);
/// Multiplicative decrease of a class's rate on a throttle (AWS adaptive: β = 0.7).
pub const DEFAULT_ADAPTIVE_DECREASE: f64 = 0.7;
/// The adaptive rate never goes below this share of the configured rate. Low, so that many
/// loaders sharing one instance (each at 1/N of it) can all get below their share.
pub const DEFAULT_ADAPTIVE_FLOOR_SHARE: f64 = 0.02;
/// CUBIC's C (AWS adaptive: 0.4), in requests/s per s³: how fast the rate grows back.
pub const DEFAULT_ADAPTIVE_CUBIC_C: f64 = 0.4;
/// Throttles closer together than this count as one congestion event. The 429s of requests
/// sent before the last cut never cut again (they are its echoes); this is the shortest spacing
/// of cuts on top of that, about two of ADT's round trips, so several loaders that overshoot
/// together back off within a fraction of a second.
pub const DEFAULT_ADAPTIVE_COOLDOWN: Duration = Duration::from_millis(100);
/// Share of the configured rate to start at, ramping up from there: ADT advises against starting
/// at the ceiling (it may throttle below its limits while it scales, ADT-REFERENCE.md §2), and
/// several loaders that all start at the ceiling would flood a shared instance with 429s.
pub const DEFAULT_ADAPTIVE_INITIAL_SHARE: f64 = 0.5;
/// Burst of each class bucket, in seconds of its rate (1/20 s keeps the stream smooth).
pub const DEFAULT_BURST_SECONDS: f64 = 0.05;
/// Longest wait a server may impose with `Retry-After` (on an item, and as a pause of its
/// limit class), so a broken header cannot park a load.
pub const DEFAULT_MAX_SERVER_WAIT: Duration = Duration::from_secs(60);
/// The run stops (exit 5, unsent items listed as not attempted) when nothing landed for this
/// long: throttling never fails an item, so this bounds a load against an instance that
/// answers 429 to everything.
pub const DEFAULT_NO_PROGRESS_TIMEOUT: Duration = Duration::from_secs(900);
/// `--mode auto` uses an import job only for loads of at least this many items (models, twins,
/// relationships): below it the per-item API's T* is a couple of minutes at 500 writes/s, and
/// a job's fixed costs (upload, one-request-per-second polling) and its lack of resume do not pay.
pub const DEFAULT_IMPORT_JOB_AUTO_MIN_ITEMS: u64 = 50_000;
/// The import rate `--mode auto` expects of the service, in items per second: Microsoft's
/// published figure, about 1,000,000 twins in about 10 minutes (MS Learn, "Azure Digital Twins
/// APIs and SDKs", bulk import with the Jobs API).
pub const DEFAULT_IMPORT_JOB_EXPECTED_RATE: f64 = 1_000_000.0 / 600.0;
/// Seconds between polls of a running import job (its status and its log). The Jobs API allows
/// 1 request/s per instance, shared with every other client.
pub const DEFAULT_IMPORT_JOB_POLL_INTERVAL: Duration = Duration::from_secs(2);
/// How long `--mode import-job` waits for another bulk job (import or delete) to end before it
/// gives up with a clear error. `--mode auto` does not wait: it writes per item instead.
pub const DEFAULT_IMPORT_JOB_BUSY_WAIT: Duration = Duration::from_secs(600);
/// Where the dead-letter NDJSON goes unless told.
pub const DEFAULT_DEAD_LETTER_PATH: &str = "twinload-dead-letters.ndjson";
/// How long a relationship whose source or target twin is neither in this task's input nor yet
/// in ADT waits for it (another shard or an earlier phase may be writing it), before it is
/// dead-lettered. Tasks of one ForEach start within seconds of each other; two minutes covers a
/// slow start without holding a task long.
pub const DEFAULT_TWIN_WAIT: Duration = Duration::from_secs(120);
/// How often those missing twins are looked for again while waiting.
pub const DEFAULT_TWIN_WAIT_POLL: Duration = Duration::from_secs(2);
/// When the input needs at most this many models it does not hold, each is checked with
/// `GET /models/{id}` instead of listing every model of the instance (a one-file task must not
/// pay for the instance's size).
pub const DEFAULT_MODEL_CHECK_MAX: usize = 50;

/// A bearer token. Never printed: `Debug` and `Display` show `<redacted>`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretToken(String);

impl SecretToken {
    pub fn new(token: impl Into<String>) -> SecretToken {
        SecretToken(token.into())
    }
    /// The token itself, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl FromStr for SecretToken {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SecretToken(s.to_string()))
    }
}

/// A static token (or none); Entra ID credentials are chosen by `credential` ([`CredentialKind`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Auth {
    /// No `Authorization` header (a mock started with `--no-auth`).
    None,
    /// A static `Authorization: Bearer <token>`.
    BearerToken { token: SecretToken },
}

/// How twins and relationships are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum WriteMode {
    /// An import job (`crate::import_job`) for a big first load into an empty instance, the
    /// per-item API (upsert) otherwise; the summary's `plan.load_mode` says which and why.
    Auto,
    /// ADT's Import Jobs API: the planned input as one NDJSON blob in the staging container
    /// (`--staging`), loaded server-side. For first loads: a job has no resume.
    ImportJob,
    /// `PUT` creates or replaces (ADT's default; re-runs are idempotent).
    Upsert,
    /// `PUT` with `If-None-Match: *`: an existing twin or relationship is left alone and
    /// counted as "already existed".
    CreateOnly,
    /// Send only differences from what ADT holds (ledger or query): new items created with
    /// `If-None-Match: *`, changed twins and relationships patched, unchanged ones left alone.
    Sync,
}

/// Retry policy (owned by the supervisor).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub budget_share: f64,
    pub budget_min: u64,
    pub target_grace: Duration,
    /// Cap on a server's `Retry-After`.
    pub max_server_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_MAX,
            budget_share: DEFAULT_RETRY_BUDGET_SHARE,
            budget_min: DEFAULT_RETRY_BUDGET_MIN,
            target_grace: DEFAULT_TARGET_GRACE,
            max_server_wait: DEFAULT_MAX_SERVER_WAIT,
        }
    }
}

/// The adaptive rate of each limit class (see `crate::limiter`).
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptiveRate {
    pub enabled: bool,
    pub decrease_factor: f64,
    pub floor_share: f64,
    pub cubic_c: f64,
    pub cooldown: Duration,
    pub initial_share: f64,
    /// `--rate-share`: this loader's expected share of the instance (one of N tasks sharing
    /// it). When set, each class starts at this share of its configured rate and treats it as
    /// its last known good rate (it probes above it slowly); `initial_share` is then unused.
    pub rate_share: Option<f64>,
    pub burst_seconds: f64,
}

impl Default for AdaptiveRate {
    fn default() -> Self {
        AdaptiveRate {
            enabled: true,
            decrease_factor: DEFAULT_ADAPTIVE_DECREASE,
            floor_share: DEFAULT_ADAPTIVE_FLOOR_SHARE,
            cubic_c: DEFAULT_ADAPTIVE_CUBIC_C,
            cooldown: DEFAULT_ADAPTIVE_COOLDOWN,
            initial_share: DEFAULT_ADAPTIVE_INITIAL_SHARE,
            rate_share: None,
            burst_seconds: DEFAULT_BURST_SECONDS,
        }
    }
}

/// A container URL that may carry a SAS: `Debug` and `Display` show it without its query string.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> SecretUrl {
        SecretUrl(url.into())
    }
    /// The URL with its SAS, for requests only.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// The URL without its query string: safe to print.
    pub fn redacted(&self) -> &str {
        self.0.split('?').next().unwrap_or_default()
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}?<redacted>", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.redacted())
    }
}

impl FromStr for SecretUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SecretUrl(s.to_string()))
    }
}

/// Import Jobs (`--mode import-job`, `--mode auto`).
#[derive(Debug, Clone, PartialEq)]
pub struct ImportJobConfig {
    /// The Blob Storage container for the job's input and log, with a SAS that lets the loader
    /// write and read (e.g. `https://acct.blob.core.windows.net/staging?sv=…&sig=…`). The ADT
    /// instance reads and writes it with its managed identity. `None`: no import jobs.
    pub staging: Option<SecretUrl>,
    pub auto_min_items: u64,
    pub expected_rate_per_s: f64,
    pub poll_interval: Duration,
    pub busy_wait: Duration,
}

impl Default for ImportJobConfig {
    fn default() -> Self {
        ImportJobConfig {
            staging: None,
            auto_min_items: DEFAULT_IMPORT_JOB_AUTO_MIN_ITEMS,
            expected_rate_per_s: DEFAULT_IMPORT_JOB_EXPECTED_RATE,
            poll_interval: DEFAULT_IMPORT_JOB_POLL_INTERVAL,
            busy_wait: DEFAULT_IMPORT_JOB_BUSY_WAIT,
        }
    }
}

/// Test-only fault switches in the loader itself. Never set them in production.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chaos {
    /// Every n-th request a writer sends, the writer dies after sending it and before
    /// reporting the outcome, so the supervisor's restart and re-dispatch are exercised.
    pub writer_crash_every: Option<u64>,
    /// Every n-th request (counted across writers), the request's task panics after sending it:
    /// a real panic, so the writer's replacement and the item's re-queueing are exercised.
    pub writer_panic_every: Option<u64>,
}

/// The resolved configuration of one load.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Base URL of the instance, e.g. `https://x.api.wcus.digitaltwins.azure.net` (no path).
    pub endpoint: String,
    pub auth: Auth,
    /// Where tokens come from (`--credential`); `auto` is resolved when the client is built.
    pub credential: CredentialKind,
    /// A user-assigned managed identity's client id (else `AZURE_CLIENT_ID`, else system-assigned).
    pub identity_client_id: Option<String>,
    /// Extra trusted CA certificates (a PEM bundle), e.g. the mock's self-signed one; trusted
    /// by every HTTPS client (ADT, Blob, Key Vault, token endpoints).
    pub ca_cert: Option<PathBuf>,
    /// Where fully landed input blobs are moved after the run (a container or prefix URL).
    pub archive: Option<String>,
    /// Blobs per page of a container listing.
    pub blob_page_size: u32,
    /// Which input blobs this run read to the end (filled while reading, used to archive).
    pub blob_read_log: BlobReadLog,
    pub limits: Limits,
    pub writers: usize,
    pub model_batch_size: usize,
    pub mode: WriteMode,
    pub retry: RetryPolicy,
    pub adaptive: AdaptiveRate,
    pub request_timeout: Duration,
    /// See [`DEFAULT_MAX_RESPONSE_BYTES`].
    pub max_response_bytes: u64,
    /// The whole run stops (cleanly, summary written) after this long.
    pub deadline: Option<Duration>,
    /// Stop when nothing landed for this long (the no-progress watchdog).
    pub no_progress_timeout: Duration,
    pub shutdown_grace: Duration,
    /// The JSON summary; `None` writes only the human summary on stderr.
    pub summary_path: Option<PathBuf>,
    pub dead_letter_path: PathBuf,
    /// Ledger, `--verify`, `--prune` (see `crate::sync`).
    pub sync: SyncSettings,
    pub chaos: Chaos,
    pub import_job: ImportJobConfig,
    /// The reference prototype's mapping file for per-twin documents and CSV rows.
    pub mapping: Option<PathBuf>,
    /// The model of twins whose input names none (with a mapping: build full twins, not patches).
    pub model: Option<String>,
    /// This task's share of the input (`--shard`, `--phase`).
    pub selection: Selection,
    /// See [`DEFAULT_TWIN_WAIT`].
    pub twin_wait: Duration,
    /// See [`DEFAULT_MODEL_CHECK_MAX`].
    pub model_check_max: usize,
    /// ADF's `outputs.json` (the summary trimmed under 2 MB); set inside a Batch task.
    pub outputs_path: Option<PathBuf>,
    pub metrics: MetricsConfig,
}

/// Prometheus metrics of a run (`[metrics]`, `--metrics-*`, `--pushgateway`). Off unless a
/// listen address or a Pushgateway is given.
#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    /// Serve `/metrics` here during the run (port 0: any free port, printed on stderr).
    pub listen: Option<std::net::SocketAddr>,
    /// Push the final snapshot to this Pushgateway (base URL).
    pub pushgateway: Option<String>,
    /// Keep the listener up this long after the run, so the last scrape lands. Default 0.
    pub linger: Duration,
}

impl LoadConfig {
    /// Every value at its default, for `endpoint`, without auth.
    pub fn new(endpoint: impl Into<String>) -> LoadConfig {
        LoadConfig {
            endpoint: endpoint.into(),
            auth: Auth::None,
            credential: CredentialKind::Auto,
            identity_client_id: None,
            ca_cert: None,
            archive: None,
            blob_page_size: crate::source::blob::DEFAULT_LIST_PAGE_SIZE,
            blob_read_log: BlobReadLog::default(),
            limits: Limits::adt_default(),
            writers: DEFAULT_WRITERS,
            model_batch_size: DEFAULT_MODEL_BATCH_SIZE,
            mode: WriteMode::Auto,
            retry: RetryPolicy::default(),
            adaptive: AdaptiveRate::default(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            deadline: None,
            no_progress_timeout: DEFAULT_NO_PROGRESS_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            summary_path: None,
            dead_letter_path: PathBuf::from(DEFAULT_DEAD_LETTER_PATH),
            sync: SyncSettings::default(),
            chaos: Chaos::default(),
            mapping: None,
            model: None,
            selection: Selection::default(),
            twin_wait: DEFAULT_TWIN_WAIT,
            model_check_max: DEFAULT_MODEL_CHECK_MAX,
            outputs_path: None,
            metrics: MetricsConfig::default(),
            import_job: ImportJobConfig::default(),
        }
    }

    /// The credential kind, with `auto` resolved against the token and the environment.
    pub fn credential_kind(&self) -> CredentialKind {
        match self.credential {
            CredentialKind::Auto => identity::resolve_auto(
                matches!(self.auth, Auth::BearerToken { .. }),
                &self.endpoint,
                &identity::process_env,
            ),
            kind => kind,
        }
    }

    /// What building a credential of `kind` needs.
    pub fn identity_settings(&self, kind: CredentialKind) -> IdentitySettings {
        IdentitySettings {
            kind,
            client_id: self.identity_client_id.clone().or_else(|| identity::process_env("AZURE_CLIENT_ID")),
            ca_cert: self.ca_cert.clone(),
        }
    }

    /// How Blob Storage inputs are reached, recording into this run's read log.
    pub fn blob_inputs(&self) -> crate::source::blob::BlobInputs {
        crate::source::blob::BlobInputs {
            access: crate::azure::blob_url::BlobAccess::from_config(self),
            log: self.blob_read_log.clone(),
            page_size: self.blob_page_size,
        }
    }

    /// The ADT client's tokens, as `credential` says.
    pub fn token_provider(&self) -> Result<TokenProvider, crate::client::token::TokenError> {
        match (self.credential_kind(), &self.auth) {
            (CredentialKind::None, _) => Ok(TokenProvider::None),
            (CredentialKind::Token, Auth::BearerToken { token }) => TokenProvider::fixed(token.expose()),
            (CredentialKind::Token, Auth::None) => Ok(TokenProvider::None),
            (kind, _) => TokenProvider::credential(self.identity_settings(kind)),
        }
    }

    /// Checks what serde and clap cannot: ranges and combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| Err(ConfigError::Invalid { key: key.to_string(), message: why });
        if !(self.endpoint.starts_with("https://") || self.endpoint.starts_with("http://")) {
            return bad(
                "endpoint",
                format!(
                    "'{}' is not an http(s) URL; give e.g. https://<instance>.api.<region>.digitaltwins.azure.net",
                    self.endpoint
                ),
            );
        }
        if let Auth::BearerToken { .. } = self.auth {
            if self.endpoint.starts_with("http://") && !is_loopback_url(&self.endpoint) {
                return bad(
                    "endpoint",
                    format!(
                        "'{}' is plain http:// to a host that is not this machine, and a bearer token would travel in clear text; use https:// (plain http is accepted only for loopback, e.g. a local mock)",
                        self.endpoint
                    ),
                );
            }
        }
        if self.writers == 0 {
            return bad("writers", "must be at least 1".into());
        }
        if self.model_batch_size == 0 || self.model_batch_size > self.limits.max_models_per_call {
            return bad(
                "model_batch_size",
                format!("must be 1..={} (the limits' max_models_per_call)", self.limits.max_models_per_call),
            );
        }
        if self.retry.max_attempts == 0 {
            return bad("retry.max_attempts", "must be at least 1 (1 means no retries)".into());
        }
        if !(0.0..=1.0).contains(&self.retry.budget_share) {
            return bad("retry.budget_share", "must be between 0 and 1".into());
        }
        let a = &self.adaptive;
        if !(a.decrease_factor > 0.0 && a.decrease_factor < 1.0) {
            return bad("adaptive.decrease_factor", "must be between 0 and 1 (exclusive)".into());
        }
        if !(a.floor_share > 0.0 && a.floor_share <= 1.0 && a.initial_share > 0.0 && a.initial_share <= 1.0) {
            return bad("adaptive.floor_share/initial_share", "must be in (0, 1]".into());
        }
        if a.cubic_c <= 0.0 || a.burst_seconds <= 0.0 {
            return bad("adaptive.cubic_c/burst_seconds", "must be positive".into());
        }
        if self.credential == CredentialKind::Token && !matches!(self.auth, Auth::BearerToken { .. }) {
            return bad("credential", "'token' needs a token: give --token or TWINLOAD_TOKEN".into());
        }
        if let Some(archive) = &self.archive {
            if let Err(e) = crate::azure::blob_url::BlobLocation::parse(archive) {
                return bad("archive", e.to_string());
            }
        }
        if !(1..=5000).contains(&self.blob_page_size) {
            return bad("blob_page_size", "must be 1..=5000 (the service's maximum page)".into());
        }
        if let Some(share) = a.rate_share {
            if !(share > 0.0 && share <= 1.0) {
                return bad("rate_share", format!("{share} must be in (0, 1]: this loader's share of the instance"));
            }
        }
        if self.no_progress_timeout.is_zero() {
            return bad("no_progress_timeout_s", "must be positive".into());
        }
        if self.chaos.writer_panic_every == Some(0) {
            return bad("chaos.writer_panic_every", "must be at least 1 (or unset)".into());
        }
        if self.sync.prune && self.sync.prune_scope == PruneScope::Ledger && self.sync.ledger.is_none() {
            return bad(
                "prune_scope",
                "--prune needs a ledger (--ledger) to know what this source loaded, or a stated --prune-scope model:<dtmi> or prefix:<id-prefix>".into(),
            );
        }
        let j = &self.import_job;
        if !(j.expected_rate_per_s.is_finite() && j.expected_rate_per_s > 0.0) {
            return bad("import_job.expected_rate_per_s", "must be a positive number of items per second".into());
        }
        if j.poll_interval < Duration::from_secs(1) {
            return bad("import_job.poll_interval_s", "must be at least 1 (the Jobs API allows 1 request/s)".into());
        }
        if let Some(staging) = &j.staging {
            let url = staging.expose();
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return bad("import_job.staging", format!("'{}' is not an http(s) container URL", staging.redacted()));
            }
        }
        if self.mode == WriteMode::ImportJob && j.staging.is_none() {
            return bad(
                "mode",
                "import-job needs a staging container: give --staging <container URL with a SAS> (or import_job.staging)"
                    .into(),
            );
        }
        if self.chaos.writer_crash_every == Some(0) {
            return bad("chaos.writer_crash_every", "must be at least 1 (or unset)".into());
        }
        Ok(())
    }
}

/// Whether an http(s) URL's host is this machine (`localhost`, 127.0.0.0/8, `::1`).
fn is_loopback_url(endpoint: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(endpoint) else { return false };
    let Some(host) = url.host_str() else { return false };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config file {path} is not valid: {message} (see config/twinload.example.toml)")]
    Parse { path: String, message: String },
    #[error("no endpoint: give --endpoint <url>, TWINLOAD_ENDPOINT, or `endpoint` in the config file")]
    NoEndpoint,
    #[error("config value {key} is not valid: {message}")]
    Invalid { key: String, message: String },
    #[error(transparent)]
    Limits(#[from] crate::limits::LimitsError),
}

// ---------------------------------------------------------------------------------------------
// The file

/// `--config <file>`: every key optional; unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub endpoint: Option<String>,
    pub auth: Option<Auth>,
    pub credential: Option<CredentialKind>,
    pub identity_client_id: Option<String>,
    pub ca_cert: Option<PathBuf>,
    pub archive: Option<String>,
    pub blob_page_size: Option<u32>,
    pub limits: Option<String>,
    pub writers: Option<usize>,
    pub model_batch_size: Option<usize>,
    pub mode: Option<WriteMode>,
    pub request_timeout_s: Option<f64>,
    pub max_response_bytes: Option<u64>,
    pub deadline_s: Option<f64>,
    pub no_progress_timeout_s: Option<f64>,
    pub max_server_wait_s: Option<f64>,
    pub rate_share: Option<f64>,
    pub shutdown_grace_s: Option<f64>,
    pub ledger: Option<String>,
    pub source: Option<String>,
    pub verify: Option<bool>,
    pub prune: Option<bool>,
    pub prune_scope: Option<PruneScope>,
    pub max_deletes: Option<MaxDeletes>,
    #[serde(default)]
    pub retry: RetryFile,
    #[serde(default)]
    pub adaptive: AdaptiveFile,
    #[serde(default)]
    pub output: OutputFile,
    #[serde(default)]
    pub chaos: ChaosFile,
    pub mapping: Option<PathBuf>,
    pub model: Option<String>,
    pub shard: Option<String>,
    pub phase: Option<Phase>,
    pub twin_wait_s: Option<f64>,
    pub model_check_max: Option<usize>,
    #[serde(default)]
    pub metrics: MetricsFile,
    #[serde(default)]
    pub import_job: ImportJobFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsFile {
    pub listen: Option<std::net::SocketAddr>,
    pub pushgateway: Option<String>,
    pub linger_s: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportJobFile {
    pub staging: Option<SecretUrl>,
    pub auto_min_items: Option<u64>,
    pub expected_rate_per_s: Option<f64>,
    pub poll_interval_s: Option<f64>,
    pub busy_wait_s: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryFile {
    pub max_attempts: Option<u32>,
    pub backoff_base_ms: Option<u64>,
    pub backoff_max_ms: Option<u64>,
    pub budget_share: Option<f64>,
    pub budget_min: Option<u64>,
    pub target_grace_s: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveFile {
    pub enabled: Option<bool>,
    pub decrease_factor: Option<f64>,
    pub floor_share: Option<f64>,
    pub cubic_c: Option<f64>,
    pub cooldown_ms: Option<u64>,
    pub initial_share: Option<f64>,
    pub burst_seconds: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputFile {
    pub summary: Option<PathBuf>,
    pub dead_letter: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosFile {
    pub writer_crash_every: Option<u64>,
    pub writer_panic_every: Option<u64>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        FileConfig::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, path: &str) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.to_string(), message: e.to_string() })
    }

    /// The file as a JSON object (empty without a file), so another layer (ADF's activity.json)
    /// can be merged over it key by key before it is read as a [`FileConfig`].
    pub fn load_value(path: Option<&Path>) -> Result<serde_json::Value, ConfigError> {
        let Some(path) = path else { return Ok(serde_json::Value::Object(Default::default())) };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
        let value: toml::Value =
            toml::from_str(&text).map_err(|e| ConfigError::Parse { path: shown.clone(), message: e.to_string() })?;
        serde_json::to_value(value).map_err(|e| ConfigError::Parse { path: shown, message: e.to_string() })
    }

    /// Reads a merged JSON object (see [`FileConfig::load_value`]); `what` names it in errors.
    pub fn from_value(value: serde_json::Value, what: &str) -> Result<FileConfig, ConfigError> {
        serde_json::from_value(value).map_err(|e| ConfigError::Parse { path: what.to_string(), message: e.to_string() })
    }
}

// ---------------------------------------------------------------------------------------------
// Flags and environment

/// Configuration flags of `twinload load`; each also reads its `TWINLOAD_*` variable.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ConfigArgs {
    /// TOML config file (see config/twinload.example.toml). Flags and TWINLOAD_* override it.
    #[arg(long, env = "TWINLOAD_CONFIG")]
    pub config: Option<PathBuf>,
    /// ADT instance URL, e.g. https://<instance>.api.<region>.digitaltwins.azure.net
    #[arg(long, env = "TWINLOAD_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Static bearer token (prefer the TWINLOAD_TOKEN variable: flags show in `ps`).
    #[arg(long, env = "TWINLOAD_TOKEN", hide_env_values = true)]
    pub token: Option<SecretToken>,
    /// Where tokens come from: auto (default: the token if given, else workload identity,
    /// else managed identity in Batch, else the Azure CLI), managed-identity,
    /// workload-identity, azure-cli, client-secret, token, none.
    #[arg(long, env = "TWINLOAD_CREDENTIAL", value_enum)]
    pub credential: Option<CredentialKind>,
    /// Client id of a user-assigned managed identity (default: AZURE_CLIENT_ID, else system-assigned).
    #[arg(long, env = "TWINLOAD_IDENTITY_CLIENT_ID")]
    pub identity_client_id: Option<String>,
    /// Extra trusted CA certificates (a PEM bundle), e.g. the mock's `--ca-out` file; trusted
    /// by every HTTPS client (ADT, Blob Storage, Key Vault, the token endpoint).
    #[arg(long, env = "TWINLOAD_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// After the run, move each input blob whose items all landed to this container or
    /// prefix URL (with a SAS, or reached with the credential); the summary and dead letters
    /// are uploaded there too.
    #[arg(long, env = "TWINLOAD_ARCHIVE")]
    pub archive: Option<String>,
    /// Limits profile name (adt-2025, adt-2021) or limits file (`path.toml[#profile]`).
    #[arg(long, env = "TWINLOAD_LIMITS")]
    pub limits: Option<String>,
    /// Writer actors (HTTP requests in flight at once). Default 32.
    #[arg(long, env = "TWINLOAD_WRITERS")]
    pub writers: Option<usize>,
    /// Models per POST /models. Default 100.
    #[arg(long, env = "TWINLOAD_MODEL_BATCH_SIZE")]
    pub model_batch_size: Option<usize>,
    /// auto (default): an import job for a big first load when --staging is given, else upsert;
    /// upsert: PUT creates or replaces; create-only: PUT with If-None-Match: *; import-job: one
    /// ADT import job through --staging.
    #[arg(long, env = "TWINLOAD_MODE", value_enum)]
    pub mode: Option<WriteMode>,
    /// Blob container URL with a SAS (read, write, create) for import-job input and log
    /// (prefer the TWINLOAD_STAGING variable: flags show in `ps`).
    #[arg(long, env = "TWINLOAD_STAGING", hide_env_values = true)]
    pub staging: Option<SecretUrl>,
    /// --mode auto uses an import job only for loads of at least this many items. Default 50000.
    #[arg(long, env = "TWINLOAD_IMPORT_JOB_AUTO_MIN_ITEMS")]
    pub import_job_auto_min_items: Option<u64>,
    /// Attempts per item, the first included. Default 8.
    #[arg(long, env = "TWINLOAD_MAX_ATTEMPTS")]
    pub max_attempts: Option<u32>,
    /// Retries at most this share of requests (plus a minimum). Default 0.1.
    #[arg(long, env = "TWINLOAD_RETRY_BUDGET_SHARE")]
    pub retry_budget_share: Option<f64>,
    /// Seconds a relationship is retried while its new target is not visible yet. Default 30.
    #[arg(long, env = "TWINLOAD_TARGET_GRACE_S")]
    pub target_grace_s: Option<f64>,
    /// Turn the adaptive rate (back off on 429, recover gradually) on or off. Default on.
    #[arg(long, env = "TWINLOAD_ADAPTIVE")]
    pub adaptive: Option<bool>,
    /// Per-request timeout in seconds. Default 30.
    #[arg(long, env = "TWINLOAD_REQUEST_TIMEOUT_S")]
    pub request_timeout_s: Option<f64>,
    /// Longest answer read from ADT, in bytes; a longer one fails the request as a transient
    /// error. Default 67108864 (64 MiB: twice ADT's largest answer, a query page).
    #[arg(long, env = "TWINLOAD_MAX_RESPONSE_BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_response_bytes: Option<u64>,
    /// Stop the run cleanly after this many seconds (exit code 5). Default: none.
    #[arg(long, env = "TWINLOAD_DEADLINE_S")]
    pub deadline_s: Option<f64>,
    /// Stop cleanly (exit code 5) when nothing landed for this many seconds. Default 900.
    #[arg(long, env = "TWINLOAD_NO_PROGRESS_TIMEOUT_S")]
    pub no_progress_timeout_s: Option<f64>,
    /// Longest wait honoured from a server's Retry-After, in seconds. Default 60.
    #[arg(long, env = "TWINLOAD_MAX_SERVER_WAIT_S")]
    pub max_server_wait_s: Option<f64>,
    /// This loader's share of the instance (0..1], e.g. 0.25 for one of 4 tasks: each limit
    /// class starts at that share of its rate. Default: start at half and ramp up.
    #[arg(long, env = "TWINLOAD_RATE_SHARE")]
    pub rate_share: Option<f64>,
    /// Write the JSON summary here.
    #[arg(long, env = "TWINLOAD_SUMMARY")]
    pub summary: Option<PathBuf>,
    /// Write dead letters (NDJSON) here. Default twinload-dead-letters.ndjson.
    #[arg(long, env = "TWINLOAD_DEAD_LETTER")]
    pub dead_letter: Option<PathBuf>,
    /// The reference prototype's mapping file: turns per-twin documents and CSV rows into twin
    /// properties (a JSON Patch of existing twins, or full twins with --model).
    #[arg(long, env = "TWINLOAD_MAPPING")]
    pub mapping: Option<PathBuf>,
    /// Model (DTMI) of twins whose input names none.
    #[arg(long, env = "TWINLOAD_MODEL")]
    pub model: Option<String>,
    /// Take a stable share of the input by twin id: i/n, 0-based (relationships go with their
    /// source twin; models go to every shard).
    #[arg(long, env = "TWINLOAD_SHARD")]
    pub shard: Option<Shard>,
    /// Write only models, twins or relationships (successive ForEach loops), or all (default).
    #[arg(long, env = "TWINLOAD_PHASE", value_enum)]
    pub phase: Option<Phase>,
    /// Seconds a relationship waits for a twin another task writes before it is dead-lettered.
    /// Default 120.
    #[arg(long, env = "TWINLOAD_TWIN_WAIT_S")]
    pub twin_wait_s: Option<f64>,
    /// Serve Prometheus metrics at http://<addr>/metrics during the run, e.g. 127.0.0.1:9184
    /// (port 0: any free port; the bound address is printed on stderr). Default: off.
    #[arg(long, env = "TWINLOAD_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Push the final metrics to this Prometheus Pushgateway, e.g. http://pushgateway:9091.
    #[arg(long, env = "TWINLOAD_PUSHGATEWAY")]
    pub pushgateway: Option<String>,
    /// Keep the metrics listener up this many seconds after the run, for the last scrape. Default 0.
    #[arg(long, env = "TWINLOAD_METRICS_LINGER_S")]
    pub metrics_linger_s: Option<f64>,
    /// Ledger of what landed (a local path, or a blob URL with a SAS or reached with the
    /// identity): skips what it records unchanged, resumes after a crash, scopes --prune.
    /// Default: none.
    #[arg(long, env = "TWINLOAD_LEDGER")]
    pub ledger: Option<String>,
    /// The source the ledger belongs to, by name: a scheduled sync whose input is a new dated
    /// export each run (exports/2026-12-02/fleet.ndjson, then exports/2026-12-03/fleet.ndjson)
    /// keeps one ledger under one name. Default: the inputs as named. One ledger per source (and
    /// per shard): a ledger has one writer at a time.
    #[arg(long, env = "TWINLOAD_SOURCE")]
    pub source: Option<String>,
    /// With --mode sync: read ADT's current state through the query API even with a ledger.
    #[arg(long, env = "TWINLOAD_VERIFY", num_args = 0..=1, default_missing_value = "true")]
    pub verify: Option<bool>,
    /// Delete what left the source within --prune-scope (relationships before their twins).
    #[arg(long, env = "TWINLOAD_PRUNE", num_args = 0..=1, default_missing_value = "true")]
    pub prune: Option<bool>,
    /// ledger (default: what the ledger records this source loaded), model:<dtmi> or prefix:<id-prefix>.
    #[arg(long, env = "TWINLOAD_PRUNE_SCOPE")]
    pub prune_scope: Option<PruneScope>,
    /// Most deletions a prune may make: a count or a percentage of its scope; more stops the
    /// run before any write (exit 4). Default 10%.
    #[arg(long, env = "TWINLOAD_MAX_DELETES")]
    pub max_deletes: Option<MaxDeletes>,
}

fn seconds(key: &str, value: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(value).map_err(|_| ConfigError::Invalid {
        key: key.to_string(),
        message: format!("{value} is not a valid number of seconds"),
    })
}

fn opt_seconds(key: &str, value: Option<f64>) -> Result<Option<Duration>, ConfigError> {
    value.map(|v| seconds(key, v)).transpose()
}

impl ConfigArgs {
    /// Layers flags/env over the file (if any) over the defaults, and validates the result.
    pub fn resolve(&self) -> Result<LoadConfig, ConfigError> {
        let file = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        self.resolve_with(file)
    }

    /// [`ConfigArgs::resolve`] with `over` (a snake_case JSON object, e.g. from ADF's
    /// activity.json) merged over the file: flags > environment > `over` > file > defaults.
    pub fn resolve_over(&self, over: serde_json::Value, what: &str) -> Result<LoadConfig, ConfigError> {
        let mut merged = FileConfig::load_value(self.config.as_deref())?;
        merge_json(&mut merged, over);
        let shown = match &self.config {
            Some(path) => format!("{} with {what}", path.display()),
            None => what.to_string(),
        };
        self.resolve_with(FileConfig::from_value(merged, &shown)?)
    }

    /// [`ConfigArgs::resolve`] with the file already read.
    pub fn resolve_with(&self, file: FileConfig) -> Result<LoadConfig, ConfigError> {
        let endpoint = self.endpoint.clone().or(file.endpoint).ok_or(ConfigError::NoEndpoint)?;
        let mut config = LoadConfig::new(endpoint.trim_end_matches('/'));
        config.auth = match &self.token {
            Some(token) => Auth::BearerToken { token: token.clone() },
            None => file.auth.unwrap_or(Auth::None),
        };
        config.credential = self.credential.or(file.credential).unwrap_or_default();
        config.identity_client_id = self.identity_client_id.clone().or(file.identity_client_id);
        config.ca_cert = self.ca_cert.clone().or(file.ca_cert);
        config.archive = self.archive.clone().or(file.archive);
        config.blob_page_size = file.blob_page_size.unwrap_or(crate::source::blob::DEFAULT_LIST_PAGE_SIZE);
        if let Some(spec) = self.limits.as_ref().or(file.limits.as_ref()) {
            config.limits = Limits::from_spec(spec)?;
        }
        config.writers = self.writers.or(file.writers).unwrap_or(DEFAULT_WRITERS);
        config.model_batch_size = self.model_batch_size.or(file.model_batch_size).unwrap_or(DEFAULT_MODEL_BATCH_SIZE);
        config.mode = self.mode.or(file.mode).unwrap_or(WriteMode::Auto);
        let j = &file.import_job;
        let import_job = &mut config.import_job;
        import_job.staging = self.staging.clone().or(j.staging.clone());
        import_job.auto_min_items =
            self.import_job_auto_min_items.or(j.auto_min_items).unwrap_or(DEFAULT_IMPORT_JOB_AUTO_MIN_ITEMS);
        import_job.expected_rate_per_s = j.expected_rate_per_s.unwrap_or(DEFAULT_IMPORT_JOB_EXPECTED_RATE);
        if let Some(t) = opt_seconds("import_job.poll_interval_s", j.poll_interval_s)? {
            import_job.poll_interval = t;
        }
        if let Some(t) = opt_seconds("import_job.busy_wait_s", j.busy_wait_s)? {
            import_job.busy_wait = t;
        }
        if let Some(t) = opt_seconds("request_timeout_s", self.request_timeout_s.or(file.request_timeout_s))? {
            config.request_timeout = t;
        }
        config.max_response_bytes =
            self.max_response_bytes.or(file.max_response_bytes).unwrap_or(DEFAULT_MAX_RESPONSE_BYTES).max(1);
        config.deadline = opt_seconds("deadline_s", self.deadline_s.or(file.deadline_s))?;
        if let Some(t) =
            opt_seconds("no_progress_timeout_s", self.no_progress_timeout_s.or(file.no_progress_timeout_s))?
        {
            config.no_progress_timeout = t;
        }
        if let Some(t) = opt_seconds("max_server_wait_s", self.max_server_wait_s.or(file.max_server_wait_s))? {
            config.retry.max_server_wait = t;
        }
        if let Some(t) = opt_seconds("shutdown_grace_s", file.shutdown_grace_s)? {
            config.shutdown_grace = t;
        }

        let r = &file.retry;
        let retry = &mut config.retry;
        retry.max_attempts = self.max_attempts.or(r.max_attempts).unwrap_or(DEFAULT_MAX_ATTEMPTS);
        if let Some(ms) = r.backoff_base_ms {
            retry.backoff_base = Duration::from_millis(ms);
        }
        if let Some(ms) = r.backoff_max_ms {
            retry.backoff_max = Duration::from_millis(ms);
        }
        retry.budget_share = self.retry_budget_share.or(r.budget_share).unwrap_or(DEFAULT_RETRY_BUDGET_SHARE);
        retry.budget_min = r.budget_min.unwrap_or(DEFAULT_RETRY_BUDGET_MIN);
        if let Some(t) = opt_seconds("retry.target_grace_s", self.target_grace_s.or(r.target_grace_s))? {
            retry.target_grace = t;
        }

        let a = &file.adaptive;
        let adaptive = &mut config.adaptive;
        adaptive.enabled = self.adaptive.or(a.enabled).unwrap_or(true);
        adaptive.decrease_factor = a.decrease_factor.unwrap_or(DEFAULT_ADAPTIVE_DECREASE);
        adaptive.floor_share = a.floor_share.unwrap_or(DEFAULT_ADAPTIVE_FLOOR_SHARE);
        adaptive.cubic_c = a.cubic_c.unwrap_or(DEFAULT_ADAPTIVE_CUBIC_C);
        if let Some(ms) = a.cooldown_ms {
            adaptive.cooldown = Duration::from_millis(ms);
        }
        adaptive.initial_share = a.initial_share.unwrap_or(DEFAULT_ADAPTIVE_INITIAL_SHARE);
        adaptive.rate_share = self.rate_share.or(file.rate_share);
        adaptive.burst_seconds = a.burst_seconds.unwrap_or(DEFAULT_BURST_SECONDS);

        config.summary_path = self.summary.clone().or(file.output.summary);
        if let Some(p) = self.dead_letter.clone().or(file.output.dead_letter) {
            config.dead_letter_path = p;
        }
        config.sync = SyncSettings {
            ledger: self.ledger.clone().or(file.ledger),
            source: self.source.clone().or(file.source),
            verify: self.verify.or(file.verify).unwrap_or(false),
            prune: self.prune.or(file.prune).unwrap_or(false),
            prune_scope: self.prune_scope.clone().or(file.prune_scope).unwrap_or(PruneScope::Ledger),
            max_deletes: self.max_deletes.or(file.max_deletes).unwrap_or(DEFAULT_MAX_DELETES),
        };
        config.chaos.writer_crash_every = file.chaos.writer_crash_every;
        config.chaos.writer_panic_every = file.chaos.writer_panic_every;

        config.mapping = self.mapping.clone().or(file.mapping);
        config.model = self.model.clone().or(file.model);
        let shard = match (&self.shard, &file.shard) {
            (Some(s), _) => Some(*s),
            (None, Some(text)) => {
                Some(text.parse::<Shard>().map_err(|message| ConfigError::Invalid { key: "shard".into(), message })?)
            }
            (None, None) => None,
        };
        config.selection = Selection { shard, phase: self.phase.or(file.phase).unwrap_or_default() };
        if let Some(t) = opt_seconds("twin_wait_s", self.twin_wait_s.or(file.twin_wait_s))? {
            config.twin_wait = t;
        }
        config.model_check_max = file.model_check_max.unwrap_or(DEFAULT_MODEL_CHECK_MAX);
        config.metrics = MetricsConfig {
            listen: self.metrics_listen.or(file.metrics.listen),
            pushgateway: self.pushgateway.clone().or(file.metrics.pushgateway),
            linger: opt_seconds("metrics.linger_s", self.metrics_linger_s.or(file.metrics.linger_s))?
                .unwrap_or_default(),
        };
        config.validate()?;
        Ok(config)
    }
}

/// Merges `over` into `base`: objects key by key (recursively), anything else replaced.
pub fn merge_json(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge_json(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        args: ConfigArgs,
    }

    /// Serialises the tests that read `TWINLOAD_*` with those that set one.
    static ENV_LOCK: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

    fn args(argv: &[&str]) -> ConfigArgs {
        let _env = ENV_LOCK.lock();
        parse_args(argv)
    }

    fn parse_args(argv: &[&str]) -> ConfigArgs {
        let mut full = vec!["twinload"];
        full.extend_from_slice(argv);
        Cmd::try_parse_from(full).expect("flags parse").args
    }

    #[test]
    fn the_example_file_parses_and_matches_the_defaults() {
        let text = include_str!("../config/twinload.example.toml");
        let file = FileConfig::parse(text, "config/twinload.example.toml").expect("example parses");
        let config = args(&["--endpoint", "https://x.example"]).resolve_with(file).expect("resolves");
        let defaults = LoadConfig::new("https://x.example");
        assert_eq!(config.writers, defaults.writers);
        assert_eq!(config.sync, defaults.sync);
        assert_eq!(config.model_batch_size, defaults.model_batch_size);
        assert_eq!(config.retry, defaults.retry);
        assert_eq!(config.adaptive, defaults.adaptive);
        assert_eq!(config.limits, defaults.limits);
        assert_eq!(config.request_timeout, defaults.request_timeout);
        assert_eq!(config.dead_letter_path, defaults.dead_letter_path);
        assert_eq!(config.chaos, defaults.chaos);
        assert_eq!(config.mode, defaults.mode);
        assert_eq!(config.import_job, defaults.import_job);
        assert_eq!(config.metrics.listen, None, "metrics are off unless asked for");
        assert_eq!(config.metrics.linger, defaults.metrics.linger);
    }

    #[test]
    fn metrics_settings_come_from_flags_and_the_file() {
        let file = FileConfig::parse(
            "[metrics]\nlisten = \"127.0.0.1:9184\"\npushgateway = \"http://pg:9091\"\nlinger_s = 5\n",
            "t.toml",
        )
        .unwrap();
        let config =
            args(&["--endpoint", "https://x.example", "--metrics-listen", "127.0.0.1:0"]).resolve_with(file).unwrap();
        assert_eq!(config.metrics.listen, Some("127.0.0.1:0".parse().unwrap()), "flag wins");
        assert_eq!(config.metrics.pushgateway.as_deref(), Some("http://pg:9091"));
        assert_eq!(config.metrics.linger, Duration::from_secs(5));
        let err = FileConfig::parse("[metrics]\nlisten = \"nowhere\"\n", "t.toml").unwrap_err().to_string();
        assert!(err.contains("listen"), "{err}");
    }

    #[test]
    fn import_job_needs_staging_and_the_staging_sas_is_never_shown() {
        let err = args(&["--endpoint", "https://x.example", "--mode", "import-job"]).resolve().unwrap_err().to_string();
        assert!(err.contains("--staging"), "{err}");
        let config = args(&[
            "--endpoint",
            "https://x.example",
            "--mode",
            "import-job",
            "--staging",
            "https://acct.blob.core.windows.net/stage?sv=2020&sig=SECRET",
        ])
        .resolve()
        .unwrap();
        let staging = config.import_job.staging.as_ref().unwrap();
        assert_eq!(staging.expose(), "https://acct.blob.core.windows.net/stage?sv=2020&sig=SECRET");
        assert!(!format!("{config:?} {staging}").contains("SECRET"));
    }

    #[test]
    fn unknown_keys_are_errors_that_name_the_key() {
        let err = FileConfig::parse("[retry]\nmax_atempts = 3\n", "t.toml").unwrap_err().to_string();
        assert!(err.contains("max_atempts") && err.contains("t.toml"), "{err}");
        let err = FileConfig::parse("writer = 3\n", "t.toml").unwrap_err().to_string();
        assert!(err.contains("writer"), "{err}");
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let file = FileConfig::parse(
            "endpoint = \"https://file.example\"\nwriters = 7\nmodel_batch_size = 50\n[retry]\nmax_attempts = 4\n",
            "t.toml",
        )
        .unwrap();
        let config = args(&["--writers", "9"]).resolve_with(file).unwrap();
        assert_eq!(config.endpoint, "https://file.example");
        assert_eq!(config.writers, 9, "flag wins");
        assert_eq!(config.model_batch_size, 50, "file wins over default");
        assert_eq!(config.retry.max_attempts, 4);
        assert_eq!(config.retry.budget_share, DEFAULT_RETRY_BUDGET_SHARE, "default fills the rest");
    }

    #[test]
    fn environment_sits_between_flags_and_file() {
        // Clap reads TWINLOAD_* itself; the lock keeps other tests from seeing the variable.
        let _env = ENV_LOCK.lock();
        std::env::set_var("TWINLOAD_TARGET_GRACE_S", "12");
        let file = FileConfig::parse("[retry]\ntarget_grace_s = 50\n", "t.toml").unwrap();
        let from_env = parse_args(&["--endpoint", "https://x.example"]).resolve_with(file).unwrap();
        let flag = parse_args(&["--endpoint", "https://x.example", "--target-grace-s", "3"])
            .resolve_with(FileConfig::default())
            .unwrap();
        std::env::remove_var("TWINLOAD_TARGET_GRACE_S");
        assert_eq!(from_env.retry.target_grace, Duration::from_secs(12));
        assert_eq!(flag.retry.target_grace, Duration::from_secs(3));
    }

    #[test]
    fn the_token_is_never_printed() {
        let config = args(&["--endpoint", "https://x.example", "--token", "s3cr3t-value"])
            .resolve_with(FileConfig::default())
            .unwrap();
        assert_eq!(config.auth, Auth::BearerToken { token: SecretToken::new("s3cr3t-value") });
        let shown = format!("{config:?} {:?}", args(&["--token", "s3cr3t-value"]));
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn a_token_goes_over_plain_http_only_to_loopback() {
        for ok in ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:2", "https://x.example"] {
            let config = args(&["--endpoint", ok, "--token", "t"]).resolve_with(FileConfig::default());
            assert!(config.is_ok(), "{ok}: {config:?}");
        }
        for bad in ["http://x.example", "http://10.0.0.1", "http://127.0.0.1.example.com"] {
            let err = args(&["--endpoint", bad, "--token", "t"]).resolve_with(FileConfig::default()).unwrap_err();
            assert!(err.to_string().contains("clear text"), "{bad}: {err}");
        }
        // Without a token, plain http anywhere is the user's business.
        assert!(args(&["--endpoint", "http://x.example"]).resolve_with(FileConfig::default()).is_ok());
    }

    #[test]
    fn rate_share_watchdog_and_server_wait_have_flags_and_keys() {
        let file =
            FileConfig::parse("rate_share = 0.25\nno_progress_timeout_s = 30\nmax_server_wait_s = 5\n", "t.toml")
                .unwrap();
        let config = args(&["--endpoint", "https://x.example"]).resolve_with(file).unwrap();
        assert_eq!(config.adaptive.rate_share, Some(0.25));
        assert_eq!(config.no_progress_timeout, Duration::from_secs(30));
        assert_eq!(config.retry.max_server_wait, Duration::from_secs(5));
        let config = args(&["--endpoint", "https://x.example", "--rate-share", "0.5", "--no-progress-timeout-s", "7"])
            .resolve_with(FileConfig::default())
            .unwrap();
        assert_eq!(config.adaptive.rate_share, Some(0.5));
        assert_eq!(config.no_progress_timeout, Duration::from_secs(7));
        let defaults = args(&["--endpoint", "https://x.example"]).resolve_with(FileConfig::default()).unwrap();
        assert_eq!(defaults.no_progress_timeout, DEFAULT_NO_PROGRESS_TIMEOUT);
        assert_eq!(defaults.retry.max_server_wait, DEFAULT_MAX_SERVER_WAIT);
        for bad in ["0", "1.5", "-1"] {
            let err = args(&["--endpoint", "https://x.example", &format!("--rate-share={bad}")])
                .resolve_with(FileConfig::default())
                .unwrap_err();
            assert!(err.to_string().contains("rate_share"), "{bad}: {err}");
        }
    }

    #[test]
    fn token_in_file_is_an_auth_method() {
        let file = FileConfig::parse("[auth]\nmethod = \"bearer-token\"\ntoken = \"abc\"\n", "t.toml").unwrap();
        let config = args(&["--endpoint", "http://127.0.0.1:1"]).resolve_with(file).unwrap();
        assert!(matches!(config.auth, Auth::BearerToken { ref token } if token.expose() == "abc"));
    }

    #[test]
    fn missing_endpoint_and_bad_values_say_what_to_fix() {
        let err = args(&[]).resolve_with(FileConfig::default()).unwrap_err().to_string();
        assert!(err.contains("--endpoint"), "{err}");
        let err = args(&["--endpoint", "x.example"]).resolve_with(FileConfig::default()).unwrap_err().to_string();
        assert!(err.contains("endpoint") && err.contains("https://"), "{err}");
        let err = args(&["--endpoint", "https://x", "--model-batch-size", "251"])
            .resolve_with(FileConfig::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("model_batch_size") && err.contains("250"), "{err}");
        let err = args(&["--endpoint", "https://x", "--limits", "adt-1999"])
            .resolve_with(FileConfig::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("adt-1999"), "{err}");
    }
}
