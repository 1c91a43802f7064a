//! Integration tests of the shot path: simulated singlequdit devices played by the shot clock.
//!
//! Every test but the abort test uses a `SimulatedTimer`, so time is deterministic: the clock jumps to each
//! deadline plus the lateness injected on chosen waits. Waits are numbered over the timer's life, one per
//! event: with the standard shot (MOT load, two RF pulses, camera) wait `4 * shot + position`.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use shotline_hal::device::{handle, DeviceError, DeviceHandle, ReadoutValue};
use shotline_hal::shot_clock::{
    self, ClockError, ClockReport, EventRecord, RunOutcome, RunSummary, ShotRecord,
};
use shotline_hal::sim::{Coupling, SimDevice, SimDriver, SimWorld};
use shotline_hal::time::{MonotonicTimer, Nanos, ShotTimer, SimulatedTimer};
use shotline_hal::timeline::{round_to_period, TimelineError};
use shotline_hal::{
    Action, ClockConfig, ClockControl, ClockOutputs, Device, DeviceInfo, DeviceState,
    DeviceTimeline, Event, ExperimentRun, Readout, ShotContext, UnderflowPolicy,
};

const PERIOD_NS: Nanos = 10;
/// Rabi rate of the RF drive; not a divisor of 1 s, so pulse durations must be rounded to the period.
const RF_RATE_HZ: f64 = 333_333.0;
const MOT_INDEX: u16 = 0;
const RF_INDEX: u16 = 1;
const CAMERA_INDEX: u16 = 2;
/// Start of the first RF pulse; further pulses follow every 100 µs.
const RF_START_NS: Nanos = 200_000;
const CAMERA_AT_NS: Nanos = 1_000_000;
const EXPOSURE_NS: Nanos = 20_000;
/// Events of the standard shot (load, two RF pulses, image).
const EVENTS_PER_SHOT: u64 = 4;
const START_NS: Nanos = 1_000_000;
const SLACK_NS: Nanos = 5_000;
const LEAD_NS: Nanos = 10_000;
/// Liveness guard only: a report that does not come within this is a hang, not a slow machine.
const HANG_GUARD: Duration = Duration::from_secs(30);

/// RF pulse duration for rlx(`turns` · 2π), rounded to the device period.
fn rf_duration(turns: f64) -> Nanos {
    round_to_period(turns / RF_RATE_HZ * 1e9, PERIOD_NS).unwrap()
}

fn pulse(t_ns: Nanos, duration_ns: Nanos, setpoint: f64) -> Event {
    Event {
        t_ns,
        channel: 0,
        action: Action::Pulse {
            duration_ns,
            setpoint,
        },
    }
}

fn acquire(t_ns: Nanos) -> Event {
    Event {
        t_ns,
        channel: 0,
        action: Action::Acquire {
            exposure_ns: EXPOSURE_NS,
        },
    }
}

fn timeline(device: &str, events: Vec<Event>) -> DeviceTimeline {
    DeviceTimeline {
        device: device.into(),
        events,
    }
}

/// The singlequdit shot: load `n_atoms`, one RF pulse per entry of `rf_durations` (100 µs apart), image.
fn qudit_timelines(n_atoms: u32, rf_durations: &[Nanos]) -> Vec<DeviceTimeline> {
    let rf = rf_durations
        .iter()
        .enumerate()
        .map(|(i, d)| pulse(RF_START_NS + 100_000 * i as Nanos, *d, 1.0))
        .collect();
    vec![
        timeline("mot", vec![pulse(0, 100_000, f64::from(n_atoms))]),
        timeline("rf", rf),
        timeline("camera", vec![acquire(CAMERA_AT_NS)]),
    ]
}

/// The MOT, RF and camera devices on one world, not programmed.
fn sim_devices(max_atoms: u32) -> (SimWorld, Vec<DeviceHandle>) {
    let world = SimWorld::new(max_atoms);
    let specs = [
        ("mot", SimDriver::Ttl, MOT_INDEX, Coupling::Load),
        (
            "rf",
            SimDriver::Dds,
            RF_INDEX,
            Coupling::RotateX {
                rate_hz: RF_RATE_HZ,
            },
        ),
        ("camera", SimDriver::Camera, CAMERA_INDEX, Coupling::Image),
    ];
    let devices = specs
        .iter()
        .map(|(name, driver, index, coupling)| {
            handle(Box::new(SimDevice::new(
                name, *driver, PERIOD_NS, *index, &world, *coupling,
            )))
        })
        .collect();
    (world, devices)
}

/// Programmed devices and their timelines.
struct Rig {
    world: SimWorld,
    devices: Vec<DeviceHandle>,
    timelines: Vec<DeviceTimeline>,
}

