//! The dependency graph (petgraph), edges pointing from what is needed to what needs it:
//! model → model (extends, component schema), model → twin, twin → relationship (its source and
//! its target). Node `i` is item `i`; nodes after the items stand for referenced twins and
//! models that the input does not hold ("external": they must already exist in ADT).
//! Duplicates (second occurrences) get no edges: references resolve to the first occurrence.

use petgraph::graph::DiGraph;
pub(crate) use petgraph::graph::NodeIndex;
use petgraph::Direction;
use rustc_hash::FxHashMap;

use super::arena::{Arena, ModelIdx, Record, TwinIdx};
use super::ItemId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum External {
    Twin(TwinIdx),
    Model(ModelIdx),
}

#[derive(Default)]
pub(crate) struct DependencyGraph {
    graph: DiGraph<(), (), u32>,
    items: u32,
    /// By node index minus `items`.
    externals: Vec<External>,
}

impl DependencyGraph {
    pub fn build(arena: &Arena) -> DependencyGraph {
        let items = arena.len() as u32;
        let edges = arena
            .records
            .iter()
            .map(|r| match r {
                Record::Model { meta, .. } => arena.model_meta.get(*meta as usize).map_or(0, |m| m.deps.len()),
                Record::Twin { model, .. } => usize::from(model.is_some()),
                Record::Relationship { .. } => 2,
            })
            .sum();
        let mut g =
            DependencyGraph { graph: DiGraph::with_capacity(items as usize, edges), items, externals: Vec::new() };
        for _ in 0..items {
            g.graph.add_node(());
        }
        let mut external_twins: FxHashMap<TwinIdx, NodeIndex<u32>> = FxHashMap::default();
        let mut external_models: FxHashMap<ModelIdx, NodeIndex<u32>> = FxHashMap::default();
        for (i, record) in arena.records.iter().enumerate() {
            let id = i as ItemId;
            let node = NodeIndex::new(i);
            match *record {
                Record::Model { id: model, meta, .. } => {
                    if arena.model_item_of(model) != Some(id) {
                        continue;
                    }
                    let deps = arena.model_meta.get(meta as usize).map(|m| m.deps.as_slice()).unwrap_or(&[]);
                    for &dep in deps {
                        let from = g.model_node(arena, dep, &mut external_models);
                        g.graph.add_edge(from, node, ());
                    }
                }
                Record::Twin { id: twin, model } => {
                    if arena.twin_item_of(twin) != Some(id) {
                        continue;
                    }
                    if let Some(model) = model {
                        let from = g.model_node(arena, model, &mut external_models);
                        g.graph.add_edge(from, node, ());
                    }
                }
                Record::Relationship { source, target, id: rel, .. } => {
                    if arena.relationship_item.get(&(source, rel)) != Some(&id) {
                        continue;
                    }
                    let from = g.twin_node(arena, source, &mut external_twins);
                    g.graph.add_edge(from, node, ());
                    if target != source {
                        let from = g.twin_node(arena, target, &mut external_twins);
                        g.graph.add_edge(from, node, ());
                    }
                }
            }
        }
        g
    }

    fn model_node(
        &mut self,
        arena: &Arena,
        model: ModelIdx,
        externals: &mut FxHashMap<ModelIdx, NodeIndex<u32>>,
    ) -> NodeIndex<u32> {
        if let Some(item) = arena.model_item_of(model) {
            return NodeIndex::new(item as usize);
        }
        *externals.entry(model).or_insert_with(|| {
            self.externals.push(External::Model(model));
            self.graph.add_node(())
        })
    }

    fn twin_node(
        &mut self,
        arena: &Arena,
        twin: TwinIdx,
        externals: &mut FxHashMap<TwinIdx, NodeIndex<u32>>,
    ) -> NodeIndex<u32> {
        if let Some(item) = arena.twin_item_of(twin) {
            return NodeIndex::new(item as usize);
        }
        *externals.entry(twin).or_insert_with(|| {
            self.externals.push(External::Twin(twin));
            self.graph.add_node(())
        })
    }

    /// Items that need this item (its direct dependents).
    pub fn dependents(&self, id: ItemId) -> impl Iterator<Item = ItemId> + '_ {
        self.dependents_of_node(NodeIndex::new(id as usize))
    }

    pub fn dependents_of_node(&self, node: NodeIndex<u32>) -> impl Iterator<Item = ItemId> + '_ {
        let valid = node.index() < self.graph.node_count();
        valid
            .then(|| self.graph.neighbors_directed(node, Direction::Outgoing))
            .into_iter()
            .flatten()
            .map(|n| n.index() as ItemId)
    }

    /// Items this item needs (its direct dependencies that the input holds).
    pub fn dependencies(&self, id: ItemId) -> impl Iterator<Item = ItemId> + '_ {
        let node = NodeIndex::new(id as usize);
        let items = self.items;
        let valid = node.index() < self.graph.node_count();
        valid
            .then(|| self.graph.neighbors_directed(node, Direction::Incoming))
            .into_iter()
            .flatten()
            .filter(move |n| (n.index() as u32) < items)
            .map(|n| n.index() as ItemId)
    }

    /// Referenced twins the input does not hold, with their nodes.
    pub fn external_twins(&self) -> impl Iterator<Item = (TwinIdx, NodeIndex<u32>)> + '_ {
        self.externals.iter().enumerate().filter_map(move |(i, e)| match e {
            External::Twin(t) => Some((*t, NodeIndex::new(self.items as usize + i))),
            External::Model(_) => None,
        })
    }

    /// Referenced models the input does not hold, with their nodes.
    pub fn external_models(&self) -> impl Iterator<Item = (ModelIdx, NodeIndex<u32>)> + '_ {
        self.externals.iter().enumerate().filter_map(move |(i, e)| match e {
            External::Model(m) => Some((*m, NodeIndex::new(self.items as usize + i))),
            External::Twin(_) => None,
        })
    }
}
