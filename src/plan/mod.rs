//! The planner: reads every item, builds the dependency graph, checks the input before anything
//! is written, packs models into upload batches, states the ideal makespan T*, and hands the
//! run a [`Scheduler`] that releases each item only once everything it depends on has landed.
//!
//! - [`arena`]: compact per-item records and interned ids (millions of items in little memory).
//! - [`bodies`]: the items' bodies, in a temporary file until they are written.
//! - [`graph`]: the dependency graph (petgraph): model → model (extends, component schemas),
//!   model → twin, twin → relationship (source and target).
//! - [`checks`]: pre-flight checks, each naming what is wrong and where.
//! - [`json_limits`]: numbers and nesting that ADT's JSON reader refuses.
//! - [`batches`]: topological order and model upload batches.
//! - [`makespan`]: T*, the least time the limits allow for the whole load.
//! - [`scheduler`]: readiness counters, release on landed, transitive rejection on failure.
//! - [`cli`]: `twinload plan`.
//!
//! Item ids ([`ItemId`]) index the plan's arena in input order; parse errors get no id.

mod arena;
pub mod batches;
mod bodies;
pub(crate) mod checks;
pub mod cli;
pub(crate) mod graph;
pub mod json_limits;
pub mod makespan;
pub mod scheduler;

use serde::Serialize;

use crate::item::{Item, ItemKey, ItemKind, ModelItem, Origin, RelationshipItem, TwinItem};
use crate::limits::Limits;
use crate::source::SourceError;

use arena::{Arena, Record};
use bodies::Bodies;
pub use bodies::BodyError;
pub use makespan::Makespan;
pub use scheduler::{Scheduler, Work};

/// Index into the plan's item arena (input order).
pub type ItemId = u32;

/// How to plan.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub limits: Limits,
    /// Models per `POST /models` call, at most `limits.max_models_per_call`. Real ADT rejects
    /// big batches sooner than its documented 250 (FIELD.md), hence a smaller default.
    pub model_batch_size: usize,
    /// Keep every item's body for the run, in a temporary file ([`bodies`]); `false` for
    /// `twinload plan`, which writes nothing.
    pub keep_bodies: bool,
}

impl PlanOptions {
    /// The default models per upload call.
    pub const DEFAULT_MODEL_BATCH_SIZE: usize = 100;

    pub fn new(limits: Limits) -> PlanOptions {
        PlanOptions { limits, model_batch_size: Self::DEFAULT_MODEL_BATCH_SIZE, keep_bodies: true }
    }

    /// The batch size actually used: at least 1, at most what one ADT call takes.
    pub fn effective_batch_size(&self) -> usize {
        self.model_batch_size.clamp(1, self.limits.max_models_per_call.max(1))
    }
}

impl Default for PlanOptions {
    fn default() -> PlanOptions {
        PlanOptions::new(Limits::adt_default())
    }
}

pub use crate::reason::ReasonCode;

/// Why an item will not be (or was not) written. `code` is a short stable slug for tallies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    /// The item's identity. For a line that is not an item at all (a broken section marker, a
    /// missing header) it is a twin key with an empty id; [`Rejected::is_item`] tells.
    pub key: ItemKey,
    pub origin: Origin,
    pub code: ReasonCode,
    /// What is wrong, where, and what to do; names the other place for duplicates.
    pub reason: String,
    /// The item as read (or the offending line, truncated), for the dead-letter file.
    pub item_json: Option<String>,
}

impl Rejected {
    /// False for a problem with a file's structure rather than one item.
    pub fn is_item(&self) -> bool {
        !(self.code == ReasonCode::ParseError && self.reason.starts_with(NOT_AN_ITEM_PREFIX))
    }
}

/// The reason of an item that will not be written because something it needs failed: the
/// item it depends on directly, and the failure at the root of the chain, once. Naming every
/// link in between made each reason as long as the chain: a 5,000-deep `extends` chain gave
/// 489 MB of dead letters. This way their size grows with the number of items only.
pub(crate) fn dependency_failed(dependency: &ItemKey, root: &ItemKey, root_reason: &str) -> String {
    if dependency == root {
        format!("dependency {root} failed: {root_reason}")
    } else {
        format!("dependency {dependency} failed: dependency {root} failed (the root cause): {root_reason}")
    }
}

/// Starts the reason of a structural (non-item) parse error, so `is_item` can tell it.
const NOT_AN_ITEM_PREFIX: &str = "file structure: ";

