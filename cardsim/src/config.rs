//! Configuration, misbehaviour switches, counters and notable events of the simulator.

use std::net::SocketAddr;

use shotline_firmware_bridge::card::SafeCause;
use shotline_firmware_bridge::LinkConfig;

/// Send windows the simulator can run with (`CardSimConfig::window`).
pub const SUPPORTED_WINDOWS: [usize; 6] = [1, 2, 4, 8, 16, 32];

/// Where the simulated card listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// Listen on this TCP address (port 0: any free port) and accept one host at a time; a new
    /// connection replaces the old one.
    Tcp(SocketAddr),
    /// A pseudo-terminal; the host opens the slave path (`/dev/pts/N`) like a serial device.
    Pty,
}

/// Ways the card can be told to misbehave (all off by default); changeable at runtime with
/// `CardSim::set_misbehaviour`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Misbehaviour {
    /// Drop every Nth outgoing frame (0: off).
    pub drop_every: u32,
    /// Flip one byte of every Nth outgoing frame (0: off).
    pub corrupt_every: u32,
    /// Hold every outgoing frame this long before writing it.
    pub delay_us: u64,
    /// Reboot in the middle of the shot with this 0-based number, counted since the simulator
    /// started: state and timeline lost, fresh link, says `Hello`.
    pub reset_at_shot: Option<u32>,
    /// Stop sending and reading entirely once this many frames were sent since the simulator
    /// started (a card that stops answering; `Some(0)`: at once).
    pub silent_after_frames: Option<u64>,
    /// Card clock error in parts per million (positive: runs fast).
    pub drift_ppm: f64,
}

/// Configuration of a simulated card.
#[derive(Debug, Clone, PartialEq)]
pub struct CardSimConfig {
    /// Card identifier announced in `Hello`.
    pub card_id: u32,
    /// Output channels (at most 64).
    pub channels: u16,
    /// Card clock rate in Hz.
    pub clock_hz: u64,
    /// Largest timeline in events (the simulator allocates this much storage).
    pub max_events: u32,
    /// Events buffered ahead of playback (announced in `Hello`).
    pub buffer_events: u32,
    /// Heartbeat watchdog timeout in milliseconds.
    pub watchdog_ms: u32,
    /// Send window of the card's link, one of [`SUPPORTED_WINDOWS`].
    pub window: usize,
    /// Retransmission timing of the card's link.
    pub link: LinkConfig,
    /// Initial misbehaviour.
    pub misbehaviour: Misbehaviour,
}

impl Default for CardSimConfig {
    fn default() -> Self {
        Self {
            card_id: 1,
            channels: 8,
            clock_hz: 1_000_000_000,
            max_events: 1 << 20,
            buffer_events: 4096,
            watchdog_ms: 500,
            window: 8,
            link: LinkConfig::default(),
            misbehaviour: Misbehaviour::default(),
        }
    }
}

/// Counters of a simulated card since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CardSimStats {
    /// Intact frames received from hosts.
    pub frames_in: u64,
    /// Frames written to the transport (after dropping).
    pub frames_out: u64,
    /// Shots played to the end.
    pub shots_done: u64,
    /// Transitions into the safe state.
    pub safe_entries: u64,
    /// Watchdog expiries.
    pub watchdog_expiries: u64,
    /// Reboots (`reset_at_shot`).
    pub resets: u64,
    /// TCP connections accepted.
    pub connections: u64,
    /// Events of the current timeline loaded.
    pub events_loaded: u32,
    /// Successful `Arm`s.
    pub timelines_armed: u64,
}

/// Something notable that happened on the simulated card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimEvent {
    /// A host connected (TCP).
    Connected {
        /// The host's address.
        peer: String,
    },
    /// The host disconnected (TCP).
    Disconnected,
    /// A host said `Hello`.
    Hello,
    /// A timeline was armed.
    Armed {
        /// Its events.
        events: u32,
    },
    /// A shot was played to the end.
    ShotDone {
        /// Shots done since the simulator started.
        shots_done: u64,
    },
    /// The card entered the safe state.
    Safe {
        /// Why.
        cause: SafeCause,
    },
    /// The card rebooted (misbehaviour `reset_at_shot`).
    Reset,
}
