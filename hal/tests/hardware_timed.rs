//! The shot clock with a hardware-timed device (a timing card that plays its events on its own clock): it
//! is triggered with the shot's start, never waited for, and its applied times enter the lateness report.

mod common;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use shotline_hal::device::{handle, DeviceError, DeviceHandle};
use shotline_hal::lifecycle::{DeviceState, Lifecycle, Transition};
use shotline_hal::shot_clock::{self, EventRecord, RunOutcome, RunSummary};
use shotline_hal::time::{Nanos, SimulatedTimer};
use shotline_hal::{
    Action, ClockConfig, Device, DeviceInfo, DeviceTimeline, Event, ExperimentRun, Readout,
    ShotContext, UnderflowPolicy,
};

const SLACK_NS: Nanos = 5_000;

/// What the fake card saw.
#[derive(Default)]
struct Seen {
    triggers: Vec<(u64, Nanos)>,
    applied: Vec<(u64, usize)>,
}

/// A hardware-timed device whose "card" applies every event `skew_ns` after its deadline.
struct FakeCard {
    info: DeviceInfo,
    lifecycle: Lifecycle,
    program: Vec<Event>,
    t0: Nanos,
    skew_ns: i64,
    seen: Arc<Mutex<Seen>>,
}

impl FakeCard {
    fn new(skew_ns: i64, seen: Arc<Mutex<Seen>>) -> Self {
        Self {
            info: DeviceInfo {
                name: "card".into(),
                driver: "fake_card".into(),
                clock_period_ns: 1,
                channels: 1,
                simulated: true,
                setpoint_range: (0.0, 1.0),
            },
            lifecycle: Lifecycle::default(),
            program: Vec::new(),
            t0: 0,
            skew_ns,
            seen,
        }
    }

    fn step(&mut self, t: Transition) -> Result<(), DeviceError> {
        self.lifecycle
            .apply(t)
            .map(|_| ())
            .map_err(|e| DeviceError::WrongState {
                device: "card".into(),
                operation: "step",
                state: e.state.name(),
            })
    }
}

impl Device for FakeCard {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }
    fn program(&mut self, timeline: &DeviceTimeline) -> Result<bool, DeviceError> {
        self.step(Transition::BeginProgram)?;
        self.program = timeline.events.clone();
        self.step(Transition::ProgramDone)?;
        Ok(true)
    }
    fn arm(&mut self) -> Result<(), DeviceError> {
        self.step(Transition::Arm)
    }
    fn start_shot(&mut self, _shot: &ShotContext) -> Result<(), DeviceError> {
        self.step(Transition::StartShot)
    }
    fn apply(&mut self, index: usize, _e: &Event, shot: &ShotContext) -> Result<(), DeviceError> {
        self.seen.lock().applied.push((shot.shot, index));
        Ok(())
    }
    fn end_shot(&mut self, _shot: &ShotContext, _out: &mut Readout) -> Result<(), DeviceError> {
        self.step(Transition::EndShot)
    }
    fn safe_state(&mut self) -> Result<(), DeviceError> {
        let _ = self.step(Transition::Abort);
        Ok(())
    }
    fn disarm(&mut self) -> Result<(), DeviceError> {
        self.step(Transition::Disarm)
    }
    fn state(&self) -> DeviceState {
        self.lifecycle.state()
    }
    fn hardware_timed(&self) -> bool {
        true
    }
    fn trigger(&mut self, shot: &ShotContext, t0_ns: Nanos) -> Result<(), DeviceError> {
        self.t0 = t0_ns;
        self.seen.lock().triggers.push((shot.shot, t0_ns));
        Ok(())
    }
    fn applied_times(
        &mut self,
        _shot: &ShotContext,
        out: &mut dyn FnMut(u32, Nanos),
    ) -> Result<(), DeviceError> {
        for (i, e) in self.program.iter().enumerate() {
            let at = (self.t0 + e.t_ns) as i64 + self.skew_ns;
            out(i as u32, at as Nanos);
        }
        Ok(())
    }
}

fn pulse(t_ns: Nanos) -> Event {
    Event {
        t_ns,
        channel: 0,
        action: Action::Pulse {
            duration_ns: 1_000,
            setpoint: 0.5,
        },
    }
}

fn play(skew_ns: i64, policy: UnderflowPolicy, shots: u64) -> (Seen, Vec<EventRecord>, RunSummary) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let card: DeviceHandle = handle(Box::new(FakeCard::new(skew_ns, seen.clone())));
    let timeline = DeviceTimeline {
        device: "card".into(),
        events: vec![pulse(10_000), pulse(50_000)],
    };
    card.lock().program(&timeline).unwrap();
    let config = ClockConfig {
        lead_ns: 1_000,
        slack_ns: SLACK_NS,
        underflow_policy: policy,
        ..ClockConfig::default()
    };
    let (mut control, mut outputs) =
        shot_clock::spawn("hw", config, Box::new(SimulatedTimer::new(1_000_000))).unwrap();
    control
        .start(ExperimentRun {
            run_id: 1,
            experiment: 0,
            shots,
            seed: 1,
            devices: vec![card],
            timelines: vec![timeline],
        })
        .unwrap();
    let common::Collected {
        events, summary, ..
    } = common::collect_run(&mut outputs, Duration::from_secs(30));
    control.shutdown();
    let seen = std::mem::take(&mut *seen.lock());
    (seen, events, summary)
}

#[test]
fn hardware_timed_device_is_triggered_once_per_shot_and_its_applied_times_become_lateness() {
    let (seen, events, summary) = play(1_200, UnderflowPolicy::Record, 3);
    assert_eq!(summary.outcome, RunOutcome::Completed);
    assert_eq!(summary.shots_done, 3);
    assert_eq!(
        seen.triggers.iter().map(|t| t.0).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    // Every event was handed to the device (in order) for its records.
    assert_eq!(
        seen.applied,
        vec![(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    );
    assert_eq!(events.len(), 6);
    assert!(events.iter().all(|e| e.lateness_ns == 1_200), "{events:?}");
    assert_eq!(summary.underflows, 0);
}

#[test]
fn early_hardware_events_have_negative_lateness() {
    let (_, events, summary) = play(-300, UnderflowPolicy::Record, 1);
    assert_eq!(summary.outcome, RunOutcome::Completed);
    assert!(events.iter().all(|e| e.lateness_ns == -300), "{events:?}");
}

#[test]
fn late_hardware_events_are_underflows_and_fail_under_the_fail_policy() {
    let (_, _, summary) = play(SLACK_NS as i64 + 1, UnderflowPolicy::Record, 2);
    assert_eq!(summary.outcome, RunOutcome::Completed);
    assert_eq!(summary.underflows, 4);
    let (_, _, summary) = play(SLACK_NS as i64 + 1, UnderflowPolicy::Fail, 2);
    match summary.outcome {
        RunOutcome::Underflow {
            shot,
            device_name,
            event,
            lateness_ns,
            ..
        } => {
            assert_eq!((shot, event, lateness_ns), (0, 0, SLACK_NS as i64 + 1));
            assert_eq!(device_name, "card");
        }
        other => panic!("expected an underflow, got {other:?}"),
    }
}
