//! Big first loads through ADT's Import Jobs API (`--mode import-job`, and `--mode auto` when
//! it pays): the planned input (validated and ordered by the planner) becomes one Import-Jobs
//! NDJSON blob in the staging container, ADT loads it server-side (about 1,000,000 twins in 10
//! minutes against at least 100 minutes through the per-item API's 500 creates/s), and the
//! job's log comes back as the run's dead letters, each with its source file and line.
//!
//! - [`choice`]: per-item or import job, and why (the summary's `plan.load_mode`).
//! - [`input`]: the plan as an import file, and the map from its lines back to the items.
//! - [`staging`]: the staging container (upload, read the growing log).
//! - [`job`]: start (one bulk job at a time), poll, follow the log, cancel on SIGTERM, account.
//! - [`log`]: the job's log lines.
//!
//! [`maybe_run`] is the entry from `run::load`. Import jobs have no resume and are not
//! atomic: a cancelled or failed job leaves what it wrote; the dead letters say which items are
//! in doubt. What the job landed is recorded in the ledger (`--ledger`), so a later sync starts
//! from there.

pub mod choice;
pub mod input;
pub mod job;
pub mod log;
pub mod staging;

use std::time::{Duration, Instant};

use crate::client::AdtClient;
use crate::config::{LoadConfig, WriteMode};
use crate::limits::LimitClass;
use crate::run::journal::Journal;
use crate::run::prepare::{self, Prepared};
use crate::run::supervisor::retrier::{CallError, Retrier};
use crate::run::LoadError;
use crate::run::RunEnd;

use choice::{Instance, ModeChoice};
use job::{Following, Started};
use staging::Staging;

/// How long the upload of the job's input may take.
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// What the load does next.
pub enum Run {
    /// The import job ran; the summary is built from its end.
    Done { end: RunEnd, prepared: Prepared },
    /// Write per item, with the coordinator (or, when the run is to stop already, journal every
    /// item as not attempted).
    PerItem { prepared: Prepared, journal: Journal },
}

/// The inputs of one load, for the fallback that plans again.
pub struct LoadParts<'a> {
    pub config: &'a LoadConfig,
    pub inputs: &'a [String],
    pub client: &'a AdtClient,
    pub retrier: &'a Retrier,
}

