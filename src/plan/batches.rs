//! Model upload batches: the models to write, in topological order (every model after the
//! models it extends or uses as a component), cut into `POST /models` calls of at most
//! `model_batch_size` models and at most `limits.max_payload_bytes` of JSON. Because the order is
//! topological, each model's dependencies are in an earlier batch or the same one, which is what
//! ADT requires (a batch may reference models uploaded before, or in the same array).

use petgraph::algo::toposort;
use petgraph::graph::{DiGraph, NodeIndex};
use rustc_hash::FxHashMap;

use super::arena::Record;
use super::{ItemId, Plan};

/// Bytes a JSON array adds around its elements: `[`, `]`, and a comma between two.
const ARRAY_BRACKETS: usize = 2;
const ARRAY_SEPARATOR: usize = 1;

/// Packs the plan's models still to write into upload batches.
pub(crate) fn pack(plan: &Plan) -> Vec<Vec<ItemId>> {
    let models: Vec<(ItemId, usize)> = plan
        .arena
        .records
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match *r {
            Record::Model { body_len, .. } if !plan.is_rejected(i as ItemId) => Some((i as ItemId, body_len as usize)),
            _ => None,
        })
        .collect();
    let order = topological_order(plan, &models);
    let size_of: FxHashMap<ItemId, usize> = models.iter().copied().collect();
    cut(
        &order,
        |id| size_of.get(&id).copied().unwrap_or(0),
        plan.opts.effective_batch_size(),
        plan.opts.limits.max_payload_bytes,
    )
}

/// The models in an order where each comes after its dependencies; ties keep input order.
fn topological_order(plan: &Plan, models: &[(ItemId, usize)]) -> Vec<ItemId> {
    let mut graph: DiGraph<ItemId, (), u32> = DiGraph::with_capacity(models.len(), models.len());
    let mut node_of: FxHashMap<ItemId, NodeIndex<u32>> = FxHashMap::default();
    for &(id, _) in models {
        node_of.insert(id, graph.add_node(id));
    }
    for &(id, _) in models {
        for dep in plan.graph.dependencies(id) {
            if let Some(&from) = node_of.get(&dep) {
                graph.add_edge(from, node_of[&id], ());
            }
        }
    }
    match toposort(&graph, None) {
        Ok(order) => order.into_iter().map(|n| graph[n]).collect(),
        // Cycles were rejected before packing; input order is the safe fallback.
        Err(_) => models.iter().map(|&(id, _)| id).collect(),
    }
}

/// Cuts an ordered list into batches of at most `max_count` items and `max_bytes` of JSON
/// array. An item bigger than `max_bytes` on its own still gets a batch of its own.
pub fn cut(
    order: &[ItemId],
    size_of: impl Fn(ItemId) -> usize,
    max_count: usize,
    max_bytes: usize,
) -> Vec<Vec<ItemId>> {
    let max_count = max_count.max(1);
    let mut batches = Vec::new();
    let mut current: Vec<ItemId> = Vec::new();
    let mut bytes = ARRAY_BRACKETS;
    for &id in order {
        let size = size_of(id);
        let added = size + if current.is_empty() { 0 } else { ARRAY_SEPARATOR };
        if !current.is_empty() && (current.len() >= max_count || bytes + added > max_bytes) {
            batches.push(std::mem::take(&mut current));
            bytes = ARRAY_BRACKETS;
        }
        bytes += size + if current.is_empty() { 0 } else { ARRAY_SEPARATOR };
        current.push(id);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_respects_count_and_bytes() {
        let order: Vec<ItemId> = (0..7).collect();
        let by_count = cut(&order, |_| 10, 3, 1_000);
        assert_eq!(by_count, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
        // 2 + 10 + 1 + 10 = 23 bytes fit in 25; a third would need 34.
        let by_bytes = cut(&order, |_| 10, 100, 25);
        assert_eq!(by_bytes, vec![vec![0, 1], vec![2, 3], vec![4, 5], vec![6]]);
        let oversized = cut(&[0, 1], |id| if id == 0 { 100 } else { 5 }, 10, 50);
        assert_eq!(oversized, vec![vec![0], vec![1]]);
    }
}
