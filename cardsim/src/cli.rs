//! The `shotline-cardsim` command line: one JSON line per notable event on stdout.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use serde_json::{json, Value};
use shotline_firmware_bridge::card::SafeCause;

use crate::config::{CardSimConfig, Listen, Misbehaviour, SimEvent};
use crate::sim::CardSim;

/// A simulated timing card speaking the shotline firmware bridge protocol.
#[derive(Debug, Parser)]
#[command(name = "shotline-cardsim", version)]
struct Args {
    /// Listen on this TCP address (e.g. 127.0.0.1:7700; port 0 picks a free port).
    #[arg(
        long,
        value_name = "ADDR",
        required_unless_present = "pty",
        conflicts_with = "pty"
    )]
    tcp: Option<SocketAddr>,
    /// Create a pseudo-terminal; the host opens the printed /dev/pts/N like a serial device.
    #[arg(long)]
    pty: bool,
    /// Card identifier announced in Hello.
    #[arg(long, default_value_t = 1)]
    card_id: u32,
    /// Output channels (1..=64).
    #[arg(long, default_value_t = 8)]
    channels: u16,
    /// Card clock rate in Hz.
    #[arg(long, default_value_t = 1_000_000_000)]
    clock_hz: u64,
    /// Heartbeat watchdog timeout in milliseconds.
    #[arg(long, default_value_t = 500)]
    watchdog_ms: u32,
    /// Largest timeline in events.
    #[arg(long, default_value_t = 1 << 20)]
    max_events: u32,
    /// Send window of the card's link (1, 2, 4, 8, 16 or 32).
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// Drop every Nth outgoing frame (0: off).
    #[arg(long, default_value_t = 0)]
    drop_every: u32,
    /// Corrupt one byte of every Nth outgoing frame (0: off).
    #[arg(long, default_value_t = 0)]
    corrupt_every: u32,
    /// Hold every outgoing frame this many microseconds.
    #[arg(long, default_value_t = 0)]
    delay_us: u64,
    /// Reboot in the middle of the shot with this 0-based number since start.
    #[arg(long)]
    reset_at_shot: Option<u32>,
    /// Stop sending and reading after this many frames sent.
    #[arg(long)]
    silent_after_frames: Option<u64>,
    /// Card clock error in ppm (positive: fast).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    drift_ppm: f64,
}

fn emit(line: &Value) {
    let mut out = std::io::stdout().lock();
    // A closed stdout must not stop the card.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn event_json(e: &SimEvent) -> Value {
    match e {
        SimEvent::Connected { peer } => json!({"event": "connected", "peer": peer}),
        SimEvent::Disconnected => json!({"event": "disconnected"}),
        SimEvent::Hello => json!({"event": "hello"}),
        SimEvent::Armed { events } => json!({"event": "armed", "events": events}),
        SimEvent::ShotDone { shots_done } => {
            json!({"event": "shot_done", "shots_done": shots_done})
        }
        SimEvent::Safe { cause } => json!({
            "event": "safe",
            "cause": match cause { SafeCause::Watchdog => "watchdog", SafeCause::Host => "host" },
        }),
        SimEvent::Reset => json!({"event": "reset"}),
    }
}

/// Runs the simulator from the command line until killed (SIGTERM / SIGINT); returns the exit
/// code (2: bad arguments, 1: could not start).
pub fn main() -> i32 {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let listen = match args.tcp {
        Some(addr) => Listen::Tcp(addr),
        None => Listen::Pty,
    };
    let cfg = CardSimConfig {
        card_id: args.card_id,
        channels: args.channels,
        clock_hz: args.clock_hz,
        max_events: args.max_events,
        watchdog_ms: args.watchdog_ms,
        window: args.window,
        misbehaviour: Misbehaviour {
            drop_every: args.drop_every,
            corrupt_every: args.corrupt_every,
            delay_us: args.delay_us,
            reset_at_shot: args.reset_at_shot,
            silent_after_frames: args.silent_after_frames,
            drift_ppm: args.drift_ppm,
        },
        ..CardSimConfig::default()
    };
    let sim = match CardSim::spawn(cfg, listen) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("shotline-cardsim: {e}");
            return 1;
        }
    };
    emit(&json!({"event": "listening", "endpoint": sim.endpoint()}));
    loop {
        if let Some(e) = sim.next_event(Duration::from_secs(1)) {
            emit(&event_json(&e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_map_to_the_config_and_transports_exclude_each_other() {
        let a = Args::try_parse_from([
            "shotline-cardsim",
            "--tcp",
            "127.0.0.1:7700",
            "--drop-every",
            "9",
            "--reset-at-shot",
            "3",
            "--drift-ppm",
            "-25.5",
        ])
        .unwrap();
        assert_eq!(a.tcp, Some("127.0.0.1:7700".parse().unwrap()));
        assert_eq!(
            (a.drop_every, a.reset_at_shot, a.drift_ppm),
            (9, Some(3), -25.5)
        );
        assert_eq!(
            (a.clock_hz, a.watchdog_ms, a.max_events),
            (1_000_000_000, 500, 1 << 20)
        );
        assert!(Args::try_parse_from(["shotline-cardsim"]).is_err());
        assert!(
            Args::try_parse_from(["shotline-cardsim", "--pty", "--tcp", "127.0.0.1:1"]).is_err()
        );
        assert!(Args::try_parse_from(["shotline-cardsim", "--pty"]).is_ok());
    }

    #[test]
    fn events_are_one_json_object_each() {
        let safe = event_json(&SimEvent::Safe {
            cause: SafeCause::Watchdog,
        });
        assert_eq!(safe.to_string(), r#"{"event":"safe","cause":"watchdog"}"#);
        let done = event_json(&SimEvent::ShotDone { shots_done: 3 });
        assert_eq!(done.to_string(), r#"{"event":"shot_done","shots_done":3}"#);
    }
}
