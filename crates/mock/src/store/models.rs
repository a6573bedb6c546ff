//! The models an instance holds, and `POST /models` batch validation.
//!
//! Models change rarely and are read on every twin and relationship write, so the set is
//! copy-on-write: readers clone an `Arc<ModelSet>` (one short read lock), writers build a new
//! set under a writer mutex and swap it in. Each model is resolved when it is uploaded (its
//! bases' contents merged in), which is safe because models are immutable and a model cannot
//! be deleted while another model references it. Twins do not hold a model back (as in the live
//! service): a twin of a deleted model keeps its `ModelEntry` and stays readable, patchable and
//! deletable, while new twins of it are refused as for any missing model.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde_json::{json, Value};

use crate::dtdl::{Interface, RelationshipDecl};
use crate::limits::Limits;

use super::error::AdtFailure;

/// DTDL's deepest allowed `extends` chain (v2 and v3).
pub const MAX_EXTENDS_DEPTH: usize = 10;

/// One uploaded model.
#[derive(Debug)]
pub struct ModelEntry {
    pub id: String,
    /// The Interface exactly as uploaded (returned by `includeModelDefinition=true`, exported).
    pub definition: Value,
    pub interface: Interface,
    /// When it was uploaded, as ADT writes it (`…+00:00`).
    pub upload_time: String,
    pub resolved: ResolvedModel,
    decommissioned: AtomicBool,
    /// Twins whose `$model` is this entry (the store's consistency checks count them).
    twins_using: AtomicUsize,
    /// Set when the model is deleted; a twin that starts using the model afterwards backs off.
    deleted: AtomicBool,
}

/// A model with everything it inherits through `extends` merged in.
#[derive(Debug, Clone, Default)]
pub struct ResolvedModel {
    /// This model and every model it extends, transitively (for `IS_OF_MODEL` and targets).
    pub ancestors: HashSet<String>,
    /// Property name → DTDL schema.
    pub properties: HashMap<String, Value>,
    pub relationships: HashMap<String, RelationshipDecl>,
    /// Component name → the component's Interface DTMI.
    pub components: BTreeMap<String, String>,
    pub telemetry: HashSet<String>,
    /// Named complex schemas (`schemas` entries with an `@id`) a property schema may reference.
    pub named_schemas: HashMap<String, Value>,
    /// Length of the longest `extends` chain, counting this model (1 when it extends nothing).
    pub depth: usize,
}

impl ModelEntry {
    pub fn is_decommissioned(&self) -> bool {
        self.decommissioned.load(Ordering::SeqCst)
    }

    pub fn decommission(&self) {
        self.decommissioned.store(true, Ordering::SeqCst);
    }

    /// Records one more twin of this model. False when the model was deleted meanwhile (the
    /// twin write must then fail as if the model were missing).
    pub fn acquire_twin(&self) -> bool {
        self.twins_using.fetch_add(1, Ordering::SeqCst);
        if self.deleted.load(Ordering::SeqCst) {
            self.twins_using.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    pub fn release_twin(&self) {
        self.twins_using.fetch_sub(1, Ordering::SeqCst);
    }

    pub fn twins_using(&self) -> usize {
        self.twins_using.load(Ordering::SeqCst)
    }

    /// True once the model was deleted (only twins that had it before still hold this entry).
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::SeqCst)
    }

    /// `DigitalTwinsModelData`: id, language maps, decommissioned, uploadTime and, when asked,
    /// the definition.
    pub fn model_data(&self, include_definition: bool) -> Value {
        let mut data = json!({
            "id": self.id,
            "description": language_map(self.interface.description.as_ref()),
            "displayName": language_map(self.interface.display_name.as_ref()),
            "decommissioned": self.is_decommissioned(),
            "uploadTime": self.upload_time,
        });
        if include_definition {
            data["model"] = self.definition.clone();
        }
        data
    }
}

/// DTDL allows a plain string where ADT answers with a language map (`{"en": …}`).
fn language_map(value: Option<&Value>) -> Value {
    match value {
        Some(Value::String(s)) => json!({ "en": s }),
        Some(Value::Object(map)) => Value::Object(map.clone()),
        _ => json!({}),
    }
}

/// An immutable snapshot of the instance's models, sorted by id (list paging relies on it).
#[derive(Debug, Clone, Default)]
pub struct ModelSet {
    by_id: BTreeMap<String, Arc<ModelEntry>>,
}

