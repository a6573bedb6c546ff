//! The mock ADT's in-memory graph: models, twins (with weak ETags and per-property update
//! times) and relationships (outgoing per source, plus an incoming index per target).
//!
//! Concurrency: twins live in a sharded `DashMap` keyed by twin id, each entry holding the
//! twin, its outgoing relationships and its incoming index (`records::TwinNode`). No operation
//! holds two entries at once, so there is no lock ordering to get wrong and no global lock on
//! the hot path. Models are a copy-on-write snapshot (`models::ModelRegistry`).
//!
//! Eventual consistency (`StoreOptions`): queries can see writes only after
//! `query_index_lag` (ADT's index lags up to 10 s; GET never lags), and a twin created less
//! than `new_twin_invisible_for` ago is not seen by relationship writes.
//!
//! The store counts `order_violations_total`: writes refused because something they depend on
//! was genuinely missing (a twin before its model, a relationship before its source or target, a
//! model before a model it references), not the eventual-consistency refusals. A correct
//! loader keeps it at 0.

mod components;
pub mod error;
mod export;
pub mod models;
pub mod patch;
mod query_index;
pub mod records;
mod relationships;
mod twins;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use serde_json::Value;

use crate::limits::Limits;

pub use error::AdtFailure;
pub use models::{ModelEntry, ModelSet};
pub use query_index::QueryPage;
pub use records::{RelationshipRecord, TwinRecord};
pub use relationships::{IncomingRelationship, RelationshipPut, RelationshipUpdate};
pub use twins::{TwinPut, TwinUpdate};

use query_index::{LaggedIndex, QueryCursors};
use records::TwinNode;

/// How the store deviates from a perfectly consistent one, and the sizes it pages with. The
/// mock's fault switches set the first two; the defaults are a consistent store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreOptions {
    /// Queries reflect a write only this long after it (ADT: up to 10 s). Default 0.
    pub query_index_lag: Duration,
    /// A twin created less than this ago is invisible to relationship writes, which then get
    /// 404 `DigitalTwinNotFound` / `TargetDigitalTwinNotFound`. Default 0.
    pub new_twin_invisible_for: Duration,
    /// Items per page of the relationship and incoming-relationship lists. ADT documents no
    /// value; default 100, like its model pages.
    pub relationships_page_size: usize,
    /// How long a query's continuation token stays valid. Default 10 minutes.
    pub query_cursor_ttl: Duration,
    /// Query result sets kept for paging at once; the oldest go first. Default 1,000.
    pub max_query_cursors: usize,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            query_index_lag: Duration::ZERO,
            new_twin_invisible_for: Duration::ZERO,
            relationships_page_size: 100,
            query_cursor_ttl: Duration::from_secs(600),
            max_query_cursors: 1000,
        }
    }
}

/// Shards of the twin map: more shards, less contention between writers on 2+ cores.
const TWIN_MAP_SHARDS: usize = 64;

/// The mock's graph. Cheap to clone (one `Arc`); all clones share the same data.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limits: Limits,
    options: StoreOptions,
    models: models::ModelRegistry,
    twins: DashMap<String, TwinNode>,
    twin_count: AtomicUsize,
    relationship_count: AtomicUsize,
    order_violations: AtomicU64,
    /// Source of `RelationshipRecord::mark`.
    next_mark: AtomicU64,
    /// Present when `query_index_lag` > 0.
    lagged_index: Option<LaggedIndex>,
    cursors: QueryCursors,
}

/// `If-Match` as a request carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    Any,
    Etag(String),
}

impl IfMatch {
    /// Parses the header: `*` or a (weak or strong) quoted ETag. `None` when malformed.
    pub fn parse(header: &str) -> Option<IfMatch> {
        let header = header.trim();
        if header == "*" {
            return Some(IfMatch::Any);
        }
        let opaque = records::etag_opaque(header);
        let well_formed = opaque.len() >= 2 && opaque.starts_with('"') && opaque.ends_with('"');
        well_formed.then(|| IfMatch::Etag(header.to_string()))
    }

    fn check(condition: Option<&IfMatch>, current_etag: &str, what: &str) -> Result<(), AdtFailure> {
        match condition {
            Some(IfMatch::Etag(expected)) if records::etag_opaque(expected) != records::etag_opaque(current_etag) => {
                Err(AdtFailure::stale_etag(what))
            }
            _ => Ok(()),
        }
    }
}

