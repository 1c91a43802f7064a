//! `underflow_policy: abort` (ARTIQ's RTIOUnderflow semantics), with a `SimulatedTimer`: an event that would
//! be applied later than the slack stops the run before its device call, the devices go to their safe state,
//! and the outcome names the shot, device, event, deadline and lateness. Also: lateness is stamped after the
//! device call, never before it.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use shotline_hal::device::{handle, DeviceError};
use shotline_hal::shot_clock::{self, EventRecord, RunOutcome, RunSummary, Stamp};
use shotline_hal::time::{Nanos, ShotTimer, SimulatedTimer};
use shotline_hal::{
    Action, ClockConfig, Device, DeviceInfo, DeviceState, DeviceTimeline, Event, ExperimentRun,
    Readout, ShotContext, UnderflowPolicy,
};

const SLACK_NS: Nanos = 5_000;
const START_NS: Nanos = 1_000_000;

/// What a device saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Apply { shot: u64, event: usize },
    SafeState,
    Disarm,
}

/// A device that records its calls; `apply_cost_ns` is how long each apply takes on the shared simulated clock.
struct Recorder {
    info: DeviceInfo,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Device for Recorder {
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
    fn apply(&mut self, index: usize, _: &Event, shot: &ShotContext) -> Result<(), DeviceError> {
        self.calls.lock().unwrap().push(Call::Apply {
            shot: shot.shot,
            event: index,
        });
        Ok(())
    }
    fn end_shot(&mut self, _: &ShotContext, _: &mut Readout) -> Result<(), DeviceError> {
        Ok(())
    }
    fn safe_state(&mut self) -> Result<(), DeviceError> {
        self.calls.lock().unwrap().push(Call::SafeState);
        Ok(())
    }
    fn disarm(&mut self) -> Result<(), DeviceError> {
        self.calls.lock().unwrap().push(Call::Disarm);
        Ok(())
    }
    fn state(&self) -> DeviceState {
        DeviceState::Manual
    }
}

/// A simulated timer whose `now()` after the n-th wait is later by a chosen amount: a device call that
/// takes that long.
struct SlowCalls {
    inner: SimulatedTimer,
    waits: u64,
    slow_after_wait: u64,
    call_ns: Nanos,
    extra: Nanos,
}

impl ShotTimer for SlowCalls {
    fn now(&mut self) -> Nanos {
        self.inner.now() + self.extra
    }
    fn wait_until(&mut self, deadline: Nanos) -> Nanos {
        let t = self.inner.wait_until(deadline.saturating_sub(self.extra)) + self.extra;
        self.waits += 1;
        if self.waits == self.slow_after_wait + 1 {
            self.extra += self.call_ns;
        }
        t
    }
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

struct Played {
    events: Vec<EventRecord>,
    summary: RunSummary,
    calls: Vec<Call>,
}

/// Plays `shots` shots of one device with events at 0, 10 µs and 20 µs (4 waits per shot: 3 events + end).
fn play(policy: UnderflowPolicy, timer: Box<dyn ShotTimer>, shots: u64) -> Played {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let device = handle(Box::new(Recorder {
        info: DeviceInfo {
            name: "rf".into(),
            driver: "test_recorder".into(),
            clock_period_ns: 1,
            channels: 1,
            simulated: true,
            setpoint_range: (0.0, 1.0),
        },
        calls: calls.clone(),
    }));
    let config = ClockConfig {
        lead_ns: 1_000,
        cycle_ns: 0,
        slack_ns: SLACK_NS,
        underflow_policy: policy,
        ..ClockConfig::default()
    };
    let (mut control, mut outputs) = shot_clock::spawn("abort", config, timer).unwrap();
    control
        .start(ExperimentRun {
            run_id: 1,
            experiment: 3,
            shots,
            seed: 1,
            devices: vec![device],
            timelines: vec![DeviceTimeline {
                device: "rf".into(),
                events: vec![pulse(0), pulse(10_000), pulse(20_000)],
            }],
        })
        .unwrap();
    let common::Collected {
        events, summary, ..
    } = common::collect_run(&mut outputs, Duration::from_secs(30));
    control.shutdown();
    let calls = calls.lock().unwrap().clone();
    Played {
        events,
        summary,
        calls,
    }
}

#[test]
fn abort_stops_before_the_late_event_is_applied_and_makes_the_devices_safe() {
    // Shot 1 (waits 4..8), event 1 (wait 5): 7 µs late, above the 5 µs slack.
    let timer = SimulatedTimer::new(START_NS)
        .inject_lateness(1, 4_000) // shot 0, event 1: late but within the slack, applied
        .inject_lateness(5, 7_000);
    let played = play(UnderflowPolicy::Abort, Box::new(timer), 5);
    assert_eq!(
        played.summary.outcome,
        RunOutcome::UnderflowAbort {
            shot: 1,
            device: 0,
            device_name: "rf".into(),
            event: 1,
            deadline_ns: 10_000,
            lateness_ns: 7_000,
            slack_ns: SLACK_NS,
        }
    );
    assert_eq!(played.summary.shots_done, 1);
    assert_eq!(played.summary.underflows, 1);
    // The late event was never applied: the device saw shot 0 and shot 1's first event, then its safe state.
    let mut expected: Vec<Call> = (0..3).map(|event| Call::Apply { shot: 0, event }).collect();
    expected.push(Call::Apply { shot: 1, event: 0 });
    expected.push(Call::SafeState);
    assert_eq!(played.calls, expected);
    // Nor was it reported as applied.
    assert!(
        !played.events.iter().any(|e| e.shot == 1 && e.event == 1),
        "{:?}",
        played.events
    );
    assert_eq!(played.events.len(), 4);
}

#[test]
fn the_same_late_event_is_applied_under_fail_and_record() {
    for policy in [UnderflowPolicy::Fail, UnderflowPolicy::Record] {
        let timer = SimulatedTimer::new(START_NS).inject_lateness(5, 7_000);
        let played = play(policy, Box::new(timer), 3);
        assert!(
            played.calls.contains(&Call::Apply { shot: 1, event: 1 }),
            "{policy:?}: {:?}",
            played.calls
        );
        assert_eq!(played.summary.underflows, 1, "{policy:?}");
        assert!(!played.calls.contains(&Call::SafeState), "{policy:?}");
    }
}

#[test]
fn lateness_is_stamped_after_the_device_call_returns() {
    // The device call of shot 0, event 1 (after wait 1) takes 3 µs: its lateness is 3 µs, not 0.
    let timer = SlowCalls {
        inner: SimulatedTimer::new(START_NS),
        waits: 0,
        slow_after_wait: 1,
        call_ns: 3_000,
        extra: 0,
    };
    let played = play(UnderflowPolicy::Record, Box::new(timer), 1);
    assert_eq!(played.summary.outcome, RunOutcome::Completed);
    let lateness: Vec<i64> = played.events.iter().map(|e| e.lateness_ns).collect();
    assert_eq!(lateness, vec![0, 3_000, 0]);
    assert!(played.events.iter().all(|e| e.stamp == Stamp::AfterApply));
    assert_eq!(played.calls.last(), Some(&Call::Disarm));
}

#[test]
fn shutdown_does_not_wait_for_a_far_deadline() {
    use shotline_hal::time::MonotonicTimer;
    let device = handle(Box::new(Recorder {
        info: DeviceInfo {
            name: "rf".into(),
            driver: "test_recorder".into(),
            clock_period_ns: 1,
            channels: 1,
            simulated: true,
            setpoint_range: (0.0, 1.0),
        },
        calls: Arc::new(Mutex::new(Vec::new())),
    }));
    // A lead of centuries (the hal does not bound it; the configuration does).
    let config = ClockConfig {
        lead_ns: u64::MAX / 4,
        ..ClockConfig::default()
    };
    let (mut control, _outputs) =
        shot_clock::spawn("far", config, Box::new(MonotonicTimer::new(50_000))).unwrap();
    control
        .start(ExperimentRun {
            run_id: 1,
            experiment: 0,
            shots: 1,
            seed: 1,
            devices: vec![device],
            timelines: vec![DeviceTimeline {
                device: "rf".into(),
                events: vec![pulse(0)],
            }],
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        control.shutdown();
        let _ = tx.send(());
    });
    // Generous for a loaded machine; the old clock slept until the deadline.
    assert!(
        rx.recv_timeout(Duration::from_secs(20)).is_ok(),
        "shutdown waited for the deadline"
    );
}
