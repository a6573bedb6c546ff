//! Everything before the first write: open the inputs (with the mapping, keeping this task's
//! shard and phase), build the plan, ask ADT what it already holds of what the input references
//! but does not hold (a `GET /models/{id}` per model when few are needed, else one `GET /models`
//! listing; a `GET /digitaltwins/{id}` per twin, waiting a bounded time for twins another task
//! writes), resolve the plan against it, and journal what the plan rejected. A failure here is a
//! setup failure: nothing was written.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use actix::Actor;

use futures::StreamExt;

use crate::client::{AdtClient, ClientError};
use crate::config::{LoadConfig, DEFAULT_TWIN_WAIT_POLL};
use crate::limiter::Limiter;
use crate::limits::LimitClass;
use crate::plan::{Plan, PlanOptions, Scheduler};

use super::ingest::Ingestion;
use super::journal::Journal;
use super::supervisor::FailurePolicy;
use super::LoadError;

/// The model id the connectivity probe asks for (DTMI syntax, so ADT answers 404, not 400).
const CONNECTIVITY_PROBE_MODEL: &str = "dtmi:twinload:connectivityProbe;1";

/// A plan ready to run.
pub struct Prepared {
    pub scheduler: Scheduler,
    /// The planner's counts and makespan, for the summary.
    pub plan_report: serde_json::Value,
    pub t_star_s: f64,
}

pub async fn prepare(
    config: &LoadConfig,
    inputs: &[String],
    client: &AdtClient,
    limiter: &Arc<Limiter>,
    journal: &mut Journal,
    stage: &mut crate::sync::Stage,
) -> Result<Prepared, LoadError> {
    let input_options = input_options(config)?;
    let ingestion = Ingestion::open(inputs, &input_options, config.selection)
        .map_err(|e| LoadError::Setup(format!("cannot open the inputs: {e}")))?
        .start();

    let options =
        PlanOptions { limits: config.limits.clone(), model_batch_size: config.model_batch_size, keep_bodies: true };
    // A sync leaves out the input's models that the instance already holds (and what else is
    // unchanged or written by crate::sync itself), so it needs the instance's models first.
    if stage.is_sync() {
        stage.set_models_in_adt(&list_models(config, client, limiter).await?);
    }
    let mut builder = Plan::builder(&options);
    super::ingest::drain(ingestion.recipient(), |result| {
        if stage.keep(&result) {
            builder.add(result);
        }
    })
    .await;
    let mut plan = builder.finish();

    let models_in_adt = find_models(config, client, limiter, plan.external_models()).await?;
    // Twins the sync stage knows ADT holds (ledger or query) need no GET.
    let (known, external_twins): (Vec<String>, Vec<String>) =
        plan.external_twins().into_iter().partition(|t| stage.known_twin(t));
    let mut twins_in_adt = find_twins(config, client, limiter, external_twins).await?;
    twins_in_adt.extend(known);
    plan.resolve_external(&models_in_adt, &twins_in_adt);

    for rejected in plan.rejected() {
        let letter = rejected.clone().into();
        let written = if rejected.is_item() { journal.dead_letter(&letter) } else { journal.file_problem(&letter) };
        written.map_err(|e| LoadError::Setup(e.to_string()))?;
    }
    let counts = serde_json::to_value(plan.counts()).unwrap_or_default();
    crate::observe::catalog::planned(&plan.counts());
    let makespan = serde_json::to_value(plan.makespan()).unwrap_or_default();
    let t_star_s = makespan.get("t_star_s").and_then(serde_json::Value::as_f64).unwrap_or(0.0);
    Ok(Prepared {
        scheduler: plan.into_scheduler(),
        plan_report: serde_json::json!({ "counts": counts, "makespan": makespan }),
        t_star_s,
    })
}

/// The mapping file read, and the configured model.
fn input_options(config: &LoadConfig) -> Result<crate::source::InputOptions, LoadError> {
    let mapping = match &config.mapping {
        Some(path) => {
            Some(Arc::new(crate::source::mapping::Mapping::load(path).map_err(|e| LoadError::Setup(e.to_string()))?))
        }
        None => None,
    };
    Ok(crate::source::InputOptions { mapping, model: config.model.clone(), blobs: config.blob_inputs() })
}

/// Every model the instance holds (one paged listing).
async fn list_models(
    config: &LoadConfig,
    client: &AdtClient,
    limiter: &Arc<Limiter>,
) -> Result<HashSet<String>, LoadError> {
    let listed: HashSet<String> = with_retries(config, || async {
        limiter.acquire(LimitClass::Models).await;
        client.list_models().await
    })
    .await
    .map_err(|e| LoadError::Setup(format!("cannot list the instance's models: {e}")))?
    .into_iter()
    .collect();
    tracing::info!("{} models already in the instance", listed.len());
    Ok(listed)
}

