//! `bridge_upload`: timeline events per second uploaded to a timing card and acknowledged, over loopback TCP
//! and over a pseudo-terminal, through the host session of `hal::bridge` and the firmware simulator
//! (`shotline-cardsim`, the reference no_std card). One row per transport and host send window: the default
//! window (8 frames in flight) and the obvious alternative, stop-and-wait (window 1), in the same run.
//!
//! An upload is timed from the request to its answer: every chunk (44 events, 1 022-byte payload) sent,
//! acknowledged by the card's link, and the closing heartbeat barrier answered (so every event was stored
//! and checked by the card). The pseudo-terminal has no baud limit: its figure is the path's overhead, not a
//! serial line's speed. Target: ≥ 1 000 000 events/s over TCP with the default window.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use shotline_benches::{
    args_or_exit, new_histogram, record, Percentiles, Report, ResultRow, Target,
};
use shotline_cardsim::{CardSim, CardSimConfig, Listen};
use shotline_firmware_bridge::WireEvent;
use shotline_hal::bridge::{Endpoint, Request, Session, SessionConfig};

/// A timeline of `n` pulses spread over 8 channels.
fn timeline(n: usize) -> Vec<WireEvent> {
    (0..n)
        .map(|i| WireEvent {
            t_ticks: i as u64 * 100,
            channel: (i % 8) as u16,
            kind: 1,
            duration_ticks: 50,
            value: (i % 1_000_000) as i32,
        })
        .collect()
}

struct Measured {
    per_s: f64,
    uploads: Percentiles,
    retransmitted: u32,
}

fn measure(listen: Listen, window: usize, events: &[WireEvent], runs: usize) -> Result<Measured> {
    let card = CardSim::spawn(
        CardSimConfig {
            max_events: events.len() as u32,
            ..CardSimConfig::default()
        },
        listen,
    )
    .map_err(|e| anyhow!("card simulator: {e}"))?;
    let endpoint = match card.endpoint() {
        e if e.starts_with('/') => Endpoint::Serial {
            path: e,
            baud: 115_200,
        },
        e => Endpoint::Tcp { address: e },
    };
    let session = Session::start(SessionConfig {
        window,
        reply_timeout_ms: 120_000,
        ..SessionConfig::new(endpoint)
    })
    .map_err(|e| anyhow!("session: {e}"))?;
    session
        .wait_connected(Duration::from_secs(10))
        .map_err(|e| anyhow!("connecting: {e}"))?;
    let mut histogram = new_histogram();
    let mut times = Vec::with_capacity(runs);
    for run in 0..=runs {
        let request = Request::Upload {
            timeline_id: run as u32 + 1,
            events: events.to_vec(),
        };
        let start = Instant::now();
        session
            .request(request, Duration::from_secs(120))
            .map_err(|e| anyhow!("upload {run}: {e}"))?;
        let took = start.elapsed();
        // The first upload warms up the connection and the card's memory.
        if run > 0 {
            record(&mut histogram, took.as_nanos() as u64);
            times.push(took);
        }
    }
    if card.stats().events_loaded as usize != events.len() {
        return Err(anyhow!(
            "the card holds {} events, expected {}",
            card.stats().events_loaded,
            events.len()
        ));
    }
    times.sort();
    let median = times[times.len() / 2].as_secs_f64();
    let retransmitted = session.status().link.retransmitted;
    drop(session);
    card.stop();
    Ok(Measured {
        per_s: events.len() as f64 / median,
        uploads: Percentiles::of(&histogram),
        retransmitted,
    })
}

fn main() -> Result<()> {
    let args = args_or_exit(
        "bridge_upload",
        "bridge_upload: timeline events/s uploaded to the firmware simulator and acknowledged, over \
         loopback TCP and a pseudo-terminal, default window vs stop-and-wait",
    );
    let (n, runs) = if args.quick {
        (100_000usize, 3usize)
    } else {
        (1_000_000, 5)
    };
    let events = timeline(n);
    let mut report = Report::new("bridge_upload", args);
    for (transport, window) in [("tcp", 8), ("tcp", 1), ("pty", 8), ("pty", 1)] {
        let listen = match transport {
            "tcp" => Listen::Tcp("127.0.0.1:0".parse().context("loopback address")?),
            _ => Listen::Pty,
        };
        let m = measure(listen, window, &events, runs)
            .with_context(|| format!("{transport} with window {window}"))?;
        report.results.push(
            ResultRow::new(format!("{transport}_window{window}"))
                .rate(m.per_s)
                .percentiles(&m.uploads)
                .field("transport", transport)
                .field("window", window as u64)
                .field("events_per_upload", n as u64)
                .field("retransmissions", u64::from(m.retransmitted)),
        );
    }
    let tcp = report
        .row("tcp_window8")
        .and_then(|r| r.per_s)
        .unwrap_or(0.0);
    report.check(
        "tcp_window8",
        Target::new(
            "target_tcp_1m_events_per_s",
            tcp >= 1_000_000.0,
            "≥ 1 000 000 events/s uploaded and acknowledged over loopback TCP",
            format!("{tcp:.0} events/s"),
        ),
    );
    report.notes.push(
        "p50/p99/max are the times of whole uploads (chunks sent and acknowledged, then the heartbeat \
         barrier answered); per_s = events per upload / median upload time"
            .into(),
    );
    report.print(args.json)?;
    Ok(())
}