/// Read, to write and rejected, for one kind of item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KindCounts {
    pub read: u64,
    pub to_write: u64,
    pub rejected: u64,
}

/// Counts per kind of item, plus problems with a file's structure that are no item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PlanCounts {
    pub models: KindCounts,
    pub twins: KindCounts,
    pub relationships: KindCounts,
    /// Parse errors that are about a file's structure (a missing header, an unknown section).
    pub file_errors: u64,
}

impl PlanCounts {
    pub fn of(&self, kind: ItemKind) -> &KindCounts {
        match kind {
            ItemKind::Model => &self.models,
            ItemKind::Twin => &self.twins,
            ItemKind::Relationship => &self.relationships,
        }
    }

    fn of_mut(&mut self, kind: ItemKind) -> &mut KindCounts {
        match kind {
            ItemKind::Model => &mut self.models,
            ItemKind::Twin => &mut self.twins,
            ItemKind::Relationship => &mut self.relationships,
        }
    }

    pub fn total_rejected(&self) -> u64 {
        self.models.rejected + self.twins.rejected + self.relationships.rejected + self.file_errors
    }
}

/// Per-item state in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Accepted,
    Rejected,
}

/// What the input asks for, checked, in dependency order. See the module doc.
pub struct Plan {
    pub(crate) opts: PlanOptions,
    pub(crate) arena: Arena,
    /// By item id, when `keep_bodies`.
    pub(crate) bodies: Option<Bodies>,
    pub(crate) status: Vec<Status>,
    pub(crate) rejected: Vec<Rejected>,
    /// By item id: index into `rejected` of its rejection (NONE when accepted).
    pub(crate) rejection_of: Vec<u32>,
    pub(crate) graph: graph::DependencyGraph,
    pub(crate) batches: Vec<Vec<ItemId>>,
    /// Parse errors per kind (they have no item id).
    parse_errors: PlanCounts,
    /// External twins and models that ADT was found to hold (after `resolve_external`).
    pub(crate) externals_resolved: bool,
}

impl Plan {
    /// Reads every item (SourceErrors become Rejected "parse_error"), builds the graph and runs
    /// the local checks (cycles naming the cycle, duplicates naming both places, bad DTMIs,
    /// twins over limits.max_payload_bytes, > limits.max_relationships_per_twin in or out).
    pub fn build(items: impl IntoIterator<Item = Result<Item, SourceError>>, opts: &PlanOptions) -> Plan {
        let mut builder = Plan::builder(opts);
        for result in items {
            builder.add(result);
        }
        builder.finish()
    }

    /// A plan fed one item at a time (as ingestion streams them), then finished.
    pub fn builder(opts: &PlanOptions) -> PlanBuilder {
        PlanBuilder(Plan {
            opts: opts.clone(),
            arena: Arena::default(),
            bodies: opts.keep_bodies.then(Bodies::new),
            status: Vec::new(),
            rejected: Vec::new(),
            rejection_of: Vec::new(),
            graph: graph::DependencyGraph::default(),
            batches: Vec::new(),
            parse_errors: PlanCounts::default(),
            externals_resolved: false,
        })
    }
}

/// A plan being read: [`PlanBuilder::add`] each item as it comes, then
/// [`PlanBuilder::finish`] runs the checks that need them all.
pub struct PlanBuilder(Plan);

impl PlanBuilder {
    /// One item read, or why a line could not be read as one.
    pub fn add(&mut self, result: Result<Item, SourceError>) {
        match result {
            Ok(item) => checks::add_item(&mut self.0, item),
            Err(e) => self.0.add_parse_error(e),
        }
    }

    /// Builds the graph and runs the checks that need every item.
    pub fn finish(self) -> Plan {
        let mut plan = self.0;
        checks::check_models(&mut plan);
        plan.graph = graph::DependencyGraph::build(&plan.arena);
        checks::check_cycles(&mut plan);
        let already: Vec<ItemId> = (0..plan.arena.len() as ItemId).filter(|&id| plan.is_rejected(id)).collect();
        plan.cascade(&already);
        checks::check_degrees(&mut plan);
        plan.batches = batches::pack(&plan);
        plan
    }
}

