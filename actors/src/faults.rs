//! The fault-injection facility (behind `faults.enabled`, off by default): what can be injected and where.
//! Reached through the local admin socket (`shotline fault ...`), used by the crash and fault tests.

use serde::{Deserialize, Serialize};

/// How an actor is made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorFault {
    /// The actor panics inside a message handler (caught by ractor, seen by its supervisor).
    Panic,
    /// The actor is killed from outside.
    Kill,
}

/// What a simulated device is made to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceFaultKind {
    /// Fail once, at the first event of shot `at_shot` or later.
    Error,
    /// Hang `hang_ms` once, then time out.
    Hang,
    /// Fail every call until reset.
    Disconnect,
    /// Remove an armed fault.
    Clear,
}

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "target", rename_all = "snake_case")]
pub enum FaultSpec {
    /// An actor: `scheduler`, `lock_manager`, `persistence`, `registry`, `gateway`, `backend:NAME`,
    /// `backend:NAME/acquisition`, `backend:NAME/analysis`, `backend:NAME/sequencer:DEVICE`.
    Actor {
        /// The actor's role.
        role: String,
        /// How it fails.
        mode: ActorFault,
    },
    /// A simulated device.
    Device {
        /// Backend.
        backend: String,
        /// Device.
        device: String,
        /// What it does.
        kind: DeviceFaultKind,
        /// First shot affected (error, hang).
        #[serde(default)]
        at_shot: u64,
        /// Hang duration (hang).
        #[serde(default)]
        hang_ms: u64,
    },
    /// Every commit of the store is held this long before it runs (zero: back to normal).
    StoreCommitDelay {
        /// Delay in milliseconds.
        delay_ms: u64,
    },
    /// The next event of a backend's shot clock is applied late.
    ClockDelay {
        /// Backend.
        backend: String,
        /// How late.
        delay_ns: u64,
    },
    /// The next execution of a backend panics at the start of its first experiment (job RUNNING, lock held).
    ExecutionPanic {
        /// Backend.
        backend: String,
    },
    /// A backend's analysis takes this long for every shot (zero: back to normal): a slow consumer.
    AnalysisDelay {
        /// Backend.
        backend: String,
        /// Delay per shot, microseconds.
        delay_us: u64,
    },
}

impl FaultSpec {
    /// The backend a fault is injected into (`None`: actors and the store, handled by the service).
    pub fn backend(&self) -> Option<&str> {
        match self {
            FaultSpec::Device { backend, .. }
            | FaultSpec::ClockDelay { backend, .. }
            | FaultSpec::ExecutionPanic { backend }
            | FaultSpec::AnalysisDelay { backend, .. } => Some(backend),
            FaultSpec::Actor { .. } | FaultSpec::StoreCommitDelay { .. } => None,
        }
    }
}
