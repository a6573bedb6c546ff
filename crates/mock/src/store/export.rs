//! The whole graph as ADT Import-Jobs NDJSON (Header, Models, Twins, Relationships), sorted by
//! id and with object keys sorted, so two exports of equal graphs are byte-identical.

use std::io::{self, Write};
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::records::{RelationshipRecord, TwinRecord};
use super::Store;

impl Store {
    /// Writes the graph: models as uploaded, twins as `{"$dtId","$metadata":{"$model"},props…}`
    /// and relationships as `{"$dtId" (the source),"$relationshipId","$targetId",
    /// "$relationshipName",props…}`, without ETags or timestamps.
    pub fn export_ndjson(&self, mut w: impl Write) -> io::Result<()> {
        let mut line = |value: &Value| -> io::Result<()> {
            serde_json::to_writer(&mut w, &canonical(value))?;
            w.write_all(b"\n")
        };
        line(&json!({"Section": "Header"}))?;
        line(&json!({"fileVersion": "1.0.0", "author": "twinload mock-adt", "organization": "twinload"}))?;
        line(&json!({"Section": "Models"}))?;
        for model in self.models().iter() {
            line(&model.definition)?;
        }
        let mut twins: Vec<Arc<TwinRecord>> = Vec::with_capacity(self.twin_count());
        let mut relationships: Vec<Arc<RelationshipRecord>> = Vec::with_capacity(self.relationship_count());
        for node in self.inner.twins.iter() {
            twins.push(node.twin.clone());
            relationships.extend(node.outgoing.values().cloned());
        }
        twins.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        relationships.sort_unstable_by(|a, b| (&a.source, &a.id).cmp(&(&b.source, &b.id)));
        line(&json!({"Section": "Twins"}))?;
        for twin in &twins {
            line(&twin.export_value())?;
        }
        line(&json!({"Section": "Relationships"}))?;
        for relationship in &relationships {
            line(&relationship.export_value())?;
        }
        Ok(())
    }
}

/// The value with every object's keys in sorted order.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut sorted = Map::with_capacity(map.len());
            for key in keys {
                sorted.insert(key.clone(), canonical(&map[key]));
            }
            Value::Object(sorted)
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}