impl ModelSet {
    pub fn get(&self, id: &str) -> Option<&Arc<ModelEntry>> {
        self.by_id.get(id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<ModelEntry>> {
        self.by_id.values()
    }

    /// Models with an id greater than `after`, in id order.
    pub fn iter_after<'a>(&'a self, after: Option<&'a str>) -> impl Iterator<Item = &'a Arc<ModelEntry>> + 'a {
        use std::ops::Bound;
        let lower = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        self.by_id.range::<str, _>((lower, Bound::Unbounded)).map(|(_, m)| m)
    }

    /// True when `model` is `ancestor` or extends it (transitively). Unknown models are only
    /// themselves.
    pub fn is_of_model(&self, model: &str, ancestor: &str) -> bool {
        model == ancestor || self.get(model).is_some_and(|m| m.resolved.ancestors.contains(ancestor))
    }

    /// The models listed and everything they need (extends, component schemas), transitively.
    pub fn with_dependencies(&self, roots: &[String]) -> Result<Vec<Arc<ModelEntry>>, AdtFailure> {
        let mut seen = BTreeMap::new();
        let mut stack: Vec<String> = Vec::new();
        for root in roots {
            if self.get(root).is_none() {
                return Err(AdtFailure::model_not_found(root));
            }
            stack.push(root.clone());
        }
        while let Some(id) = stack.pop() {
            if seen.contains_key(&id) {
                continue;
            }
            if let Some(entry) = self.get(&id) {
                stack.extend(entry.interface.dependencies().map(str::to_string));
                seen.insert(id, entry.clone());
            }
        }
        Ok(seen.into_values().collect())
    }
}

/// The instance's models: a snapshot for readers, a mutex for writers.
#[derive(Debug, Default)]
pub struct ModelRegistry {
    current: RwLock<Arc<ModelSet>>,
    writer: Mutex<()>,
}

/// Why a batch was refused, and whether the refusal was a dependency-order violation (a model
/// uploaded before a model it references).
#[derive(Debug)]
pub struct BatchRefused {
    pub failure: AdtFailure,
    pub order_violation: bool,
}

impl From<AdtFailure> for BatchRefused {
    fn from(failure: AdtFailure) -> BatchRefused {
        BatchRefused { failure, order_violation: false }
    }
}

impl ModelRegistry {
    pub fn snapshot(&self) -> Arc<ModelSet> {
        self.current.read().clone()
    }

    pub fn clear(&self) {
        let _writer = self.writer.lock();
        *self.current.write() = Arc::new(ModelSet::default());
    }

    /// `POST /models`: all or nothing. Returns the new entries in request order.
    pub fn add_batch(&self, docs: &[Value], limits: &Limits, now: &str) -> Result<Vec<Arc<ModelEntry>>, BatchRefused> {
        if docs.is_empty() {
            return Err(AdtFailure::empty_model_list().into());
        }
        if docs.len() > limits.max_models_per_call {
            return Err(AdtFailure::limit_exceeded(format!(
                "{} models were sent in one call; at most {} may be uploaded per call. Split the upload into batches.",
                docs.len(),
                limits.max_models_per_call
            ))
            .into());
        }
        let mut parse_errors = Vec::new();
        let mut interfaces = Vec::with_capacity(docs.len());
        for doc in docs {
            match Interface::parse(doc) {
                Ok(interface) => interfaces.push(interface),
                Err(e) => parse_errors.push(e.to_string()),
            }
        }
        if !parse_errors.is_empty() {
            return Err(AdtFailure::dtdl_parser_error(parse_errors.join("; ")).into());
        }
        let mut batch: HashMap<&str, usize> = HashMap::new();
        for (index, interface) in interfaces.iter().enumerate() {
            if batch.insert(interface.id.as_str(), index).is_some() {
                return Err(AdtFailure::dtdl_parser_error(format!(
                    "the model {} appears more than once in the request; send each model once",
                    interface.id
                ))
                .into());
            }
        }

        let _writer = self.writer.lock();
        let current = self.snapshot();
        let existing: Vec<String> =
            interfaces.iter().filter(|i| current.get(&i.id).is_some()).map(|i| i.id.clone()).collect();
        if !existing.is_empty() {
            return Err(AdtFailure::models_already_exist(&existing).into());
        }
        if current.len() + interfaces.len() > limits.max_models {
            return Err(AdtFailure::limit_exceeded(format!(
                "the instance holds {} models and may hold at most {}; {} more cannot be added",
                current.len(),
                limits.max_models,
                interfaces.len()
            ))
            .into());
        }
        check_references_resolve(&interfaces, &batch, &current)?;

        let resolver = BatchResolver { interfaces: &interfaces, docs, batch: &batch, current: &current };
        let mut resolved: HashMap<usize, ResolvedModel> = HashMap::new();
        for index in 0..interfaces.len() {
            resolver.resolve(index, &mut resolved, &mut Vec::new())?;
        }
        for interface in &interfaces {
            resolver.check_components(interface, &resolved)?;
        }

        let mut next = (*current).clone();
        let mut added = Vec::with_capacity(interfaces.len());
        for (index, (interface, doc)) in interfaces.into_iter().zip(docs).enumerate() {
            let entry = Arc::new(ModelEntry {
                id: interface.id.clone(),
                definition: doc.clone(),
                interface,
                upload_time: now.to_string(),
                resolved: resolved.remove(&index).unwrap_or_default(),
                decommissioned: AtomicBool::new(false),
                twins_using: AtomicUsize::new(0),
                deleted: AtomicBool::new(false),
            });
            next.by_id.insert(entry.id.clone(), entry.clone());
            added.push(entry);
        }
        *self.current.write() = Arc::new(next);
        Ok(added)
    }

