//! One JSON document per twin, as an ADF mapping data flow writes it (one blob per row, named
//! by a column, often without extension). The twin id is `$dtId`, or else the unit's short name;
//! the model is `$metadata.$model`, or else the configured `model`. With a mapping the document
//! goes through it (see [`super::mapping`]): a JSON Patch of an existing twin when no model is
//! known, the body of a full twin when one is.
//!
//! The parser takes the unit's name (for errors), its short name and its bytes, so a blob plugs
//! in the same way as a local file.

use std::io::Read;
use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::Value;

use super::mapping::{patch_body, twin_body, Cell};
use super::{InputOptions, Source, SourceError, MAX_LINE_BYTES};
use crate::item::{Item, ItemKey, Origin, TwinItem};

/// A per-twin JSON document.
pub struct TwinDocSource {
    name: String,
    short_name: String,
    reader: Box<dyn Read + Send>,
    options: InputOptions,
}

impl TwinDocSource {
    /// `name` names the unit in errors (a path or blob URL); `short_name` is its file or blob
    /// name (the twin id when the document has no `$dtId`, and `$FILENAME`).
    pub fn new(name: String, short_name: String, reader: Box<dyn Read + Send>, options: InputOptions) -> TwinDocSource {
        TwinDocSource { name, short_name, reader, options }
    }
}

impl Source for TwinDocSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn items(self: Box<Self>) -> Box<dyn Iterator<Item = Result<Item, SourceError>> + Send> {
        let mut bytes = Vec::new();
        let origin = Origin { file: Arc::from(self.name.as_str()), line: 1 };
        let read = self.reader.take(MAX_LINE_BYTES as u64 + 1).read_to_end(&mut bytes);
        let result = match read {
            Err(e) => Err(SourceError::new(
                origin,
                format!("cannot read the twin document: {e}"),
                None,
                Some(ItemKey::Twin { id: self.short_name.clone() }),
            )),
            Ok(_) if bytes.len() > MAX_LINE_BYTES => Err(SourceError::new(
                origin,
                format!("the twin document is larger than {MAX_LINE_BYTES} bytes; ADT twins are at most 32 KB"),
                None,
                Some(ItemKey::Twin { id: self.short_name.clone() }),
            )),
            Ok(_) => parse(&origin, &self.short_name, &bytes, &self.options),
        };
        Box::new(std::iter::once(result))
    }
}

