//! Twin writes and reads. A write is two steps so the handler can spend the twin's rate-limit
//! permit between them: `prepare_*` checks the request against the current state without
//! changing anything, `commit_*` re-checks under the twin's entry lock and applies.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use dashmap::mapref::entry::Entry;
use serde_json::{Map, Value};

use crate::validate::check_twin_contents;

use super::error::AdtFailure;
use super::models::{ModelEntry, ModelSet};
use super::patch::{apply_at, PatchKind, PatchOp};
use super::records::{TwinNode, TwinRecord};
use super::{timestamp, IfMatch, Store};

/// A checked `PUT /digitaltwins/{id}`, ready to commit.
#[derive(Debug)]
pub struct TwinPut {
    id: String,
    model: Arc<ModelEntry>,
    contents: Map<String, Value>,
    metadata: Map<String, Value>,
    now: String,
    if_none_match: bool,
}

/// A checked `PATCH /digitaltwins/{id}`, ready to commit.
#[derive(Debug)]
pub struct TwinUpdate {
    id: String,
    ops: Vec<PatchOp>,
    if_match: Option<IfMatch>,
}

/// `$metadata` keys ADT writes itself; a body may carry them (e.g. a twin read back and sent
/// again) and they are ignored.
const SERVICE_METADATA_KEYS: [&str; 3] = ["$model", "$lastUpdateTime", "$kind"];

impl Store {
    pub fn get_twin(&self, id: &str) -> Result<Arc<TwinRecord>, AdtFailure> {
        self.inner.twins.get(id).map(|node| node.twin.clone()).ok_or_else(|| AdtFailure::twin_not_found(id))
    }

    /// Checks a PUT body: size, shape, the model (exists, not decommissioned), properties and
    /// components. Counts an order violation when the model is missing.
    pub fn prepare_twin_put(&self, id: &str, body: &[u8], if_none_match: bool) -> Result<TwinPut, AdtFailure> {
        self.check_payload(body)?;
        let doc: Value = serde_json::from_slice(body)
            .map_err(|e| AdtFailure::invalid_argument(format!("The twin body is not valid JSON: {e}.")))?;
        let Value::Object(doc) = doc else {
            return Err(AdtFailure::invalid_argument("The twin body must be a JSON object with $metadata.$model."));
        };
        let Some(Value::Object(metadata_in)) = doc.get("$metadata") else {
            return Err(AdtFailure::twin_invalid(
                "The twin has no $metadata; send {\"$metadata\":{\"$model\":\"dtmi:…;1\"}, …}.",
            ));
        };
        let Some(model_id) = metadata_in.get("$model").and_then(Value::as_str) else {
            return Err(AdtFailure::twin_invalid("The twin has no $metadata.$model naming its model."));
        };
        let models = self.models();
        let Some(model) = models.get(model_id).cloned() else {
            self.count_order_violation();
            return Err(AdtFailure::twin_model_missing(model_id));
        };
        if model.is_decommissioned() {
            return Err(AdtFailure::model_decommissioned(model_id));
        }
        let mut contents = Map::new();
        for (name, value) in &doc {
            if let Some(reserved) = name.strip_prefix('$') {
                if !matches!(reserved, "dtId" | "etag" | "metadata") {
                    return Err(AdtFailure::twin_invalid(format!(
                        "'{name}' is not a property; names starting with '$' are reserved for the service."
                    )));
                }
                continue;
            }
            contents.insert(name.clone(), value.clone());
        }
        check_twin_contents(&models, &model, &contents, self.inner.limits.max_string_value_bytes)
            .map_err(AdtFailure::twin_invalid)?;

        let now = timestamp();
        let mut metadata = Map::new();
        for (name, entry) in metadata_in {
            if SERVICE_METADATA_KEYS.contains(&name.as_str()) || model.resolved.components.contains_key(name) {
                continue;
            }
            if !contents.contains_key(name) {
                return Err(AdtFailure::twin_invalid(format!(
                    "$metadata.{name} describes a property the twin does not set; remove it or set the property."
                )));
            }
            if let Some(source_time) = entry.get("sourceTime") {
                metadata.insert(name.clone(), property_metadata(&now, Some(source_time)));
            }
        }
        for (name, value) in contents.iter_mut() {
            if model.resolved.components.contains_key(name) {
                *value = stamp_component(value, &now);
            } else if !metadata.contains_key(name) {
                metadata.insert(name.clone(), property_metadata(&now, None));
            }
        }
        Ok(TwinPut { id: id.to_string(), model, contents, metadata, now, if_none_match })
    }

