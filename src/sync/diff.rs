//! The JSON Patch between what ADT holds and what the source says, at the level ADT patches:
//! top-level properties, and the properties of components. ADT takes only `add`, `replace` and
//! `remove` (ADT-REFERENCE §1.2), and `replace`/`remove` need the target to exist, so:
//! a property the source adds is `add`, one it changes is `replace`, one it dropped is `remove`.
//!
//! Service fields (`$dtId`, `$etag`, `$metadata` with its `$lastUpdateTime` and per-property
//! times, a relationship's `$relationshipId`, `$sourceId`) are bookkeeping, never compared. A
//! property whose value is an object (a Map or Object schema) is replaced whole when it differs:
//! its inner shape is the model's business, and a whole `replace` is always valid. Numbers
//! compare by value (`1` equals `1.0`), as ADT stores them.

use serde::Serialize;
use serde_json::{Map, Value};

/// One JSON Patch operation as ADT takes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum PatchOp {
    Add { path: String, value: Value },
    Replace { path: String, value: Value },
    Remove { path: String },
}

/// How a twin in the source differs from the one in ADT.
#[derive(Debug, Clone, PartialEq)]
pub enum TwinChange {
    Unchanged,
    /// Only these operations (properties and components).
    Patch(Vec<PatchOp>),
    /// The model changed: the twin is replaced whole (PUT).
    Replace,
}

/// How a relationship in the source differs from the one in ADT.
#[derive(Debug, Clone, PartialEq)]
pub enum RelationshipChange {
    Unchanged,
    Patch(Vec<PatchOp>),
    /// Target or name changed: ADT cannot move a relationship, so delete and create again.
    Recreate,
}

/// Compares a twin as ADT returns it (`current`) with its PUT body in the source (`desired`).
pub fn twin(current: &Value, desired: &Value) -> TwinChange {
    if model_of(current) != model_of(desired) {
        return TwinChange::Replace;
    }
    let (Some(current), Some(desired)) = (current.as_object(), desired.as_object()) else {
        return TwinChange::Replace;
    };
    let mut ops = Vec::new();
    diff_level(current, desired, "", true, &mut ops);
    if ops.is_empty() {
        TwinChange::Unchanged
    } else {
        TwinChange::Patch(ops)
    }
}

/// Compares a relationship as ADT returns it with its PUT body in the source.
pub fn relationship(current: &Value, desired: &Value) -> RelationshipChange {
    let same = |field: &str| current.get(field) == desired.get(field);
    if !same("$targetId") || !same("$relationshipName") {
        return RelationshipChange::Recreate;
    }
    let (Some(current), Some(desired)) = (current.as_object(), desired.as_object()) else {
        return RelationshipChange::Recreate;
    };
    let mut ops = Vec::new();
    diff_level(current, desired, "", false, &mut ops);
    if ops.is_empty() {
        RelationshipChange::Unchanged
    } else {
        RelationshipChange::Patch(ops)
    }
}

fn model_of(doc: &Value) -> Option<&str> {
    doc.get("$metadata")?.get("$model")?.as_str()
}

/// A component is an object holding `$metadata` (ADT requires it in a PUT body and returns it).
fn is_component(v: &Value) -> bool {
    v.as_object().is_some_and(|o| o.contains_key("$metadata"))
}

fn diff_level(
    current: &Map<String, Value>,
    desired: &Map<String, Value>,
    prefix: &str,
    top: bool,
    ops: &mut Vec<PatchOp>,
) {
    for (key, want) in desired {
        if key.starts_with('$') {
            continue;
        }
        let path = format!("{prefix}/{}", escape(key));
        match current.get(key) {
            None => ops.push(PatchOp::Add { path, value: want.clone() }),
            Some(have) if top && is_component(have) && is_component(want) => {
                if let (Some(h), Some(w)) = (have.as_object(), want.as_object()) {
                    diff_level(h, w, &path, false, ops);
                }
            }
            Some(have) if !same_value(have, want) => ops.push(PatchOp::Replace { path, value: want.clone() }),
            Some(_) => {}
        }
    }
    for key in current.keys() {
        if !key.starts_with('$') && !desired.contains_key(key) {
            ops.push(PatchOp::Remove { path: format!("{prefix}/{}", escape(key)) });
        }
    }
}

/// JSON equality with numbers compared by value.
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64().zip(y.as_f64()).is_some_and(|(x, y)| x == y),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_value(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
        }
        _ => a == b,
    }
}

