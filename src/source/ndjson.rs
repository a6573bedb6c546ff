//! The ADT Import-Jobs NDJSON format: a `Header` section, then the optional sections `Models`,
//! `Twins` and `Relationships`, in that order, one JSON object per line:
//!
//! ```text
//! {"Section": "Header"}
//! {"fileVersion": "1.0.0", "author": "…", "organization": "…"}
//! {"Section": "Models"}
//! {"@id":"dtmi:ex:Room;1","@type":"Interface","@context":"dtmi:dtdl:context;2",…}
//! {"Section": "Twins"}
//! {"$dtId":"room1","$metadata":{"$model":"dtmi:ex:Room;1"},"temp":21}
//! {"Section": "Relationships"}
//! {"$dtId":"floor1","$relationshipId":"r1","$targetId":"room1","$relationshipName":"contains"}
//! ```
//!
//! Read line by line through a bounded buffer: a 1 GB file is never held in memory. Every
//! problem is a [`SourceError`] naming the line; the reader goes on with the next line.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use serde_json::value::RawValue;

use super::items::{key_guess, model_from, relationship_from, sniff_kind, twin_from, RawObject};
use super::{Source, SourceError, MAX_LINE_BYTES};
use crate::item::{Item, ItemKey, ItemKind, Origin};

/// Read buffer size: large enough that a read call brings in many lines.
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// An Import-Jobs NDJSON input.
pub struct NdjsonSource {
    name: String,
    reader: Box<dyn Read + Send>,
}

impl NdjsonSource {
    /// `name` is what origins and errors call the input (its path).
    pub fn new(name: String, reader: Box<dyn Read + Send>) -> NdjsonSource {
        NdjsonSource { name, reader }
    }
}

