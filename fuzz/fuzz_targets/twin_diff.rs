//! The sync diff of two twin documents (ADT's and the source's): applying the patch it makes to
//! the current document gives one with nothing left to patch. The input is two JSON documents
//! separated by a NUL byte.
#![no_main]
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use twinload::sync::diff::{relationship, twin, PatchOp, TwinChange};

fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

/// Applies `ops` as ADT would (paths are one or two levels: property, or component/property).
fn apply(doc: &mut Value, ops: &[PatchOp]) {
    for op in ops {
        let (path, value) = match op {
            PatchOp::Add { path, value } | PatchOp::Replace { path, value } => (path, Some(value)),
            PatchOp::Remove { path } => (path, None),
        };
        let segments: Vec<String> = path.split('/').skip(1).map(unescape).collect();
        let (last, parents) = segments.split_last().expect("a patch path names a property");
        let mut at = &mut *doc;
        for p in parents {
            at = at.get_mut(p).expect("a patched component exists");
        }
        let object = at.as_object_mut().expect("patched inside an object");
        match value {
            Some(v) => {
                object.insert(last.clone(), v.clone());
            }
            None => {
                object.remove(last);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut halves = data.splitn(2, |b| *b == 0);
    let (Some(a), Some(b)) = (halves.next(), halves.next()) else { return };
    let (Ok(current), Ok(desired)) = (serde_json::from_slice::<Value>(a), serde_json::from_slice::<Value>(b)) else {
        return;
    };
    if let TwinChange::Patch(ops) = twin(&current, &desired) {
        let mut patched = current.clone();
        apply(&mut patched, &ops);
        assert_eq!(twin(&patched, &desired), TwinChange::Unchanged, "ops {ops:?}");
    }
    let _ = relationship(&current, &desired);
});