    /// Creates or replaces the twin. `If-None-Match: *` on an existing twin is a 412; a new
    /// twin past `max_twins` is `TwinLimitReached`.
    pub fn commit_twin_put(&self, put: TwinPut) -> Result<Arc<TwinRecord>, AdtFailure> {
        let TwinPut { id, model, contents, metadata, now, if_none_match } = put;
        if !model.acquire_twin() {
            return Err(AdtFailure::twin_model_missing(&model.id));
        }
        let record = Arc::new(TwinRecord::new(id.clone(), model.id.clone(), contents, metadata, now));
        match self.inner.twins.entry(id) {
            Entry::Occupied(mut occupied) => {
                let node = occupied.get_mut();
                if if_none_match {
                    model.release_twin();
                    return Err(AdtFailure::twin_already_exists(&record.id));
                }
                node.model_entry.release_twin();
                node.model_entry = model;
                node.twin = record.clone();
                self.record_twin_change(&record.id, Some(&record));
            }
            Entry::Vacant(vacant) => {
                let max = self.inner.limits.max_twins;
                let reserved = self
                    .inner
                    .twin_count
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1));
                if reserved.is_err() {
                    model.release_twin();
                    return Err(AdtFailure::twin_limit_reached(max));
                }
                self.record_twin_change(&record.id, Some(&record));
                vacant.insert(TwinNode {
                    twin: record.clone(),
                    model_entry: model,
                    created_at: Instant::now(),
                    outgoing: Default::default(),
                    incoming: Default::default(),
                });
            }
        }
        Ok(record)
    }

    /// Checks a PATCH against the twin as it is now: it exists, `If-Match` holds, and the patched
    /// twin is valid.
    pub fn prepare_twin_update(
        &self,
        id: &str,
        ops: Vec<PatchOp>,
        if_match: Option<IfMatch>,
    ) -> Result<TwinUpdate, AdtFailure> {
        let (current, current_model) = self.twin_and_model(id)?;
        IfMatch::check(if_match.as_ref(), &current.etag, &format!("twin {id}"))?;
        self.apply_twin_patch(&self.models(), &current, &current_model, &ops, &timestamp())?;
        Ok(TwinUpdate { id: id.to_string(), ops, if_match })
    }

    /// Applies the PATCH under the twin's entry lock (re-checking, as the twin may have changed).
    pub fn commit_twin_update(&self, update: TwinUpdate) -> Result<Arc<TwinRecord>, AdtFailure> {
        let models = self.models();
        let now = timestamp();
        let mut node = self.inner.twins.get_mut(&update.id).ok_or_else(|| AdtFailure::twin_not_found(&update.id))?;
        IfMatch::check(update.if_match.as_ref(), &node.twin.etag, &format!("twin {}", update.id))?;
        let patched = self.apply_twin_patch(&models, &node.twin, &node.model_entry, &update.ops, &now)?;
        if !Arc::ptr_eq(&patched.model, &node.model_entry) {
            if !patched.model.acquire_twin() {
                return Err(AdtFailure::twin_model_missing(&patched.model.id));
            }
            node.model_entry.release_twin();
            node.model_entry = patched.model.clone();
        }
        let record = Arc::new(TwinRecord::new(
            update.id.clone(),
            patched.model.id.clone(),
            patched.contents,
            patched.metadata,
            now,
        ));
        node.twin = record.clone();
        self.record_twin_change(&record.id, Some(&record));
        Ok(record)
    }

    /// `DELETE /digitaltwins/{id}`: refused while the twin has incoming or outgoing relationships.
    pub fn delete_twin(&self, id: &str, if_match: Option<&IfMatch>) -> Result<(), AdtFailure> {
        let mut refusal = AdtFailure::twin_not_found(id);
        let removed = self.inner.twins.remove_if(id, |_, node| {
            if let Err(stale) = IfMatch::check(if_match, &node.twin.etag, &format!("twin {id}")) {
                refusal = stale;
                return false;
            }
            if node.has_relationships() {
                refusal = AdtFailure::relationships_not_deleted(id);
                return false;
            }
            // Logged while the entry is still locked, so the query index sees writes to one
            // twin in the order they happened.
            self.record_twin_change(id, None);
            true
        });
        match removed {
            Some((_, node)) => {
                node.model_entry.release_twin();
                self.inner.twin_count.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
            None => Err(refusal),
        }
    }

    /// The twin and the model entry it is counted against (which, for a twin of a deleted
    /// model, is no longer in the model set).
    pub(super) fn twin_and_model(&self, id: &str) -> Result<(Arc<TwinRecord>, Arc<ModelEntry>), AdtFailure> {
        self.inner
            .twins
            .get(id)
            .map(|node| (node.twin.clone(), node.model_entry.clone()))
            .ok_or_else(|| AdtFailure::twin_not_found(id))
    }

    /// The twin after a patch, checked against its (possibly new) model. A twin whose model was
    /// deleted keeps being checked against the entry it holds (`current_model`).
    fn apply_twin_patch(
        &self,
        models: &ModelSet,
        current: &TwinRecord,
        current_model: &Arc<ModelEntry>,
        ops: &[PatchOp],
        now: &str,
    ) -> Result<PatchedTwin, AdtFailure> {
        let mut model_id = current.model.as_str();
        for op in ops {
            if op.path.len() == 2 && op.path[0] == "$metadata" && op.path[1] == "$model" {
                match (op.kind, op.value.as_str()) {
                    (PatchKind::Remove, _) => {
                        return Err(AdtFailure::json_patch_invalid(
                            "$metadata/$model cannot be removed; replace it with another model.",
                        ))
                    }
                    (_, Some(new_model)) => model_id = new_model,
                    (_, None) => {
                        return Err(AdtFailure::json_patch_invalid("$metadata/$model must be a model id (a string)."))
                    }
                }
            }
        }
        let model = match models.get(model_id) {
            Some(model) => model.clone(),
            None if model_id == current.model => current_model.clone(),
            None => return Err(AdtFailure::twin_model_missing(model_id)),
        };
        if model_id != current.model && model.is_decommissioned() {
            return Err(AdtFailure::model_decommissioned(model_id));
        }
        let resolved = &model.resolved;
        let mut contents = current.contents.clone();
        let mut metadata = current.metadata.clone();
        let mut touched: HashSet<&str> = HashSet::new();
        let mut touched_in_components: HashSet<(&str, &str)> = HashSet::new();
        let mut source_times: HashMap<&str, Option<&Value>> = HashMap::new();
        for op in ops {
            match op.path.as_slice() {
                [meta, model_key] if meta == "$metadata" && model_key == "$model" => {}
                [meta, property, source_time] if meta == "$metadata" && source_time == "sourceTime" => {
                    if !resolved.properties.contains_key(property) {
                        return Err(AdtFailure::patch_property_missing(property));
                    }
                    source_times.insert(property, (op.kind != PatchKind::Remove).then_some(&op.value));
                }
                [meta, ..] if meta == "$metadata" => {
                    return Err(AdtFailure::json_patch_invalid(format!(
                        "{} cannot be patched; only /$metadata/$model and /$metadata/<property>/sourceTime can.",
                        op.path_text
                    )))
                }
                [name, ..] if resolved.properties.contains_key(name) => {
                    apply_at(&mut contents, op.kind, &op.path, &op.value, &op.path_text)?;
                    touched.insert(name);
                }
                [component, rest @ ..] if resolved.components.contains_key(component) => {
                    let component_model = &resolved.components[component];
                    patch_component(models, &mut contents, component, component_model, rest, op, now)?;
                    if let [property, ..] = rest {
                        touched_in_components.insert((component, property));
                    }
                }
                [name, ..] => return Err(AdtFailure::patch_property_missing(name)),
                [] => return Err(AdtFailure::json_patch_invalid("A patch path must name a property.")),
            }
        }
        check_twin_contents(models, &model, &contents, self.inner.limits.max_string_value_bytes)
            .map_err(AdtFailure::twin_invalid)?;

        for name in touched {
            metadata.insert(name.to_string(), property_metadata(now, None));
        }
        for (name, source_time) in source_times {
            if let Some(Value::Object(entry)) = metadata.get_mut(name) {
                match source_time {
                    Some(t) => entry.insert("sourceTime".into(), t.clone()),
                    None => entry.remove("sourceTime"),
                };
            }
        }
        metadata.retain(|name, _| contents.contains_key(name));
        for (component, property) in touched_in_components {
            if property == "$metadata" {
                continue;
            }
            if let Some(Value::Object(fields)) = contents.get_mut(component) {
                let present = fields.contains_key(property);
                let component_metadata = fields.entry("$metadata").or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(component_metadata) = component_metadata {
                    component_metadata.insert("$lastUpdateTime".into(), Value::String(now.to_string()));
                    if present {
                        component_metadata.insert(property.to_string(), property_metadata(now, None));
                    } else {
                        component_metadata.remove(property);
                    }
                }
            }
        }
        Ok(PatchedTwin { model, contents, metadata })
    }

    fn record_twin_change(&self, id: &str, twin: Option<&Arc<TwinRecord>>) {
        if let Some(index) = &self.inner.lagged_index {
            index.record_twin(id, twin.cloned());
        }
    }
}

