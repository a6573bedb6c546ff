//! The actors of a load and their entry point.
//!
//! [`load`] (async, on an actix System the caller runs; it stops when the `shutdown` future it
//! is given resolves, see [`shutdown`]) prepares the run ([`prepare`]: the [`ingest`]ion actor streams the
//! inputs' items to the planner, then what ADT already holds), then starts the actors of the write phase ([`write_all`]): the [`coordinator`]
//! dispatches ready work and settles results, its [`writer`]s do the HTTP calls under the
//! shared limiter, and the [`supervisor`] owns failure (retry timing, class pauses, writer
//! restarts, the deadline and the watchdog). They talk only through [`messages`]. Every
//! item's end passes through the [`journal`]; [`summary`] reports the run.

pub mod cli;
pub mod coordinator;
pub mod ingest;
pub mod journal;
pub mod messages;
pub mod prepare;
pub mod shutdown;
pub mod summary;
pub mod supervisor;
pub mod writer;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::client::AdtClient;
use crate::config::LoadConfig;
use crate::exit::ExitStatus;
use crate::limiter::Limiter;
use crate::plan::Scheduler;

use coordinator::{Coordinator, CoordinatorSetup, SupervisorLink, WriteEnd};
use journal::Journal;
use messages::{Stop, StopReason};
use shutdown::Shutdown;
use summary::{RunSummary, SummaryInputs};
use supervisor::retrier::Retrier;
use supervisor::{RetryStats, RetryTally, Supervisor, SupervisorSetup};
use writer::WriterEnv;

pub use summary::RunSummary as Summary;

/// Why a load could not run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Configuration, inputs, auth or connectivity failed before anything was written
    /// (exit code `SETUP_FAILED`). The message says what to check.
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Runs a whole load and returns its summary (also written to `config.summary_path`). The
/// summary's `exit_code` is what `twinload load` exits with.
///
/// Call it on an actix System (the actors of the write phase run on it; a test can use
/// `actix::System::new().block_on(..)`). `shutdown` resolves when the run is to stop (the CLI
/// hands in SIGTERM/SIGINT; a test, a channel; `std::future::pending()` for never): whatever
/// phase the run is in then (start-up checks, an import job's upload or wait, sync's writes,
/// the write phase) ends within seconds, with a summary (exit code `STOPPED_EARLY`) and every
/// item accounted for (what was not sent is dead-lettered as not attempted).
pub async fn load(
    config: LoadConfig,
    inputs: Vec<String>,
    shutdown: impl Future<Output = StopReason> + 'static,
) -> Result<RunSummary, LoadError> {
    config.validate().map_err(|e| LoadError::Setup(e.to_string()))?;
    load_until(config, inputs, Shutdown::listen(shutdown)).await
}

