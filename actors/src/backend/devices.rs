//! Builds a backend's devices from its configuration: each configured device becomes a driver behind a
//! [`DeviceHandle`]. Simulated drivers share one simulated apparatus, and the devices that the sequence uses
//! for loading, rotations and imaging act on it with the configured rates.

use shotline_config::{BackendSection, BridgeTransport, DeviceDriver, DeviceSection};
use shotline_hal::bridge::{BridgeDevice, BridgeOptions, BridgeRole, Endpoint, StatusHandle};
use shotline_hal::sim::{Coupling, FaultSwitch, SimDevice, SimDriver, SimWorld};
use shotline_hal::{DeviceError, DeviceHandle};

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

/// The bridge options of a `driver: bridge` device from its configuration.
fn bridge_options(d: &DeviceSection) -> BridgeOptions {
    let b = d.bridge.clone().unwrap_or_default();
    let endpoint = match b.transport {
        BridgeTransport::Tcp => Endpoint::Tcp { address: b.address },
        BridgeTransport::Serial => Endpoint::Serial {
            path: b.path,
            baud: b.baud,
        },
    };
    BridgeOptions {
        endpoint,
        clock_period_ns: d.clock_period_ns,
        role: match b.role {
            shotline_config::BridgeRole::Ttl => BridgeRole::Ttl,
            shotline_config::BridgeRole::Dds => BridgeRole::Dds,
        },
        value_scale: b.value_scale,
        connect_timeout_ms: b.connect_timeout_ms,
        reply_timeout_ms: b.reply_timeout_ms,
        heartbeat_ms: b.heartbeat_ms,
        retransmit_ms: b.retransmit_ms,
        max_retries: b.max_retries,
        window: usize::from(b.window),
        backoff_max_ms: b.backoff_max_ms,
    }
}

/// Creates the devices of `section`. Simulated devices cannot fail; a bridge device fails only when its
/// session thread cannot be started (its card is connected in the background, never here).
pub fn build(section: &BackendSection) -> Result<BackendDevices, DeviceError> {
    let world = SimWorld::new(section.max_atoms);
    let mut faults = Vec::new();
    let mut handles = Vec::with_capacity(section.devices.len());
    let mut cards = Vec::with_capacity(section.devices.len());
    for (i, d) in section.devices.iter().enumerate() {
        let index = i as u16;
        let coupling = coupling(section, &d.name);
        let kind = match d.driver {
            DeviceDriver::SimTtl => SimDriver::Ttl,
            DeviceDriver::SimDds => SimDriver::Dds,
            DeviceDriver::SimCamera => SimDriver::Camera,
            DeviceDriver::Bridge => {
                // In the simulated lab the atoms stay simulated on the host: the card's programmed events
                // act on them exactly as a simulated device's would.
                let dev = BridgeDevice::new(
                    &d.name,
                    bridge_options(d),
                    index,
                    Some((world.clone(), coupling)),
                )?;
                cards.push(Some(dev.status_handle()));
                handles.push(shotline_hal::device::handle(Box::new(dev)));
                continue;
            }
        };
        let dev = SimDevice::new(&d.name, kind, d.clock_period_ns, index, &world, coupling);
        faults.push((d.name.clone(), dev.fault_switch()));
        cards.push(None);
        handles.push(shotline_hal::device::handle(Box::new(dev)));
    }
    Ok(BackendDevices {
        handles,
        world,
        faults,
        cards,
    })
}