/// A JSON Pointer segment: `~` → `~0`, `/` → `~1` (RFC 6901).
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn adt_twin(props: Value) -> Value {
        let mut doc = json!({
            "$dtId": "t1", "$etag": "W/\"9\"",
            "$metadata": {"$model": "dtmi:a;1", "$lastUpdateTime": "2026-01-01T00:00:00Z",
                          "temp": {"lastUpdateTime": "2026-01-01T00:00:00Z"}}
        });
        for (k, v) in props.as_object().unwrap() {
            doc[k] = v.clone();
        }
        doc
    }

    fn source_twin(props: Value) -> Value {
        let mut doc = json!({"$dtId": "t1", "$metadata": {"$model": "dtmi:a;1"}});
        for (k, v) in props.as_object().unwrap() {
            doc[k] = v.clone();
        }
        doc
    }

    #[test]
    fn bookkeeping_fields_and_number_spelling_are_not_changes() {
        let current = adt_twin(json!({"temp": 1.0, "name": "a", "loc": {"x": 1, "y": [1, 2]}}));
        let desired = source_twin(json!({"temp": 1, "name": "a", "loc": {"y": [1.0, 2], "x": 1}}));
        assert_eq!(twin(&current, &desired), TwinChange::Unchanged);
    }

    #[test]
    fn added_changed_and_dropped_properties_become_add_replace_remove() {
        let current = adt_twin(json!({"temp": 1, "old": "x", "same": true}));
        let desired = source_twin(json!({"temp": 2, "new": "y", "same": true}));
        let TwinChange::Patch(ops) = twin(&current, &desired) else { panic!("expected a patch") };
        assert_eq!(
            ops,
            vec![
                PatchOp::Replace { path: "/temp".into(), value: json!(2) },
                PatchOp::Add { path: "/new".into(), value: json!("y") },
                PatchOp::Remove { path: "/old".into() },
            ]
        );
        let text = serde_json::to_string(&ops).unwrap();
        assert_eq!(
            text,
            r#"[{"op":"replace","path":"/temp","value":2},{"op":"add","path":"/new","value":"y"},{"op":"remove","path":"/old"}]"#
        );
    }

    #[test]
    fn components_are_diffed_property_by_property_and_paths_are_escaped() {
        let current = adt_twin(json!({"engine": {"$metadata": {"rpm": {"lastUpdateTime": "x"}}, "rpm": 1, "oil": 2}}));
        let desired = source_twin(json!({"engine": {"$metadata": {}, "rpm": 3}, "a/b~c": 1}));
        let TwinChange::Patch(ops) = twin(&current, &desired) else { panic!("expected a patch") };
        assert_eq!(ops.len(), 3, "{ops:?}");
        assert!(ops.contains(&PatchOp::Replace { path: "/engine/rpm".into(), value: json!(3) }));
        assert!(ops.contains(&PatchOp::Remove { path: "/engine/oil".into() }));
        assert!(ops.contains(&PatchOp::Add { path: "/a~1b~0c".into(), value: json!(1) }));
        // A component added whole is one add.
        let desired = source_twin(json!({"engine": {"$metadata": {}, "rpm": 1, "oil": 2}, "cab": {"$metadata": {}}}));
        let TwinChange::Patch(ops) = twin(&current, &desired) else { panic!("expected a patch") };
        assert_eq!(ops, vec![PatchOp::Add { path: "/cab".into(), value: json!({"$metadata": {}}) }]);
    }

    #[test]
    fn a_model_change_is_a_replace() {
        let current = adt_twin(json!({"temp": 1}));
        let mut desired = source_twin(json!({"temp": 1}));
        desired["$metadata"]["$model"] = json!("dtmi:a;2");
        assert_eq!(twin(&current, &desired), TwinChange::Replace);
    }

    #[test]
    fn relationships_patch_properties_and_recreate_on_a_new_target_or_name() {
        let current = json!({"$relationshipId": "r", "$etag": "e", "$sourceId": "a", "$targetId": "b",
                              "$relationshipName": "has", "since": 1});
        let same = json!({"$targetId": "b", "$relationshipName": "has", "since": 1});
        assert_eq!(relationship(&current, &same), RelationshipChange::Unchanged);
        let changed = json!({"$targetId": "b", "$relationshipName": "has", "since": 2});
        assert_eq!(
            relationship(&current, &changed),
            RelationshipChange::Patch(vec![PatchOp::Replace { path: "/since".into(), value: json!(2) }])
        );
        let moved = json!({"$targetId": "c", "$relationshipName": "has", "since": 1});
        assert_eq!(relationship(&current, &moved), RelationshipChange::Recreate);
        let renamed = json!({"$targetId": "b", "$relationshipName": "owns", "since": 1});
        assert_eq!(relationship(&current, &renamed), RelationshipChange::Recreate);
    }
}