async fn load_until(config: LoadConfig, inputs: Vec<String>, shutdown: Shutdown) -> Result<RunSummary, LoadError> {
    let started = Instant::now();
    let client = AdtClient::new(&config).map_err(|e| LoadError::Setup(e.to_string()))?;
    let limiter = Arc::new(Limiter::new(&config.limits, &config.adaptive));
    let retrier = Retrier::for_run(&config, &limiter, shutdown.clone());
    let mut observer =
        crate::observe::RunObserver::start(&config, &limiter).map_err(|e| LoadError::Setup(e.to_string()))?;
    let mut journal = Journal::create(&config.dead_letter_path).map_err(|e| LoadError::Setup(e.to_string()))?;
    let mut stage = crate::sync::Stage::open(&config, &inputs, &client, &retrier).await?;
    let prepared = prepare::prepare(&config, &inputs, &client, &retrier, &mut journal, &mut stage).await?;
    // Import Jobs (`--mode import-job`, or `auto` for a big first load): crate::import_job.
    let parts = crate::import_job::LoadParts { config: &config, inputs: &inputs, client: &client, retrier: &retrier };
    let (prepared, mut journal) =
        match crate::import_job::maybe_run(parts, prepared, journal, &mut stage, started).await? {
            crate::import_job::Run::Done { mut end, prepared } => {
                // Only the ledger: an import job is a first load (no patches, no prune).
                stage.put_ledger(end.journal.take_ledger());
                stage.save_ledger();
                let summary =
                    finish(&config, &end, prepared.plan_report, prepared.t_star_s, &client, &limiter, started, None)
                        .await?;
                observer.finish().await;
                return Ok(summary);
            }
            crate::import_job::Run::PerItem { prepared, journal } => (prepared, journal),
        };
    stage.before_writes(&config, &client, &retrier, &mut journal).await?;
    journal.attach_ledger(stage.take_ledger());

    observer.writing();
    let deadline = config.deadline.map(|d| d.saturating_sub(started.elapsed()));
    let parts = WriteParts { config: &config, client: &client, limiter: &limiter };
    let mut end = match shutdown.reason() {
        // Stopped before the first write (start-up checks, sync's deletes before the writes).
        Some(reason) => stopped_before_writing(prepared.scheduler, journal, reason),
        None => write_all(parts, prepared.scheduler, journal, shutdown, deadline).await?,
    };
    stage.put_ledger(end.journal.take_ledger());
    let left_by = stage.after_writes(&config, &client, &retrier, &mut end.journal, end.stop.clone()).await;
    // A stop during sync's own writes (after the write phase) stops the run early too.
    end.stop = end.stop.or(left_by);
    let summary = finish(
        &config,
        &end,
        prepared.plan_report,
        prepared.t_star_s,
        &client,
        &limiter,
        started,
        stage.report().cloned(),
    )
    .await?;
    observer.finish().await;
    Ok(summary)
}

/// What the write phase ended with: the coordinator's [`WriteEnd`] and the supervisor's retry
/// tally (an import job has no retries of ours).
pub struct RunEnd {
    pub journal: Journal,
    pub retries: RetryStats,
    pub stop: Option<StopReason>,
    /// From the first write handed out to the last report.
    pub write_elapsed: Duration,
    /// The first error writing the dead-letter file, if any (the run goes on without it).
    pub journal_error: Option<String>,
}

/// What the write phase shares with the rest of the run.
struct WriteParts<'a> {
    config: &'a LoadConfig,
    client: &'a AdtClient,
    limiter: &'a Arc<Limiter>,
}

/// The end of a run stopped before its first write: every planned item is journaled as not
/// attempted.
fn stopped_before_writing(mut scheduler: Scheduler, mut journal: Journal, reason: StopReason) -> RunEnd {
    tracing::warn!("{reason} before the first write: nothing was written");
    let text = format!("not sent: {reason}. Load it again");
    let mut journal_error = None;
    scheduler.drain_unattempted_into(&text, |rejected| {
        if let Err(e) = journal.dead_letter(&rejected.into()) {
            journal_error.get_or_insert_with(|| {
                tracing::error!("{e}");
                e.to_string()
            });
        }
    });
    RunEnd { journal, retries: RetryStats::default(), stop: Some(reason), write_elapsed: Duration::ZERO, journal_error }
}

