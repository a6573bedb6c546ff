//! DTDL model files: a `.json` file holding one Interface, or an array of Interfaces (the shape
//! of the DTDL samples and of `POST /models` bodies). Each model's origin is the file and the
//! line its object starts on.
//!
//! Model files are small (ADT caps one model at 1 MB and an instance at 10,000 models), so a
//! file is read whole, up to [`MAX_LINE_BYTES`](super::MAX_LINE_BYTES).

use std::io::Read;
use std::sync::Arc;

use serde_json::value::RawValue;

use super::items::model_from;
use super::{Source, SourceError, MAX_LINE_BYTES};
use crate::item::{Item, ItemKey, Origin};

/// A DTDL model file.
pub struct DtdlFileSource {
    name: String,
    reader: Box<dyn Read + Send>,
}

impl DtdlFileSource {
    pub fn new(name: String, reader: Box<dyn Read + Send>) -> DtdlFileSource {
        DtdlFileSource { name, reader }
    }
}

impl Source for DtdlFileSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn items(self: Box<Self>) -> Box<dyn Iterator<Item = Result<Item, SourceError>> + Send> {
        let file: Arc<str> = Arc::from(self.name.as_str());
        Box::new(read_models(file, self.reader).into_iter())
    }
}

fn whole_file_error(file: &Arc<str>, line: u64, message: String) -> Vec<Result<Item, SourceError>> {
    let origin = Origin { file: file.clone(), line };
    vec![Err(SourceError::new(origin, message, None, Some(ItemKey::Model { id: String::new() })))]
}

fn read_models(file: Arc<str>, reader: Box<dyn Read + Send>) -> Vec<Result<Item, SourceError>> {
    let mut bytes = Vec::new();
    if let Err(e) = reader.take(MAX_LINE_BYTES as u64 + 1).read_to_end(&mut bytes) {
        return whole_file_error(&file, 1, format!("cannot read the model file: {e}"));
    }
    if bytes.len() > MAX_LINE_BYTES {
        return whole_file_error(&file, 1, format!("the model file is larger than {MAX_LINE_BYTES} bytes; ADT models are at most 1 MB each, so split the file"));
    }
    let Ok(text) = String::from_utf8(bytes) else {
        return whole_file_error(&file, 1, "the model file is not UTF-8 text; save it as UTF-8".into());
    };
    let body = text.trim_start_matches('\u{feff}').trim();
    let documents: Vec<&RawValue> = if body.starts_with('[') {
        match serde_json::from_str(body) {
            Ok(list) => list,
            Err(e) => {
                return whole_file_error(
                    &file,
                    line_of_error(&text, &e),
                    format!("invalid JSON in the model array ({e})"),
                )
            }
        }
    } else {
        match serde_json::from_str(body) {
            Ok(one) => vec![one],
            Err(e) => {
                return whole_file_error(
                    &file,
                    line_of_error(&text, &e),
                    format!("invalid JSON in the model file ({e})"),
                )
            }
        }
    };
    let mut lines = LineCounter::new(&text);
    documents
        .into_iter()
        .map(|raw| {
            let origin = Origin { file: file.clone(), line: lines.line_of(raw.get()) };
            if looks_like_twin(raw) {
                let message =
                    "this is a twin, not a DTDL Interface; twins go in the Twins section of an Import-Jobs NDJSON file"
                        .to_string();
                return Err(SourceError::new(
                    origin,
                    message,
                    Some(raw.get()),
                    Some(ItemKey::Model { id: String::new() }),
                ));
            }
            model_from(raw, &origin).map(Item::Model).map_err(|why| {
                let id = serde_json::from_str::<serde_json::Value>(raw.get())
                    .ok()
                    .and_then(|v| v.get("@id").and_then(|i| i.as_str()).map(str::to_string))
                    .unwrap_or_default();
                SourceError::new(origin, why, Some(raw.get()), Some(ItemKey::Model { id }))
            })
        })
        .collect()
}

fn looks_like_twin(raw: &RawValue) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "$dtId")]
        dt_id: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_str::<Probe>(raw.get()).is_ok_and(|p| p.dt_id.is_some())
}

/// serde_json counts lines from where it started parsing, after the BOM and leading blanks.
fn line_of_error(text: &str, e: &serde_json::Error) -> u64 {
    let skipped = text.len() - text.trim_start_matches('\u{feff}').trim_start().len();
    let leading_lines = text[..skipped].matches('\n').count() as u64;
    leading_lines + e.line().max(1) as u64
}

/// Finds the 1-based line of a slice of the text, walking forward (documents come in order).
struct LineCounter<'a> {
    text: &'a str,
    offset: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a str) -> LineCounter<'a> {
        LineCounter { text, offset: 0, line: 1 }
    }

    fn line_of(&mut self, part: &str) -> u64 {
        // `part` borrows from `text`, so its position is the difference of the two addresses.
        let start = (part.as_ptr() as usize).saturating_sub(self.text.as_ptr() as usize).min(self.text.len());
        if start >= self.offset {
            self.line += self.text[self.offset..start].matches('\n').count() as u64;
            self.offset = start;
        }
        self.line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<Result<Item, SourceError>> {
        let source = Box::new(DtdlFileSource::new(
            "models/fleet.json".into(),
            Box::new(std::io::Cursor::new(text.as_bytes().to_vec())),
        ));
        source.items().collect()
    }

    #[test]
    fn an_array_of_interfaces_gives_one_model_each_with_its_line() {
        let text = "[\n  {\"@id\": \"dtmi:x:A;1\", \"@type\": \"Interface\"},\n\n  {\n    \"@id\": \"dtmi:x:B;1\",\n    \"extends\": \"dtmi:x:A;1\"\n  }\n]\n";
        let items: Vec<Item> = read(text).into_iter().map(Result::unwrap).collect();
        let got: Vec<(String, u64)> = items.iter().map(|i| (i.key().to_string(), i.origin().line)).collect();
        assert_eq!(got, vec![("model dtmi:x:A;1".to_string(), 2), ("model dtmi:x:B;1".to_string(), 4)]);
        let Item::Model(b) = &items[1] else { panic!("a model") };
        assert_eq!(b.depends_on, vec!["dtmi:x:A;1"]);
    }

    #[test]
    fn a_single_interface_file_and_errors() {
        let items = read("{\"@id\": \"dtmi:x:A;1\", \"@type\": \"Interface\"}");
        assert_eq!(items.len(), 1);
        assert!(items[0].is_ok());

        let bad = read("[\n{\"@id\": \"dtmi:x:A;1\"},\n{\"@id\": oops}\n]");
        assert_eq!(bad.len(), 1);
        let e = bad[0].as_ref().unwrap_err();
        assert_eq!(e.origin.line, 3);
        assert!(e.message.contains("invalid JSON"), "{e}");

        let twin = read("{\"$dtId\": \"t1\", \"$metadata\": {\"$model\": \"dtmi:x:A;1\"}}");
        assert!(twin[0].as_ref().unwrap_err().message.contains("twin, not a DTDL Interface"));

        let no_id = read("[{\"@type\": \"Interface\"}, {\"@id\": \"dtmi:x:C;1\"}]");
        assert!(no_id[0].as_ref().unwrap_err().message.contains("no \"@id\""));
        assert!(no_id[1].is_ok(), "the next model is still read");
    }
}
