//! Relationship writes, reads and lists. A relationship lives in its source's entry
//! (`outgoing`) and leaves a mark in its target's entry (`incoming`); see `records::TwinNode`
//! for why a write touches the two entries one after the other and never both at once.

use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::validate::check_relationship_properties;

use super::error::AdtFailure;
use super::models::ModelEntry;
use super::patch::{apply_at, PatchOp};
use super::records::{IncomingMark, RelationshipRecord};
use super::{IfMatch, Store};

/// A checked `PUT /digitaltwins/{source}/relationships/{id}`, ready to commit.
#[derive(Debug)]
pub struct RelationshipPut {
    source: String,
    id: String,
    target: String,
    name: String,
    properties: Map<String, Value>,
    if_none_match: bool,
}

impl RelationshipPut {
    /// The twin the relationship points at (its per-twin write budget is spent too).
    pub fn target(&self) -> &str {
        &self.target
    }
}

/// A checked `PATCH …/relationships/{id}`, ready to commit.
#[derive(Debug)]
pub struct RelationshipUpdate {
    source: String,
    id: String,
    target: String,
    ops: Vec<PatchOp>,
    if_match: Option<IfMatch>,
}

impl RelationshipUpdate {
    pub fn target(&self) -> &str {
        &self.target
    }
}

/// One item of `GET /digitaltwins/{id}/incomingrelationships`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingRelationship {
    pub relationship_id: String,
    pub source_id: String,
    pub name: String,
}

/// A relationship's identity: (source twin id, relationship id).
pub type RelationshipKey = (String, String);

/// Body keys of a relationship that ADT sets itself or takes from the path.
const SERVICE_KEYS: [&str; 5] = ["$targetId", "$relationshipName", "$relationshipId", "$sourceId", "$etag"];

impl Store {
    /// Checks a PUT: size and shape, the source and target exist (and are visible), source ≠
    /// target, the name is declared on the source's model (or a base) and the target's model
    /// fits, and the properties are declared. Counts an order violation when the source or
    /// target is genuinely missing.
    pub fn prepare_relationship_put(
        &self,
        source: &str,
        id: &str,
        body: &[u8],
        if_none_match: bool,
    ) -> Result<RelationshipPut, AdtFailure> {
        self.check_payload(body)?;
        let doc: Value = serde_json::from_slice(body)
            .map_err(|e| AdtFailure::invalid_argument(format!("The relationship body is not valid JSON: {e}.")))?;
        let Value::Object(doc) = doc else {
            return Err(AdtFailure::invalid_argument(
                "The relationship body must be a JSON object with $targetId and $relationshipName.",
            ));
        };
        let required = |key: &str| match doc.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(AdtFailure::invalid_argument(format!("The relationship body needs {key} (a non-empty string)."))),
        };
        let target = required("$targetId")?;
        let name = required("$relationshipName")?;
        let mut properties = Map::new();
        for (key, value) in &doc {
            if key.starts_with('$') {
                if !SERVICE_KEYS.contains(&key.as_str()) {
                    return Err(AdtFailure::invalid_argument(format!(
                        "'{key}' is not a relationship property; names starting with '$' are reserved."
                    )));
                }
                continue;
            }
            properties.insert(key.clone(), value.clone());
        }

