//! The singlequdit timeline compiler: an experiment's instructions become timed events on the backend's
//! devices, with every time and duration rounded to the clock period of the device that plays it.
//!
//! `load(n)` holds the MOT loading pulse (setpoint n atoms) for `sequence.load.duration_ns`; `rlx(θ)` is an RF
//! pulse of θ/(2π f_rabi); `rlz(θ)` and `rlz2(θ)` are detuning and interaction pulses of θ/(2π f); the first
//! `measure` is a camera exposure; `barrier` adds nothing. Instructions follow one another separated by
//! `sequence.gap_ns`; each event starts on the next tick of its device's clock. Every device of the backend
//! gets a timeline (possibly empty), so a device never replays an earlier experiment's program.

use std::f64::consts::PI;

use shotline_config::{BackendSection, DeviceSection};
use shotline_hal::timeline::{round_to_period, Action, DeviceTimeline, Event};
use shotline_protocol::Experiment;

/// Why an experiment could not be compiled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompileError {
    /// The sequence names a device the backend does not have.
    #[error("the sequence step `{step}` names device `{device}`, which is not configured")]
    NoDevice {
        /// Step.
        step: &'static str,
        /// Device.
        device: String,
    },
    /// An instruction the compiler does not know.
    #[error("instructions[{index}]: `{name}` cannot be compiled for this backend")]
    Unknown {
        /// Index.
        index: usize,
        /// Name.
        name: String,
    },
    /// A parameter gives a duration that is negative, not finite or too long.
    #[error("instructions[{index}]: parameter {value} gives a pulse that cannot be played")]
    BadDuration {
        /// Index.
        index: usize,
        /// Value.
        value: f64,
    },
    /// The result failed timeline validation.
    #[error(transparent)]
    Timeline(#[from] shotline_hal::timeline::TimelineError),
}

/// (sequence step, device, duration in ns before rounding, the action for a rounded duration and the parameter).
type Step<'a> = (&'static str, &'a str, f64, fn(u64, f64) -> Action);

fn device_index(
    devices: &[DeviceSection],
    step: &'static str,
    name: &str,
) -> Result<usize, CompileError> {
    devices
        .iter()
        .position(|d| d.name == name)
        .ok_or_else(|| CompileError::NoDevice {
            step,
            device: name.to_string(),
        })
}

fn align_up(t: u64, period: u64) -> u64 {
    let p = period.max(1);
    t.div_ceil(p).saturating_mul(p)
}

/// Compiles `experiment` into one timeline per configured device (in configuration order).
pub fn compile(
    section: &BackendSection,
    experiment: &Experiment,
) -> Result<Vec<DeviceTimeline>, CompileError> {
    let devices = &section.devices;
    let seq = &section.sequence;
    let mut timelines: Vec<DeviceTimeline> = devices
        .iter()
        .map(|d| DeviceTimeline {
            device: d.name.clone(),
            events: Vec::new(),
        })
        .collect();
    let mut t: u64 = 0;
    let mut measured = false;
    for (index, ins) in experiment.instructions.iter().enumerate() {
        let param = ins.params.first().copied().unwrap_or(0.0);
        let (step, device, duration_ns, action): Step<'_> = match ins.name.as_str() {
            "load" => (
                "load",
                &seq.load.device,
                seq.load.duration_ns as f64,
                |d, p| Action::Pulse {
                    duration_ns: d,
                    setpoint: p,
                },
            ),
            "rlx" => (
                "rlx",
                &seq.rlx.device,
                param / (2.0 * PI * seq.rlx.rabi_frequency_hz) * 1e9,
                |d, _| Action::Pulse {
                    duration_ns: d,
                    setpoint: 1.0,
                },
            ),
            "rlz" => (
                "rlz",
                &seq.rlz.device,
                param / (2.0 * PI * seq.rlz.rate_hz) * 1e9,
                |d, _| Action::Pulse {
                    duration_ns: d,
                    setpoint: 1.0,
                },
            ),
            "rlz2" => (
                "rlz2",
                &seq.rlz2.device,
                param / (2.0 * PI * seq.rlz2.rate_hz) * 1e9,
                |d, _| Action::Pulse {
                    duration_ns: d,
                    setpoint: 1.0,
                },
            ),
            "measure" if !measured => {
                measured = true;
                (
                    "measure",
                    &seq.measure.device,
                    seq.measure.exposure_ns as f64,
                    |d, _| Action::Acquire { exposure_ns: d },
                )
            }
            "measure" | "barrier" => continue,
            other => {
                return Err(CompileError::Unknown {
                    index,
                    name: other.to_string(),
                })
            }
        };
        let d = device_index(devices, step, device)?;
        let period = devices[d].clock_period_ns.max(1);
        let duration = round_to_period(duration_ns, period).ok_or(CompileError::BadDuration {
            index,
            value: param,
        })?;
        if duration == 0 {
            // A zero angle is no pulse at all.
            continue;
        }
        let start = align_up(t, period);
        timelines[d].events.push(Event {
            t_ns: start,
            channel: 0,
            action: action(duration, param),
        });
        t = start.saturating_add(duration).saturating_add(seq.gap_ns);
    }
    for (tl, dev) in timelines.iter().zip(devices) {
        tl.validate(dev.clock_period_ns.max(1), 1)?;
    }
    Ok(timelines)
}

/// Time from the shot start to the end of its last event.
pub fn shot_length_ns(timelines: &[DeviceTimeline]) -> u64 {
    timelines.iter().map(|t| t.end_ns()).max().unwrap_or(0)
}
