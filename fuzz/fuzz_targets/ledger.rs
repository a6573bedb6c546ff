//! A ledger file: parsed into entries or a format error naming file and line, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use twinload::ledger::record::parse;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = parse(data, "fuzz.ledger") {
        assert!(e.line >= 1, "a format error names a line");
    }
});
