//! The ledger's on-disk format: NDJSON, a header line naming what the ledger belongs to, then
//! one line per event, appended as the run goes:
//!
//! ```text
//! {"twinload_ledger":1,"endpoint":"https://x.api.weu.digitaltwins.azure.net","inputs":["in/fleet.ndjson"],"fingerprint":"…"}
//! {"op":"put","kind":"twin","id":"t1","hash":"<blake3 hex>","etag":"W/\"…\""}
//! {"op":"put","kind":"relationship","source":"t1","id":"r1","target":"t2","hash":"…"}
//! {"op":"del","kind":"twin","id":"t9"}
//! ```
//!
//! A later line for the same item overrides an earlier one. Only the last line can be torn (a
//! crash while it was being written); [`parse`] drops it, which only forgets an item that
//! landed, and a forgotten item is sent again: it never claims what did not land.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::item::ItemKey;

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The first line: what the ledger belongs to (see [`super::identity`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub twinload_ledger: u32,
    pub endpoint: String,
    pub inputs: Vec<String>,
    pub fingerprint: String,
}

/// What the ledger knows of one item that landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// [`crate::item::Item::content_hash`] of what was written, in hex.
    pub hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// A relationship's target (a changed target means delete and re-create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// One event line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Record {
    /// The item landed (created, replaced or patched) with this content.
    Put {
        #[serde(flatten)]
        key: ItemKey,
        #[serde(flatten)]
        entry: Entry,
    },
    /// The item was deleted (or was found gone).
    Del {
        #[serde(flatten)]
        key: ItemKey,
    },
}

/// A ledger file that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct FormatError {
    pub file: String,
    pub line: u64,
    pub message: String,
}

/// The parsed content of a ledger: its header (`None` for an empty file) and the current entry
/// of every item, with the count of lines read (to decide when to compact).
#[derive(Debug, Default)]
pub struct Parsed {
    pub header: Option<Header>,
    pub entries: HashMap<ItemKey, Entry>,
    pub lines: u64,
    /// A torn last line was dropped.
    pub dropped_torn_tail: bool,
}

/// Parses a whole ledger. `file` names it in errors.
pub fn parse(bytes: &[u8], file: &str) -> Result<Parsed, FormatError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut parsed = Parsed::default();
    let ends_complete = bytes.ends_with(b"\n");
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let last = lines.len().saturating_sub(1);
    for (i, raw) in lines.iter().enumerate() {
        let line_no = i as u64 + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let err = |message: String| FormatError { file: file.to_string(), line: line_no, message };
        // The last line without its newline may be one a crash cut short.
        let torn_candidate = i == last && !ends_complete;
        if parsed.header.is_none() {
            let header: Header = serde_json::from_slice(raw).map_err(|e| {
                err(format!(
                    "not a twinload ledger header ({e}); give a ledger file written by twinload, or a new path"
                ))
            })?;
            if header.twinload_ledger != FORMAT_VERSION {
                return Err(err(format!(
                    "ledger format {} is not the one this twinload reads ({FORMAT_VERSION})",
                    header.twinload_ledger
                )));
            }
            parsed.header = Some(header);
            parsed.lines = line_no;
            continue;
        }
        match serde_json::from_slice::<Record>(raw) {
            Ok(Record::Put { key, entry }) => {
                parsed.entries.insert(key, entry);
            }
            Ok(Record::Del { key }) => {
                parsed.entries.remove(&key);
            }
            Err(_) if torn_candidate => {
                parsed.dropped_torn_tail = true;
                continue;
            }
            Err(e) => return Err(err(format!("not a ledger record: {e}"))),
        }
        parsed.lines = line_no;
    }
    Ok(parsed)
}

/// A `put` line, newline included, written from borrowed parts (compaction writes millions).
pub fn write_put(out: &mut dyn std::io::Write, key: &ItemKey, entry: &Entry) -> std::io::Result<()> {
    #[derive(Serialize)]
    #[serde(tag = "op", rename = "put")]
    struct Put<'a> {
        #[serde(flatten)]
        key: &'a ItemKey,
        #[serde(flatten)]
        entry: &'a Entry,
    }
    serde_json::to_writer(&mut *out, &Put { key, entry })?;
    out.write_all(b"\n")
}

