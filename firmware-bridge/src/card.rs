//! The reference timing card: the whole card side of the protocol (`docs/firmware-bridge.md`,
//! section 8), transport- and clock-agnostic, without allocation, so that a microcontroller firmware
//! can use it as is and the firmware simulator `shotline-cardsim` runs exactly this code.
//!
//! The caller owns the transport and the clock:
//! - [`Card::on_bytes`] with every chunk of bytes received from the host and the card time;
//! - [`Card::poll`] regularly (at the latest at [`Card::next_wakeup`]) with a closure that transmits
//!   bytes: it plays the timeline against the card clock, reports finished shots, runs the heartbeat
//!   watchdog and drives the link (acknowledgements, retransmissions);
//! - [`Card::reset_link`] when a new host connection is accepted, [`Card::reset`] for a power cycle.
//!
//! The timeline lives in caller-provided storage (`&mut [StoredEvent]`: a static array on a
//! microcontroller, a boxed slice in the simulator), which also holds the applied tick of every event
//! of the shot being played. Outgoing messages wait in a fixed outbox of [`OUTBOX_LEN`] messages
//! until the link's send window takes them; a shot report is generated message by message as the
//! window allows, so its size is bounded only by the timeline.
//!
//! Event kinds: [`event_kind::DIGITAL`] sets an output level, [`event_kind::PULSE`] drives `value`
//! for `duration_ticks` and returns to the previous digital level, [`event_kind::ACQUIRE`] records
//! `value` samples (1 ..= [`MAX_ACQUIRE_SAMPLES`]) evenly over `duration_ticks` from input channel
//! `channel`, which is wired back to output `channel` (loopback). Other kinds are refused at upload
//! with `Error` `0x8001`.

mod outputs;
mod report;
#[cfg(test)]
mod tests;

use crate::error::BridgeError;
use crate::frame::{Frame, FrameDecoder, PROTOCOL_VERSION};
use crate::link::{Link, LinkConfig, LinkStats};
use crate::message::{msg_type, Message, Status, WireEvent};
use crate::watchdog::{CardMachine, CardState};
use outputs::Outputs;

pub use outputs::SAFE_LEVEL;

/// Event kinds the reference card implements (the `kind` byte of a [`WireEvent`]).
pub mod event_kind {
    /// Set the channel's output level to `value` (0 or 1 for a digital line).
    pub const DIGITAL: u8 = 0;
    /// Drive `value` for `duration_ticks`, then return to the channel's digital level.
    pub const PULSE: u8 = 1;
    /// Acquire `value` samples from input `channel` over `duration_ticks`.
    pub const ACQUIRE: u8 = 2;
    /// The highest kind implemented.
    pub const MAX: u8 = ACQUIRE;
}

/// Output channels the reference card can drive at most (`CardConfig::channels` is capped to it).
pub const MAX_CHANNELS: usize = 64;
/// Largest sample count of one acquire event.
pub const MAX_ACQUIRE_SAMPLES: i32 = 4096;
/// Outgoing messages waiting for the link's send window.
pub const OUTBOX_LEN: usize = 8;
/// Outbox slots kept free for the watchdog's `Error` + `Status`; a command frame is left
/// unprocessed (and retransmitted by the host) when its answer would eat into them.
const RESERVED_SLOTS: usize = 2;

/// What the card announces in its `Hello` and how it behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardConfig {
    /// Card identifier (serial number).
    pub card_id: u32,
    /// Output channels (at most [`MAX_CHANNELS`]).
    pub channels: u16,
    /// Card clock rate in Hz (ticks per second).
    pub clock_hz: u64,
    /// Largest timeline in events (at most the storage length).
    pub max_events: u32,
    /// Events buffered ahead of playback (announced only; the whole timeline is stored).
    pub buffer_events: u32,
    /// Heartbeat watchdog timeout in milliseconds.
    pub watchdog_ms: u32,
}

