//! Timelines: per device, the events of one shot at integer-nanosecond times relative to the shot start.

use crate::time::Nanos;

/// What a device does at an event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// Set a digital output level.
    Digital {
        /// Level after the event.
        high: bool,
    },
    /// Hold an output (an RF tone, a detuning, an interaction field, a loading beam) for `duration_ns` at
    /// `setpoint` (device units: amplitude, atom-number target, ...).
    Pulse {
        /// How long the output is held, a multiple of the device clock period.
        duration_ns: Nanos,
        /// The output value while held.
        setpoint: f64,
    },
    /// Expose a sensor for `exposure_ns` and read out one value at the end of the shot.
    Acquire {
        /// Exposure time, a multiple of the device clock period.
        exposure_ns: Nanos,
    },
}

impl Action {
    /// How long the action occupies its channel.
    pub fn duration_ns(&self) -> Nanos {
        match self {
            Action::Digital { .. } => 0,
            Action::Pulse { duration_ns, .. } => *duration_ns,
            Action::Acquire { exposure_ns } => *exposure_ns,
        }
    }
}

/// One timed event of a device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    /// Time relative to the shot start.
    pub t_ns: Nanos,
    /// Output channel of the device.
    pub channel: u16,
    /// What happens.
    pub action: Action,
}

/// The compiled program of one device for one experiment: the events of every shot.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeviceTimeline {
    /// Device name as configured.
    pub device: String,
    /// Events sorted by time.
    pub events: Vec<Event>,
}

/// Longest timeline a shot may have (one hour): keeps every `t0 + t` far from overflow.
pub const MAX_SHOT_NS: Nanos = 3_600_000_000_000;

/// Why a timeline was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TimelineError {
    /// Events must be in time order.
    #[error("device {device}: event {index} at {t_ns} ns comes before the previous event at {previous_ns} ns")]
    Unsorted {
        /// Device.
        device: String,
        /// Event index.
        index: usize,
        /// Its time.
        t_ns: Nanos,
        /// The previous event's time.
        previous_ns: Nanos,
    },
    /// Times and durations must be multiples of the device clock period.
    #[error("device {device}: event {index}: {what} {value} ns is not a multiple of the clock period {period_ns} ns")]
    Misaligned {
        /// Device.
        device: String,
        /// Event index.
        index: usize,
        /// `time` or `duration`.
        what: &'static str,
        /// Offending value.
        value: Nanos,
        /// Clock period.
        period_ns: Nanos,
    },
    /// Two events on one channel overlap.
    #[error("device {device}: event {index} at {t_ns} ns on channel {channel} overlaps the previous event on that channel, busy until {busy_until_ns} ns")]
    Overlap {
        /// Device.
        device: String,
        /// Event index.
        index: usize,
        /// Channel.
        channel: u16,
        /// Its time.
        t_ns: Nanos,
        /// End of the previous event on the channel.
        busy_until_ns: Nanos,
    },
    /// The event ends after [`MAX_SHOT_NS`] or overflows.
    #[error("device {device}: event {index} ends beyond the longest allowed shot ({max_ns} ns)")]
    TooLong {
        /// Device.
        device: String,
        /// Event index.
        index: usize,
        /// Limit.
        max_ns: Nanos,
    },
    /// A setpoint is NaN or infinite.
    #[error("device {device}: event {index}: setpoint {value} is not a finite number")]
    BadValue {
        /// Device.
        device: String,
        /// Event index.
        index: usize,
        /// Value.
        value: f64,
    },
    /// The channel does not exist on the device.
    #[error("device {device}: event {index}: channel {channel} does not exist (the device has {channels})")]
    NoSuchChannel {
        /// Device.
        device: String,
        /// Event index.
        index: usize,
        /// Channel.
        channel: u16,
        /// Channel count.
        channels: u16,
    },
}

impl DeviceTimeline {
    /// Time at which the last event of the timeline ends.
    pub fn end_ns(&self) -> Nanos {
        self.events
            .iter()
            .map(|e| e.t_ns.saturating_add(e.action.duration_ns()))
            .max()
            .unwrap_or(0)
    }

