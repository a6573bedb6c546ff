//! `twinload mock-adt`: serve a mock of the ADT data plane until SIGTERM or SIGINT.
//!
//! The first line of standard output is exactly `listening on <url>` (scripts read it to find
//! the port); everything else goes to standard error.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use super::auth::AuthConfig;
use super::faults::FaultConfig;
use super::jobs::JobsConfig;
use super::server::{self, MockConfig};
use super::tls::TlsMode;
use crate::limits::Limits;

#[derive(Debug, clap::Args)]
pub struct MockAdtArgs {
    /// Address to listen on; port 0 picks a free port (printed on the first line of stdout).
    #[arg(long, default_value = server::DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Accept requests without an `Authorization: Bearer` token.
    #[arg(long, conflicts_with = "token")]
    pub no_auth: bool,

    /// Accept only this bearer token (default: any non-empty bearer token).
    #[arg(long, env = "TWINLOAD_MOCK_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Accept only the bearer tokens listed in this file (one a line, read at every request):
    /// for tests whose token endpoint issues new tokens on refresh.
    #[arg(long, conflicts_with_all = ["token", "no_auth"])]
    pub token_file: Option<std::path::PathBuf>,

    /// Serve HTTPS with a generated CA and certificate for 127.0.0.1 and localhost.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls_self_signed: bool,

    /// With --tls-self-signed: write the CA certificate (PEM) here before listening.
    #[arg(long, requires = "tls_self_signed")]
    pub ca_out: Option<PathBuf>,

    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Limits: a profile of config/limits.toml (e.g. adt-2025, adt-2021) or a limits file
    /// (`path.toml` or `path.toml#profile`). Default: ADT's documented limits.
    #[arg(long, conflicts_with = "limits_off")]
    pub limits: Option<String>,

    /// Lift every rate limit and raise the count caps (throughput tests).
    #[arg(long)]
    pub limits_off: bool,

    /// Seed of the injected faults: the same seed faults the same request numbers.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Share of data-plane requests answered 429 with Retry-After (0..1).
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub fault_429_rate: f64,

    /// Share of data-plane requests answered 500 or 503 (0..1).
    #[arg(long = "fault-5xx-rate", default_value_t = 0.0, value_parser = parse_rate)]
    pub fault_5xx_rate: f64,

    /// Latency added to every data-plane request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,

    /// Extra latency of a spike, in milliseconds (see --latency-spike-rate).
    #[arg(long, default_value_t = 0)]
    pub latency_spike_ms: u64,

    /// Share of data-plane requests that get the latency spike (0..1).
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub latency_spike_rate: f64,

    /// Share of data-plane requests whose connection is closed without an answer (0..1): half
    /// of them before the request is handled, half after (the write landed, its answer is lost).
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub drop_rate: f64,

    /// Query results reflect writes only after this many milliseconds (ADT: up to 10 s).
    #[arg(long, default_value_t = 0)]
    pub query_lag_ms: u64,

    /// A new twin is invisible to relationship writes for this many milliseconds
    /// (they get TargetDigitalTwinNotFound, as with ADT's eventual consistency).
    #[arg(long, default_value_t = 0)]
    pub new_twin_invisible_ms: u64,

    /// HTTP worker threads (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,

    /// Items (models, twins, relationships) an import job applies per second, server-side.
    /// Default: Microsoft's published Import Jobs figure, about 1,000,000 twins in about 10
    /// minutes (MS Learn, "Azure Digital Twins APIs and SDKs", bulk import with the Jobs API),
    /// i.e. ≈1,667/s. 0 = as fast as the mock's store takes them.
    #[arg(long, default_value_t = crate::jobs::DEFAULT_IMPORT_RATE_PER_S, value_parser = parse_items_per_s)]
    pub import_rate: f64,

    /// The instance's access to Blob Storage for import jobs, as real ADT's managed identity
    /// has it: a SAS appended to a job's input and log blob URLs that carry none (a client then
    /// need not put a SAS in the job).
    #[arg(long, env = "TWINLOAD_MOCK_STORAGE_SAS", hide_env_values = true)]
    pub storage_sas: Option<String>,
}

impl MockAdtArgs {
    /// The server configuration these flags describe.
    pub fn to_config(&self) -> anyhow::Result<MockConfig> {
        let limits = if self.limits_off {
            None
        } else {
            Some(match &self.limits {
                Some(spec) => Limits::from_spec(spec)?,
                None => Limits::adt_default(),
            })
        };
        let auth = match (&self.no_auth, &self.token) {
            _ if self.token_file.is_some() => AuthConfig::TokenFile(self.token_file.clone().unwrap_or_default()),
            (true, _) => AuthConfig::Off,
            (false, Some(token)) if !token.is_empty() => AuthConfig::Token(token.clone()),
            (false, _) => AuthConfig::AnyBearer,
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => TlsMode::Files { cert: cert.clone(), key: key.clone() },
            _ if self.tls_self_signed => TlsMode::SelfSigned { ca_out: self.ca_out.clone() },
            _ => TlsMode::Off,
        };
        let faults = FaultConfig {
            seed: self.seed,
            rate_429: self.fault_429_rate,
            rate_5xx: self.fault_5xx_rate,
            latency: Duration::from_millis(self.latency_ms),
            latency_spike: Duration::from_millis(self.latency_spike_ms),
            latency_spike_rate: self.latency_spike_rate,
            drop_rate: self.drop_rate,
            query_index_lag: Duration::from_millis(self.query_lag_ms),
            new_twin_invisible_for: Duration::from_millis(self.new_twin_invisible_ms),
            ..FaultConfig::default()
        };
        faults.validate().map_err(anyhow::Error::msg)?;
        Ok(MockConfig {
            listen: self.listen,
            limits,
            auth,
            tls,
            faults,
            workers: self.workers.unwrap_or_else(server::default_workers),
            jobs: JobsConfig {
                import_rate_per_s: self.import_rate,
                storage_sas: self.storage_sas.clone(),
                ..JobsConfig::default()
            },
            ..MockConfig::default()
        })
    }
}