impl Source for NdjsonSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn items(self: Box<Self>) -> Box<dyn Iterator<Item = Result<Item, SourceError>> + Send> {
        Box::new(NdjsonItems {
            file: Arc::from(self.name.as_str()),
            reader: BufReader::with_capacity(READ_BUFFER_BYTES, self.reader),
            buf: Vec::new(),
            line: 0,
            section: Section::None,
            last_rank: None,
            seen_content: false,
            done: false,
            queued: VecDeque::new(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Section {
    /// No section marker yet.
    None,
    Header,
    Models,
    Twins,
    Relationships,
    Unknown(String),
}

impl Section {
    const KNOWN: [(&'static str, Section); 4] = [
        ("Header", Section::Header),
        ("Models", Section::Models),
        ("Twins", Section::Twins),
        ("Relationships", Section::Relationships),
    ];

    /// Position in the required order Header, Models, Twins, Relationships.
    fn rank(&self) -> Option<u8> {
        match self {
            Section::Header => Some(0),
            Section::Models => Some(1),
            Section::Twins => Some(2),
            Section::Relationships => Some(3),
            Section::None | Section::Unknown(_) => None,
        }
    }

    fn name(&self) -> &str {
        match self {
            Section::None => "(none)",
            Section::Header => "Header",
            Section::Models => "Models",
            Section::Twins => "Twins",
            Section::Relationships => "Relationships",
            Section::Unknown(name) => name,
        }
    }

    fn kind(&self) -> Option<ItemKind> {
        match self {
            Section::Models => Some(ItemKind::Model),
            Section::Twins => Some(ItemKind::Twin),
            Section::Relationships => Some(ItemKind::Relationship),
            _ => None,
        }
    }
}

fn section_of_kind(kind: ItemKind) -> &'static str {
    match kind {
        ItemKind::Model => "Models",
        ItemKind::Twin => "Twins",
        ItemKind::Relationship => "Relationships",
    }
}

/// One line as read: text, too long to keep, or not UTF-8.
enum RawLine {
    Text,
    TooLong(usize),
    NotUtf8,
}

struct NdjsonItems {
    file: Arc<str>,
    reader: BufReader<Box<dyn Read + Send>>,
    buf: Vec<u8>,
    /// 1-based number of the line in `buf`.
    line: u64,
    section: Section,
    /// Rank of the last known section marker, to check the order.
    last_rank: Option<u8>,
    /// Whether a non-blank line has been seen (the first one must be the Header marker).
    seen_content: bool,
    done: bool,
    /// Results produced by one line beyond the first (a missing header plus the line itself).
    queued: VecDeque<Result<Item, SourceError>>,
}

impl Iterator for NdjsonItems {
    type Item = Result<Item, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(result) = self.queued.pop_front() {
                return Some(result);
            }
            if self.done {
                return None;
            }
            match self.read_line() {
                Ok(None) => self.done = true,
                Ok(Some(RawLine::Text)) => self.handle_line(),
                Ok(Some(RawLine::TooLong(len))) => {
                    let key = self.section.kind().map(empty_key);
                    self.push_err(format!("the line is {len} bytes, longer than the {MAX_LINE_BYTES}-byte limit; no single twin, relationship or model can be that large, so the line is probably missing its line break"), None, key);
                }
                Ok(Some(RawLine::NotUtf8)) => {
                    let key = self.section.kind().map(empty_key);
                    self.push_err("the line is not UTF-8 text; save the file as UTF-8".to_string(), None, key);
                }
                Err(e) => {
                    self.done = true;
                    self.push_err(format!("reading stopped here: {e}; the rest of the file was not read"), None, None);
                }
            }
        }
    }
}

impl NdjsonItems {
    fn origin(&self) -> Origin {
        Origin { file: self.file.clone(), line: self.line }
    }

    fn push_err(&mut self, message: String, raw: Option<&str>, key: Option<ItemKey>) {
        let err = SourceError::new(self.origin(), message, raw, key);
        self.queued.push_back(Err(err));
    }

    /// Reads the next line into `buf` (without its line break). `None` at the end of input.
    fn read_line(&mut self) -> std::io::Result<Option<RawLine>> {
        self.buf.clear();
        let limit = MAX_LINE_BYTES as u64 + 1;
        let n = (&mut self.reader).take(limit).read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        } else if self.buf.len() > MAX_LINE_BYTES {
            let skipped = self.skip_rest_of_line()?;
            let len = self.buf.len() + skipped;
            self.buf.clear();
            return Ok(Some(RawLine::TooLong(len)));
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        if std::str::from_utf8(&self.buf).is_err() {
            return Ok(Some(RawLine::NotUtf8));
        }
        Ok(Some(RawLine::Text))
    }

    /// Consumes input up to and including the next line break; returns how many bytes.
    fn skip_rest_of_line(&mut self) -> std::io::Result<usize> {
        let mut skipped = 0;
        loop {
            let available = self.reader.fill_buf()?;
            if available.is_empty() {
                return Ok(skipped);
            }
            match memchr_newline(available) {
                Some(i) => {
                    self.reader.consume(i + 1);
                    return Ok(skipped + i);
                }
                None => {
                    let len = available.len();
                    self.reader.consume(len);
                    skipped += len;
                }
            }
        }
    }

    fn handle_line(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        self.handle_text(&buf);
        self.buf = buf;
    }

    fn handle_text(&mut self, bytes: &[u8]) {
        // read_line checked the bytes are UTF-8.
        let Ok(text) = std::str::from_utf8(bytes) else { return };
        let text = if self.line == 1 { text.trim_start_matches('\u{feff}') } else { text };
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let first_content = !self.seen_content;
        self.seen_content = true;
        let object = match RawObject::parse(text) {
            Ok(o) => o,
            Err(why) => {
                let key = self.section.kind().map(empty_key);
                self.push_err(why, Some(text), key);
                return;
            }
        };
        if let Some(marker) = object.get("Section") {
            self.handle_marker(marker, text, first_content);
            return;
        }
        if first_content {
            self.push_err(
                "the file has no header: an Import-Jobs NDJSON file starts with {\"Section\": \"Header\"} and a header line such as {\"fileVersion\": \"1.0.0\"}".into(),
                Some(text),
                None,
            );
        }
        self.handle_content(&object, text);
    }

    fn handle_marker(&mut self, marker: &RawValue, text: &str, first_content: bool) {
        let name: Option<String> = serde_json::from_str(marker.get()).ok();
        let Some(name) = name else {
            self.push_err(
                "\"Section\" must name a section as a string, e.g. {\"Section\": \"Twins\"}".into(),
                Some(text),
                None,
            );
            return;
        };
        let section = Section::KNOWN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s.clone())
            .unwrap_or(Section::Unknown(name.clone()));
        if first_content && section != Section::Header {
            self.push_err(
                format!(
                    "the file has no header: it must start with {{\"Section\": \"Header\"}}, not the {name} section"
                ),
                Some(text),
                None,
            );
        }
        match section.rank() {
            None => self.push_err(
                format!("unknown section \"{name}\"; the sections are Header, Models, Twins and Relationships (the lines under it are not read)"),
                Some(text),
                None,
            ),
            Some(rank) => {
                if let Some(last) = self.last_rank.filter(|last| rank <= *last) {
                    let previous = Section::KNOWN[last as usize].0;
                    let problem = if rank == last { "appears twice".to_string() } else { format!("comes after the {previous} section") };
                    self.push_err(
                        format!("the {name} section {problem}; sections must appear once each, in the order Header, Models, Twins, Relationships (ADT's import jobs reject this file; twinload reads the lines anyway)"),
                        Some(text),
                        None,
                    );
                }
                self.last_rank = Some(rank.max(self.last_rank.unwrap_or(0)));
            }
        }
        self.section = section;
    }

    fn handle_content(&mut self, object: &RawObject, text: &str) {
        let origin = self.origin();
        let sniffed = sniff_kind(object);
        let section_kind = match &self.section {
            Section::Header => return, // header data: file version, author, organisation.
            Section::None => {
                let key = sniffed.map(|k| key_guess(object, k));
                self.push_err("the line is outside any section; put it under {\"Section\": \"Models\"}, \"Twins\" or \"Relationships\"".into(), Some(text), key);
                return;
            }
            Section::Unknown(name) => {
                let message = format!("the line is in the unknown section \"{name}\" and was not read");
                let key = sniffed.map(|k| key_guess(object, k));
                self.push_err(message, Some(text), key);
                return;
            }
            Section::Models => ItemKind::Model,
            Section::Twins => ItemKind::Twin,
            Section::Relationships => ItemKind::Relationship,
        };
        if let Some(actual) = wrong_section(object, section_kind) {
            let message = format!(
                "this {} line is in the {} section; move it under {{\"Section\": \"{}\"}}",
                actual_name(actual),
                self.section.name(),
                section_of_kind(actual)
            );
            self.push_err(message, Some(text), Some(key_guess(object, actual)));
            return;
        }
        let result = match section_kind {
            ItemKind::Twin => twin_from(object, text, &origin).map(Item::Twin),
            ItemKind::Relationship => relationship_from(object, &origin).map(Item::Relationship),
            ItemKind::Model => serde_json::from_str::<&RawValue>(text)
                .map_err(|e| e.to_string())
                .and_then(|raw| model_from(raw, &origin))
                .map(Item::Model),
        };
        match result {
            Ok(item) => self.queued.push_back(Ok(item)),
            Err(why) => self.push_err(why, Some(text), Some(key_guess(object, section_kind))),
        }
    }
}

/// The kind a line clearly is when it is not the kind its section holds.
fn wrong_section(object: &RawObject, section: ItemKind) -> Option<ItemKind> {
    let relationship_keys = object.has("$relationshipId") || object.has("$targetId") || object.has("$relationshipName");
    let model_keys = (object.has("@id") || object.has("@type")) && !object.has("$dtId");
    match section {
        ItemKind::Model if object.has("$dtId") => {
            Some(if relationship_keys { ItemKind::Relationship } else { ItemKind::Twin })
        }
        ItemKind::Twin if relationship_keys && !object.has("$metadata") => Some(ItemKind::Relationship),
        ItemKind::Twin if model_keys => Some(ItemKind::Model),
        ItemKind::Relationship if object.has("$metadata") && !relationship_keys => Some(ItemKind::Twin),
        ItemKind::Relationship if model_keys => Some(ItemKind::Model),
        _ => None,
    }
}

fn actual_name(kind: ItemKind) -> &'static str {
    match kind {
        ItemKind::Model => "model",
        ItemKind::Twin => "twin",
        ItemKind::Relationship => "relationship",
    }
}

