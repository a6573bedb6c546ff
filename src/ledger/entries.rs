//! The ledger's items in memory, compact enough that a ledger of millions of items costs
//! little beside the run it records: each id is stored once in a string table and named by a
//! `u32` (twin ids, shared by twin keys, relationship sources and targets; relationship and
//! model ids in a second table, where the `hasPart-3` of a million twins is one string), each
//! item is one fixed-size [`Slot`] (the 16-byte content hash, a relationship's target, and the
//! line of the ledger file that records it last), and the index from key to slot is a table of
//! `u32`s. What only the file needs (the ETag) stays in the file: compaction copies each item's
//! last line from it. A `HashMap` of [`ItemKey`] to a hex-string entry cost about 400 bytes an
//! item; a slot and its index cost about 45.
//!
//! The slots live in one `Vec` that only grows (a removed item leaves a tombstone until the
//! next compaction), so growing it moves no item and touches no page twice.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;
use string_interner::backend::StringBackend;
use string_interner::symbol::SymbolU32;
use string_interner::{StringInterner, Symbol};

use super::record::{ContentHash, Entry};
use crate::item::ItemKey;

/// What the ledger holds in memory of one item: enough to tell whether an input item is
/// unchanged, and whether a relationship moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub hash: ContentHash,
    /// A relationship's target.
    pub target: Option<String>,
}

/// "No string" in a slot.
const NONE: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
enum Kind {
    // In `ItemKey`'s order, so compaction writes the same order as before.
    Model,
    Twin,
    Relationship,
    /// A removed item, skipped until the next compaction drops it.
    Removed,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    hash: [u8; 16],
    /// A model id (in `labels`), a twin id or a relationship's source (in `twins`).
    name: u32,
    /// A relationship's id (in `labels`), else [`NONE`].
    label: u32,
    /// A relationship's target (in `twins`), else [`NONE`].
    target: u32,
    /// The line of the ledger file (1 is the header) that records this item last.
    line: u32,
    kind: Kind,
}

/// Every item a ledger records, keyed by [`ItemKey`].
#[derive(Default)]
pub struct Entries {
    twins: Names,
    labels: Names,
    slots: Vec<Slot>,
    /// Slot indexes, found by the hash of their key.
    index: HashTable<u32>,
    live: usize,
}

impl std::fmt::Debug for Entries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entries").field("len", &self.live).finish_non_exhaustive()
    }
}

impl Entries {
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// What is recorded of `key`, if anything.
    pub fn get(&self, key: &ItemKey) -> Option<Recorded> {
        self.find(key).map(|i| {
            let slot = &self.slots[i as usize];
            let target = (slot.target != NONE).then(|| self.twins.name(slot.target).to_string());
            Recorded { hash: ContentHash(slot.hash), target }
        })
    }

    /// The content hash recorded for `key` (no allocation: asked once per input item).
    pub fn hash_of(&self, key: &ItemKey) -> Option<ContentHash> {
        self.find(key).map(|i| ContentHash(self.slots[i as usize].hash))
    }

    /// Records `entry` for `key`, written at `line` of the ledger file; false when it was
    /// recorded so already (nothing to write). An entry with an ETag is always new: the ETag
    /// is the file's alone.
    pub fn insert(&mut self, key: &ItemKey, entry: &Entry, line: u32) -> bool {
        let (kind, name, label) = match key {
            ItemKey::Model { id } => (Kind::Model, self.labels.intern(id), NONE),
            ItemKey::Twin { id } => (Kind::Twin, self.twins.intern(id), NONE),
            ItemKey::Relationship { source, id } => {
                (Kind::Relationship, self.twins.intern(source), self.labels.intern(id))
            }
        };
        let target = match (&entry.target, kind) {
            (Some(t), Kind::Relationship) => self.twins.intern(t),
            _ => NONE,
        };
        let slot = Slot { hash: entry.hash.0, name, label, target, line, kind };
        let found = self.index.find(key_hash(kind, name, label), |&i| self.slots[i as usize].is(kind, name, label));
        match found {
            Some(&i) => {
                let old = &mut self.slots[i as usize];
                if (old.hash, old.target) == (slot.hash, target) && entry.etag.is_none() {
                    return false;
                }
                *old = slot;
            }
            None => {
                let i = u32::try_from(self.slots.len()).unwrap_or(NONE);
                self.slots.push(slot);
                let slots = &self.slots;
                self.index.insert_unique(key_hash(kind, name, label), i, |&j| slots[j as usize].key_hash());
                self.live += 1;
            }
        }
        true
    }

    /// The line of the ledger file that records `key` last.
    pub fn line_of(&self, key: &ItemKey) -> Option<u32> {
        self.find(key).map(|i| self.slots[i as usize].line)
    }

    /// `key` is now recorded at `line` (compaction moved it).
    pub fn move_to(&mut self, key: &ItemKey, line: u32) {
        if let Some(i) = self.find(key) {
            self.slots[i as usize].line = line;
        }
    }

    /// Forgets `key`; false when it was not recorded.
    pub fn remove(&mut self, key: &ItemKey) -> bool {
        let Some((kind, name, label)) = self.lookup(key) else { return false };
        let slots = &self.slots;
        let Ok(found) =
            self.index.find_entry(key_hash(kind, name, label), |&i| slots[i as usize].is(kind, name, label))
        else {
            return false;
        };
        let (i, _) = found.remove();
        self.slots[i as usize].kind = Kind::Removed;
        self.live -= 1;
        true
    }