fn rig(n_atoms: u32, rf_durations: &[Nanos]) -> Rig {
    let (world, devices) = sim_devices(64);
    let timelines = qudit_timelines(n_atoms, rf_durations);
    for (d, tl) in devices.iter().zip(&timelines) {
        assert_eq!(d.lock().program(tl), Ok(true));
    }
    Rig {
        world,
        devices,
        timelines,
    }
}

/// The standard shot of the timing tests: 5 atoms, rlx(π/2) as two pulses.
fn timing_rig() -> Rig {
    rig(5, &[rf_duration(0.125), rf_duration(0.125)])
}

impl Rig {
    /// A run of the rig's experiment. Like the runtime, every run programs the devices first (an identical
    /// program is not uploaded again; after a run the devices are back in manual).
    fn run(&self, run_id: u64, shots: u64, seed: u64) -> ExperimentRun {
        for (d, tl) in self.devices.iter().zip(&self.timelines) {
            d.lock().program(tl).unwrap();
        }
        ExperimentRun {
            run_id,
            experiment: 0,
            shots,
            seed,
            devices: self.devices.clone(),
            timelines: self.timelines.clone(),
        }
    }
}

fn config() -> ClockConfig {
    ClockConfig {
        lead_ns: LEAD_NS,
        cycle_ns: 0,
        slack_ns: SLACK_NS,
        underflow_policy: UnderflowPolicy::Record,
        ..ClockConfig::default()
    }
}

fn clock(config: ClockConfig, timer: impl ShotTimer + 'static) -> (ClockControl, ClockOutputs) {
    shot_clock::spawn("test", config, Box::new(timer)).unwrap()
}

/// Everything one run reported.
struct Played {
    shots: Vec<ShotRecord>,
    events: Vec<EventRecord>,
    summary: RunSummary,
}

/// Drains both rings until the run's summary arrives.
fn collect(outputs: &mut ClockOutputs) -> Played {
    let guard = Instant::now() + HANG_GUARD;
    let mut shots = Vec::new();
    let mut events = Vec::new();
    let summary = loop {
        while let Ok(e) = outputs.events.pop() {
            events.push(e);
        }
        match outputs.reports.pop() {
            Ok(ClockReport::Shot(s)) => shots.push(s),
            Ok(ClockReport::Done(summary)) => break summary,
            Err(_) => {
                assert!(
                    Instant::now() < guard,
                    "the shot clock hung: no Done report"
                );
                std::thread::yield_now();
            }
        }
    };
    // Events are pushed before the summary, so they are all visible now.
    while let Ok(e) = outputs.events.pop() {
        events.push(e);
    }
    Played {
        shots,
        events,
        summary,
    }
}

/// Plays one run on a fresh clock.
fn play(rig: &Rig, config: ClockConfig, timer: SimulatedTimer, shots: u64, seed: u64) -> Played {
    let (mut control, mut outputs) = clock(config, timer);
    control.start(rig.run(1, shots, seed)).unwrap();
    let played = collect(&mut outputs);
    control.shutdown();
    played
}

fn measured(shots: &[ShotRecord]) -> Vec<i64> {
    shots
        .iter()
        .map(|s| {
            assert_eq!(s.readout.len(), 1, "shot {}: {:?}", s.shot, s.readout);
            let v = s.readout[0];
            assert_eq!((v.device, v.channel), (CAMERA_INDEX, 0));
            v.value
        })
        .collect()
}

/// (shot, device, event, lateness) of every event record with a non-zero lateness.
fn late_events(events: &[EventRecord]) -> Vec<(u64, u16, u32, i64)> {
    events
        .iter()
        .filter(|e| e.lateness_ns != 0)
        .map(|e| (e.shot, e.device, e.event, e.lateness_ns))
        .collect()
}

/// Index of the timer wait of event `position` of `shot`: every shot waits once per event and once more
/// for the end of its last pulse or exposure.
fn wait_index(shot: u64, position: u64) -> u64 {
    (EVENTS_PER_SHOT + 1) * shot + position
}

// ---------------------------------------------------------------------------------------------------------
// Deterministic physics
// ---------------------------------------------------------------------------------------------------------

