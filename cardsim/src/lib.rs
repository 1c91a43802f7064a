//! shotline firmware simulator: a timing card speaking the firmware bridge protocol over TCP or a
//! pseudo-terminal.
//!
//! It runs the reference card of `shotline-firmware-bridge` ([`shotline_firmware_bridge::Card`],
//! `no_std`, no allocation) unchanged in one thread against its own clock (own epoch, optional
//! drift), and can be told to misbehave for tests ([`Misbehaviour`]: drop, corrupt or delay frames,
//! reboot mid-shot, stop answering). Start it with [`CardSim::spawn`] or the `shotline-cardsim`
//! binary ([`cli::main`]).

pub mod cli;
mod clock;
mod config;
mod error;
mod port;
mod runner;
mod sim;

pub use config::{CardSimConfig, CardSimStats, Listen, Misbehaviour, SimEvent, SUPPORTED_WINDOWS};
pub use error::CardSimError;
pub use shotline_firmware_bridge::card::SafeCause;
pub use shotline_firmware_bridge::CardState;
pub use sim::{CardSim, MAX_SIM_EVENTS};
