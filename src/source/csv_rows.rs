//! CSV files with a header row (read with the `csv` crate: quoted fields, embedded newlines,
//! CRLF, a UTF-8 BOM), one twin or one relationship per row.
//!
//! Columns that start with `$` are the item's identity; every other column is a property:
//! through the mapping when one is given (its `Source`s name columns, `$FILENAME` is the file's
//! short name), else copied as a string property under its header name. One mapping serves the
//! twin files and the relationship files of a load, so a relationship CSV uses only the rules
//! whose `Source` is one of its columns.
//!
//! - Twins: `$dtId` (required), `$model` (optional; else the configured `model`; with neither,
//!   a mapping patches an existing twin).
//! - Relationships (the header has `$sourceId`): `$sourceId`, `$targetId`, `$relationshipName`
//!   (required), `$relationshipId` (optional; default `<source>-<name>-<target>`).
//!
//! A bad row is an error naming the file, its line and the column; the next row is read.

use std::io::Read;
use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::mapping::{patch_body, twin_body, Cell};
use super::{InputOptions, Source, SourceError};
use crate::item::{Item, ItemKey, ItemKind, Origin, RelationshipItem, TwinItem};

pub const COL_TWIN_ID: &str = "$dtId";
pub const COL_MODEL: &str = "$model";
pub const COL_SOURCE: &str = "$sourceId";
pub const COL_TARGET: &str = "$targetId";
pub const COL_NAME: &str = "$relationshipName";
pub const COL_REL_ID: &str = "$relationshipId";

/// A CSV input.
pub struct CsvSource {
    name: String,
    short_name: String,
    reader: Box<dyn Read + Send>,
    options: InputOptions,
}

impl CsvSource {
    pub fn new(name: String, short_name: String, reader: Box<dyn Read + Send>, options: InputOptions) -> CsvSource {
        CsvSource { name, short_name, reader, options }
    }
}

impl Source for CsvSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn items(self: Box<Self>) -> Box<dyn Iterator<Item = Result<Item, SourceError>> + Send> {
        let file: Arc<str> = Arc::from(self.name.as_str());
        // The csv crate places a record after a CRLF at the `\n` of that CRLF, one line too
        // early; a file whose header ends in CRLF gets its line numbers corrected by one.
        let watched =
            QuoteWatch { inner: self.reader, quoting: Quoting::FieldStart, newlines: 0, opened_on: 0, last: 0 };
        let mut buffered = std::io::BufReader::with_capacity(64 * 1024, watched);
        let crlf = std::io::BufRead::fill_buf(&mut buffered)
            .ok()
            .and_then(|head| head.iter().position(|&b| b == b'\n').map(|i| i > 0 && head[i - 1] == b'\r'))
            .unwrap_or(false);
        let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(buffered);
        let header_error = |message: String| -> Box<dyn Iterator<Item = Result<Item, SourceError>> + Send> {
            let origin = Origin { file: file.clone(), line: 1 };
            Box::new(std::iter::once(Err(SourceError::new(origin, message, None, None))))
        };
        let headers: Vec<String> = match reader.headers() {
            Ok(h) => h.iter().map(|c| c.trim_start_matches('\u{feff}').trim().to_string()).collect(),
            Err(e) => return header_error(format!("cannot read the CSV header row: {e}")),
        };
        let kind = if headers.iter().any(|h| h == COL_SOURCE) { ItemKind::Relationship } else { ItemKind::Twin };
        let required: &[&str] =
            if kind == ItemKind::Relationship { &[COL_SOURCE, COL_TARGET, COL_NAME] } else { &[COL_TWIN_ID] };
        let missing: Vec<&str> = required.iter().copied().filter(|r| !headers.iter().any(|h| h == r)).collect();
        if !missing.is_empty() {
            return header_error(format!(
                "the CSV header has no {} column; a twin CSV needs {COL_TWIN_ID} (and {COL_MODEL} or a configured model), a relationship CSV needs {COL_SOURCE}, {COL_TARGET}, {COL_NAME} (and optionally {COL_REL_ID})",
                missing.join(", ")
            ));
        }
        let mut options = self.options;
        if kind == ItemKind::Relationship {
            options.mapping = options.mapping.map(|m| {
                let mut own = (*m).clone();
                own.rules.retain(|r| headers.contains(&r.source));
                Arc::new(own)
            });
        }
        let rows = Rows { file, short_name: self.short_name, headers, kind, options, crlf };
        Box::new(CsvItems { records: reader.into_records(), lookahead: None, rows, told_unclosed: false })
    }
}

type Records = csv::StringRecordsIntoIter<std::io::BufReader<QuoteWatch>>;

