//! Everything before the first write: open the inputs (with the mapping, keeping this task's
//! shard and phase), build the plan, ask ADT what it already holds of what the input references
//! but does not hold (a `GET /models/{id}` per model when few are needed, else one `GET /models`
//! listing; a `GET /digitaltwins/{id}` per twin, waiting a bounded time for twins another task
//! writes), resolve the plan against it, and journal what the plan rejected. A failure here is a
//! setup failure: nothing was written. Every call goes through the run's
//! [`Retrier`] (the supervisor's retry policy), so it ends when the run is to stop.

use std::collections::HashSet;
use std::sync::Arc;

use actix::Actor;

use futures::StreamExt;

use crate::client::AdtClient;
use crate::config::{LoadConfig, DEFAULT_TWIN_WAIT_POLL};
use crate::limits::LimitClass;
use crate::plan::{Plan, PlanOptions, Scheduler};

use super::ingest::Ingestion;
use super::journal::Journal;
use super::supervisor::retrier::{CallError, Retrier};
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

/// Builds the plan and asks ADT what it holds. When the run is to stop on the way (the
/// [`super::shutdown::Shutdown`] of the retrier came), the inputs are still read into the plan, so that every
/// item is accounted for (the caller journals them as not attempted), and the checks not made
/// count as answered: no item is rejected for a check that did not run.
pub async fn prepare(
    config: &LoadConfig,
    inputs: &[String],
    client: &AdtClient,
    retrier: &Retrier,
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
        match list_models(client, retrier).await {
            Ok(models) => stage.set_models_in_adt(&models),
            Err(Unanswered::Stopped) => {}
            Err(Unanswered::Failed(e)) => return Err(e),
        }
    }
    let mut builder = Plan::builder(&options);
    super::ingest::drain(ingestion.recipient(), |result| {
        if stage.keep(&result) {
            builder.add(result);
        }
    })
    .await;
    let mut plan = builder.finish();

    let (external_models, external_twins) = (plan.external_models(), plan.external_twins());
    match find_externals(config, client, retrier, stage, external_models.clone(), external_twins.clone()).await {
        Ok((models_in_adt, twins_in_adt)) => plan.resolve_external(&models_in_adt, &twins_in_adt),
        Err(Unanswered::Stopped) => {
            plan.resolve_external(&external_models.into_iter().collect(), &external_twins.into_iter().collect())
        }
        Err(Unanswered::Failed(e)) => return Err(e),
    }

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

/// Why a start-up check has no answer.
enum Unanswered {
    /// The run is to stop.
    Stopped,
    Failed(LoadError),
}

/// A failed call as a setup failure that says what was being done.
fn failed(what: impl FnOnce() -> String) -> impl FnOnce(CallError) -> Unanswered {
    move |e| match e {
        CallError::Stopped(_) => Unanswered::Stopped,
        CallError::Failed(e) => Unanswered::Failed(LoadError::Setup(format!("{}: {e}", what()))),
    }
}

/// The models and twins the plan references but does not hold that ADT has.
async fn find_externals(
    config: &LoadConfig,
    client: &AdtClient,
    retrier: &Retrier,
    stage: &crate::sync::Stage,
    models: Vec<String>,
    twins: Vec<String>,
) -> Result<(HashSet<String>, HashSet<String>), Unanswered> {
    let models_in_adt = find_models(config, client, retrier, models).await?;
    // Twins the sync stage knows ADT holds (ledger or query) need no GET.
    let (known, external_twins): (Vec<String>, Vec<String>) = twins.into_iter().partition(|t| stage.known_twin(t));
    let mut twins_in_adt = find_twins(config, client, retrier, external_twins).await?;
    twins_in_adt.extend(known);
    Ok((models_in_adt, twins_in_adt))
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
async fn list_models(client: &AdtClient, retrier: &Retrier) -> Result<HashSet<String>, Unanswered> {
    let listed: HashSet<String> = retrier
        .call_ok(LimitClass::Models, || client.list_models())
        .await
        .map_err(failed(|| "cannot list the instance's models".into()))?
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
    retrier: &Retrier,
    needed: Vec<String>,
) -> Result<HashSet<String>, Unanswered> {
    if needed.is_empty() {
        // Nothing to check, but a wrong endpoint or token should fail here, as a setup failure,
        // not in the writes: one GET of a model id no instance holds (a 404 is the answer).
        retrier
            .call_ok(LimitClass::Models, || client.model_exists(CONNECTIVITY_PROBE_MODEL))
            .await
            .map_err(failed(|| "cannot reach the instance".into()))?;
        return Ok(HashSet::new());
    }
    if needed.len() > config.model_check_max {
        return list_models(client, retrier).await;
    }
    let mut found = HashSet::new();
    for id in needed {
        let exists = retrier
            .call_ok(LimitClass::Models, || client.model_exists(&id))
            .await
            .map_err(failed(|| format!("cannot check whether model {id} is in the instance")))?;
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
    retrier: &Retrier,
    twins: Vec<String>,
) -> Result<HashSet<String>, Unanswered> {
    let mut found = check_twins(config, client, retrier, twins.clone()).await?;
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
        let poll = tokio::time::sleep(DEFAULT_TWIN_WAIT_POLL.min(config.twin_wait.saturating_sub(waited.elapsed())));
        retrier.shutdown().unless_stopped(poll).await.map_err(|_| Unanswered::Stopped)?;
        let now = check_twins(config, client, retrier, missing.clone()).await?;
        missing.retain(|t| !now.contains(t));
        found.extend(now);
    }
    Ok(found)
}

/// Which of the twins exist in ADT (GETs in parallel, as many as there are writers).
async fn check_twins(
    config: &LoadConfig,
    client: &AdtClient,
    retrier: &Retrier,
    twins: Vec<String>,
) -> Result<HashSet<String>, Unanswered> {
    if !twins.is_empty() {
        tracing::info!("checking {} twins that relationships reference but the input does not hold", twins.len());
    }
    let results: Vec<Result<(String, bool), CallError>> = futures::stream::iter(twins)
        .map(|id| async move {
            let exists = retrier.call_ok(LimitClass::Read, || client.twin_exists(&id)).await?;
            Ok((id, exists))
        })
        .buffer_unordered(config.writers.max(1))
        .collect()
        .await;
    let mut found = HashSet::new();
    for result in results {
        let (id, exists) = result.map_err(failed(|| "cannot check whether a referenced twin exists".into()))?;
        if exists {
            found.insert(id);
        }
    }
    Ok(found)
}
