//! Everything before the first write: open the inputs, build the plan, ask ADT what it
//! already holds (one `GET /models` listing, a `GET /digitaltwins/{id}` per twin that
//! relationships reference but the input does not hold), resolve the plan against it, and
//! journal what the plan rejected. A failure here is a setup failure: nothing was written.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;

use crate::client::{AdtClient, ClientError};
use crate::config::LoadConfig;
use crate::limiter::Limiter;
use crate::limits::LimitClass;
use crate::plan::{Plan, PlanOptions, Scheduler};

use super::journal::Journal;
use super::supervisor::Supervisor;
use super::LoadError;

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
) -> Result<Prepared, LoadError> {
    let sources = crate::source::open_inputs_with(inputs, &config.blob_inputs())
        .map_err(|e| LoadError::Setup(format!("cannot open the inputs: {e}")))?;

    // Connectivity and auth first: a wrong endpoint or token fails in a second, not after
    // reading a large input.
    let models_in_adt: HashSet<String> = with_retries(config, || async {
        limiter.acquire(LimitClass::Models).await;
        client.list_models().await
    })
    .await
    .map_err(|e| LoadError::Setup(format!("cannot list the instance's models: {e}")))?
    .into_iter()
    .collect();
    tracing::info!("{} models already in the instance", models_in_adt.len());

    let options =
        PlanOptions { limits: config.limits.clone(), model_batch_size: config.model_batch_size, keep_bodies: true };
    let mut plan = Plan::build(crate::source::read_all(sources), &options);

    let external_twins = plan.external_twins();
    let twins_in_adt = find_twins(config, client, limiter, external_twins).await?;
    plan.resolve_external(&models_in_adt, &twins_in_adt);

    for rejected in plan.rejected() {
        let letter = rejected.clone().into();
        let written = if rejected.is_item() { journal.dead_letter(&letter) } else { journal.file_problem(&letter) };
        written.map_err(|e| LoadError::Setup(e.to_string()))?;
    }
    let counts = serde_json::to_value(plan.counts()).unwrap_or_default();
    let makespan = serde_json::to_value(plan.makespan()).unwrap_or_default();
    let t_star_s = makespan.get("t_star_s").and_then(serde_json::Value::as_f64).unwrap_or(0.0);
    Ok(Prepared {
        scheduler: plan.into_scheduler(),
        plan_report: serde_json::json!({ "counts": counts, "makespan": makespan }),
        t_star_s,
    })
}

/// Which of the twins exist in ADT (GETs in parallel, as many as there are writers).
async fn find_twins(
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

/// Runs a setup call, retrying throttles and transient failures within the retry policy's
/// attempt limit (waiting the larger of Retry-After and the backoff).
async fn with_retries<T, F, Fut>(config: &LoadConfig, mut call: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut backoff = Supervisor::new(config.retry.clone());
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && attempt < config.retry.max_attempts => {
                let wait = backoff.backoff(attempt).max(e.retry_after().unwrap_or_default());
                tracing::warn!("{e}; retrying in {:.1} s", wait.as_secs_f64());
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
