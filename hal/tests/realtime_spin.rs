//! `timing.spin_shots_up_to_ns`: the clock spins through short shots (no sleep inside a shot), with or
//! without real time; only a clock granted `SCHED_FIFO` rests between them; a shot longer than the setting
//! (or the setting 0) is waited for as usual (sleep, then spin). Simulated time (the waits are counted, nothing really spins), so the test is exact and cheap; which
//! branch is checked depends on whether this machine grants `SCHED_FIFO` to the test (root does).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use shotline_hal::device::{handle, DeviceError};
use shotline_hal::realtime::{allowed_cpus, apply_realtime, RealtimeOptions};
use shotline_hal::shot_clock::{self, RunOutcome, RunSummary, SPIN_CONTENDED_NS};
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
    /// Calls of `run_delay_ns` so far.
    delay_reads: u64,
    /// From this read on, every read reports `delay_per_read` ns more of run delay than the previous one.
    delayed_from_read: Option<u64>,
    delay_per_read: Nanos,
    /// Reads at which the run delay also grows by `delay_per_read`.
    delay_steps: Vec<u64>,
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
    fn run_delay_ns(&mut self) -> u64 {
        let mut c = self.counts.lock().unwrap();
        c.delay_reads += 1;
        // Cumulative: `delay_per_read` more at every read from that one on.
        let reads = c
            .delayed_from_read
            .map_or(0, |n| (c.delay_reads + 1).saturating_sub(n));
        let steps = c
            .delay_steps
            .iter()
            .filter(|&&r| r <= c.delay_reads)
            .count() as u64;
        (reads + steps) * c.delay_per_read
    }
}

