//! The journal: the single place every item's completion passes through. It tallies outcomes
//! per kind (for the summary) and writes the dead-letter file: NDJSON, one line per item that
//! did not land, with the item, where it came from, the HTTP status and ADT error code if any,
//! a stable reason code and a reason a person can act on. Lines are flushed as they happen, so
//! a killed run still leaves what it knew. With a ledger attached, every landed item is also
//! recorded there ([`Journal::landed_item`]), which is what makes a re-run resume.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::value::RawValue;

use crate::item::{Item, ItemKey, ItemKind, Origin};
use crate::ledger::Ledger;
use crate::plan::Rejected;
use crate::reason::ReasonCode;

/// How an item that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// Written by this run.
    Landed,
    /// Already there and left alone (a model that existed, or create-only on an existing twin).
    AlreadyExisted,
}

/// Outcomes of one kind of item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutcomeCounts {
    pub landed: u64,
    pub already_existed: u64,
    pub dead_lettered: u64,
    pub not_attempted: u64,
}

impl OutcomeCounts {
    pub fn total(&self) -> u64 {
        self.landed + self.already_existed + self.dead_lettered + self.not_attempted
    }
}

/// One dead letter, before it is written.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub key: ItemKey,
    pub origin: Origin,
    /// The item as read (JSON), when known.
    pub item_json: Option<String>,
    pub status: Option<u16>,
    pub error_code: Option<String>,
    pub reason_code: ReasonCode,
    pub reason: String,
}

impl From<Rejected> for DeadLetter {
    fn from(r: Rejected) -> DeadLetter {
        DeadLetter {
            key: r.key,
            origin: r.origin,
            item_json: r.item_json,
            status: None,
            error_code: None,
            reason_code: r.code,
            reason: r.reason,
        }
    }
}

#[derive(Serialize)]
struct Line<'a> {
    #[serde(flatten)]
    key: &'a ItemKey,
    file: &'a str,
    line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'a str>,
    reason_code: ReasonCode,
    reason: &'a str,
    /// The item JSON as read; `item_raw` instead when it is not valid JSON (a parse error).
    #[serde(skip_serializing_if = "Option::is_none")]
    item: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    item_raw: Option<&'a str>,
}

