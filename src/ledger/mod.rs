//! The ledger: what this source has landed in this instance, per item (its key, the content
//! hash of what was written, the ETag when ADT returned one, a relationship's target). It lets
//! a scheduled sync send only what changed, lets `--prune` know what this source loaded, and
//! lets a run killed midway resume: the next run skips what the ledger says already landed.
//!
//! - [`record`]: the NDJSON format (a header, then one line per landed or deleted item).
//! - [`entries`]: the items in memory, compact (interned ids, 16-byte hashes and ETags).
//! - [`identity`]: the instance and source a ledger belongs to; any other is refused.
//! - [`holder`]: who holds a ledger: one run at a time writes it; a second is refused.
//! - [`store`]: where the bytes live, behind a trait: a local file (held by an OS lock), or
//! - [`blob_store`]: a blob in Blob Storage (a local copy uploaded whole, atomically; held by a
//!   lease).
//!
//! An item is recorded only after ADT confirmed it, appended as the run goes (handed to the OS
//! at once, so a killed loader loses nothing recorded) and fsynced in batches
//! ([`SYNC_EVERY_RECORDS`], [`SYNC_EVERY`]), so a machine crash loses at most the last batch,
//! whose items are then sent again, which is safe. It never records an item that did not
//! land. Opening and finishing compact the ledger (one line per item) atomically.

pub mod blob_store;
pub mod entries;
pub mod holder;
pub mod identity;
pub mod record;
pub mod store;

use std::time::{Duration, Instant};

use crate::item::{Item, ItemKey};

pub use blob_store::BlobStore;
pub use entries::Entries;
pub use holder::Holder;
pub use identity::Identity;
pub use record::{ContentHash, Entry, Header, Record};
pub use store::{Claim, LedgerStore, LocalStore, StoreError};

use crate::azure::blob_url::{BlobAccess, BlobLocation};

/// Records appended before the ledger is made durable (fsync).
pub const SYNC_EVERY_RECORDS: usize = 512;
/// Longest time a landed item waits to be made durable.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the ledger is not readable: {0}; fix or remove it (a new ledger path starts afresh)")]
    Format(#[from] record::FormatError),
    /// A ledger of another instance or another source.
    #[error("{0}")]
    Foreign(String),
    /// Another run holds the ledger.
    #[error(
        "the ledger {location} is held by another run ({}): a ledger has one writer at a time, so this run stops before reading it. Give each task its own ledger (one per shard, e.g. --ledger ledger-shard-2.ndjson), or run again after that one ends ({ends})",
        holder.as_ref().map_or_else(|| "one that is starting".to_string(), |h| h.to_string())
    )]
    Held { location: String, holder: Option<Holder>, ends: &'static str },
}

/// An open ledger: the entries in memory, the store behind them.
pub struct Ledger {
    store: Box<dyn LedgerStore>,
    identity: Identity,
    entries: Entries,
    unsynced: usize,
    last_sync: Instant,
    /// The first write error: after it the ledger records nothing more (the run goes on; the
    /// next run re-sends what this one could not record).
    failed: Option<String>,
}

impl Ledger {
    /// Opens the ledger at `location` (a local path, or a blob URL reached with a SAS in it or
    /// with `access`'s identity) for `identity`, creating it if absent.
    pub fn open(location: &str, identity: Identity, access: &BlobAccess) -> Result<Ledger, LedgerError> {
        Ledger::open_store(store_at(location, access)?, identity)
    }

    /// Reads the ledger at `location` without writing to it (for a dry run); absent is empty.
    pub fn read_only(location: &str, identity: Identity, access: &BlobAccess) -> Result<Ledger, LedgerError> {
        let mut ledger = Ledger::read(store_at(location, access)?, identity)?;
        // Anything recorded by mistake is never written.
        ledger.failed = Some("opened read-only".into());
        Ok(ledger)
    }

    /// Opens a ledger in any store: takes it for this run alone, reads it, refuses a foreign
    /// one, compacts it.
    pub fn open_store(mut store: Box<dyn LedgerStore>, identity: Identity) -> Result<Ledger, LedgerError> {
        if let Claim::HeldBy(holder) = store.claim(&Holder::this_process())? {
            return Err(LedgerError::Held { location: store.location(), holder, ends: store.when_held() });
        }
        let mut ledger = Ledger::read(store, identity)?;
        ledger.compact()?;
        Ok(ledger)
    }