fn options() -> RealtimeOptions {
    RealtimeOptions {
        enabled: true,
        priority: 1,
        cpu: allowed_cpus().last().copied(),
        mlock: false,
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
fn play(realtime: RealtimeOptions, spin_shots_up_to_ns: Nanos) -> (RunSummary, Counts) {
    play_with(realtime, spin_shots_up_to_ns, 0, 3, Counts::default())
}

/// Plays `shots` shots (`cycle_ns` apart, 0 = back to back) starting from `counts`.
fn play_with(
    realtime: RealtimeOptions,
    spin_shots_up_to_ns: Nanos,
    cycle_ns: Nanos,
    shots: u64,
    counts: Counts,
) -> (RunSummary, Counts) {
    let counts = Arc::new(Mutex::new(counts));
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
        spin_shots_up_to_ns,
        cycle_ns,
        ..ClockConfig::default()
    };
    let (mut control, mut outputs) = shot_clock::spawn("spin", config, Box::new(timer)).unwrap();
    control
        .start(ExperimentRun {
            run_id: 1,
            experiment: 0,
            shots,
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
    let opts = options();
    let rests = opts.cpu.is_some() && granted(&opts);
    let (summary, counts) = play(opts, 2_000_000);
    assert_eq!(summary.outcome, RunOutcome::Completed);
    assert_eq!(summary.shots_done, 3);
    assert_eq!(summary.underflows, 0);
    // 3 events + the end of the shot, all spun, in each of 3 shots; no sleeping wait at all.
    assert_eq!((counts.spins, counts.waits), (12, 0), "{counts:?}");
    if rests {
        // A rest before shots 1 and 2 of a quarter of the previous shot's busy time (lead + 20.1 µs).
        assert_eq!(counts.rests, vec![(LEAD_NS + 20_100) / 4; 2]);
    } else {
        // Refused here (no privilege): a SCHED_OTHER clock spins too, but never rests.
        assert!(counts.rests.is_empty(), "{counts:?}");
    }
}

#[test]
fn a_shot_longer_than_the_setting_is_waited_for_as_usual() {
    // 1 µs lead + 20.1 µs shot > 10 µs: sleep-and-spin waits, with or without real time.
    for opts in [options(), RealtimeOptions::default()] {
        let (summary, counts) = play(opts, 10_000);
        assert_eq!(summary.outcome, RunOutcome::Completed);
        assert_eq!((counts.spins, counts.waits), (0, 12), "{counts:?}");
        assert!(counts.rests.is_empty());
    }
}

#[test]
fn without_real_time_short_shots_are_spun_through_and_never_rested() {
    // The default configuration: no real time. The shot is spun (no sleep lets the vCPU halt inside it).
    let (summary, counts) = play(RealtimeOptions::default(), 2_000_000);
    assert_eq!(summary.shots_done, 3);
    assert_eq!((counts.spins, counts.waits), (12, 0), "{counts:?}");
    assert!(counts.rests.is_empty(), "{counts:?}");
    // Switched off: every event is waited for (sleep, then spin).
    let (_, counts) = play(RealtimeOptions::default(), 0);
    assert_eq!((counts.spins, counts.waits), (0, 12), "{counts:?}");
}

#[test]
fn a_clock_without_real_time_kept_off_the_cpu_in_a_spun_shot_sleeps_for_a_while() {
    // The second read of the run delay (end of shot 0) shows the clock waited 250 µs for a CPU: shots 1
    // and 2 (within the 20 ms back-off) are slept as usual.
    let counts = Counts {
        delayed_from_read: Some(2),
        delay_per_read: SPIN_CONTENDED_NS,
        ..Counts::default()
    };
    let (summary, counts) = play_with(RealtimeOptions::default(), 2_000_000, 0, 3, counts);
    assert_eq!(summary.shots_done, 3);
    assert_eq!((summary.spun_shots, summary.spin_backoffs), (1, 1));
    assert_eq!((counts.spins, counts.waits), (4, 8), "{counts:?}");
    assert!(counts.rests.is_empty());
}

#[test]
fn spinning_resumes_after_the_back_off() {
    // Shots 60 ms apart; every spun shot waits 250 µs for a CPU. Whether a shot spins is decided when the
    // previous shot ended, and a back-off runs from the end of the contended shot: shot 0 (decided at 0)
    // spins, backs off 20 ms; shot 1 (decided at ~0) sleeps; shot 2 (decided at ~60 ms) spins, backs off
    // 40 ms from ~120 ms; shot 3 (decided at ~120 ms) sleeps; shot 4 (decided at ~180 ms) spins, backs off
    // 80 ms from ~240 ms; shots 5 and 6 (decided at ~240 and ~300 ms) sleep.
    let counts = Counts {
        delayed_from_read: Some(2),
        delay_per_read: SPIN_CONTENDED_NS,
        ..Counts::default()
    };
    let (summary, _) = play_with(RealtimeOptions::default(), 2_000_000, 60_000_000, 7, counts);
    assert_eq!(summary.shots_done, 7);
    assert_eq!(
        (summary.spun_shots, summary.spin_backoffs),
        (3, 3),
        "{summary:?}"
    );
}

#[test]
fn a_clean_spun_shot_keeps_the_clock_spinning() {
    let (summary, counts) = play_with(
        RealtimeOptions::default(),
        2_000_000,
        0,
        5,
        Counts::default(),
    );
    assert_eq!((summary.spun_shots, summary.spin_backoffs), (5, 0));
    assert_eq!(counts.waits, 0, "{counts:?}");
    assert_eq!(
        counts.delay_reads, 10,
        "read before and after each spun shot"
    );
    // A short preemption (just under 250 µs of waiting for a CPU in a shot) does not make it back off.
    let counts = Counts {
        delayed_from_read: Some(2),
        delay_per_read: SPIN_CONTENDED_NS - 1,
        ..Counts::default()
    };
    let (summary, _) = play_with(RealtimeOptions::default(), 2_000_000, 0, 5, counts);
    assert_eq!((summary.spun_shots, summary.spin_backoffs), (5, 0));
}

#[test]
fn a_clean_shot_between_contended_ones_does_not_shorten_the_back_off() {
    // Shots 30 ms apart; the run delay grows at reads 2 (end of shot 0) and 6 only. Each shot is decided
    // when the previous one ended: shot 0 (at 0) spins, contended, backs off 20 ms; shot 1 (~0) sleeps;
    // shot 2 (~30 ms) spins, clean (reads 3, 4); shot 3 (~60 ms) spins, contended (read 6), backs off 40 ms
    // (not 20: the clean shot did not reset it) from ~90 ms; shots 4 and 5 (decided at ~90 and ~120 ms,
    // before ~130 ms) sleep. Had the clean shot reset it, shot 5 would spin.
    let counts = Counts {
        delay_per_read: SPIN_CONTENDED_NS,
        delay_steps: vec![2, 6],
        ..Counts::default()
    };
    let (summary, counts) = play_with(RealtimeOptions::default(), 2_000_000, 30_000_000, 6, counts);
    assert_eq!(summary.shots_done, 6);
    assert_eq!(counts.delay_reads, 6, "{counts:?}");
    assert_eq!(
        (summary.spun_shots, summary.spin_backoffs),
        (3, 2),
        "{summary:?}"
    );
}
