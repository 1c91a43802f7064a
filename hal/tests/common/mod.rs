//! Helpers shared by the shot clock's integration tests.
// Each test crate uses a part of these helpers.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use shotline_hal::shot_clock::{ClockOutputs, ClockReport, EventRecord, RunSummary, ShotRecord};

/// What the shot clock reported for one run.
pub struct Collected {
    /// Shot records, in order.
    pub shots: Vec<ShotRecord>,
    /// Event lateness records, in order.
    pub events: Vec<EventRecord>,
    /// The run's summary.
    pub summary: RunSummary,
}

/// Drains `outputs` until the run's summary arrives (then the events still in their ring); fails the test if
/// none comes within `timeout` (the shot clock hung).
pub fn collect_run(outputs: &mut ClockOutputs, timeout: Duration) -> Collected {
    let guard = Instant::now() + timeout;
    let (mut shots, mut events) = (Vec::new(), Vec::new());
    let summary = loop {
        while let Ok(e) = outputs.events.pop() {
            events.push(e);
        }
        match outputs.reports.pop() {
            Ok(ClockReport::Done(s)) => break s,
            Ok(ClockReport::Shot(r)) => shots.push(r),
            Err(_) => {
                assert!(Instant::now() < guard, "no summary: the shot clock hung");
                std::thread::yield_now();
            }
        }
    };
    while let Ok(e) = outputs.events.pop() {
        events.push(e);
    }
    Collected {
        shots,
        events,
        summary,
    }
}