        let source_model = self.visible_twin_model(source).map_err(|missing| {
            if missing.genuinely {
                self.count_order_violation();
            }
            AdtFailure::twin_not_found(source)
        })?;
        if source == target {
            return Err(AdtFailure::self_relationship(source));
        }
        let target_model = self.visible_twin_model(&target).map_err(|missing| {
            if missing.genuinely {
                self.count_order_violation();
            }
            AdtFailure::target_twin_not_found(&target)
        })?;
        let Some(declaration) = source_model.resolved.relationships.get(&name) else {
            return Err(AdtFailure::invalid_relationship(format!(
                "relationship '{name}' is not declared by model {} of twin {source} or by the models it extends",
                source_model.id
            )));
        };
        if let Some(required_target) = &declaration.target {
            if !self.models().is_of_model(&target_model.id, required_target) {
                return Err(AdtFailure::invalid_relationship(format!(
                    "relationship '{name}' of model {} must point at a twin of model {required_target} (or a model extending it), but twin {target} is of model {}",
                    source_model.id, target_model.id
                )));
            }
        }
        check_relationship_properties(
            declaration,
            &source_model.resolved.named_schemas,
            &properties,
            self.inner.limits.max_string_value_bytes,
        )
        .map_err(AdtFailure::relationship_invalid_properties)?;
        Ok(RelationshipPut { source: source.to_string(), id: id.to_string(), target, name, properties, if_none_match })
    }

    /// Creates or replaces the relationship: first its mark at the target, then the record at
    /// the source, then the replaced relationship's mark goes. A replace keeps the target: one
    /// that names another target is refused (ADT cannot move a relationship).
    pub fn commit_relationship_put(&self, put: RelationshipPut) -> Result<Arc<RelationshipRecord>, AdtFailure> {
        let RelationshipPut { source, id, target, name, properties, if_none_match } = put;
        let max = self.inner.limits.max_relationships_per_twin;
        let mark = self.next_mark();
        let key = (source.clone(), id.clone());
        {
            let mut target_node =
                self.inner.twins.get_mut(&target).ok_or_else(|| AdtFailure::target_twin_not_found(&target))?;
            if !target_node.incoming.contains_key(&key) && target_node.incoming.len() >= max {
                return Err(per_twin_limit(&target, "incoming", max));
            }
            target_node.incoming.entry(key).or_default().push(IncomingMark { mark, name: name.as_str().into() });
        }
        let record =
            Arc::new(RelationshipRecord::new(source.clone(), id.clone(), target.clone(), name, properties, mark));
        let replaced = {
            let Some(mut source_node) = self.inner.twins.get_mut(&source) else {
                self.detach(&target, &source, &id, mark);
                return Err(AdtFailure::twin_not_found(&source));
            };
            let existing_target = source_node.outgoing.get(&id).map(|r| r.target.clone());
            let exists = existing_target.is_some();
            if let Some(old) = existing_target.filter(|old| *old != target && !if_none_match) {
                drop(source_node);
                self.detach(&target, &source, &id, mark);
                return Err(AdtFailure::relationship_target_change(&source, &id, &old, &target));
            }
            if exists && if_none_match {
                drop(source_node);
                self.detach(&target, &source, &id, mark);
                return Err(AdtFailure::relationship_already_exists(&id));
            }
            if !exists && source_node.outgoing.len() >= max {
                drop(source_node);
                self.detach(&target, &source, &id, mark);
                return Err(per_twin_limit(&source, "outgoing", max));
            }
            self.record_relationship_change(&source, &id, Some(&record));
            source_node.outgoing.insert(id.clone(), record.clone())
        };
        match replaced {
            Some(old) => self.detach(&old.target, &old.source, &old.id, old.mark),
            None => {
                self.inner.relationship_count.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(record)
    }

    pub fn get_relationship(&self, source: &str, id: &str) -> Result<Arc<RelationshipRecord>, AdtFailure> {
        let node = self.inner.twins.get(source).ok_or_else(|| AdtFailure::twin_not_found(source))?;
        node.outgoing.get(id).cloned().ok_or_else(|| AdtFailure::relationship_not_found(source, id))
    }

    /// Checks a PATCH of a relationship's properties against it as it is now.
    pub fn prepare_relationship_update(
        &self,
        source: &str,
        id: &str,
        ops: Vec<PatchOp>,
        if_match: Option<IfMatch>,
    ) -> Result<RelationshipUpdate, AdtFailure> {
        let (current, source_model) = {
            let node = self.inner.twins.get(source).ok_or_else(|| AdtFailure::twin_not_found(source))?;
            let current =
                node.outgoing.get(id).cloned().ok_or_else(|| AdtFailure::relationship_not_found(source, id))?;
            (current, node.model_entry.clone())
        };
        IfMatch::check(if_match.as_ref(), &current.etag, &format!("relationship {id}"))?;
        self.patch_relationship_properties(&source_model, &current, &ops)?;
        Ok(RelationshipUpdate {
            source: source.to_string(),
            id: id.to_string(),
            target: current.target.clone(),
            ops,
            if_match,
        })
    }

    pub fn commit_relationship_update(
        &self,
        update: RelationshipUpdate,
    ) -> Result<Arc<RelationshipRecord>, AdtFailure> {
        let RelationshipUpdate { source, id, ops, if_match, .. } = update;
        let mut node = self.inner.twins.get_mut(&source).ok_or_else(|| AdtFailure::twin_not_found(&source))?;
        let current =
            node.outgoing.get(&id).cloned().ok_or_else(|| AdtFailure::relationship_not_found(&source, &id))?;
        IfMatch::check(if_match.as_ref(), &current.etag, &format!("relationship {id}"))?;
        let properties = self.patch_relationship_properties(&node.model_entry, &current, &ops)?;
        let record = Arc::new(RelationshipRecord::new(
            source.clone(),
            id.clone(),
            current.target.clone(),
            current.name.clone(),
            properties,
            current.mark,
        ));
        self.record_relationship_change(&source, &id, Some(&record));
        node.outgoing.insert(id, record.clone());
        Ok(record)
    }

    pub fn delete_relationship(&self, source: &str, id: &str, if_match: Option<&IfMatch>) -> Result<(), AdtFailure> {
        let removed = {
            let mut node = self.inner.twins.get_mut(source).ok_or_else(|| AdtFailure::twin_not_found(source))?;
            let current = node.outgoing.get(id).ok_or_else(|| AdtFailure::relationship_not_found(source, id))?;
            IfMatch::check(if_match, &current.etag, &format!("relationship {id}"))?;
            self.record_relationship_change(source, id, None);
            node.outgoing.remove(id)
        };
        if let Some(old) = removed {
            self.detach(&old.target, &old.source, &old.id, old.mark);
            self.inner.relationship_count.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// One page of a twin's outgoing relationships (optionally of one name), after the
    /// relationship id `after`. The second value is the id to continue after, if more remain.
    pub fn list_relationships(
        &self,
        source: &str,
        name: Option<&str>,
        after: Option<&str>,
        page_size: usize,
    ) -> Result<(Vec<Arc<RelationshipRecord>>, Option<String>), AdtFailure> {
        let node = self.inner.twins.get(source).ok_or_else(|| AdtFailure::twin_not_found(source))?;
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut matching = node
            .outgoing
            .range::<str, _>((lower, Bound::Unbounded))
            .map(|(_, r)| r)
            .filter(|r| name.is_none_or(|n| r.name == n));
        let page: Vec<Arc<RelationshipRecord>> = matching.by_ref().take(page_size.max(1)).cloned().collect();
        let next = match (matching.next(), page.last()) {
            (Some(_), Some(last)) => Some(last.id.clone()),
            _ => None,
        };
        Ok((page, next))
    }

    /// One page of the relationships pointing at `target`, after the (source, id) `after`.
    pub fn list_incoming(
        &self,
        target: &str,
        after: Option<RelationshipKey>,
        page_size: usize,
    ) -> Result<(Vec<IncomingRelationship>, Option<RelationshipKey>), AdtFailure> {
        let node = self.inner.twins.get(target).ok_or_else(|| AdtFailure::twin_not_found(target))?;
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut entries = node.incoming.range((lower, Bound::Unbounded));
        let page: Vec<IncomingRelationship> = entries
            .by_ref()
            .take(page_size.max(1))
            .map(|((source, id), marks)| IncomingRelationship {
                relationship_id: id.clone(),
                source_id: source.clone(),
                name: marks.last().map(|m| m.name.to_string()).unwrap_or_default(),
            })
            .collect();
        let next = match (entries.next(), page.last()) {
            (Some(_), Some(last)) => Some((last.source_id.clone(), last.relationship_id.clone())),
            _ => None,
        };
        Ok((page, next))
    }

    /// The model of a twin that relationship writes may see, or why not.
    fn visible_twin_model(&self, id: &str) -> Result<Arc<ModelEntry>, Missing> {
        match self.inner.twins.get(id) {
            None => Err(Missing { genuinely: true }),
            Some(node) if self.is_invisible(&node) => Err(Missing { genuinely: false }),
            Some(node) => Ok(node.model_entry.clone()),
        }
    }

    /// The properties after a PATCH, checked against the relationship's declaration.
    fn patch_relationship_properties(
        &self,
        source_model: &ModelEntry,
        current: &RelationshipRecord,
        ops: &[PatchOp],
    ) -> Result<Map<String, Value>, AdtFailure> {
        let declaration = source_model.resolved.relationships.get(&current.name).ok_or_else(|| {
            AdtFailure::invalid_relationship(format!(
                "relationship '{}' is no longer declared by model {} of twin {}",
                current.name, source_model.id, current.source
            ))
        })?;
        let mut properties = current.properties.clone();
        for op in ops {
            let Some(first) = op.path.first() else {
                return Err(AdtFailure::json_patch_invalid("A patch path must name a property."));
            };
            if SERVICE_KEYS.contains(&first.as_str()) {
                return Err(AdtFailure::json_patch_invalid(format!(
                    "{first} cannot be patched; to change a relationship's source, target or name, delete it and create it again."
                )));
            }
            if !declaration.properties.iter().any(|p| &p.name == first) {
                return Err(AdtFailure::patch_property_missing(first));
            }
            apply_at(&mut properties, op.kind, &op.path, &op.value, &op.path_text)?;
        }
        check_relationship_properties(
            declaration,
            &source_model.resolved.named_schemas,
            &properties,
            self.inner.limits.max_string_value_bytes,
        )
        .map_err(AdtFailure::relationship_invalid_properties)?;
        Ok(properties)
    }

    /// Takes one relationship's mark out of its target's incoming index.
    fn detach(&self, target: &str, source: &str, id: &str, mark: u64) {
        if let Some(mut node) = self.inner.twins.get_mut(target) {
            node.remove_incoming_mark(source, id, mark);
        }
    }

    fn record_relationship_change(&self, source: &str, id: &str, relationship: Option<&Arc<RelationshipRecord>>) {
        if let Some(index) = &self.inner.lagged_index {
            index.record_relationship(source, id, relationship.cloned());
        }
    }
}

struct Missing {
    /// False when the twin exists but is inside the eventual-consistency window.
    genuinely: bool,
}

/// 50,000 relationships out of or into one twin. The live error code is unverified; the mock
/// answers 400 `LimitExceeded`, the code ADT documents for its other limits.
fn per_twin_limit(twin: &str, direction: &str, max: usize) -> AdtFailure {
    AdtFailure::limit_exceeded(format!(
        "Twin {twin} already has {max} {direction} relationships, the most one twin may have. Delete some before adding more."
    ))
}
