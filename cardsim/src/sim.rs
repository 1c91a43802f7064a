//! The handle of a running simulated card.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shotline_firmware_bridge::CardState;

use crate::config::{
    CardSimConfig, CardSimStats, Listen, Misbehaviour, SimEvent, SUPPORTED_WINDOWS,
};
use crate::error::CardSimError;
use crate::port::Port;
use crate::runner::{self, Shared};

/// Largest `max_events` accepted (the simulator stores 32 bytes per event).
pub const MAX_SIM_EVENTS: u32 = 1 << 24;

/// A simulated timing card running in its own thread; stopped by [`CardSim::stop`] or on drop.
#[derive(Debug)]
pub struct CardSim {
    shared: Arc<Shared>,
    endpoint: String,
    thread: Option<JoinHandle<()>>,
}

fn invalid(field: &'static str, value: impl ToString, allowed: &str) -> CardSimError {
    CardSimError::Config {
        field,
        value: value.to_string(),
        allowed: allowed.to_string(),
    }
}

fn validate(cfg: &CardSimConfig) -> Result<(), CardSimError> {
    if !SUPPORTED_WINDOWS.contains(&cfg.window) {
        return Err(invalid(
            "window",
            cfg.window,
            &format!("must be one of {SUPPORTED_WINDOWS:?}"),
        ));
    }
    if !(1..=64).contains(&cfg.channels) {
        return Err(invalid("channels", cfg.channels, "must be 1..=64"));
    }
    if cfg.clock_hz == 0 {
        return Err(invalid("clock_hz", cfg.clock_hz, "must be at least 1"));
    }
    if !(1..=MAX_SIM_EVENTS).contains(&cfg.max_events) {
        return Err(invalid(
            "max_events",
            cfg.max_events,
            &format!("must be 1..={MAX_SIM_EVENTS}"),
        ));
    }
    if cfg.watchdog_ms == 0 {
        return Err(invalid(
            "watchdog_ms",
            cfg.watchdog_ms,
            "must be at least 1",
        ));
    }
    if !cfg.misbehaviour.drift_ppm.is_finite() || cfg.misbehaviour.drift_ppm.abs() > 100_000.0 {
        return Err(invalid(
            "misbehaviour.drift_ppm",
            cfg.misbehaviour.drift_ppm,
            "must be a finite number within ±100000",
        ));
    }
    Ok(())
}

impl CardSim {
    /// Validates `cfg`, opens the transport and starts the card thread.
    pub fn spawn(cfg: CardSimConfig, listen: Listen) -> Result<CardSim, CardSimError> {
        validate(&cfg)?;
        let port = match listen {
            Listen::Tcp(addr) => Port::tcp(addr)?,
            Listen::Pty => Port::pty()?,
        };
        let endpoint = port.endpoint.clone();
        let shared = Arc::new(Shared::new(cfg.misbehaviour.clone()));
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("cardsim-{}", cfg.card_id))
            .spawn(move || match cfg.window {
                1 => runner::run::<1>(cfg, port, for_thread),
                2 => runner::run::<2>(cfg, port, for_thread),
                4 => runner::run::<4>(cfg, port, for_thread),
                16 => runner::run::<16>(cfg, port, for_thread),
                32 => runner::run::<32>(cfg, port, for_thread),
                _ => runner::run::<8>(cfg, port, for_thread),
            })
            .map_err(CardSimError::Thread)?;
        Ok(CardSim {
            shared,
            endpoint,
            thread: Some(thread),
        })
    }

    /// Where hosts connect: `IP:port` for TCP, the slave path (`/dev/pts/N`) for a pty.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// Replaces the misbehaviour. Returns once the card loop has taken it over (within one loop
    /// turn, normally at most ~20 ms; gives up waiting after 2 s or when the card thread stopped).
    pub fn set_misbehaviour(&self, misbehaviour: Misbehaviour) {
        let generation = {
            let mut m = self.shared.misbehaviour.lock();
            *m = misbehaviour;
            self.shared.generation.fetch_add(1, Ordering::AcqRel) + 1
        };
        let give_up = Instant::now() + Duration::from_secs(2);
        while self.shared.applied.load(Ordering::Acquire) < generation
            && Instant::now() < give_up
            && self.thread.as_ref().is_some_and(|t| !t.is_finished())
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The current misbehaviour.
    pub fn misbehaviour(&self) -> Misbehaviour {
        self.shared.misbehaviour.lock().clone()
    }

    /// The card's state.
    pub fn state(&self) -> CardState {
        CardState::from_code(self.shared.state.load(Ordering::Acquire)).unwrap_or(CardState::Idle)
    }

    /// Counters since the simulator started.
    pub fn stats(&self) -> CardSimStats {
        *self.shared.stats.lock()
    }

    /// `true` when every output is at its safe level and no pulse is in progress.
    pub fn outputs_safe(&self) -> bool {
        self.shared.outputs_safe.load(Ordering::Acquire)
    }

    /// The next notable event (oldest first; the last 10 000 are kept), waiting up to `timeout`.
    pub fn next_event(&self, timeout: Duration) -> Option<SimEvent> {
        self.shared.next_event(timeout)
    }

    /// Stops the card thread and closes the transport.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for CardSim {
    fn drop(&mut self) {
        self.shutdown();
    }
}
