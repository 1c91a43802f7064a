//! `BridgeDevice` against the firmware simulator (`shotline-cardsim`, the reference card) over TCP and
//! a pseudo-terminal: shots with applied times and acquisitions, lossy and corrupting links, a card
//! that stops answering, a card that reboots mid-shot, the safe state.

mod common;

use std::time::{Duration, Instant};

use shotline_cardsim::{CardSim, CardSimConfig, CardState, Listen, Misbehaviour};
use shotline_hal::bridge::{BridgeDevice, BridgeOptions, BridgeRole, Endpoint};
use shotline_hal::device::{Device, DeviceError, Readout, ShotContext};
use shotline_hal::time::monotonic_ns;
use shotline_hal::timeline::{Action, DeviceTimeline, Event};
use shotline_hal::DeviceState;

fn card(listen: Listen, misbehaviour: Misbehaviour) -> CardSim {
    let cfg = CardSimConfig {
        misbehaviour,
        ..CardSimConfig::default()
    };
    CardSim::spawn(cfg, listen).unwrap()
}

fn tcp_card(misbehaviour: Misbehaviour) -> CardSim {
    card(Listen::Tcp("127.0.0.1:0".parse().unwrap()), misbehaviour)
}

fn options(endpoint: Endpoint) -> BridgeOptions {
    let mut o = BridgeOptions::new(endpoint);
    o.heartbeat_ms = 20;
    o.reply_timeout_ms = 3000;
    o.connect_timeout_ms = 5000;
    // Tolerate a card thread starved for half a second on a loaded test machine.
    o.max_retries = 10;
    o
}

fn tcp(card: &CardSim) -> Endpoint {
    Endpoint::Tcp {
        address: card.endpoint(),
    }
}

fn timeline() -> DeviceTimeline {
    DeviceTimeline {
        device: "card".into(),
        events: vec![
            Event {
                t_ns: 0,
                channel: 0,
                action: Action::Digital { high: true },
            },
            Event {
                t_ns: 20_000,
                channel: 1,
                action: Action::Pulse {
                    duration_ns: 10_000,
                    setpoint: 3.0,
                },
            },
            Event {
                t_ns: 25_000,
                channel: 1,
                action: Action::Digital { high: false },
            },
            Event {
                t_ns: 40_000,
                channel: 2,
                action: Action::Acquire { exposure_ns: 5_000 },
            },
            Event {
                t_ns: 60_000,
                channel: 0,
                action: Action::Digital { high: false },
            },
        ],
    }
}

/// A timeline without overlaps (the one above overlaps on channel 1 on purpose for `refused`).
fn good_timeline() -> DeviceTimeline {
    let mut tl = timeline();
    tl.events.remove(2);
    tl
}

/// Waits (bounded) for something the simulator publishes after it answered.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn ctx(shot: u64) -> ShotContext {
    ShotContext {
        seed: 3,
        experiment: 0,
        shot,
    }
}

/// Plays one shot as the shot clock does; returns the result, the readout and the applied times.
fn shot(dev: &mut BridgeDevice, n: u64) -> (Result<(), DeviceError>, Readout, Vec<(u32, u64)>) {
    let tl = good_timeline();
    let c = ctx(n);
    dev.start_shot(&c).unwrap();
    let t0 = monotonic_ns() + 2_000_000;
    dev.trigger(&c, t0).unwrap();
    for (i, e) in tl.events.iter().enumerate() {
        dev.apply(i, e, &c).unwrap();
    }
    let mut readout = Readout::new();
    let r = dev.end_shot(&c, &mut readout);
    let mut times = Vec::new();
    if r.is_ok() {
        dev.applied_times(&c, &mut |e, t| times.push((e, t)))
            .unwrap();
    }
    (r, readout, times)
}

