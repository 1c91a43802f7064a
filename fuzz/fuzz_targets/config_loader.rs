//! Any text as a configuration file: parsing and validation must report errors, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = shotline_config::parse_str(text, "fuzz.yaml");
    }
});