pub struct Journal {
    path: PathBuf,
    out: BufWriter<File>,
    counts: BTreeMap<ItemKind, OutcomeCounts>,
    by_reason: BTreeMap<ReasonCode, u64>,
    file_problems: u64,
    ledger: Option<Ledger>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot write the dead-letter file {path}: {source}")]
pub struct JournalError {
    pub path: String,
    pub source: std::io::Error,
}

impl Journal {
    /// Creates (truncates) the dead-letter file, so it holds exactly this run's dead letters.
    pub fn create(path: &Path) -> Result<Journal, JournalError> {
        let err = |source| JournalError { path: path.display().to_string(), source };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
        let file = File::create(path).map_err(err)?;
        Ok(Journal {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            counts: BTreeMap::new(),
            by_reason: BTreeMap::new(),
            file_problems: 0,
            ledger: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records landed items in `ledger` from now on.
    pub fn attach_ledger(&mut self, ledger: Option<Ledger>) {
        self.ledger = ledger;
    }

    pub fn take_ledger(&mut self) -> Option<Ledger> {
        self.ledger.take()
    }

    /// Whether landed items are recorded item by item (a ledger is attached): only then does
    /// [`Journal::landed_item`] need the whole item; else [`Journal::completed`] counts it.
    pub fn records_items(&self) -> bool {
        self.ledger.is_some()
    }

    /// An item landed or was already there: counted, and recorded in the ledger if one is attached.
    pub fn landed_item(&mut self, item: &Item, how: Completion, etag: Option<String>) {
        self.completed(item.kind(), how);
        if let Some(ledger) = self.ledger.as_mut() {
            ledger.landed(item, etag);
        }
    }

    /// An item landed as `entry` (written by someone else, an import job, so only its key and
    /// entry are known): counted, and recorded in the ledger if one is attached.
    pub fn landed_as(&mut self, kind: ItemKind, key: crate::item::ItemKey, entry: crate::ledger::Entry) {
        self.completed(kind, Completion::Landed);
        if let Some(ledger) = self.ledger.as_mut() {
            ledger.put(key, entry);
        }
    }

    /// An item landed or was already there.
    pub fn completed(&mut self, kind: ItemKind, how: Completion) {
        crate::observe::catalog::item(kind, if how == Completion::Landed { "landed" } else { "already_existed" });
        let c = self.counts.entry(kind).or_default();
        match how {
            Completion::Landed => c.landed += 1,
            Completion::AlreadyExisted => c.already_existed += 1,
        }
    }

    /// An item will not land: writes its line and flushes.
    pub fn dead_letter(&mut self, letter: &DeadLetter) -> Result<(), JournalError> {
        crate::observe::catalog::dead_letter_item(letter.key.kind(), letter.reason_code);
        let c = self.counts.entry(letter.key.kind()).or_default();
        if letter.reason_code == ReasonCode::NotAttempted {
            c.not_attempted += 1;
        } else {
            c.dead_lettered += 1;
        }
        *self.by_reason.entry(letter.reason_code).or_default() += 1;
        self.write_line(letter)
    }

    /// A problem with an input file's structure rather than with one item (a missing header,
    /// an unknown section): written like a dead letter, counted apart from the items.
    pub fn file_problem(&mut self, letter: &DeadLetter) -> Result<(), JournalError> {
        self.file_problems += 1;
        self.write_line(letter)
    }

    /// Problems with input files' structure (not items).
    pub fn file_problems(&self) -> u64 {
        self.file_problems
    }

    fn write_line(&mut self, letter: &DeadLetter) -> Result<(), JournalError> {
        let parsed = letter.item_json.as_deref().and_then(|j| serde_json::from_str::<&RawValue>(j).ok());
        let line = Line {
            key: &letter.key,
            file: &letter.origin.file,
            line: letter.origin.line,
            status: letter.status,
            error_code: letter.error_code.as_deref(),
            reason_code: letter.reason_code,
            reason: &letter.reason,
            item: parsed,
            item_raw: if parsed.is_none() { letter.item_json.as_deref() } else { None },
        };
        let err = |source| JournalError { path: self.path.display().to_string(), source };
        let mut text = serde_json::to_string(&line).map_err(|e| err(e.into()))?;
        // A server may have echoed a secret into the reason (its error body).
        text = crate::redact::redact(&text).into_owned();
        text.push('\n');
        self.out.write_all(text.as_bytes()).map_err(err)?;
        self.out.flush().map_err(err)
    }

    pub fn counts(&self) -> &BTreeMap<ItemKind, OutcomeCounts> {
        &self.counts
    }

    /// Dead letters (and not-attempted items) by reason code.
    pub fn by_reason(&self) -> &BTreeMap<ReasonCode, u64> {
        &self.by_reason
    }

    pub fn landed_total(&self) -> u64 {
        self.counts.values().map(|c| c.landed).sum()
    }

    /// Items that did not land, plus problems with the input files.
    pub fn dead_letters_total(&self) -> u64 {
        self.counts.values().map(|c| c.dead_lettered + c.not_attempted).sum::<u64>() + self.file_problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin { file: "in/fleet.ndjson".into(), line: 42 }
    }

    #[test]
    fn dead_letters_are_ndjson_with_item_origin_status_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dl").join("dead.ndjson");
        let mut j = Journal::create(&path).unwrap();
        j.dead_letter(&DeadLetter {
            key: ItemKey::Twin { id: "t1".into() },
            origin: origin(),
            item_json: Some(r#"{"$dtId":"t1","$metadata":{"$model":"dtmi:a;1"}}"#.into()),
            status: Some(400),
            error_code: Some("ValidationFailed".into()),
            reason_code: ReasonCode::WriteFailed,
            reason: "ADT rejected the twin: fix its properties".into(),
        })
        .unwrap();
        j.dead_letter(&DeadLetter {
            key: ItemKey::Relationship { source: "a".into(), id: "r".into() },
            origin: origin(),
            item_json: Some("{not json".into()),
            status: None,
            error_code: None,
            reason_code: ReasonCode::NotAttempted,
            reason: "the run stopped at its deadline".into(),
        })
        .unwrap();
        j.completed(ItemKind::Twin, Completion::Landed);
        // Flushed as written: readable before the journal is dropped.
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["kind"], "twin");
        assert_eq!(lines[0]["id"], "t1");
        assert_eq!(lines[0]["file"], "in/fleet.ndjson");
        assert_eq!(lines[0]["line"], 42);
        assert_eq!(lines[0]["status"], 400);
        assert_eq!(lines[0]["error_code"], "ValidationFailed");
        assert_eq!(lines[0]["reason_code"], "write_failed");
        assert_eq!(lines[0]["item"]["$metadata"]["$model"], "dtmi:a;1");
        assert_eq!(lines[1]["source"], "a");
        assert_eq!(lines[1]["item_raw"], "{not json");
        let twins = j.counts()[&ItemKind::Twin];
        assert_eq!((twins.landed, twins.dead_lettered), (1, 1));
        assert_eq!(j.counts()[&ItemKind::Relationship].not_attempted, 1);
        assert_eq!(j.dead_letters_total(), 2);
        assert_eq!(j.by_reason()[&ReasonCode::WriteFailed], 1);
    }
}
