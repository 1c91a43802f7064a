//! Integration tests of the `shotline` crate: the embedding API, supervision, persistence across restarts,
//! and the real binary end to end. One test binary with modules.

#[path = "runtime/bridge.rs"]
mod bridge;
#[path = "runtime/common.rs"]
mod common;
#[path = "runtime/corpus.rs"]
mod corpus;
#[path = "runtime/crash.rs"]
mod crash;
#[path = "runtime/drivers.rs"]
mod drivers;
#[path = "runtime/e2e.rs"]
mod e2e;
#[path = "runtime/embedding.rs"]
mod embedding;
#[path = "runtime/faults.rs"]
mod faults;
#[path = "runtime/files.rs"]
mod files;
#[path = "runtime/hostile.rs"]
mod hostile;
#[path = "runtime/limits.rs"]
mod limits;
#[path = "runtime/physics.rs"]
mod physics;
#[path = "runtime/remote.rs"]
mod remote;
#[path = "runtime/supervision.rs"]
mod supervision;
