//! What ADT holds, read through the query API: `SELECT * FROM DIGITALTWINS` and
//! `SELECT * FROM RELATIONSHIPS`, paged by `continuationToken`, each page under the limiter's
//! query class, so reading spends the query budget (500/s) and never the write budget. Used
//! when a sync has no ledger, with `--verify`, and for a prune scope stated by model or prefix.
//!
//! ADT's query index lags writes by up to 10 s (ADT-REFERENCE §1.4): a twin created just
//! before may be missing (it is then created with `If-None-Match: *` and counted as already
//! there) and one deleted just before may still show (its delete finds it gone).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::client::{AdtClient, ClientError};
use crate::config::LoadConfig;
use crate::limiter::Limiter;
use crate::limits::LimitClass;
use crate::run::prepare::with_retries;

/// Most pages one query follows (1,000 rows a page: 100 million rows), so a server that hands
/// out tokens forever cannot keep the loader looping.
pub const MAX_QUERY_PAGES: usize = 100_000;

/// Twins by id and relationships by (source, id), as ADT returns them.
#[derive(Debug, Default)]
pub struct AdtState {
    pub twins: HashMap<String, Value>,
    pub relationships: HashMap<(String, String), Value>,
    /// Query pages read (requests spent).
    pub pages: u64,
}

impl AdtState {
    /// A twin's model, if ADT holds the twin.
    pub fn model_of(&self, id: &str) -> Option<&str> {
        self.twins.get(id)?.get("$metadata")?.get("$model")?.as_str()
    }
}

/// Reads every twin and relationship of the instance.
pub async fn read(config: &LoadConfig, client: &AdtClient, limiter: &Arc<Limiter>) -> Result<AdtState, ClientError> {
    let mut state = AdtState::default();
    let page_size = config.limits.query_page_size.max(1);
    for row in query_all(config, client, limiter, "SELECT * FROM DIGITALTWINS", page_size, &mut state.pages).await? {
        if let Some(id) = row.get("$dtId").and_then(Value::as_str) {
            state.twins.insert(id.to_string(), row);
        }
    }
    for row in query_all(config, client, limiter, "SELECT * FROM RELATIONSHIPS", page_size, &mut state.pages).await? {
        let source = row.get("$sourceId").and_then(Value::as_str);
        let id = row.get("$relationshipId").and_then(Value::as_str);
        if let (Some(source), Some(id)) = (source, id) {
            state.relationships.insert((source.to_string(), id.to_string()), row);
        }
    }
    tracing::info!(
        "read ADT's state: {} twins, {} relationships in {} query pages",
        state.twins.len(),
        state.relationships.len(),
        state.pages
    );
    Ok(state)
}

async fn query_all(
    config: &LoadConfig,
    client: &AdtClient,
    limiter: &Arc<Limiter>,
    query: &str,
    page_size: usize,
    pages: &mut u64,
) -> Result<Vec<Value>, ClientError> {
    let mut rows = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_QUERY_PAGES {
        let current = token.clone();
        let page = with_retries(config, || {
            let token = current.clone();
            async move {
                limiter.acquire(LimitClass::Query).await;
                client.query_page(query, token.as_deref(), page_size).await
            }
        })
        .await?;
        *pages += 1;
        rows.extend(page.value);
        match page.continuation_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(rows),
        }
    }
    Err(ClientError::Unexpected {
        url: "/query".into(),
        detail: format!("more than {MAX_QUERY_PAGES} pages for {query}"),
    })
}