/// Chooses the way to write, and when it is an import job, runs it. The choice goes into
/// `prepared.plan_report["load_mode"]`. When the run is to stop before the job starts (during
/// the choice, the upload, or the wait for another bulk job), no job is started and every item
/// is journaled as not attempted.
pub async fn maybe_run(
    parts: LoadParts<'_>,
    mut prepared: Prepared,
    mut journal: Journal,
    stage: &mut crate::sync::Stage,
    started: Instant,
) -> Result<Run, LoadError> {
    let LoadParts { config, inputs, client, retrier } = parts;
    let counts = prepared.scheduler.plan().counts();
    let items = counts.models.to_write + counts.twins.to_write + counts.relationships.to_write;
    let choice = choice::choose(config, items, prepared.t_star_s, || instance(client, retrier)).await;
    tracing::info!("writing {}: {}", choice.mode, choice.reason);
    record(&mut prepared, &choice, None);
    if !choice.uses_job() || retrier.shutdown().reason().is_some() {
        return Ok(Run::PerItem { prepared, journal });
    }
    let Some(container) = config.import_job.staging.clone() else {
        return Err(LoadError::Setup("import jobs need --staging <container URL with a SAS>".into()));
    };
    let staging = Staging::new(container, UPLOAD_TIMEOUT, config.ca_cert.as_deref())
        .map_err(|e| LoadError::Setup(e.to_string()))?;
    let job_id = format!("twinload-{}", uuid::Uuid::new_v4());
    let (input_blob, log_blob) = (format!("{job_id}/input.ndjson"), format!("{job_id}/log.ndjson"));

    let input = input::write(&mut prepared.scheduler).map_err(|e| LoadError::Setup(e.to_string()))?;
    tracing::info!(
        "uploading {} lines ({} bytes) to {}",
        input.lines.len(),
        input.ndjson.len(),
        staging.shown(&input_blob)
    );
    let upload = retrier.shutdown().unless_stopped(staging.put(&input_blob, input.ndjson.clone())).await;
    let started_job = match upload {
        Ok(uploaded) => {
            uploaded.map_err(|e| LoadError::Setup(e.to_string()))?;
            let wait = (config.mode == WriteMode::ImportJob).then_some(config.import_job.busy_wait);
            // Plain URLs: ADT reads and writes the blobs with its own identity, and never sees the SAS.
            let (input_url, log_url) = (staging.shown(&input_blob), staging.shown(&log_blob));
            let request =
                job::JobRequest { job_id: &job_id, input_url: &input_url, log_url: &log_url, wait_if_busy: wait };
            job::start(config, client, retrier, request).await.map_err(LoadError::Setup)?
        }
        Err(stop) => {
            tracing::warn!("{stop} while the job's input was uploaded: no import job was started");
            Started::Stopped(stop)
        }
    };
    let stopped = match started_job {
        Started::Busy(why) => {
            // Auto: per-item instead. The scheduler gave its items to the import file, so plan again.
            tracing::warn!("{why}: writing per item instead");
            let mut journal = Journal::create(&config.dead_letter_path).map_err(|e| LoadError::Setup(e.to_string()))?;
            // Plain per-item writes (an import job is only chosen for a first load, never a sync).
            let mut stage = crate::sync::Stage::inert();
            let mut prepared = prepare::prepare(config, inputs, client, retrier, &mut journal, &mut stage).await?;
            let fallback =
                ModeChoice { mode: "per-item", reason: format!("{why}; fell back to per-item writes"), ..choice };
            record(&mut prepared, &fallback, None);
            return Ok(Run::PerItem { prepared, journal });
        }
        // Stopped while waiting for another bulk job: nothing started, every item not attempted.
        Started::Stopped(stop) => Some(stop),
        Started::Running => {
            tracing::info!("import job {job_id} started; its log is {}", staging.shown(&log_blob));
            record(&mut prepared, &choice, Some((&job_id, &staging.shown(&log_blob))));
            None
        }
    };
    let following = Following {
        config,
        client,
        retrier,
        staging: &staging,
        job_id: &job_id,
        log_blob: &log_blob,
        lines: &input.lines,
        ndjson: &input.ndjson,
        scheduler: &prepared.scheduler,
    };
    if let Some(stop) = stopped {
        return Ok(Run::Done { end: job::never_started(following, journal, stop), prepared });
    }
    // What the job lands goes into the ledger (the caller saves it from the run's end).
    journal.attach_ledger(stage.take_ledger());
    let deadline = config.deadline.map(|d| d.saturating_sub(started.elapsed()));
    let end = job::follow(following, journal, deadline).await;
    Ok(Run::Done { end, prepared })
}

/// Whether the instance holds twins (auto's "first load" test).
async fn instance(client: &AdtClient, retrier: &Retrier) -> Instance {
    match retrier.call_ok(LimitClass::Query, || client.count_twins()).await {
        Ok(0) => Instance::Empty,
        Ok(n) => Instance::Holds(n),
        Err(CallError::Stopped(stop)) => Instance::Unknown(stop.reason.to_string()),
        Err(e) => Instance::Unknown(e.to_string()),
    }
}

fn record(prepared: &mut Prepared, choice: &ModeChoice, job: Option<(&str, &str)>) {
    let mut value = serde_json::to_value(choice).unwrap_or_default();
    if let (Some((id, log)), Some(object)) = (job, value.as_object_mut()) {
        object.insert("import_job_id".into(), id.into());
        object.insert("import_job_log".into(), log.into());
    }
    if let Some(report) = prepared.plan_report.as_object_mut() {
        report.insert("load_mode".into(), value);
    }
}
