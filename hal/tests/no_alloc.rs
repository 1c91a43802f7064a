//! Proves that the shot clock thread does not allocate inside shots.
//!
//! A counting global allocator counts every allocation of the process. Two runs of the same experiment, one
//! of 10 shots and one of 2000 shots, are measured from right before `control.start(run)` to right after
//! the `Done` report was popped; the per-run setup (boxing the run, locking the devices, merging the
//! schedule) costs the same in both, so any difference is a per-shot allocation. The difference must be
//! exactly zero. This file holds a single test so that no other test allocates while it measures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use shotline_hal::device::{handle, DeviceHandle};
use shotline_hal::shot_clock::{self, ClockReport, RunOutcome, RunSummary};
use shotline_hal::sim::{Coupling, SimDevice, SimDriver, SimWorld};
use shotline_hal::time::SimulatedTimer;
use shotline_hal::{
    Action, ClockConfig, ClockControl, ClockOutputs, DeviceTimeline, Event, ExperimentRun,
    UnderflowPolicy,
};

/// Counts allocations and reallocations, then defers to the system allocator.
struct CountingAlloc;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to `System`, which upholds the `GlobalAlloc` contract.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

const PERIOD_NS: u64 = 10;
const RF_RATE_HZ: f64 = 250_000.0;

fn pulse(t_ns: u64, duration_ns: u64, setpoint: f64) -> Event {
    Event {
        t_ns,
        channel: 0,
        action: Action::Pulse {
            duration_ns,
            setpoint,
        },
    }
}

/// A realistic singlequdit shot: load 20 atoms, two RF pulses (rlx(π/4) twice), image.
fn timelines() -> Vec<DeviceTimeline> {
    vec![
        DeviceTimeline {
            device: "mot".into(),
            events: vec![pulse(0, 100_000, 20.0)],
        },
        DeviceTimeline {
            device: "rf".into(),
            events: vec![pulse(120_000, 500, 1.0), pulse(130_000, 500, 1.0)],
        },
        DeviceTimeline {
            device: "camera".into(),
            events: vec![Event {
                t_ns: 150_000,
                channel: 0,
                action: Action::Acquire {
                    exposure_ns: 20_000,
                },
            }],
        },
    ]
}

fn programmed_devices(timelines: &[DeviceTimeline]) -> Vec<DeviceHandle> {
    let world = SimWorld::new(50);
    let specs = [
        ("mot", SimDriver::Ttl, Coupling::Load),
        (
            "rf",
            SimDriver::Dds,
            Coupling::RotateX {
                rate_hz: RF_RATE_HZ,
            },
        ),
        ("camera", SimDriver::Camera, Coupling::Image),
    ];
    let devices: Vec<DeviceHandle> = specs
        .iter()
        .enumerate()
        .map(|(i, (name, driver, coupling))| {
            handle(Box::new(SimDevice::new(
                name, *driver, PERIOD_NS, i as u16, &world, *coupling,
            )))
        })
        .collect();
    for (d, tl) in devices.iter().zip(timelines) {
        d.lock().program(tl).unwrap();
    }
    devices
}

/// A run of the programmed experiment. Every run is programmed first, as the runtime does (an identical
/// program is not uploaded again; it only takes the device back to "programmed").
fn run(run_id: u64, shots: u64, devices: &[DeviceHandle], tls: &[DeviceTimeline]) -> ExperimentRun {
    for (d, tl) in devices.iter().zip(tls) {
        d.lock().program(tl).unwrap();
    }
    ExperimentRun {
        run_id,
        experiment: 0,
        shots,
        seed: 42,
        devices: devices.to_vec(),
        timelines: tls.to_vec(),
    }
}

/// Starts `run` and waits for its summary; returns (allocations during the run, shot records, summary).
/// Nothing between the two counter reads allocates on this thread.
fn measured(
    control: &mut ClockControl,
    outputs: &mut ClockOutputs,
    run: ExperimentRun,
) -> (u64, u64, RunSummary) {
    let mut shot_records = 0u64;
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let started = control.start(run).is_ok();
    let summary = loop {
        match outputs.reports.pop() {
            Ok(ClockReport::Done(summary)) => break summary,
            Ok(ClockReport::Shot(_)) => shot_records += 1,
            Err(_) => {
                while outputs.events.pop().is_ok() {}
                std::thread::yield_now();
            }
        }
    };
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    assert!(started, "the clock refused the run");
    while outputs.events.pop().is_ok() {}
    (after - before, shot_records, summary)
}

#[test]
fn shot_clock_allocates_nothing_per_shot() {
    let tls = timelines();
    let devices = programmed_devices(&tls);
    let config = ClockConfig {
        lead_ns: 10_000,
        cycle_ns: 0,
        slack_ns: 100_000,
        underflow_policy: UnderflowPolicy::Record,
        shot_ring: 4096,
        event_ring: 16_384,
        ..ClockConfig::default()
    };
    let (mut control, mut outputs) =
        shot_clock::spawn("noalloc", config, Box::new(SimulatedTimer::new(1_000))).unwrap();

    // Warm-up: the first run arms the devices (the world integrates the physics, which allocates) and
    // touches every lazily initialised thread-local; later runs of the same program start from that state.
    let (_, warm_shots, warm) = measured(&mut control, &mut outputs, run(1, 3, &devices, &tls));
    assert_eq!(warm.outcome, RunOutcome::Completed);
    assert_eq!((warm.shots_done, warm_shots), (3, 3));

    let short_run = run(2, 10, &devices, &tls);
    let (short_allocs, short_shots, short) = measured(&mut control, &mut outputs, short_run);
    let long_run = run(3, 2000, &devices, &tls);
    let (long_allocs, long_shots, long) = measured(&mut control, &mut outputs, long_run);

    assert_eq!(short.outcome, RunOutcome::Completed);
    assert_eq!(long.outcome, RunOutcome::Completed);
    assert_eq!((short.shots_done, short_shots), (10, 10));
    assert_eq!((long.shots_done, long_shots), (2000, 2000));
    assert_eq!(short.shot_overflows + long.shot_overflows, 0);
    assert_eq!(short.event_overflows + long.event_overflows, 0);
    assert_eq!(short.underflows + long.underflows, 0);
    // The per-run setup (boxing the run, the clock thread's lock guards, device names and merged
    // schedule) is seen by the counter, so the counter does observe the clock thread.
    assert!(short_allocs > 0, "the counter saw no allocation at all");
    assert_eq!(
        long_allocs as i128 - short_allocs as i128,
        0,
        "allocations: {short_allocs} for 10 shots, {long_allocs} for 2000 shots; \
         every extra allocation of the long run happened inside a shot"
    );
    control.shutdown();
}
