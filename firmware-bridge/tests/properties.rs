//! Property tests: arbitrary input never panics the decoders; encode → decode is the identity.

use proptest::prelude::*;
use shotline_firmware_bridge::message::{
    self, Status, MAX_ACQ_SAMPLES, MAX_ERROR_DETAIL, MAX_TIMESTAMPS, MAX_UPLOAD_EVENTS,
};
use shotline_firmware_bridge::{cobs, encode_frame, Frame, FrameDecoder, Message, WireEvent};
use shotline_firmware_bridge::{MAX_ENCODED_FRAME, MAX_PAYLOAD};

fn wire_event() -> impl Strategy<Value = WireEvent> {
    (
        any::<u64>(),
        any::<u16>(),
        any::<u8>(),
        any::<u64>(),
        any::<i32>(),
    )
        .prop_map(
            |(t_ticks, channel, kind, duration_ticks, value)| WireEvent {
                t_ticks,
                channel,
                kind,
                duration_ticks,
                value,
            },
        )
}

fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            any::<u8>(),
            any::<u32>(),
            any::<u16>(),
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(
                |(
                    protocol_version,
                    card_id,
                    channels,
                    clock_hz,
                    max_events,
                    buffer_events,
                    watchdog_ms,
                )| {
                    Message::Hello {
                        protocol_version,
                        card_id,
                        channels,
                        clock_hz,
                        max_events,
                        buffer_events,
                        watchdog_ms,
                    }
                }
            ),
        (
            any::<u32>(),
            any::<u32>(),
            prop::collection::vec(wire_event(), 0..=MAX_UPLOAD_EVENTS)
        )
            .prop_map(|(timeline_id, offset, ev)| Message::UploadChunk {
                timeline_id,
                offset,
                events: ev.into_iter().collect(),
            }),
        (any::<u32>(), any::<u32>()).prop_map(|(timeline_id, events_total)| Message::Arm {
            timeline_id,
            events_total
        }),
        (any::<u64>(), any::<u32>()).prop_map(|(at_card_ticks, shots)| Message::Start {
            at_card_ticks,
            shots
        }),
        Just(Message::Abort),
        Just(Message::SafeState),
        (any::<u64>(), any::<u8>())
            .prop_map(|(card_ticks, state)| Message::Heartbeat { card_ticks, state }),
        (
            any::<u8>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            any::<u16>()
        )
            .prop_map(
                |(state, timeline_id, events_loaded, shots_done, card_ticks, last_error)| {
                    Message::Status(Status {
                        state,
                        timeline_id,
                        events_loaded,
                        shots_done,
                        card_ticks,
                        last_error,
                    })
                }
            ),
        any::<u16>().prop_map(|seq| Message::Ack { seq }),
        (
            any::<u32>(),
            any::<u16>(),
            any::<u32>(),
            prop::collection::vec(any::<i32>(), 0..=MAX_ACQ_SAMPLES)
        )
            .prop_map(|(shot, channel, offset, s)| Message::AcquisitionChunk {
                shot,
                channel,
                offset,
                samples: s.into_iter().collect(),
            }),
        (
            any::<u32>(),
            any::<u32>(),
            prop::collection::vec(any::<u64>(), 0..=MAX_TIMESTAMPS)
        )
            .prop_map(|(shot, first_event, t)| Message::EventTimestamps {
                shot,
                first_event,
                applied_ticks: t.into_iter().collect(),
            }),
        (any::<u16>(), "\\PC{0,40}").prop_map(|(code, text)| {
            let mut detail = heapless::String::<MAX_ERROR_DETAIL>::new();
            for c in text.chars() {
                if detail.push(c).is_err() {
                    break;
                }
            }
            Message::Error { code, detail }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic_the_frame_decoder(bytes in prop::collection::vec(any::<u8>(), 0..4000)) {
        let mut dec = FrameDecoder::new();
        let mut n = 0u32;
        dec.push_slice(&bytes, |r| {
            n += 1;
            if let Ok(f) = r {
                assert!(f.payload.len() <= MAX_PAYLOAD);
                let _ = Message::decode(f.msg_type, &f.payload);
            }
        });
        let s = dec.stats();
        prop_assert_eq!(s.frames + s.crc_errors + s.oversize + s.malformed, n);
    }

    #[test]
    fn arbitrary_bytes_never_panic_cobs_or_message_decode(
        msg_type in any::<u8>(),
        bytes in prop::collection::vec(any::<u8>(), 0..1100),
    ) {
        let mut out = [0u8; 1100];
        let _ = cobs::decode(&bytes, &mut out);
        let _ = cobs::decode(&bytes, &mut out[..10]);
        let _ = message::decode(msg_type, &bytes);
        let _ = Frame::from_raw(&bytes);
    }

    #[test]
    fn message_encode_decode_is_identity(msg in arb_message()) {
        let mut payload = [0u8; MAX_PAYLOAD];
        let n = message::encode(&msg, &mut payload).unwrap();
        prop_assert_eq!(message::decode(msg.msg_type(), &payload[..n]).unwrap(), msg);
    }

    #[test]
    fn frame_encode_decode_is_identity(msg in arb_message(), seq in any::<u16>(), ack in any::<u16>(), junk in prop::collection::vec(1u8..=255, 0..50)) {
        let mut payload = [0u8; MAX_PAYLOAD];
        let n = message::encode(&msg, &mut payload).unwrap();
        let frame = Frame::new(msg.msg_type(), seq, ack, &payload[..n]).unwrap();
        let mut wire = [0u8; MAX_ENCODED_FRAME];
        let w = encode_frame(&frame, &mut wire).unwrap();
        prop_assert!(!wire[..w - 1].contains(&0));
        // Leading garbage terminated by a delimiter must not disturb the frame after it.
        let mut bytes = junk.clone();
        bytes.push(0);
        bytes.extend_from_slice(&wire[..w]);
        let mut dec = FrameDecoder::new();
        let mut frames = Vec::new();
        dec.push_slice(&bytes, |r| { if let Ok(f) = r { frames.push(f) } });
        prop_assert_eq!(frames.last(), Some(&frame));
        let last = frames.last().unwrap();
        prop_assert_eq!(Message::decode(last.msg_type, &last.payload).unwrap(), msg);
    }

    #[test]
    fn cobs_round_trip(bytes in prop::collection::vec(any::<u8>(), 0..1100)) {
        let mut enc = [0u8; 1200];
        let n = cobs::encode(&bytes, &mut enc).unwrap();
        prop_assert!(n <= cobs::max_encoded_len(bytes.len()));
        prop_assert!(!enc[..n].contains(&0));
        let mut dec = [0u8; 1100];
        let m = cobs::decode(&enc[..n], &mut dec).unwrap();
        prop_assert_eq!(&dec[..m], &bytes[..]);
    }
}
