//! Counts of the requests the client sent, by limit class and by status, for the summary (and
//! later the Prometheus metrics). Transport failures count under their kind ("timeout",
//! "connection") instead of a status.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::Serialize;

use crate::limits::LimitClass;

#[derive(Debug, Default)]
pub struct RequestStats {
    by_class: [AtomicU64; LimitClass::ALL.len()],
    by_status: Mutex<BTreeMap<String, u64>>,
    throttled: AtomicU64,
}

/// A point-in-time copy of [`RequestStats`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RequestCounts {
    pub requests_total: u64,
    pub requests_by_class: BTreeMap<String, u64>,
    pub requests_by_status: BTreeMap<String, u64>,
    pub throttled_total: u64,
}

fn class_index(class: LimitClass) -> usize {
    LimitClass::ALL.iter().position(|c| *c == class).unwrap_or(0)
}

impl RequestStats {
    /// Records one request: its class, and its status (or transport failure kind).
    pub fn record(&self, class: LimitClass, status: &str, throttled: bool) {
        self.by_class[class_index(class)].fetch_add(1, Ordering::Relaxed);
        *self.by_status.lock().entry(status.to_string()).or_default() += 1;
        crate::observe::catalog::request(class, status, throttled);
        if throttled {
            self.throttled.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> RequestCounts {
        let requests_by_class: BTreeMap<String, u64> = LimitClass::ALL
            .iter()
            .map(|c| (c.as_str().to_string(), self.by_class[class_index(*c)].load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        RequestCounts {
            requests_total: requests_by_class.values().sum(),
            requests_by_class,
            requests_by_status: self.by_status.lock().clone(),
            throttled_total: self.throttled.load(Ordering::Relaxed),
        }
    }
}
