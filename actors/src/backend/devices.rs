//! Builds a backend's devices from its configuration: each configured device becomes a driver behind a
//! [`DeviceHandle`]. Simulated drivers share one simulated apparatus, and the devices that the sequence uses
//! for loading, rotations and imaging act on it with the configured rates.

use shotline_config::{BackendSection, DeviceDriver};
use shotline_hal::sim::{Coupling, FaultSwitch, SimDevice, SimDriver, SimWorld};
use shotline_hal::DeviceHandle;

/// The devices of one backend and the simulated apparatus they share.
pub struct BackendDevices {
    /// Handles in configuration order.
    pub handles: Vec<DeviceHandle>,
    /// The simulated atoms.
    pub world: SimWorld,
    /// Fault-injection switches of the simulated devices, by device name.
    pub faults: Vec<(String, FaultSwitch)>,
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

/// Creates the devices of `section`.
pub fn build(section: &BackendSection) -> BackendDevices {
    let world = SimWorld::new(section.max_atoms);
    let mut faults = Vec::new();
    let handles = section
        .devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let kind = match d.driver {
                DeviceDriver::SimTtl => SimDriver::Ttl,
                DeviceDriver::SimDds => SimDriver::Dds,
                DeviceDriver::SimCamera => SimDriver::Camera,
            };
            let dev = SimDevice::new(
                &d.name,
                kind,
                d.clock_period_ns,
                i as u16,
                &world,
                coupling(section, &d.name),
            );
            faults.push((d.name.clone(), dev.fault_switch()));
            shotline_hal::device::handle(Box::new(dev))
        })
        .collect();
    BackendDevices {
        handles,
        world,
        faults,
    }
}
