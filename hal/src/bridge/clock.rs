//! The card clock on the host timebase: offset and drift fitted from heartbeat round trips.
//!
//! Each heartbeat gives a sample (`t_send`, `t_recv`, `card_ticks`): the card read its clock between the
//! two host stamps, so (`(t_send + t_recv) / 2`, `card_ticks`) is within ±RTT/2 of the truth. The last
//! [`WINDOW`] samples are kept; those whose RTT is at most twice the smallest are fitted by least squares
//! `host_ns = offset + rate · ticks`, relative to the first kept sample so that `f64` keeps its precision.
//! With fewer than two usable samples, or while they span less than [`SPAN_PER_RTT`] round trips, the
//! nominal rate `1e9 / clock_hz` is used (the offset is still fitted).

use std::collections::VecDeque;

/// Samples kept.
pub const WINDOW: usize = 64;
/// The rate is fitted only once the kept samples span this many smallest round trips.
pub const SPAN_PER_RTT: f64 = 1000.0;

/// One heartbeat round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSample {
    /// Host monotonic ns when the heartbeat was sent.
    pub t_send_ns: u64,
    /// Host monotonic ns when the answer arrived.
    pub t_recv_ns: u64,
    /// The card clock in the answer.
    pub card_ticks: u64,
}

impl ClockSample {
    fn rtt(&self) -> u64 {
        self.t_recv_ns.saturating_sub(self.t_send_ns)
    }
    fn mid(&self) -> u64 {
        self.t_send_ns + self.rtt() / 2
    }
}

#[derive(Debug, Clone, Copy)]
struct Fit {
    ref_ticks: u64,
    ref_host: u64,
    /// Host ns at `ref_ticks`, relative to `ref_host`.
    offset: f64,
    /// Host ns per card tick.
    rate: f64,
}

/// The fitted relation between the card clock and the host monotonic clock.
#[derive(Debug, Clone)]
pub struct ClockEstimate {
    nominal: f64,
    samples: VecDeque<ClockSample>,
    fit: Option<Fit>,
}

impl ClockEstimate {
    /// An estimate for a card whose clock runs at `clock_hz` (nominal).
    pub fn new(clock_hz: u64) -> Self {
        Self {
            nominal: 1e9 / clock_hz.max(1) as f64,
            samples: VecDeque::with_capacity(WINDOW),
            fit: None,
        }
    }

    /// Adds a round trip and refits. Samples with `t_recv < t_send` are ignored.
    pub fn add_sample(&mut self, t_send_ns: u64, t_recv_ns: u64, card_ticks: u64) {
        if t_recv_ns < t_send_ns {
            return;
        }
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back(ClockSample {
            t_send_ns,
            t_recv_ns,
            card_ticks,
        });
        self.refit();
    }

    fn refit(&mut self) {
        let Some(min) = self.min_rtt_ns() else {
            self.fit = None;
            return;
        };
        let limit = min.saturating_mul(2);
        let kept = || self.samples.iter().filter(|s| s.rtt() <= limit);
        let Some(first) = kept().next() else {
            return;
        };
        let (ref_ticks, ref_host) = (first.card_ticks, first.mid());
        let rel = |s: &ClockSample| {
            let x = s.card_ticks as i128 - ref_ticks as i128;
            let y = s.mid() as i128 - ref_host as i128;
            (x as f64, y as f64)
        };
        let n = kept().count() as f64;
        let (sx, sy) = kept()
            .map(rel)
            .fold((0.0, 0.0), |a, (x, y)| (a.0 + x, a.1 + y));
        let (mx, my) = (sx / n, sy / n);
        let (sxx, sxy) = kept().map(rel).fold((0.0, 0.0), |a, (x, y)| {
            (a.0 + (x - mx) * (x - mx), a.1 + (x - mx) * (y - my))
        });
        // Round-trip noise over a short span would swamp the slope: fit the rate only once the kept
        // samples span at least SPAN_PER_RTT round trips (noise ≤ 1/SPAN_PER_RTT of the rate).
        let (lo, hi) = kept()
            .map(rel)
            .fold((f64::MAX, f64::MIN), |a, (x, _)| (a.0.min(x), a.1.max(x)));
        let span_ns = (hi - lo) * self.nominal;
        let rate = if n >= 2.0 && sxx > 0.0 && span_ns >= SPAN_PER_RTT * min as f64 {
            sxy / sxx
        } else {
            self.nominal
        };
        // A fit that says time runs backwards (or 2x off) is noise: keep the nominal rate.
        let rate = if rate > 0.5 * self.nominal && rate < 2.0 * self.nominal {
            rate
        } else {
            self.nominal
        };
        self.fit = Some(Fit {
            ref_ticks,
            ref_host,
            offset: my - rate * mx,
            rate,
        });
    }

    /// Host monotonic ns at card tick `ticks` (before any sample: the nominal rate from tick 0 = 0 ns).
    pub fn card_to_host(&self, ticks: u64) -> u64 {
        let Some(f) = self.fit else {
            return to_u64(ticks as f64 * self.nominal);
        };
        let x = (ticks as i128 - f.ref_ticks as i128) as f64;
        sat_add(f.ref_host, f.offset + f.rate * x)
    }

