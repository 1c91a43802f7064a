//! Fault injection for simulated devices (tests and drills): make a device fail, hang (time out) or
//! disconnect from a chosen shot on. Checked on the shot path with plain atomic loads (no lock, no
//! allocation); an injected fault allocates only when it fires (the shot is lost anyway).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedFault {
    /// Nothing (clears a fault).
    None,
    /// Fail the first event applied in shot `at_shot` or later (once, then clear).
    Error {
        /// First shot affected.
        at_shot: u64,
    },
    /// Hang for `hang` in shot `at_shot` or later, then report a timeout (once, then clear).
    Hang {
        /// First shot affected.
        at_shot: u64,
        /// How long the device does not answer.
        hang: Duration,
    },
    /// Every call fails until the device is reset (reconnected).
    Disconnect,
}

const NONE: u8 = 0;
const ERROR: u8 = 1;
const HANG: u8 = 2;
const DISCONNECT: u8 = 3;

/// A shared switch; the test or operator side sets it, the device reads it.
#[derive(Debug, Clone, Default)]
pub struct FaultSwitch {
    kind: Arc<AtomicU8>,
    at_shot: Arc<AtomicU64>,
    hang_ns: Arc<AtomicU64>,
}

/// What the device must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firing {
    /// Work normally.
    No,
    /// Fail with an injected error.
    Error,
    /// Do not answer for this long, then time out.
    Hang(Duration),
    /// Behave as disconnected.
    Disconnected,
}

impl FaultSwitch {
    /// Arms `fault`.
    pub fn set(&self, fault: InjectedFault) {
        let (kind, at, hang) = match fault {
            InjectedFault::None => (NONE, 0, 0),
            InjectedFault::Error { at_shot } => (ERROR, at_shot, 0),
            InjectedFault::Hang { at_shot, hang } => {
                (HANG, at_shot, hang.as_nanos().min(u64::MAX as u128) as u64)
            }
            InjectedFault::Disconnect => (DISCONNECT, 0, 0),
        };
        self.at_shot.store(at, Ordering::SeqCst);
        self.hang_ns.store(hang, Ordering::SeqCst);
        self.kind.store(kind, Ordering::SeqCst);
    }

    /// Whether the device is disconnected.
    pub fn disconnected(&self) -> bool {
        self.kind.load(Ordering::SeqCst) == DISCONNECT
    }

    /// Checks (and consumes, for one-shot faults) the fault for `shot`.
    pub fn check(&self, shot: u64) -> Firing {
        match self.kind.load(Ordering::Relaxed) {
            NONE => Firing::No,
            DISCONNECT => Firing::Disconnected,
            k if shot >= self.at_shot.load(Ordering::Relaxed) => {
                if self
                    .kind
                    .compare_exchange(k, NONE, Ordering::SeqCst, Ordering::SeqCst)
                    .is_err()
                {
                    return Firing::No;
                }
                if k == HANG {
                    Firing::Hang(Duration::from_nanos(self.hang_ns.load(Ordering::SeqCst)))
                } else {
                    Firing::Error
                }
            }
            _ => Firing::No,
        }
    }

    /// A reset (reconnect) clears every fault.
    pub fn clear(&self) {
        self.kind.store(NONE, Ordering::SeqCst);
    }
}