impl Plan {
    fn add_parse_error(&mut self, e: SourceError) {
        let (key, reason) = match e.key {
            Some(key) => {
                self.parse_errors.of_mut(key.kind()).read += 1;
                self.parse_errors.of_mut(key.kind()).rejected += 1;
                (key, e.message)
            }
            None => {
                self.parse_errors.file_errors += 1;
                (ItemKey::Twin { id: String::new() }, format!("{NOT_AN_ITEM_PREFIX}{}", e.message))
            }
        };
        self.rejected.push(Rejected { key, origin: e.origin, code: ReasonCode::ParseError, reason, item_json: e.raw });
    }

    pub(crate) fn is_rejected(&self, id: ItemId) -> bool {
        self.status[id as usize] == Status::Rejected
    }

    /// Rejects one item (the first reason stands). Returns false if it already was.
    pub(crate) fn reject(&mut self, id: ItemId, code: ReasonCode, reason: String, item_json: Option<String>) -> bool {
        if self.is_rejected(id) {
            return false;
        }
        self.status[id as usize] = Status::Rejected;
        self.rejection_of[id as usize] = self.rejected.len() as u32;
        let item_json = item_json.or_else(|| self.body_json(id));
        self.rejected.push(Rejected {
            key: self.arena.key(id),
            origin: self.arena.origin(id),
            code,
            reason,
            item_json,
        });
        true
    }

    pub(crate) fn body_json(&self, id: ItemId) -> Option<String> {
        self.bodies.as_ref().and_then(|b| b.text(id))
    }

    /// The item as read, rebuilt from its record and its body.
    ///
    /// # Panics
    /// If the plan was built with `keep_bodies: false` (as `twinload plan` does).
    pub(crate) fn item(&self, id: ItemId) -> Result<Item, BodyError> {
        let bodies = self.bodies.as_ref().expect("Plan::item needs a plan built with PlanOptions::keep_bodies = true");
        let body = bodies.get(id)?;
        let origin = self.arena.origin(id);
        let arena = &self.arena;
        Ok(match arena.record(id) {
            Record::Model { id: model, meta, .. } => Item::Model(ModelItem {
                id: arena.models.name(model).to_string(),
                depends_on: arena.model_meta.get(meta as usize).map(|m| m.depends_on.clone()).unwrap_or_default(),
                body,
                origin,
            }),
            Record::Twin { id: twin, model } => Item::Twin(TwinItem {
                id: arena.twins.name(twin).to_string(),
                model: model.map(|m| arena.models.name(m).to_string()).unwrap_or_default(),
                body,
                patch: model.is_none(),
                origin,
            }),
            Record::Relationship { source, target, id: rel, name } => Item::Relationship(RelationshipItem {
                source: arena.twins.name(source).to_string(),
                id: arena.labels.name(rel).to_string(),
                target: arena.twins.name(target).to_string(),
                name: arena.labels.name(name).to_string(),
                body,
                origin,
            }),
        })
    }

    pub(crate) fn reason_of(&self, id: ItemId) -> &str {
        self.rejected.get(self.rejection_of[id as usize] as usize).map(|r| r.reason.as_str()).unwrap_or("")
    }

    /// Rejects, transitively, everything that depends on the given (rejected) items. Each
    /// reason names the item depended on and the root's failure (see [`dependency_failed`]).
    pub(crate) fn cascade(&mut self, roots: &[ItemId]) {
        let mut stack: Vec<(ItemId, ItemId)> = roots.iter().map(|&root| (root, root)).collect();
        while let Some((id, root)) = stack.pop() {
            let dependents: Vec<ItemId> = self.graph.dependents(id).collect();
            for d in dependents {
                if self.is_rejected(d) {
                    continue;
                }
                let reason = dependency_failed(&self.arena.key(id), &self.arena.key(root), self.reason_of(root));
                self.reject(d, ReasonCode::DependencyFailed, reason, None);
                stack.push((d, root));
            }
        }
    }

    /// Models referenced (by twins, extends, component schemas) that the input does not hold,
    /// by items still to be written. Sorted.
    pub fn external_models(&self) -> Vec<String> {
        self.still_needed(self.graph.external_models(), |m| self.arena.models.name(m))
    }

    /// Twins referenced by relationships that the input does not hold, by relationships still to
    /// be written. Sorted.
    pub fn external_twins(&self) -> Vec<String> {
        self.still_needed(self.graph.external_twins(), |t| self.arena.twins.name(t))
    }