#[test]
fn rlx_pi_on_seven_atoms_measures_seven_on_every_shot() {
    let rig = rig(7, &[rf_duration(0.5)]);
    let played = play(&rig, config(), SimulatedTimer::new(START_NS), 20, 3);
    assert_eq!(played.summary.outcome, RunOutcome::Completed);
    assert_eq!(played.summary.shots_done, 20);
    assert_eq!(played.shots.len(), 20);
    assert_eq!(
        played.shots[0].readout.as_slice(),
        &[ReadoutValue {
            device: CAMERA_INDEX,
            channel: 0,
            value: 7
        }]
    );
    assert_eq!(measured(&played.shots), vec![7; 20]);
    let p = rig.world.prepared_probabilities().unwrap();
    assert_eq!(p.len(), 8);
    assert!(p[7] > 0.999_999, "P(k=7) = {}", p[7]);
}

#[test]
fn same_seed_same_readouts_and_different_seeds_differ() {
    let rig = rig(50, &[rf_duration(0.25)]);
    let (mut control, mut outputs) = clock(config(), SimulatedTimer::new(START_NS));
    let mut readouts = Vec::new();
    for (run_id, seed) in [(1, 7), (2, 7), (3, 8)] {
        control.start(rig.run(run_id, 40, seed)).unwrap();
        let played = collect(&mut outputs);
        assert_eq!(played.summary.outcome, RunOutcome::Completed);
        assert_eq!(played.summary.run_id, run_id);
        assert!(played.shots.iter().all(|s| s.run_id == run_id));
        readouts.push(measured(&played.shots));
    }
    control.shutdown();
    assert_eq!(readouts[0].len(), 40);
    assert_eq!(readouts[0], readouts[1], "same seed, different readouts");
    assert_ne!(readouts[0], readouts[2], "different seeds, same readouts");
    for values in &readouts {
        assert!(values.iter().all(|k| (0..=50).contains(k)), "{values:?}");
        // rlx(π/2) on 50 atoms is binomial(50, 1/2): the readouts vary from shot to shot.
        assert!(values.iter().any(|k| *k != values[0]), "{values:?}");
        let mean = values.iter().sum::<i64>() as f64 / values.len() as f64;
        assert!((15.0..=35.0).contains(&mean), "mean {mean} of {values:?}");
    }
}

// ---------------------------------------------------------------------------------------------------------
// Lateness and underflows
// ---------------------------------------------------------------------------------------------------------

#[test]
fn record_policy_counts_every_injected_underflow_and_completes() {
    let rig = timing_rig();
    // (shot, position in the shot, lateness); the last one is below the slack.
    let injected: [(u64, u64, u64); 5] = [
        (0, 1, 20_000),
        (1, 2, 30_000),
        (2, 3, 7_000),
        (3, 0, 5_001),
        (4, 1, 3_000),
    ];
    let mut timer = SimulatedTimer::new(START_NS);
    for (shot, pos, late) in injected {
        timer = timer.inject_lateness(wait_index(shot, pos), late);
    }
    let played = play(&rig, config(), timer, 6, 1);

    assert_eq!(played.summary.outcome, RunOutcome::Completed);
    assert_eq!(played.summary.shots_done, 6);
    assert_eq!(played.shots.len(), 6);
    assert_eq!(played.summary.underflows, 4);
    assert_eq!(played.summary.event_overflows, 0);
    assert_eq!(played.events.len() as u64, 6 * EVENTS_PER_SHOT);
    // Position in the shot -> (device, event): mot 0, rf 0, rf 1, camera 0.
    let at = [
        (MOT_INDEX, 0),
        (RF_INDEX, 0),
        (RF_INDEX, 1),
        (CAMERA_INDEX, 0),
    ];
    let expected: Vec<_> = injected
        .iter()
        .map(|&(shot, pos, late)| {
            let (device, event) = at[pos as usize];
            (shot, device, event, late as i64)
        })
        .collect();
    assert_eq!(late_events(&played.events), expected);
    let per_shot: Vec<_> = played
        .shots
        .iter()
        .map(|s| (s.underflows, s.max_lateness_ns))
        .collect();
    assert_eq!(
        per_shot,
        vec![
            (1, 20_000),
            (1, 30_000),
            (1, 7_000),
            (1, 5_001),
            (0, 3_000),
            (0, 0)
        ]
    );
    // Timing never changes the physics: a late shot still reads out.
    assert!(played.shots.iter().all(|s| s.readout.len() == 1));
}

#[test]
fn lateness_up_to_the_slack_is_recorded_but_is_no_underflow() {
    let rig = timing_rig();
    let timer = SimulatedTimer::new(START_NS)
        .inject_lateness(wait_index(0, 2), 1)
        .inject_lateness(wait_index(1, 1), 4_999)
        .inject_lateness(wait_index(2, 3), SLACK_NS);
    let played = play(&rig, config(), timer, 3, 1);
    assert_eq!(played.summary.outcome, RunOutcome::Completed);
    assert_eq!(played.summary.underflows, 0);
    assert!(played.shots.iter().all(|s| s.underflows == 0));
    assert_eq!(
        late_events(&played.events),
        vec![
            (0, RF_INDEX, 1, 1),
            (1, RF_INDEX, 0, 4_999),
            (2, CAMERA_INDEX, 0, SLACK_NS as i64)
        ]
    );
    let max: Vec<_> = played.shots.iter().map(|s| s.max_lateness_ns).collect();
    assert_eq!(max, vec![1, 4_999, SLACK_NS as i64]);
}

