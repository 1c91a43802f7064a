//! Any bytes as a frame: the length check and the msgpack decoder must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shotline_protocol::wire::{decode_body, frame_len, Request, Response};

fuzz_target!(|data: &[u8]| {
    if data.len() >= 4 {
        let header = [data[0], data[1], data[2], data[3]];
        let _ = frame_len(header, 8 * 1024 * 1024);
        let _ = decode_body::<Request>(&data[4..]);
        let _ = decode_body::<Response>(&data[4..]);
    }
    let _ = decode_body::<Request>(data);
});