    /// The names of external references that some item still to be written needs, sorted.
    fn still_needed<'a>(
        &'a self,
        externals: impl Iterator<Item = (u32, graph::NodeIndex)>,
        name: impl Fn(u32) -> &'a str,
    ) -> Vec<String> {
        let mut out: Vec<String> = externals
            .filter(|(_, node)| self.graph.dependents_of_node(*node).any(|d| !self.is_rejected(d)))
            .map(|(idx, _)| name(idx).to_string())
            .collect();
        out.sort();
        out
    }

    /// What ADT holds of those (the runner asks ADT: one GET /models listing, GET per external
    /// twin). Whatever is still missing is Rejected ("missing_model"/"missing_twin"), and so are
    /// its dependents ("dependency_failed").
    pub fn resolve_external(
        &mut self,
        models_in_adt: &std::collections::HashSet<String>,
        twins_in_adt: &std::collections::HashSet<String>,
    ) {
        let missing_models: Vec<_> =
            self.graph.external_models().filter(|(m, _)| !models_in_adt.contains(self.arena.models.name(*m))).collect();
        let missing_twins: Vec<_> =
            self.graph.external_twins().filter(|(t, _)| !twins_in_adt.contains(self.arena.twins.name(*t))).collect();
        let mut roots = Vec::new();
        for (model, node) in missing_models {
            let name = self.arena.models.name(model).to_string();
            for d in self.graph.dependents_of_node(node).collect::<Vec<_>>() {
                let how = match self.arena.record(d) {
                    Record::Twin { .. } => "its $metadata.$model",
                    _ => "it extends it or uses it as a component schema",
                };
                let reason = format!("model {name} is neither in the input nor in ADT ({how}); add the model to the input or upload it first");
                if self.reject(d, ReasonCode::MissingModel, reason, None) {
                    roots.push(d);
                }
            }
        }
        for (twin, node) in missing_twins {
            let name = self.arena.twins.name(twin).to_string();
            for d in self.graph.dependents_of_node(node).collect::<Vec<_>>() {
                let end = match self.arena.record(d) {
                    Record::Relationship { source, .. } if source == twin => "source",
                    _ => "target",
                };
                let reason = format!("its {end} twin {name} is neither in the input nor in ADT; add the twin to the input or create it first");
                if self.reject(d, ReasonCode::MissingTwin, reason, None) {
                    roots.push(d);
                }
            }
        }
        self.cascade(&roots);
        self.batches = batches::pack(self);
        self.externals_resolved = true;
    }

    /// Every rejection so far, in the order found.
    pub fn rejected(&self) -> &[Rejected] {
        &self.rejected
    }

    /// Per kind: read, to write, rejected.
    pub fn counts(&self) -> PlanCounts {
        let mut counts = self.parse_errors;
        for (i, record) in self.arena.records.iter().enumerate() {
            let c = counts.of_mut(record.kind());
            c.read += 1;
            match self.status[i] {
                Status::Accepted => c.to_write += 1,
                Status::Rejected => c.rejected += 1,
            }
        }
        counts
    }

    /// The model upload batches, each dependency-ordered, as model ids.
    pub fn model_batches(&self) -> Vec<Vec<String>> {
        let model_id = |id: ItemId| match self.arena.record(id) {
            Record::Model { id, .. } => self.arena.models.name(id).to_string(),
            _ => String::new(),
        };
        self.batches.iter().map(|b| b.iter().map(|&id| model_id(id)).collect()).collect()
    }

    /// Number of model upload batches.
    pub fn batch_count(&self) -> usize {
        self.batches.len()
    }

    /// T*: the least time the limits allow for this load, and what binds it.
    pub fn makespan(&self) -> Makespan {
        makespan::compute(self)
    }

    /// The options the plan was built with.
    pub fn options(&self) -> &PlanOptions {
        &self.opts
    }

    /// Hands the plan to the run. External references not settled by
    /// [`resolve_external`](Plan::resolve_external) are taken to exist in ADT.
    pub fn into_scheduler(self) -> Scheduler {
        Scheduler::new(self)
    }

    pub(crate) fn twin_name(&self, twin: arena::TwinIdx) -> &str {
        self.arena.twins.name(twin)
    }

    pub(crate) fn item_count(&self) -> usize {
        self.arena.len()
    }

    /// Whether the input holds this twin and it is still to be written.
    pub fn holds_twin(&self, id: &str) -> bool {
        self.arena.twins.find(id).and_then(|t| self.arena.twin_item_of(t)).is_some_and(|i| !self.is_rejected(i))
    }
}
