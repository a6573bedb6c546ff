//! STUB (mock-ops), to be REPLACED by mock-api's `src/mock/store/` on merge: when merging, keep
//! mock-api's files and drop this one. It only has the API the server and the inspection
//! routes use (`Store::new`, `StoreOptions`, counts, export, reset) and stores nothing.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use crate::limits::Limits;

/// Eventual-consistency switches (mock-api defines the real one).
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    pub query_index_lag: Duration,
    pub new_twin_invisible_for: Duration,
}

/// STUB: an empty store.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<(Limits, StoreOptions)>,
}

impl Store {
    pub fn new(limits: Limits, options: StoreOptions) -> Store {
        Store { inner: Arc::new((limits, options)) }
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.0
    }

    pub fn export_ndjson(&self, mut w: impl Write) -> std::io::Result<()> {
        writeln!(w, "{{\"Section\": \"Header\"}}")
    }

    pub fn reset(&self) {}

    pub fn model_count(&self) -> usize {
        0
    }

    pub fn twin_count(&self) -> usize {
        0
    }

    pub fn relationship_count(&self) -> usize {
        0
    }

    pub fn order_violations_total(&self) -> u64 {
        0
    }
}
