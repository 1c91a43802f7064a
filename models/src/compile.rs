//! What every model's compiler shares: its error type and the length of a compiled shot.

use shotline_config::TimingSection;
use shotline_hal::timeline::DeviceTimeline;

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
    /// Anything else a model's compiler refuses, at an instruction.
    #[error("instructions[{index}]: {reason}")]
    Refused {
        /// Index.
        index: usize,
        /// What is wrong, naming the value and the limit.
        reason: String,
    },
    /// The result failed timeline validation.
    #[error(transparent)]
    Timeline(#[from] shotline_hal::timeline::TimelineError),
}

/// Time from the shot start to the end of its last event.
pub fn shot_length_ns(timelines: &[DeviceTimeline]) -> u64 {
    timelines.iter().map(|t| t.end_ns()).max().unwrap_or(0)
}

/// Apparatus time one shot of compiled `timelines` takes: the lead before the shot plus its length, at least
/// one cycle. The execution expects this per shot; admission multiplies it by the shots to plan a job.
pub fn shot_period_ns(timing: &TimingSection, timelines: &[DeviceTimeline]) -> u64 {
    shot_length_ns(timelines)
        .saturating_add(timing.lead_ns)
        .max(timing.cycle_ns)
}
