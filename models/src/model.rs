//! The [`BackendModel`] trait: the plug-in point of an apparatus.

use shotline_config::BackendSection;
use shotline_hal::shot_clock::ShotRecord;
use shotline_hal::sim::{Coupling, SimWorld};
use shotline_hal::timeline::DeviceTimeline;
use shotline_protocol::{BackendConfig, Experiment, Job, ValidationReport};

use crate::CompileError;

/// The value of a calibration parameter, as configured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CalibrationValue {
    /// A real number (rates, frequencies).
    Real(f64),
    /// An integer (durations in ns).
    Integer(u64),
}

/// One calibration parameter of a model: what a calibration workflow measures and writes back.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationParam {
    /// Name (the key in an execution's provenance), e.g. `rabi_frequency_hz`.
    pub name: &'static str,
    /// Where it is configured, relative to the backend section, e.g. `sequence.rlx.rabi_frequency_hz`.
    pub config_path: &'static str,
    /// Unit, e.g. `Hz`, `ns`.
    pub unit: &'static str,
    /// What the compiler uses it for.
    pub purpose: &'static str,
    /// The configured value.
    pub value: CalibrationValue,
}

/// Everything model-specific about a backend. Object-safe: the runtime holds `Arc<dyn BackendModel>`s in a
/// [`crate::ModelRegistry`] and finds a backend's model by the name in its `model:` key.
///
/// Calls happen on the control plane (admission, programming, analysis), never inside a shot; `compile` and
/// `validate` may run on async worker threads, so they should be quick (microseconds to a few ms).
pub trait BackendModel: Send + Sync + 'static {
    /// The name a backend section uses in `model:` (`[a-z0-9_-]{1,32}`).
    fn name(&self) -> &str;

    /// One line for operators: what apparatus this is.
    fn summary(&self) -> &str;

    /// Model-specific checks of a backend section (e.g. the devices its sequence names exist), beyond what
    /// the config schema checks: `(path relative to the section, message)`; empty when fine.
    fn check_section(&self, _section: &BackendSection) -> Vec<(String, String)> {
        Vec::new()
    }

    /// The published backend config: identity and limits from `section`, the instruction catalogue with
    /// parameter ranges and coupling map. `backend NAME` shows it; the generic job validator enforces it.
    fn publish(&self, section: &BackendSection) -> BackendConfig;

    /// Model-specific validation of a job that already passed the published schema (`Ok` by default).
    fn validate(&self, _section: &BackendSection, _job: &Job) -> Result<(), ValidationReport> {
        Ok(())
    }

    /// Compiles one experiment into one timeline per configured device, in configuration order (a device
    /// with nothing to do gets an empty timeline).
    fn compile(
        &self,
        section: &BackendSection,
        experiment: &Experiment,
    ) -> Result<Vec<DeviceTimeline>, CompileError>;

    /// The simulated apparatus the simulated devices of `section` act on.
    fn sim_world(&self, section: &BackendSection) -> SimWorld;

    /// What the simulated device named `device` does to the simulated apparatus.
    fn sim_coupling(&self, section: &BackendSection, device: &str) -> Coupling;

    /// The default single-shot analysis: the memory string of one shot (`None`: the shot read nothing out).
    fn memory(&self, record: &ShotRecord) -> Option<String> {
        default_memory(record)
    }

    /// The model's calibration parameters with their configured values, in a stable order.
    fn calibration(&self, section: &BackendSection) -> Vec<CalibrationParam>;
}

/// The read-out values of a shot, space-separated, in event order (the ecosystem's memory format).
pub fn default_memory(record: &ShotRecord) -> Option<String> {
    if record.readout.is_empty() {
        return None;
    }
    let parts: Vec<String> = record.readout.iter().map(|v| v.value.to_string()).collect();
    Some(parts.join(" "))
}