impl Store {
    /// A new, empty store. Functional limits (payload, caps, page sizes) come from `limits`.
    pub fn new(limits: Limits, options: StoreOptions) -> Store {
        let lagged_index =
            (options.query_index_lag > Duration::ZERO).then(|| LaggedIndex::new(options.query_index_lag));
        Store {
            inner: Arc::new(Inner {
                cursors: QueryCursors::new(options.query_cursor_ttl, options.max_query_cursors),
                limits,
                options,
                models: models::ModelRegistry::default(),
                twins: DashMap::with_shard_amount(TWIN_MAP_SHARDS),
                twin_count: AtomicUsize::new(0),
                relationship_count: AtomicUsize::new(0),
                order_violations: AtomicU64::new(0),
                next_mark: AtomicU64::new(1),
                lagged_index,
            }),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    /// Writes refused because a dependency was genuinely missing (see the module doc).
    pub fn order_violations_total(&self) -> u64 {
        self.inner.order_violations.load(Ordering::Relaxed)
    }

    pub fn model_count(&self) -> usize {
        self.inner.models.snapshot().len()
    }

    pub fn twin_count(&self) -> usize {
        self.inner.twin_count.load(Ordering::Relaxed)
    }

    pub fn relationship_count(&self) -> usize {
        self.inner.relationship_count.load(Ordering::Relaxed)
    }

    /// Empties the store (models, twins, relationships, query state) and zeroes its counters.
    pub fn reset(&self) {
        let inner = &self.inner;
        inner.twins.clear();
        inner.models.clear();
        inner.twin_count.store(0, Ordering::Relaxed);
        inner.relationship_count.store(0, Ordering::Relaxed);
        inner.order_violations.store(0, Ordering::Relaxed);
        if let Some(index) = &inner.lagged_index {
            index.clear();
        }
        inner.cursors.clear();
    }

    /// The current models.
    pub fn models(&self) -> Arc<ModelSet> {
        self.inner.models.snapshot()
    }

    /// `POST /models`: validates the batch (all or nothing) and adds it.
    pub fn add_models(&self, docs: &[Value]) -> Result<Vec<Arc<ModelEntry>>, AdtFailure> {
        let now = models_timestamp();
        self.inner.models.add_batch(docs, &self.inner.limits, &now).map_err(|refused| {
            if refused.order_violation {
                self.count_order_violation();
            }
            refused.failure
        })
    }

    /// An import job's Models section: as `add_models`, under the job's own limits (an import
    /// job may carry up to 10,000 models, a `POST /models` call 250).
    pub fn import_models(&self, docs: &[Value], limits: &Limits) -> Result<Vec<Arc<ModelEntry>>, AdtFailure> {
        let now = models_timestamp();
        self.inner.models.add_batch(docs, limits, &now).map_err(|refused| {
            if refused.order_violation {
                self.count_order_violation();
            }
            refused.failure
        })
    }

    pub fn model(&self, id: &str) -> Result<Arc<ModelEntry>, AdtFailure> {
        self.models().get(id).cloned().ok_or_else(|| AdtFailure::model_not_found(id))
    }

    pub fn decommission_model(&self, id: &str) -> Result<(), AdtFailure> {
        self.inner.models.decommission(id)
    }

    pub fn delete_model(&self, id: &str) -> Result<(), AdtFailure> {
        self.inner.models.delete(id)
    }

    fn count_order_violation(&self) {
        self.inner.order_violations.fetch_add(1, Ordering::Relaxed);
    }

    fn next_mark(&self) -> u64 {
        self.inner.next_mark.fetch_add(1, Ordering::Relaxed)
    }

    /// True when the twin exists but was created inside the `new_twin_invisible_for` window.
    fn is_invisible(&self, node: &TwinNode) -> bool {
        let window = self.inner.options.new_twin_invisible_for;
        window > Duration::ZERO && node.created_at.elapsed() < window
    }

    /// 413 when a twin or relationship body is over `limits.max_payload_bytes`.
    pub fn check_payload(&self, body: &[u8]) -> Result<(), AdtFailure> {
        let max = self.inner.limits.max_payload_bytes;
        if body.len() > max {
            return Err(AdtFailure::payload_too_large(body.len(), max));
        }
        Ok(())
    }
}

/// Now, as ADT writes `$lastUpdateTime` (RFC 3339, UTC, `Z`).
pub fn timestamp() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// Now, as ADT writes a model's `uploadTime` (`+00:00` rather than `Z`).
fn models_timestamp() -> String {
    let now = timestamp();
    match now.strip_suffix('Z') {
        Some(stem) => format!("{stem}+00:00"),
        None => now,
    }
}

#[cfg(test)]
mod tests;
