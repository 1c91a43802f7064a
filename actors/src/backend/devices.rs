//! Builds a backend's devices from its configuration: each configured device becomes a driver behind a
//! [`DeviceHandle`], built by the factory its `driver` names in the runtime's [`DriverRegistry`].
//! Simulated drivers share one simulated apparatus, and the devices that the sequence uses for loading,
//! rotations and imaging act on it with the configured rates.

use shotline_config::BackendSection;
use shotline_hal::bridge::StatusHandle;
use shotline_hal::sim::{Coupling, FaultSwitch, SimWorld};
use shotline_hal::{DeviceError, DeviceHandle};

use crate::drivers::{DriverContext, DriverRegistry};

/// The devices of one backend and the simulated apparatus they share.
pub struct BackendDevices {
    /// Handles in configuration order.
    pub handles: Vec<DeviceHandle>,
    /// The simulated atoms.
    pub world: SimWorld,
    /// Fault-injection switches of the simulated devices, by device name.
    pub faults: Vec<(String, FaultSwitch)>,
    /// For each device (same order), the status of its timing-card session (`driver: bridge` only).
    pub cards: Vec<Option<StatusHandle>>,
}

/// What the device named `name` does to the simulated atoms, from the sequence configuration.
fn coupling(section: &BackendSection, name: &str) -> Coupling {
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

/// Creates the devices of `section` with the factories of `drivers`. Simulated devices cannot fail; a bridge
/// device fails only when its session thread cannot be started (its card is connected in the background,
/// never here). A driver missing from the registry (only possible when the configuration was validated
/// against another registry) is a fault naming the registered drivers.
pub fn build(
    section: &BackendSection,
    drivers: &DriverRegistry,
) -> Result<BackendDevices, DeviceError> {
    let world = SimWorld::new(section.max_atoms);
    let mut faults = Vec::new();
    let mut handles = Vec::with_capacity(section.devices.len());
    let mut cards = Vec::with_capacity(section.devices.len());
    for (i, d) in section.devices.iter().enumerate() {
        let Some(factory) = drivers.get(d.driver.as_str()) else {
            return Err(DeviceError::Fault {
                device: d.name.clone(),
                reason: format!(
                    "driver \"{}\" is not registered (registered drivers: {})",
                    d.driver,
                    drivers.names().collect::<Vec<_>>().join(", ")
                ),
            });
        };
        let built = factory.build(&DriverContext {
            device: d,
            backend: section,
            index: i as u16,
            world: &world,
            coupling: coupling(section, &d.name),
        })?;
        if let Some(fault) = built.fault {
            faults.push((d.name.clone(), fault));
        }
        cards.push(built.card);
        handles.push(shotline_hal::device::handle(built.device));
    }
    Ok(BackendDevices {
        handles,
        world,
        faults,
        cards,
    })
}
