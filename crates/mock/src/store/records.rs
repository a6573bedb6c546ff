//! What the store keeps per twin and per relationship. Records are immutable and shared
//! (`Arc`): a write builds a new record, so a GET clones one pointer and answers with bytes
//! serialized once, at write time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use super::models::ModelEntry;

/// A twin as ADT returns it.
#[derive(Debug)]
pub struct TwinRecord {
    pub id: String,
    pub model: String,
    /// Properties and components; a component is an object carrying its own `$metadata`.
    pub contents: Map<String, Value>,
    /// Per top-level property: `{"lastUpdateTime", "sourceTime"?}`.
    pub metadata: Map<String, Value>,
    pub last_update_time: String,
    /// Weak ETag, `W/"<uuid>"`.
    pub etag: String,
    /// The GET body, serialized once.
    pub json: Bytes,
}

impl TwinRecord {
    pub fn new(
        id: String,
        model: String,
        contents: Map<String, Value>,
        metadata: Map<String, Value>,
        last_update_time: String,
    ) -> TwinRecord {
        let mut record =
            TwinRecord { id, model, contents, metadata, last_update_time, etag: new_etag(), json: Bytes::new() };
        record.json = Bytes::from(serde_json::to_vec(&TwinBody(&record)).unwrap_or_default());
        record
    }

    /// A value by query path: `$dtId`, `$etag`, `$metadata.$model`, `prop`, `prop.field`,
    /// `component.prop`.
    pub fn field(&self, path: &[String]) -> Option<Value> {
        match path {
            [first] if first == "$dtId" => Some(Value::String(self.id.clone())),
            [first] if first == "$etag" => Some(Value::String(self.etag.clone())),
            [first, second] if first == "$metadata" && second == "$model" => Some(Value::String(self.model.clone())),
            [first, rest @ ..] => lookup(self.contents.get(first)?, rest),
            [] => None,
        }
    }

    /// The twin as an Import-Jobs NDJSON line: no etag and no timestamps.
    pub fn export_value(&self) -> Value {
        let mut out = Map::new();
        out.insert("$dtId".into(), Value::String(self.id.clone()));
        let mut metadata = Map::new();
        metadata.insert("$model".into(), Value::String(self.model.clone()));
        out.insert("$metadata".into(), Value::Object(metadata));
        for (name, value) in &self.contents {
            let value = match value {
                Value::Object(component) if component.contains_key("$metadata") => {
                    let mut component = component.clone();
                    component.insert("$metadata".into(), Value::Object(Map::new()));
                    Value::Object(component)
                }
                other => other.clone(),
            };
            out.insert(name.clone(), value);
        }
        out.into()
    }
}

fn lookup(mut value: &Value, rest: &[String]) -> Option<Value> {
    for segment in rest {
        value = value.as_object()?.get(segment)?;
    }
    Some(value.clone())
}

struct TwinBody<'a>(&'a TwinRecord);

impl Serialize for TwinBody<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let twin = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("$dtId", &twin.id)?;
        map.serialize_entry("$etag", &twin.etag)?;
        for (name, value) in &twin.contents {
            map.serialize_entry(name, value)?;
        }
        map.serialize_entry("$metadata", &TwinMetadata(twin))?;
        map.end()
    }
}

struct TwinMetadata<'a>(&'a TwinRecord);