/// Which of the models the input needs (and does not hold) ADT has: a GET per model when at
/// most `model_check_max` are needed, else one listing of the instance's models.
async fn find_models(
    config: &LoadConfig,
    client: &AdtClient,
    limiter: &Arc<Limiter>,
    needed: Vec<String>,
) -> Result<HashSet<String>, LoadError> {
    if needed.is_empty() {
        // Nothing to check, but a wrong endpoint or token should fail here, as a setup failure,
        // not in the writes: one GET of a model id no instance holds (a 404 is the answer).
        with_retries(config, || async {
            limiter.acquire(LimitClass::Models).await;
            client.model_exists(CONNECTIVITY_PROBE_MODEL).await
        })
        .await
        .map_err(|e| LoadError::Setup(format!("cannot reach the instance: {e}")))?;
        return Ok(HashSet::new());
    }
    if needed.len() > config.model_check_max {
        return list_models(config, client, limiter).await;
    }
    let mut found = HashSet::new();
    for id in needed {
        let exists = with_retries(config, || async {
            limiter.acquire(LimitClass::Models).await;
            client.model_exists(&id).await
        })
        .await
        .map_err(|e| LoadError::Setup(format!("cannot check whether model {id} is in the instance: {e}")))?;
        if exists {
            found.insert(id);
        }
    }
    Ok(found)
}

/// Which of the twins exist in ADT. When this task is a shard or a phase, a twin still missing
/// may be another task's to write:
/// - with `--phase relationships` the twins come from an earlier phase: they are looked for again
///   every [`DEFAULT_TWIN_WAIT_POLL`] until `twin_wait` has passed;
/// - with every phase in one task, other shards write their twins at the same time as this one,
///   so waiting here would hold back this task's own twins (and theirs, waiting on ours): a
///   twin another shard owns counts as coming, and its relationships are retried while ADT says
///   it is not there, within `retry.target_grace_s`, then dead-lettered.
async fn find_twins(
    config: &LoadConfig,
    client: &AdtClient,
    limiter: &Arc<Limiter>,
    twins: Vec<String>,
) -> Result<HashSet<String>, LoadError> {
    let mut found = check_twins(config, client, limiter, twins.clone()).await?;
    if config.selection.is_everything() {
        return Ok(found);
    }
    let mut missing: Vec<String> = twins.into_iter().filter(|t| !found.contains(t)).collect();
    if let (Some(shard), crate::source::select::Phase::All) = (config.selection.shard, config.selection.phase) {
        found.extend(missing.into_iter().filter(|t| !shard.owns_twin(t)));
        return Ok(found);
    }
    let waited = std::time::Instant::now();
    while !missing.is_empty() && waited.elapsed() < config.twin_wait {
        tracing::info!(
            "waiting for {} twins other tasks write ({:.0} s of {:.0} s)",
            missing.len(),
            waited.elapsed().as_secs_f64(),
            config.twin_wait.as_secs_f64()
        );
        tokio::time::sleep(DEFAULT_TWIN_WAIT_POLL.min(config.twin_wait.saturating_sub(waited.elapsed()))).await;
        let now = check_twins(config, client, limiter, missing.clone()).await?;
        missing.retain(|t| !now.contains(t));
        found.extend(now);
    }
    Ok(found)
}

/// Which of the twins exist in ADT (GETs in parallel, as many as there are writers).
async fn check_twins(
    config: &LoadConfig,
    client: &AdtClient,
    limiter: &Arc<Limiter>,
    twins: Vec<String>,
) -> Result<HashSet<String>, LoadError> {
    if !twins.is_empty() {
        tracing::info!("checking {} twins that relationships reference but the input does not hold", twins.len());
    }
    let results: Vec<Result<(String, bool), ClientError>> = futures::stream::iter(twins)
        .map(|id| async move {
            let exists = with_retries(config, || async {
                limiter.acquire(LimitClass::Read).await;
                client.twin_exists(&id).await
            })
            .await?;
            Ok((id, exists))
        })
        .buffer_unordered(config.writers.max(1))
        .collect()
        .await;
    let mut found = HashSet::new();
    for result in results {
        let (id, exists) =
            result.map_err(|e| LoadError::Setup(format!("cannot check whether a referenced twin exists: {e}")))?;
        if exists {
            found.insert(id);
        }
    }
    Ok(found)
}

/// Runs a setup call, retrying transient failures within the retry policy's attempt limit
/// (waiting the larger of Retry-After and the backoff). Throttles do not use attempts: they
/// wait (Retry-After capped by `max_server_wait`, else the backoff) for as long as the
/// no-progress timeout allows. What waiting cannot heal (an untrusted certificate, a name that
/// does not resolve) fails at once.
pub(crate) async fn with_retries<T, F, Fut>(config: &LoadConfig, mut call: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut backoff = FailurePolicy::new(config.retry.clone());
    let mut failures = 0;
    let mut throttles = 0;
    let started = tokio::time::Instant::now();
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_throttle() && started.elapsed() < config.no_progress_timeout => {
                throttles += 1;
                let steps = throttles.min(super::supervisor::policy::THROTTLE_BACKOFF_STEPS);
                let wait = backoff.backoff(steps).max(backoff.server_wait(e.retry_after().unwrap_or_default()));
                tracing::info!("{e}; waiting {:.1} s", wait.as_secs_f64());
                tokio::time::sleep(wait).await;
            }
            Err(e) if e.is_retryable() && !e.is_throttle() && failures + 1 < config.retry.max_attempts => {
                failures += 1;
                let wait = backoff.backoff(failures).max(backoff.server_wait(e.retry_after().unwrap_or_default()));
                tracing::warn!("{e}; retrying in {:.1} s", wait.as_secs_f64());
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
    }
}
