//! A whole shot over TCP and over a pseudo-terminal.

use shotline_cardsim::{CardState, Listen};
use shotline_firmware_bridge::card::event_kind::{ACQUIRE, DIGITAL, PULSE};

use super::host::{self, ev, play_shot, Host};

/// Output 0 high at 0, a 1 ms pulse of 9 on output 1 at 1 ms, 10 samples of each over 2 ms, then
/// output 0 low at 3 ms.
fn timeline() -> Vec<shotline_firmware_bridge::WireEvent> {
    vec![
        ev(0, 0, DIGITAL, 0, 1),
        ev(500_000, 0, ACQUIRE, 2_000_000, 10),
        ev(500_000, 1, ACQUIRE, 2_000_000, 4),
        ev(1_000_000, 1, PULSE, 1_000_000, 9),
        ev(3_000_000, 0, DIGITAL, 0, 0),
    ]
}

fn check_shot(host: &mut Host) {
    let events = timeline();
    host.load(&events);
    let r = play_shot(host);
    assert_eq!(r.applied.len(), events.len());
    for (a, e) in r.applied.iter().zip(&events) {
        assert!(*a >= r.start + e.t_ticks, "applied {a} before scheduled");
    }
    assert!(r.applied.windows(2).all(|w| w[0] <= w[1]));
    // Output 0 is high during its acquisition (0.5 .. 2.5 ms).
    assert_eq!(r.samples[0], (0, 0, vec![1; 10]));
    // Output 1: sample k at acquire start + k · 0.5 ms sees the 1 ms pulse of 9 when it falls
    // within the pulse as the card really applied it (the stamps carry the card's lateness).
    let (ch, off, s) = &r.samples[1];
    assert_eq!((*ch, *off, s.len()), (1, 0, 4));
    let (acq, pulse) = (r.applied[2], r.applied[3]);
    let expected: Vec<i32> = (0..4u64)
        .map(|k| acq + k * 500_000)
        .map(|t| {
            if (pulse..pulse + 1_000_000).contains(&t) {
                9
            } else {
                0
            }
        })
        .collect();
    assert_eq!(s, &expected);
    assert!(
        expected.contains(&9) || pulse > r.start + 1_400_000,
        "pulse never sampled"
    );
    assert_eq!((r.status.state, r.status.shots_done), (2, 1));
}

#[test]
fn a_shot_over_tcp_returns_timestamps_samples_and_status() {
    let sim = host::sim(Listen::Tcp("127.0.0.1:0".parse().unwrap()), |_| {});
    let mut h = host::tcp(&sim);
    check_shot(&mut h);
    assert_eq!(sim.state(), CardState::Armed);
    let st = sim.stats();
    assert_eq!(
        (st.shots_done, st.connections, st.timelines_armed),
        (1, 1, 1)
    );
    assert_eq!(st.events_loaded, 5);
    // A second connection replaces the first; the card keeps its timeline.
    let mut h2 = host::tcp(&sim);
    let r = play_shot(&mut h2);
    assert_eq!(r.status.shots_done, 2);
    assert_eq!(sim.stats().connections, 2);
    drop(h);
    sim.stop();
}

#[test]
fn a_shot_over_a_pty_returns_timestamps_samples_and_status() {
    let sim = host::sim(Listen::Pty, |_| {});
    {
        let mut h = host::pty(&sim);
        check_shot(&mut h);
    }
    // The host closes and reopens the serial line: a new session (Hello with seq 0), timeline kept.
    let mut h = host::pty(&sim);
    let got = h.request(
        host::hello(),
        shotline_firmware_bridge::message::msg_type::HELLO,
    );
    assert!(matches!(
        got.last(),
        Some(shotline_firmware_bridge::Message::Hello { card_id: 77, .. })
    ));
    let r = play_shot(&mut h);
    assert_eq!(r.status.shots_done, 2);
    assert_eq!(sim.state(), CardState::Armed);
}
