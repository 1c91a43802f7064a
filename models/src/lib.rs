//! Backend models: everything that makes a backend *this* apparatus rather than another.
//!
//! A [`BackendModel`] owns the instruction catalogue (names, parameter ranges, coupling map: what the
//! published backend config shows), model-specific job validation beyond the schema, the compiler from an
//! experiment to device timelines, the simulated physics the simulated devices act on, the default analysis
//! of a shot's read-out, and the model's calibration parameters. The runtime knows models only by name,
//! through a [`ModelRegistry`]: the built-in models ([`singlequdit`]) are in [`ModelRegistry::builtin`], and
//! an embedding program adds its own (`shotline::StartOptions::models`). See `docs/models.md`.

mod compile;
mod model;
mod registry;
pub mod singlequdit;

pub use compile::{shot_length_ns, shot_period_ns, CompileError};
pub use model::{default_memory, BackendModel, CalibrationParam, CalibrationValue};
pub use registry::{ModelRegistry, RegistryError};