struct PatchedTwin {
    model: Arc<ModelEntry>,
    contents: Map<String, Value>,
    metadata: Map<String, Value>,
}

/// One patch operation inside a component: the whole component, a property of it, or a
/// property's `sourceTime` (`/comp/$metadata/prop/sourceTime`).
fn patch_component(
    models: &ModelSet,
    contents: &mut Map<String, Value>,
    component: &str,
    component_model: &str,
    rest: &[String],
    op: &PatchOp,
    now: &str,
) -> Result<(), AdtFailure> {
    let declared =
        |property: &str| models.get(component_model).is_some_and(|m| m.resolved.properties.contains_key(property));
    match rest {
        [] => match op.kind {
            PatchKind::Remove => Err(AdtFailure::json_patch_invalid(format!(
                "Component {component} cannot be removed; a twin keeps every component its model declares."
            ))),
            _ if op.value.is_object() => {
                contents.insert(component.to_string(), stamp_component(&op.value, now));
                Ok(())
            }
            _ => Err(AdtFailure::json_patch_invalid(format!("Component {component} must be set to a JSON object."))),
        },
        [meta, property, source_time] if meta == "$metadata" && source_time == "sourceTime" => {
            if !declared(property) {
                return Err(AdtFailure::patch_property_missing(&format!("{component}/{property}")));
            }
            let Some(Value::Object(fields)) = contents.get_mut(component) else {
                return Err(AdtFailure::patch_property_missing(component));
            };
            let component_metadata = fields.entry("$metadata").or_insert_with(|| Value::Object(Map::new()));
            let path = [property.clone(), "sourceTime".to_string()];
            match component_metadata {
                Value::Object(component_metadata) => {
                    component_metadata.entry(property.clone()).or_insert_with(|| Value::Object(Map::new()));
                    apply_at(component_metadata, op.kind, &path, &op.value, &op.path_text)
                }
                _ => Err(AdtFailure::patch_property_missing(&op.path_text)),
            }
        }
        [property, ..] if declared(property) => {
            let Some(Value::Object(fields)) = contents.get_mut(component) else {
                return Err(AdtFailure::patch_property_missing(component));
            };
            apply_at(fields, op.kind, rest, &op.value, &op.path_text)
        }
        [property, ..] => Err(AdtFailure::patch_property_missing(&format!("{component}/{property}"))),
    }
}

