//! The card clock: its own epoch (the simulator's start), a nominal rate and an adjustable drift.

use std::time::{Duration, Instant};

use shotline_firmware_bridge::CardTime;

/// Card ticks = elapsed × `clock_hz` × (1 + drift·10⁻⁶), continuous when the drift changes.
#[derive(Debug, Clone)]
pub(crate) struct SimClock {
    epoch: Instant,
    clock_hz: u64,
    base_instant: Instant,
    base_ticks: u64,
    drift_ppm: f64,
}

impl SimClock {
    pub(crate) fn new(clock_hz: u64, drift_ppm: f64) -> Self {
        let now = Instant::now();
        Self {
            epoch: now,
            clock_hz: clock_hz.max(1),
            base_instant: now,
            base_ticks: 0,
            drift_ppm: sane(drift_ppm),
        }
    }

    fn rate(&self) -> f64 {
        self.clock_hz as f64 / 1e9 * (1.0 + self.drift_ppm * 1e-6)
    }

    /// Ticks at `at` (not before the last rebase).
    pub(crate) fn ticks_at(&self, at: Instant) -> u64 {
        let ns = at.saturating_duration_since(self.base_instant).as_nanos();
        let delta = if self.drift_ppm == 0.0 {
            u64::try_from(ns * u128::from(self.clock_hz) / 1_000_000_000).unwrap_or(u64::MAX)
        } else {
            (ns as f64 * self.rate()) as u64
        };
        self.base_ticks.saturating_add(delta)
    }

    /// The card time now.
    pub(crate) fn now(&self) -> CardTime {
        let at = Instant::now();
        CardTime {
            ticks: self.ticks_at(at),
            ms: u64::try_from(at.duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// The instant at which the clock reads `ticks` (now or later).
    pub(crate) fn instant_of(&self, ticks: u64) -> Instant {
        let delta = ticks.saturating_sub(self.base_ticks) as f64;
        let ns = (delta / self.rate()).min(1e15);
        self.base_instant + Duration::from_nanos(ns as u64)
    }

    /// Changes the drift from now on without a jump in the ticks.
    pub(crate) fn set_drift(&mut self, drift_ppm: f64) {
        let drift_ppm = sane(drift_ppm);
        if drift_ppm == self.drift_ppm {
            return;
        }
        let now = Instant::now();
        self.base_ticks = self.ticks_at(now);
        self.base_instant = now;
        self.drift_ppm = drift_ppm;
    }
}

/// Drift limited to ±10⁵ ppm (10 %); NaN counts as 0.
fn sane(ppm: f64) -> f64 {
    if ppm.is_finite() {
        ppm.clamp(-100_000.0, 100_000.0)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_changes_rate_without_jumps() {
        let mut c = SimClock::new(1_000_000_000, 0.0);
        let t0 = c.base_instant;
        assert_eq!(c.ticks_at(t0 + Duration::from_millis(10)), 10_000_000);
        c.base_instant = t0;
        c.set_drift(100.0);
        let base = c.base_ticks;
        let at = c.base_instant + Duration::from_secs(1);
        let ticks = c.ticks_at(at) - base;
        assert!((1_000_099_990..=1_000_100_010).contains(&ticks), "{ticks}");
        let back = c.instant_of(c.ticks_at(at));
        let err = if back > at { back - at } else { at - back };
        assert!(err < Duration::from_micros(1), "{err:?}");
    }
}
