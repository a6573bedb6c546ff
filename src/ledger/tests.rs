use std::sync::Arc;

use serde_json::value::RawValue;

use super::*;
use crate::item::{Origin, RelationshipItem, TwinItem};

fn twin(id: &str, body: &str) -> Item {
    Item::Twin(TwinItem {
        id: id.into(),
        model: "dtmi:a;1".into(),
        body: RawValue::from_string(body.into()).unwrap(),
        origin: Origin { file: Arc::from("in.ndjson"), line: 1 },
        patch: false,
    })
}

fn rel(source: &str, id: &str, target: &str) -> Item {
    Item::Relationship(RelationshipItem {
        source: source.into(),
        id: id.into(),
        target: target.into(),
        name: "has".into(),
        body: RawValue::from_string(format!(r#"{{"$targetId":"{target}","$relationshipName":"has"}}"#)).unwrap(),
        origin: Origin { file: Arc::from("in.ndjson"), line: 2 },
    })
}

fn identity() -> Identity {
    Identity::new("https://one.api", None, &["in.ndjson".into()])
}

#[test]
fn what_landed_survives_a_reopen_and_changed_content_does_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.ndjson");
    let location = path.to_str().unwrap();
    let a = twin("a", r#"{"p":1}"#);
    let b = twin("b", r#"{"p":1}"#);
    let r = rel("a", "r1", "b");
    {
        let mut l = Ledger::open(location, identity(), &BlobAccess::default()).unwrap();
        assert!(l.is_empty());
        l.landed(&a, Some("W/\"1\"".into()));
        l.landed(&b, None);
        l.landed(&r, None);
        l.deleted(&b.key());
        l.finish().unwrap();
    }
    let l = Ledger::open(location, identity(), &BlobAccess::default()).unwrap();
    assert_eq!(l.len(), 2);
    assert!(l.holds_unchanged(&a));
    assert!(!l.holds_unchanged(&twin("a", r#"{"p":2}"#)), "a changed twin is not 'unchanged'");
    assert!(!l.holds_unchanged(&b), "a deleted twin is not held");
    assert_eq!(l.get(&a.key()).unwrap().etag.as_deref(), Some("W/\"1\""));
    assert_eq!(l.get(&r.key()).unwrap().target.as_deref(), Some("b"));
    // Compacted on open: the header and one line per item.
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
}

#[test]
fn records_are_durable_in_batches_without_finish() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.ndjson");
    let mut l = Ledger::open(path.to_str().unwrap(), identity(), &BlobAccess::default()).unwrap();
    for i in 0..SYNC_EVERY_RECORDS {
        l.landed(&twin(&format!("t{i}"), "{}"), None);
    }
    // No finish (as after kill -9): the first full batch is on disk already.
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 1 + SYNC_EVERY_RECORDS);
    std::mem::forget(l);
}

#[test]
fn a_ledger_of_another_instance_or_other_inputs_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.ndjson");
    let location = path.to_str().unwrap();
    Ledger::open(location, identity(), &BlobAccess::default()).unwrap().finish().unwrap();
    let e =
        Ledger::open(location, Identity::new("https://two.api", None, &["in.ndjson".into()]), &BlobAccess::default())
            .err()
            .unwrap();
    assert!(matches!(e, LedgerError::Foreign(_)), "{e}");
    assert!(e.to_string().contains("https://one.api") && e.to_string().contains("https://two.api"), "{e}");
    let e = Ledger::open(
        location,
        Identity::new("https://one.api", None, &["other.ndjson".into()]),
        &BlobAccess::default(),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("other.ndjson") && e.to_string().contains("in.ndjson"), "{e}");
}

#[test]
fn a_blob_url_that_names_no_blob_is_a_clear_error_without_the_sas() {
    // Refused before any request: a container is not a ledger.
    let e = Ledger::open("https://acc.blob.core.windows.net/c/?sig=SECRET", identity(), &BlobAccess::default())
        .err()
        .unwrap();
    let text = e.to_string();
    assert!(text.contains("acc.blob.core.windows.net/c") && !text.contains("SECRET"), "{text}");
    assert!(text.contains("not a blob"), "{text}");
}

#[test]
fn a_ledger_has_one_writer_a_second_open_is_refused_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.ndjson");
    let location = path.to_str().unwrap();
    let mut first = Ledger::open(location, identity(), &BlobAccess::default()).unwrap();
    first.landed(&twin("a", "{}"), None);
    let e = Ledger::open(location, identity(), &BlobAccess::default()).err().expect("a second writer is refused");
    let text = e.to_string();
    assert!(matches!(e, LedgerError::Held { .. }), "{text}");
    assert!(text.contains(location) && text.contains(&format!("pid {}", std::process::id())), "{text}");
    assert!(text.contains("one per shard"), "{text}");
    // A dry run may still read it.
    assert!(Ledger::read_only(location, identity(), &BlobAccess::default()).is_ok());
    first.finish().unwrap();
    drop(first);
    let again = Ledger::open(location, identity(), &BlobAccess::default()).expect("free once its holder is done");
    assert!(again.holds_unchanged(&twin("a", "{}")));
}