/// `{"lastUpdateTime": now, "sourceTime"?: …}` for one property.
fn property_metadata(now: &str, source_time: Option<&Value>) -> Value {
    let mut entry = Map::new();
    entry.insert("lastUpdateTime".into(), Value::String(now.to_string()));
    if let Some(source_time) = source_time {
        entry.insert("sourceTime".into(), source_time.clone());
    }
    Value::Object(entry)
}

/// A component as stored: its properties plus `$metadata` with `$lastUpdateTime` and each
/// property's update time (and `sourceTime` when the request gave one).
fn stamp_component(component: &Value, now: &str) -> Value {
    let Value::Object(fields) = component else { return component.clone() };
    let given = fields.get("$metadata").and_then(Value::as_object);
    let mut out = Map::new();
    let mut metadata = Map::new();
    metadata.insert("$lastUpdateTime".into(), Value::String(now.to_string()));
    for (name, value) in fields {
        if name == "$metadata" {
            continue;
        }
        out.insert(name.clone(), value.clone());
        let source_time = given.and_then(|g| g.get(name)).and_then(|m| m.get("sourceTime"));
        metadata.insert(name.clone(), property_metadata(now, source_time));
    }
    out.insert("$metadata".into(), Value::Object(metadata));
    Value::Object(out)
}