/// The rows of a CSV file as items, one record read ahead: the last record is the one an
/// unclosed quote swallowed the rest of the file into, which only the end of the file tells.
struct CsvItems {
    records: Records,
    lookahead: Option<Result<csv::StringRecord, csv::Error>>,
    rows: Rows,
    told_unclosed: bool,
}

impl Iterator for CsvItems {
    type Item = Result<Item, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        let current = self.lookahead.take().or_else(|| self.records.next());
        if current.is_some() {
            self.lookahead = self.records.next();
        }
        if self.lookahead.is_none() && !self.told_unclosed {
            let watch = self.records.reader().get_ref().get_ref();
            if let Some(opened_on) = watch.unclosed_quote() {
                // No record at all: the quote opened in the header and took every row.
                self.told_unclosed = true;
                let record = current.and_then(Result::ok);
                return Some(Err(self.rows.swallowed(record, opened_on, watch.last_line())));
            }
        }
        current.map(|record| self.rows.item(record))
    }
}

/// Follows the quoting of a CSV file's bytes as the csv crate reads them (RFC 4180, its
/// defaults: a field that starts with `"` runs to the next lone `"`, `""` inside it is a quote;
/// a `"` inside an unquoted field is an ordinary character), so that a quote still open at the
/// end of the file is known. The csv crate ends such a field at the end of the file without an
/// error, and every row after the quote would vanish into it.
struct QuoteWatch {
    inner: Box<dyn Read + Send>,
    quoting: Quoting,
    newlines: u64,
    /// The line where the quoted field being read opened.
    opened_on: u64,
    /// The last byte read.
    last: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    FieldStart,
    Unquoted,
    Quoted,
    /// A `"` inside a quoted field: it closes the field unless another `"` follows.
    QuoteInQuoted,
}

impl QuoteWatch {
    /// The line where a quoted field opened that the end of the file left open.
    fn unclosed_quote(&self) -> Option<u64> {
        (self.quoting == Quoting::Quoted).then_some(self.opened_on)
    }

    /// The number of the file's last line (as read so far; a final newline ends it).
    fn last_line(&self) -> u64 {
        self.newlines + u64::from(self.last != b'\n')
    }
}

impl Read for QuoteWatch {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            self.quoting = match (self.quoting, b) {
                (Quoting::FieldStart, b'"') => {
                    self.opened_on = self.newlines + 1;
                    Quoting::Quoted
                }
                (Quoting::Quoted, b'"') => Quoting::QuoteInQuoted,
                (Quoting::QuoteInQuoted, b'"') => Quoting::Quoted,
                (Quoting::Quoted, _) => Quoting::Quoted,
                (_, b',' | b'\n') => Quoting::FieldStart,
                (_, _) => Quoting::Unquoted,
            };
            if b == b'\n' {
                self.newlines += 1;
            }
        }
        if let Some(&b) = buf[..n].last() {
            self.last = b;
        }
        Ok(n)
    }
}

struct Rows {
    file: Arc<str>,
    short_name: String,
    headers: Vec<String>,
    kind: ItemKind,
    options: InputOptions,
    crlf: bool,
}

impl Rows {
    /// The error for the last record when a quote opened on line `opened_on` was never closed:
    /// the rows from there to the end of the file were read as one field, so none of them is
    /// an item.
    fn swallowed(&self, record: Option<csv::StringRecord>, opened_on: u64, last_line: u64) -> SourceError {
        let cell = |name: &str| {
            let at = self.headers.iter().position(|h| h == name);
            record.as_ref().and_then(|r| at.and_then(|i| r.get(i))).unwrap_or_default().to_string()
        };
        let key = match self.kind {
            ItemKind::Relationship => ItemKey::Relationship { source: cell(COL_SOURCE), id: cell(COL_REL_ID) },
            _ => ItemKey::Twin { id: cell(COL_TWIN_ID) },
        };
        let origin = Origin { file: self.file.clone(), line: opened_on };
        let message = format!(
            "a quoted field opens on line {opened_on} and is never closed, so lines {opened_on}-{last_line} (to the end of the file) were read as one field and none of those rows is loaded; close the quote (a quote inside a quoted field is written \"\")"
        );
        SourceError::new(origin, message, None, Some(key))
    }

