//! The ledger's on-disk format: NDJSON, a header line naming what the ledger belongs to, then
//! one line per event, appended as the run goes:
//!
//! ```text
//! {"twinload_ledger":2,"endpoint":"https://x.api.weu.digitaltwins.azure.net","source":"fleet","inputs":["in/fleet.ndjson"],"fingerprint":"…"}
//! {"op":"put","kind":"twin","id":"t1","hash":"<16-byte blake3 prefix, hex>","etag":"W/\"…\""}
//! {"op":"put","kind":"relationship","source":"t1","id":"r1","target":"t2","hash":"…"}
//! {"op":"del","kind":"twin","id":"t9"}
//! ```
//!
//! A later line for the same item overrides an earlier one. Only the last line can be torn (a
//! crash while it was being written); [`parse`] drops it, which only forgets an item that
//! landed, and a forgotten item is sent again: it never claims what did not land.
//!
//! Format 1 (before `source` and 16-byte hashes) is still read: its 32-byte hashes compare by
//! their first 16 bytes, and the next compaction writes format 2.

use std::fmt;
use std::io::BufRead;

use serde::{Deserialize, Serialize};

use super::entries::Entries;
use crate::item::ItemKey;

/// The format version this build writes.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format version this build reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;

/// The first line: what the ledger belongs to (see [`super::identity`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub twinload_ledger: u32,
    pub endpoint: String,
    /// The source's name (`--source`), when the run named it; else the source is its inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub inputs: Vec<String>,
    pub fingerprint: String,
}

/// The first 16 bytes of [`crate::item::Item::content_hash`] (blake3): as sure a test of
/// "unchanged" as the whole hash for any number of items a ledger holds, in half the memory.
/// Written in hex; a format-1 ledger's 32-byte hex hash is read by its first 16 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentHash(pub [u8; 16]);

impl ContentHash {
    pub fn of(item: &crate::item::Item) -> ContentHash {
        ContentHash::from(item.content_hash())
    }

    fn from_hex(text: &str) -> Option<ContentHash> {
        let digits = text.as_bytes().get(..32)?;
        let mut out = [0u8; 16];
        for (byte, pair) in out.iter_mut().zip(digits.chunks(2)) {
            let hex = std::str::from_utf8(pair).ok()?;
            *byte = u8::from_str_radix(hex, 16).ok()?;
        }
        text.bytes().all(|b| b.is_ascii_hexdigit()).then_some(ContentHash(out))
    }
}

impl From<blake3::Hash> for ContentHash {
    fn from(hash: blake3::Hash) -> ContentHash {
        let mut out = [0u8; 16];
        out.copy_from_slice(&hash.as_bytes()[..16]);
        ContentHash(out)
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for ContentHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ContentHash, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        ContentHash::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("hash {text:?} is not 32 or 64 hexadecimal digits")))
    }
}

/// What the ledger knows of one item that landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// What was written.
    pub hash: ContentHash,
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
    pub entries: Entries,
    pub lines: u64,
    /// A torn last line was dropped.
    pub dropped_torn_tail: bool,
}

