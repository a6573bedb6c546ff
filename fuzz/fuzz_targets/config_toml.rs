//! The loader's TOML config file, parsed and resolved: errors, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use twinload::config::{ConfigArgs, FileConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(file) = FileConfig::parse(text, "fuzz.toml") {
        let args = ConfigArgs { endpoint: Some("https://x.example".into()), ..ConfigArgs::default() };
        let _ = args.resolve_with(file);
    }
});
