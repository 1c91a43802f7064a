//! [`RuntimeBuilder`]: starting a runtime with plug-ins registered from another crate (device drivers,
//! docs/drivers.md; backend models, docs/models.md), so a lab adds its apparatus without patching shotline.
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
use shotline_models::{BackendModel, ModelRegistry};

use crate::runtime::{Runtime, RuntimeError, StartOptions};

/// How to start a runtime with extra drivers and models: options plus the driver registry (the built-in
/// drivers and those registered with [`RuntimeBuilder::driver`]) and the model registry (the built-in models
/// and those registered with [`RuntimeBuilder::model`]).
#[derive(Clone, Default)]
pub struct RuntimeBuilder {
    options: StartOptions,
    drivers: DriverRegistry,
    models: ModelRegistry,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("options", &self.options)
            .field("drivers", &self.drivers)
            .field("models", &self.models.names())
            .finish()
    }
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

    /// Registers a backend model from another crate; backends name it in `model:`. Its name must not be
    /// taken (the built-in `singlequdit` included).
    pub fn model(mut self, model: Arc<dyn BackendModel>) -> Result<Self, RuntimeError> {
        self.models
            .register(model)
            .map_err(|e| RuntimeError::Config(e.to_string()))?;
        Ok(self)
    }

    /// The registered models.
    pub fn models(&self) -> &ModelRegistry {
        &self.models
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
        Runtime::launch(config, hash, self.options, self.drivers, self.models).await
    }
}
