//! Once a second during a run: copies the limiter's per-class rates into their gauges, and
//! runs the exporter's upkeep (it drains histogram samples; the crate leaves scheduling it to
//! whoever installed the recorder). A task of its own that only reads, so it never touches
//! the actors.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::limiter::Limiter;
use crate::limits::{LimitClass, Limits};

use super::catalog;

/// How often the sampler runs.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// One sample: the limiter's gauges and the exporter's upkeep.
pub fn sample(handle: &PrometheusHandle, limiter: &Limiter, limits: &Limits) {
    for class in LimitClass::ALL {
        catalog::limiter_class(class, limiter.current_rate(class), f64::from(limits.rate_of(class)));
    }
    handle.run_upkeep();
}

/// Samples every [`SAMPLE_INTERVAL`] until the returned handle is aborted (on the current
/// actix/tokio local set).
pub fn spawn(handle: PrometheusHandle, limiter: Arc<Limiter>, limits: Limits) -> tokio::task::JoinHandle<()> {
    actix::spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            sample(&handle, &limiter, &limits);
        }
    })
}