impl Default for CardConfig {
    fn default() -> Self {
        Self {
            card_id: 1,
            channels: 8,
            clock_hz: 1_000_000_000,
            max_events: u32::MAX,
            buffer_events: 0,
            watchdog_ms: 500,
        }
    }
}

/// The card clock at one instant: `ticks` at `clock_hz` for playback and timestamps, `ms` (same
/// clock, any epoch) for the link and the watchdog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CardTime {
    /// Card clock ticks.
    pub ticks: u64,
    /// Milliseconds.
    pub ms: u64,
}

/// One timeline event in card storage, with the tick at which it was applied in the last shot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoredEvent {
    /// The event as uploaded.
    pub event: WireEvent,
    /// Card tick at which it was applied in the current / last shot.
    pub applied_ticks: u64,
}

/// Why the card entered the safe state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SafeCause {
    /// The host sent `SafeState`.
    Host,
    /// The heartbeat watchdog expired.
    Watchdog,
}

/// Counters of a [`Card`] since it was constructed (kept across [`Card::reset`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CardStats {
    /// Intact frames received from the host.
    pub frames_in: u64,
    /// Frames rejected by the decoder (CRC, COBS, length, version).
    pub frames_rejected: u64,
    /// Command frames left unprocessed because the outbox was full (the host retransmits them).
    pub frames_deferred: u64,
    /// Messages handed to the link for transmission.
    pub messages_out: u64,
    /// `Hello`s from the host answered.
    pub hellos: u64,
    /// New sessions started by a host `Hello` with sequence 0.
    pub sessions: u64,
    /// Commands refused with an `Error`.
    pub commands_refused: u64,
    /// Successful `Arm`s.
    pub timelines_armed: u64,
    /// Shots started.
    pub shots_started: u64,
    /// Shots played to the end and reported.
    pub shots_done: u64,
    /// Transitions into the safe state.
    pub safe_entries: u64,
    /// Watchdog expiries.
    pub watchdog_expiries: u64,
    /// Power cycles ([`Card::reset`]).
    pub resets: u64,
}

/// The shot being played.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShotInfo {
    /// Shot number since the last `Arm` (the `shot` field of its report).
    pub shot: u32,
    /// Shot number since the card was constructed (0-based).
    pub serial: u64,
    /// Card tick of t = 0.
    pub start_ticks: u64,
    /// Card tick at which the last event's duration is over.
    pub end_ticks: u64,
    /// Events applied so far.
    pub events_applied: u32,
}

#[derive(Debug, Clone, Copy)]
struct Playback {
    info: ShotInfo,
    shots_left: u32,
    last_applied: u64,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Timestamps { next: u32 },
    Acquire { event: u32, sample: u32 },
    Status,
}

#[derive(Debug, Clone, Copy)]
struct Report {
    shot: u32,
    phase: Phase,
    shots_left: u32,
    end_ticks: u64,
}

/// The card-side protocol engine over a send window of `WINDOW` frames and timeline storage `'a`.
#[derive(Debug)]
pub struct Card<'a, const WINDOW: usize> {
    config: CardConfig,
    link_config: LinkConfig,
    storage: &'a mut [StoredEvent],
    machine: CardMachine,
    link: Link<WINDOW>,
    decoder: FrameDecoder,
    outbox: heapless::Deque<Message, OUTBOX_LEN>,
    outputs: Outputs,
    /// Base levels when the current shot started (acquisition replay).
    shot_bases: [i32; MAX_CHANNELS],
    /// Longest `t_ticks + duration_ticks` of the loaded timeline.
    shot_len: u64,
    shots_since_arm: u32,
    playback: Option<Playback>,
    report: Option<Report>,
    last_error: u16,
    last_feed_ms: Option<u64>,
    safe_cause: Option<SafeCause>,
    stats: CardStats,
}

