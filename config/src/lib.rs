//! The YAML configuration of a `shotline` service: the typed schema, loading with
//! line/column error reports, semantic validation, and the embedded default (`sim.yaml`).
//!
//! ```
//! let config = shotline_config::parse_str(shotline_config::SIM_YAML, "sim.yaml").unwrap();
//! assert_eq!(config.backends[0].name, "singlequdit");
//! ```

mod backend;
mod drivers;
mod error;
mod load;
mod locate;
mod parse;
mod schema;
mod store;
mod validate;

pub use backend::{
    default_devices, BackendModel, BackendSection, BridgeRole, BridgeSection, BridgeTransport,
    DeviceDriver, DeviceFaultAction, DeviceFaultSection, DeviceSection, DriverSetting, LoadStep,
    MeasureStep, ModelName, OverflowPolicy, RateStep, RealtimeSection, RotationStep,
    SequenceSection, TimingSection, UnderflowPolicy,
};
pub use drivers::{
    valid_driver_name, DriverCatalog, DriverNameError, DriverSpec, OutputKind, BUILTIN_DRIVERS,
};
pub use error::{ConfigError, ConfigIssue};
pub use load::{load, load_with, load_with_models, load_with_plugins, LoadedConfig};
pub use parse::{parse_str, parse_str_with, parse_str_with_models, parse_str_with_plugins};
pub use schema::{
    AuthSection, Config, FaultsSection, InterruptedPolicy, LimitsSection, LogFormat, LogLevel,
    LoggingSection, PersistenceSection, RecoverySection, ServiceSection, SupervisionSection,
    TlsMode, TlsSection,
};
pub use store::{PostgresUrl, StoreSection, MAX_POSTGRES_URL_BYTES};

/// The models built into shotline (`shotline_models::ModelRegistry::builtin` holds exactly these); an
/// embedding program that registers more validates with [`Config::validate_with_models`].
pub const BUILTIN_MODELS: &[&str] = &["singlequdit"];

/// The embedded default configuration: one simulated `singlequdit` backend.
pub const SIM_YAML: &str = include_str!("../../configs/sim.yaml");
