//! shotline: an actor-based real-time control runtime for physics labs.
//!
//! This crate is the process: configuration loading, the supervision tree built through
//! [`Runtime::start`] (the embedding API, usable in-process with no network), the local admin socket, and
//! the `shotline` binary (service and client commands).

pub mod admin;
pub mod affinity;
pub mod builder;
pub mod datadir;
pub mod drill;
pub mod logging;
pub mod postgres_marks;
pub mod runtime;
pub mod soak;

pub use builder::RuntimeBuilder;
pub use runtime::{Runtime, RuntimeError, StartOptions, LOCAL_USER};
pub use shotline_actors::drivers::{BuiltDevice, DriverContext, DriverFactory, DriverRegistry};
pub use shotline_actors::service::{SubmitOptions, Submitted};
pub use shotline_config as config;
pub use shotline_hal as hal;
pub use shotline_models as models;
pub use shotline_protocol as protocol;