/// One document's bytes to a twin (or its error, keyed by the best id known).
pub fn parse(origin: &Origin, short_name: &str, bytes: &[u8], options: &InputOptions) -> Result<Item, SourceError> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_start_matches('\u{feff}');
    let fail = |id: &str, message: String| {
        SourceError::new(origin.clone(), message, Some(text), Some(ItemKey::Twin { id: id.to_string() }))
    };
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| fail(short_name, format!("invalid JSON ({e}); a twin document is one JSON object")))?;
    let Value::Object(object) = &doc else {
        return Err(fail(short_name, "a twin document must be one JSON object".into()));
    };
    let id = match object.get("$dtId") {
        None => short_name.to_string(),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err(fail(short_name, "\"$dtId\" must be a non-empty string".into())),
    };
    let model = match object.get("$metadata").map(|m| m.get("$model")) {
        None | Some(None) => options.model.clone(),
        Some(Some(Value::String(m))) if !m.is_empty() => Some(m.clone()),
        Some(Some(_)) => return Err(fail(&id, format!("twin {id}: \"$metadata.$model\" must be a DTMI string"))),
    };
    let (body, patch) = match (&options.mapping, model.as_deref()) {
        (Some(mapping), model) => {
            let ops = mapping
                .apply(short_name, |k| object.get(k).map(Cell::Json))
                .map_err(|why| fail(&id, format!("{why} (mapping {})", mapping.name)))?;
            match model {
                Some(model) => (twin_body(model, &ops).map_err(|why| fail(&id, why))?, false),
                None => (patch_body(&ops), true),
            }
        }
        (None, Some(model)) => {
            let mut body = object.clone();
            body.remove("$dtId");
            body.entry("$metadata").or_insert_with(|| serde_json::json!({}));
            if let Some(Value::Object(meta)) = body.get_mut("$metadata") {
                meta.insert("$model".into(), Value::String(model.to_string()));
            }
            (Value::Object(body), false)
        }
        (None, None) => {
            return Err(fail(
                &id,
                format!("twin {id} has no model: add \"$metadata\": {{\"$model\": \"dtmi:…;1\"}}, configure `model`, or give a `mapping` to patch an existing twin"),
            ))
        }
    };
    let body = serde_json::value::to_raw_value(&body)
        .unwrap_or_else(|_| RawValue::from_string("{}".into()).unwrap_or_else(|_| unreachable!("{{}} is JSON")));
    Ok(Item::Twin(TwinItem { id, model: model.unwrap_or_default(), body, origin: origin.clone(), patch }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::mapping::Mapping;

    fn origin() -> Origin {
        Origin { file: "in/org1".into(), line: 1 }
    }

    fn twin(item: Item) -> TwinItem {
        match item {
            Item::Twin(t) => t,
            other => panic!("not a twin: {other:?}"),
        }
    }

    #[test]
    fn id_from_dtid_or_the_name_and_model_from_metadata_or_config() {
        let opts = InputOptions::default();
        let t = twin(
            parse(&origin(), "org1", br#"{"$dtId":"x","$metadata":{"$model":"dtmi:a:B;1"},"Name":"n"}"#, &opts)
                .unwrap(),
        );
        assert_eq!((t.id.as_str(), t.model.as_str(), t.patch), ("x", "dtmi:a:B;1", false));
        let err = parse(&origin(), "org1", br#"{"Name":"n"}"#, &opts).unwrap_err();
        assert!(err.message.contains("twin org1 has no model") && err.message.contains("mapping"), "{}", err.message);
        assert_eq!(err.key, Some(ItemKey::Twin { id: "org1".into() }));
        let opts = InputOptions { model: Some("dtmi:a:C;1".into()), ..Default::default() };
        let t = twin(parse(&origin(), "org1", "\u{feff}{\"Name\":\"n\"}".as_bytes(), &opts).unwrap());
        assert_eq!((t.id.as_str(), t.model.as_str()), ("org1", "dtmi:a:C;1"));
        let body: Value = serde_json::from_str(t.body.get()).unwrap();
        assert_eq!(body, serde_json::json!({"Name":"n","$metadata":{"$model":"dtmi:a:C;1"}}));
    }

    #[test]
    fn a_mapping_without_a_model_patches_and_with_one_builds_the_twin() {
        let mapping = Mapping::parse(
            "m.json",
            br#"{"mapping":[{"Source":"$FILENAME","Target":"/AssetId","TargetType":"string"},{"Source":"Floors","Target":"/Floors","TargetType":"int"}]}"#,
        )
        .unwrap();
        let opts = InputOptions { mapping: Some(Arc::new(mapping)), model: None, ..Default::default() };
        let t = twin(parse(&origin(), "org1", br#"{"Floors":"3"}"#, &opts).unwrap());
        assert!(t.patch);
        let body: Value = serde_json::from_str(t.body.get()).unwrap();
        assert_eq!(
            body,
            serde_json::json!([{"op":"add","path":"/AssetId","value":"org1"},{"op":"add","path":"/Floors","value":3}])
        );
        let err = parse(&origin(), "org1", br#"{"Floors":"three"}"#, &opts).unwrap_err();
        assert!(err.to_string().contains("in/org1:1") && err.message.contains("Floors"), "{err}");
        let opts = InputOptions { model: Some("dtmi:a:C;1".into()), ..opts };
        let t = twin(parse(&origin(), "org1", br#"{"Floors":3}"#, &opts).unwrap());
        assert!(!t.patch);
        let body: Value = serde_json::from_str(t.body.get()).unwrap();
        assert_eq!(body, serde_json::json!({"$metadata":{"$model":"dtmi:a:C;1"},"AssetId":"org1","Floors":3}));
    }

    #[test]
    fn broken_documents_are_errors_not_panics() {
        let opts = InputOptions::default();
        for bad in [&b"["[..], b"[1,2]", b"\"x\"", b"", b"{\"$dtId\":5}", b"\xff\xfe"] {
            assert!(parse(&origin(), "org1", bad, &opts).is_err());
        }
    }
}
