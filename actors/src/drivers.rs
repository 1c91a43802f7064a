//! Device drivers as a plug-in point: a [`DriverFactory`] builds a [`shotline_hal::Device`] from a device's
//! configuration section and what the backend shares with its devices ([`DriverContext`]); a
//! [`DriverRegistry`] holds the factories by name. The built-in `sim_ttl`, `sim_dds`, `sim_camera` and
//! `bridge` drivers are entries like any other; an embedder adds its own through
//! `shotline::StartOptions::drivers` (docs/drivers.md).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use shotline_config::{
    BackendSection, BridgeTransport, DeviceSection, DriverCatalog, DriverNameError, DriverSpec,
    OutputKind,
};
use shotline_hal::bridge::{BridgeDevice, BridgeOptions, BridgeRole, Endpoint, StatusHandle};
use shotline_hal::sim::{Coupling, FaultSwitch, SimDevice, SimDriver, SimWorld};
use shotline_hal::{Device, DeviceError};

/// What a driver factory gets to build one device.
pub struct DriverContext<'a> {
    /// The device's configuration section (`backends[].devices[]`).
    pub device: &'a DeviceSection,
    /// The backend the device belongs to.
    pub backend: &'a BackendSection,
    /// Index of the device in the backend's device list (what its readout values carry).
    pub index: u16,
    /// The backend's simulated apparatus (atoms), shared by its simulated devices.
    pub world: &'a SimWorld,
    /// What this device does to the simulated atoms, from the backend's sequence.
    pub coupling: Coupling,
}

/// A device built by a factory, with the optional handles the backend keeps next to it.
pub struct BuiltDevice {
    /// The driver.
    pub device: Box<dyn Device>,
    /// Fault-injection switch (simulated devices: `shotline fault inject`).
    pub fault: Option<FaultSwitch>,
    /// Status of a timing-card session (`bridge`), for `shotline devices`.
    pub card: Option<StatusHandle>,
}

impl BuiltDevice {
    /// A device without fault switch or card session.
    pub fn new(device: Box<dyn Device>) -> Self {
        Self {
            device,
            fault: None,
            card: None,
        }
    }
}

/// Builds devices of one driver. Factories are shared by every backend of a runtime (`Send + Sync`);
/// [`DriverFactory::build`] runs on the control plane when a backend starts or restarts, and may block
/// briefly (spawn a session thread), but must not wait for hardware: connect in the background and report
/// a missing instrument from `program`.
pub trait DriverFactory: Send + Sync {
    /// The name devices use in `driver:` (`[a-z0-9_]{1,32}`, unique within a registry).
    fn name(&self) -> &str;
    /// What devices of this driver can do in a backend's sequence (validation checks that every sequence
    /// step names a device that can do it). Default: nothing (a device no step uses).
    fn outputs(&self) -> Vec<OutputKind> {
        Vec::new()
    }
    /// Builds the device of `ctx.device`.
    fn build(&self, ctx: &DriverContext<'_>) -> Result<BuiltDevice, DeviceError>;
}

/// The drivers of a runtime, by name. Cheap to clone; [`Default`] is [`DriverRegistry::builtin`].
#[derive(Clone)]
pub struct DriverRegistry {
    factories: BTreeMap<String, Arc<dyn DriverFactory>>,
    /// Registration order, for messages.
    order: Vec<String>,
}

impl fmt::Debug for DriverRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.order).finish()
    }
}

impl Default for DriverRegistry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl DriverRegistry {
    /// No drivers at all.
    pub fn empty() -> Self {
        Self {
            factories: BTreeMap::new(),
            order: Vec::new(),
        }
    }

