//! Message encodings: round trips through payload and full wire frames, and every rejection.

mod common;

use shotline_firmware_bridge::message::{self, msg_type, MAX_UPLOAD_EVENTS};
use shotline_firmware_bridge::{encode_frame, BridgeError, Frame, FrameDecoder, Message};
use shotline_firmware_bridge::{MAX_ENCODED_FRAME, MAX_PAYLOAD};

#[test]
fn every_message_round_trips_through_payload_and_wire() {
    let mut types = std::collections::BTreeSet::new();
    let mut dec = FrameDecoder::new();
    for (i, msg) in common::every_message().into_iter().enumerate() {
        types.insert(msg.msg_type());
        let mut payload = [0u8; MAX_PAYLOAD];
        let n = message::encode(&msg, &mut payload).unwrap();
        assert_eq!(message::decode(msg.msg_type(), &payload[..n]).unwrap(), msg);

        let frame = Frame::new(msg.msg_type(), i as u16, 3, &payload[..n]).unwrap();
        let mut wire = [0u8; MAX_ENCODED_FRAME];
        let w = encode_frame(&frame, &mut wire).unwrap();
        let mut got = Vec::new();
        dec.push_slice(&wire[..w], |r| got.push(r.unwrap()));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0], frame);
        assert_eq!(
            Message::decode(got[0].msg_type, &got[0].payload).unwrap(),
            msg
        );
    }
    assert_eq!(types.len(), 12, "every message type covered");
}

#[test]
fn largest_messages_fit_one_frame() {
    for msg in common::every_message() {
        let mut payload = [0u8; MAX_PAYLOAD];
        assert!(message::encode(&msg, &mut payload).unwrap() <= MAX_PAYLOAD);
    }
}

#[test]
fn unknown_types_are_errors() {
    for t in [0x00u8, 0x0D, 0x7F, 0xFF] {
        assert_eq!(
            message::decode(t, &[]),
            Err(BridgeError::UnknownMessageType { msg_type: t })
        );
    }
    assert_eq!(BridgeError::UnknownMessageType { msg_type: 0 }.code(), 8);
}

#[test]
fn wrong_lengths_are_errors() {
    let fixed = [
        (msg_type::HELLO, 27usize),
        (msg_type::ARM, 8),
        (msg_type::START, 12),
        (msg_type::ABORT, 0),
        (msg_type::SAFE_STATE, 0),
        (msg_type::HEARTBEAT, 9),
        (msg_type::STATUS, 23),
        (msg_type::ACK, 2),
    ];
    let buf = [0u8; 64];
    for (t, len) in fixed {
        assert!(message::decode(t, &buf[..len]).is_ok(), "type {t:#x}");
        let e = message::decode(t, &buf[..len + 1]).unwrap_err();
        assert_eq!(
            e,
            BridgeError::BadMessageLength {
                msg_type: t,
                len: len + 1,
                expected: len
            }
        );
        if len > 0 {
            assert!(matches!(
                message::decode(t, &buf[..len - 1]),
                Err(BridgeError::BadMessageLength { .. })
            ));
        }
    }
}

