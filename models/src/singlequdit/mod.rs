//! `singlequdit`: one collective spin of N/2 for N loaded atoms (`load`, `rlx`, `rlz`, `rlz2`, `measure`,
//! `barrier`), the model of the ecosystem's `singlequdit` backend.
//!
//! - catalogue: `shotline_protocol::catalog` (the instruction schema), with `load`'s range set to the
//!   section's `max_atoms` here;
//! - compiler: [`compile`] (the section's `sequence` maps each instruction to a pulse on a device);
//! - physics: `shotline_hal::sim::SimWorld` (Chebyshev propagation of the collective spin), the devices coupled
//!   to it by their role in the sequence ([`coupling`]);
//! - analysis: the default (the camera's atom number is the memory string);
//! - calibration: the sequence's rates and durations ([`calibration`]).

pub mod compile;

use shotline_config::BackendSection;
use shotline_hal::sim::{Coupling, SimWorld};
use shotline_hal::timeline::DeviceTimeline;
use shotline_protocol::catalog::singlequdit_config;
use shotline_protocol::{BackendConfig, Experiment};

use crate::{BackendModel, CalibrationParam, CalibrationValue, CompileError};

/// The model's name in `model:`.
pub const NAME: &str = "singlequdit";

/// The `singlequdit` model.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleQudit;

/// Builds the published config of a `singlequdit` backend.
pub fn publish(section: &BackendSection) -> BackendConfig {
    let mut config = singlequdit_config(
        &section.name,
        if section.display_name.is_empty() {
            &section.name
        } else {
            &section.display_name
        },
        &section.version,
        &section.description,
        section.max_shots,
        section.max_experiments,
    );
    for ins in &mut config.instructions {
        if ins.name == "load" {
            for p in &mut ins.params {
                p.max = f64::from(section.max_atoms);
            }
        }
    }
    config
}

/// What the device named `name` does to the simulated atoms, from the sequence configuration.
pub fn coupling(section: &BackendSection, name: &str) -> Coupling {
    let s = &section.sequence;
    if s.load.device == name {
        Coupling::Load
    } else if s.rlx.device == name {
        Coupling::RotateX {
            rate_hz: s.rlx.rabi_frequency_hz,
        }
    } else if s.rlz.device == name {
        Coupling::RotateZ {
            rate_hz: s.rlz.rate_hz,
        }
    } else if s.rlz2.device == name {
        Coupling::TwistZ2 {
            rate_hz: s.rlz2.rate_hz,
        }
    } else if s.measure.device == name {
        Coupling::Image
    } else {
        Coupling::None
    }
}

/// The calibration parameters: the sequence's rates and durations, in provenance order.
pub fn calibration(section: &BackendSection) -> Vec<CalibrationParam> {
    let s = &section.sequence;
    vec![
        CalibrationParam {
            name: "rabi_frequency_hz",
            config_path: "sequence.rlx.rabi_frequency_hz",
            unit: "Hz",
            purpose: "rlx(theta) is an RF pulse of theta / (2 pi f) seconds",
            value: CalibrationValue::Real(s.rlx.rabi_frequency_hz),
        },
        CalibrationParam {
            name: "rlz_rate_hz",
            config_path: "sequence.rlz.rate_hz",
            unit: "Hz",
            purpose: "rlz(theta) is a detuning pulse of theta / (2 pi f) seconds",
            value: CalibrationValue::Real(s.rlz.rate_hz),
        },
        CalibrationParam {
            name: "rlz2_rate_hz",
            config_path: "sequence.rlz2.rate_hz",
            unit: "Hz",
            purpose: "rlz2(theta) is an interaction hold of theta / (2 pi f) seconds",
            value: CalibrationValue::Real(s.rlz2.rate_hz),
        },
        CalibrationParam {
            name: "load_duration_ns",
            config_path: "sequence.load.duration_ns",
            unit: "ns",
            purpose: "length of the loading pulse of load(n)",
            value: CalibrationValue::Integer(s.load.duration_ns),
        },
        CalibrationParam {
            name: "measure_exposure_ns",
            config_path: "sequence.measure.exposure_ns",
            unit: "ns",
            purpose: "camera exposure of measure",
            value: CalibrationValue::Integer(s.measure.exposure_ns),
        },
    ]
}

impl BackendModel for SingleQudit {
    fn name(&self) -> &str {
        NAME
    }

    fn summary(&self) -> &str {
        "one collective spin of N/2 for N loaded atoms (load, rlx, rlz, rlz2, measure, barrier)"
    }

    fn publish(&self, section: &BackendSection) -> BackendConfig {
        publish(section)
    }

    fn compile(
        &self,
        section: &BackendSection,
        experiment: &Experiment,
    ) -> Result<Vec<DeviceTimeline>, CompileError> {
        compile::compile(section, experiment)
    }

    fn sim_world(&self, section: &BackendSection) -> SimWorld {
        SimWorld::new(section.max_atoms)
    }

    fn sim_coupling(&self, section: &BackendSection, device: &str) -> Coupling {
        coupling(section, device)
    }

    fn calibration(&self, section: &BackendSection) -> Vec<CalibrationParam> {
        calibration(section)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shotline_config::{parse_str, SIM_YAML};

    #[test]
    fn calibration_names_every_rate_and_duration_the_compiler_uses_with_its_unit() {
        let s = parse_str(SIM_YAML, "sim.yaml").unwrap().backends.remove(0);
        let c = calibration(&s);
        let names: Vec<_> = c.iter().map(|p| (p.name, p.unit)).collect();
        assert_eq!(
            names,
            vec![
                ("rabi_frequency_hz", "Hz"),
                ("rlz_rate_hz", "Hz"),
                ("rlz2_rate_hz", "Hz"),
                ("load_duration_ns", "ns"),
                ("measure_exposure_ns", "ns"),
            ]
        );
        assert_eq!(c[0].value, CalibrationValue::Real(10_000.0));
        assert_eq!(c[3].value, CalibrationValue::Integer(20_000));
        // The published load range follows the section's max_atoms.
        let mut small = s.clone();
        small.max_atoms = 7;
        let load = SingleQudit.publish(&small);
        assert_eq!(load.instruction("load").unwrap().params[0].max, 7.0);
    }
}
