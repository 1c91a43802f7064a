//! shotline actors: the supervision tree of a running shotline and the verbs it serves.
//!
//! ```text
//! root (one_for_one)
//! ├── persistence          the single writer to the store (its own thread, group commit)
//! ├── registry             backends and what they publish
//! ├── lock_manager         exclusive, owned locks on a backend's devices
//! ├── scheduler            durable queue -> executions
//! ├── backend:<name>       one_for_all over: sequencer per device, acquisition, analysis
//! └── gateway              QUIC listener, one temporary child per connection
//! ```
//!
//! [`service::Service`] holds the verbs (login, submit, status, ...) used by the gateway and by the
//! embedding API of the `shotline` crate.

pub mod acquisition;
pub mod analysis;
pub mod auth;
pub mod backend;
pub mod context;
pub mod drivers;
pub mod error;
pub mod faults;
pub mod gateway;
pub mod lock_manager;
pub mod persistence;
pub mod registry;
pub mod root;
pub mod scheduler;
pub mod sequencer;
pub mod service;
pub mod supervision;
pub mod time;

pub use context::Ctx;
pub use error::ServiceError;
pub use service::Service;