    /// Checks order, clock alignment, per-channel overlap, range and values.
    pub fn validate(&self, period_ns: Nanos, channels: u16) -> Result<(), TimelineError> {
        let period = period_ns.max(1);
        let device = || self.device.clone();
        let mut previous: Option<Nanos> = None;
        let mut busy: Vec<(u16, Nanos)> = Vec::new();
        for (index, ev) in self.events.iter().enumerate() {
            if ev.channel >= channels {
                return Err(TimelineError::NoSuchChannel {
                    device: device(),
                    index,
                    channel: ev.channel,
                    channels,
                });
            }
            if let Some(p) = previous {
                if ev.t_ns < p {
                    return Err(TimelineError::Unsorted {
                        device: device(),
                        index,
                        t_ns: ev.t_ns,
                        previous_ns: p,
                    });
                }
            }
            previous = Some(ev.t_ns);
            let duration = ev.action.duration_ns();
            for (what, value) in [("time", ev.t_ns), ("duration", duration)] {
                if value % period != 0 {
                    return Err(TimelineError::Misaligned {
                        device: device(),
                        index,
                        what,
                        value,
                        period_ns: period,
                    });
                }
            }
            let end = ev.t_ns.checked_add(duration);
            match end {
                Some(end) if end <= MAX_SHOT_NS => {}
                _ => {
                    return Err(TimelineError::TooLong {
                        device: device(),
                        index,
                        max_ns: MAX_SHOT_NS,
                    })
                }
            }
            if let Action::Pulse { setpoint, .. } = ev.action {
                if !setpoint.is_finite() {
                    return Err(TimelineError::BadValue {
                        device: device(),
                        index,
                        value: setpoint,
                    });
                }
            }
            let end = ev.t_ns + duration;
            match busy.iter_mut().find(|(c, _)| *c == ev.channel) {
                Some((_, until)) => {
                    if ev.t_ns < *until {
                        return Err(TimelineError::Overlap {
                            device: device(),
                            index,
                            channel: ev.channel,
                            t_ns: ev.t_ns,
                            busy_until_ns: *until,
                        });
                    }
                    *until = end;
                }
                None => busy.push((ev.channel, end)),
            }
        }
        Ok(())
    }
}

/// Rounds `ns` to the nearest multiple of `period_ns` (ties up).
pub fn round_to_period(ns: f64, period_ns: Nanos) -> Option<Nanos> {
    if !ns.is_finite() || ns < 0.0 {
        return None;
    }
    let period = period_ns.max(1) as f64;
    let ticks = (ns / period + 0.5).floor();
    let rounded = ticks * period;
    if rounded > MAX_SHOT_NS as f64 {
        return None;
    }
    Some(rounded as Nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pulse(t: Nanos, d: Nanos) -> Event {
        Event {
            t_ns: t,
            channel: 0,
            action: Action::Pulse {
                duration_ns: d,
                setpoint: 1.0,
            },
        }
    }

    fn tl(events: Vec<Event>) -> DeviceTimeline {
        DeviceTimeline {
            device: "rf".into(),
            events,
        }
    }

    #[test]
    fn accepts_back_to_back_pulses() {
        assert_eq!(tl(vec![pulse(0, 10), pulse(10, 10)]).validate(1, 1), Ok(()));
    }

    #[test]
    fn rejects_overlap_misalignment_order_overflow_and_nan() {
        assert!(matches!(
            tl(vec![pulse(0, 10), pulse(5, 10)]).validate(1, 1),
            Err(TimelineError::Overlap { index: 1, .. })
        ));
        assert!(matches!(
            tl(vec![pulse(3, 10)]).validate(2, 1),
            Err(TimelineError::Misaligned { what: "time", .. })
        ));
        assert!(matches!(
            tl(vec![pulse(10, 1), pulse(5, 1)]).validate(1, 1),
            Err(TimelineError::Unsorted { .. })
        ));
        assert!(matches!(
            tl(vec![pulse(u64::MAX - 1, 10)]).validate(1, 1),
            Err(TimelineError::TooLong { .. })
        ));
        let mut nan = pulse(0, 1);
        nan.action = Action::Pulse {
            duration_ns: 1,
            setpoint: f64::NAN,
        };
        assert!(matches!(
            tl(vec![nan]).validate(1, 1),
            Err(TimelineError::BadValue { .. })
        ));
        let mut ch = pulse(0, 1);
        ch.channel = 3;
        assert!(matches!(
            tl(vec![ch]).validate(1, 2),
            Err(TimelineError::NoSuchChannel { .. })
        ));
    }

    #[test]
    fn rounding_goes_to_the_nearest_period() {
        assert_eq!(round_to_period(14.0, 10), Some(10));
        assert_eq!(round_to_period(15.0, 10), Some(20));
        assert_eq!(round_to_period(-1.0, 10), None);
        assert_eq!(round_to_period(f64::NAN, 10), None);
    }
}
