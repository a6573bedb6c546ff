//! JSON Patch (RFC 6902) as ADT takes it: only `add`, `replace` and `remove`, paths as JSON
//! Pointers. `replace` and `remove` need the target to exist (users meet this when they
//! `replace` a property that was never set); `add` creates or overwrites.

use serde_json::{Map, Value};

use super::error::AdtFailure;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Add,
    Replace,
    Remove,
}

/// One operation, with its path already split into unescaped segments.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOp {
    pub kind: PatchKind,
    pub path: Vec<String>,
    /// The text of the path as sent, for messages.
    pub path_text: String,
    /// Present for `add` and `replace`.
    pub value: Value,
}

/// Parses a patch document: a JSON array of `{op, path, value?}`.
pub fn parse_patch(body: &[u8]) -> Result<Vec<PatchOp>, AdtFailure> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| {
        AdtFailure::json_patch_invalid(format!(
            "The patch document is not valid JSON: {e}. Send a JSON array of operations."
        ))
    })?;
    let Value::Array(items) = doc else {
        return Err(AdtFailure::json_patch_invalid(
            "The patch document must be a JSON array of operations such as [{\"op\":\"add\",\"path\":\"/prop\",\"value\":1}].",
        ));
    };
    items.iter().enumerate().map(|(i, item)| parse_op(i, item)).collect()
}

fn parse_op(index: usize, item: &Value) -> Result<PatchOp, AdtFailure> {
    let invalid =
        |why: String| AdtFailure::json_patch_invalid(format!("Operation {index} of the patch document: {why}"));
    let Value::Object(op) = item else {
        return Err(invalid("it must be an object with \"op\" and \"path\"".into()));
    };
    let kind = match op.get("op").and_then(Value::as_str) {
        Some("add") => PatchKind::Add,
        Some("replace") => PatchKind::Replace,
        Some("remove") => PatchKind::Remove,
        Some(other) => return Err(AdtFailure::patch_operation_unsupported(other)),
        None => return Err(invalid("\"op\" is missing".into())),
    };
    let Some(path_text) = op.get("path").and_then(Value::as_str) else {
        return Err(invalid("\"path\" is missing or not a string".into()));
    };
    let path = split_pointer(path_text)
        .ok_or_else(|| invalid(format!("path '{path_text}' must be a JSON Pointer such as /property")))?;
    let value = match (kind, op.get("value")) {
        (PatchKind::Remove, _) => Value::Null,
        (_, Some(v)) => v.clone(),
        (_, None) => {
            return Err(invalid(format!(
                "\"value\" is required for {}",
                if kind == PatchKind::Add { "add" } else { "replace" }
            )))
        }
    };
    Ok(PatchOp { kind, path, path_text: path_text.to_string(), value })
}

/// Splits `/a/b~1c` into `["a", "b/c"]`. `None` unless it starts with `/` and has a segment.
pub fn split_pointer(pointer: &str) -> Option<Vec<String>> {
    let rest = pointer.strip_prefix('/')?;
    let segments: Vec<String> = rest.split('/').map(|s| s.replace("~1", "/").replace("~0", "~")).collect();
    if segments.iter().all(String::is_empty) {
        return None;
    }
    Some(segments)
}

