//! Proving a load lost nothing: read two graphs in Import-Jobs NDJSON (the input, and the mock's
//! `/_mock/export`) into a canonical form and list every difference. Used by `twinload demo` and
//! by the end-to-end tests.
//!
//! Canonical form: ADT adds bookkeeping (`$etag`, `$lastUpdateTime`, per-property metadata) and
//! ignores some input keys, so only what a user wrote is compared: a twin's model and its
//! properties (components included, their `$metadata` dropped); a relationship's target, name
//! and properties; a model's full definition.

use std::collections::BTreeMap;
use std::io::BufRead;

use serde_json::{Map, Value};

/// A relationship's identity: (source twin, relationship id).
pub type RelationshipKey = (String, String);
/// What a relationship says: (target twin, relationship name, properties).
pub type RelationshipContent = (String, String, Map<String, Value>);

/// One graph, keyed by stable identity.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Graph {
    pub models: BTreeMap<String, Value>,
    /// twin id → (model, properties)
    pub twins: BTreeMap<String, (String, Map<String, Value>)>,
    /// (source, relationship id) → (target, name, properties)
    pub relationships: BTreeMap<RelationshipKey, RelationshipContent>,
}

#[derive(Debug, thiserror::Error)]
pub enum GraphReadError {
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    #[error("reading the graph: {0}")]
    Io(#[from] std::io::Error),
}

impl Graph {
    /// Reads Import-Jobs NDJSON (Header, Models, Twins, Relationships sections).
    pub fn from_ndjson(reader: impl BufRead) -> Result<Graph, GraphReadError> {
        let mut graph = Graph::default();
        let mut section = String::new();
        for (index, line) in reader.lines().enumerate() {
            let line_no = index + 1;
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let bad = |message: String| GraphReadError::Line { line: line_no, message };
            let value: Value = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
            if let Some(name) = value.get("Section").and_then(Value::as_str) {
                section = name.to_string();
                continue;
            }
            match section.as_str() {
                "Header" => {}
                "Models" => {
                    let id = value.get("@id").and_then(Value::as_str).ok_or_else(|| bad("model without @id".into()))?;
                    graph.models.insert(id.to_string(), value.clone());
                }
                "Twins" => {
                    let Value::Object(mut obj) = value else { return Err(bad("twin is not an object".into())) };
                    let id = take_string(&mut obj, "$dtId").ok_or_else(|| bad("twin without $dtId".into()))?;
                    let model = obj
                        .get("$metadata")
                        .and_then(|m| m.get("$model"))
                        .and_then(Value::as_str)
                        .ok_or_else(|| bad(format!("twin {id} without $metadata.$model")))?
                        .to_string();
                    graph.twins.insert(id, (model, user_properties(obj)));
                }
                "Relationships" => {
                    let Value::Object(mut obj) = value else { return Err(bad("relationship is not an object".into())) };
                    let source = take_string(&mut obj, "$dtId")
                        .or_else(|| take_string(&mut obj, "$sourceId"))
                        .ok_or_else(|| bad("relationship without $dtId".into()))?;
                    let id = take_string(&mut obj, "$relationshipId")
                        .ok_or_else(|| bad("relationship without $relationshipId".into()))?;
                    let target = take_string(&mut obj, "$targetId")
                        .ok_or_else(|| bad("relationship without $targetId".into()))?;
                    let name = take_string(&mut obj, "$relationshipName")
                        .ok_or_else(|| bad("relationship without $relationshipName".into()))?;
                    graph.relationships.insert((source, id), (target, name, user_properties(obj)));
                }
                other => return Err(bad(format!("line outside a known section ('{other}')"))),
            }
        }
        Ok(graph)
    }

    pub fn counts(&self) -> (usize, usize, usize) {
        (self.models.len(), self.twins.len(), self.relationships.len())
    }
}

fn take_string(obj: &mut Map<String, Value>, key: &str) -> Option<String> {
    match obj.remove(key) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// Drops ADT's bookkeeping keys (`$…`) at every level, keeping what the user wrote.
fn user_properties(obj: Map<String, Value>) -> Map<String, Value> {
    obj.into_iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| {
            let v = match v {
                Value::Object(inner) if inner.contains_key("$metadata") => Value::Object(user_properties(inner)),
                other => other,
            };
            (k, v)
        })
        .collect()
}

/// Every difference between an expected and an actual graph, by kind. Empty when they are equal.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GraphDiff {
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
    pub different: Vec<String>,
}

