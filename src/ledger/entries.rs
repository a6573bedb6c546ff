//! The ledger's items in memory, compact enough that a ledger of millions of items costs
//! little beside the run it records: each id is stored once in a string table and named by a
//! `u32` (twin ids, shared by twin keys, relationship sources and targets; relationship and
//! model ids in a second table, where the `hasPart-3` of a million twins is one string), each
//! item is one fixed-size [`Slot`] (the 16-byte content hash, the ETag as 16 bytes when it is
//! ADT's `W/"<uuid>"`), and the index from key to slot is a table of `u32`s. A `HashMap` of
//! [`ItemKey`] to [`Entry`] cost about 400 bytes an item; a slot and its index cost about 60.
//!
//! The slots live in one `Vec` that only grows (a removed item leaves a tombstone until the
//! next compaction), so growing it moves no item and touches no page twice.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::{FxBuildHasher, FxHashMap};
use string_interner::backend::StringBackend;
use string_interner::symbol::SymbolU32;
use string_interner::{StringInterner, Symbol};

use super::record::{ContentHash, Entry};
use crate::item::ItemKey;

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

/// How a slot holds its ETag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum EtagForm {
    None,
    /// ADT's weak ETag `W/"<uuid>"` (lower-case), the uuid's 16 bytes in the slot.
    WeakUuid,
    /// Anything else, kept as written in [`Entries::other_etags`].
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    hash: [u8; 16],
    etag: [u8; 16],
    /// A model id (in `labels`), a twin id or a relationship's source (in `twins`).
    name: u32,
    /// A relationship's id (in `labels`), else [`NONE`].
    label: u32,
    /// A relationship's target (in `twins`), else [`NONE`].
    target: u32,
    kind: Kind,
    etag_form: EtagForm,
}

/// Every item a ledger records, keyed by [`ItemKey`].
#[derive(Default)]
pub struct Entries {
    twins: Names,
    labels: Names,
    slots: Vec<Slot>,
    /// Slot indexes, found by the hash of their key.
    index: HashTable<u32>,
    other_etags: FxHashMap<u32, Box<str>>,
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

    /// The entry of `key`, if recorded.
    pub fn get(&self, key: &ItemKey) -> Option<Entry> {
        self.find(key).map(|i| self.entry_at(i))
    }

    /// The content hash recorded for `key` (no allocation: asked once per input item).
    pub fn hash_of(&self, key: &ItemKey) -> Option<ContentHash> {
        self.find(key).map(|i| ContentHash(self.slots[i as usize].hash))
    }

    /// Records `entry` for `key`; false when it was recorded so already.
    pub fn insert(&mut self, key: &ItemKey, entry: &Entry) -> bool {
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
        let (etag_form, etag) = compact_etag(entry.etag.as_deref());
        let slot = Slot { hash: entry.hash.0, etag, name, label, target, kind, etag_form };
        let at = match self.index.find(key_hash(kind, name, label), |&i| self.slots[i as usize].is(kind, name, label)) {
            Some(&i) => {
                let old = &self.slots[i as usize];
                let same_etag =
                    etag_form != EtagForm::Other || self.other_etags.get(&i).map(|e| &**e) == entry.etag.as_deref();
                if (old.hash, old.etag_form, old.etag, old.target) == (slot.hash, etag_form, etag, target) && same_etag
                {
                    return false;
                }
                self.slots[i as usize] = slot;
                i
            }
            None => {
                let i = u32::try_from(self.slots.len()).unwrap_or(NONE);
                self.slots.push(slot);
                let slots = &self.slots;
                self.index.insert_unique(key_hash(kind, name, label), i, |&j| slots[j as usize].key_hash());
                self.live += 1;
                i
            }
        };
        if etag_form == EtagForm::Other {
            self.other_etags.insert(at, entry.etag.clone().unwrap_or_default().into_boxed_str());
        } else {
            self.other_etags.remove(&at);
        }
        true
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
        self.other_etags.remove(&i);
        self.live -= 1;
        true
    }