/// Applies one operation at `path` (relative to `root`; the first segment is a key of `root`).
pub fn apply_at(
    root: &mut Map<String, Value>,
    kind: PatchKind,
    path: &[String],
    value: &Value,
    path_text: &str,
) -> Result<(), AdtFailure> {
    let missing = || {
        AdtFailure::json_patch_invalid(format!(
            "{path_text} does not exist on component. Please provide a valid patch document: replace and remove need a value that is set; use add to set it."
        ))
    };
    let Some((first, rest)) = path.split_first() else { return Err(missing()) };
    if rest.is_empty() {
        return match kind {
            PatchKind::Add => {
                root.insert(first.clone(), value.clone());
                Ok(())
            }
            PatchKind::Replace => match root.get_mut(first) {
                Some(slot) => {
                    *slot = value.clone();
                    Ok(())
                }
                None => Err(missing()),
            },
            PatchKind::Remove => root.remove(first).map(|_| ()).ok_or_else(missing),
        };
    }
    let mut node = root.get_mut(first).ok_or_else(missing)?;
    let (last, parents) = rest.split_last().ok_or_else(missing)?;
    for segment in parents {
        node = match node {
            Value::Object(map) => map.get_mut(segment).ok_or_else(missing)?,
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get_mut(i)).ok_or_else(missing)?,
            _ => return Err(missing()),
        };
    }
    match node {
        Value::Object(map) => apply_at(map, kind, std::slice::from_ref(last), value, path_text),
        Value::Array(items) => apply_in_array(items, kind, last, value).ok_or_else(missing),
        _ => Err(missing()),
    }
}

fn apply_in_array(items: &mut Vec<Value>, kind: PatchKind, segment: &str, value: &Value) -> Option<()> {
    if kind == PatchKind::Add && segment == "-" {
        items.push(value.clone());
        return Some(());
    }
    let index: usize = segment.parse().ok()?;
    match kind {
        PatchKind::Add if index <= items.len() => items.insert(index, value.clone()),
        PatchKind::Replace if index < items.len() => items[index] = value.clone(),
        PatchKind::Remove if index < items.len() => {
            items.remove(index);
        }
        _ => return None,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn parses_the_spec_example() {
        let body = br#"[{"op":"replace","path":"/property1","value":1},
            {"op":"replace","path":"/$metadata/property1/sourceTime","value":"2022-05-31T12:00:01Z"},
            {"op":"add","path":"/property2/subProperty1","value":1},{"op":"remove","path":"/property3"}]"#;
        let ops = parse_patch(body).unwrap();
        assert_eq!(ops.len(), 4);
        assert_eq!(ops[1].path, vec!["$metadata", "property1", "sourceTime"]);
        assert_eq!(ops[3].kind, PatchKind::Remove);
    }

    #[test]
    fn refuses_what_adt_refuses() {
        for body in [
            &br#"{"op":"add"}"#[..],
            br#"[{"op":"move","from":"/a","path":"/b"}]"#,
            br#"[{"op":"add","path":"/a"}]"#,
            br#"[{"op":"add","path":"a","value":1}]"#,
            br#"[{"path":"/a","value":1}]"#,
            b"not json",
        ] {
            let e = parse_patch(body).unwrap_err();
            assert_eq!(e.code(), "JsonPatchInvalid", "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn replace_and_remove_need_a_value_add_does_not() {
        let mut m = map(json!({"a": 1, "o": {"x": 1}}));
        apply_at(&mut m, PatchKind::Replace, &["a".into()], &json!(2), "/a").unwrap();
        apply_at(&mut m, PatchKind::Add, &["b".into()], &json!(3), "/b").unwrap();
        apply_at(&mut m, PatchKind::Add, &["o".into(), "y".into()], &json!(4), "/o/y").unwrap();
        apply_at(&mut m, PatchKind::Remove, &["o".into(), "x".into()], &Value::Null, "/o/x").unwrap();
        assert_eq!(Value::Object(m.clone()), json!({"a": 2, "o": {"y": 4}, "b": 3}));
        assert!(apply_at(&mut m, PatchKind::Replace, &["c".into()], &json!(1), "/c").is_err());
        assert!(apply_at(&mut m, PatchKind::Remove, &["c".into()], &Value::Null, "/c").is_err());
        assert!(apply_at(&mut m, PatchKind::Add, &["c".into(), "d".into()], &json!(1), "/c/d").is_err());
    }

    #[test]
    fn pointers_unescape() {
        assert_eq!(split_pointer("/a~1b/c~0d"), Some(vec!["a/b".to_string(), "c~d".to_string()]));
        assert_eq!(split_pointer("/"), None);
        assert_eq!(split_pointer(""), None);
    }
}
