//! Pre-flight checks: everything that can be found wrong before a single write, each reported
//! with what is wrong, where, and what to do.
//!
//! Per item, as it is read ([`add_item`]): duplicates (the second occurrence is rejected, naming
//! the first), bad DTMIs, models ADT would not accept (`crate::dtdl::Interface::parse`), bodies
//! over `limits.max_payload_bytes`, relationships from a twin to itself, numbers and nesting ADT's
//! JSON reader refuses ([`super::json_limits`]). After reading:
//! component and version rules that need other models ([`check_models`]), cycles among models
//! ([`check_cycles`]), and relationships past `limits.max_relationships_per_twin` out of or into
//! one twin ([`check_degrees`]; the excess relationships are rejected, in input order, not the
//! twin).

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use rustc_hash::FxHashMap;
use serde_json::Value;

use super::arena::{ModelMeta, Record, NONE};
use super::json_limits::json_problem;
use super::{ItemId, Plan, ReasonCode, Status};
use crate::dtdl::{validate_dtmi, validate_interface_dtmi, Interface};
use crate::item::Item;

/// Records one item read from the input and runs the checks that need only the item.
pub(crate) fn add_item(plan: &mut Plan, item: Item) {
    let body_len = item.body().get().len();
    let max_bytes = plan.opts.limits.max_payload_bytes;
    let origin = item.origin().clone();
    let problem = match &item {
        Item::Model(m) => {
            let (meta, problem) = read_model(plan, m);
            let model = plan.arena.model(&m.id);
            let meta_index = plan.arena.model_meta.len() as u32;
            let id = plan.arena.push(
                Record::Model { id: model, body_len: body_len.min(u32::MAX as usize) as u32, meta: meta_index },
                &origin,
            );
            plan.arena.model_meta.push(ModelMeta { item: id, ..meta });
            let problem = match plan.arena.model_item_of(model) {
                Some(first) => Some(duplicate("model", &m.id, plan, first)),
                None => {
                    plan.arena.model_item[model as usize] = id;
                    problem
                }
            };
            problem.or_else(|| {
                too_large(
                    "model",
                    &m.id,
                    body_len,
                    max_bytes,
                    "ADT takes at most that in one request, so it cannot be uploaded; split the model",
                )
            })
        }
        Item::Twin(t) => {
            let twin = plan.arena.twin(&t.id);
            // A patch leaves the twin's model as it is: it depends on no model.
            let model = (!t.patch).then(|| plan.arena.model(&t.model));
            let id = plan.arena.push(Record::Twin { id: twin, model }, &origin);
            bad_id("twin", "$dtId", &t.id)
                .or_else(|| match plan.arena.twin_item_of(twin) {
                    Some(first) => Some(duplicate("twin", &t.id, plan, first)),
                    None => {
                        plan.arena.twin_item[twin as usize] = id;
                        None
                    }
                })
                .or_else(|| {
                    if t.patch {
                        return None;
                    }
                    validate_dtmi(&t.model, 3)
                        .err()
                        .map(|e| (ReasonCode::BadDtmi, format!("twin {}: its $metadata.$model {e}", t.id)))
                })
                .or_else(|| {
                    too_large(
                        "twin",
                        &t.id,
                        body_len,
                        max_bytes,
                        "ADT's limit for one twin; move large values out of the twin",
                    )
                })
        }
        Item::Relationship(r) => {
            let source = plan.arena.twin(&r.source);
            let target = plan.arena.twin(&r.target);
            let rel = plan.arena.labels.intern(&r.id);
            let name = plan.arena.labels.intern(&r.name);
            let id = plan.arena.push(Record::Relationship { source, target, id: rel, name }, &origin);
            let what = format!("{}/{}", r.source, r.id);
            bad_id("relationship", "$dtId", &r.source)
                .or_else(|| bad_id("relationship", "$relationshipId", &r.id))
                .or_else(|| bad_id("relationship", "$targetId", &r.target))
                .or_else(|| match plan.arena.relationship_item.get(&(source, rel)).copied() {
                    Some(first) => Some(duplicate("relationship", &what, plan, first)),
                    None => {
                        plan.arena.relationship_item.insert((source, rel), id);
                        None
                    }
                })
            .or_else(|| {
                (source == target).then(|| {
                    (ReasonCode::SelfRelationship, format!("relationship {what} goes from twin {} to itself, which ADT does not allow; point $targetId at another twin", r.source))
                })
            })
            .or_else(|| too_large("relationship", &what, body_len, max_bytes, "ADT's request limit; move large values out of the relationship"))
        }
    };
    // Last: a problem found above says more about the item than its JSON's numbers.
    let problem = problem.or_else(|| json_problem(item.body().get()).map(|why| (ReasonCode::ParseError, why)));
    plan.status.push(Status::Accepted);
    plan.rejection_of.push(NONE);
    let id = plan.arena.len() as ItemId - 1;
    if let Some((code, reason)) = problem {
        plan.reject(id, code, reason, Some(item.body().get().to_string()));
    }
    if let Some(bodies) = plan.bodies.as_mut() {
        bodies.push(item.body());
    }
}

