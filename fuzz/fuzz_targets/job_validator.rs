//! Any msgpack or JSON value as a job: validation must answer with a report, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shotline_protocol::catalog::singlequdit_config;
use shotline_protocol::wire::decode_body;
use shotline_protocol::{validate_job, Value};

fuzz_target!(|data: &[u8]| {
    let backend = singlequdit_config("singlequdit", "fuzz", "0", "", 1_000_000, 1000);
    if let Ok(v) = decode_body::<Value>(data) {
        let _ = validate_job(&v, &backend);
    }
    if let Ok(v) = serde_json::from_slice::<Value>(data) {
        let _ = validate_job(&v, &backend);
    }
});
