//! The items a load moves: models, twins and relationships, each with a stable identity, the
//! place it came from (file and line, for every error and dead letter) and a content hash (for
//! incremental sync).

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

/// Where an item was read: a file (or blob) and a 1-based line (1 for whole-file formats).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Origin {
    pub file: Arc<str>,
    pub line: u64,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    Model,
    Twin,
    Relationship,
}

impl ItemKind {
    pub const ALL: [ItemKind; 3] = [ItemKind::Model, ItemKind::Twin, ItemKind::Relationship];

    pub fn singular(self) -> &'static str {
        match self {
            ItemKind::Model => "model",
            ItemKind::Twin => "twin",
            ItemKind::Relationship => "relationship",
        }
    }

    /// The plural used in summaries and JSON keys.
    pub fn plural(self) -> &'static str {
        match self {
            ItemKind::Model => "models",
            ItemKind::Twin => "twins",
            ItemKind::Relationship => "relationships",
        }
    }
}

/// The stable identity of an item in ADT: two items with the same key write the same thing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ItemKey {
    Model { id: String },
    Twin { id: String },
    Relationship { source: String, id: String },
}

impl ItemKey {
    /// True when the input line was too broken to name the item (e.g. invalid JSON).
    pub fn is_unnamed(&self) -> bool {
        match self {
            ItemKey::Model { id } | ItemKey::Twin { id } => id.is_empty(),
            ItemKey::Relationship { source, id } => source.is_empty() && id.is_empty(),
        }
    }

    pub fn kind(&self) -> ItemKind {
        match self {
            ItemKey::Model { .. } => ItemKind::Model,
            ItemKey::Twin { .. } => ItemKind::Twin,
            ItemKey::Relationship { .. } => ItemKind::Relationship,
        }
    }
}

impl fmt::Display for ItemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            _ if self.is_unnamed() => write!(f, "a {} line", self.kind().singular()),
            ItemKey::Model { id } => write!(f, "model {id}"),
            ItemKey::Twin { id } => write!(f, "twin {id}"),
            ItemKey::Relationship { source, id } => write!(f, "relationship {source}/{id}"),
        }
    }
}

/// A DTDL Interface to upload with `POST /models`.
#[derive(Debug, Clone)]
pub struct ModelItem {
    pub id: String,
    /// The parents and component schemas this model cannot be uploaded without.
    pub depends_on: Vec<String>,
    /// The interface JSON exactly as read.
    pub body: Box<RawValue>,
    pub origin: Origin,
}

/// A twin to `PUT /digitaltwins/{id}`, or (`patch`) a JSON Patch of an existing twin.
#[derive(Debug, Clone)]
pub struct TwinItem {
    pub id: String,
    /// The twin's model; empty for a patch, which does not change it.
    pub model: String,
    /// The PUT body: `{"$metadata":{"$model":…}, props…}` (a body-level `$dtId` is ignored by ADT);
    /// for a patch, the JSON Patch array for `PATCH /digitaltwins/{id}`.
    pub body: Box<RawValue>,
    /// A patch of a twin that must already exist (a mapping without a model, as the reference
    /// prototype does): written with PATCH, and a missing twin is dead-lettered.
    pub patch: bool,
    pub origin: Origin,
}

/// A relationship to `PUT /digitaltwins/{source}/relationships/{id}`.
#[derive(Debug, Clone)]
pub struct RelationshipItem {
    pub source: String,
    pub id: String,
    pub target: String,
    pub name: String,
    /// The PUT body: `{"$targetId","$relationshipName", props…}`.
    pub body: Box<RawValue>,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub enum Item {
    Model(ModelItem),
    Twin(TwinItem),
    Relationship(RelationshipItem),
}

impl Item {
    pub fn kind(&self) -> ItemKind {
        match self {
            Item::Model(_) => ItemKind::Model,
            Item::Twin(_) => ItemKind::Twin,
            Item::Relationship(_) => ItemKind::Relationship,
        }
    }

    pub fn key(&self) -> ItemKey {
        match self {
            Item::Model(m) => ItemKey::Model { id: m.id.clone() },
            Item::Twin(t) => ItemKey::Twin { id: t.id.clone() },
            Item::Relationship(r) => ItemKey::Relationship { source: r.source.clone(), id: r.id.clone() },
        }
    }

    pub fn origin(&self) -> &Origin {
        match self {
            Item::Model(m) => &m.origin,
            Item::Twin(t) => &t.origin,
            Item::Relationship(r) => &r.origin,
        }
    }

    pub fn body(&self) -> &RawValue {
        match self {
            Item::Model(m) => &m.body,
            Item::Twin(t) => &t.body,
            Item::Relationship(r) => &r.body,
        }
    }

    /// A hash of what the item writes, stable across runs (for the incremental-sync ledger).
    pub fn content_hash(&self) -> blake3::Hash {
        blake3::hash(self.body().get().as_bytes())
    }
}