impl Serialize for TwinMetadata<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let twin = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("$model", &twin.model)?;
        map.serialize_entry("$lastUpdateTime", &twin.last_update_time)?;
        for (name, value) in &twin.metadata {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// A relationship as ADT returns it.
#[derive(Debug)]
pub struct RelationshipRecord {
    pub source: String,
    pub id: String,
    pub target: String,
    pub name: String,
    pub properties: Map<String, Value>,
    pub etag: String,
    /// Identifies this relationship's mark in the target's incoming index. A PUT makes a new
    /// mark; a PATCH keeps it (see `TwinNode::incoming`).
    pub mark: u64,
    pub json: Bytes,
}

impl RelationshipRecord {
    pub fn new(
        source: String,
        id: String,
        target: String,
        name: String,
        properties: Map<String, Value>,
        mark: u64,
    ) -> RelationshipRecord {
        let mut record =
            RelationshipRecord { source, id, target, name, properties, etag: new_etag(), mark, json: Bytes::new() };
        record.json = Bytes::from(serde_json::to_vec(&RelationshipBody(&record)).unwrap_or_default());
        record
    }

    /// A value by query path: `$sourceId`, `$targetId`, `$relationshipName`, `$relationshipId`,
    /// `$etag`, or a property.
    pub fn field(&self, path: &[String]) -> Option<Value> {
        let text = |s: &str| Some(Value::String(s.to_string()));
        match path {
            [first] if first == "$sourceId" => text(&self.source),
            [first] if first == "$targetId" => text(&self.target),
            [first] if first == "$relationshipName" => text(&self.name),
            [first] if first == "$relationshipId" => text(&self.id),
            [first] if first == "$etag" => text(&self.etag),
            [first, rest @ ..] => lookup(self.properties.get(first)?, rest),
            [] => None,
        }
    }

    /// The relationship as an Import-Jobs NDJSON line (the source key is `$dtId`).
    pub fn export_value(&self) -> Value {
        let mut out = Map::new();
        out.insert("$dtId".into(), Value::String(self.source.clone()));
        out.insert("$relationshipId".into(), Value::String(self.id.clone()));
        out.insert("$targetId".into(), Value::String(self.target.clone()));
        out.insert("$relationshipName".into(), Value::String(self.name.clone()));
        for (name, value) in &self.properties {
            out.insert(name.clone(), value.clone());
        }
        out.into()
    }
}

struct RelationshipBody<'a>(&'a RelationshipRecord);

impl Serialize for RelationshipBody<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let rel = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("$relationshipId", &rel.id)?;
        map.serialize_entry("$etag", &rel.etag)?;
        map.serialize_entry("$sourceId", &rel.source)?;
        map.serialize_entry("$relationshipName", &rel.name)?;
        map.serialize_entry("$targetId", &rel.target)?;
        for (name, value) in &rel.properties {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// One relationship pointing at a twin, as the target's incoming index holds it.
#[derive(Debug, Clone)]
pub struct IncomingMark {
    pub mark: u64,
    pub name: Arc<str>,
}

/// Everything the store keeps under one twin id: the twin, its outgoing relationships, and the
/// index of relationships pointing at it. Keeping them together lets one entry lock decide
/// "may this twin be deleted" and "may a relationship attach to it".
#[derive(Debug)]
pub struct TwinNode {
    pub twin: Arc<TwinRecord>,
    /// The model entry the twin is counted against (see `ModelEntry::acquire_twin`).
    pub model_entry: Arc<ModelEntry>,
    /// When the twin was first created (a PUT that replaces keeps it): the
    /// `new_twin_invisible_for` window counts from here.
    pub created_at: Instant,
    pub outgoing: BTreeMap<String, Arc<RelationshipRecord>>,
    /// Incoming relationships by (source, relationship id). A relationship write adds its mark
    /// here before it lands at the source and takes the replaced one away after, without ever
    /// holding two twins' locks; while two writes of the same relationship race, a key can
    /// briefly carry two marks. The key counts once.
    pub incoming: BTreeMap<(String, String), Vec<IncomingMark>>,
}

impl TwinNode {
    pub fn has_relationships(&self) -> bool {
        !self.outgoing.is_empty() || !self.incoming.is_empty()
    }

    /// Takes away one mark; the key goes when its last mark does.
    pub fn remove_incoming_mark(&mut self, source: &str, relationship_id: &str, mark: u64) {
        let key = (source.to_string(), relationship_id.to_string());
        if let Some(marks) = self.incoming.get_mut(&key) {
            marks.retain(|m| m.mark != mark);
            if marks.is_empty() {
                self.incoming.remove(&key);
            }
        }
    }
}

/// A new weak ETag, `W/"<uuid v4>"`.
pub fn new_etag() -> String {
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    format!("W/\"{id}\"")
}

/// The opaque part of an ETag (weak or strong), for comparison.
pub fn etag_opaque(etag: &str) -> &str {
    etag.strip_prefix("W/").unwrap_or(etag)
}
