//! Devices behind the firmware bridge: the host side of `docs/firmware-bridge.md`.
//!
//! - [`transport`]: TCP and serial (pty) byte streams, non-blocking, pollable;
//! - [`clock`]: the card clock's offset and drift on the host timebase, from heartbeat round trips;
//! - [`wire`]: HAL events as card events (ticks, kinds, scaled values), wire error names;
//! - [`session`]: the per-card I/O thread (handshake, heartbeat, reconnection, uploads, shots);
//! - [`device`]: [`BridgeDevice`], a hardware-timed [`crate::Device`] on a timing card.

pub mod clock;
pub mod device;
pub mod session;
pub mod transport;
mod wake;
pub mod wire;
mod worker;

pub use clock::ClockEstimate;
pub use device::{BridgeDevice, BridgeOptions, BridgeRole};
pub use session::{
    CardInfo, Reply, Request, Session, SessionConfig, SessionError, SessionStatus, ShotFault,
    ShotReport, StatusHandle,
};
pub use transport::{Endpoint, Transport, TransportError};
