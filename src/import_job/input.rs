//! The planned input as one Import-Jobs NDJSON file (ADT-REFERENCE.md §1.5): Header, Models,
//! Twins, Relationships, each item on one line, in the order the planner releases them (models
//! before the twins that use them, twins before their relationships). [`LineMap`] remembers
//! which item each line holds, so an error line of the job's log comes back to the item's own
//! file and line; it also keeps where each line is in the file, so a dead letter shows the line
//! as sent.

use std::borrow::Cow;
use std::ops::Range;

use serde_json::{Map, Value};

use crate::item::{Item, ItemKind};
use crate::plan::{BodyError, ItemId, Scheduler, Work};

/// One item's line: its number, the item, and where its text is in the file.
#[derive(Debug, Clone)]
struct ItemLine {
    number: u64,
    id: ItemId,
    kind: ItemKind,
    bytes: Range<usize>,
    /// The item's content hash (what the ledger records), taken as the line is written, so the
    /// body is read back once.
    hash: blake3::Hash,
}

/// One line of the file, as [`LineMap::items`] gives it.
pub struct LineItem<'a> {
    pub id: ItemId,
    pub kind: ItemKind,
    /// The line's text.
    pub text: &'a str,
    pub hash: blake3::Hash,
}

/// Which item each NDJSON line holds.
#[derive(Debug, Default)]
pub struct LineMap {
    /// By line number.
    items: Vec<ItemLine>,
}

impl LineMap {
    /// The item on a 1-based line of the file, if that line is an item.
    pub fn item_at(&self, line: u64) -> Option<ItemId> {
        self.items.binary_search_by_key(&line, |l| l.number).ok().map(|i| self.items[i].id)
    }

    /// Every item with its kind, its line's text in `ndjson` (the file this map was made
    /// with) and its content hash, in file order.
    pub fn items<'a>(&'a self, ndjson: &'a [u8]) -> impl Iterator<Item = LineItem<'a>> + 'a {
        self.items.iter().map(move |l| LineItem {
            id: l.id,
            kind: l.kind,
            text: ndjson.get(l.bytes.clone()).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or(""),
            hash: l.hash,
        })
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// The file's bytes and its line map.
pub struct JobInput {
    pub ndjson: bytes::Bytes,
    pub lines: LineMap,
}

/// One section's lines' text, and (item, range in that text) per line.
type SectionText = (Vec<u8>, Vec<(ItemId, Range<usize>, blake3::Hash)>);

/// Takes every item from the scheduler in release order (each counted as released at once:
/// the job, not this process, writes them) and lays them out as an import file. Fails only if
/// an item's body cannot be read back (before anything was written).
pub fn write(scheduler: &mut Scheduler) -> Result<JobInput, BodyError> {
    let mut sections: [SectionText; 3] = Default::default();
    // Bounded: each call hands out at least one item or returns None, and items are finite.
    while let Some(work) = scheduler.next() {
        let ids = match work {
            Work::Models(ids) => ids,
            Work::Twin(id) | Work::Relationship(id) => vec![id],
        };
        for id in ids {
            let item = scheduler.item(id)?;
            let (text, entries) = &mut sections[kind_index(item.kind())];
            let start = text.len();
            text.extend_from_slice(item_line(&item).as_bytes());
            entries.push((id, start..text.len(), item.content_hash()));
            text.push(b'\n');
            // The job writes it, not this process: its dependents are released for the file.
            scheduler.landed(id);
        }
    }
    let mut ndjson = Vec::new();
    ndjson.extend_from_slice(b"{\"Section\": \"Header\"}\n");
    ndjson.extend_from_slice(b"{\"fileVersion\": \"1.0.0\", \"author\": \"twinload\", \"organization\": \"\"}\n");
    let mut number = 2u64;
    let mut lines = LineMap::default();
    for (kind, (text, entries)) in ItemKind::ALL.into_iter().zip(sections) {
        if entries.is_empty() {
            continue;
        }
        ndjson.extend_from_slice(format!("{{\"Section\": \"{}\"}}\n", section_name(kind)).as_bytes());
        number += 1;
        let base = ndjson.len();
        ndjson.extend_from_slice(&text);
        for (id, range, hash) in entries {
            number += 1;
            lines.items.push(ItemLine { number, id, kind, bytes: base + range.start..base + range.end, hash });
        }
    }
    Ok(JobInput { ndjson: ndjson.into(), lines })
}

fn kind_index(kind: ItemKind) -> usize {
    match kind {
        ItemKind::Model => 0,
        ItemKind::Twin => 1,
        ItemKind::Relationship => 2,
    }
}

fn section_name(kind: ItemKind) -> &'static str {
    match kind {
        ItemKind::Model => "Models",
        ItemKind::Twin => "Twins",
        ItemKind::Relationship => "Relationships",
    }
}

