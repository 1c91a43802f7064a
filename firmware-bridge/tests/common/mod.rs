// Shared sample messages for the integration tests (included with `mod common;`).
#![allow(dead_code)]

use shotline_firmware_bridge::message::{
    Status, MAX_ACQ_SAMPLES, MAX_TIMESTAMPS, MAX_UPLOAD_EVENTS,
};
use shotline_firmware_bridge::{Message, WireEvent};

/// One of every message, lists at their maximum and at zero.
pub fn every_message() -> Vec<Message> {
    let full_events: heapless::Vec<WireEvent, MAX_UPLOAD_EVENTS> = (0..MAX_UPLOAD_EVENTS)
        .map(|i| WireEvent {
            t_ticks: u64::MAX - i as u64,
            channel: i as u16,
            kind: (i % 3) as u8,
            duration_ticks: 1000 * i as u64,
            value: -(i as i32) * 1000,
        })
        .collect();
    let samples: heapless::Vec<i32, MAX_ACQ_SAMPLES> =
        (0..MAX_ACQ_SAMPLES).map(|i| i as i32 - 100).collect();
    let ticks: heapless::Vec<u64, MAX_TIMESTAMPS> =
        (0..MAX_TIMESTAMPS).map(|i| 1 << (i % 64)).collect();
    vec![
        Message::Hello {
            protocol_version: 1,
            card_id: 0xDEAD_BEEF,
            channels: 32,
            clock_hz: 100_000_000,
            max_events: 65_536,
            buffer_events: 4096,
            watchdog_ms: 500,
        },
        Message::UploadChunk {
            timeline_id: 7,
            offset: 44,
            events: full_events,
        },
        Message::UploadChunk {
            timeline_id: 7,
            offset: 0,
            events: heapless::Vec::new(),
        },
        Message::Arm {
            timeline_id: 7,
            events_total: 88,
        },
        Message::Start {
            at_card_ticks: 123_456_789_012,
            shots: 10,
        },
        Message::Abort,
        Message::SafeState,
        Message::Heartbeat {
            card_ticks: 42,
            state: 3,
        },
        Message::Status(Status {
            state: 2,
            timeline_id: 7,
            events_loaded: 88,
            shots_done: 3,
            card_ticks: 99,
            last_error: 21,
        }),
        Message::Ack { seq: 65_535 },
        Message::AcquisitionChunk {
            shot: 3,
            channel: 2,
            offset: 253,
            samples,
        },
        Message::EventTimestamps {
            shot: 3,
            first_event: 10,
            applied_ticks: ticks,
        },
        Message::Error {
            code: 16,
            detail: heapless::String::try_from("état invalide: ünïcode ok").unwrap(),
        },
        Message::Error {
            code: 0,
            detail: heapless::String::new(),
        },
    ]
}
