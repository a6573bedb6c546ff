//! A `Retry-After` header value (seconds or an HTTP date): a duration or nothing, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use twinload::client::retry_after::parse_retry_after_value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = parse_retry_after_value(text, std::time::SystemTime::now());
});