    /// Card tick at host monotonic ns `ns` (rounded to the nearest tick, never negative).
    pub fn host_to_card(&self, ns: u64) -> u64 {
        let Some(f) = self.fit else {
            return to_u64(ns as f64 / self.nominal);
        };
        let y = (ns as i128 - f.ref_host as i128) as f64;
        let dx = ((y - f.offset) / f.rate).round();
        sat_add(f.ref_ticks, dx)
    }

    /// Card clock rate error in parts per million: positive when the card's clock runs fast.
    pub fn drift_ppm(&self) -> f64 {
        match self.fit {
            Some(f) => (self.nominal / f.rate - 1.0) * 1e6,
            None => 0.0,
        }
    }

    /// Host ns per card tick currently used.
    pub fn ns_per_tick(&self) -> f64 {
        self.fit.map(|f| f.rate).unwrap_or(self.nominal)
    }

    /// Samples in the window.
    pub fn samples(&self) -> usize {
        self.samples.len()
    }

    /// The smallest round trip in the window.
    pub fn min_rtt_ns(&self) -> Option<u64> {
        self.samples.iter().map(ClockSample::rtt).min()
    }
}

fn to_u64(v: f64) -> u64 {
    if v.is_nan() || v <= 0.0 {
        0
    } else if v >= u64::MAX as f64 {
        u64::MAX
    } else {
        v as u64
    }
}

/// `base + delta` rounded, saturating at 0 and `u64::MAX`.
fn sat_add(base: u64, delta: f64) -> u64 {
    let d = delta.round();
    if !d.is_finite() {
        return if d > 0.0 { u64::MAX } else { 0 };
    }
    let d = d.clamp(i64::MIN as f64, i64::MAX as f64) as i64;
    if d >= 0 {
        base.saturating_add(d as u64)
    } else {
        base.saturating_sub(d.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A card at `hz` nominal running `ppm` fast, its tick 0 at host ns `epoch`.
    fn card_ticks(host_ns: u64, epoch: u64, hz: f64, ppm: f64) -> u64 {
        ((host_ns - epoch) as f64 * hz * (1.0 + ppm * 1e-6) / 1e9) as u64 + 1_000_000
    }

    #[test]
    fn recovers_drift_and_offset_from_noisy_round_trips() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let hz = 100e6;
        let ppm = 100.0;
        let epoch = 5_000_000_000_000u64;
        let min_delay = 20_000u64;
        let mut est = ClockEstimate::new(hz as u64);
        let mut t = epoch + 1_000_000_000;
        for _ in 0..200 {
            t += 100_000_000;
            // Random positive delays each way, occasionally a long one.
            let up = min_delay
                + rng.gen_range(0..10_000)
                + if rng.gen_bool(0.1) { 2_000_000 } else { 0 };
            let down = min_delay + rng.gen_range(0..10_000);
            let read = t + up;
            est.add_sample(t, read + down, card_ticks(read, epoch, hz, ppm));
        }
        assert_eq!(est.samples(), WINDOW);
        let drift = est.drift_ppm();
        assert!((drift - ppm).abs() < 3.0, "drift {drift} ppm");
        // Conversions agree with the truth within the smallest one-way delay.
        let probe = t + 50_000_000;
        let ticks = card_ticks(probe, epoch, hz, ppm);
        let back = est.card_to_host(ticks);
        assert!(
            back.abs_diff(probe) <= min_delay,
            "off by {} ns",
            back.abs_diff(probe)
        );
        let fwd = est.host_to_card(probe);
        assert!(
            fwd.abs_diff(ticks) <= min_delay / 10,
            "off by {} ticks",
            fwd.abs_diff(ticks)
        );
        assert!(est.min_rtt_ns().unwrap() >= 2 * min_delay);
    }

    #[test]
    fn one_sample_uses_the_nominal_rate_and_no_drift() {
        let mut est = ClockEstimate::new(1_000_000); // 1 µs ticks
        est.add_sample(1_000_000, 1_000_200, 500);
        assert_eq!(est.drift_ppm(), 0.0);
        assert_eq!(est.card_to_host(500), 1_000_100);
        assert_eq!(est.card_to_host(510), 1_010_100);
        assert_eq!(est.host_to_card(1_010_100), 510);
        assert_eq!(est.host_to_card(0), 0);
    }

    #[test]
    fn slow_outliers_do_not_bend_the_fit() {
        let mut est = ClockEstimate::new(1_000_000_000);
        for i in 0..20u64 {
            let t = 1_000_000 * i;
            // Every third sample has a 1 ms asymmetric delay on the way back only.
            let extra = if i % 3 == 0 { 1_000_000 } else { 0 };
            est.add_sample(t, t + 1_000 + extra, t + 500);
        }
        assert!(est.drift_ppm().abs() < 1e-6, "{}", est.drift_ppm());
        assert_eq!(est.card_to_host(5_000_500), 5_000_500);
    }
}
