//! A task's share of the input: `--shard i/n` (a stable share by twin id, so a handful of Batch
//! tasks can cover one container without talking to each other) and `--phase` (so a pipeline
//! can run models, twins and relationships as successive ForEach loops).
//!
//! Rules, so that shards together cover the input exactly once:
//! - a twin belongs to shard `hash(id) mod n` (blake3 of the id: stable across runs, machines
//!   and versions);
//! - a relationship goes with its source twin;
//! - models go to every shard: each task needs its twins' models, and a model already uploaded
//!   by another task counts as "already there" (ADT answers 409), so this costs one call;
//! - a read error goes with the twin it names; an error that names no twin (a broken file
//!   header) goes to shard 0, so it is reported once.

use std::fmt;
use std::str::FromStr;

use crate::item::{Item, ItemKey, ItemKind};

use super::SourceError;

/// `i/n`: this task is shard `i` (0-based) of `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("shard '{s}' is not i/n with 0 <= i < n (e.g. 0/4 for the first of four tasks)");
        let (i, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// The shard a twin (and the relationships it is the source of) belongs to.
    pub fn of_twin(twin_id: &str, count: u32) -> u32 {
        let hash = blake3::hash(twin_id.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&hash.as_bytes()[..8]);
        (u64::from_le_bytes(first) % u64::from(count.max(1))) as u32
    }

    pub fn owns_twin(&self, twin_id: &str) -> bool {
        Shard::of_twin(twin_id, self.count) == self.index
    }
}

/// Which kinds of item a task writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Models,
    Twins,
    Relationships,
    #[default]
    All,
}

impl Phase {
    pub fn includes(self, kind: ItemKind) -> bool {
        match self {
            Phase::All => true,
            Phase::Models => kind == ItemKind::Model,
            Phase::Twins => kind == ItemKind::Twin,
            Phase::Relationships => kind == ItemKind::Relationship,
        }
    }
}

impl FromStr for Phase {
    type Err = String;
    fn from_str(s: &str) -> Result<Phase, String> {
        <Phase as clap::ValueEnum>::from_str(s, true)
            .map_err(|_| format!("phase '{s}' is not one of models, twins, relationships, all"))
    }
}

/// What a task takes of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Selection {
    pub shard: Option<Shard>,
    pub phase: Phase,
}

impl Selection {
    pub fn is_everything(&self) -> bool {
        self.shard.is_none() && self.phase == Phase::All
    }

    /// Whether this task takes the item with this key (a read error's key, if any).
    pub fn takes(&self, key: Option<&ItemKey>) -> bool {
        let Some(key) = key else {
            // A file-structure error: reported by the models phase (or all) of shard 0.
            return self.shard.is_none_or(|s| s.index == 0) && matches!(self.phase, Phase::All | Phase::Models);
        };
        if !self.phase.includes(key.kind()) {
            return false;
        }
        match (self.shard, key) {
            (None, _) | (_, ItemKey::Model { .. }) => true,
            (Some(s), ItemKey::Twin { id }) => s.owns_twin(id),
            (Some(s), ItemKey::Relationship { source, .. }) => s.owns_twin(source),
        }
    }

    /// Keeps this task's items and read errors.
    pub fn apply(
        self,
        items: impl Iterator<Item = Result<Item, SourceError>> + Send,
    ) -> impl Iterator<Item = Result<Item, SourceError>> + Send {
        items.filter(move |r| match r {
            Ok(item) => self.takes(Some(&item.key())),
            Err(e) => self.takes(e.key.as_ref()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_bad_ones_say_the_form() {
        assert_eq!("1/4".parse::<Shard>().unwrap(), Shard { index: 1, count: 4 });
        for bad in ["4/4", "1", "a/b", "0/0", "-1/2"] {
            let err = bad.parse::<Shard>().unwrap_err();
            assert!(err.contains("i/n"), "{err}");
        }
        assert_eq!("Relationships".parse::<Phase>().unwrap(), Phase::Relationships);
        assert!("edges".parse::<Phase>().is_err());
    }

    #[test]
    fn every_twin_is_in_exactly_one_shard_and_relationships_follow_their_source() {
        let n = 5;
        let shards: Vec<Selection> =
            (0..n).map(|i| Selection { shard: Some(Shard { index: i, count: n }), phase: Phase::All }).collect();
        let mut per_shard = vec![0u32; n as usize];
        for t in 0..1000 {
            let twin = ItemKey::Twin { id: format!("twin-{t}") };
            let rel = ItemKey::Relationship { source: format!("twin-{t}"), id: "r".into() };
            let owners: Vec<usize> = (0..n as usize).filter(|&i| shards[i].takes(Some(&twin))).collect();
            assert_eq!(owners.len(), 1, "twin-{t}");
            assert!(shards[owners[0]].takes(Some(&rel)));
            per_shard[owners[0]] += 1;
        }
        assert!(per_shard.iter().all(|&c| c > 100), "a rough balance: {per_shard:?}");
        let model = ItemKey::Model { id: "dtmi:a;1".into() };
        assert!(shards.iter().all(|s| s.takes(Some(&model))), "models go to every shard");
        assert_eq!(shards.iter().filter(|s| s.takes(None)).count(), 1, "file errors are reported once");
    }

    #[test]
    fn phases_take_one_kind() {
        let twins = Selection { shard: None, phase: Phase::Twins };
        assert!(twins.takes(Some(&ItemKey::Twin { id: "a".into() })));
        assert!(!twins.takes(Some(&ItemKey::Model { id: "dtmi:a;1".into() })));
        assert!(!twins.takes(Some(&ItemKey::Relationship { source: "a".into(), id: "r".into() })));
    }
}
