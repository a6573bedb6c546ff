//! A per-twin JSON document (one twin per file): an item or an error naming the file, never a panic.
#![no_main]
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use twinload::item::Origin;
use twinload::source::{twin_doc, InputOptions};

fuzz_target!(|data: &[u8]| {
    let origin = Origin { file: Arc::from("twins/t1.json"), line: 1 };
    for model in [None, Some("dtmi:fuzz:T;1".to_string())] {
        let options = InputOptions { mapping: None, model, ..InputOptions::default() };
        let _ = twin_doc::parse(&origin, "t1", data, &options);
    }
});