#[test]
fn fail_policy_stops_at_the_first_underflow_and_names_it() {
    let rig = timing_rig();
    let timer = SimulatedTimer::new(START_NS)
        .inject_lateness(wait_index(0, 1), 2_000) // below the slack: no failure
        .inject_lateness(wait_index(1, 2), 20_000) // shot 1, rf event 1: the failure
        .inject_lateness(wait_index(2, 1), 40_000); // never reached
    let cfg = ClockConfig {
        underflow_policy: UnderflowPolicy::Fail,
        ..config()
    };
    let played = play(&rig, cfg, timer, 10, 1);
    assert_eq!(
        played.summary.outcome,
        RunOutcome::Underflow {
            shot: 1,
            device: RF_INDEX,
            device_name: "rf".into(),
            event: 1,
            lateness_ns: 20_000,
            slack_ns: SLACK_NS,
        }
    );
    assert_eq!(played.summary.shots_done, 1);
    assert_eq!(played.summary.underflows, 1);
    let shots: Vec<_> = played.shots.iter().map(|s| s.shot).collect();
    assert_eq!(shots, vec![0], "only the completed shot is reported");
    // The failing event was applied and recorded; nothing after it was.
    let last = played.events.last().unwrap();
    assert_eq!(
        (last.shot, last.device, last.event, last.lateness_ns),
        (1, RF_INDEX, 1, 20_000)
    );
    assert_eq!(played.events.len() as u64, EVENTS_PER_SHOT + 3);
}

// ---------------------------------------------------------------------------------------------------------
// Cycle time
// ---------------------------------------------------------------------------------------------------------

#[test]
fn shots_start_exactly_on_the_cycle_grid() {
    let rig = timing_rig();
    let cycle = 2_000_000;
    let cfg = ClockConfig {
        cycle_ns: cycle,
        ..config()
    };
    let played = play(&rig, cfg, SimulatedTimer::new(START_NS), 8, 1);
    assert_eq!(played.summary.outcome, RunOutcome::Completed);
    assert_eq!(played.summary.underflows, 0);
    let first = played.shots[0].t0_ns;
    assert_eq!(first, START_NS + LEAD_NS);
    for (k, s) in played.shots.iter().enumerate() {
        assert_eq!(s.t0_ns, first + k as Nanos * cycle, "shot {k}");
        assert_eq!(s.overrun_ns, 0);
        assert_eq!(s.end_ns, s.t0_ns + CAMERA_AT_NS + EXPOSURE_NS);
    }
}

/// Cycle just long enough for the shot plus the lead; a 45 µs late camera in shot 2 (within the 50 µs
/// slack) pushes shot 3 5 µs past its slot. `spin`: the shot is spun through (the default for a shot this
/// short), which in cycle mode adds one wait per shot after the first (a sleep until its slot's lead
/// begins); otherwise every event is slept for (`spin_shots_up_to_ns: 0`).
fn overrun_setup(policy: UnderflowPolicy, spin: bool) -> (Nanos, Played) {
    let rig = timing_rig();
    let cycle = CAMERA_AT_NS + LEAD_NS + 40_000;
    let cfg = ClockConfig {
        cycle_ns: cycle,
        slack_ns: 50_000,
        underflow_policy: policy,
        spin_shots_up_to_ns: if spin { cycle } else { 0 },
        ..config()
    };
    let camera_of_shot_2 = wait_index(2, 3) + if spin { 2 } else { 0 };
    let timer = SimulatedTimer::new(START_NS).inject_lateness(camera_of_shot_2, 45_000);
    (cycle, play(&rig, cfg, timer, 6, 1))
}

#[test]
fn a_shot_that_misses_its_slot_is_reported_as_an_overrun() {
    for spin in [false, true] {
        a_shot_that_misses_its_slot_is_reported_as_an_overrun_when(spin);
    }
}