/// An id ADT cannot take as a URL path segment: empty, `.` or `..` (which a URL resolver folds
/// into another path, so the write would go somewhere else), or one with control characters.
fn bad_id(kind: &str, key: &str, id: &str) -> Option<(ReasonCode, String)> {
    let why = match id {
        "" => "is empty",
        "." | ".." => "is a dot path segment, which would address another URL",
        _ if id.chars().any(char::is_control) => "holds a control character",
        _ => return None,
    };
    let shown: String = id.escape_debug().collect();
    Some((
        ReasonCode::BadId,
        format!("{kind}'s {key} \"{shown}\" {why}; ADT cannot take it in a URL path, so give the item another id"),
    ))
}

fn duplicate(kind: &str, what: &str, plan: &Plan, first: ItemId) -> (ReasonCode, String) {
    let first_at = plan.arena.origin(first);
    (ReasonCode::Duplicate, format!("{kind} {what} appears twice: first at {first_at}, again here; the first is loaded, so remove or rename this one"))
}

fn too_large(kind: &str, what: &str, len: usize, max: usize, advice: &str) -> Option<(ReasonCode, String)> {
    (len > max)
        .then(|| (ReasonCode::TooLarge, format!("{kind} {what} is {len} bytes, over the {max}-byte limit: {advice}")))
}

/// Reads a model with the DTDL rules; returns what the planner keeps of it and the first
/// problem found, if any.
fn read_model(plan: &mut Plan, m: &crate::item::ModelItem) -> (ModelMeta, Option<(ReasonCode, String)>) {
    let doc: Option<Value> = serde_json::from_str(m.body.get()).ok();
    let parsed = doc.as_ref().map(Interface::parse);
    let version = match &parsed {
        Some(Ok(i)) => i.dtdl_version,
        _ => sniff_dtdl_version(doc.as_ref()),
    };
    let mut meta = ModelMeta {
        dtdl_version: if matches!(parsed, Some(Ok(_))) { version } else { 0 },
        depends_on: m.depends_on.clone(),
        ..ModelMeta::default()
    };
    match &parsed {
        Some(Ok(interface)) => {
            meta.deps = interface.dependencies().map(|d| plan.arena.model(d)).collect();
            meta.extends = interface.extends.iter().map(|d| plan.arena.model(d)).collect();
            meta.component_schemas = interface.components.iter().map(|c| plan.arena.model(&c.schema)).collect();
            meta.has_components = !interface.components.is_empty();
        }
        _ => meta.deps = m.depends_on.iter().map(|d| plan.arena.model(d)).collect(),
    }
    if let Err(e) = validate_interface_dtmi(&m.id, version) {
        return (meta, Some((ReasonCode::BadDtmi, format!("model {}: its @id {e}", m.id))));
    }
    if let Some(e) = m.depends_on.iter().find_map(|d| validate_dtmi(d, version).err()) {
        return (meta, Some((ReasonCode::BadDtmi, format!("model {}: in extends or a component schema, {e}", m.id))));
    }
    let problem = match parsed {
        Some(Err(e)) => {
            Some((ReasonCode::InvalidModel, format!("model {} is not an Interface ADT accepts: {}", m.id, e.reason)))
        }
        None => Some((ReasonCode::InvalidModel, format!("model {} is not valid JSON", m.id))),
        Some(Ok(_)) => None,
    };
    (meta, problem)
}

fn sniff_dtdl_version(doc: Option<&Value>) -> u8 {
    let context = doc.and_then(|d| d.get("@context"));
    let first = match context {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(Value::Array(items)) => items.first().and_then(Value::as_str),
        _ => None,
    };
    if first == Some("dtmi:dtdl:context;3") {
        3
    } else {
        2
    }
}

/// Rules between models of the input: a component's interface may not have components itself
/// (ADT allows one level), and a DTDL v2 model may not extend or use a v3 one.
pub(crate) fn check_models(plan: &mut Plan) {
    let mut problems = Vec::new();
    for meta in &plan.arena.model_meta {
        let id = meta.item;
        if plan.is_rejected(id) {
            continue;
        }
        let name = |idx| plan.arena.models.name(idx);
        let model_meta = |idx| plan.arena.model_item_of(idx).and_then(|item| plan.arena.meta_of(item));
        let own = match plan.arena.record(id) {
            Record::Model { id, .. } => id,
            _ => continue,
        };
        for &schema in &meta.component_schemas {
            if model_meta(schema).is_some_and(|m| m.has_components) {
                problems.push((id, format!("model {} uses {} as a component, but {} has components itself; ADT allows one level of components", name(own), name(schema), name(schema))));
            }
        }
        if meta.dtdl_version == 2 {
            for &dep in &meta.deps {
                if model_meta(dep).is_some_and(|m| m.dtdl_version == 3) {
                    problems.push((id, format!("model {} is DTDL v2 and cannot extend or use the DTDL v3 model {}; make both the same version or move {} to v3", name(own), name(dep), name(own))));
                }
            }
        }
    }
    for (id, reason) in problems {
        plan.reject(id, ReasonCode::InvalidModel, reason, None);
    }
}

