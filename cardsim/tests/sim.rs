//! The firmware simulator driven over a real TCP socket and a real pseudo-terminal by a minimal
//! host written from the protocol core.

mod sim {
    mod faults;
    mod host;
    mod transports;
}
