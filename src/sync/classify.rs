//! Sorting the source's items against what ADT holds (ADT's documents read by query, or the
//! ledger's hashes): each item passes on to the plan (to be created), is left alone
//! (unchanged), or becomes [`Work`] for [`super::apply`] (a patch, a replace, a check against
//! ADT); a relationship whose target changed is deleted first and then passes on to be created.

use std::collections::HashSet;

use serde_json::Value;

use crate::item::{Item, ItemKey};
use crate::ledger::{ContentHash, Entry, Ledger};

use super::diff::{self, PatchOp, RelationshipChange, TwinChange};
use super::report::{ChangeCounts, SyncReport};
use super::state::AdtState;

/// A write (or check) the sync makes itself, outside the plan's writers.
#[derive(Debug, Clone)]
pub enum Work {
    /// Send these operations; on success the ledger records the item.
    Patch {
        item: Item,
        ops: Vec<PatchOp>,
    },
    /// The ledger says the content changed: read the document from ADT, then patch what differs.
    Check {
        item: Item,
    },
    /// PUT without `If-None-Match` (a twin whose model changed).
    Replace {
        item: Item,
    },
    DeleteRelationship {
        source: String,
        id: String,
    },
    DeleteTwin {
        id: String,
    },
}

/// What the classification knows and has decided.
pub struct Classifier<'a> {
    /// Compare (sync mode) or only skip what the ledger holds unchanged (resume).
    pub sync: bool,
    pub ledger: Option<&'a mut Ledger>,
    pub adt: Option<&'a AdtState>,
    /// Models the instance holds: a sync does not upload them again (ADT models are immutable).
    pub models_in_adt: &'a HashSet<String>,
    pub report: &'a mut SyncReport,
    /// Twin and relationship keys the source holds (what prune must not delete); `None`
    /// without `--prune`, its only reader (a key per item is hundreds of MB in a large load).
    pub seen: Option<&'a mut HashSet<ItemKey>>,
    /// Deletes that must land before the plan's writes (relationships to re-create).
    pub before: &'a mut Vec<Work>,
    /// Writes after the plan's (patches, replaces, checks).
    pub after: &'a mut Vec<Work>,
}

/// What becomes of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Into the plan (created or, outside sync, written as the mode says).
    Plan,
    /// Left alone or handled by [`Work`].
    Handled,
}

impl Classifier<'_> {
    pub fn classify(&mut self, item: &Item) -> Verdict {
        let key = item.key();
        if let Item::Model(m) = item {
            return if self.sync && self.models_in_adt.contains(&m.id) { Verdict::Handled } else { Verdict::Plan };
        }
        if key.is_unnamed() {
            return Verdict::Plan;
        }
        if let Some(seen) = self.seen.as_mut() {
            seen.insert(key.clone());
        }
        if !self.sync {
            return match &self.ledger {
                Some(l) if l.holds_unchanged(item) => {
                    self.counts(item).unchanged += 1;
                    Verdict::Handled
                }
                _ => Verdict::Plan,
            };
        }
        if let Some(adt) = self.adt {
            return self.against_adt(item, adt);
        }
        let entry = self.ledger.as_ref().and_then(|l| l.get(&key));
        self.against_ledger(item, entry)
    }

    fn counts(&mut self, item: &Item) -> &mut ChangeCounts {
        match item {
            Item::Relationship(_) => &mut self.report.relationships,
            _ => &mut self.report.twins,
        }
    }

    fn unchanged(&mut self, item: &Item) -> Verdict {
        self.counts(item).unchanged += 1;
        if let Some(l) = self.ledger.as_mut() {
            l.landed(item, None);
        }
        Verdict::Handled
    }

    fn create(&mut self, item: &Item) -> Verdict {
        self.counts(item).create += 1;
        Verdict::Plan
    }

    fn against_adt(&mut self, item: &Item, adt: &AdtState) -> Verdict {
        let desired: Value = match serde_json::from_str(item.body().get()) {
            Ok(v) => v,
            // The plan rejects it with its file and line.
            Err(_) => return Verdict::Plan,
        };
        match item {
            Item::Twin(t) => match adt.twins.get(&t.id) {
                None => self.create(item),
                Some(current) => match diff::twin(&current.value(), &desired) {
                    TwinChange::Unchanged => self.unchanged(item),
                    TwinChange::Patch(ops) => {
                        self.report.twins.patch += 1;
                        self.after.push(Work::Patch { item: item.clone(), ops });
                        Verdict::Handled
                    }
                    TwinChange::Replace => {
                        self.report.twins.replace += 1;
                        self.after.push(Work::Replace { item: item.clone() });
                        Verdict::Handled
                    }
                },
            },
            Item::Relationship(r) => match adt.relationships.get(&(r.source.clone(), r.id.clone())) {
                None => self.create(item),
                Some(current) => match diff::relationship(&current.value(), &desired) {
                    RelationshipChange::Unchanged => self.unchanged(item),
                    RelationshipChange::Patch(ops) => {
                        self.report.relationships.patch += 1;
                        self.after.push(Work::Patch { item: item.clone(), ops });
                        Verdict::Handled
                    }
                    RelationshipChange::Recreate => self.recreate(r.source.clone(), r.id.clone()),
                },
            },
            Item::Model(_) => Verdict::Plan,
        }
    }

    fn recreate(&mut self, source: String, id: String) -> Verdict {
        self.report.relationships.recreate += 1;
        self.before.push(Work::DeleteRelationship { source, id });
        Verdict::Plan
    }

    fn against_ledger(&mut self, item: &Item, entry: Option<Entry>) -> Verdict {
        let Some(entry) = entry else { return self.create(item) };
        if entry.hash == ContentHash::of(item) {
            self.counts(item).unchanged += 1;
            return Verdict::Handled;
        }
        if let Item::Relationship(r) = item {
            if entry.target.as_deref() != Some(r.target.as_str()) {
                return self.recreate(r.source.clone(), r.id.clone());
            }
        }
        self.counts(item).check += 1;
        self.after.push(Work::Check { item: item.clone() });
        Verdict::Handled
    }
}
