//! What the shot clock sends out: fixed-size records, so pushing them allocates nothing.

use crate::device::{DeviceError, Readout};
use crate::time::Nanos;

/// One shot as played.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShotRecord {
    /// The run this shot belongs to.
    pub run_id: u64,
    /// Experiment index.
    pub experiment: u32,
    /// Shot index.
    pub shot: u64,
    /// Monotonic time of the shot start (t0).
    pub t0_ns: Nanos,
    /// Monotonic time when the shot ended (its last pulse or exposure over).
    pub end_ns: Nanos,
    /// Values the sensors read out.
    pub readout: Readout,
    /// Events applied.
    pub events: u32,
    /// Largest lateness of the shot.
    pub max_lateness_ns: i64,
    /// Events later than the slack, plus one if the shot overran its cycle.
    pub underflows: u32,
    /// How far the shot start missed its cycle slot (0 when on time or back to back).
    pub overrun_ns: Nanos,
}

/// Which time an event's lateness was measured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stamp {
    /// The host's monotonic clock read right after the device call returned (software-timed devices): the
    /// output was on by then at the latest, so the lateness is never optimistic.
    #[default]
    AfterApply,
    /// The driver's own time of application, on the host's monotonic clock (hardware-timed devices).
    Device,
}

/// Lateness of one applied event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventRecord {
    /// The run.
    pub run_id: u64,
    /// Shot index.
    pub shot: u64,
    /// Device index in the run.
    pub device: u16,
    /// Event index in that device's timeline.
    pub event: u32,
    /// Scheduled time relative to t0.
    pub scheduled_ns: Nanos,
    /// Actual apply time minus scheduled time.
    pub lateness_ns: i64,
    /// Where the actual apply time comes from.
    pub stamp: Stamp,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// Every shot was played.
    Completed,
    /// Stopped at a shot boundary on request.
    Aborted,
    /// An event was later than the slack under the `fail` policy.
    Underflow {
        /// Shot index.
        shot: u64,
        /// Device index.
        device: u16,
        /// Device name.
        device_name: String,
        /// Event index.
        event: u32,
        /// How late.
        lateness_ns: i64,
        /// The slack it exceeded.
        slack_ns: Nanos,
    },
    /// Under the `abort` policy: an event would have been applied later than the slack, so the run stopped
    /// before applying it (the late output was never played) and the devices were driven to their safe state.
    UnderflowAbort {
        /// Shot index.
        shot: u64,
        /// Device index.
        device: u16,
        /// Device name.
        device_name: String,
        /// Event index.
        event: u32,
        /// The event's deadline, relative to the shot start.
        deadline_ns: Nanos,
        /// How late it would have been applied (at least this much).
        lateness_ns: i64,
        /// The slack it exceeded.
        slack_ns: Nanos,
    },
    /// A shot overran its cycle under the `fail` policy.
    Overrun {
        /// Shot index.
        shot: u64,
        /// By how much.
        overrun_ns: Nanos,
    },
    /// A device failed.
    DeviceFault {
        /// Shot index (None: while arming).
        shot: Option<u64>,
        /// Device name.
        device_name: String,
        /// The error.
        error: DeviceError,
    },
    /// The run was malformed (e.g. too many devices).
    Rejected(String),
}

/// End of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// The run.
    pub run_id: u64,
    /// Experiment index.
    pub experiment: u32,
    /// Shots fully played.
    pub shots_done: u64,
    /// How it ended.
    pub outcome: RunOutcome,
    /// Shot records that could not be pushed because the ring was full.
    pub shot_overflows: u64,
    /// Event records dropped because the event ring was full.
    pub event_overflows: u64,
    /// Underflows counted (all policies).
    pub underflows: u64,
    /// Shots spun through (no sleep inside them; `spin_shots_up_to_ns`).
    pub spun_shots: u64,
    /// Spun shots during which the clock (without real time) waited for a CPU for 250 µs or more (`SPIN_CONTENDED_NS`): each
    /// started a back-off during which shots are slept as usual.
    pub spin_backoffs: u64,
}

/// Everything the shot clock reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ClockReport {
    /// A shot was played.
    Shot(ShotRecord),
    /// A run ended.
    Done(RunSummary),
}
