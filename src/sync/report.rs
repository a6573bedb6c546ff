//! The counts of a sync, shown before anything is sent (the plan) and in the summary: per kind,
//! how many items are created, patched, replaced, deleted and re-created, or left unchanged.

use serde::Serialize;

/// What a sync does with the items of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ChangeCounts {
    pub create: u64,
    pub patch: u64,
    /// Twins whose model changed (PUT without `If-None-Match`).
    pub replace: u64,
    /// Relationships whose target or name changed (delete, then create).
    pub recreate: u64,
    pub delete: u64,
    pub unchanged: u64,
    /// Content changed per the ledger: read from ADT, then patched (or found unchanged).
    pub check: u64,
}

/// The plan of a sync and what it came to.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncReport {
    /// Where the state compared against came from: "ledger", "query", "ledger+query" or "none".
    pub state_from: &'static str,
    pub twins: ChangeCounts,
    pub relationships: ChangeCounts,
    /// Query pages read to learn ADT's state.
    pub query_pages: u64,
    /// GETs of single documents (twins whose ledger hash changed; relationship listings for prune).
    pub reads: u64,
    /// Writes the sync made itself (patches, replaces, deletes), and those that failed.
    pub writes: u64,
    pub failed: u64,
}

impl SyncReport {
    /// One line for a person, e.g. "sync plan (state from ledger): twins 10 create, 95 patch, …".
    pub fn plan_line(&self) -> String {
        let kind = |name: &str, c: &ChangeCounts| {
            format!(
                "{name} {} create / {} patch / {} replace / {} delete / {} unchanged{}",
                c.create,
                c.patch + c.check,
                c.replace + c.recreate,
                c.delete,
                c.unchanged,
                if c.check > 0 { format!(" ({} to check against ADT)", c.check) } else { String::new() }
            )
        };
        format!(
            "sync plan (state from {}): {}; {}",
            self.state_from,
            kind("twins", &self.twins),
            kind("relationships", &self.relationships)
        )
    }
}
