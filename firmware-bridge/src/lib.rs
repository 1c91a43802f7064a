//! shotline firmware bridge (placeholder).
//!
//! The wire protocol to device firmware will live here: a `no_std` + `heapless` core (framing with a CRC,
//! sequence numbers, the messages of a timing card), a `std` host transport and a firmware simulator. See
//! `firmware-bridge/README.md`. Nothing in the runtime depends on it yet.
#![no_std]

/// Version of the (future) bridge protocol.
pub const BRIDGE_PROTOCOL_VERSION: u16 = 0;
