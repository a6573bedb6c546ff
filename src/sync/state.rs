//! What ADT holds, read through the query API: `SELECT * FROM DIGITALTWINS` and
//! `SELECT * FROM RELATIONSHIPS`, paged by `continuationToken`, each page under the limiter's
//! query class, so reading spends the query budget (500/s) and never the write budget. Used
//! when a sync has no ledger, with `--verify`, and for a prune scope stated by model or prefix.
//!
//! ADT's query index lags writes by up to 10 s (ADT-REFERENCE §1.4): a twin created just
//! before may be missing (it is then created with `If-None-Match: *` and counted as already
//! there) and one deleted just before may still show (its delete finds it gone).

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::client::{AdtClient, ClientError};
use crate::config::LoadConfig;
use crate::limits::LimitClass;
use crate::run::supervisor::retrier::{CallError, Retrier};

/// Most pages one query follows (1,000 rows a page: 100 million rows), so a server that hands
/// out tokens forever cannot keep the loader looping.
pub const MAX_QUERY_PAGES: usize = 100_000;

/// A twin or relationship as ADT returned it, kept as its JSON text and parsed again only when an
/// input item is compared with it. A parsed `serde_json::Value` (an ordered map per object, with
/// ADT's per-property metadata) took about ten times the text: 1.18 GiB for 300,000 items.
#[derive(Debug)]
pub struct Held {
    json: Box<RawValue>,
    /// A twin's model (`$metadata.$model`), a relationship's target (`$targetId`): what a prune
    /// scope and the deletes around a pruned twin need without parsing the whole row.
    pub about: Option<Box<str>>,
}

impl Held {
    /// The row as a JSON value (`Null` if ADT sent something that is not JSON, which a page
    /// parser would already have refused).
    pub fn value(&self) -> Value {
        serde_json::from_str(self.json.get()).unwrap_or(Value::Null)
    }
}

/// Twins by id and relationships by (source, id), as ADT returns them.
#[derive(Debug, Default)]
pub struct AdtState {
    pub twins: HashMap<String, Held>,
    pub relationships: HashMap<(String, String), Held>,
    /// Query pages read (requests spent).
    pub pages: u64,
}

impl AdtState {
    /// A twin's model, if ADT holds the twin.
    pub fn model_of(&self, id: &str) -> Option<&str> {
        self.twins.get(id)?.about.as_deref()
    }
}

/// The fields of a row the state indexes by; the rest stays text.
#[derive(Deserialize)]
struct TwinKeys<'a> {
    #[serde(rename = "$dtId", borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "$metadata", default)]
    metadata: Option<TwinMetadata>,
}

#[derive(Deserialize)]
struct TwinMetadata {
    #[serde(rename = "$model")]
    model: Option<String>,
}

#[derive(Deserialize)]
struct RelationshipKeys<'a> {
    #[serde(rename = "$sourceId", borrow)]
    source: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "$relationshipId", borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "$targetId", borrow)]
    target: Option<std::borrow::Cow<'a, str>>,
}

/// Reads every twin and relationship of the instance.
pub async fn read(config: &LoadConfig, client: &AdtClient, retrier: &Retrier) -> Result<AdtState, CallError> {
    let mut state = AdtState::default();
    let page_size = config.limits.query_page_size.max(1);
    let mut twins = |row: Box<RawValue>| {
        // A row without an id is not a twin this state can compare with: skipped, as before.
        let Ok(TwinKeys { id: Some(id), metadata }) = serde_json::from_str::<TwinKeys>(row.get()) else { return };
        let (id, about) = (id.into_owned(), metadata.and_then(|m| m.model).map(String::into_boxed_str));
        state.twins.insert(id, Held { json: row, about });
    };
    query_all(client, retrier, "SELECT * FROM DIGITALTWINS", page_size, &mut state.pages, &mut twins).await?;
    let mut relationships = |row: Box<RawValue>| {
        let Ok(RelationshipKeys { source: Some(source), id: Some(id), target }) =
            serde_json::from_str::<RelationshipKeys>(row.get())
        else {
            return;
        };
        let key = (source.into_owned(), id.into_owned());
        let about = target.map(|t| t.into_owned().into_boxed_str());
        state.relationships.insert(key, Held { json: row, about });
    };
    let query = "SELECT * FROM RELATIONSHIPS";
    query_all(client, retrier, query, page_size, &mut state.pages, &mut relationships).await?;
    tracing::info!(
        "read ADT's state: {} twins, {} relationships in {} query pages",
        state.twins.len(),
        state.relationships.len(),
        state.pages
    );
    Ok(state)
}

async fn query_all(
    client: &AdtClient,
    retrier: &Retrier,
    query: &str,
    page_size: usize,
    pages: &mut u64,
    sink: &mut impl FnMut(Box<RawValue>),
) -> Result<(), CallError> {
    let mut token: Option<String> = None;
    for _ in 0..MAX_QUERY_PAGES {
        let current = token.as_deref();
        let page = retrier.call_ok(LimitClass::Query, || client.query_page(query, current, page_size)).await?;
        *pages += 1;
        page.value.into_iter().for_each(&mut *sink);
        match page.continuation_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(()),
        }
    }
    Err(CallError::Failed(ClientError::Unexpected {
        url: "/query".into(),
        detail: format!("more than {MAX_QUERY_PAGES} pages for {query}"),
    }))
}