fn a_shot_that_misses_its_slot_is_reported_as_an_overrun_when(spin: bool) {
    let (cycle, played) = overrun_setup(UnderflowPolicy::Record, spin);
    assert_eq!(played.summary.outcome, RunOutcome::Completed);
    assert_eq!(played.summary.shots_done, 6);
    assert_eq!(played.summary.underflows, 1);
    let overruns: Vec<_> = played.shots.iter().map(|s| s.overrun_ns).collect();
    assert_eq!(overruns, vec![0, 0, 0, 5_000, 0, 0]);
    assert_eq!(played.shots[3].underflows, 1);
    let first = played.shots[0].t0_ns;
    assert_eq!(played.shots[3].t0_ns, first + 3 * cycle + 5_000);
    // The clock goes back to its grid as soon as it can.
    assert_eq!(played.shots[4].t0_ns, first + 4 * cycle);
    assert_eq!(played.shots[5].t0_ns, first + 5 * cycle);
}

#[test]
fn fail_policy_stops_at_the_first_overrun() {
    for spin in [false, true] {
        fail_policy_stops_at_the_first_overrun_when(spin);
    }
}

fn fail_policy_stops_at_the_first_overrun_when(spin: bool) {
    let (_, played) = overrun_setup(UnderflowPolicy::Fail, spin);
    assert_eq!(
        played.summary.outcome,
        RunOutcome::Overrun {
            shot: 3,
            overrun_ns: 5_000
        }
    );
    assert_eq!(played.summary.shots_done, 3);
    assert_eq!(played.shots.len(), 3);
    assert_eq!(played.events.len() as u64, 3 * EVENTS_PER_SHOT);
}

#[test]

fn back_to_back_shots_do_not_start_before_the_previous_shot_ended() {
    let rig = timing_rig();
    let shot_length = rig.timelines.iter().map(|t| t.end_ns()).max().unwrap();
    assert_eq!(shot_length, CAMERA_AT_NS + EXPOSURE_NS);
    let played = play(&rig, config(), SimulatedTimer::new(START_NS), 3, 1);
    for pair in played.shots.windows(2) {
        assert!(
            pair[1].t0_ns >= pair[0].t0_ns + shot_length,
            "shot {} starts at {} while shot {} runs until {} (its camera exposes until then)",
            pair[1].shot,
            pair[1].t0_ns,
            pair[0].shot,
            pair[0].t0_ns + shot_length
        );
    }
}

#[test]

fn a_timeline_longer_than_the_cycle_is_an_overrun() {
    let rig = timing_rig();
    // The camera is applied at 1 ms and exposes until 1.02 ms; the cycle is 1.015 ms.
    let cfg = ClockConfig {
        cycle_ns: CAMERA_AT_NS + 15_000,
        lead_ns: 1_000,
        ..config()
    };
    let played = play(&rig, cfg, SimulatedTimer::new(START_NS), 3, 1);
    assert!(
        played.summary.underflows > 0 || played.shots.iter().any(|s| s.overrun_ns > 0),
        "shots start every {} ns although each lasts {} ns, and nothing is reported",
        CAMERA_AT_NS + 15_000,
        CAMERA_AT_NS + EXPOSURE_NS
    );
}

// ---------------------------------------------------------------------------------------------------------
// Abort, shutdown
// ---------------------------------------------------------------------------------------------------------

/// Pops reports until the first shot record arrives (pushed into `shots`), draining events meanwhile.
fn wait_for_first_shot(outputs: &mut ClockOutputs, shots: &mut Vec<ShotRecord>) {
    let guard = Instant::now() + HANG_GUARD;
    while shots.is_empty() {
        while outputs.events.pop().is_ok() {}
        match outputs.reports.pop() {
            Ok(ClockReport::Shot(s)) => shots.push(s),
            Ok(ClockReport::Done(s)) => panic!("run ended before abort: {s:?}"),
            Err(_) => {
                assert!(Instant::now() < guard, "no shot was played");
                std::thread::yield_now();
            }
        }
    }
}

#[test]
fn abort_ends_a_long_real_time_run_at_a_shot_boundary() {
    let rig = timing_rig();
    let cfg = ClockConfig {
        lead_ns: 20_000,
        // Lateness on a busy machine is irrelevant here.
        slack_ns: 1_000_000_000,
        ..config()
    };
    let (mut control, mut outputs) = clock(cfg, MonotonicTimer::new(50_000));
    let shots_requested = 1_000_000;
    control.start(rig.run(9, shots_requested, 1)).unwrap();
    let mut shots = Vec::new();
    wait_for_first_shot(&mut outputs, &mut shots);
    control.abort();
    let mut rest = collect(&mut outputs);
    control.shutdown();
    shots.append(&mut rest.shots);

    let summary = rest.summary;
    assert_eq!(summary.outcome, RunOutcome::Aborted);
    assert!(summary.shots_done >= 1 && summary.shots_done < shots_requested);
    assert_eq!(summary.shot_overflows, 0);
    assert_eq!(shots.len() as u64, summary.shots_done);
    let indices: Vec<u64> = shots.iter().map(|s| s.shot).collect();
    assert_eq!(indices, (0..summary.shots_done).collect::<Vec<_>>());
    // Every played shot is whole: all its events, and a readout.
    assert!(shots
        .iter()
        .all(|s| s.events as u64 == EVENTS_PER_SHOT && s.readout.len() == 1));
}

