//! The actors of a load and their entry point.
//!
//! [`load`] (sync; it starts its own actix System, so call it from a plain thread, not from
//! inside an async runtime) prepares the run ([`prepare`]: inputs, plan, what ADT already
//! holds), then starts the [`coordinator`], whose [`writer`]s do the HTTP calls under the
//! shared limiter while the [`supervisor`] owns failure. Every item's end passes through the
//! [`journal`]; [`summary`] reports the run.

pub mod cli;
pub mod coordinator;
pub mod journal;
pub mod prepare;
pub mod summary;
pub mod supervisor;
pub mod writer;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::client::AdtClient;
use crate::config::LoadConfig;
use crate::limiter::Limiter;

use coordinator::{Coordinator, CoordinatorSetup};
use journal::Journal;
use summary::{RunSummary, SummaryInputs};

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
pub fn load(config: LoadConfig, inputs: Vec<String>) -> Result<RunSummary, LoadError> {
    config.validate().map_err(|e| LoadError::Setup(e.to_string()))?;
    let system = actix::System::new();
    system.block_on(load_in_system(config, inputs))
}

async fn load_in_system(config: LoadConfig, inputs: Vec<String>) -> Result<RunSummary, LoadError> {
    let started = Instant::now();
    let signals = supervisor::StopSignals::install();
    let client = AdtClient::new(&config).map_err(|e| LoadError::Setup(e.to_string()))?;
    let limiter = Arc::new(Limiter::new(&config.limits, &config.adaptive));
    let mut observer =
        crate::observe::RunObserver::start(&config, &limiter).map_err(|e| LoadError::Setup(e.to_string()))?;
    let mut journal = Journal::create(&config.dead_letter_path).map_err(|e| LoadError::Setup(e.to_string()))?;
    let mut stage = crate::sync::Stage::open(&config, &inputs, &client, &limiter).await?;
    let prepared = prepare::prepare(&config, &inputs, &client, &limiter, &mut journal, &mut stage).await?;
    // Import Jobs (`--mode import-job`, or `auto` for a big first load): crate::import_job.
    let parts = crate::import_job::LoadParts { config: &config, inputs: &inputs, client: &client, limiter: &limiter };
    let (prepared, mut journal, signals) =
        match crate::import_job::maybe_run(parts, prepared, journal, &mut stage, signals, started).await? {
            crate::import_job::Run::Done { mut end, prepared } => {
                // Only the ledger: an import job is a first load (no patches, no prune).
                stage.put_ledger(end.journal.take_ledger());
                stage.after_writes(&config, &client, &limiter, &mut end.journal, true).await;
                let summary =
                    finish(&config, &end, prepared.plan_report, prepared.t_star_s, &client, &limiter, started, None)
                        .await?;
                observer.finish().await;
                return Ok(summary);
            }
            crate::import_job::Run::PerItem { prepared, journal, signals } => (prepared, journal, signals),
        };
    stage.before_writes(&config, &client, &limiter, &mut journal).await?;
    journal.attach_ledger(stage.take_ledger());

    observer.writing();
    let (done, finished) = oneshot::channel();
    let coordinator = Coordinator::start(CoordinatorSetup {
        scheduler: prepared.scheduler,
        journal,
        limiter: Arc::clone(&limiter),
        client: client.clone(),
        deadline: config.deadline.map(|d| d.saturating_sub(started.elapsed())),
        config: config.clone(),
        done,
    });
    signals.forward_to(coordinator);
    let mut end =
        finished.await.map_err(|_| LoadError::Internal(anyhow::anyhow!("the coordinator ended without reporting")))?;
    stage.put_ledger(end.journal.take_ledger());
    stage.after_writes(&config, &client, &limiter, &mut end.journal, end.stop.is_some()).await;
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

/// The summary of a run that ended (per item or by import job), written where configured.
#[allow(clippy::too_many_arguments)]
async fn finish(
    config: &LoadConfig,
    end: &coordinator::RunEnd,
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
    if let Some(path) = &config.summary_path {
        summary
            .write_json(path)
            .map_err(|e| LoadError::Internal(anyhow::anyhow!("cannot write the summary {}: {e}", path.display())))?;
    }
    // Only a run that reached its end may archive: a stopped one left items unattempted.
    if config.archive.is_some() && matches!(summary.exit_code, crate::cli::exit::OK | crate::cli::exit::DEAD_LETTERS) {
        archive_inputs(config).await;
    }
    Ok(summary)
}

/// Moves the fully landed input blobs to `archive` (see [`crate::azure::archive`]) and says
/// what it did on stderr. A failure leaves blobs in place and does not change the exit code.
async fn archive_inputs(config: &LoadConfig) {
    match crate::azure::archive::after_run(config).await {
        Ok(r) => eprintln!(
            "archive: {} blobs moved, {} kept (dead letters), {} failed, {} files uploaded{}",
            r.archived.len(),
            r.kept_with_dead_letters.len(),
            r.failed.len(),
            r.uploaded.len(),
            r.failed.iter().map(|f| format!("\n  {f}")).collect::<String>()
        ),
        Err(e) => eprintln!("archive: nothing archived: {e}"),
    }
}
