//! The planned input as one Import-Jobs NDJSON file (ADT-REFERENCE.md §1.5): Header, Models,
//! Twins, Relationships, each item on one line, in the order the planner releases them (models
//! before the twins that use them, twins before their relationships). [`LineMap`] remembers
//! which item each line holds, so an error line of the job's log comes back to the item's own
//! file and line.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::item::{Item, ItemKind};
use crate::plan::{ItemId, Scheduler, Work};

/// Which item each NDJSON line holds, and the line numbers of the section markers.
#[derive(Debug, Default)]
pub struct LineMap {
    /// (line, item), by line.
    items: Vec<(u64, ItemId)>,
}

impl LineMap {
    /// The item on a 1-based line of the file, if that line is an item.
    pub fn item_at(&self, line: u64) -> Option<ItemId> {
        self.items.binary_search_by_key(&line, |&(l, _)| l).ok().map(|i| self.items[i].1)
    }

    /// Every item, in file order.
    pub fn items(&self) -> impl Iterator<Item = ItemId> + '_ {
        self.items.iter().map(|&(_, id)| id)
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
    pub ndjson: Vec<u8>,
    pub lines: LineMap,
}

/// Takes every item from the scheduler in release order (each counted as released at once:
/// the job, not this process, writes them) and lays them out as an import file.
pub fn write(scheduler: &mut Scheduler) -> JobInput {
    let mut by_kind: [Vec<ItemId>; 3] = Default::default();
    // Bounded: each call hands out at least one item or returns None, and items are finite.
    while let Some(work) = scheduler.next() {
        let ids = match work {
            Work::Models(ids) => ids,
            Work::Twin(id) | Work::Relationship(id) => vec![id],
        };
        for id in ids {
            by_kind[kind_index(scheduler.item(id).kind())].push(id);
            scheduler.landed(id);
        }
    }
    let mut ndjson = Vec::new();
    let mut lines = LineMap::default();
    let mut line = 0u64;
    let mut push = |ndjson: &mut Vec<u8>, text: &str| {
        ndjson.extend_from_slice(text.as_bytes());
        ndjson.push(b'\n');
        line += 1;
        line
    };
    push(&mut ndjson, r#"{"Section": "Header"}"#);
    push(&mut ndjson, r#"{"fileVersion": "1.0.0", "author": "twinload", "organization": ""}"#);
    for (kind, ids) in ItemKind::ALL.iter().zip(&by_kind) {
        if ids.is_empty() {
            continue;
        }
        push(&mut ndjson, &format!(r#"{{"Section": "{}"}}"#, section_name(*kind)));
        for &id in ids {
            let number = push(&mut ndjson, &item_line(scheduler.item(id)));
            lines.items.push((number, id));
        }
    }
    JobInput { ndjson, lines }
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
        let input = write(&mut scheduler);
        assert!(scheduler.is_finished());
        let text = String::from_utf8(input.ndjson).unwrap();
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
    }

    #[test]
    fn bodies_are_put_on_one_line_with_the_twin_id() {
        assert_eq!(one_line("{\n \"a\": 1\n}"), "{\"a\":1}");
        let line = with_keys(r#"{"$metadata":{"$model":"dtmi:a;1"},"p":1}"#, &[("$dtId", "t1")]);
        assert_eq!(line, r#"{"$dtId":"t1","$metadata":{"$model":"dtmi:a;1"},"p":1}"#);
    }
}
