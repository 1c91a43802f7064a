//! Watchdog and misbehaviour over real TCP.

use std::time::{Duration, Instant};

use shotline_cardsim::{CardState, Listen, Misbehaviour, SimEvent};
use shotline_firmware_bridge::card::event_kind::DIGITAL;
use shotline_firmware_bridge::card::SafeCause;
use shotline_firmware_bridge::message::msg_type;
use shotline_firmware_bridge::Message;

use super::host::{self, deadline, ev, play_shot};

fn tcp_any() -> Listen {
    Listen::Tcp("127.0.0.1:0".parse().unwrap())
}

#[test]
fn a_silent_host_makes_the_card_go_safe_by_itself() {
    let sim = host::sim(tcp_any(), |c| c.watchdog_ms = 150);
    let mut h = host::tcp(&sim);
    h.load(&[
        ev(0, 0, DIGITAL, 0, 1),
        ev(10_000_000_000, 0, DIGITAL, 0, 0),
    ]);
    let start = h.card_ticks();
    h.send(Message::Start {
        at_card_ticks: start,
        shots: 1,
    });
    // Output 0 goes high, then the host stops talking.
    let end = deadline(5);
    while sim.outputs_safe() {
        assert!(Instant::now() < end, "shot never started");
        h.turn();
    }
    let end = deadline(5);
    while sim.state() != CardState::Safe {
        assert!(Instant::now() < end, "watchdog never fired");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(sim.outputs_safe());
    assert_eq!(sim.stats().watchdog_expiries, 1);
    let mut events = Vec::new();
    while let Some(e) = sim.next_event(Duration::ZERO) {
        events.push(e);
    }
    assert!(
        events.contains(&SimEvent::Safe {
            cause: SafeCause::Watchdog
        }),
        "{events:?}"
    );
    // The Error 21 reached the host (it is buffered in its socket).
    h.keepalive = false;
    let got = h.until("watchdog error", |m| {
        matches!(m, Message::Error { code: 21, .. })
    });
    assert!(!got.is_empty());
}

#[test]
fn dropped_and_corrupted_frames_are_retransmitted() {
    let sim = host::sim(tcp_any(), |c| {
        c.misbehaviour = Misbehaviour {
            drop_every: 3,
            corrupt_every: 4,
            ..Misbehaviour::default()
        }
    });
    let mut h = host::tcp(&sim);
    let events: Vec<_> = (0..130)
        .map(|i| ev(i * 10_000, (i % 4) as u16, DIGITAL, 0, (i % 2) as i32))
        .collect();
    h.load(&events);
    for shot in 1..=2 {
        let r = play_shot(&mut h);
        assert_eq!(r.applied.len(), 130);
        assert_eq!(r.status.shots_done, shot);
    }
    assert_eq!(sim.stats().shots_done, 2);
}

#[test]
fn delayed_frames_still_arrive_in_order() {
    let sim = host::sim(tcp_any(), |c| {
        c.misbehaviour = Misbehaviour {
            delay_us: 2_000,
            ..Misbehaviour::default()
        }
    });
    let mut h = host::tcp(&sim);
    h.load(&[ev(0, 0, DIGITAL, 0, 1)]);
    assert_eq!(play_shot(&mut h).applied.len(), 1);
}

#[test]
fn a_reset_mid_shot_says_hello_and_loses_the_timeline() {
    let sim = host::sim(tcp_any(), |_| {});
    let mut h = host::tcp(&sim);
    h.load(&[ev(0, 0, DIGITAL, 0, 1), ev(20_000_000, 0, DIGITAL, 0, 0)]);
    let r = play_shot(&mut h);
    assert_eq!(r.status.shots_done, 1);
    sim.set_misbehaviour(Misbehaviour {
        reset_at_shot: Some(sim.stats().shots_done as u32),
        ..Misbehaviour::default()
    });
    let start = h.card_ticks() + 5_000_000;
    h.send(Message::Start {
        at_card_ticks: start,
        shots: 1,
    });
    let got = h.until("hello after reset", |m| m.msg_type() == msg_type::HELLO);
    assert!(h.card_reset_seen, "the host sees a new session");
    assert!(
        !got.iter()
            .any(|m| matches!(m, Message::EventTimestamps { .. })),
        "{got:?}"
    );
    assert_eq!(sim.stats().resets, 1);
    assert!(sim.outputs_safe());
    assert_eq!(sim.stats().events_loaded, 0);
}

#[test]
fn a_silent_card_stops_answering_until_told_otherwise() {
    let sim = host::sim(tcp_any(), |_| {});
    let mut h = host::tcp(&sim);
    h.request(host::hello(), msg_type::HELLO);
    sim.set_misbehaviour(Misbehaviour {
        silent_after_frames: Some(0),
        ..Misbehaviour::default()
    });
    let frames_in = sim.stats().frames_in;
    h.keepalive = false;
    h.send(host::heartbeat());
    let end = Instant::now() + Duration::from_millis(200);
    while Instant::now() < end {
        h.turn();
    }
    assert!(h.inbox.is_empty(), "{:?}", h.inbox);
    assert_eq!(
        sim.stats().frames_in,
        frames_in,
        "a silent card reads nothing"
    );
    sim.set_misbehaviour(Misbehaviour::default());
    // The heartbeat is still in the socket (and retransmitted): the card answers now.
    h.until("heartbeat answer", |m| m.msg_type() == msg_type::HEARTBEAT);
}
