//! What validation knows about device drivers: the names a `driver` field may take and what each driver's
//! outputs can do in a backend's sequence. The built-in drivers are always known; an embedder that registers
//! drivers of its own (the actors' `DriverRegistry`) passes their names in through
//! [`DriverCatalog::with`], so an unknown name is reported with every registered name.

use crate::backend::DeviceDriver;

/// What a device's outputs can do in a backend's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputKind {
    /// Digital outputs and timed pulses with a level (`load`).
    Ttl,
    /// RF channel: timed pulses with an amplitude (`load`, `rlx`, `rlz`, `rlz2`).
    Dds,
    /// A sensor read out at the end of a shot (`measure`).
    Camera,
}

/// One driver validation accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverSpec {
    /// The registered name (`[a-z0-9_]{1,32}`).
    pub name: String,
    /// What a device with this driver can do in the sequence (empty: it serves no sequence step). The
    /// built-in `bridge` driver takes its kind from the device's `bridge.role` instead.
    pub outputs: Vec<OutputKind>,
}

/// The drivers a configuration may name, in registration order (the built-in ones first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverCatalog {
    specs: Vec<DriverSpec>,
}

/// Names of the built-in drivers, in the order error messages list them.
pub const BUILTIN_DRIVERS: [&str; 4] = ["sim_ttl", "sim_dds", "sim_camera", "bridge"];

/// Why a driver could not be added to a catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverNameError {
    /// The name is not `[a-z0-9_]{1,32}`.
    #[error("invalid driver name \"{0}\": use 1 to 32 characters from a-z, 0-9 and _")]
    Invalid(String),
    /// A driver of that name is registered already.
    #[error("a driver named \"{0}\" is registered already")]
    Duplicate(String),
}

impl Default for DriverCatalog {
    fn default() -> Self {
        Self::builtin()
    }
}

impl DriverCatalog {
    /// The built-in drivers only (what `shotline check-config` and `serve` know).
    pub fn builtin() -> Self {
        let spec = |name: &str, outputs: &[OutputKind]| DriverSpec {
            name: name.to_owned(),
            outputs: outputs.to_vec(),
        };
        Self {
            specs: vec![
                spec("sim_ttl", &[OutputKind::Ttl]),
                spec("sim_dds", &[OutputKind::Dds]),
                spec("sim_camera", &[OutputKind::Camera]),
                spec("bridge", &[]),
            ],
        }
    }

    /// Adds a driver; its name must be valid and not taken.
    pub fn with(mut self, spec: DriverSpec) -> Result<Self, DriverNameError> {
        if !valid_driver_name(&spec.name) {
            return Err(DriverNameError::Invalid(spec.name));
        }
        if self.get(&spec.name).is_some() {
            return Err(DriverNameError::Duplicate(spec.name));
        }
        self.specs.push(spec);
        Ok(self)
    }

    /// The driver named `name`.
    pub fn get(&self, name: &str) -> Option<&DriverSpec> {
        self.specs.iter().find(|s| s.name == name)
    }

    /// Whether `driver` is known.
    pub fn contains(&self, driver: &DeviceDriver) -> bool {
        self.get(driver.as_str()).is_some()
    }

    /// Every known name, in order, comma-separated (for messages).
    pub fn names(&self) -> String {
        self.specs
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The drivers other than `bridge` whose devices can do `kind`.
    pub(crate) fn offering(&self, kind: OutputKind) -> impl Iterator<Item = &str> {
        self.specs
            .iter()
            .filter(move |s| s.outputs.contains(&kind))
            .map(|s| s.name.as_str())
    }
}

/// Whether `name` can be a driver's name: 1 to 32 characters from `a-z`, `0-9` and `_`.
pub fn valid_driver_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}