fn empty_key(kind: ItemKind) -> ItemKey {
    match kind {
        ItemKind::Model => ItemKey::Model { id: String::new() },
        ItemKind::Twin => ItemKey::Twin { id: String::new() },
        ItemKind::Relationship => ItemKey::Relationship { source: String::new(), id: String::new() },
    }
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<Result<Item, SourceError>> {
        let source =
            Box::new(NdjsonSource::new("in.ndjson".into(), Box::new(std::io::Cursor::new(text.as_bytes().to_vec()))));
        source.items().collect()
    }

    const GOOD: &str = r#"{"Section": "Header"}
{"fileVersion": "1.0.0", "author": "foobar", "organization": "contoso"}
{"Section": "Models"}
{"@id":"dtmi:com:ex:model0;1","@type":"Interface","contents":[{"@type":"Relationship","name":"has","target":"dtmi:com:ex:model1;1"}],"@context":"dtmi:dtdl:context;2"}
{"@id":"dtmi:com:ex:model1;1","@type":"Interface","contents":[{"@type":"Property","name":"property10","schema":"string"}],"@context":"dtmi:dtdl:context;2"}
{"Section": "Twins"}
{"$dtId":"twin0","$metadata":{"$model":"dtmi:com:ex:model0;1"}}
{"$dtId":"twin1","$metadata":{"$model":"dtmi:com:ex:model1;1"},"property10":"propertyValue1"}

{"Section": "Relationships"}
{"$dtId":"twin0","$relationshipId":"relationship","$targetId":"twin1","$relationshipName":"has"}
"#;

    #[test]
    fn reads_the_documented_example_with_lines() {
        let items: Vec<Item> = read(GOOD).into_iter().map(Result::unwrap).collect();
        let summary: Vec<(String, u64)> = items.iter().map(|i| (i.key().to_string(), i.origin().line)).collect();
        assert_eq!(
            summary,
            vec![
                ("model dtmi:com:ex:model0;1".to_string(), 4),
                ("model dtmi:com:ex:model1;1".to_string(), 5),
                ("twin twin0".to_string(), 7),
                ("twin twin1".to_string(), 8),
                ("relationship twin0/relationship".to_string(), 11),
            ]
        );
        let Item::Relationship(r) = &items[4] else { panic!("not a relationship") };
        assert_eq!(r.body.get(), r#"{"$targetId":"twin1","$relationshipName":"has"}"#);
    }

    fn errors(results: &[Result<Item, SourceError>]) -> Vec<(u64, String)> {
        results.iter().filter_map(|r| r.as_ref().err()).map(|e| (e.origin.line, e.message.clone())).collect()
    }

    #[test]
    fn a_line_with_500000_keys_and_one_repeated_is_rejected_without_a_quadratic_scan() {
        let mut line = String::from(r#"{"$dtId":"big","$metadata":{"$model":"dtmi:a;1"}"#);
        for i in 0..500_000 {
            line.push_str(&format!(",\"k{i}\":0"));
        }
        line.push_str(",\"k499999\":1}");
        let text = format!("{{\"Section\": \"Header\"}}\n{{}}\n{{\"Section\": \"Twins\"}}\n{line}\n");
        // A quadratic scan of 500,000 keys takes hours; the bound turns such a hang into a
        // failure instead of a stuck suite (a linear check needs well under a second).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(errors(&read(&text)));
        });
        let errs = rx.recv_timeout(std::time::Duration::from_secs(120)).expect("the check finishes");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].0, 4);
        assert!(errs[0].1.contains("\"k499999\" appears twice"), "{errs:?}");
    }

    #[test]
    fn bad_lines_are_reported_with_their_line_and_the_stream_goes_on() {
        let text = r#"{"Section": "Header"}
{"fileVersion": "1.0.0"}
{"Section": "Twins"}
{"$dtId":"ok1","$metadata":{"$model":"dtmi:a;1"}}
{"$dtId":"broken",
{"$dtId":"nomodel","p":1}
{"$dtId":"a","$relationshipId":"r","$targetId":"b","$relationshipName":"has"}
{"$dtId":"ok2","$metadata":{"$model":"dtmi:a;1"}}
{"Section": "Relationships"}
{"$dtId":"a","$relationshipId":"r2","$relationshipName":"has"}
{"$dtId":"t9","$metadata":{"$model":"dtmi:a;1"}}
{"Section": "Extras"}
{"$dtId":"x","$metadata":{"$model":"dtmi:a;1"}}
"#;
        let results = read(text);
        let ok: Vec<String> = results.iter().filter_map(|r| r.as_ref().ok()).map(|i| i.key().to_string()).collect();
        assert_eq!(ok, vec!["twin ok1", "twin ok2"]);
        let errs = errors(&results);
        let lines: Vec<u64> = errs.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![5, 6, 7, 10, 11, 12, 13]);
        assert!(errs[0].1.contains("invalid JSON"), "{:?}", errs[0]);
        assert!(errs[1].1.contains("$model"), "{:?}", errs[1]);
        assert!(errs[2].1.contains("relationship line is in the Twins section"), "{:?}", errs[2]);
        assert!(errs[3].1.contains("\"$targetId\""), "{:?}", errs[3]);
        assert!(errs[4].1.contains("twin line is in the Relationships section"), "{:?}", errs[4]);
        assert!(errs[5].1.contains("unknown section \"Extras\""), "{:?}", errs[5]);
        assert!(errs[6].1.contains("unknown section"), "{:?}", errs[6]);
        // Errors keep what could be read of the item's identity.
        let keys: Vec<Option<ItemKey>> =
            results.iter().filter_map(|r| r.as_ref().err()).map(|e| e.key.clone()).collect();
        assert_eq!(keys[1], Some(ItemKey::Twin { id: "nomodel".into() }));
        assert_eq!(keys[3], Some(ItemKey::Relationship { source: "a".into(), id: "r2".into() }));
        assert_eq!(keys[5], None, "a section marker is not an item");
        let raw = results[1].as_ref().err().and_then(|e| e.raw.clone()).unwrap_or_default();
        assert_eq!(raw, r#"{"$dtId":"broken","#);
    }

    #[test]
    fn missing_header_and_sections_out_of_order_are_reported() {
        let text = "{\"Section\": \"Twins\"}\n{\"$dtId\":\"t\",\"$metadata\":{\"$model\":\"dtmi:a;1\"}}\n{\"Section\": \"Models\"}\n";
        let results = read(text);
        let errs = errors(&results);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].1.contains("no header") && errs[0].0 == 1, "{errs:?}");
        assert!(errs[1].1.contains("Models section comes after the Twins section") && errs[1].0 == 3, "{errs:?}");
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "the twin is still read");
    }

    #[test]
    fn crlf_bom_and_blank_lines_are_fine() {
        let text = "\u{feff}{\"Section\": \"Header\"}\r\n\r\n{\"Section\": \"Twins\"}\r\n{\"$dtId\":\"t\",\"$metadata\":{\"$model\":\"dtmi:a;1\"}}\r\n";
        let results = read(text);
        assert_eq!(errors(&results), vec![]);
        assert_eq!(results[0].as_ref().unwrap().origin().line, 4);
    }

    #[test]
    fn a_line_past_the_limit_is_skipped_and_reading_goes_on() {
        let mut text = String::from("{\"Section\": \"Header\"}\n{\"Section\": \"Twins\"}\n{\"$dtId\":\"big\",\"x\":\"");
        text.push_str(&"a".repeat(MAX_LINE_BYTES + 10));
        text.push_str("\"}\n{\"$dtId\":\"t\",\"$metadata\":{\"$model\":\"dtmi:a;1\"}}\n");
        let results = read(&text);
        let errs = errors(&results);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].1.contains("longer than") && errs[0].0 == 3, "{:?}", errs[0].0);
        assert_eq!(results.last().unwrap().as_ref().unwrap().origin().line, 4);
    }

    #[test]
    fn non_utf8_lines_are_reported() {
        let mut bytes = b"{\"Section\": \"Header\"}\n{\"Section\": \"Twins\"}\n".to_vec();
        bytes.extend_from_slice(b"{\"$dtId\":\"\xff\"}\n");
        let source = Box::new(NdjsonSource::new("in.ndjson".into(), Box::new(std::io::Cursor::new(bytes))));
        let results: Vec<_> = source.items().collect();
        assert!(errors(&results)[0].1.contains("UTF-8"));
    }
}