/// Models that depend on each other in a loop (through extends or component schemas) can never
/// be uploaded: every member of a cycle is rejected, naming the cycle.
pub(crate) fn check_cycles(plan: &mut Plan) {
    // Edges point from a model to what it depends on, so a path reads "needs, needs, …".
    let mut graph: DiGraph<ItemId, (), u32> = DiGraph::default();
    let mut node_of: FxHashMap<ItemId, NodeIndex<u32>> = FxHashMap::default();
    for meta in &plan.arena.model_meta {
        if !plan.is_rejected(meta.item) && is_first(plan, meta.item) {
            node_of.insert(meta.item, graph.add_node(meta.item));
        }
    }
    for (&id, &node) in &node_of {
        for dep in plan.graph.dependencies(id) {
            if let Some(&dep_node) = node_of.get(&dep) {
                graph.add_edge(node, dep_node, ());
            }
        }
    }
    let mut cycles = Vec::new();
    for component in tarjan_scc(&graph) {
        let looped = component.len() > 1 || graph.contains_edge(component[0], component[0]);
        if looped {
            cycles.push(name_cycle(&graph, &component, plan));
        }
    }
    for (members, description) in cycles {
        for id in members {
            plan.reject(id, ReasonCode::Cycle, format!("models depend on each other in a cycle ({description}, each needing the next through extends or a component schema); break the cycle"), None);
        }
    }
}

fn is_first(plan: &Plan, id: ItemId) -> bool {
    match plan.arena.record(id) {
        Record::Model { id: model, .. } => plan.arena.model_item_of(model) == Some(id),
        _ => false,
    }
}

/// The members of a strongly connected component and one cycle through them, as
/// "A → B → A", starting from the member read first.
fn name_cycle(graph: &DiGraph<ItemId, (), u32>, component: &[NodeIndex<u32>], plan: &Plan) -> (Vec<ItemId>, String) {
    let members: Vec<ItemId> = component.iter().map(|n| graph[*n]).collect();
    let start = *component.iter().min_by_key(|n| graph[**n]).unwrap_or(&component[0]);
    let in_component = |n: &NodeIndex<u32>| component.contains(n);
    // Breadth-first from the start back to itself, within the component.
    let mut previous: FxHashMap<NodeIndex<u32>, NodeIndex<u32>> = FxHashMap::default();
    let mut queue = std::collections::VecDeque::from([start]);
    let mut closing = None;
    'search: while let Some(n) = queue.pop_front() {
        let mut next: Vec<_> = graph.neighbors(n).filter(in_component).collect();
        next.sort_by_key(|m| graph[*m]);
        for m in next {
            if m == start {
                closing = Some(n);
                break 'search;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = previous.entry(m) {
                e.insert(n);
                queue.push_back(m);
            }
        }
    }
    let name = |n: NodeIndex<u32>| match plan.arena.key(graph[n]) {
        crate::item::ItemKey::Model { id } => id,
        other => other.to_string(),
    };
    let mut path = vec![name(start)];
    if let Some(mut n) = closing {
        let mut back = Vec::new();
        while n != start {
            back.push(name(n));
            match previous.get(&n) {
                Some(p) => n = *p,
                None => break,
            }
        }
        path.extend(back.into_iter().rev());
    }
    path.push(name(start));
    (members, path.join(" → "))
}

/// ADT takes at most `max_relationships_per_twin` relationships out of one twin, and as many
/// into one. Past that, the relationships read later are rejected; the twin and the others stay.
pub(crate) fn check_degrees(plan: &mut Plan) {
    let max = plan.opts.limits.max_relationships_per_twin as u64;
    let twins = plan.arena.twins.len();
    let mut outgoing = vec![0u32; twins];
    let mut incoming = vec![0u32; twins];
    let mut excess = Vec::new();
    for (i, record) in plan.arena.records.iter().enumerate() {
        let Record::Relationship { source, target, .. } = *record else { continue };
        if plan.status[i] == Status::Rejected {
            continue;
        }
        let (s, t) = (source as usize, target as usize);
        if u64::from(outgoing[s]) >= max {
            excess.push((i as ItemId, format!("twin {} already has {max} outgoing relationships in this input, ADT's limit; this one is past it (move the excess elsewhere, or model such links as properties)", plan.twin_name(source))));
        } else if u64::from(incoming[t]) >= max {
            excess.push((i as ItemId, format!("twin {} already has {max} incoming relationships in this input, ADT's limit; this one is past it (move the excess elsewhere, or model such links as properties)", plan.twin_name(target))));
        } else {
            outgoing[s] += 1;
            incoming[t] += 1;
        }
    }
    for (id, reason) in excess {
        plan.reject(id, ReasonCode::TooManyRelationships, reason, None);
    }
}