fn plays_shots(card: &CardSim, endpoint: Endpoint) {
    let mut dev = BridgeDevice::new("card", options(endpoint), 2, None).unwrap();
    assert_eq!(dev.program(&good_timeline()), Ok(true));
    assert_eq!(dev.program(&good_timeline()), Ok(false));
    dev.arm().unwrap();
    // The simulator publishes its state right after answering: look until it shows.
    eventually("card armed", || card.state() == CardState::Armed);
    for n in 0..4 {
        let (r, readout, times) = shot(&mut dev, n);
        r.unwrap();
        assert_eq!(
            times.iter().map(|t| t.0).collect::<Vec<_>>(),
            vec![0, 1, 2, 3],
            "shot {n}"
        );
        assert!(times.windows(2).all(|w| w[0].1 <= w[1].1), "{times:?}");
        assert_eq!(readout.len(), 1, "{readout:?}");
        assert_eq!((readout[0].device, readout[0].channel), (2, 2));
    }
    eventually("4 shots on the card", || card.stats().shots_done == 4);
    dev.disarm().unwrap();
    assert_eq!(dev.state(), DeviceState::Manual);
    dev.safe_state().unwrap();
    eventually("card safe", || {
        card.state() == CardState::Safe && card.outputs_safe()
    });
    let st = dev.session().status();
    assert!(st.connected && st.firmware_resets == 0, "{st:?}");
}

#[test]
fn shots_over_tcp_report_applied_times_and_acquisitions() {
    let card = tcp_card(Misbehaviour::default());
    plays_shots(&card, tcp(&card));
}

#[test]
fn shots_over_a_pseudo_terminal() {
    let card = card(Listen::Pty, Misbehaviour::default());
    let endpoint = Endpoint::Serial {
        path: card.endpoint(),
        baud: 115_200,
    };
    plays_shots(&card, endpoint);
}

#[test]
fn dropped_and_corrupted_frames_are_recovered_by_the_link() {
    let card = tcp_card(Misbehaviour {
        drop_every: 7,
        corrupt_every: 5,
        ..Misbehaviour::default()
    });
    let mut dev = BridgeDevice::new("card", options(tcp(&card)), 0, None).unwrap();
    dev.program(&good_timeline()).unwrap();
    dev.arm().unwrap();
    for n in 0..5 {
        let (r, _, times) = shot(&mut dev, n);
        if let Err(e) = &r {
            panic!(
                "{e}\n{:?}\ncard {:?} {:?}",
                dev.session().status(),
                card.state(),
                card.stats()
            );
        }
        assert_eq!(times.len(), 4);
    }
    let st = dev.session().status();
    assert!(
        st.decoder.crc_errors + st.decoder.malformed > 0,
        "corruption was seen: {st:?}"
    );
}

