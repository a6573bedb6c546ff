//! Turning one JSON document into an item: the shapes every format shares (a twin object, a
//! relationship object, a DTDL Interface), read with as little copying as possible.
//!
//! A line is parsed once into its top-level entries with the values left as raw JSON text
//! ([`RawObject`]); the few keys the loader needs are read from that, and the body to send is
//! written back out from the same entries (skipping keys ADT must not get).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::item::{ItemKey, ItemKind, ModelItem, Origin, RelationshipItem, TwinItem};

/// Up to this many keys, the duplicate-key check scans instead of hashing.
const SMALL_OBJECT_KEYS: usize = 16;

/// A JSON object's top-level entries, values unparsed. Keys borrow from the line unless they
/// hold escapes.
#[derive(Debug)]
pub(crate) struct RawObject<'a> {
    pub entries: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> RawObject<'a> {
    /// Parses a whole line (which must be one JSON object). The error says what is wrong.
    pub fn parse(line: &'a str) -> Result<RawObject<'a>, String> {
        let object: RawObject<'a> = serde_json::from_str(line).map_err(|e| describe_json_error(&e))?;
        if let Some(key) = object.first_repeated_key() {
            return Err(format!("the key \"{key}\" appears twice in the object; keep one"));
        }
        Ok(object)
    }

    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// A string value; `Err` names the key when it is there but not a string.
    pub fn string(&self, key: &str) -> Result<Option<Cow<'a, str>>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(raw) => match serde_json::from_str::<CowStr<'a>>(raw.get()) {
                Ok(CowStr(s)) => Ok(Some(s)),
                Err(_) => Err(format!("{key} must be a string, found {}", short(raw.get()))),
            },
        }
    }

    fn first_repeated_key(&self) -> Option<&str> {
        // Most objects are small (a handful of keys), where a scan beats hashing; a hostile or
        // broken line can hold hundreds of thousands of keys, where only hashing stays linear.
        if self.entries.len() <= SMALL_OBJECT_KEYS {
            return self
                .entries
                .iter()
                .enumerate()
                .find(|(i, (k, _))| self.entries[..*i].iter().any(|(other, _)| other == k))
                .map(|(_, (k, _))| k.as_ref());
        }
        let mut seen = std::collections::HashSet::with_capacity(self.entries.len());
        self.entries.iter().map(|(k, _)| k.as_ref()).find(|k| !seen.insert(*k))
    }

    /// The object re-written compactly without the given keys.
    pub fn to_body(&self, without: &[&str]) -> Box<RawValue> {
        let view = Filtered { entries: &self.entries, without };
        // Serialising raw values and string keys into a String cannot fail.
        serde_json::value::to_raw_value(&view).unwrap_or_else(|_| empty_object())
    }
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_string()).unwrap_or_else(|_| unreachable!("{{}} is valid JSON"))
}

struct Filtered<'e, 'a> {
    entries: &'e [(Cow<'a, str>, &'a RawValue)],
    without: &'e [&'e str],
}

impl Serialize for Filtered<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let kept = self.entries.iter().filter(|(k, _)| !self.without.contains(&k.as_ref()));
        let mut map = serializer.serialize_map(None)?;
        for (k, v) in kept {
            map.serialize_entry(k.as_ref(), v)?;
        }
        map.end()
    }
}

/// A string that borrows from the input when it holds no escapes.
struct CowStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(CowStr(key)) = map.next_key::<CowStr<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    entries.push((key, value));
                }
                Ok(RawObject { entries })
            }
        }
        d.deserialize_map(V)
    }
}

/// serde_json's message, reworded for a person fixing a data file.
fn describe_json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if text.contains("invalid type") && text.contains("expected a JSON object") {
        return "the line is JSON but not an object; every line must be one JSON object".into();
    }
    format!("invalid JSON ({text}); every line must be one complete JSON object")
}

/// The start of a JSON value for an error message.
fn short(raw: &str) -> String {
    let mut s: String = raw.chars().take(40).collect();
    if s.len() < raw.len() {
        s.push('…');
    }
    s
}

#[derive(Deserialize)]
struct MetadataProbe {
    #[serde(rename = "$model")]
    model: Option<Value>,
}

/// What a line of unknown section looks like, so an error can say where it belongs.
pub(crate) fn sniff_kind(object: &RawObject) -> Option<ItemKind> {
    if object.has("$relationshipId") || object.has("$targetId") || object.has("$relationshipName") {
        Some(ItemKind::Relationship)
    } else if object.has("$dtId") || object.has("$metadata") {
        Some(ItemKind::Twin)
    } else if object.has("@id") || object.has("@type") || object.has("@context") {
        Some(ItemKind::Model)
    } else {
        None
    }
}