/// Parses a whole ledger, a line at a time (a ledger of millions of items is never one buffer
/// in memory). `file` names it in errors.
pub fn parse(mut reader: impl BufRead, file: &str) -> Result<Parsed, FormatError> {
    let mut parsed = Parsed::default();
    let mut raw = Vec::new();
    let mut line_no = 0u64;
    loop {
        raw.clear();
        let read = reader.read_until(b'\n', &mut raw).map_err(|e| FormatError {
            file: file.to_string(),
            line: line_no + 1,
            message: format!("cannot read it: {e}"),
        })?;
        if read == 0 {
            break;
        }
        line_no += 1;
        // A line without its newline is the last one, and may be one a crash cut short.
        let torn_candidate = !raw.ends_with(b"\n");
        let mut line = raw.strip_suffix(b"\n").unwrap_or(&raw);
        line = line.strip_suffix(b"\r").unwrap_or(line);
        if line_no == 1 {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let err = |message: String| FormatError { file: file.to_string(), line: line_no, message };
        if parsed.header.is_none() {
            let header: Header = serde_json::from_slice(line).map_err(|e| {
                err(format!(
                    "not a twinload ledger header ({e}); give a ledger file written by twinload, or a new path"
                ))
            })?;
            if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&header.twinload_ledger) {
                return Err(err(format!(
                    "ledger format {} is not one this twinload reads ({OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})",
                    header.twinload_ledger
                )));
            }
            parsed.header = Some(header);
            parsed.lines = line_no;
            continue;
        }
        match serde_json::from_slice::<Record>(line) {
            Ok(Record::Put { key, entry }) => {
                parsed.entries.insert(&key, &entry);
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
            source: None,
            inputs: vec!["a.ndjson".into()],
            fingerprint: "f".into(),
        }
    }

    fn h(n: u8) -> ContentHash {
        ContentHash([n; 16])
    }

    fn twin(id: &str, hash: u8) -> Record {
        Record::Put {
            key: ItemKey::Twin { id: id.into() },
            entry: Entry { hash: h(hash), etag: Some("W/\"1\"".into()), target: None },
        }
    }

    #[test]
    fn later_lines_override_earlier_and_deletes_remove() {
        let rel = Record::Put {
            key: ItemKey::Relationship { source: "a".into(), id: "r".into() },
            entry: Entry { hash: h(7), etag: None, target: Some("b".into()) },
        };
        let mut bytes = line(&header());
        for r in [
            twin("a", 1),
            twin("b", 1),
            twin("a", 2),
            rel.clone(),
            Record::Del { key: ItemKey::Twin { id: "b".into() } },
        ] {
            bytes.extend(line(&r));
        }
        let p = parse(&bytes[..], "l").unwrap();
        assert_eq!(p.header, Some(header()));
        assert_eq!(p.entries.len(), 2);
        assert_eq!(p.entries.get(&ItemKey::Twin { id: "a".into() }).unwrap().hash, h(2));
        assert_eq!(
            p.entries.get(&ItemKey::Relationship { source: "a".into(), id: "r".into() }).unwrap().target.as_deref(),
            Some("b")
        );
        assert!(!p.dropped_torn_tail);
        let text = String::from_utf8(line(&rel)).unwrap();
        assert!(text.contains(r#""op":"put""#) && text.contains(r#""kind":"relationship""#), "{text}");
        assert!(text.contains(&format!(r#""hash":"{}""#, "07".repeat(16))), "{text}");
    }

    #[test]
    fn a_put_written_from_borrowed_parts_is_the_put_record_line() {
        let key = ItemKey::Relationship { source: "a".into(), id: "r".into() };
        let entry = Entry { hash: h(1), etag: Some("W/\"1\"".into()), target: Some("b".into()) };
        let mut out = Vec::new();
        write_put(&mut out, &key, &entry).unwrap();
        assert_eq!(out, line(&Record::Put { key, entry }));
    }

    #[test]
    fn a_format_1_ledger_with_whole_hashes_is_read_by_their_first_16_bytes() {
        let body = br#"{"$dtId":"a"}"#;
        let whole = blake3::hash(body).to_hex();
        let text = format!(
            "{}\n{}\n",
            r#"{"twinload_ledger":1,"endpoint":"https://x","inputs":["a.ndjson"],"fingerprint":"f"}"#,
            format_args!(r#"{{"op":"put","kind":"twin","id":"a","hash":"{whole}"}}"#)
        );
        let p = parse(text.as_bytes(), "old.ndjson").unwrap();
        assert_eq!(p.header.unwrap().twinload_ledger, 1);
        let entry = p.entries.get(&ItemKey::Twin { id: "a".into() }).unwrap();
        assert_eq!(entry.hash, ContentHash::from(blake3::hash(body)));
        assert_eq!(entry.hash.to_string(), whole[..32]);
        let bad = text.replace(whole.as_str(), "nothex");
        assert!(parse(bad.as_bytes(), "old.ndjson").unwrap_err().message.contains("nothex"));
    }

    #[test]
    fn a_torn_last_line_is_dropped_but_a_bad_middle_line_names_file_and_line() {
        let mut bytes = line(&header());
        bytes.extend(line(&twin("a", 1)));
        let whole = twin("b", 1);
        let torn = line(&whole);
        bytes.extend(&torn[..torn.len() / 2]);
        let p = parse(&bytes[..], "l").unwrap();
        assert!(p.dropped_torn_tail);
        assert_eq!(p.entries.len(), 1, "the torn twin b is forgotten, never claimed");

        let mut bad = line(&header());
        bad.extend(b"{nonsense\n");
        bad.extend(line(&twin("a", 1)));
        let e = parse(&bad[..], "ledger.ndjson").unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("ledger.ndjson", 2));
    }

    #[test]
    fn empty_bom_crlf_and_foreign_files() {
        assert!(parse(&b""[..], "l").unwrap().header.is_none());
        let mut crlf = b"\xEF\xBB\xBF".to_vec();
        crlf.extend(String::from_utf8(line(&header())).unwrap().replace('\n', "\r\n").as_bytes());
        assert!(parse(&crlf[..], "l").unwrap().header.is_some());
        let e = parse(&b"{\"$dtId\":\"t\"}\n"[..], "x.ndjson").unwrap_err();
        assert!(e.to_string().starts_with("x.ndjson:1: not a twinload ledger header"), "{e}");
        let mut future = header();
        future.twinload_ledger = 99;
        assert!(parse(&line(&future)[..], "l").unwrap_err().message.contains("99"));
        assert!(parse(&b"\xff\xfe\n"[..], "l").is_err());
    }
}