    /// `PATCH /models/{id}` with `/decommissioned: true`; idempotent.
    pub fn decommission(&self, id: &str) -> Result<(), AdtFailure> {
        let current = self.snapshot();
        let entry = current.get(id).ok_or_else(|| AdtFailure::model_not_found(id))?;
        entry.decommission();
        Ok(())
    }

    /// `DELETE /models/{id}`: refused while another model extends it or uses it as a component
    /// schema. Twins of it do not block it (live: 204, the twins stay).
    pub fn delete(&self, id: &str) -> Result<(), AdtFailure> {
        let _writer = self.writer.lock();
        let current = self.snapshot();
        let entry = current.get(id).ok_or_else(|| AdtFailure::model_not_found(id))?;
        let referrers: Vec<&str> =
            current.iter().filter(|m| m.interface.dependencies().any(|d| d == id)).map(|m| m.id.as_str()).collect();
        if !referrers.is_empty() {
            return Err(AdtFailure::model_references_not_deleted(&referrers.join(", ")));
        }
        entry.deleted.store(true, Ordering::SeqCst);
        let mut next = (*current).clone();
        next.by_id.remove(id);
        *self.current.write() = Arc::new(next);
        Ok(())
    }
}

/// Every `extends` and component schema must name a model in the batch or in the instance.
/// The message follows the live one (RealEstateCore/rec#154).
fn check_references_resolve(
    interfaces: &[Interface],
    batch: &HashMap<&str, usize>,
    current: &ModelSet,
) -> Result<(), BatchRefused> {
    let mut unresolved: BTreeMap<&str, usize> = BTreeMap::new();
    for interface in interfaces {
        for dependency in interface.dependencies() {
            if !batch.contains_key(dependency) && current.get(dependency).is_none() {
                *unresolved.entry(dependency).or_default() += 1;
            }
        }
    }
    if unresolved.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> = unresolved
        .iter()
        .map(|(id, n)| format!("{id} (referenced in {n} place{})", if *n == 1 { "" } else { "s" }))
        .collect();
    Err(BatchRefused {
        failure: AdtFailure::dtdl_parser_error(format!(
            "DtmiResolverAsync failed to resolve requisite references to element(s): {}. Upload the referenced models first or in the same request.",
            listed.join(", ")
        )),
        order_violation: true,
    })
}

/// Merges inherited contents into each model of a batch, bases first.
struct BatchResolver<'a> {
    interfaces: &'a [Interface],
    docs: &'a [Value],
    batch: &'a HashMap<&'a str, usize>,
    current: &'a ModelSet,
}

