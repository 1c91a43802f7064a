//! HAL events as card events: times in card ticks, kinds and scaled values (see
//! `docs/firmware-bridge.md`, section 8 "Shots").

use shotline_firmware_bridge::WireEvent;

use crate::time::Nanos;
use crate::timeline::{Action, Event};

/// `kind` of a digital level change (`value` 0 or 1).
pub const KIND_DIGITAL: u8 = 0;
/// `kind` of a pulse (`value` = setpoint × value_scale, held for `duration_ticks`).
pub const KIND_PULSE: u8 = 1;
/// `kind` of an acquisition (`value` = samples to return).
pub const KIND_ACQUIRE: u8 = 2;

/// How HAL times map to card ticks: `clock_period_ns` of the device is `ticks_per_period` card ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickScale {
    /// The device clock period (ns).
    pub period_ns: Nanos,
    /// Card ticks in one period.
    pub ticks_per_period: u64,
}

impl TickScale {
    /// The scale for a device period on a card clock, or a message naming both when the period is not
    /// a whole number (≥ 1) of card ticks.
    pub fn new(period_ns: Nanos, clock_hz: u64) -> Result<Self, String> {
        let product = u128::from(period_ns) * u128::from(clock_hz);
        if period_ns == 0 || clock_hz == 0 || product % 1_000_000_000 != 0 || product == 0 {
            return Err(format!(
                "clock_period_ns {period_ns} is not a whole number of ticks of the card clock ({clock_hz} Hz, {} ns per tick)",
                if clock_hz == 0 { f64::INFINITY } else { 1e9 / clock_hz as f64 }
            ));
        }
        let ticks = product / 1_000_000_000;
        let ticks_per_period = u64::try_from(ticks).map_err(|_| {
            format!("clock_period_ns {period_ns} at {clock_hz} Hz is too many ticks")
        })?;
        Ok(Self {
            period_ns,
            ticks_per_period,
        })
    }

    /// `ns` (a multiple of the period) in card ticks, saturating.
    pub fn ticks(&self, ns: Nanos) -> u64 {
        (ns / self.period_ns.max(1)).saturating_mul(self.ticks_per_period)
    }
}

/// Converts event `index` to its wire form. `value_scale` multiplies pulse setpoints; the result must fit
/// an `i32`.
pub fn to_wire(
    index: usize,
    event: &Event,
    scale: TickScale,
    value_scale: f64,
) -> Result<WireEvent, String> {
    let (kind, duration_ns, value) = match event.action {
        Action::Digital { high } => (KIND_DIGITAL, 0, i32::from(high)),
        Action::Pulse {
            duration_ns,
            setpoint,
        } => {
            let scaled = (setpoint * value_scale).round();
            if !(scaled.is_finite() && scaled >= i32::MIN as f64 && scaled <= i32::MAX as f64) {
                return Err(format!(
                    "event {index}: setpoint {setpoint} × value_scale {value_scale} = {scaled} does not fit the card's 32-bit value (±{})",
                    i32::MAX
                ));
            }
            (KIND_PULSE, duration_ns, scaled as i32)
        }
        Action::Acquire { exposure_ns } => (KIND_ACQUIRE, exposure_ns, 1),
    };
    Ok(WireEvent {
        t_ticks: scale.ticks(event.t_ns),
        channel: event.channel,
        kind,
        duration_ticks: scale.ticks(duration_ns),
        value,
    })
}

/// The name of a wire error code (section 6 of the protocol, plus the reference card's own codes).
pub fn error_name(code: u16) -> &'static str {
    match code {
        1 => "BufferTooSmall",
        2 => "PayloadTooLarge",
        3 => "FrameTooShort",
        4 => "FrameTooLong",
        5 => "CrcMismatch",
        6 => "CobsMalformed",
        7 => "WrongVersion",
        8 => "UnknownMessageType",
        9 => "LengthMismatch",
        10 => "BadMessageLength",
        11 => "TooManyItems",
        12 => "InvalidUtf8",
        13 => "Busy",
        14 => "LinkDown",
        15 => "UnsequencedMessage",
        16 => "InvalidState",
        17 => "UploadOutOfOrder",
        18 => "TimelineMismatch",
        19 => "TimelineIncomplete",
        20 => "TimelineTooLarge",
        21 => "WatchdogExpired",
        0x8001 => "UnsupportedEventKind",
        0x8000..=0xFFFF => "CardSpecific",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_must_be_whole_ticks() {
        let s = TickScale::new(10, 100_000_000).unwrap();
        assert_eq!(s.ticks_per_period, 1);
        assert_eq!(s.ticks(250), 25);
        assert_eq!(TickScale::new(1000, 1_000_000).unwrap().ticks(5000), 5);
        let err = TickScale::new(15, 100_000_000).unwrap_err();
        assert!(err.contains("15") && err.contains("100000000 Hz"), "{err}");
        assert!(TickScale::new(1, 100_000_000).is_err());
    }

    #[test]
    fn actions_map_to_kinds_and_scaled_values() {
        let s = TickScale::new(10, 100_000_000).unwrap();
        let ev = |action| Event {
            t_ns: 100,
            channel: 2,
            action,
        };
        let d = to_wire(0, &ev(Action::Digital { high: true }), s, 1e6).unwrap();
        assert_eq!(
            (d.kind, d.value, d.t_ticks, d.channel),
            (KIND_DIGITAL, 1, 10, 2)
        );
        let p = Action::Pulse {
            duration_ns: 50,
            setpoint: 0.25,
        };
        let p = to_wire(1, &ev(p), s, 1e6).unwrap();
        assert_eq!(
            (p.kind, p.value, p.duration_ticks),
            (KIND_PULSE, 250_000, 5)
        );
        let a = to_wire(2, &ev(Action::Acquire { exposure_ns: 30 }), s, 1e6).unwrap();
        assert_eq!((a.kind, a.value, a.duration_ticks), (KIND_ACQUIRE, 1, 3));
        let big = Action::Pulse {
            duration_ns: 0,
            setpoint: 5000.0,
        };
        let err = to_wire(7, &ev(big), s, 1e6).unwrap_err();
        assert!(err.contains("event 7") && err.contains("5000"), "{err}");
    }
}