#[test]
fn shutdown_returns_while_idle_and_refuses_later_runs() {
    let rig = timing_rig();
    let (mut control, _outputs) = clock(config(), SimulatedTimer::new(START_NS));
    control.shutdown();
    assert_eq!(
        control.start(rig.run(1, 1, 1)),
        Err(ClockError::Stopped("test".into()))
    );
    // A second shutdown (and the drop) is harmless.
    control.shutdown();
}

#[test]
fn shutdown_while_running_aborts_at_the_next_shot_boundary() {
    let rig = timing_rig();
    let cfg = ClockConfig {
        slack_ns: 1_000_000_000,
        ..config()
    };
    // The real clock keeps the run slow (about 1 ms a shot) so the rings cannot fill before shutdown.
    let (mut control, mut outputs) = clock(cfg, MonotonicTimer::new(50_000));
    control.start(rig.run(1, 1_000_000, 1)).unwrap();
    let mut shots = Vec::new();
    wait_for_first_shot(&mut outputs, &mut shots);
    control.shutdown();
    // The thread is gone; its final summary is in the ring.
    let mut rest = collect(&mut outputs);
    shots.append(&mut rest.shots);
    assert_eq!(rest.summary.outcome, RunOutcome::Aborted);
    assert_eq!(shots.len() as u64, rest.summary.shots_done);
    assert!(matches!(
        control.start(rig.run(2, 1, 1)),
        Err(ClockError::Stopped(_))
    ));
    // The device locks were released.
    assert!(rig.devices.iter().all(|d| d.try_lock().is_some()));
}

#[test]

fn shutdown_returns_even_if_nobody_drains_the_reports() {
    let rig = timing_rig();
    let cfg = ClockConfig {
        shot_ring: 4,
        ..config()
    };
    let (mut control, outputs) = clock(cfg, SimulatedTimer::new(START_NS));
    control.start(rig.run(1, 1_000_000, 1)).unwrap();
    let guard = Instant::now() + HANG_GUARD;
    while outputs.reports.slots() < 4 {
        assert!(Instant::now() < guard, "no shot was played");
        std::thread::yield_now();
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        control.shutdown();
        let _ = tx.send(());
    });
    // Liveness only: shutdown is stuck for good in the final-summary retry loop when it fails.
    let returned = rx.recv_timeout(Duration::from_secs(10)).is_ok();
    drop(outputs);
    assert!(
        returned,
        "shutdown hung: the clock retries the final summary forever"
    );
}

// ---------------------------------------------------------------------------------------------------------
// Device faults and timeline validation
// ---------------------------------------------------------------------------------------------------------

#[test]
fn a_camera_cannot_be_programmed_with_a_pulse() {
    let (_world, devices) = sim_devices(8);
    let camera = &devices[CAMERA_INDEX as usize];
    let err = camera
        .lock()
        .program(&timeline("camera", vec![pulse(0, 100, 1.0)]))
        .unwrap_err();
    match &err {
        DeviceError::Fault { device, reason } => {
            assert_eq!(device, "camera");
            assert!(reason.contains("sim_camera"), "{reason}");
        }
        other => panic!("expected a fault, got {other:?}"),
    }
    // Nothing was programmed: the camera cannot be armed.
    assert!(matches!(
        camera.lock().arm(),
        Err(DeviceError::WrongState {
            operation: "arm",
            ..
        })
    ));
}

#[test]
fn an_unprogrammed_device_fails_the_run_while_arming() {
    let (_world, devices) = sim_devices(8);
    let timelines = qudit_timelines(3, &[rf_duration(0.5)]);
    for i in [MOT_INDEX, CAMERA_INDEX] {
        devices[i as usize]
            .lock()
            .program(&timelines[i as usize])
            .unwrap();
    }
    let (mut control, mut outputs) = clock(config(), SimulatedTimer::new(START_NS));
    control
        .start(ExperimentRun {
            run_id: 5,
            experiment: 0,
            shots: 10,
            seed: 1,
            devices: devices.clone(),
            timelines,
        })
        .unwrap();
    let played = collect(&mut outputs);
    control.shutdown();
    assert_eq!(
        played.summary.outcome,
        RunOutcome::DeviceFault {
            shot: None,
            device_name: "rf".into(),
            error: DeviceError::WrongState {
                device: "rf".into(),
                operation: "arm",
                state: "manual",
            },
        }
    );
    assert_eq!(played.summary.shots_done, 0);
    assert!(played.shots.is_empty() && played.events.is_empty());
    assert!(devices.iter().all(|d| d.try_lock().is_some()));
}