    /// Every recorded key, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = ItemKey> + '_ {
        self.live_slots().map(|i| self.key_at(i))
    }

    fn live_slots(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.slots.len() as u32).filter(|&i| self.slots[i as usize].kind != Kind::Removed)
    }

    /// The slot kind and names of `key`, when all its strings are known.
    fn lookup(&self, key: &ItemKey) -> Option<(Kind, u32, u32)> {
        Some(match key {
            ItemKey::Model { id } => (Kind::Model, self.labels.find(id)?, NONE),
            ItemKey::Twin { id } => (Kind::Twin, self.twins.find(id)?, NONE),
            ItemKey::Relationship { source, id } => {
                (Kind::Relationship, self.twins.find(source)?, self.labels.find(id)?)
            }
        })
    }

    fn find(&self, key: &ItemKey) -> Option<u32> {
        let (kind, name, label) = self.lookup(key)?;
        self.index.find(key_hash(kind, name, label), |&i| self.slots[i as usize].is(kind, name, label)).copied()
    }

    fn name_of(&self, slot: &Slot) -> &str {
        match slot.kind {
            Kind::Model => self.labels.name(slot.name),
            _ => self.twins.name(slot.name),
        }
    }

    fn key_at(&self, i: u32) -> ItemKey {
        let slot = &self.slots[i as usize];
        let name = self.name_of(slot).to_string();
        match slot.kind {
            Kind::Model => ItemKey::Model { id: name },
            Kind::Relationship => ItemKey::Relationship { source: name, id: self.labels.name(slot.label).to_string() },
            Kind::Twin | Kind::Removed => ItemKey::Twin { id: name },
        }
    }
}

impl Slot {
    fn is(&self, kind: Kind, name: u32, label: u32) -> bool {
        self.kind == kind && self.name == name && self.label == label
    }

    fn key_hash(&self) -> u64 {
        key_hash(self.kind, self.name, self.label)
    }
}

fn key_hash(kind: Kind, name: u32, label: u32) -> u64 {
    FxBuildHasher.hash_one((kind, name, label))
}

/// A table of strings, each stored once in one buffer, named by a dense `u32`.
#[derive(Default)]
struct Names {
    inner: StringInterner<StringBackend<SymbolU32>>,
}

impl Names {
    fn intern(&mut self, s: &str) -> u32 {
        self.inner.get_or_intern(s).to_usize() as u32
    }

    fn find(&self, s: &str) -> Option<u32> {
        self.inner.get(s).map(|sym| sym.to_usize() as u32)
    }

    fn name(&self, idx: u32) -> &str {
        SymbolU32::try_from_usize(idx as usize).and_then(|sym| self.inner.resolve(sym)).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn twin(id: &str) -> ItemKey {
        ItemKey::Twin { id: id.into() }
    }

    fn entry(hash: u8, etag: Option<&str>, target: Option<&str>) -> Entry {
        Entry { hash: ContentHash([hash; 16]), etag: etag.map(Into::into), target: target.map(Into::into) }
    }

    fn recorded(hash: u8, target: Option<&str>) -> Recorded {
        Recorded { hash: ContentHash([hash; 16]), target: target.map(Into::into) }
    }

    #[test]
    fn entries_read_back_with_their_line_and_kind() {
        let mut e = Entries::default();
        let rel = ItemKey::Relationship { source: "a".into(), id: "r".into() };
        assert!(e.insert(&twin("a"), &entry(1, Some("W/\"1\""), None), 2));
        assert!(e.insert(&rel, &entry(3, None, Some("b")), 3));
        assert!(e.insert(&ItemKey::Model { id: "dtmi:a;1".into() }, &entry(4, None, None), 4));
        assert_eq!(e.get(&twin("a")), Some(recorded(1, None)));
        assert_eq!(e.get(&rel), Some(recorded(3, Some("b"))));
        assert_eq!(e.get(&twin("b")), None, "a relationship's target is no twin entry");
        assert_eq!(e.get(&twin("r")), None, "a relationship id is not a twin");
        assert_eq!(e.hash_of(&rel), Some(ContentHash([3; 16])));
        assert_eq!((e.line_of(&twin("a")), e.line_of(&rel)), (Some(2), Some(3)));
        e.move_to(&rel, 9);
        assert_eq!(e.line_of(&rel), Some(9));
        assert_eq!(e.len(), 3);
    }

    #[test]
    fn a_repeated_entry_is_no_change_a_new_one_replaces_and_removed_items_are_gone() {
        let mut e = Entries::default();
        assert!(e.insert(&twin("a"), &entry(1, None, None), 2));
        assert!(!e.insert(&twin("a"), &entry(1, None, None), 3));
        assert_eq!(e.line_of(&twin("a")), Some(2), "no change, no line");
        assert!(e.insert(&twin("a"), &entry(1, Some("W/\"2\""), None), 3), "a new ETag is written");
        assert!(e.insert(&twin("a"), &entry(2, None, None), 4));
        assert_eq!(e.get(&twin("a")), Some(recorded(2, None)));
        assert!(e.insert(&twin("b"), &entry(1, None, None), 5));
        assert!(e.remove(&twin("a")));
        assert!(!e.remove(&twin("a")));
        assert!(!e.remove(&twin("never")));
        assert_eq!(e.get(&twin("a")), None);
        assert_eq!(e.len(), 1);
        assert!(e.insert(&twin("a"), &entry(3, None, None), 6), "a removed item can land again");
        let mut keys: Vec<ItemKey> = e.keys().collect();
        keys.sort();
        assert_eq!(keys, vec![twin("a"), twin("b")]);
    }
}
