//! Errors of the simulator.

use std::io;

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum CardSimError {
    /// A configuration value is out of range.
    #[error("invalid simulator config: {field} = {value}: {allowed}")]
    Config {
        /// Field path (e.g. `window`).
        field: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// Could not listen on the TCP address.
    #[error("cannot listen on TCP {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// The OS error.
        source: io::Error,
    },
    /// Could not create or set up the pseudo-terminal.
    #[error("cannot set up a pseudo-terminal ({step}): {source}")]
    Pty {
        /// What failed (`openpty`, `ptsname`, `cfmakeraw`, ...).
        step: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// Could not start the card thread.
    #[error("cannot start the card thread: {0}")]
    Thread(io::Error),
}