#[test]
fn list_counts_are_checked_against_maxima_and_payload() {
    // Upload chunk claiming 45 events (> 44).
    let mut p = vec![0u8; 10];
    p[8..10].copy_from_slice(&45u16.to_le_bytes());
    assert_eq!(
        message::decode(msg_type::UPLOAD_CHUNK, &p),
        Err(BridgeError::TooManyItems {
            msg_type: msg_type::UPLOAD_CHUNK,
            count: 45,
            max: MAX_UPLOAD_EVENTS
        })
    );
    // Claiming 2 events but carrying 1.
    p[8..10].copy_from_slice(&2u16.to_le_bytes());
    p.extend_from_slice(&[0u8; 23]);
    assert_eq!(
        message::decode(msg_type::UPLOAD_CHUNK, &p),
        Err(BridgeError::BadMessageLength {
            msg_type: msg_type::UPLOAD_CHUNK,
            len: 33,
            expected: 56
        })
    );
    // Acquisition chunk with count 0xFFFF.
    let mut a = vec![0u8; 12];
    a[10..12].copy_from_slice(&u16::MAX.to_le_bytes());
    assert!(matches!(
        message::decode(msg_type::ACQUISITION_CHUNK, &a),
        Err(BridgeError::TooManyItems {
            count: 65535,
            max: 253,
            ..
        })
    ));
    // Timestamps with trailing garbage.
    let mut ts = vec![0u8; 10];
    ts.push(1);
    assert!(matches!(
        message::decode(msg_type::EVENT_TIMESTAMPS, &ts),
        Err(BridgeError::BadMessageLength { .. })
    ));
    // Truncated headers of list messages.
    for t in [
        msg_type::UPLOAD_CHUNK,
        msg_type::ACQUISITION_CHUNK,
        msg_type::EVENT_TIMESTAMPS,
        msg_type::ERROR,
    ] {
        assert!(matches!(
            message::decode(t, &[1]),
            Err(BridgeError::BadMessageLength { .. })
        ));
    }
}

#[test]
fn error_detail_is_checked() {
    assert!(matches!(
        message::decode(msg_type::ERROR, &[1, 0, 65]),
        Err(BridgeError::TooManyItems {
            count: 65,
            max: 64,
            ..
        })
    ));
    assert_eq!(
        message::decode(msg_type::ERROR, &[1, 0, 2, 0xC3, 0x28]),
        Err(BridgeError::InvalidUtf8 {
            msg_type: msg_type::ERROR
        })
    );
}

#[test]
fn error_message_from_bridge_error_carries_code_and_truncated_text() {
    let e = BridgeError::WatchdogExpired {
        silent_ms: 1234,
        timeout_ms: 500,
    };
    let Message::Error { code, detail } = Message::from_error(&e) else {
        panic!("not an error message")
    };
    assert_eq!(code, 21);
    assert_eq!(detail.len(), 64);
    assert!(detail.starts_with("heartbeat watchdog expired: host silent for 1234 ms"));
}

#[test]
fn error_codes_are_distinct_and_displayed() {
    let all = [
        BridgeError::BufferTooSmall {
            needed: 1,
            available: 0,
        },
        BridgeError::PayloadTooLarge {
            len: 2000,
            max: 1024,
        },
        BridgeError::FrameTooShort { len: 3, min: 12 },
        BridgeError::FrameTooLong { max: 1041 },
        BridgeError::CrcMismatch {
            received: 1,
            computed: 2,
        },
        BridgeError::CobsMalformed { offset: 4 },
        BridgeError::WrongVersion {
            got: 2,
            expected: 1,
        },
        BridgeError::UnknownMessageType { msg_type: 0x42 },
        BridgeError::LengthMismatch {
            header: 5,
            actual: 4,
        },
        BridgeError::BadMessageLength {
            msg_type: 1,
            len: 3,
            expected: 27,
        },
        BridgeError::TooManyItems {
            msg_type: 2,
            count: 50,
            max: 44,
        },
        BridgeError::InvalidUtf8 { msg_type: 12 },
        BridgeError::Busy { window: 8 },
        BridgeError::LinkDown { seq: 9, retries: 5 },
        BridgeError::UnsequencedMessage { msg_type: 9 },
        BridgeError::InvalidState {
            state: 0,
            msg_type: 4,
        },
        BridgeError::UploadOutOfOrder {
            expected: 0,
            got: 3,
        },
        BridgeError::TimelineMismatch { loaded: 1, got: 2 },
        BridgeError::TimelineIncomplete {
            loaded: 2,
            total: 3,
        },
        BridgeError::TimelineTooLarge { events: 5, max: 4 },
        BridgeError::WatchdogExpired {
            silent_ms: 600,
            timeout_ms: 500,
        },
    ];
    for (i, e) in all.iter().enumerate() {
        assert_eq!(usize::from(e.code()), i + 1);
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(
        BridgeError::TooManyItems {
            msg_type: 2,
            count: 50,
            max: 44
        }
        .to_string(),
        "message type 0x02: 50 items exceed the maximum of 44"
    );
}