impl<'a, const WINDOW: usize> Card<'a, WINDOW> {
    /// A freshly booted card: Idle, outputs safe, a `Hello` queued (a card says `Hello` unprompted
    /// on boot). `config.max_events` is capped to `storage.len()` and `config.channels` to
    /// [`MAX_CHANNELS`]; [`Card::config`] shows the effective values announced in `Hello`.
    pub fn new(mut config: CardConfig, storage: &'a mut [StoredEvent], link: LinkConfig) -> Self {
        let capacity = u32::try_from(storage.len()).unwrap_or(u32::MAX);
        config.max_events = config.max_events.min(capacity);
        config.channels = config
            .channels
            .min(u16::try_from(MAX_CHANNELS).unwrap_or(u16::MAX));
        let mut card = Self {
            config,
            link_config: link,
            storage,
            machine: CardMachine::new(u64::from(config.watchdog_ms), config.max_events),
            link: Link::new(link),
            decoder: FrameDecoder::new(),
            outbox: heapless::Deque::new(),
            outputs: Outputs::new(usize::from(config.channels)),
            shot_bases: [SAFE_LEVEL; MAX_CHANNELS],
            shot_len: 0,
            shots_since_arm: 0,
            playback: None,
            report: None,
            last_error: 0,
            last_feed_ms: None,
            safe_cause: None,
            stats: CardStats::default(),
        };
        card.push(card.hello());
        card
    }

    /// The effective configuration (as announced in `Hello`).
    pub fn config(&self) -> &CardConfig {
        &self.config
    }

    /// Current state.
    pub fn state(&self) -> CardState {
        self.machine.state()
    }

    /// Levels of all output channels now.
    pub fn outputs(&self) -> &[i32] {
        self.outputs.levels()
    }

    /// Level of one output channel now (`None`: no such channel).
    pub fn level(&self, channel: u16) -> Option<i32> {
        self.outputs.levels().get(usize::from(channel)).copied()
    }

    /// `true` when every output is at [`SAFE_LEVEL`] and no pulse is in progress.
    pub fn outputs_safe(&self) -> bool {
        self.outputs.all_safe()
    }

    /// Why the card is in the safe state (`None` when it is not, or after a power cycle).
    pub fn safe_cause(&self) -> Option<SafeCause> {
        if self.state() == CardState::Safe {
            self.safe_cause
        } else {
            None
        }
    }

    /// Events of the current timeline loaded.
    pub fn events_loaded(&self) -> u32 {
        self.machine.events_loaded()
    }

    /// Shots completed since the last `Arm`.
    pub fn shots_since_arm(&self) -> u32 {
        self.shots_since_arm
    }

    /// The shot being played, if any (a shot stays "played" until its events are all applied and
    /// its last duration is over; its report follows).
    pub fn shot_in_progress(&self) -> Option<ShotInfo> {
        self.playback.map(|p| p.info)
    }

    /// Counters.
    pub fn stats(&self) -> CardStats {
        self.stats
    }

    /// Counters of the card's link.
    pub fn link_stats(&self) -> LinkStats {
        self.link.stats()
    }

    /// Power cycle: the timeline and all state are lost, outputs go to their safe level, the link
    /// starts afresh and the card says `Hello` unprompted. Counters are kept ([`CardStats::resets`]).
    pub fn reset(&mut self) {
        self.machine = CardMachine::new(u64::from(self.config.watchdog_ms), self.config.max_events);
        self.reset_link();
        self.outputs.make_safe();
        self.shot_bases = [SAFE_LEVEL; MAX_CHANNELS];
        self.shot_len = 0;
        self.shots_since_arm = 0;
        self.playback = None;
        self.report = None;
        self.last_error = 0;
        self.last_feed_ms = None;
        self.safe_cause = None;
        self.stats.resets += 1;
        self.push(self.hello());
    }

    /// A new host connection: the link restarts numbering from 0 in both directions, a partly
    /// received frame and unsent answers are dropped. The card's state, timeline, a shot in
    /// progress and its coming report are kept.
    pub fn reset_link(&mut self) {
        self.link = Link::new(self.link_config);
        self.decoder.reset();
        self.outbox.clear();
    }