/// The identity a line would have as an item of `kind`, with what could be read of its ids.
pub(crate) fn key_guess(object: &RawObject, kind: ItemKind) -> ItemKey {
    let text = |k: &str| object.string(k).ok().flatten().map(Cow::into_owned).unwrap_or_default();
    match kind {
        ItemKind::Model => ItemKey::Model { id: text("@id") },
        ItemKind::Twin => ItemKey::Twin { id: text("$dtId") },
        ItemKind::Relationship => ItemKey::Relationship { source: text("$dtId"), id: text("$relationshipId") },
    }
}

/// A twin from an Import-Jobs twin line (or a twin document): `$dtId` and `$metadata.$model`
/// are required; the PUT body is `line`, the object's text as read (ADT ignores a body-level
/// `$dtId`): one copy, no re-serialisation.
pub(crate) fn twin_from(object: &RawObject, line: &str, origin: &Origin) -> Result<TwinItem, String> {
    let id = object.string("$dtId")?.ok_or("the twin has no \"$dtId\"; add the twin's id as \"$dtId\"")?;
    if id.is_empty() {
        return Err("\"$dtId\" is empty; give the twin an id".into());
    }
    let missing_model = || {
        format!("twin {id} has no \"$metadata\": {{\"$model\": \"dtmi:…;1\"}}; every twin needs the DTMI of its model")
    };
    let metadata = object.get("$metadata").ok_or_else(missing_model)?;
    let probe: MetadataProbe = serde_json::from_str(metadata.get())
        .map_err(|_| format!("twin {id}: \"$metadata\" must be an object holding \"$model\""))?;
    let model = match probe.model {
        Some(Value::String(m)) if !m.is_empty() => m,
        Some(Value::String(_)) | None => return Err(missing_model()),
        Some(other) => {
            return Err(format!(
                "twin {id}: \"$metadata.$model\" must be a DTMI string, found {}",
                short(&other.to_string())
            ))
        }
    };
    // `line` parsed as `object`, so it is valid JSON; re-writing the entries is the fallback.
    let body = serde_json::from_str::<Box<RawValue>>(line).unwrap_or_else(|_| object.to_body(&[]));
    Ok(TwinItem { id: id.into_owned(), model, body, origin: origin.clone(), patch: false })
}

/// The keys of an Import-Jobs relationship line that are not part of the PUT body.
const RELATIONSHIP_LINE_ONLY_KEYS: [&str; 2] = ["$dtId", "$relationshipId"];

