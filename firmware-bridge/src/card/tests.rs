//! The reference card driven by an in-memory host (`Link<8>` + `FrameDecoder`).

use super::*;
use crate::message::Message as M;
use std::vec;
use std::vec::Vec;

/// 1 tick = 1 µs.
const HZ: u64 = 1_000_000;

fn t(ticks: u64) -> CardTime {
    CardTime {
        ticks,
        ms: ticks / 1000,
    }
}

fn config() -> CardConfig {
    CardConfig {
        card_id: 42,
        channels: 4,
        clock_hz: HZ,
        max_events: 1000,
        buffer_events: 16,
        watchdog_ms: 100,
    }
}

struct Host {
    link: Link<8>,
    dec: FrameDecoder,
    received: Vec<Message>,
}

impl Host {
    fn new() -> Self {
        Self {
            link: Link::new(LinkConfig::default()),
            dec: FrameDecoder::new(),
            received: Vec::new(),
        }
    }

    fn send(&mut self, msg: Message, card: &mut Card<'_, 8>, now: CardTime) {
        self.link.send(&msg, now.ms).unwrap();
        self.exchange(card, now);
    }

    /// Lets both sides transmit what is due at `now` until nothing moves.
    fn exchange(&mut self, card: &mut Card<'_, 8>, now: CardTime) {
        for _ in 0..64 {
            let mut to_card = Vec::new();
            self.link
                .poll(now.ms, |b| to_card.extend_from_slice(b))
                .unwrap();
            card.on_bytes(&to_card, now);
            let mut to_host = Vec::new();
            card.poll(now, |b| to_host.extend_from_slice(b));
            if to_card.is_empty() && to_host.is_empty() {
                return;
            }
            for &b in &to_host {
                if let Some(r) = self.dec.push(b) {
                    if let Some(m) = self.link.on_frame(&r.unwrap(), now.ms).unwrap() {
                        self.received.push(m);
                    }
                }
            }
        }
        panic!("exchange did not settle");
    }

    fn take(&mut self) -> Vec<Message> {
        core::mem::take(&mut self.received)
    }
}

fn ev(t_ticks: u64, channel: u16, kind: u8, duration_ticks: u64, value: i32) -> WireEvent {
    WireEvent {
        t_ticks,
        channel,
        kind,
        duration_ticks,
        value,
    }
}

fn chunk(timeline_id: u32, offset: u32, events: &[WireEvent]) -> Message {
    M::UploadChunk {
        timeline_id,
        offset,
        events: heapless::Vec::from_slice(events).unwrap(),
    }
}

fn error_codes(msgs: &[Message]) -> Vec<u16> {
    msgs.iter()
        .filter_map(|m| match m {
            M::Error { code, .. } => Some(*code),
            _ => None,
        })
        .collect()
}

fn status_of(msgs: &[Message]) -> Vec<Status> {
    msgs.iter()
        .filter_map(|m| match m {
            M::Status(s) => Some(*s),
            _ => None,
        })
        .collect()
}

/// Connects (the boot `Hello` is dropped by `reset_link`, as on accepting a connection), says
/// `Hello`, uploads `events` as timeline 7 and arms it.
fn armed<'a>(storage: &'a mut [StoredEvent], events: &[WireEvent]) -> (Card<'a, 8>, Host) {
    let capacity = storage.len() as u32;
    let mut card = Card::new(config(), storage, LinkConfig::default());
    card.reset_link();
    let mut host = Host::new();
    host.send(M::host_hello(), &mut card, t(0));
    let hello = host.take();
    assert!(
        matches!(hello[..], [M::Hello { card_id: 42, channels: 4, clock_hz: HZ, max_events, watchdog_ms: 100, .. }] if max_events == capacity),
        "{hello:?}"
    );
    for (i, part) in events.chunks(44).enumerate() {
        host.send(chunk(7, (i * 44) as u32, part), &mut card, t(0));
    }
    host.send(
        M::Arm {
            timeline_id: 7,
            events_total: events.len() as u32,
        },
        &mut card,
        t(0),
    );
    let got = host.take();
    assert_eq!(error_codes(&got), Vec::<u16>::new());
    assert_eq!(status_of(&got)[0].state, CardState::Armed.code());
    (card, host)
}

/// Steps the card clock from `from` to `to` every `step` ticks with heartbeats every 20 ms.
fn run(card: &mut Card<'_, 8>, host: &mut Host, from: u64, to: u64, step: u64) {
    let mut now = from;
    let mut last_hb = from;
    while now <= to {
        if now - last_hb >= 20_000 {
            host.link
                .send(
                    &M::Heartbeat {
                        card_ticks: 0,
                        state: 0,
                    },
                    t(now).ms,
                )
                .unwrap();
            last_hb = now;
        }
        host.exchange(card, t(now));
        now += step;
    }
}