    /// Feeds bytes received from the host at card time `now`; every intact frame is handled
    /// (answers are queued and transmitted by the next [`Card::poll`]).
    pub fn on_bytes(&mut self, bytes: &[u8], now: CardTime) {
        for &b in bytes {
            match self.decoder.push(b) {
                Some(Ok(frame)) => self.on_frame(&frame, now),
                Some(Err(_)) => self.stats.frames_rejected += 1,
                None => {}
            }
        }
    }

    /// Does what is due at `now`: watchdog, playback, shot reports, and the link (`out` is called
    /// once per encoded frame to transmit).
    pub fn poll(&mut self, now: CardTime, out: impl FnMut(&[u8])) {
        self.check_watchdog(now);
        self.outputs.expire(now.ticks);
        self.play(now);
        self.pump(now);
        // A link that is down stays silent until the host starts a new session with `Hello`.
        let _ = self.link.poll(now.ms, out);
    }

    /// The card tick at which [`Card::poll`] next has something to do, given the time `now`
    /// (`now.ticks` when something is due already; `None`: nothing until bytes arrive).
    pub fn next_wakeup(&self, now: CardTime) -> Option<u64> {
        let link_up = self.link.down().is_none();
        let window_free = self.link.in_flight() < WINDOW;
        let mut next: Option<u64> = None;
        let mut consider = |t: u64| next = Some(next.map_or(t, |n: u64| n.min(t)));
        if link_up && window_free && (!self.outbox.is_empty() || self.report.is_some()) {
            consider(now.ticks);
        }
        if let Some(p) = &self.playback {
            let n = self.loaded();
            let t = match self.storage.get(p.info.events_applied as usize) {
                Some(ev) if (p.info.events_applied as usize) < n => {
                    p.info.start_ticks.saturating_add(ev.event.t_ticks)
                }
                _ => p.info.end_ticks,
            };
            consider(t.max(p.info.start_ticks));
        }
        if let Some(t) = self.outputs.next_pulse_end() {
            consider(t);
        }
        if link_up {
            if let Some(ms) = self.link.next_deadline() {
                consider(self.ms_to_ticks(ms, now));
            }
        }
        if self.state() != CardState::Safe {
            if let Some(fed) = self.last_feed_ms {
                let expiry = fed.saturating_add(u64::from(self.config.watchdog_ms.max(1)));
                consider(self.ms_to_ticks(expiry, now));
            }
        }
        next.map(|t| t.max(now.ticks))
    }

    fn ms_to_ticks(&self, ms: u64, now: CardTime) -> u64 {
        if ms <= now.ms {
            return now.ticks;
        }
        let delta = u128::from(ms - now.ms) * u128::from(self.config.clock_hz) / 1000;
        now.ticks
            .saturating_add(u64::try_from(delta).unwrap_or(u64::MAX))
    }

    fn loaded(&self) -> usize {
        (self.machine.events_loaded() as usize).min(self.storage.len())
    }

    fn hello(&self) -> Message {
        Message::Hello {
            protocol_version: PROTOCOL_VERSION,
            card_id: self.config.card_id,
            channels: self.config.channels,
            clock_hz: self.config.clock_hz,
            max_events: self.config.max_events,
            buffer_events: self.config.buffer_events,
            watchdog_ms: self.config.watchdog_ms,
        }
    }

    fn status(&self, now: CardTime) -> Message {
        Message::Status(Status {
            state: self.state().code(),
            timeline_id: self.machine.timeline_id(),
            events_loaded: self.machine.events_loaded(),
            shots_done: self.shots_since_arm,
            card_ticks: now.ticks,
            last_error: self.last_error,
        })
    }

    /// Queues a message; never fails (the oldest message is dropped if the outbox is somehow full).
    fn push(&mut self, msg: Message) {
        if self.outbox.is_full() {
            self.outbox.pop_front();
        }
        let _ = self.outbox.push_back(msg);
    }

