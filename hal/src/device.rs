//! The device trait every driver implements, simulated or real.
//!
//! A device is programmed once per experiment on the control plane ([`Device::program`], may allocate and
//! block on I/O), armed once before the first shot ([`Device::arm`]), then driven by the shot clock thread
//! shot after shot ([`Device::start_shot`], [`Device::apply`], [`Device::end_shot`]: no allocation, no
//! locks, no logging). [`Device::safe_state`] must work from every state; drivers also reach it on `Drop`.

use std::sync::Arc;

use crate::lifecycle::DeviceState;
use crate::time::Nanos;
use crate::timeline::{Action, DeviceTimeline, Event, TimelineError};

/// Identity of one shot: what a simulated device needs to be reproducible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShotContext {
    /// The execution's seed.
    pub seed: u64,
    /// Experiment index within the job.
    pub experiment: u32,
    /// Shot index within the experiment.
    pub shot: u64,
}

/// Values read out at the end of a shot (fixed capacity: no allocation on the shot path).
pub type Readout = heapless::Vec<ReadoutValue, 8>;

/// One value read out by a sensor device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadoutValue {
    /// Index of the device in the backend's device list.
    pub device: u16,
    /// Channel of the device.
    pub channel: u16,
    /// The value (counts, atom number, ...).
    pub value: i64,
}

/// Static facts about a device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    /// Name from the configuration.
    pub name: String,
    /// Driver name (`sim_dds`, ...).
    pub driver: String,
    /// Time resolution: every event time and duration is a multiple of it.
    pub clock_period_ns: Nanos,
    /// Number of output or input channels.
    pub channels: u16,
    /// Whether the device is simulated.
    pub simulated: bool,
    /// Allowed range of pulse setpoints (device units), inclusive.
    pub setpoint_range: (f64, f64),
}

/// A device failure, with enough words to act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeviceError {
    /// The program was refused.
    #[error(transparent)]
    Timeline(#[from] TimelineError),
    /// A call came in the wrong state (e.g. apply before arm).
    #[error("device {device}: {operation} is not allowed in state {state}")]
    WrongState {
        /// Device.
        device: String,
        /// What was asked.
        operation: &'static str,
        /// Current state.
        state: &'static str,
    },
    /// The hardware (or its simulation) reported a fault.
    #[error("device {device}: fault: {reason}")]
    Fault {
        /// Device.
        device: String,
        /// What happened.
        reason: String,
    },
    /// The device is in use by another thread (only possible on a wiring bug; never waits).
    #[error("device {device}: busy")]
    Busy {
        /// Device.
        device: String,
    },
}

/// Pulse setpoints of a TTL-like output: a non-negative level (for the MOT: the atom number to load).
pub const TTL_SETPOINTS: (f64, f64) = (0.0, 1.0e6);
/// Pulse setpoints of a DDS-like output: a relative amplitude.
pub const DDS_SETPOINTS: (f64, f64) = (0.0, 1.0);

/// Checks a timeline against what a driver can do: every action passes `allowed` (listed as `allowed_names`
/// in the error) and every pulse setpoint lies in `info.setpoint_range`. The first offending event is named.
pub fn check_actions(
    info: &DeviceInfo,
    timeline: &DeviceTimeline,
    allowed: impl Fn(&Action) -> bool,
    allowed_names: &str,
) -> Result<(), DeviceError> {
    let fault = |reason: String| DeviceError::Fault {
        device: info.name.clone(),
        reason,
    };
    let (lo, hi) = info.setpoint_range;
    for (i, ev) in timeline.events.iter().enumerate() {
        if !allowed(&ev.action) {
            return Err(fault(format!(
                "event {i}: a {} cannot perform {:?} (allowed: {allowed_names})",
                info.driver, ev.action
            )));
        }
        if let Action::Pulse { setpoint, .. } = ev.action {
            if !(lo..=hi).contains(&setpoint) {
                return Err(fault(format!(
                    "event {i}: setpoint {setpoint} is outside the device range [{lo}, {hi}]"
                )));
            }
        }
    }
    Ok(())
}

/// A driver for one piece of hardware.
pub trait Device: Send {
    /// Static facts.
    fn info(&self) -> &DeviceInfo;
    /// Uploads the timeline of one experiment (control plane). Returns `Ok(false)` when the device already
    /// held exactly this program and skipped the upload.
    fn program(&mut self, timeline: &DeviceTimeline) -> Result<bool, DeviceError>;
    /// Prepares for the first shot of the programmed experiment (control plane, after every device of the
    /// backend is programmed).
    fn arm(&mut self) -> Result<(), DeviceError>;
    /// Called by the shot clock right before the first event of every shot (shot path).
    fn start_shot(&mut self, shot: &ShotContext) -> Result<(), DeviceError>;
    /// Applies event `index` of the programmed timeline (shot path).
    fn apply(&mut self, index: usize, event: &Event, shot: &ShotContext)
        -> Result<(), DeviceError>;
    /// Ends the shot; sensors push their values into `out` (shot path).
    fn end_shot(&mut self, shot: &ShotContext, out: &mut Readout) -> Result<(), DeviceError>;
    /// Drives every output to its safe state and forgets the armed program (valid from every state).
    fn safe_state(&mut self) -> Result<(), DeviceError>;
    /// The experiment is over (called by the shot clock after its last shot, also after a failure): outputs
    /// static, back to manual; the uploaded program stays cached.
    fn disarm(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
    /// Resets (or reconnects to) the device: safe state, and the upload cache is forgotten so the next
    /// program is uploaded again.
    fn reset(&mut self) -> Result<(), DeviceError> {
        self.safe_state()
    }
    /// Where the device stands in its lifecycle.
    fn state(&self) -> DeviceState;
    /// `true` for a device that plays its events on its own clock (a timing card behind the firmware
    /// bridge). The shot clock does not wait for such a device's deadlines: it calls [`Device::apply`] for
    /// its events in time order without waiting (the device only records them), triggers the shot with
    /// [`Device::trigger`], and after [`Device::end_shot`] takes the applied times from
    /// [`Device::applied_times`] into the lateness report.
    fn hardware_timed(&self) -> bool {
        false
    }
    /// Hardware-timed devices (shot path, right after [`Device::start_shot`]): the shot starts at `t0_ns` on
    /// the host's monotonic clock. Must not block or allocate.
    fn trigger(&mut self, _shot: &ShotContext, _t0_ns: Nanos) -> Result<(), DeviceError> {
        Ok(())
    }
    /// Hardware-timed devices (shot path, after [`Device::end_shot`]): calls `out(event_index, applied_ns)`
    /// for every event of the shot, `applied_ns` being when the hardware applied it, on the host's monotonic
    /// clock. Must not allocate.
    fn applied_times(
        &mut self,
        _shot: &ShotContext,
        _out: &mut dyn FnMut(u32, Nanos),
    ) -> Result<(), DeviceError> {
        Ok(())
    }
}

/// A device shared between its sequencer (control plane) and the shot clock. The shot clock takes the lock
/// once per experiment, before the first shot, and holds it until the last: never inside a shot.
pub type DeviceHandle = Arc<parking_lot::Mutex<Box<dyn Device>>>;

/// Wraps a driver into a [`DeviceHandle`].
pub fn handle(device: Box<dyn Device>) -> DeviceHandle {
    Arc::new(parking_lot::Mutex::new(device))
}
