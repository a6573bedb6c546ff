//! What a load shows while it runs and afterwards: the Prometheus metrics.
//!
//! - [`catalog`]: every metric's name, type and labels, and one recording function each; the
//!   loader calls those functions from the few places that see every request, item and retry.
//! - [`labels`]: the Azure Batch pool/job/task labels.
//! - [`listener`]: the `/metrics` HTTP listener (`--metrics-listen`).
//! - [`push`]: the final push to a Pushgateway (`--pushgateway`).
//! - [`sampler`]: once a second, the limiter's gauges and the exporter's upkeep.
//! - [`tally`]: in-process counters fed by the same calls, for progress bars and the timeline.
//! - [`progress`]: progress bars per kind when stderr is a terminal.
//! - [`timeline`]: the per-second timeline next to the summary, for `twinload report`.
//!
//! [`RunObserver`] ties them to one run: started before the run prepares, told when writing
//! starts, finished after the summary is built (final sample, push, linger so the last scrape
//! lands, listener down).

pub mod catalog;
pub mod labels;
pub mod listener;
pub mod progress;
pub mod push;
pub mod sampler;
pub mod tally;
pub mod timeline;

use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::LoadConfig;
use crate::limiter::Limiter;
use crate::limits::Limits;

/// The process-wide recorder (`metrics` allows one), installed on first use.
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("cannot listen for metrics scrapes on {addr}: {source} (choose another --metrics-listen address)")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Push(#[from] push::PushError),
}

/// The recorder's handle, installing the recorder (with the Batch labels on every series) the
/// first time. `None` when another recorder was installed first (then nothing is exported).
pub fn handle() -> Option<&'static PrometheusHandle> {
    if let Some(h) = HANDLE.get() {
        return Some(h);
    }
    let mut builder = PrometheusBuilder::new();
    builder = builder
        .set_buckets_for_metric(Matcher::Full(catalog::REQUEST_DURATION.into()), &catalog::DURATION_BUCKETS)
        .ok()?;
    builder =
        builder.set_buckets_for_metric(Matcher::Full(catalog::RETRY_BACKOFF.into()), &catalog::BACKOFF_BUCKETS).ok()?;
    for (label, value) in labels::batch_labels() {
        builder = builder.add_global_label(label, value);
    }
    let recorder = builder.build_recorder();
    let h = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        return HANDLE.get();
    }
    catalog::describe();
    Some(HANDLE.get_or_init(|| h))
}

/// The metrics side of one run.
pub struct RunObserver {
    handle: Option<&'static PrometheusHandle>,
    listener: Option<listener::Listener>,
    push_url: Option<reqwest::Url>,
    linger: std::time::Duration,
    sampler: Option<tokio::task::JoinHandle<()>>,
    limiter: Arc<Limiter>,
    limits: Limits,
    timeline: Option<timeline::Timeline>,
    bars: Option<progress::Bars>,
}

impl RunObserver {
    /// Starts the listener (printing the bound address on stderr) and the sampler, when
    /// metrics are asked for, and the timeline when there is a summary path. Call inside the
    /// run's actix System.
    pub fn start(load: &LoadConfig, limiter: &Arc<Limiter>) -> Result<RunObserver, ObserveError> {
        let (config, limits) = (&load.metrics, &load.limits);
        let push_url = config.pushgateway.as_deref().map(|u| push::group_url(u, &labels::instance())).transpose()?;
        let wanted = config.listen.is_some() || push_url.is_some();
        let handle = if wanted { handle() } else { None };
        let listener = match (config.listen, handle) {
            (Some(addr), Some(h)) => {
                let l = listener::Listener::start(addr, h.clone())
                    .map_err(|source| ObserveError::Listen { addr, source })?;
                crate::diag!("metrics: serving http://{}/metrics", l.addr());
                Some(l)
            }
            _ => None,
        };
        if handle.is_some() {
            catalog::phase("prepare");
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            catalog::run_started(now.as_secs_f64());
        }
        let sampler = handle.map(|h| sampler::spawn(h.clone(), Arc::clone(limiter), limits.clone()));
        let timeline = load.summary_path.as_deref().and_then(|summary| {
            let path = timeline::path_for(summary);
            timeline::Timeline::start(&path, Arc::clone(limiter), limits.clone())
                .map_err(|e| {
                    tracing::warn!("cannot write the timeline {}: {e}; the report will lack it", path.display())
                })
                .ok()
        });
        Ok(RunObserver {
            handle,
            listener,
            push_url,
            linger: config.linger,
            sampler,
            limiter: Arc::clone(limiter),
            limits: limits.clone(),
            timeline,
            bars: None,
        })
    }

    /// Writing starts (the plan is known): the phase, and the progress bars on a terminal.
    pub fn writing(&mut self) {
        catalog::phase("write");
        self.bars = progress::Bars::start_if_terminal();
    }

    /// The address the listener bound, if any.
    pub fn listen_addr(&self) -> Option<std::net::SocketAddr> {
        self.listener.as_ref().map(|l| l.addr())
    }

    /// Ends the run's metrics: the phase, a last sample, the push (a failure is logged, not
    /// fatal: the load itself is done), then the linger, then the listener stops.
    pub async fn finish(mut self) {
        if let Some(bars) = self.bars.take() {
            bars.finish();
        }
        if let Some(t) = self.timeline.take() {
            t.finish();
        }
        let Some(handle) = self.handle else { return };
        if let Some(s) = self.sampler.take() {
            s.abort();
        }
        catalog::phase("finished");
        sampler::sample(handle, &self.limiter, &self.limits);
        if let Some(url) = &self.push_url {
            match push::push(url, handle.render()).await {
                Ok(()) => tracing::info!("metrics pushed to the Pushgateway"),
                Err(e) => tracing::warn!("{e}"),
            }
        }
        if self.listener.is_some() && !self.linger.is_zero() {
            crate::diag!("metrics: lingering {:.0} s for the last scrape", self.linger.as_secs_f64());
            tokio::time::sleep(self.linger).await;
        }
        self.listener.take();
    }
}

impl Drop for RunObserver {
    fn drop(&mut self) {
        if let Some(s) = self.sampler.take() {
            s.abort();
        }
    }
}