/// A relationship from an Import-Jobs relationship line: the source is `$dtId`; `$relationshipId`,
/// `$targetId` and `$relationshipName` are required. The PUT body is the line without `$dtId` and
/// `$relationshipId` (those go in the path).
pub(crate) fn relationship_from(object: &RawObject, origin: &Origin) -> Result<RelationshipItem, String> {
    let mut missing = Vec::new();
    let mut field = |key: &'static str| -> Result<String, String> {
        match object.string(key)? {
            Some(v) if !v.is_empty() => Ok(v.into_owned()),
            _ => {
                missing.push(key);
                Ok(String::new())
            }
        }
    };
    let source = field("$dtId")?;
    let id = field("$relationshipId")?;
    let target = field("$targetId")?;
    let name = field("$relationshipName")?;
    if !missing.is_empty() {
        let what = if source.is_empty() { "the relationship".to_string() } else { format!("relationship of {source}") };
        return Err(format!(
            "{what} has no {} (a relationship line needs \"$dtId\" (its source twin), \"$relationshipId\", \"$targetId\" and \"$relationshipName\")",
            missing.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(RelationshipItem {
        source,
        id,
        target,
        name,
        body: object.to_body(&RELATIONSHIP_LINE_ONLY_KEYS),
        origin: origin.clone(),
    })
}

/// A model from a DTDL Interface document. Only `@id` is required here; the planner checks the
/// rest (DTMI syntax, Interface shape) with `crate::dtdl::Interface::parse` and reports it there.
/// `depends_on` lists the `extends` and Component `schema` DTMIs as written.
pub(crate) fn model_from(raw: &RawValue, origin: &Origin) -> Result<ModelItem, String> {
    let doc: Value = serde_json::from_str(raw.get()).map_err(|e| describe_json_error(&e))?;
    let Some(obj) = doc.as_object() else {
        return Err("a model must be a JSON object (a DTDL Interface)".into());
    };
    let id = match obj.get("@id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err("the model's \"@id\" must be a DTMI string".into()),
        None => return Err("the model has no \"@id\"; a DTDL Interface needs \"@id\": \"dtmi:…;1\"".into()),
    };
    let mut depends_on = Vec::new();
    match obj.get("extends") {
        Some(Value::String(s)) => depends_on.push(s.clone()),
        Some(Value::Array(items)) => depends_on.extend(items.iter().filter_map(Value::as_str).map(str::to_string)),
        _ => {}
    }
    if let Some(Value::Array(contents)) = obj.get("contents") {
        for element in contents {
            let is_component = match element.get("@type") {
                Some(Value::String(t)) => t == "Component",
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "Component"),
                _ => false,
            };
            if let (true, Some(Value::String(schema))) = (is_component, element.get("schema")) {
                depends_on.push(schema.clone());
            }
        }
    }
    depends_on.dedup();
    Ok(ModelItem { id, depends_on, body: raw.to_owned(), origin: origin.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn origin() -> Origin {
        Origin { file: Arc::from("f.ndjson"), line: 7 }
    }

    #[test]
    fn relationship_body_drops_the_path_keys_and_keeps_the_rest() {
        let line = r#"{"$dtId":"a","$relationshipId":"r1","$targetId":"b","$relationshipName":"has","since":"2020-01-01","n":{"x":[1,2]}}"#;
        let o = RawObject::parse(line).unwrap();
        let r = relationship_from(&o, &origin()).unwrap();
        assert_eq!((r.source.as_str(), r.id.as_str(), r.target.as_str(), r.name.as_str()), ("a", "r1", "b", "has"));
        assert_eq!(r.body.get(), r#"{"$targetId":"b","$relationshipName":"has","since":"2020-01-01","n":{"x":[1,2]}}"#);
    }

    #[test]
    fn twin_body_is_the_line_and_escapes_survive() {
        let line = r#"{ "$dtId" : "t\"1", "$metadata": {"$model": "dtmi:a;1"}, "na\u00efve": "é" }"#;
        let o = RawObject::parse(line).unwrap();
        let t = twin_from(&o, line, &origin()).unwrap();
        assert_eq!(t.id, "t\"1");
        assert_eq!(t.model, "dtmi:a;1");
        assert_eq!(t.body.get(), line, "the body is the line, verbatim");
    }

    #[test]
    fn missing_fields_are_named() {
        let line = r#"{"$dtId":"t1","p":1}"#;
        let o = RawObject::parse(line).unwrap();
        assert!(twin_from(&o, line, &origin()).unwrap_err().contains("$model"));
        let o = RawObject::parse(r#"{"$dtId":"a","$relationshipId":"r","$relationshipName":"has"}"#).unwrap();
        let e = relationship_from(&o, &origin()).unwrap_err();
        assert!(e.contains("\"$targetId\"") && !e.contains("\"$relationshipName\","), "{e}");
        let line = r#"{"$dtId":5,"$metadata":{"$model":"dtmi:a;1"}}"#;
        let o = RawObject::parse(line).unwrap();
        assert!(twin_from(&o, line, &origin()).unwrap_err().contains("$dtId must be a string"));
    }

    #[test]
    fn bad_json_repeated_keys_and_non_objects_are_errors() {
        assert!(RawObject::parse(r#"{"a":1,"#).unwrap_err().contains("invalid JSON"));
        assert!(RawObject::parse(r#"[1,2]"#).unwrap_err().contains("not an object"));
        assert!(RawObject::parse(r#"{"a":1,"a":2}"#).unwrap_err().contains("appears twice"));
    }

    #[test]
    fn model_dependencies_are_extends_and_component_schemas() {
        let raw: Box<RawValue> = serde_json::from_str(
            r#"{"@id":"dtmi:x:V;1","@type":"Interface","extends":["dtmi:x:A;1"],"contents":[{"@type":"Component","name":"t","schema":"dtmi:x:T;1"},{"@type":"Relationship","name":"r","target":"dtmi:x:P;1"}]}"#,
        )
        .unwrap();
        let m = model_from(&raw, &origin()).unwrap();
        assert_eq!(m.depends_on, vec!["dtmi:x:A;1", "dtmi:x:T;1"]);
        assert_eq!(m.body.get(), raw.get());
    }
}