    fn refuse(&mut self, err: &BridgeError) {
        self.stats.commands_refused += 1;
        self.last_error = err.code();
        self.push(Message::from_error(err));
    }

    fn on_frame(&mut self, frame: &Frame, now: CardTime) {
        self.stats.frames_in += 1;
        self.check_watchdog(now);
        // Every intact frame feeds the watchdog, whatever the link makes of it.
        let _ = self.machine.handle(&Message::Ack { seq: 0 }, now.ms);
        self.last_feed_ms = Some(now.ms);
        let hello0 = frame.msg_type == msg_type::HELLO && frame.seq == 0;
        if self.link.starts_new_session(frame) || (hello0 && self.link.down().is_some()) {
            self.reset_link();
            self.stats.sessions += 1;
        }
        if frame.msg_type != msg_type::ACK && self.outbox.len() + 1 + RESERVED_SLOTS > OUTBOX_LEN {
            // No room for an answer: take only the acknowledgement; the host retransmits the frame.
            self.stats.frames_deferred += 1;
            let ack_only = Frame {
                msg_type: msg_type::ACK,
                seq: 0,
                ack: frame.ack,
                payload: heapless::Vec::new(),
            };
            let _ = self.link.on_frame(&ack_only, now.ms);
            return;
        }
        match self.link.on_frame(frame, now.ms) {
            Ok(Some(msg)) => self.handle(&msg, now),
            Ok(None) => {}
            Err(e) => self.refuse(&e),
        }
    }

    fn check_events(offset: u32, events: &[WireEvent]) -> Result<(), BridgeError> {
        for (i, e) in events.iter().enumerate() {
            let index = offset.saturating_add(u32::try_from(i).unwrap_or(u32::MAX));
            if e.kind > event_kind::MAX {
                return Err(BridgeError::UnsupportedEventKind {
                    index,
                    kind: e.kind,
                    max_kind: event_kind::MAX,
                });
            }
            if e.kind == event_kind::ACQUIRE && !(1..=MAX_ACQUIRE_SAMPLES).contains(&e.value) {
                return Err(BridgeError::InvalidEventValue {
                    index,
                    kind: e.kind,
                    value: e.value,
                    min: 1,
                    max: MAX_ACQUIRE_SAMPLES,
                });
            }
        }
        Ok(())
    }

    fn handle(&mut self, msg: &Message, now: CardTime) {
        match msg {
            Message::Hello { .. } => {
                self.stats.hellos += 1;
                self.push(self.hello());
                return;
            }
            // An `Error` from the host is informational.
            Message::Error { .. } => return,
            Message::UploadChunk { offset, events, .. } => {
                if let Err(e) = Self::check_events(*offset, events) {
                    self.refuse(&e);
                    return;
                }
            }
            _ => {}
        }
        let before = self.state();
        if let Err(e) = self.machine.handle(msg, now.ms) {
            self.refuse(&e);
            return;
        }
        match msg {
            Message::UploadChunk { offset, events, .. } => self.store(*offset, events),
            Message::Arm { .. } => {
                self.shots_since_arm = 0;
                self.stats.timelines_armed += 1;
                self.push(self.status(now));
            }
            Message::Start {
                at_card_ticks,
                shots,
            } => {
                if *shots == 0 {
                    self.machine.finished();
                    self.push(self.status(now));
                } else {
                    self.shot_bases = self.outputs.bases();
                    self.begin_shot(*at_card_ticks, shots - 1);
                }
            }
            Message::Abort => {
                if matches!(before, CardState::Armed | CardState::Running) {
                    self.playback = None;
                    self.report = None;
                }
                self.push(self.status(now));
            }
            Message::SafeState => {
                if before != CardState::Safe {
                    self.enter_safe(SafeCause::Host);
                }
                self.outputs.make_safe();
                self.push(self.status(now));
            }
            Message::Heartbeat { .. } => self.push(Message::Heartbeat {
                card_ticks: now.ticks,
                state: self.state().code(),
            }),
            _ => {}
        }
    }

