//! A mapping file and a CSV input read through it (the two separated by a NUL byte): items or
//! errors with file and line, never a panic.
#![no_main]
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use twinload::source::csv_rows::CsvSource;
use twinload::source::mapping::Mapping;
use twinload::source::{InputOptions, Source};

fuzz_target!(|data: &[u8]| {
    let mut halves = data.splitn(2, |b| *b == 0);
    let (Some(mapping), Some(csv)) = (halves.next(), halves.next()) else { return };
    let Ok(mapping) = Mapping::parse("mapping.json", mapping) else { return };
    for model in [None, Some("dtmi:fuzz:T;1".to_string())] {
        let options = InputOptions { mapping: Some(Arc::new(mapping.clone())), model, ..InputOptions::default() };
        let source = Box::new(CsvSource::new("rows.csv".into(), "rows".into(), Box::new(std::io::Cursor::new(csv.to_vec())), options));
        for item in source.items() {
            let _ = item;
        }
    }
});