fn timestamps(msgs: &[Message]) -> Vec<(u32, u32, Vec<u64>)> {
    msgs.iter()
        .filter_map(|m| match m {
            M::EventTimestamps {
                shot,
                first_event,
                applied_ticks,
            } => Some((*shot, *first_event, applied_ticks.to_vec())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_shot_returns_timestamps_acquisition_and_status_then_is_armed_again() {
    let events = [
        ev(100, 0, event_kind::DIGITAL, 0, 1),
        ev(190, 1, event_kind::ACQUIRE, 40, 4),
        ev(200, 1, event_kind::PULSE, 50, 7),
        ev(300, 0, event_kind::DIGITAL, 0, 0),
    ];
    let mut storage = [StoredEvent::default(); 16];
    let (mut card, mut host) = armed(&mut storage, &events);
    host.send(
        M::Start {
            at_card_ticks: 1000,
            shots: 1,
        },
        &mut card,
        t(0),
    );
    assert_eq!(card.state(), CardState::Running);
    assert_eq!(
        card.next_wakeup(t(10)),
        Some(1100),
        "sleeps until the first event"
    );
    run(&mut card, &mut host, 1000, 1205, 5);
    assert_eq!(card.level(0), Some(1));
    assert_eq!(card.level(1), Some(7), "pulse in progress");
    run(&mut card, &mut host, 1210, 1400, 10);
    assert_eq!(card.outputs(), &[0, 0, 0, 0]);
    let got = host.take();
    let ts = timestamps(&got);
    assert_eq!(ts.len(), 1);
    let (shot, first, applied) = &ts[0];
    assert_eq!((*shot, *first), (0, 0));
    assert_eq!(applied.len(), 4);
    for (a, e) in applied.iter().zip(&events) {
        assert!(*a >= 1000 + e.t_ticks, "applied {a} before scheduled");
        assert!(*a < 1000 + e.t_ticks + 10, "applied {a} late");
    }
    assert!(applied.windows(2).all(|w| w[0] <= w[1]));
    let acq: Vec<_> = got
        .iter()
        .filter_map(|m| match m {
            M::AcquisitionChunk {
                shot,
                channel,
                offset,
                samples,
            } => Some((*shot, *channel, *offset, samples.to_vec())),
            _ => None,
        })
        .collect();
    // Samples at 1190, 1200, 1210, 1220: the pulse on output 1 starts at 1200.
    assert_eq!(acq, vec![(0, 1, 0, vec![0, 7, 7, 7])]);
    let st = status_of(&got);
    let last = st.last().unwrap();
    assert_eq!((last.state, last.shots_done, last.events_loaded), (2, 1, 4));
    assert!(
        matches!(got.last(), Some(M::Status(_))) || matches!(got.last(), Some(M::Heartbeat { .. })),
        "status ends the report"
    );
    assert_eq!(card.state(), CardState::Armed);
    // Next shot, started in the past: starts at once, lateness shows in the stamps.
    host.send(
        M::Start {
            at_card_ticks: 500,
            shots: 1,
        },
        &mut card,
        t(2000),
    );
    run(&mut card, &mut host, 2000, 2100, 10);
    let got = host.take();
    let ts = timestamps(&got);
    assert_eq!(ts[0].0, 1, "shots numbered since Arm");
    assert!(ts[0].2.iter().all(|&a| a >= 2000));
    assert_eq!(status_of(&got).last().unwrap().shots_done, 2);
}

#[test]
fn long_timelines_are_reported_in_chunks_of_126_and_253() {
    let mut events: Vec<WireEvent> = (0..200)
        .map(|i| ev(i * 2, 0, event_kind::DIGITAL, 0, (i % 2) as i32))
        .collect();
    events.push(ev(0, 0, event_kind::ACQUIRE, 400, 300));
    let mut storage = vec![StoredEvent::default(); 300];
    let (mut card, mut host) = armed(&mut storage, &events);
    host.send(
        M::Start {
            at_card_ticks: 0,
            shots: 1,
        },
        &mut card,
        t(0),
    );
    run(&mut card, &mut host, 0, 1000, 1);
    let got = host.take();
    let ts = timestamps(&got);
    let heads: Vec<(u32, usize)> = ts.iter().map(|(_, f, a)| (*f, a.len())).collect();
    assert_eq!(heads, vec![(0, 126), (126, 75)]);
    let chunks: Vec<(u32, usize)> = got
        .iter()
        .filter_map(|m| match m {
            M::AcquisitionChunk {
                offset, samples, ..
            } => Some((*offset, samples.len())),
            _ => None,
        })
        .collect();
    assert_eq!(chunks, vec![(0, 253), (253, 47)]);
    assert_eq!(status_of(&got).last().unwrap().shots_done, 1);
}

#[test]
fn abort_stops_the_shot_and_keeps_the_timeline() {
    let mut storage = [StoredEvent::default(); 4];
    let (mut card, mut host) = armed(&mut storage, &[ev(100, 0, 0, 0, 1)]);
    host.send(
        M::Start {
            at_card_ticks: 5000,
            shots: 1,
        },
        &mut card,
        t(0),
    );
    host.send(M::Abort, &mut card, t(10));
    let got = host.take();
    assert_eq!(status_of(&got)[0].state, CardState::Loaded.code());
    run(&mut card, &mut host, 20, 6000, 100);
    assert!(
        timestamps(&host.take()).is_empty(),
        "aborted shot not played"
    );
    assert_eq!(card.level(0), Some(0));
    assert_eq!(card.events_loaded(), 1);
    host.send(
        M::Arm {
            timeline_id: 7,
            events_total: 1,
        },
        &mut card,
        t(6000),
    );
    assert_eq!(card.state(), CardState::Armed);
}

#[test]
fn safe_state_drives_outputs_safe_and_only_a_new_upload_leaves_it() {
    let mut storage = [StoredEvent::default(); 4];
    let (mut card, mut host) = armed(&mut storage, &[ev(0, 2, 0, 0, 1), ev(50_000, 2, 0, 0, 0)]);
    host.send(
        M::Start {
            at_card_ticks: 0,
            shots: 1,
        },
        &mut card,
        t(0),
    );
    host.exchange(&mut card, t(10));
    assert_eq!(card.level(2), Some(1));
    assert!(!card.outputs_safe());
    host.send(M::SafeState, &mut card, t(20));
    assert!(card.outputs_safe());
    assert_eq!(card.safe_cause(), Some(SafeCause::Host));
    let got = host.take();
    assert_eq!(
        status_of(&got).last().unwrap().state,
        CardState::Safe.code()
    );
    host.send(
        M::Start {
            at_card_ticks: 0,
            shots: 1,
        },
        &mut card,
        t(30),
    );
    assert_eq!(error_codes(&host.take()), vec![16]);
    host.send(chunk(9, 0, &[ev(0, 0, 0, 0, 1)]), &mut card, t(40));
    assert_eq!(card.state(), CardState::Loaded);
    assert_eq!(card.stats().safe_entries, 1);
}

#[test]
fn watchdog_expiry_without_host_frames_goes_safe_and_reports_error_21() {
    let mut storage = [StoredEvent::default(); 4];
    let (mut card, mut host) = armed(
        &mut storage,
        &[ev(0, 0, 0, 0, 1), ev(10_000_000, 0, 0, 0, 0)],
    );
    host.send(
        M::Start {
            at_card_ticks: 0,
            shots: 1,
        },
        &mut card,
        t(1000),
    );
    host.exchange(&mut card, t(1000));
    assert_eq!(card.level(0), Some(1));
    host.take();
    // The host goes silent; the card wakes for its watchdog by itself.
    let wake = card.next_wakeup(t(2000)).unwrap();
    assert!(
        wake <= 101_000,
        "card must wake for the watchdog, got {wake}"
    );
    let mut to_host = Vec::new();
    card.poll(t(99_000), |b| to_host.extend_from_slice(b));
    assert_eq!(card.state(), CardState::Running, "not yet: fed at 1 ms");
    card.poll(t(101_000), |b| to_host.extend_from_slice(b));
    assert_eq!(card.state(), CardState::Safe);
    assert!(card.outputs_safe());
    assert_eq!(card.safe_cause(), Some(SafeCause::Watchdog));
    let mut got = Vec::new();
    for &b in &to_host {
        if let Some(r) = host.dec.push(b) {
            if let Some(m) = host.link.on_frame(&r.unwrap(), 101).unwrap() {
                got.push(m);
            }
        }
    }
    assert_eq!(error_codes(&got), vec![21]);
    assert_eq!(
        status_of(&got).last().unwrap().state,
        CardState::Safe.code()
    );
    // A late command does not revive it.
    host.send(
        M::Arm {
            timeline_id: 7,
            events_total: 2,
        },
        &mut card,
        t(102_000),
    );
    assert_eq!(card.state(), CardState::Safe);
    assert_eq!(card.stats().watchdog_expiries, 1);
}

#[test]
fn unknown_kinds_and_bad_sample_counts_are_refused_at_upload() {
    let mut storage = [StoredEvent::default(); 8];
    let (mut card, mut host) = armed(&mut storage, &[ev(0, 0, 0, 0, 1)]);
    host.send(M::Abort, &mut card, t(0));
    host.take();
    host.send(
        chunk(8, 0, &[ev(0, 0, 0, 0, 1), ev(5, 1, 3, 0, 0)]),
        &mut card,
        t(0),
    );
    host.send(chunk(8, 0, &[ev(0, 1, 2, 10, 0)]), &mut card, t(0));
    host.send(chunk(8, 0, &[ev(0, 1, 2, 10, 4097)]), &mut card, t(0));
    let got = host.take();
    assert_eq!(error_codes(&got), vec![0x8001, 0x8002, 0x8002]);
    match &got[0] {
        M::Error { detail, .. } => assert!(detail.contains("event 1: kind 3"), "{detail}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(card.events_loaded(), 1, "refused chunks are not stored");
}

#[test]
fn heartbeat_is_a_barrier_after_earlier_errors() {
    let mut storage = [StoredEvent::default(); 4];
    let (mut card, mut host) = armed(&mut storage, &[ev(0, 0, 0, 0, 1)]);
    // Three commands and a heartbeat in one burst, before the card polls.
    for m in [
        chunk(7, 0, &[ev(0, 0, 0, 0, 1)]),
        M::Arm {
            timeline_id: 1,
            events_total: 1,
        },
        M::Heartbeat {
            card_ticks: 0,
            state: 0,
        },
    ] {
        host.link.send(&m, 5).unwrap();
    }
    host.exchange(&mut card, t(5000));
    let got = host.take();
    assert!(
        matches!(
            got[..],
            [
                M::Error { code: 16, .. },
                M::Error { code: 16, .. },
                M::Heartbeat {
                    card_ticks: 5000,
                    state: 2
                }
            ]
        ),
        "{got:?}"
    );
}

#[test]
fn a_hello_with_seq_0_starts_a_new_session_and_keeps_the_timeline() {
    let mut storage = [StoredEvent::default(); 4];
    let (mut card, host) = armed(&mut storage, &[ev(0, 0, 0, 0, 1)]);
    assert!(card.link.next_expected() > 1);
    // The host restarts (serial: the card cannot see it) and says Hello again.
    let mut host2 = Host::new();
    host2.send(M::host_hello(), &mut card, t(1000));
    assert!(matches!(host2.take()[..], [M::Hello { card_id: 42, .. }]));
    assert_eq!(card.stats().sessions, 1);
    assert_eq!(card.state(), CardState::Armed, "state kept");
    host2.send(
        M::Heartbeat {
            card_ticks: 0,
            state: 0,
        },
        &mut card,
        t(2000),
    );
    assert!(matches!(host2.take()[..], [M::Heartbeat { state: 2, .. }]));
    drop(host);
}

#[test]
fn a_power_cycle_loses_everything_and_says_hello() {
    let mut storage = [StoredEvent::default(); 4];
    let (mut card, mut host) = armed(&mut storage, &[ev(0, 0, 0, 0, 1)]);
    card.reset();
    assert_eq!(card.state(), CardState::Idle);
    assert_eq!(card.events_loaded(), 0);
    let mut bytes = Vec::new();
    card.poll(t(1000), |b| bytes.extend_from_slice(b));
    let mut fresh_hello = false;
    for &b in &bytes {
        if let Some(Ok(f)) = host.dec.push(b) {
            fresh_hello |= f.msg_type == msg_type::HELLO && f.seq == 0;
            assert!(host.link.starts_new_session(&f), "host sees a new session");
        }
    }
    assert!(fresh_hello);
    assert_eq!(card.stats().resets, 1);
}

#[test]
fn config_is_capped_to_storage_and_channels() {
    let mut storage = [StoredEvent::default(); 3];
    let cfg = CardConfig {
        channels: 1000,
        ..config()
    };
    let card: Card<'_, 1> = Card::new(cfg, &mut storage, LinkConfig::default());
    assert_eq!(card.config().max_events, 3);
    assert_eq!(usize::from(card.config().channels), MAX_CHANNELS);
    assert_eq!(card.level(64), None);
}

#[test]
fn garbage_and_random_frames_never_panic() {
    let mut storage = [StoredEvent::default(); 8];
    let mut card: Card<'_, 2> = Card::new(config(), &mut storage, LinkConfig::default());
    let mut x: u64 = 0x1234_5678_9abc_def0;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut now = 0u64;
    for round in 0..3000 {
        let mut payload = [0u8; 64];
        for b in payload.iter_mut() {
            *b = next() as u8;
        }
        let len = (next() % 64) as usize;
        let ty = (next() % 14) as u8;
        let seq = (next() % 4) as u16;
        let frame = Frame::new(ty, seq, next() as u16, &payload[..len]).unwrap();
        let mut wire = [0u8; crate::frame::MAX_ENCODED_FRAME];
        let n = crate::frame::encode_frame(&frame, &mut wire).unwrap();
        if round % 7 == 0 {
            wire[(next() as usize) % n] ^= 0x55;
        }
        card.on_bytes(&wire[..n], t(now));
        card.on_bytes(&payload[..len], t(now));
        now += next() % 50_000;
        card.poll(t(now), |_| {});
        let _ = card.next_wakeup(t(now));
    }
}