    fn store(&mut self, offset: u32, events: &[WireEvent]) {
        if offset == 0 {
            self.shot_len = 0;
        }
        for (i, e) in events.iter().enumerate() {
            if let Some(slot) = self.storage.get_mut((offset as usize).saturating_add(i)) {
                *slot = StoredEvent {
                    event: *e,
                    applied_ticks: 0,
                };
            }
            self.shot_len = self
                .shot_len
                .max(e.t_ticks.saturating_add(e.duration_ticks));
        }
    }

    fn begin_shot(&mut self, start: u64, shots_left: u32) {
        self.playback = Some(Playback {
            info: ShotInfo {
                shot: self.shots_since_arm,
                serial: self.stats.shots_started,
                start_ticks: start,
                end_ticks: start.saturating_add(self.shot_len),
                events_applied: 0,
            },
            shots_left,
            last_applied: start,
        });
        self.stats.shots_started += 1;
    }

    fn enter_safe(&mut self, cause: SafeCause) {
        self.outputs.make_safe();
        self.playback = None;
        self.report = None;
        self.safe_cause = Some(cause);
        self.stats.safe_entries += 1;
    }

    fn check_watchdog(&mut self, now: CardTime) {
        let before = self.state();
        if before == CardState::Safe || self.machine.tick(now.ms) != CardState::Safe {
            return;
        }
        self.stats.watchdog_expiries += 1;
        self.enter_safe(SafeCause::Watchdog);
        let cause = self
            .machine
            .safe_cause()
            .unwrap_or(BridgeError::WatchdogExpired {
                silent_ms: u64::from(self.config.watchdog_ms),
                timeout_ms: u64::from(self.config.watchdog_ms),
            });
        self.last_error = cause.code();
        self.push(Message::from_error(&cause));
        self.push(self.status(now));
    }

    /// Applies every event whose time has come; ends the shot when its last duration is over.
    fn play(&mut self, now: CardTime) {
        let n = self.loaded();
        let Some(pb) = self.playback.as_mut() else {
            return;
        };
        if now.ticks < pb.info.start_ticks {
            return;
        }
        while let Some(slot) = self.storage.get_mut(pb.info.events_applied as usize) {
            if pb.info.events_applied as usize >= n {
                break;
            }
            let scheduled = pb.info.start_ticks.saturating_add(slot.event.t_ticks);
            if scheduled > now.ticks {
                break;
            }
            // Never earlier than scheduled, never before an earlier event of the timeline.
            let applied = scheduled.max(now.ticks).max(pb.last_applied);
            slot.applied_ticks = applied;
            pb.last_applied = applied;
            self.outputs.apply(slot, applied);
            pb.info.events_applied += 1;
        }
        self.outputs.expire(now.ticks);
        if pb.info.events_applied as usize >= n && now.ticks >= pb.info.end_ticks {
            self.report = Some(Report {
                shot: pb.info.shot,
                phase: Phase::Timestamps { next: 0 },
                shots_left: pb.shots_left,
                end_ticks: pb.info.end_ticks,
            });
            self.playback = None;
            self.stats.shots_done += 1;
        }
    }

    /// Moves queued messages into the link while its window has room, generating the shot report
    /// one message at a time behind them.
    fn pump(&mut self, now: CardTime) {
        if self.link.down().is_some() {
            return;
        }
        loop {
            while let Some(msg) = self.outbox.front() {
                match self.link.send(msg, now.ms) {
                    Ok(_) => self.stats.messages_out += 1,
                    Err(BridgeError::Busy { .. }) => return,
                    // Not encodable / link down: nothing later would fix it; drop the message.
                    Err(_) => {}
                }
                self.outbox.pop_front();
            }
            match self.next_report_message(now) {
                Some(msg) => self.push(msg),
                None => return,
            }
        }
    }
}
