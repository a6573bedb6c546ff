//! ADF's activity.json: settings or an error naming the file, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = twinload::adf::activity::parse(data, "activity.json", std::path::Path::new("/nonexistent"));
});
