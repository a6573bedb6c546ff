//! What `POST /query` reads: the live graph, or, when `query_index_lag` is set, a view that
//! trails the writes by that lag (ADT's query index lags up to 10 s; GET never lags). Also the
//! result sets kept for `continuationToken` paging.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use dashmap::DashMap;
use parking_lot::Mutex;

use crate::query::{Collection, Query, QueryRow, Select};

use super::error::AdtFailure;
use super::records::{RelationshipRecord, TwinRecord};
use super::Store;

impl QueryRow for TwinRecord {
    fn field(&self, path: &[String]) -> Option<serde_json::Value> {
        TwinRecord::field(self, path)
    }
    fn model(&self) -> Option<&str> {
        Some(&self.model)
    }
}

impl QueryRow for RelationshipRecord {
    fn field(&self, path: &[String]) -> Option<serde_json::Value> {
        RelationshipRecord::field(self, path)
    }
    fn model(&self) -> Option<&str> {
        None
    }
}

/// One page of a query's answer.
#[derive(Debug, Clone)]
pub struct QueryPage {
    /// Each row serialized as JSON.
    pub rows: Vec<Bytes>,
    /// `None` on the last page.
    pub continuation_token: Option<String>,
    /// The `query-charge` header: an estimate (ADT's formula is not published): one unit per
    /// page plus one per 100 rows returned.
    pub charge: f64,
}

/// Logged changes past which a writer folds the old ones into the view itself.
const CATCH_UP_BACKLOG: usize = 4096;

enum Change {
    Twin(String, Option<Arc<TwinRecord>>),
    Relationship(String, String, Option<Arc<RelationshipRecord>>),
}

#[derive(Default)]
struct IndexView {
    twins: BTreeMap<String, Arc<TwinRecord>>,
    relationships: BTreeMap<(String, String), Arc<RelationshipRecord>>,
}

/// The lagging query view: writes are logged (in order, under each twin's entry lock) and
/// applied to the view only once they are older than the lag.
pub(super) struct LaggedIndex {
    lag: Duration,
    log: Mutex<VecDeque<(Instant, Change)>>,
    view: Mutex<IndexView>,
}

impl std::fmt::Debug for LaggedIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaggedIndex").field("lag", &self.lag).finish_non_exhaustive()
    }
}

impl LaggedIndex {
    pub(super) fn new(lag: Duration) -> LaggedIndex {
        LaggedIndex { lag, log: Mutex::new(VecDeque::new()), view: Mutex::new(IndexView::default()) }
    }

    pub(super) fn record_twin(&self, id: &str, twin: Option<Arc<TwinRecord>>) {
        self.record(Change::Twin(id.to_string(), twin));
    }

    pub(super) fn record_relationship(&self, source: &str, id: &str, relationship: Option<Arc<RelationshipRecord>>) {
        self.record(Change::Relationship(source.to_string(), id.to_string(), relationship));
    }

    /// Logs a change. Writers call this under their twin's entry lock, so changes to one twin
    /// are logged in the order they happened. When the log has grown long, the writer also
    /// moves what is old enough into the view (if no one else is), so a load that never queries
    /// does not keep every change it ever made.
    fn record(&self, change: Change) {
        let backlog = {
            let mut log = self.log.lock();
            log.push_back((Instant::now(), change));
            log.len()
        };
        if backlog >= CATCH_UP_BACKLOG {
            if let Some(mut view) = self.view.try_lock() {
                self.catch_up(&mut view);
            }
        }
    }

    /// Applies to the view every logged change older than the lag. The view's lock is held by
    /// the caller, so changes are applied by one thread at a time, in log order.
    fn catch_up(&self, view: &mut IndexView) {
        let mut log = self.log.lock();
        let now = Instant::now();
        while log.front().is_some_and(|(at, _)| now.duration_since(*at) >= self.lag) {
            let Some((_, change)) = log.pop_front() else { break };
            match change {
                Change::Twin(id, Some(twin)) => {
                    view.twins.insert(id, twin);
                }
                Change::Twin(id, None) => {
                    view.twins.remove(&id);
                }
                Change::Relationship(source, id, Some(rel)) => {
                    view.relationships.insert((source, id), rel);
                }
                Change::Relationship(source, id, None) => {
                    view.relationships.remove(&(source, id));
                }
            }
        }
    }

    pub(super) fn clear(&self) {
        let mut view = self.view.lock();
        self.log.lock().clear();
        *view = IndexView::default();
    }

    /// Brings the view up to now − lag and reads it.
    fn with_view<R>(&self, read: impl FnOnce(&IndexView) -> R) -> R {
        let mut view = self.view.lock();
        self.catch_up(&mut view);
        read(&view)
    }
}

struct Cursor {
    rows: Arc<Vec<Bytes>>,
    created: Instant,
}

/// Result sets kept for paging, keyed by a random id; a token is `<id>.<offset>`, so a page
/// can be fetched again (a client retrying after a dropped connection gets the same page).
pub(super) struct QueryCursors {
    ttl: Duration,
    max: usize,
    cursors: DashMap<String, Cursor>,
}

impl std::fmt::Debug for QueryCursors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryCursors").field("open", &self.cursors.len()).finish_non_exhaustive()
    }
}

impl QueryCursors {
    pub(super) fn new(ttl: Duration, max: usize) -> QueryCursors {
        QueryCursors { ttl, max: max.max(1), cursors: DashMap::new() }
    }

    pub(super) fn clear(&self) {
        self.cursors.clear();
    }