/// One item as its import line: a model's interface, a twin with `$dtId`, a relationship with
/// `$dtId` (its source), `$relationshipId`, `$targetId`, `$relationshipName`.
pub fn item_line(item: &Item) -> String {
    match item {
        Item::Model(m) => one_line(m.body.get()).into_owned(),
        Item::Twin(t) => with_keys(t.body.get(), &[("$dtId", &t.id)]),
        Item::Relationship(r) => with_keys(
            r.body.get(),
            &[
                ("$dtId", &r.source),
                ("$relationshipId", &r.id),
                ("$targetId", &r.target),
                ("$relationshipName", &r.name),
            ],
        ),
    }
}

/// The JSON on one line (bodies read from pretty-printed files span several).
fn one_line(json: &str) -> Cow<'_, str> {
    if !json.contains(['\n', '\r']) {
        return Cow::Borrowed(json);
    }
    match serde_json::from_str::<Value>(json) {
        Ok(value) => Cow::Owned(value.to_string()),
        Err(_) => Cow::Owned(json.replace(['\n', '\r'], " ")),
    }
}

/// The object with `keys` set first (the item's identity wins over what the body says), then
/// the body's other members; `$sourceId` is dropped (the import format names the source `$dtId`).
fn with_keys(body: &str, keys: &[(&str, &str)]) -> String {
    let mut out = Map::new();
    for (key, value) in keys {
        out.insert((*key).to_string(), Value::String((*value).to_string()));
    }
    if let Ok(Value::Object(members)) = serde_json::from_str::<Value>(body) {
        for (key, value) in members {
            if !out.contains_key(&key) && key != "$sourceId" {
                out.insert(key, value);
            }
        }
    }
    Value::Object(out).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Plan, PlanOptions};

    const INPUT: &str = r#"{"Section": "Header"}
{"fileVersion": "1.0.0"}
{"Section": "Models"}
{"@id":"dtmi:t:Room;1","@type":"Interface","@context":"dtmi:dtdl:context;2","contents":[{"@type":"Relationship","name":"next"}]}
{"Section": "Twins"}
{"$dtId":"a","$metadata":{"$model":"dtmi:t:Room;1"}}
{"$dtId":"b","$metadata":{"$model":"dtmi:t:Room;1"}}
{"Section": "Relationships"}
{"$dtId":"a","$relationshipId":"r","$targetId":"b","$relationshipName":"next"}
"#;

    #[test]
    fn the_plan_becomes_an_import_file_whose_lines_map_back_to_items() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.ndjson");
        std::fs::write(&path, INPUT).unwrap();
        let sources = crate::source::open_inputs(&[path.display().to_string()]).unwrap();
        let plan =
            Plan::build(crate::source::read_all(sources), &PlanOptions { keep_bodies: true, ..Default::default() });
        let mut scheduler = plan.into_scheduler();
        let input = write(&mut scheduler).unwrap();
        assert!(scheduler.is_finished());
        let text = String::from_utf8(input.ndjson.to_vec()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], r#"{"Section": "Header"}"#);
        assert_eq!(lines[2], r#"{"Section": "Models"}"#);
        assert_eq!(lines[4], r#"{"Section": "Twins"}"#);
        assert_eq!(lines[7], r#"{"Section": "Relationships"}"#);
        let relationship: Value = serde_json::from_str(lines[8]).unwrap();
        assert_eq!(relationship["$dtId"], "a");
        assert_eq!(relationship["$relationshipId"], "r");
        assert_eq!(relationship["$targetId"], "b");
        assert_eq!(input.lines.len(), 4);
        // Line 9 of the import file is the relationship read from line 9 of the input.
        let id = input.lines.item_at(9).unwrap();
        assert_eq!(scheduler.origin(id).line, 9);
        assert_eq!(scheduler.key(id).to_string(), "relationship a/r");
        assert_eq!(input.lines.item_at(5), None, "a section marker holds no item");
        let last = input.lines.items(&input.ndjson).last().unwrap();
        let (kind, text) = (last.kind, last.text);
        assert_eq!((kind, text), (ItemKind::Relationship, lines[8]));
    }

    #[test]
    fn bodies_are_put_on_one_line_with_the_twin_id() {
        assert_eq!(one_line("{\n \"a\": 1\n}"), "{\"a\":1}");
        let line = with_keys(r#"{"$metadata":{"$model":"dtmi:a;1"},"p":1}"#, &[("$dtId", "t1")]);
        assert_eq!(line, r#"{"$dtId":"t1","$metadata":{"$model":"dtmi:a;1"},"p":1}"#);
    }
}