    fn item(&self, record: Result<csv::StringRecord, csv::Error>) -> Result<Item, SourceError> {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() + u64::from(self.crlf));
                let origin = Origin { file: self.file.clone(), line };
                let key = ItemKey::Twin { id: String::new() };
                let key = if self.kind == ItemKind::Relationship {
                    ItemKey::Relationship { source: String::new(), id: String::new() }
                } else {
                    key
                };
                return Err(SourceError::new(origin, format!("unreadable CSV row: {e}"), None, Some(key)));
            }
        };
        let line = record.position().map_or(0, |p| p.line() + u64::from(self.crlf));
        let origin = Origin { file: self.file.clone(), line };
        let col = |name: &str| self.headers.iter().position(|h| h == name).and_then(|i| record.get(i));
        let raw = record.iter().collect::<Vec<_>>().join(",");
        let fail = |key: ItemKey, message: String| SourceError::new(origin.clone(), message, Some(&raw), Some(key));
        let properties = || -> Result<Vec<(String, Value)>, String> {
            match &self.options.mapping {
                Some(mapping) => mapping
                    .apply(&self.short_name, |k| col(k).map(|v| Cell::Text(v.into())))
                    .map_err(|why| format!("column {why} (mapping {})", mapping.name)),
                None => Ok(self
                    .headers
                    .iter()
                    .zip(record.iter())
                    .filter(|(h, _)| !h.starts_with('$') && !h.is_empty())
                    .map(|(h, v)| (format!("/{h}"), Value::String(v.to_string())))
                    .collect()),
            }
        };
        match self.kind {
            ItemKind::Relationship => {
                let source = col(COL_SOURCE).unwrap_or_default().to_string();
                let target = col(COL_TARGET).unwrap_or_default().to_string();
                let name = col(COL_NAME).unwrap_or_default().to_string();
                let id = match col(COL_REL_ID) {
                    Some(id) if !id.is_empty() => id.to_string(),
                    _ => format!("{source}-{name}-{target}"),
                };
                let key = ItemKey::Relationship { source: source.clone(), id: id.clone() };
                for (column, value) in [(COL_SOURCE, &source), (COL_TARGET, &target), (COL_NAME, &name)] {
                    if value.is_empty() {
                        return Err(fail(key, format!("column {column} is empty; every relationship row needs it")));
                    }
                }
                let props = properties().map_err(|m| fail(key.clone(), m))?;
                let mut body = Map::new();
                body.insert("$targetId".into(), Value::String(target.clone()));
                body.insert("$relationshipName".into(), Value::String(name.clone()));
                for (path, value) in props {
                    body.insert(path[1..].to_string(), value);
                }
                Ok(Item::Relationship(RelationshipItem {
                    source,
                    id,
                    target,
                    name,
                    body: raw_json(&Value::Object(body)),
                    origin,
                }))
            }
            _ => {
                let id = col(COL_TWIN_ID).unwrap_or_default().to_string();
                let key = ItemKey::Twin { id: id.clone() };
                if id.is_empty() {
                    return Err(fail(key, format!("column {COL_TWIN_ID} is empty; every twin row needs an id")));
                }
                let model =
                    col(COL_MODEL).filter(|m| !m.is_empty()).map(str::to_string).or_else(|| self.options.model.clone());
                let what = format!("twin {id}");
                let ops = properties().map_err(|m| fail(key.clone(), m))?;
                let (body, patch) = match (&model, &self.options.mapping) {
                    (Some(model), _) => (twin_body(model, &ops).map_err(|m| fail(key.clone(), m))?, false),
                    (None, Some(_)) => (patch_body(&ops), true),
                    (None, None) => {
                        return Err(fail(
                            key,
                            format!("{what} has no model: add a {COL_MODEL} column, configure `model`, or give a `mapping` to patch existing twins"),
                        ))
                    }
                };
                Ok(Item::Twin(TwinItem { id, model: model.unwrap_or_default(), body: raw_json(&body), origin, patch }))
            }
        }
    }
}

