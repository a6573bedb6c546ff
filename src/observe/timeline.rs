//! The run's timeline for the report: once a second, one NDJSON line of what happened in that
//! second (requests by class and status group, throttles, retries, mean latency), the state at
//! its end (in flight, items done per kind, the limiter's rate and the configured limit per
//! class). Written next to the summary as `<summary stem>.timeline.ndjson`; read by
//! `twinload report`. The sampler reads the [`super::tally`] and the limiter, never the actors.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::item::ItemKind;
use crate::limiter::Limiter;
use crate::limits::{LimitClass, Limits};

use super::tally::{self, Snapshot, STATUS_GROUPS};

/// One line per this interval.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// One second of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the run started, at the end of the sample.
    pub t: f64,
    /// Length of the sample in seconds (1, the last one shorter).
    pub dt: f64,
    pub requests_by_class: BTreeMap<String, u64>,
    pub requests_by_status: BTreeMap<String, u64>,
    pub throttled: u64,
    pub retries: u64,
    /// Mean duration of the requests answered in the sample, in seconds (0 when none).
    pub latency_mean_s: f64,
    pub in_flight: i64,
    /// Items landed or already there so far, per kind (plural).
    pub done: BTreeMap<String, u64>,
    /// Items that ended so far, any outcome, per kind.
    pub ended: BTreeMap<String, u64>,
    pub planned: BTreeMap<String, u64>,
    /// The limiter's rate now and the configured limit, per class that saw requests.
    pub rate_per_s: BTreeMap<String, f64>,
    pub limit_per_s: BTreeMap<String, f64>,
}

/// `<dir>/<stem>.timeline.ndjson` for the summary `<dir>/<stem>.json`.
pub fn path_for(summary: &Path) -> PathBuf {
    let stem = summary.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "summary".into());
    summary.with_file_name(format!("{stem}.timeline.ndjson"))
}

/// Reads a timeline file.
pub fn read(path: &Path) -> std::io::Result<Vec<Sample>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
        .collect()
}

/// Builds the sample between two snapshots.
fn sample(
    prev: &Snapshot,
    now: &Snapshot,
    base: &Snapshot,
    t: f64,
    dt: f64,
    limiter: &Limiter,
    limits: &Limits,
) -> Sample {
    let mut s = Sample { t, dt, ..Sample::default() };
    for (i, class) in LimitClass::ALL.iter().enumerate() {
        let n = now.requests[i].saturating_sub(prev.requests[i]);
        if n > 0 {
            s.requests_by_class.insert(class.as_str().into(), n);
        }
        if now.requests[i] > base.requests[i] {
            s.rate_per_s.insert(class.as_str().into(), limiter.current_rate(*class));
            s.limit_per_s.insert(class.as_str().into(), f64::from(limits.rate_of(*class)));
        }
    }
    for (i, group) in STATUS_GROUPS.iter().enumerate() {
        let n = now.statuses[i].saturating_sub(prev.statuses[i]);
        if n > 0 {
            s.requests_by_status.insert((*group).into(), n);
        }
    }
    s.throttled = now.throttled.saturating_sub(prev.throttled);
    s.retries = now.retries.saturating_sub(prev.retries);
    let answered = now.durations.saturating_sub(prev.durations);
    if answered > 0 {
        s.latency_mean_s = now.duration_micros.saturating_sub(prev.duration_micros) as f64 / answered as f64 / 1e6;
    }
    s.in_flight = now.in_flight.max(0);
    for kind in ItemKind::ALL {
        s.done.insert(kind.plural().into(), now.done_since(base, kind));
        s.ended.insert(kind.plural().into(), now.ended_since(base, kind));
        s.planned.insert(kind.plural().into(), now.planned_of(kind));
    }
    s
}

/// The running timeline writer.
pub struct Timeline {
    task: tokio::task::JoinHandle<()>,
    state: Arc<parking_lot::Mutex<State>>,
}

struct State {
    out: Option<BufWriter<File>>,
    started: Instant,
    last_at: Instant,
    base: Snapshot,
    prev: Snapshot,
    limiter: Arc<Limiter>,
    limits: Limits,
}

impl State {
    fn write_sample(&mut self) {
        let now_at = Instant::now();
        let now = tally::snapshot();
        let s = sample(
            &self.prev,
            &now,
            &self.base,
            now_at.duration_since(self.started).as_secs_f64(),
            now_at.duration_since(self.last_at).as_secs_f64(),
            &self.limiter,
            &self.limits,
        );
        self.prev = now;
        self.last_at = now_at;
        let Some(out) = self.out.as_mut() else { return };
        let written = serde_json::to_writer(&mut *out, &s)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
        if let Err(e) = written {
            tracing::warn!("cannot write the timeline: {e}; the report will lack it");
            self.out = None;
        }
    }
}

impl Timeline {
    /// Creates the file and samples every [`INTERVAL`] on the current actix/tokio local set.
    pub fn start(path: &Path, limiter: Arc<Limiter>, limits: Limits) -> std::io::Result<Timeline> {
        let out = BufWriter::new(File::create(path)?);
        let base = tally::snapshot();
        let now = Instant::now();
        let state = Arc::new(parking_lot::Mutex::new(State {
            out: Some(out),
            started: now,
            last_at: now,
            prev: base.clone(),
            base,
            limiter,
            limits,
        }));
        let ticking = Arc::clone(&state);
        let task = actix::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + INTERVAL, INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                ticking.lock().write_sample();
            }
        });
        Ok(Timeline { task, state })
    }

    /// Stops sampling and writes the last (partial) second.
    pub fn finish(self) {
        self.task.abort();
        self.state.lock().write_sample();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_sits_next_to_the_summary() {
        assert_eq!(path_for(Path::new("out/run-1.json")), PathBuf::from("out/run-1.timeline.ndjson"));
        assert_eq!(path_for(Path::new("summary")), PathBuf::from("summary.timeline.ndjson"));
    }
}