impl BatchResolver<'_> {
    fn resolve(
        &self,
        index: usize,
        done: &mut HashMap<usize, ResolvedModel>,
        visiting: &mut Vec<usize>,
    ) -> Result<(), BatchRefused> {
        if done.contains_key(&index) {
            return Ok(());
        }
        let interface = &self.interfaces[index];
        if visiting.contains(&index) {
            return Err(AdtFailure::dtdl_parser_error(format!(
                "{} extends itself through a cycle of extends",
                interface.id
            ))
            .into());
        }
        visiting.push(index);
        let mut resolved = ResolvedModel::default();
        let mut parent_depth = 0;
        for parent in &interface.extends {
            let parent_resolved = match self.batch.get(parent.as_str()) {
                Some(&parent_index) => {
                    self.resolve(parent_index, done, visiting)?;
                    let parent_interface = &self.interfaces[parent_index];
                    check_version_rule(interface, parent_interface, "extends")?;
                    done.get(&parent_index).cloned().unwrap_or_default()
                }
                None => {
                    // check_references_resolve ran first, so the parent is in the instance.
                    let Some(entry) = self.current.get(parent) else { continue };
                    check_version_rule(interface, &entry.interface, "extends")?;
                    entry.resolved.clone()
                }
            };
            parent_depth = parent_depth.max(parent_resolved.depth);
            resolved.ancestors.extend(parent_resolved.ancestors);
            resolved.properties.extend(parent_resolved.properties);
            resolved.relationships.extend(parent_resolved.relationships);
            resolved.components.extend(parent_resolved.components);
            resolved.telemetry.extend(parent_resolved.telemetry);
            resolved.named_schemas.extend(parent_resolved.named_schemas);
        }
        resolved.depth = parent_depth + 1;
        if resolved.depth > MAX_EXTENDS_DEPTH {
            return Err(AdtFailure::dtdl_parser_error(format!(
                "{} has an extends chain {} deep; DTDL allows at most {MAX_EXTENDS_DEPTH}",
                interface.id, resolved.depth
            ))
            .into());
        }
        let inherited: HashSet<&str> = resolved
            .properties
            .keys()
            .chain(resolved.relationships.keys())
            .chain(resolved.components.keys())
            .chain(resolved.telemetry.iter())
            .map(String::as_str)
            .collect();
        let own_names = interface
            .properties
            .iter()
            .map(|p| p.name.as_str())
            .chain(interface.relationships.iter().map(|r| r.name.as_str()))
            .chain(interface.components.iter().map(|c| c.name.as_str()))
            .chain(interface.telemetry.iter().map(String::as_str));
        if let Some(clash) = own_names.into_iter().find(|n| inherited.contains(n)) {
            return Err(AdtFailure::dtdl_parser_error(format!(
                "{} declares '{clash}', which it already inherits through extends; a child interface may not redeclare a parent's content",
                interface.id
            ))
            .into());
        }
        resolved.ancestors.insert(interface.id.clone());
        for p in &interface.properties {
            resolved.properties.insert(p.name.clone(), p.schema.clone());
        }
        for r in &interface.relationships {
            resolved.relationships.insert(r.name.clone(), r.clone());
        }
        for c in &interface.components {
            resolved.components.insert(c.name.clone(), c.schema.clone());
        }
        resolved.telemetry.extend(interface.telemetry.iter().cloned());
        // The parsed Interface keeps no `schemas`; they come from the original document.
        if let Some(doc) = self.docs.get(index) {
            collect_named_schemas(doc, &mut resolved.named_schemas);
        }
        visiting.pop();
        done.insert(index, resolved);
        Ok(())
    }

    /// ADT: a component's interface may not itself contain components; a v2 interface may not
    /// use a v3 interface as a component.
    fn check_components(
        &self,
        interface: &Interface,
        resolved: &HashMap<usize, ResolvedModel>,
    ) -> Result<(), BatchRefused> {
        for component in &interface.components {
            let (schema_interface, schema_components) = match self.batch.get(component.schema.as_str()) {
                Some(&i) => (&self.interfaces[i], resolved.get(&i).map(|r| r.components.len()).unwrap_or(0)),
                None => match self.current.get(&component.schema) {
                    Some(entry) => (&entry.interface, entry.resolved.components.len()),
                    None => continue,
                },
            };
            check_version_rule(interface, schema_interface, "uses as a component")?;
            if schema_components > 0 {
                return Err(AdtFailure::dtdl_parser_error(format!(
                    "{}'s component '{}' has schema {}, which itself contains components; Azure Digital Twins allows one level of components only",
                    interface.id, component.name, component.schema
                ))
                .into());
            }
        }
        Ok(())
    }
}

fn check_version_rule(child: &Interface, referenced: &Interface, how: &str) -> Result<(), BatchRefused> {
    if child.dtdl_version == 2 && referenced.dtdl_version == 3 {
        return Err(AdtFailure::dtdl_parser_error(format!(
            "{} is DTDL v2 and {how} {}, which is DTDL v3; a v2 interface may not extend or use a v3 interface",
            child.id, referenced.id
        ))
        .into());
    }
    Ok(())
}

/// Collects `schemas` entries with an `@id` (and complex schemas with an `@id` nested in
/// property declarations), so a property whose schema is a DTMI can be checked.
pub fn collect_named_schemas(definition: &Value, into: &mut HashMap<String, Value>) {
    match definition {
        Value::Object(map) => {
            if let (Some(Value::String(id)), Some(Value::String(t))) = (map.get("@id"), map.get("@type")) {
                if matches!(t.as_str(), "Object" | "Map" | "Array" | "Enum") {
                    into.insert(id.clone(), definition.clone());
                }
            }
            for value in map.values() {
                collect_named_schemas(value, into);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_named_schemas(v, into)),
        _ => {}
    }
}