impl GraphDiff {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.different.is_empty()
    }

    /// A short human description: counts and the first few examples of each.
    pub fn describe(&self) -> String {
        let show = |label: &str, items: &[String]| {
            let examples: Vec<&str> = items.iter().take(5).map(String::as_str).collect();
            format!("{label}: {} (e.g. {})", items.len(), examples.join(", "))
        };
        if self.is_empty() {
            return "graphs are equal".into();
        }
        [("missing", &self.missing), ("unexpected", &self.unexpected), ("different", &self.different)]
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(l, v)| show(l, v))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

pub fn diff(expected: &Graph, actual: &Graph) -> GraphDiff {
    let mut d = GraphDiff::default();
    compare(&expected.models, &actual.models, |id| format!("model {id}"), &mut d);
    compare(&expected.twins, &actual.twins, |id| format!("twin {id}"), &mut d);
    compare(&expected.relationships, &actual.relationships, |(s, r)| format!("relationship {s}/{r}"), &mut d);
    d
}

fn compare<K: Ord, V: PartialEq>(
    expected: &BTreeMap<K, V>,
    actual: &BTreeMap<K, V>,
    name: impl Fn(&K) -> String,
    d: &mut GraphDiff,
) {
    for (k, v) in expected {
        match actual.get(k) {
            None => d.missing.push(name(k)),
            Some(a) if a != v => d.different.push(name(k)),
            Some(_) => {}
        }
    }
    d.unexpected.extend(actual.keys().filter(|k| !expected.contains_key(k)).map(&name));
}

#[cfg(test)]
mod tests {
    use super::*;

    const INPUT: &str = r#"{"Section": "Header"}
{"fileVersion": "1.0.0", "author": "t", "organization": "t"}
{"Section": "Models"}
{"@id":"dtmi:ex:A;1","@type":"Interface","@context":"dtmi:dtdl:context;2","contents":[{"@type":"Property","name":"p","schema":"integer"}]}
{"Section": "Twins"}
{"$dtId":"t1","$metadata":{"$model":"dtmi:ex:A;1"},"p":1,"comp":{"$metadata":{}}}
{"$dtId":"t2","$metadata":{"$model":"dtmi:ex:A;1"}}
{"Section": "Relationships"}
{"$dtId":"t1","$relationshipId":"r1","$targetId":"t2","$relationshipName":"has","w":2}
"#;

    #[test]
    fn adt_bookkeeping_is_ignored() {
        let exported = INPUT
            .replace(r#""p":1,"#, r#""$etag":"W/\"x\"","p":1,"#)
            .replace(r#""comp":{"$metadata":{}}"#, r#""comp":{"$metadata":{"$lastUpdateTime":"2026"}}"#);
        let a = Graph::from_ndjson(INPUT.as_bytes()).unwrap();
        let b = Graph::from_ndjson(exported.as_bytes()).unwrap();
        assert_eq!(a.counts(), (1, 2, 1));
        assert!(diff(&a, &b).is_empty(), "{}", diff(&a, &b).describe());
    }

    #[test]
    fn every_kind_of_difference_is_named() {
        let a = Graph::from_ndjson(INPUT.as_bytes()).unwrap();
        let changed = INPUT.replace(r#""p":1"#, r#""p":2"#).replace(
            r#"{"$dtId":"t2","$metadata":{"$model":"dtmi:ex:A;1"}}"#,
            r#"{"$dtId":"t3","$metadata":{"$model":"dtmi:ex:A;1"}}"#,
        );
        let b = Graph::from_ndjson(changed.as_bytes()).unwrap();
        let d = diff(&a, &b);
        assert_eq!(d.missing, vec!["twin t2"]);
        assert_eq!(d.unexpected, vec!["twin t3"]);
        assert_eq!(d.different, vec!["twin t1"]);
    }

    #[test]
    fn malformed_lines_name_the_line() {
        let err = Graph::from_ndjson("{\"Section\":\"Twins\"}\n{not json\n".as_bytes()).unwrap_err();
        assert!(err.to_string().starts_with("line 2:"), "{err}");
    }
}
