//! Plain process-wide counters fed by the same calls as the Prometheus metrics ([`super::catalog`]),
//! always on (a relaxed atomic add each), for what reads them inside the process: the progress
//! bars and the per-second timeline of the run report. Readers take [`snapshot`]s and work with
//! differences, so several runs in one process (tests) do not disturb each other's figures.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use serde::Serialize;

use crate::item::ItemKind;
use crate::limits::LimitClass;

/// Outcomes of an item, in [`Snapshot::items`]' order.
pub const OUTCOMES: [&str; 4] = ["landed", "already_existed", "dead_lettered", "not_attempted"];
/// Status groups of a request, in [`Snapshot::statuses`]' order.
pub const STATUS_GROUPS: [&str; 5] = ["2xx", "429", "4xx", "5xx", "transport"];

const KINDS: usize = ItemKind::ALL.len();
const CLASSES: usize = LimitClass::ALL.len();

struct Tally {
    planned: [AtomicU64; KINDS],
    items: [[AtomicU64; OUTCOMES.len()]; KINDS],
    requests: [AtomicU64; CLASSES],
    statuses: [AtomicU64; STATUS_GROUPS.len()],
    throttled: AtomicU64,
    retries: AtomicU64,
    in_flight: AtomicI64,
    duration_micros: AtomicU64,
    durations: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)] // only used to build the arrays of the static
const ZERO: AtomicU64 = AtomicU64::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const ZERO_ROW: [AtomicU64; OUTCOMES.len()] = [ZERO; OUTCOMES.len()];

static TALLY: Tally = Tally {
    planned: [ZERO; KINDS],
    items: [ZERO_ROW; KINDS],
    requests: [ZERO; CLASSES],
    statuses: [ZERO; STATUS_GROUPS.len()],
    throttled: ZERO,
    retries: ZERO,
    in_flight: AtomicI64::new(0),
    duration_micros: ZERO,
    durations: ZERO,
};

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Snapshot {
    /// Planned items per kind (set by the plan; the latest run's values).
    pub planned: [u64; KINDS],
    /// Items per kind (models, twins, relationships) and outcome ([`OUTCOMES`]).
    pub items: [[u64; OUTCOMES.len()]; KINDS],
    /// Requests per limit class (`LimitClass::ALL` order).
    pub requests: [u64; CLASSES],
    /// Requests per status group ([`STATUS_GROUPS`]).
    pub statuses: [u64; STATUS_GROUPS.len()],
    pub throttled: u64,
    pub retries: u64,
    pub in_flight: i64,
    /// Sum and count of request durations, in microseconds.
    pub duration_micros: u64,
    pub durations: u64,
}

fn kind_index(kind: ItemKind) -> usize {
    ItemKind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

pub fn class_index(class: LimitClass) -> usize {
    LimitClass::ALL.iter().position(|c| *c == class).unwrap_or(0)
}

fn status_group(status: &str) -> usize {
    match status.as_bytes().first() {
        _ if status == "429" => 1,
        Some(b'2') => 0,
        Some(b'4') => 2,
        Some(b'5') => 3,
        _ => 4,
    }
}

pub(super) fn planned(kind: ItemKind, n: u64) {
    TALLY.planned[kind_index(kind)].store(n, Ordering::Relaxed);
}

pub(super) fn item(kind: ItemKind, outcome: &str) {
    let o = OUTCOMES.iter().position(|x| *x == outcome).unwrap_or(2);
    TALLY.items[kind_index(kind)][o].fetch_add(1, Ordering::Relaxed);
}

pub(super) fn request(class: LimitClass, status: &str, throttled: bool) {
    TALLY.requests[class_index(class)].fetch_add(1, Ordering::Relaxed);
    TALLY.statuses[status_group(status)].fetch_add(1, Ordering::Relaxed);
    if throttled {
        TALLY.throttled.fetch_add(1, Ordering::Relaxed);
    }
}

pub(super) fn retry() {
    TALLY.retries.fetch_add(1, Ordering::Relaxed);
}

pub(super) fn in_flight(delta: i64) {
    TALLY.in_flight.fetch_add(delta, Ordering::Relaxed);
}

pub(super) fn duration(d: std::time::Duration) {
    TALLY.duration_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    TALLY.durations.fetch_add(1, Ordering::Relaxed);
}

pub fn snapshot() -> Snapshot {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    Snapshot {
        planned: TALLY.planned.each_ref().map(load),
        items: TALLY.items.each_ref().map(|row| row.each_ref().map(load)),
        requests: TALLY.requests.each_ref().map(load),
        statuses: TALLY.statuses.each_ref().map(load),
        throttled: load(&TALLY.throttled),
        retries: load(&TALLY.retries),
        in_flight: TALLY.in_flight.load(Ordering::Relaxed),
        duration_micros: load(&TALLY.duration_micros),
        durations: load(&TALLY.durations),
    }
}

impl Snapshot {
    /// Items of `kind` that ended (any outcome) since `base`.
    pub fn ended_since(&self, base: &Snapshot, kind: ItemKind) -> u64 {
        let k = kind_index(kind);
        self.items[k].iter().zip(base.items[k].iter()).map(|(a, b)| a.saturating_sub(*b)).sum()
    }

    /// Items of `kind` landed or already there since `base`.
    pub fn done_since(&self, base: &Snapshot, kind: ItemKind) -> u64 {
        let k = kind_index(kind);
        (0..2).map(|o| self.items[k][o].saturating_sub(base.items[k][o])).sum()
    }

    pub fn planned_of(&self, kind: ItemKind) -> u64 {
        self.planned[kind_index(kind)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_fall_in_their_groups() {
        assert_eq!(
            ["200", "201", "429", "404", "412", "500", "503", "timeout", "connection"].map(status_group),
            [0, 0, 1, 2, 2, 3, 3, 4, 4]
        );
    }
}
