//! [`RuntimeBuilder`]: starting a runtime with plug-ins registered from another crate (device drivers,
//! docs/drivers.md), so a lab adds its apparatus without patching shotline.
//!
//! ```no_run
//! # async fn f(factory: std::sync::Arc<dyn shotline::DriverFactory>) -> Result<(), Box<dyn std::error::Error>> {
//! let builder = shotline::Runtime::builder().driver(factory)?;
//! let loaded = shotline::config::load_with("lab.yaml".as_ref(), &builder.catalog())?;
//! let runtime = builder.start(loaded).await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use shotline_actors::drivers::{DriverFactory, DriverRegistry};
use shotline_config::{Config, DriverCatalog, DriverNameError, LoadedConfig};

use crate::runtime::{Runtime, RuntimeError, StartOptions};

/// How to start a runtime with extra drivers: options plus the driver registry (the built-in drivers and
/// those registered with [`RuntimeBuilder::driver`]).
#[derive(Debug, Clone, Default)]
pub struct RuntimeBuilder {
    options: StartOptions,
    drivers: DriverRegistry,
}

impl RuntimeBuilder {
    /// Listen address, data dir, gateway and admin socket (default: [`StartOptions::default`]).
    pub fn options(mut self, options: StartOptions) -> Self {
        self.options = options;
        self
    }

    /// Registers a device driver under [`DriverFactory::name`]; a name that is invalid or taken (the
    /// built-in `sim_ttl`, `sim_dds`, `sim_camera`, `bridge` included) is refused.
    pub fn driver(mut self, factory: Arc<dyn DriverFactory>) -> Result<Self, DriverNameError> {
        self.drivers.register(factory)?;
        Ok(self)
    }

    /// The registered drivers.
    pub fn drivers(&self) -> &DriverRegistry {
        &self.drivers
    }

    /// What configuration validation must know of the registered drivers: pass it to
    /// `shotline::config::load_with` or `parse_str_with` so that devices may name them.
    pub fn catalog(&self) -> DriverCatalog {
        self.drivers.catalog()
    }

    /// Starts the runtime from a loaded configuration file.
    pub async fn start(self, loaded: LoadedConfig) -> Result<Runtime, RuntimeError> {
        self.start_with(loaded.config, loaded.hash).await
    }

    /// Starts the runtime from a configuration value (`hash` is recorded in every execution's provenance).
    pub async fn start_with(self, config: Config, hash: String) -> Result<Runtime, RuntimeError> {
        Runtime::launch(config, hash, self.options, self.drivers).await
    }
}
