//! Output levels of the reference card: what each output channel is driving now, and the level
//! history replay used to produce loopback acquisition samples.

use super::{event_kind, StoredEvent, MAX_CHANNELS};

/// The safe level of every output (driven on `SafeState`, watchdog expiry and power-up).
pub const SAFE_LEVEL: i32 = 0;

/// Current output levels: a digital event sets a channel's *base* level; a pulse drives its value
/// for `duration_ticks` and then returns to the base level.
#[derive(Debug, Clone)]
pub(crate) struct Outputs {
    channels: usize,
    level: [i32; MAX_CHANNELS],
    base: [i32; MAX_CHANNELS],
    pulse_end: [Option<u64>; MAX_CHANNELS],
}

impl Outputs {
    /// `channels` outputs (at most [`MAX_CHANNELS`]), all at the safe level.
    pub(crate) fn new(channels: usize) -> Self {
        Self {
            channels: channels.min(MAX_CHANNELS),
            level: [SAFE_LEVEL; MAX_CHANNELS],
            base: [SAFE_LEVEL; MAX_CHANNELS],
            pulse_end: [None; MAX_CHANNELS],
        }
    }

    /// Levels of the configured channels.
    pub(crate) fn levels(&self) -> &[i32] {
        &self.level[..self.channels]
    }

    /// Base levels (what each channel returns to after a pulse), for acquisition replay.
    pub(crate) fn bases(&self) -> [i32; MAX_CHANNELS] {
        self.base
    }

    /// `true` when every output is at its safe level and no pulse is in progress.
    pub(crate) fn all_safe(&self) -> bool {
        self.levels().iter().all(|&l| l == SAFE_LEVEL)
            && self.pulse_end[..self.channels].iter().all(Option::is_none)
    }

    /// Drives every output to its safe level now.
    pub(crate) fn make_safe(&mut self) {
        self.level = [SAFE_LEVEL; MAX_CHANNELS];
        self.base = [SAFE_LEVEL; MAX_CHANNELS];
        self.pulse_end = [None; MAX_CHANNELS];
    }

    /// Applies an event at card tick `applied`. Events on channels the card does not have and
    /// acquire events (inputs) leave the outputs unchanged.
    pub(crate) fn apply(&mut self, ev: &StoredEvent, applied: u64) {
        let c = usize::from(ev.event.channel);
        if c >= self.channels {
            return;
        }
        match ev.event.kind {
            event_kind::DIGITAL => {
                self.base[c] = ev.event.value;
                self.level[c] = ev.event.value;
                self.pulse_end[c] = None;
            }
            event_kind::PULSE => {
                self.level[c] = ev.event.value;
                self.pulse_end[c] = Some(applied.saturating_add(ev.event.duration_ticks));
            }
            _ => {}
        }
    }

    /// Ends every pulse whose duration is over at `now_ticks`.
    pub(crate) fn expire(&mut self, now_ticks: u64) {
        for c in 0..self.channels {
            if self.pulse_end[c].is_some_and(|end| end <= now_ticks) {
                self.level[c] = self.base[c];
                self.pulse_end[c] = None;
            }
        }
    }

    /// The earliest pending pulse end.
    pub(crate) fn next_pulse_end(&self) -> Option<u64> {
        self.pulse_end[..self.channels]
            .iter()
            .flatten()
            .copied()
            .min()
    }
}

/// Replays the level history of one output channel during a played shot, for ascending sample
/// times. `events` are the shot's events with their applied ticks (non-decreasing in index order).
pub(crate) struct LevelReplay<'e> {
    events: &'e [StoredEvent],
    channel: u16,
    next: usize,
    base: i32,
    pulse: Option<(i32, u64)>,
}

impl<'e> LevelReplay<'e> {
    /// Starts at the channel's base level at the start of the shot.
    pub(crate) fn new(events: &'e [StoredEvent], channel: u16, base_at_start: i32) -> Self {
        Self {
            events,
            channel,
            next: 0,
            base: base_at_start,
            pulse: None,
        }
    }

    /// The level of the channel at card tick `tick` (must not decrease between calls).
    pub(crate) fn level_at(&mut self, tick: u64) -> i32 {
        while let Some(ev) = self.events.get(self.next) {
            if ev.applied_ticks > tick {
                break;
            }
            self.next += 1;
            if ev.event.channel != self.channel {
                continue;
            }
            match ev.event.kind {
                event_kind::DIGITAL => {
                    self.base = ev.event.value;
                    self.pulse = None;
                }
                event_kind::PULSE => {
                    let end = ev.applied_ticks.saturating_add(ev.event.duration_ticks);
                    self.pulse = Some((ev.event.value, end));
                }
                _ => {}
            }
        }
        match self.pulse {
            Some((value, end)) if tick < end => value,
            _ => self.base,
        }
    }
}