    fn read(mut store: Box<dyn LedgerStore>, identity: Identity) -> Result<Ledger, LedgerError> {
        let location = store.location();
        let parsed = match store.read()? {
            Some(reader) => record::parse(reader, &location)?,
            None => record::Parsed::default(),
        };
        if let Some(header) = &parsed.header {
            identity.check(header, &location).map_err(LedgerError::Foreign)?;
        }
        if parsed.dropped_torn_tail {
            tracing::warn!("ledger {location}: the last line was cut short by a crash; its item will be sent again");
        }
        Ok(Ledger { store, identity, entries: parsed.entries, unsynced: 0, last_sync: Instant::now(), failed: None })
    }

    pub fn location(&self) -> String {
        self.store.location()
    }

    pub fn get(&self, key: &ItemKey) -> Option<Entry> {
        self.entries.get(key)
    }

    /// Every item recorded, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = (ItemKey, Entry)> + '_ {
        self.entries.iter()
    }

    /// Every key recorded, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = ItemKey> + '_ {
        self.entries.keys()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when the ledger says this exact content of the item landed.
    pub fn holds_unchanged(&self, item: &Item) -> bool {
        self.entries.hash_of(&item.key()) == Some(ContentHash::of(item))
    }

    /// ADT confirmed `item` landed with this content.
    pub fn landed(&mut self, item: &Item, etag: Option<String>) {
        self.put(item.key(), Entry::of(item, etag));
    }

    /// ADT confirmed `key` landed with `entry`.
    pub fn put(&mut self, key: ItemKey, entry: Entry) {
        if self.entries.insert(&key, &entry) {
            self.append(&Record::Put { key, entry });
        }
    }

    /// ADT confirmed `key` is gone.
    pub fn deleted(&mut self, key: &ItemKey) {
        if self.entries.remove(key) {
            self.append(&Record::Del { key: key.clone() });
        }
    }

    /// The first error writing the ledger, if any.
    pub fn error(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    fn append(&mut self, record: &Record) {
        if self.failed.is_some() {
            return;
        }
        let result = self.store.append(&record::line(record)).map_err(LedgerError::from).and_then(|()| {
            self.unsynced += 1;
            if self.unsynced >= SYNC_EVERY_RECORDS || self.last_sync.elapsed() >= SYNC_EVERY {
                self.sync()
            } else {
                Ok(())
            }
        });
        if let Err(e) = result {
            tracing::error!("{e}; the ledger records nothing more this run (the next run re-sends what it missed)");
            self.failed = Some(e.to_string());
        }
    }

    /// Makes every record so far durable.
    pub fn sync(&mut self) -> Result<(), LedgerError> {
        self.store.sync()?;
        self.unsynced = 0;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Rewrites the ledger as its header and one line per item, streamed to the store.
    fn compact(&mut self) -> Result<(), LedgerError> {
        let header = record::line(&self.identity.header());
        let entries = &self.entries;
        self.store.replace(&mut |out| {
            out.write_all(&header)?;
            for (key, entry) in entries.sorted() {
                record::write_put(out, &key, &entry)?;
            }
            Ok(())
        })?;
        self.unsynced = 0;
        Ok(())
    }

    /// Makes everything durable and compacts: call at the end of a run.
    pub fn finish(&mut self) -> Result<(), LedgerError> {
        if let Some(e) = &self.failed {
            return Err(LedgerError::Store(StoreError {
                location: self.location(),
                action: "record every item",
                source: std::io::Error::other(e.clone()),
            }));
        }
        self.sync()?;
        self.compact()
    }
}

/// The store for a ledger location: a blob for an http(s) URL, else a local file.
fn store_at(location: &str, access: &BlobAccess) -> Result<Box<dyn LedgerStore>, LedgerError> {
    if BlobLocation::is_blob_url(location) {
        Ok(Box::new(BlobStore::new(location, access)?))
    } else {
        Ok(Box::new(LocalStore::new(location)))
    }
}

impl Entry {
    /// The entry of `item` as written now.
    pub fn of(item: &Item, etag: Option<String>) -> Entry {
        let target = match item {
            Item::Relationship(r) => Some(r.target.clone()),
            _ => None,
        };
        Entry { hash: ContentHash::of(item), etag, target }
    }
}

#[cfg(test)]
mod tests;