#[test]
fn a_card_that_stops_answering_is_a_fault_not_a_hang() {
    let card = tcp_card(Misbehaviour::default());
    let mut o = options(tcp(&card));
    o.reply_timeout_ms = 500;
    let mut dev = BridgeDevice::new("card", o, 0, None).unwrap();
    dev.program(&good_timeline()).unwrap();
    dev.arm().unwrap();
    card.set_misbehaviour(Misbehaviour {
        silent_after_frames: Some(0),
        ..Misbehaviour::default()
    });
    // Let the card thread see the switch before the shot.
    std::thread::sleep(Duration::from_millis(50));
    let start = Instant::now();
    let (r, _, _) = shot(&mut dev, 0);
    let err = r.unwrap_err().to_string();
    assert!(
        err.contains("did not report shot 0 within 500 ms") || err.contains("link down after"),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(dev.state(), DeviceState::Fault);
    // Safe state: the card does not answer, its watchdog takes over.
    let err = dev.safe_state().unwrap_err().to_string();
    assert!(err.contains("watchdog of 500 ms"), "{err}");
}

#[test]
fn a_card_reboot_mid_shot_is_a_fault_naming_the_reset_and_a_reset_recovers() {
    let card = tcp_card(Misbehaviour {
        reset_at_shot: Some(1),
        ..Misbehaviour::default()
    });
    let mut dev = BridgeDevice::new("card", options(tcp(&card)), 0, None).unwrap();
    dev.program(&good_timeline()).unwrap();
    dev.arm().unwrap();
    shot(&mut dev, 0).0.unwrap();
    let err = shot(&mut dev, 1).0.unwrap_err().to_string();
    assert!(
        err.contains("card reset (firmware restarted) during shot 1"),
        "{err}"
    );
    assert_eq!(dev.state(), DeviceState::Fault);
    assert_eq!(dev.session().status().firmware_resets, 1);
    card.set_misbehaviour(Misbehaviour::default());
    dev.reset().unwrap();
    // The card lost its timeline: programming uploads it again.
    assert_eq!(dev.program(&good_timeline()), Ok(true));
    dev.arm().unwrap();
    shot(&mut dev, 0).0.unwrap();
}

#[test]
fn the_card_refuses_what_it_cannot_store_and_the_device_says_why() {
    let cfg = CardSimConfig {
        max_events: 3,
        ..CardSimConfig::default()
    };
    let card = CardSim::spawn(cfg, Listen::Tcp("127.0.0.1:0".parse().unwrap())).unwrap();
    let mut o = options(tcp(&card));
    o.role = BridgeRole::Ttl;
    let mut dev = BridgeDevice::new("card", o, 0, None).unwrap();
    let err = dev.program(&good_timeline()).unwrap_err().to_string();
    assert!(
        err.contains("4 events") && err.contains("capacity of 3"),
        "{err}"
    );
    let err = dev.program(&timeline()).unwrap_err().to_string();
    assert!(err.contains("overlaps"), "{err}");
    assert_eq!(dev.state(), DeviceState::Manual);
}

#[test]
fn the_clock_estimate_follows_a_drifting_card() {
    let card = tcp_card(Misbehaviour {
        drift_ppm: 300.0,
        ..Misbehaviour::default()
    });
    let mut o = options(tcp(&card));
    o.heartbeat_ms = 10;
    let dev = BridgeDevice::new("card", o, 0, None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while dev.session().status().clock_samples < 64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let drift = dev.session().status().drift_ppm;
    assert!((drift - 300.0).abs() < 200.0, "fitted drift {drift} ppm");
}

#[test]
fn the_shot_clock_drives_a_card_and_reports_its_lateness() {
    use shotline_hal::device::handle;
    use shotline_hal::shot_clock::{self, RunOutcome};
    use shotline_hal::time::MonotonicTimer;
    use shotline_hal::{ClockConfig, ExperimentRun};

    let card = tcp_card(Misbehaviour::default());
    let dev = BridgeDevice::new("card", options(tcp(&card)), 0, None).unwrap();
    let dev = handle(Box::new(dev));
    let tl = good_timeline();
    assert_eq!(dev.lock().program(&tl), Ok(true));
    let config = ClockConfig {
        // Time for the Start to reach the card before the shot begins.
        lead_ns: 20_000_000,
        slack_ns: u64::MAX / 4,
        ..ClockConfig::default()
    };
    let (mut control, mut outputs) =
        shot_clock::spawn("card", config, Box::new(MonotonicTimer::new(50_000))).unwrap();
    control
        .start(ExperimentRun {
            run_id: 1,
            experiment: 0,
            shots: 5,
            seed: 1,
            devices: vec![dev.clone()],
            timelines: vec![tl],
        })
        .unwrap();
    let common::Collected {
        shots,
        events,
        summary,
    } = common::collect_run(&mut outputs, Duration::from_secs(60));
    control.shutdown();
    assert_eq!(summary.outcome, RunOutcome::Completed, "{summary:?}");
    assert_eq!(summary.shots_done, 5);
    // Every event of every shot has a lateness from the card's own time stamps.
    assert_eq!(events.len(), 5 * 4);
    assert!(shots
        .iter()
        .all(|s| s.readout.len() == 1 && s.readout[0].channel == 2));
    eventually("5 shots on the card", || card.stats().shots_done == 5);
}