    /// Every recorded item, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (ItemKey, Entry)> + '_ {
        self.live_slots().map(|i| (self.key_at(i), self.entry_at(i)))
    }

    /// Every recorded key, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = ItemKey> + '_ {
        self.live_slots().map(|i| self.key_at(i))
    }

    /// Every recorded item in [`ItemKey`]'s order (models, twins, relationships; by id), so a
    /// compacted ledger reads the same whatever the order items landed in.
    pub fn sorted(&self) -> impl Iterator<Item = (ItemKey, Entry)> + '_ {
        let mut order: Vec<u32> = self.live_slots().collect();
        order.sort_unstable_by(|&a, &b| {
            let (x, y) = (&self.slots[a as usize], &self.slots[b as usize]);
            x.kind
                .cmp(&y.kind)
                .then_with(|| self.name_of(x).cmp(self.name_of(y)))
                .then_with(|| self.labels.name(x.label).cmp(self.labels.name(y.label)))
        });
        order.into_iter().map(|i| (self.key_at(i), self.entry_at(i)))
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

    fn entry_at(&self, i: u32) -> Entry {
        let slot = &self.slots[i as usize];
        let etag = match slot.etag_form {
            EtagForm::None => None,
            EtagForm::WeakUuid => {
                let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
                Some(format!("W/\"{}\"", uuid::Uuid::from_bytes(slot.etag).hyphenated().encode_lower(&mut buf)))
            }
            EtagForm::Other => self.other_etags.get(&i).map(|e| e.to_string()),
        };
        let target = (slot.target != NONE).then(|| self.twins.name(slot.target).to_string());
        Entry { hash: ContentHash(slot.hash), etag, target }
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

/// ADT's ETags are `W/"<uuid>"`: 16 bytes instead of a 43-byte string. Only an ETag that
/// reads back exactly as written is kept so.
fn compact_etag(etag: Option<&str>) -> (EtagForm, [u8; 16]) {
    let Some(etag) = etag else { return (EtagForm::None, [0; 16]) };
    let uuid = etag.strip_prefix("W/\"").and_then(|rest| rest.strip_suffix('"'));
    match uuid.and_then(|u| uuid::Uuid::try_parse(u).ok().map(|parsed| (u, parsed))) {
        Some((text, parsed)) => {
            let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
            if parsed.hyphenated().encode_lower(&mut buf) == text {
                (EtagForm::WeakUuid, *parsed.as_bytes())
            } else {
                (EtagForm::Other, [0; 16])
            }
        }
        None => (EtagForm::Other, [0; 16]),
    }
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

    #[test]
    fn entries_read_back_as_written_whatever_their_etag() {
        let mut e = Entries::default();
        let rel = ItemKey::Relationship { source: "a".into(), id: "r".into() };
        let uuid_etag = "W/\"0f8fad5b-d9cb-469f-a165-70867728950e\"";
        let upper = "W/\"0F8FAD5B-D9CB-469F-A165-70867728950E\"";
        assert!(e.insert(&twin("a"), &entry(1, Some(uuid_etag), None)));
        assert!(e.insert(&twin("b"), &entry(2, Some(upper), None)));
        assert!(e.insert(&rel, &entry(3, Some("W/\"9\""), Some("b"))));
        assert!(e.insert(&ItemKey::Model { id: "dtmi:a;1".into() }, &entry(4, None, None)));
        assert_eq!(e.get(&twin("a")), Some(entry(1, Some(uuid_etag), None)));
        assert_eq!(
            e.get(&twin("b")),
            Some(entry(2, Some(upper), None)),
            "an ETag that is not lower-case stays as written"
        );
        assert_eq!(e.get(&rel), Some(entry(3, Some("W/\"9\""), Some("b"))));
        assert_eq!(e.get(&twin("r")), None, "a relationship id is not a twin");
        assert_eq!(e.hash_of(&twin("b")), Some(ContentHash([2; 16])));
        assert_eq!(e.len(), 4);
    }

    #[test]
    fn a_repeated_entry_is_no_change_a_new_one_replaces_and_removed_items_are_gone() {
        let mut e = Entries::default();
        assert!(e.insert(&twin("a"), &entry(1, None, None)));
        assert!(!e.insert(&twin("a"), &entry(1, None, None)));
        assert!(e.insert(&twin("a"), &entry(2, Some("x"), None)));
        assert_eq!(e.get(&twin("a")), Some(entry(2, Some("x"), None)));
        assert!(e.insert(&twin("b"), &entry(1, None, None)));
        assert!(e.remove(&twin("a")));
        assert!(!e.remove(&twin("a")));
        assert!(!e.remove(&twin("never")));
        assert_eq!(e.get(&twin("a")), None);
        assert_eq!(e.len(), 1);
        assert!(e.insert(&twin("a"), &entry(3, None, None)), "a removed item can land again");
        let keys: Vec<ItemKey> = e.sorted().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![twin("a"), twin("b")]);
    }

    #[test]
    fn sorted_follows_item_key_order() {
        let mut e = Entries::default();
        let keys = vec![
            ItemKey::Relationship { source: "b".into(), id: "r1".into() },
            twin("z"),
            ItemKey::Relationship { source: "a".into(), id: "r2".into() },
            ItemKey::Model { id: "dtmi:m;1".into() },
            twin("c"),
            ItemKey::Relationship { source: "a".into(), id: "r1".into() },
        ];
        for k in &keys {
            e.insert(k, &entry(0, None, None));
        }
        let mut expected = keys.clone();
        expected.sort();
        assert_eq!(e.sorted().map(|(k, _)| k).collect::<Vec<_>>(), expected);
        assert_eq!(e.keys().count(), keys.len());
    }
}

#[cfg(test)]
mod measure {
    use super::*;

    fn rss_kib() -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    #[ignore]
    fn memory_of_a_million_twins_and_two_million_relationships() {
        let before = rss_kib();
        let mut e = Entries::default();
        for i in 0..1_000_000u32 {
            let etag = format!("W/\"{}\"", uuid::Uuid::new_v4());
            let hash = blake3::hash(&i.to_le_bytes());
            e.insert(
                &ItemKey::Twin { id: format!("vehicle-{i}") },
                &Entry { hash: hash.into(), etag: Some(etag), target: None },
            );
        }
        for i in 0..2_000_000u32 {
            let etag = format!("W/\"{}\"", uuid::Uuid::new_v4());
            let hash = blake3::hash(&(i + 5_000_000).to_le_bytes());
            let key = ItemKey::Relationship { source: format!("vehicle-{}", i / 2), id: format!("hasPart-{}", i % 2) };
            e.insert(
                &key,
                &Entry {
                    hash: hash.into(),
                    etag: Some(etag),
                    target: Some(format!("vehicle-{}", (i * 7) % 1_000_000)),
                },
            );
        }
        let after = rss_kib();
        eprintln!("{} items: {} MiB", e.len(), (after - before) / 1024);
    }
}