/// Starts the actors of the write phase, wired to each other by [`actix::Recipient`]s, and
/// waits for the coordinator to finish. `deadline`: time left of the run's deadline; on
/// `shutdown` the coordinator stops cleanly.
async fn write_all(
    parts: WriteParts<'_>,
    scheduler: Scheduler,
    journal: Journal,
    shutdown: Shutdown,
    deadline: Option<Duration>,
) -> Result<RunEnd, LoadError> {
    let WriteParts { config, client, limiter } = parts;
    // The coordinator's address exists before it runs, so the supervisor and the writers can
    // be given its recipients and it theirs.
    let coordinator_ctx = Context::<Coordinator>::new();
    let coordinator = coordinator_ctx.address();
    let supervisor = Supervisor::new(SupervisorSetup {
        policy: config.retry.clone(),
        limiter: Arc::clone(limiter),
        orders: coordinator.clone().recipient(),
        stop: coordinator.clone().recipient(),
        deadline,
        no_progress_timeout: config.no_progress_timeout,
    })
    .start();
    let env = WriterEnv {
        client: client.clone(),
        limiter: Arc::clone(limiter),
        mode: config.mode,
        finished: coordinator.clone().recipient(),
        restarted: supervisor.clone().recipient(),
        crash_every: config.chaos.writer_crash_every,
        panic_every: config.chaos.writer_panic_every,
        sent: Default::default(),
    };
    let writers = supervisor::start_writers(config.writers, &env).into_iter().map(Addr::recipient).collect();
    let (done, finished) = oneshot::channel();
    coordinator_ctx.run(Coordinator::new(CoordinatorSetup {
        scheduler,
        journal,
        limiter: Arc::clone(limiter),
        request_stats: Arc::clone(client.stats()),
        writers,
        supervisor: SupervisorLink {
            failed: supervisor.clone().recipient(),
            progress: supervisor.clone().recipient(),
            stopping: supervisor.clone().recipient(),
        },
        shutdown_grace: config.shutdown_grace,
        done,
    }));
    let stop = coordinator.recipient();
    actix::spawn(async move {
        let reason = shutdown.stopped().await;
        tracing::warn!("{reason}: no new work is handed out; in-flight requests finish, then the summary is written");
        stop.do_send(Stop(reason));
    });
    let end: WriteEnd =
        finished.await.map_err(|_| LoadError::Internal(anyhow::anyhow!("the coordinator ended without reporting")))?;
    let retries = supervisor.send(RetryTally).await.unwrap_or_default();
    Ok(RunEnd {
        journal: end.journal,
        retries,
        stop: end.stop,
        write_elapsed: end.write_elapsed,
        journal_error: end.journal_error,
    })
}

/// The summary of a run that ended (per item or by import job), written where configured.
#[allow(clippy::too_many_arguments)]
async fn finish(
    config: &LoadConfig,
    end: &RunEnd,
    plan: serde_json::Value,
    t_star_s: f64,
    client: &AdtClient,
    limiter: &Limiter,
    started: Instant,
    sync: Option<crate::sync::report::SyncReport>,
) -> Result<RunSummary, LoadError> {
    let mut summary = RunSummary::build(
        end,
        SummaryInputs {
            requests: client.stats().snapshot(),
            limiter: limiter.stats(),
            plan,
            t_star_s,
            elapsed: started.elapsed(),
        },
    );
    summary.sync = sync;
    // A file the run must leave that could not be written is the run's error, not a bug of
    // ours: its own exit code, and the summary still goes to stderr and outputs.json.
    if summary.journal_error.is_some() {
        summary.exit_code = summary.exit_code.with_output_failure();
    }
    if let Some(path) = &config.summary_path {
        if let Err(e) = summary.write_json(path) {
            summary.exit_code = summary.exit_code.with_output_failure();
            summary.output_error = Some(format!(
                "cannot write the summary {}: {e}; it is printed here instead: check the path and the free space",
                path.display()
            ));
        }
    }
    // Only a run that reached its end may archive: a stopped one left items unattempted.
    if config.archive.is_some() && matches!(summary.exit_code, ExitStatus::Ok | ExitStatus::DeadLetters) {
        archive_inputs(config).await;
    }
    Ok(summary)
}

/// Moves the fully landed input blobs to `archive` (see [`crate::azure::archive`]) and says
/// what it did on stderr. A failure leaves blobs in place and does not change the exit code.
async fn archive_inputs(config: &LoadConfig) {
    match crate::azure::archive::after_run(config).await {
        Ok(r) => crate::diag!(
            "archive: {} blobs moved, {} kept (dead letters), {} failed, {} files uploaded{}",
            r.archived.len(),
            r.kept_with_dead_letters.len(),
            r.failed.len(),
            r.uploaded.len(),
            r.failed.iter().map(|f| format!("\n  {f}")).collect::<String>()
        ),
        Err(e) => crate::diag!("archive: nothing archived: {e}"),
    }
}