    /// The built-in drivers: `sim_ttl`, `sim_dds`, `sim_camera`, `bridge`.
    pub fn builtin() -> Self {
        let mut r = Self::empty();
        for f in [
            Arc::new(SimFactory(SimDriver::Ttl)) as Arc<dyn DriverFactory>,
            Arc::new(SimFactory(SimDriver::Dds)),
            Arc::new(SimFactory(SimDriver::Camera)),
            Arc::new(BridgeFactory),
        ] {
            r.register(f)
                .expect("built-in driver names are valid and distinct");
        }
        r
    }

    /// Adds a driver; its name must be valid and not registered yet.
    pub fn register(&mut self, factory: Arc<dyn DriverFactory>) -> Result<(), DriverNameError> {
        let name = factory.name().to_owned();
        if !shotline_config::valid_driver_name(&name) {
            return Err(DriverNameError::Invalid(name));
        }
        if self.factories.contains_key(&name) {
            return Err(DriverNameError::Duplicate(name));
        }
        self.order.push(name.clone());
        self.factories.insert(name, factory);
        Ok(())
    }

    /// [`DriverRegistry::register`], by value.
    pub fn with(mut self, factory: Arc<dyn DriverFactory>) -> Result<Self, DriverNameError> {
        self.register(factory)?;
        Ok(self)
    }

    /// The driver named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn DriverFactory>> {
        self.factories.get(name)
    }

    /// Registered names, in registration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(String::as_str)
    }

    /// What configuration validation needs to know: every name and what its devices can do.
    pub fn catalog(&self) -> DriverCatalog {
        let mut catalog = DriverCatalog::builtin();
        for name in &self.order {
            if catalog.get(name).is_some() {
                continue;
            }
            let spec = DriverSpec {
                name: name.clone(),
                outputs: self.factories[name].outputs(),
            };
            catalog = catalog
                .with(spec)
                .expect("registered names are valid and distinct");
        }
        catalog
    }
}

/// `sim_ttl`, `sim_dds`, `sim_camera`: a simulated device acting on the backend's simulated atoms.
struct SimFactory(SimDriver);

impl DriverFactory for SimFactory {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn outputs(&self) -> Vec<OutputKind> {
        vec![match self.0 {
            SimDriver::Ttl => OutputKind::Ttl,
            SimDriver::Dds => OutputKind::Dds,
            SimDriver::Camera => OutputKind::Camera,
        }]
    }

    fn build(&self, ctx: &DriverContext<'_>) -> Result<BuiltDevice, DeviceError> {
        let d = ctx.device;
        let dev = SimDevice::new(
            &d.name,
            self.0,
            d.clock_period_ns,
            ctx.index,
            ctx.world,
            ctx.coupling,
        );
        Ok(BuiltDevice {
            fault: Some(dev.fault_switch()),
            ..BuiltDevice::new(Box::new(dev))
        })
    }
}

/// `bridge`: a timing card behind the firmware bridge. In the simulated lab the atoms stay simulated on the
/// host: the card's programmed events act on them exactly as a simulated device's would.
struct BridgeFactory;

impl DriverFactory for BridgeFactory {
    fn name(&self) -> &str {
        "bridge"
    }

    fn build(&self, ctx: &DriverContext<'_>) -> Result<BuiltDevice, DeviceError> {
        let d = ctx.device;
        let dev = BridgeDevice::new(
            &d.name,
            bridge_options(d),
            ctx.index,
            Some((ctx.world.clone(), ctx.coupling)),
        )?;
        Ok(BuiltDevice {
            card: Some(dev.status_handle()),
            ..BuiltDevice::new(Box::new(dev))
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_registry_matches_the_names_validation_knows() {
        let registry = DriverRegistry::builtin();
        let names: Vec<&str> = registry.names().collect();
        assert_eq!(names, shotline_config::BUILTIN_DRIVERS);
        let catalog = DriverCatalog::builtin();
        for name in names {
            let spec = catalog
                .get(name)
                .expect("validation knows every built-in driver");
            assert_eq!(
                registry.get(name).unwrap().outputs(),
                spec.outputs,
                "{name}"
            );
        }
    }
}