#[test]
fn timeline_errors_surface_through_program() {
    let (_world, devices) = sim_devices(8);
    let rf = &devices[RF_INDEX as usize];
    let overlap = timeline("rf", vec![pulse(0, 1_000, 1.0), pulse(500, 1_000, 1.0)]);
    assert_eq!(
        rf.lock().program(&overlap),
        Err(DeviceError::Timeline(TimelineError::Overlap {
            device: "rf".into(),
            index: 1,
            channel: 0,
            t_ns: 500,
            busy_until_ns: 1_000,
        }))
    );
    let misaligned_time = timeline("rf", vec![pulse(15, 100, 1.0)]);
    assert_eq!(
        rf.lock().program(&misaligned_time),
        Err(DeviceError::Timeline(TimelineError::Misaligned {
            device: "rf".into(),
            index: 0,
            what: "time",
            value: 15,
            period_ns: PERIOD_NS,
        }))
    );
    let misaligned_duration = timeline("rf", vec![pulse(0, 100, 1.0), pulse(200, 105, 1.0)]);
    assert!(matches!(
        rf.lock().program(&misaligned_duration),
        Err(DeviceError::Timeline(TimelineError::Misaligned {
            index: 1,
            what: "duration",
            value: 105,
            ..
        }))
    ));
    let err = rf.lock().program(&overlap).unwrap_err().to_string();
    assert!(
        err.contains("rf") && err.contains("overlaps") && err.contains("1000"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------------------
// Output ring overflow
// ---------------------------------------------------------------------------------------------------------

#[test]
fn a_full_shot_ring_drops_and_counts_records_without_blocking_the_clock() {
    let rig = timing_rig();
    let cfg = ClockConfig {
        shot_ring: 4,
        ..config()
    };
    let (mut control, mut outputs) = clock(cfg, SimulatedTimer::new(START_NS));
    control.start(rig.run(1, 100, 1)).unwrap();
    // Without touching the reports, wait until every event of the 100 shots was pushed: the clock played
    // all shots although nobody drained its full report ring.
    let guard = Instant::now() + HANG_GUARD;
    while outputs.events.slots() < (100 * EVENTS_PER_SHOT) as usize {
        assert!(Instant::now() < guard, "the clock blocked on a full ring");
        std::thread::yield_now();
    }
    assert_eq!(outputs.reports.slots(), 4);
    let played = collect(&mut outputs);
    control.shutdown();
    let kept: Vec<_> = played.shots.iter().map(|s| s.shot).collect();
    assert_eq!(kept, vec![0, 1, 2, 3]);
    assert_eq!(played.summary.outcome, RunOutcome::Completed);
    assert_eq!(played.summary.shots_done, 100);
    assert_eq!(played.summary.shot_overflows, 96);
    assert_eq!(played.summary.event_overflows, 0);
    assert_eq!(played.events.len() as u64, 100 * EVENTS_PER_SHOT);
}

// ---------------------------------------------------------------------------------------------------------
// Abort racing a queued run
// ---------------------------------------------------------------------------------------------------------

/// A device that stops inside `start_shot` of one chosen shot until the test releases it.
struct GateDevice {
    info: DeviceInfo,
    gate_shot: u64,
    entered: mpsc::Sender<u64>,
    release: mpsc::Receiver<()>,
}

impl Device for GateDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }
    fn program(&mut self, _timeline: &DeviceTimeline) -> Result<bool, DeviceError> {
        Ok(true)
    }
    fn arm(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
    fn start_shot(&mut self, shot: &ShotContext) -> Result<(), DeviceError> {
        if shot.shot == self.gate_shot && shot.seed == 0 {
            let _ = self.entered.send(shot.shot);
            let _ = self.release.recv();
        }
        Ok(())
    }
    fn apply(&mut self, _: usize, _: &Event, _: &ShotContext) -> Result<(), DeviceError> {
        Ok(())
    }
    fn end_shot(&mut self, _: &ShotContext, _: &mut Readout) -> Result<(), DeviceError> {
        Ok(())
    }
    fn safe_state(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
    fn state(&self) -> DeviceState {
        DeviceState::Manual
    }
}

#[test]
fn queueing_the_next_run_does_not_cancel_an_abort_of_the_running_one() {
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let gate = handle(Box::new(GateDevice {
        info: DeviceInfo {
            name: "gate".into(),
            driver: "test_gate".into(),
            clock_period_ns: 1,
            channels: 1,
            simulated: true,
            setpoint_range: (0.0, 1.0),
        },
        gate_shot: 1,
        entered: entered_tx,
        release: release_rx,
    }));
    let tl = timeline("gate", vec![pulse(0, 10, 1.0)]);
    let run = |run_id, shots, seed| ExperimentRun {
        run_id,
        experiment: 0,
        shots,
        seed,
        devices: vec![gate.clone()],
        timelines: vec![tl.clone()],
    };
    let (mut control, mut outputs) = clock(config(), SimulatedTimer::new(START_NS));
    control.start(run(1, 5, 0)).unwrap();
    assert_eq!(entered_rx.recv_timeout(HANG_GUARD), Ok(1));
    // Shot 1 of run 1 is in progress: abort it, then queue run 2.
    control.abort();
    control.start(run(2, 1, 1)).unwrap();
    release_tx.send(()).unwrap();
    let first = collect(&mut outputs);
    let second = collect(&mut outputs);
    control.shutdown();
    assert_eq!(second.summary.outcome, RunOutcome::Completed);
    assert_eq!(
        (first.summary.outcome, first.summary.shots_done),
        (RunOutcome::Aborted, 2),
        "run 1 was aborted during shot 1 but went on"
    );
}

// ---------------------------------------------------------------------------------------------------------
// Lifecycle: upload cache, setpoint range, safe state after an abort
// ---------------------------------------------------------------------------------------------------------

#[test]
fn an_identical_program_skips_the_upload_until_the_device_is_reset() {
    let world = SimWorld::new(10);
    let mut rf = SimDevice::new("rf", SimDriver::Dds, 1, 0, &world, Coupling::None);
    let tl = DeviceTimeline {
        device: "rf".into(),
        events: vec![Event {
            t_ns: 0,
            channel: 0,
            action: Action::Pulse {
                duration_ns: 100,
                setpoint: 0.5,
            },
        }],
    };
    assert_eq!(rf.program(&tl), Ok(true));
    assert_eq!(rf.program(&tl), Ok(false), "identical program re-uploaded");
    assert_eq!(rf.uploads(), 1);
    rf.safe_state().unwrap();
    assert_eq!(rf.program(&tl), Ok(false), "a safe state keeps the cache");
    rf.reset().unwrap();
    assert_eq!(rf.state(), DeviceState::Manual);
    assert_eq!(
        rf.program(&tl),
        Ok(true),
        "a reset must invalidate the cache"
    );
    assert_eq!(rf.uploads(), 2);
    let mut other = tl.clone();
    other.events[0].t_ns = 10;
    assert_eq!(rf.program(&other), Ok(true));
}

#[test]
fn a_setpoint_outside_the_device_range_is_refused() {
    let world = SimWorld::new(10);
    let mut rf = SimDevice::new("rf", SimDriver::Dds, 1, 0, &world, Coupling::None);
    let tl = DeviceTimeline {
        device: "rf".into(),
        events: vec![Event {
            t_ns: 0,
            channel: 0,
            action: Action::Pulse {
                duration_ns: 100,
                setpoint: 1.5,
            },
        }],
    };
    match rf.program(&tl) {
        Err(DeviceError::Fault { device, reason }) => {
            assert_eq!(device, "rf");
            assert!(reason.contains("[0, 1]"), "{reason}");
        }
        other => panic!("accepted an out-of-range setpoint: {other:?}"),
    }
    assert_eq!(rf.state(), DeviceState::Manual);
}

#[test]
fn after_an_abort_mid_run_every_device_is_back_in_manual_and_safe() {
    let rig = rig(5, &[rf_duration(0.25)]);
    let cfg = ClockConfig {
        lead_ns: 100_000,
        ..config()
    };
    let (mut control, mut outputs) = clock(cfg, MonotonicTimer::new(50_000));
    control.start(rig.run(1, 1_000_000, 1)).unwrap();
    let mut shots = Vec::new();
    wait_for_first_shot(&mut outputs, &mut shots);
    control.abort();
    let played = collect(&mut outputs);
    assert_eq!(played.summary.outcome, RunOutcome::Aborted);
    for d in &rig.devices {
        let mut g = d.lock();
        assert_eq!(
            g.state(),
            DeviceState::Manual,
            "{} not disarmed",
            g.info().name
        );
        g.safe_state().unwrap();
        assert_eq!(g.state(), DeviceState::Manual);
    }
    control.shutdown();
}