/// One line, newline included.
pub fn line<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail (string keys, no maps with non-string keys).
    let mut out = serde_json::to_vec(value).unwrap_or_default();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            twinload_ledger: FORMAT_VERSION,
            endpoint: "https://x".into(),
            inputs: vec!["a.ndjson".into()],
            fingerprint: "f".into(),
        }
    }

    fn twin(id: &str, hash: &str) -> Record {
        Record::Put {
            key: ItemKey::Twin { id: id.into() },
            entry: Entry { hash: hash.into(), etag: Some("W/\"1\"".into()), target: None },
        }
    }

    #[test]
    fn later_lines_override_earlier_and_deletes_remove() {
        let rel = Record::Put {
            key: ItemKey::Relationship { source: "a".into(), id: "r".into() },
            entry: Entry { hash: "h".into(), etag: None, target: Some("b".into()) },
        };
        let mut bytes = line(&header());
        for r in [
            twin("a", "1"),
            twin("b", "1"),
            twin("a", "2"),
            rel.clone(),
            Record::Del { key: ItemKey::Twin { id: "b".into() } },
        ] {
            bytes.extend(line(&r));
        }
        let p = parse(&bytes, "l").unwrap();
        assert_eq!(p.header, Some(header()));
        assert_eq!(p.entries.len(), 2);
        assert_eq!(p.entries[&ItemKey::Twin { id: "a".into() }].hash, "2");
        assert_eq!(
            p.entries[&ItemKey::Relationship { source: "a".into(), id: "r".into() }].target.as_deref(),
            Some("b")
        );
        assert!(!p.dropped_torn_tail);
        let text = String::from_utf8(line(&rel)).unwrap();
        assert!(text.contains(r#""op":"put""#) && text.contains(r#""kind":"relationship""#), "{text}");
    }

    #[test]
    fn a_put_written_from_borrowed_parts_is_the_put_record_line() {
        let key = ItemKey::Relationship { source: "a".into(), id: "r".into() };
        let entry = Entry { hash: "h".into(), etag: Some("W/\"1\"".into()), target: Some("b".into()) };
        let mut out = Vec::new();
        write_put(&mut out, &key, &entry).unwrap();
        assert_eq!(out, line(&Record::Put { key, entry }));
    }

    #[test]
    fn a_torn_last_line_is_dropped_but_a_bad_middle_line_names_file_and_line() {
        let mut bytes = line(&header());
        bytes.extend(line(&twin("a", "1")));
        let whole = twin("b", "1");
        let torn = line(&whole);
        bytes.extend(&torn[..torn.len() / 2]);
        let p = parse(&bytes, "l").unwrap();
        assert!(p.dropped_torn_tail);
        assert_eq!(p.entries.len(), 1, "the torn twin b is forgotten, never claimed");

        let mut bad = line(&header());
        bad.extend(b"{nonsense\n");
        bad.extend(line(&twin("a", "1")));
        let e = parse(&bad, "ledger.ndjson").unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("ledger.ndjson", 2));
    }

    #[test]
    fn empty_bom_crlf_and_foreign_files() {
        assert!(parse(b"", "l").unwrap().header.is_none());
        let mut crlf = b"\xEF\xBB\xBF".to_vec();
        crlf.extend(String::from_utf8(line(&header())).unwrap().replace('\n', "\r\n").as_bytes());
        assert!(parse(&crlf, "l").unwrap().header.is_some());
        let e = parse(b"{\"$dtId\":\"t\"}\n", "x.ndjson").unwrap_err();
        assert!(e.to_string().starts_with("x.ndjson:1: not a twinload ledger header"), "{e}");
        let mut future = header();
        future.twinload_ledger = 99;
        assert!(parse(&line(&future), "l").unwrap_err().message.contains("99"));
        assert!(parse(b"\xff\xfe\n", "l").is_err());
    }
}
