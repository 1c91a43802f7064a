//! Builds a backend's devices from its configuration: each configured device becomes a driver behind a
//! [`DeviceHandle`], built by the factory its `driver` names in the runtime's [`DriverRegistry`].
//! Simulated drivers share one simulated apparatus, built by the backend's model
//! (`BackendModel::sim_world`), and each device acts on it as the model says (`BackendModel::sim_coupling`).

use shotline_config::BackendSection;
use shotline_hal::bridge::StatusHandle;
use shotline_hal::sim::{FaultSwitch, SimWorld};
use shotline_hal::{DeviceError, DeviceHandle};
use shotline_models::BackendModel;

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

/// Creates the devices of `section` with the factories of `drivers`, on the simulated apparatus of `model`. Simulated devices cannot fail; a bridge
/// device fails only when its session thread cannot be started (its card is connected in the background,
/// never here). A driver missing from the registry (only possible when the configuration was validated
/// against another registry) is a fault naming the registered drivers.
pub fn build(
    section: &BackendSection,
    drivers: &DriverRegistry,
    model: &dyn BackendModel,
) -> Result<BackendDevices, DeviceError> {
    let world = model.sim_world(section);
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
            coupling: model.sim_coupling(section, &d.name),
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
