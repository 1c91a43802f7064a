//! shotline firmware bridge: the wire between shotline and real timing hardware.
//!
//! This is the `no_std`, allocation-free core shared by the host and the card firmware:
//! - [`crc`]: CRC-32 (IEEE 802.3) with a compile-time table;
//! - [`cobs`]: COBS byte stuffing, frames delimited by `0x00`;
//! - [`frame`]: header + payload + CRC frames, [`frame::encode_frame`] and the streaming
//!   [`frame::FrameDecoder`];
//! - [`message`]: the typed messages of a timing card with fixed maximum sizes;
//! - [`link`]: sequence numbers, acknowledgements, retransmission, bounded send window;
//! - [`watchdog`]: the card's heartbeat watchdog and state machine;
//! - [`card`]: the reference timing card, the whole card side of the protocol (no allocation).
//!
//! Every length read from the wire is checked against a fixed maximum; nothing here panics on input.
//! The `std` feature (off by default) only adds `std::error::Error` for [`BridgeError`]. The byte
//! layout is specified in `docs/firmware-bridge.md`.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(any(feature = "std", test))]
extern crate std;

pub mod card;
pub mod cobs;
pub mod crc;
pub mod error;
pub mod frame;
pub mod link;
pub mod message;
pub mod watchdog;

pub use card::{Card, CardConfig, CardTime, StoredEvent};
pub use error::BridgeError;
pub use frame::{
    encode_frame, Frame, FrameDecoder, MAX_ENCODED_FRAME, MAX_PAYLOAD, PROTOCOL_VERSION,
};
pub use link::{Link, LinkConfig};
pub use message::{Message, WireEvent};
pub use watchdog::{CardMachine, CardState, Watchdog};

/// Version of the bridge protocol (the version byte of every frame header).
pub const BRIDGE_PROTOCOL_VERSION: u16 = PROTOCOL_VERSION as u16;
