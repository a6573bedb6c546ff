//! The store's invariants under concurrent writers: what one thread's write sees of another's
//! must never leave a relationship without its twins, an incoming mark without its
//! relationship, or a twin counted against a model it does not have.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::*;

fn store() -> Store {
    let limits = Limits { max_relationships_per_twin: 1000, ..Limits::adt_default() };
    let store = Store::new(limits, StoreOptions::default());
    store
        .add_models(&[json!({"@id": "dtmi:t:N;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2",
            "contents": [{"@type": "Relationship", "name": "to"}, {"@type": "Property", "name": "p", "schema": "integer"}]})])
        .unwrap();
    store
}

fn put_twin(store: &Store, id: &str) -> Result<(), AdtFailure> {
    let put = store.prepare_twin_put(id, br#"{"$metadata":{"$model":"dtmi:t:N;1"},"p":1}"#, false)?;
    store.commit_twin_put(put).map(|_| ())
}

fn put_relationship(store: &Store, source: &str, id: &str, target: &str) -> Result<(), AdtFailure> {
    let body = json!({"$targetId": target, "$relationshipName": "to"}).to_string();
    let put = store.prepare_relationship_put(source, id, body.as_bytes(), false)?;
    store.commit_relationship_put(put).map(|_| ())
}

/// Every relationship has both twins and exactly one mark at its target; every mark belongs to
/// a relationship; the counters match.
fn assert_consistent(store: &Store) {
    let twins = &store.inner.twins;
    let mut relationships = 0;
    let mut per_model: HashMap<*const ModelEntry, (Arc<ModelEntry>, usize)> = HashMap::new();
    for node in twins.iter() {
        per_model.entry(Arc::as_ptr(&node.model_entry)).or_insert_with(|| (node.model_entry.clone(), 0)).1 += 1;
        assert_eq!(node.model_entry.id, node.twin.model, "twin {} is counted against its own model", node.key());
        // A twin's model is the one uploaded now, or one deleted while the twin had it.
        let current = store.models().get(&node.twin.model).is_some_and(|m| Arc::ptr_eq(m, &node.model_entry));
        assert!(
            current || node.model_entry.is_deleted(),
            "twin {} holds a model that is neither current nor deleted",
            node.key()
        );
        for (id, rel) in &node.outgoing {
            relationships += 1;
            let target = twins
                .get(&rel.target)
                .unwrap_or_else(|| panic!("relationship {}/{id} has no target {}", node.key(), rel.target));
            let marks = target.incoming.get(&(node.key().clone(), id.clone())).expect("the target has the mark");
            assert_eq!(marks.iter().map(|m| m.mark).collect::<Vec<_>>(), vec![rel.mark], "{}/{id}", node.key());
        }
        for ((source, id), marks) in &node.incoming {
            assert_eq!(marks.len(), 1, "one mark per relationship once writes are done");
            let source_node = twins.get(source).expect("a mark's source exists");
            let rel = source_node.outgoing.get(id).expect("a mark's relationship exists");
            assert_eq!((rel.target.as_str(), rel.mark), (node.key().as_str(), marks[0].mark));
        }
    }
    assert_eq!(store.relationship_count(), relationships);
    assert_eq!(store.twin_count(), twins.len());
    for model in store.models().iter() {
        let counted = per_model.get(&Arc::as_ptr(model)).map_or(0, |(_, n)| *n);
        assert_eq!(model.twins_using(), counted, "{}", model.id);
    }
    for (model, counted) in per_model.values() {
        assert_eq!(model.twins_using(), *counted, "{} (deleted: {})", model.id, model.is_deleted());
    }
}

#[test]
fn racing_relationship_writes_and_twin_deletes_keep_the_graph_consistent() {
    let store = store();
    let targets: Vec<String> = (0..8).map(|i| format!("t{i}")).collect();
    for id in targets.iter().chain(["hub".to_string()].iter()) {
        put_twin(&store, id).unwrap();
    }
    let workers: Vec<_> = (0..4u64)
        .map(|seed| {
            let store = store.clone();
            let targets = targets.clone();
            thread::spawn(move || {
                let mut rng = SmallRng::seed_from_u64(seed);
                for _ in 0..2000 {
                    let target = &targets[rng.gen_range(0..targets.len())];
                    // Few relationship ids, so writes of the same relationship race with
                    // different targets.
                    let rel = format!("r{}", rng.gen_range(0..3));
                    let _ = match rng.gen_range(0..5) {
                        0 | 1 => put_relationship(&store, "hub", &rel, target),
                        2 => store.delete_relationship("hub", &rel, None),
                        3 => store.delete_twin(target, None),
                        _ => put_twin(&store, target),
                    };
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("no worker panicked");
    }
    assert_consistent(&store);
}

#[test]
fn a_model_deleted_while_twins_are_created_leaves_every_twin_counted_against_its_model() {
    let store = store();
    let definition = json!({"@id": "dtmi:t:N;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2",
        "contents": [{"@type": "Relationship", "name": "to"}, {"@type": "Property", "name": "p", "schema": "integer"}]});
    let creator = {
        let store = store.clone();
        thread::spawn(move || {
            for i in 0..3000 {
                let id = format!("x{}", i % 4);
                if put_twin(&store, &id).is_ok() && i % 2 == 0 {
                    let _ = store.delete_twin(&id, None);
                }
            }
        })
    };
    let deleter = {
        let store = store.clone();
        thread::spawn(move || {
            let mut deleted = 0;
            for _ in 0..3000 {
                if store.delete_model("dtmi:t:N;1").is_ok() {
                    deleted += 1;
                    store.add_models(std::slice::from_ref(&definition)).expect("re-upload after delete");
                }
            }
            deleted
        })
    };
    creator.join().expect("creator ran");
    deleter.join().expect("deleter ran");
    assert_consistent(&store);
}

#[test]
fn order_violations_count_only_what_was_genuinely_missing() {
    let store = store();
    assert!(put_twin(&store, "a").is_ok());
    let missing_model = store.prepare_twin_put("b", br#"{"$metadata":{"$model":"dtmi:t:Gone;1"}}"#, false).unwrap_err();
    assert_eq!(missing_model.code(), "ValidationFailed");
    assert_eq!(put_relationship(&store, "a", "r", "nobody").unwrap_err().code(), "TargetDigitalTwinNotFound");
    assert_eq!(put_relationship(&store, "nobody", "r", "a").unwrap_err().code(), "DigitalTwinNotFound");
    assert_eq!(put_relationship(&store, "a", "r", "a").unwrap_err().code(), "OperationNotAllowed");
    assert_eq!(store.order_violations_total(), 3);
    store.reset();
    assert_eq!(store.order_violations_total(), 0);
}

#[test]
fn a_twin_whose_model_was_deleted_after_the_check_is_not_created() {
    let store = store();
    let put = store.prepare_twin_put("x", br#"{"$metadata":{"$model":"dtmi:t:N;1"}}"#, false).unwrap();
    store.delete_model("dtmi:t:N;1").unwrap();
    let refused = store.commit_twin_put(put).unwrap_err();
    assert_eq!(refused.body.error.details[0].message, "dtmi:t:N;1 or one of its dependencies does not exist.");
    assert_eq!(store.twin_count(), 0);
}

#[test]
fn a_relationship_whose_target_was_deleted_after_the_check_is_not_created() {
    let store = store();
    put_twin(&store, "a").unwrap();
    put_twin(&store, "b").unwrap();
    let body = json!({"$targetId": "b", "$relationshipName": "to"}).to_string();
    let put = store.prepare_relationship_put("a", "r", body.as_bytes(), false).unwrap();
    store.delete_twin("b", None).unwrap();
    assert_eq!(store.commit_relationship_put(put).unwrap_err().code(), "TargetDigitalTwinNotFound");
    let put = store.prepare_relationship_put(
        "a",
        "r",
        json!({"$targetId": "a2", "$relationshipName": "to"}).to_string().as_bytes(),
        false,
    );
    assert!(put.is_err());
    put_twin(&store, "b").unwrap();
    let put = store.prepare_relationship_put("a", "r", body.as_bytes(), false).unwrap();
    store.delete_twin("a", None).unwrap();
    assert_eq!(store.commit_relationship_put(put).unwrap_err().code(), "DigitalTwinNotFound");
    assert_consistent(&store);
    assert_eq!(store.relationship_count(), 0);
}

#[test]
fn a_put_that_moves_a_relationship_is_refused_and_changes_nothing() {
    let store = store();
    for id in ["a", "b", "c"] {
        put_twin(&store, id).unwrap();
    }
    put_relationship(&store, "a", "r", "b").unwrap();
    put_relationship(&store, "a", "r", "b").expect("the same target: a replace");
    let refused = put_relationship(&store, "a", "r", "c").unwrap_err();
    assert_eq!(refused.status.as_u16(), 400);
    assert_eq!(refused.body.error.code, crate::adt::codes::OPERATION_NOT_ALLOWED);
    assert!(refused.body.error.message.contains("Delete the relationship and create it again"), "{refused}");
    assert_eq!(store.get_relationship("a", "r").unwrap().target, "b", "the relationship did not move");
    assert_consistent(&store);
    // Delete and create again: the way to move it.
    store.delete_relationship("a", "r", None).unwrap();
    put_relationship(&store, "a", "r", "c").unwrap();
    assert_eq!(store.get_relationship("a", "r").unwrap().target, "c");
    assert_consistent(&store);
}

#[test]
fn twins_of_a_deleted_model_stay_readable_patchable_and_deletable_and_new_ones_are_refused() {
    let store = store();
    put_twin(&store, "old").unwrap();
    store.delete_model("dtmi:t:N;1").expect("twins do not hold a model back");
    assert!(store.model("dtmi:t:N;1").is_err());
    assert_eq!(store.get_twin("old").unwrap().model, "dtmi:t:N;1");
    let ops = patch::parse_patch(br#"[{"op":"replace","path":"/p","value":2}]"#).unwrap();
    let update = store.prepare_twin_update("old", ops, None).expect("a twin of a deleted model can be patched");
    assert_eq!(store.commit_twin_update(update).unwrap().contents["p"], 2);
    let wrong = patch::parse_patch(br#"[{"op":"replace","path":"/p","value":"two"}]"#).unwrap();
    assert_eq!(store.prepare_twin_update("old", wrong, None).unwrap_err().code(), "ValidationFailed");
    let refused = put_twin(&store, "new").unwrap_err();
    assert_eq!(refused.body.error.details[0].message, "dtmi:t:N;1 or one of its dependencies does not exist.");
    assert_consistent(&store);
    store.delete_twin("old", None).unwrap();
    assert_eq!(store.twin_count(), 0);
    assert_consistent(&store);
}