/// A rate in items per second: a finite number ≥ 0.
fn parse_items_per_s(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 0.0 => Ok(rate),
        _ => Err(format!("'{text}' is not a rate in items per second (a number ≥ 0)")),
    }
}

/// A share of requests: a number in [0, 1].
fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text.parse().map_err(|_| format!("'{text}' is not a number"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("{rate} is not between 0 and 1"))
    }
}

pub fn run(args: MockAdtArgs) -> anyhow::Result<()> {
    let config = args.to_config()?;
    if matches!(config.tls, TlsMode::SelfSigned { ca_out: None }) {
        tracing::warn!("--tls-self-signed without --ca-out: clients have no CA certificate to trust");
    }
    tracing::info!(
        limits = if config.limits.is_some() { "on" } else { "off" },
        auth = ?config.auth,
        faults = ?config.faults,
        workers = config.workers,
        "starting the mock ADT"
    );
    let mock = server::start(config)?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {}", mock.url).context("writing the listening line to stdout")?;
        stdout.flush().context("flushing stdout")?;
    }
    wait_for_termination()?;
    tracing::info!("stopping the mock ADT");
    mock.stop();
    Ok(())
}

/// Blocks until SIGTERM or SIGINT (Ctrl-C).
fn wait_for_termination() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal-handling runtime")?;
    runtime.block_on(async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
            tokio::select! {
                _ = terminate.recv() => {}
                result = tokio::signal::ctrl_c() => result.context("listening for SIGINT")?,
            }
        }
        #[cfg(not(unix))]
        tokio::signal::ctrl_c().await.context("listening for Ctrl-C")?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: MockAdtArgs,
    }

    fn parse(argv: &[&str]) -> Result<MockAdtArgs, clap::Error> {
        Wrapper::try_parse_from(std::iter::once("mock-adt").chain(argv.iter().copied())).map(|w| w.args)
    }

    #[test]
    fn defaults_are_adt_limits_bearer_auth_plain_http_no_faults() {
        let config = parse(&[]).unwrap().to_config().unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:0");
        assert_eq!(config.limits, Some(Limits::adt_default()));
        assert_eq!(config.auth, AuthConfig::AnyBearer);
        assert_eq!(config.tls, TlsMode::Off);
        assert!(!config.faults.injects_per_request_faults());
    }

    #[test]
    fn flags_map_to_the_config() {
        let args = parse(&[
            "--no-auth",
            "--tls-self-signed",
            "--ca-out",
            "/tmp/ca.pem",
            "--limits",
            "adt-2021",
            "--seed",
            "9",
            "--fault-429-rate",
            "0.1",
            "--fault-5xx-rate",
            "0.2",
            "--latency-ms",
            "3",
            "--latency-spike-ms",
            "50",
            "--latency-spike-rate",
            "0.01",
            "--drop-rate",
            "0.05",
            "--query-lag-ms",
            "1000",
            "--new-twin-invisible-ms",
            "200",
            "--workers",
            "3",
        ])
        .unwrap();
        let config = args.to_config().unwrap();
        assert_eq!(config.auth, AuthConfig::Off);
        assert_eq!(config.tls, TlsMode::SelfSigned { ca_out: Some("/tmp/ca.pem".into()) });
        assert_eq!(config.limits.unwrap().create_delete_per_s, 50);
        assert_eq!(config.faults.seed, 9);
        assert_eq!(config.faults.rate_5xx, 0.2);
        assert_eq!(config.faults.latency_spike, Duration::from_millis(50));
        assert_eq!(config.faults.query_index_lag, Duration::from_secs(1));
        assert_eq!(config.faults.new_twin_invisible_for, Duration::from_millis(200));
        assert_eq!(config.workers, 3);
    }

    #[test]
    fn contradictions_and_bad_rates_are_refused() {
        assert!(parse(&["--limits", "adt-2021", "--limits-off"]).is_err());
        assert!(parse(&["--ca-out", "x.pem"]).is_err(), "--ca-out needs --tls-self-signed");
        assert!(parse(&["--tls-cert", "c.pem"]).is_err(), "--tls-cert needs --tls-key");
        let err = parse(&["--drop-rate", "2"]).unwrap_err().to_string();
        assert!(err.contains("--drop-rate") && err.contains("between 0 and 1"), "{err}");
        assert!(parse(&["--limits-off"]).unwrap().to_config().unwrap().limits.is_none());
    }
}