fn raw_json(value: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(value)
        .unwrap_or_else(|_| RawValue::from_string("{}".into()).unwrap_or_else(|_| unreachable!("{{}} is JSON")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::mapping::Mapping;

    fn read(text: &str, options: InputOptions) -> Vec<Result<Item, SourceError>> {
        let source = CsvSource::new(
            "in/rows.csv".into(),
            "rows.csv".into(),
            Box::new(std::io::Cursor::new(text.as_bytes().to_vec())),
            options,
        );
        Box::new(source).items().collect()
    }

    fn body(item: &Item) -> Value {
        serde_json::from_str(item.body().get()).unwrap()
    }

    #[test]
    fn twins_with_bom_crlf_quotes_and_a_mapping() {
        let mapping = Mapping::parse(
            "m.json",
            br#"{"mapping":[{"Source":"Name","Target":"/Name"},{"Source":"Floors","Target":"/Floors","TargetType":"int"}]}"#,
        )
        .unwrap();
        let opts =
            InputOptions { mapping: Some(Arc::new(mapping)), model: Some("dtmi:x:B;1".into()), ..Default::default() };
        let text =
            "\u{feff}$dtId,Name,Floors\r\nb1,\"Main, \"\"North\"\" wing\",3\r\nb2,\"two\r\nlines\",x\r\nb3,plain,\r\n";
        let items = read(text, opts);
        assert_eq!(items.len(), 3);
        let b1 = items[0].as_ref().unwrap();
        assert_eq!(b1.key(), ItemKey::Twin { id: "b1".into() });
        assert_eq!(
            body(b1),
            serde_json::json!({"$metadata":{"$model":"dtmi:x:B;1"},"Name":"Main, \"North\" wing","Floors":3})
        );
        let err = items[1].as_ref().unwrap_err();
        assert_eq!(err.origin.line, 3, "the row's first line");
        assert!(
            err.to_string().contains("in/rows.csv:3")
                && err.message.contains("Floors")
                && err.message.contains("\"x\""),
            "{err}"
        );
        assert_eq!(err.key, Some(ItemKey::Twin { id: "b2".into() }));
        assert_eq!(body(items[2].as_ref().unwrap())["Floors"], Value::Null, "an empty int cell sets nothing");
    }

    #[test]
    fn twins_without_a_mapping_take_columns_as_strings_and_need_a_model() {
        let items = read("$dtId,$model,Name\nr1,dtmi:x:R;1,Lobby\nr2,,Hall\n", InputOptions::default());
        assert_eq!(
            body(items[0].as_ref().unwrap()),
            serde_json::json!({"$metadata":{"$model":"dtmi:x:R;1"},"Name":"Lobby"})
        );
        let err = items[1].as_ref().unwrap_err();
        assert!(err.message.contains("twin r2 has no model"), "{}", err.message);
    }

    #[test]
    fn relationships_with_default_ids_and_properties() {
        let text = "$sourceId,$targetId,$relationshipName,$relationshipId,since\nf1,r1,contains,,2020\nf1,r2,contains,c2,2021\n,r3,contains,,\nf1,r4\n";
        let items = read(text, InputOptions::default());
        let r = items[0].as_ref().unwrap();
        assert_eq!(r.key(), ItemKey::Relationship { source: "f1".into(), id: "f1-contains-r1".into() });
        assert_eq!(body(r), serde_json::json!({"$targetId":"r1","$relationshipName":"contains","since":"2020"}));
        assert_eq!(items[1].as_ref().unwrap().key(), ItemKey::Relationship { source: "f1".into(), id: "c2".into() });
        assert!(items[2].as_ref().unwrap_err().message.contains("$sourceId is empty"));
        let short = items[3].as_ref().unwrap_err();
        assert_eq!(short.origin.line, 5);
        assert!(short.message.contains("unreadable CSV row"), "{}", short.message);
    }

    #[test]
    fn an_unclosed_quote_is_an_error_at_its_line_not_rows_that_vanish() {
        let mut text = String::from("$dtId,$model,Name\n");
        for i in 1..=500 {
            let name = if i == 7 { "\"unclosed".to_string() } else { format!("n{i}") };
            text.push_str(&format!("t{i},dtmi:x:R;1,{name}\n"));
        }
        let items = read(&text, InputOptions::default());
        assert_eq!(items.iter().filter(|i| i.is_ok()).count(), 6, "the rows before the quote are read");
        assert_eq!(items.len(), 7, "the rest is one error, not a twin");
        let err = items[6].as_ref().unwrap_err();
        assert_eq!(err.origin.line, 8, "the quote's line (the header is line 1)");
        assert_eq!(err.key, Some(ItemKey::Twin { id: "t7".into() }));
        assert!(err.to_string().contains("in/rows.csv:8") && err.message.contains("lines 8-501"), "{err}");
        // A quoted field with a newline, closed, in the last row is fine.
        let items = read("$dtId,$model,Name\nt1,dtmi:x:R;1,\"two\nlines\"\n", InputOptions::default());
        assert!(items.len() == 1 && items[0].is_ok(), "{items:?}");
        // Opened in the header: every row is gone, and said so.
        let items = read("$dtId,$model,\"Name\nt1,dtmi:x:R;1,a\n", InputOptions::default());
        assert_eq!(items.len(), 1);
        assert!(items[0].as_ref().unwrap_err().message.contains("lines 1-2"), "{items:?}");
    }

    #[test]
    fn a_header_without_the_id_columns_is_one_file_error() {
        let items = read("name,model\nx,y\n", InputOptions::default());
        assert_eq!(items.len(), 1);
        let err = items[0].as_ref().unwrap_err();
        assert!(err.key.is_none() && err.message.contains("$dtId"), "{err}");
    }
}