    fn open(&self, rows: Arc<Vec<Bytes>>) -> String {
        if self.cursors.len() >= self.max {
            self.cursors.retain(|_, c| c.created.elapsed() < self.ttl);
            while self.cursors.len() >= self.max {
                let oldest = self.cursors.iter().min_by_key(|c| c.created).map(|c| c.key().clone());
                match oldest {
                    Some(key) => {
                        self.cursors.remove(&key);
                    }
                    None => break,
                }
            }
        }
        let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid().simple().to_string();
        self.cursors.insert(id.clone(), Cursor { rows, created: Instant::now() });
        id
    }

    fn get(&self, id: &str) -> Option<Arc<Vec<Bytes>>> {
        let cursor = self.cursors.get(id)?;
        if cursor.created.elapsed() >= self.ttl {
            drop(cursor);
            self.cursors.remove(id);
            return None;
        }
        Some(cursor.rows.clone())
    }
}

impl Store {
    /// Runs a parsed query and returns its first page of at most `page_size` rows.
    pub fn run_query(&self, query: &Query, page_size: usize) -> QueryPage {
        let rows = Arc::new(self.query_rows(query));
        self.page_of(rows, None, 0, page_size)
    }

    /// The page a continuation token points at. 400 `BadRequest` when the token is unknown or
    /// expired.
    pub fn continue_query(&self, token: &str, page_size: usize) -> Result<QueryPage, AdtFailure> {
        let invalid = || {
            AdtFailure::bad_request(format!(
                "The continuation token is not valid or has expired (tokens last {} s). Run the query again.",
                self.inner.options.query_cursor_ttl.as_secs()
            ))
        };
        let (id, offset) = token.split_once('.').ok_or_else(invalid)?;
        let offset: usize = offset.parse().map_err(|_| invalid())?;
        let rows = self.inner.cursors.get(id).ok_or_else(invalid)?;
        if offset > rows.len() {
            return Err(invalid());
        }
        Ok(self.page_of(rows, Some(id.to_string()), offset, page_size))
    }

    fn page_of(&self, rows: Arc<Vec<Bytes>>, cursor: Option<String>, offset: usize, page_size: usize) -> QueryPage {
        let end = offset.saturating_add(page_size.max(1)).min(rows.len());
        let page: Vec<Bytes> = rows[offset..end].to_vec();
        let continuation_token = (end < rows.len()).then(|| {
            let id = cursor.unwrap_or_else(|| self.inner.cursors.open(rows.clone()));
            format!("{id}.{end}")
        });
        let charge = 1.0 + page.len() as f64 / 100.0;
        QueryPage { rows: page, continuation_token, charge }
    }

    /// Every result row, in id order.
    fn query_rows(&self, query: &Query) -> Vec<Bytes> {
        let models = self.models();
        let is_of_model = |model: &str, ancestor: &str, exact: bool| {
            if exact {
                model == ancestor
            } else {
                models.is_of_model(model, ancestor)
            }
        };
        let mut matched: Vec<(String, String, Bytes)> = Vec::new();
        let mut consider_twin = |twin: &TwinRecord| {
            if query.matches(twin, &is_of_model) {
                matched.push((twin.id.clone(), String::new(), twin.json.clone()));
            }
        };
        match (&self.inner.lagged_index, query.collection) {
            (Some(index), Collection::DigitalTwins) => {
                index.with_view(|view| view.twins.values().for_each(|t| consider_twin(t)))
            }
            (None, Collection::DigitalTwins) => self.inner.twins.iter().for_each(|node| consider_twin(&node.twin)),
            (Some(index), Collection::Relationships) => index.with_view(|view| {
                for rel in view.relationships.values() {
                    if query.matches(rel.as_ref(), &is_of_model) {
                        matched.push((rel.source.clone(), rel.id.clone(), rel.json.clone()));
                    }
                }
            }),
            (None, Collection::Relationships) => {
                for node in self.inner.twins.iter() {
                    for rel in node.outgoing.values() {
                        if query.matches(rel.as_ref(), &is_of_model) {
                            matched.push((rel.source.clone(), rel.id.clone(), rel.json.clone()));
                        }
                    }
                }
            }
        }
        match &query.select {
            Select::Count => vec![Bytes::from(format!("{{\"COUNT\":{}}}", matched.len()))],
            Select::All => {
                matched.sort_unstable_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
                matched.into_iter().map(|(_, _, json)| json).collect()
            }
            Select::Alias(alias) => {
                matched.sort_unstable_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
                let key = serde_json::to_string(alias).unwrap_or_else(|_| "\"\"".into());
                matched.into_iter().map(|(_, _, json)| wrap(&key, &json)).collect()
            }
        }
    }
}

/// `{"<alias>": <row>}` without re-serializing the row.
fn wrap(key: &str, json: &Bytes) -> Bytes {
    let mut out = BytesMut::with_capacity(json.len() + key.len() + 3);
    out.put_u8(b'{');
    out.put_slice(key.as_bytes());
    out.put_u8(b':');
    out.put_slice(json);
    out.put_u8(b'}');
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lagging_index_that_is_never_queried_does_not_keep_every_change() {
        let index = LaggedIndex::new(Duration::from_millis(1));
        for round in 0..3 {
            for i in 0..CATCH_UP_BACKLOG {
                index.record_twin(&format!("t{round}-{i}"), None);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let backlog = index.log.lock().len();
        assert!(backlog <= CATCH_UP_BACKLOG, "{backlog} changes still logged: the old ones should be in the view");
    }
}
