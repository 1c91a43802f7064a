//! `timing.realtime.spin_shots_up_to_ns`: a clock granted `SCHED_FIFO` on a pinned core spins through short
//! shots (no sleep inside a shot) and rests between shots; otherwise (refused, too long a shot) it waits as
//! usual. Simulated time (the waits are counted, nothing really spins), so the test is exact and cheap; which
//! branch is checked depends on whether this machine grants `SCHED_FIFO` to the test (root does).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use shotline_hal::device::{handle, DeviceError};
use shotline_hal::realtime::{allowed_cpus, apply_realtime, RealtimeOptions};
use shotline_hal::shot_clock::{self, RunOutcome, RunSummary};
use shotline_hal::time::{Nanos, ShotTimer, SimulatedTimer};
use shotline_hal::{
    Action, ClockConfig, Device, DeviceInfo, DeviceState, DeviceTimeline, Event, ExperimentRun,
    Readout, ShotContext, UnderflowPolicy,
};

const LEAD_NS: Nanos = 1_000;

/// A device that does nothing.
struct Quiet {
    info: DeviceInfo,
}

impl Device for Quiet {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }
    fn program(&mut self, _: &DeviceTimeline) -> Result<bool, DeviceError> {
        Ok(true)
    }
    fn arm(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
    fn start_shot(&mut self, _: &ShotContext) -> Result<(), DeviceError> {
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
    fn disarm(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
    fn state(&self) -> DeviceState {
        DeviceState::Manual
    }
}

#[derive(Debug, Default, Clone)]
struct Counts {
    waits: u64,
    spins: u64,
    rests: Vec<Nanos>,
}

/// Simulated time that counts how the clock waited.
struct Counting {
    inner: SimulatedTimer,
    counts: Arc<Mutex<Counts>>,
}

impl ShotTimer for Counting {
    fn now(&mut self) -> Nanos {
        self.inner.now()
    }
    fn wait_until(&mut self, deadline: Nanos) -> Nanos {
        self.counts.lock().unwrap().waits += 1;
        self.inner.wait_until(deadline)
    }
    fn spin_until(&mut self, deadline: Nanos) -> Nanos {
        self.counts.lock().unwrap().spins += 1;
        self.inner.wait_until(deadline)
    }
    fn rest(&mut self, ns: Nanos) {
        self.counts.lock().unwrap().rests.push(ns);
    }
}

fn options(spin_shots_up_to_ns: Nanos) -> RealtimeOptions {
    RealtimeOptions {
        enabled: true,
        priority: 1,
        cpu: allowed_cpus().last().copied(),
        mlock: false,
        spin_shots_up_to_ns,
    }
}

/// Whether this machine grants the options to a thread (checked on a throw-away thread).
fn granted(opts: &RealtimeOptions) -> bool {
    let opts = opts.clone();
    std::thread::spawn(move || apply_realtime(&opts).is_empty())
        .join()
        .unwrap()
}

fn pulse(t_ns: Nanos) -> Event {
    Event {
        t_ns,
        channel: 0,
        action: Action::Pulse {
            duration_ns: 100,
            setpoint: 1.0,
        },
    }
}

/// Plays 3 shots of events at 0, 10 and 20 µs (shot length 20.1 µs) with `realtime`.
fn play(realtime: RealtimeOptions) -> (RunSummary, Counts) {
    let counts = Arc::new(Mutex::new(Counts::default()));
    let timer = Counting {
        inner: SimulatedTimer::new(1_000_000),
        counts: counts.clone(),
    };
    let device = handle(Box::new(Quiet {
        info: DeviceInfo {
            name: "rf".into(),
            driver: "test_quiet".into(),
            clock_period_ns: 1,
            channels: 1,
            simulated: true,
            setpoint_range: (0.0, 1.0),
        },
    }));
    let config = ClockConfig {
        lead_ns: LEAD_NS,
        slack_ns: 5_000,
        underflow_policy: UnderflowPolicy::Record,
        realtime,
        ..ClockConfig::default()
    };
    let (mut control, mut outputs) = shot_clock::spawn("spin", config, Box::new(timer)).unwrap();
    control
        .start(ExperimentRun {
            run_id: 1,
            experiment: 0,
            shots: 3,
            seed: 1,
            devices: vec![device],
            timelines: vec![DeviceTimeline {
                device: "rf".into(),
                events: vec![pulse(0), pulse(10_000), pulse(20_000)],
            }],
        })
        .unwrap();
    let summary = common::collect_run(&mut outputs, Duration::from_secs(30)).summary;
    control.shutdown();
    let counts = counts.lock().unwrap().clone();
    (summary, counts)
}

#[test]
fn a_granted_pinned_clock_spins_through_short_shots_and_rests_between_them() {
    let opts = options(2_000_000);
    let expect_spin = opts.cpu.is_some() && granted(&opts);
    let (summary, counts) = play(opts);
    assert_eq!(summary.outcome, RunOutcome::Completed);
    assert_eq!(summary.shots_done, 3);
    assert_eq!(summary.underflows, 0);
    if expect_spin {
        // 3 events + the end of the shot, all spun, in each of 3 shots; no sleeping wait at all.
        assert_eq!((counts.spins, counts.waits), (12, 0), "{counts:?}");
        // A rest before shots 1 and 2 of a quarter of the previous shot's busy time (lead + 20.1 µs).
        assert_eq!(counts.rests, vec![(LEAD_NS + 20_100) / 4; 2]);
    } else {
        // Refused here (no privilege): the clock waits as usual and never rests.
        assert_eq!((counts.spins, counts.waits), (0, 12), "{counts:?}");
        assert!(counts.rests.is_empty());
    }
}

#[test]
fn a_shot_longer_than_the_setting_is_waited_for_as_usual() {
    // 1 µs lead + 20.1 µs shot > 10 µs: sleep-and-spin waits even when real time is granted.
    let (summary, counts) = play(options(10_000));
    assert_eq!(summary.outcome, RunOutcome::Completed);
    assert_eq!((counts.spins, counts.waits), (0, 12), "{counts:?}");
    assert!(counts.rests.is_empty());
}

#[test]
fn spinning_is_never_asked_for_without_real_time() {
    let opts = RealtimeOptions {
        enabled: false,
        ..options(2_000_000)
    };
    let (_, counts) = play(opts);
    assert_eq!((counts.spins, counts.waits), (0, 12), "{counts:?}");
    assert!(counts.rests.is_empty());
}
