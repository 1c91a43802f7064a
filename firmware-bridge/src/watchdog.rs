//! The card-side heartbeat watchdog and the card state machine it protects (used by `card::Card`).
//!
//! Pure logic: the caller supplies the time in milliseconds. The card feeds the watchdog on every
//! intact frame from the host; when the host stays silent for the configured timeout the card drives
//! its outputs to the safe state by itself ([`CardMachine::tick`]).

use crate::error::BridgeError;
use crate::message::{msg_type, Message};

/// Heartbeat watchdog. Not running until first fed (a card nobody talked to stays idle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watchdog {
    timeout_ms: u64,
    last_feed_ms: Option<u64>,
}

impl Watchdog {
    /// A watchdog expiring `timeout_ms` (at least 1) after the last feed.
    pub const fn new(timeout_ms: u64) -> Self {
        Self {
            timeout_ms: if timeout_ms == 0 { 1 } else { timeout_ms },
            last_feed_ms: None,
        }
    }

    /// The configured timeout.
    pub const fn timeout_ms(&self) -> u64 {
        self.timeout_ms
    }

    /// Records that the host was heard from at `now_ms` (starts the watchdog).
    pub fn feed(&mut self, now_ms: u64) {
        self.last_feed_ms = Some(now_ms);
    }

    /// Stops the watchdog until the next feed.
    pub fn disarm(&mut self) {
        self.last_feed_ms = None;
    }

    /// Milliseconds since the last feed (`None` when not running). A clock that went backwards
    /// counts as 0.
    pub fn silent_ms(&self, now_ms: u64) -> Option<u64> {
        self.last_feed_ms.map(|t| now_ms.saturating_sub(t))
    }

    /// `true` when running and the host has been silent for at least the timeout.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.silent_ms(now_ms)
            .is_some_and(|silent| silent >= self.timeout_ms)
    }
}

/// States of a timing card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CardState {
    /// No timeline.
    Idle = 0,
    /// Timeline (partly) uploaded.
    Loaded = 1,
    /// Timeline complete and armed; waiting for `Start`.
    Armed = 2,
    /// Playing shots.
    Running = 3,
    /// Outputs driven to their safe state; left only by a new upload at offset 0.
    Safe = 4,
}

impl CardState {
    /// The state's wire code (the `state` byte of `Heartbeat` and `Status`).
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The state for a wire code.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Idle),
            1 => Some(Self::Loaded),
            2 => Some(Self::Armed),
            3 => Some(Self::Running),
            4 => Some(Self::Safe),
            _ => None,
        }
    }
}

/// Card state machine sketch: commands from the host move it between states, and an expired
/// watchdog forces [`CardState::Safe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardMachine {
    state: CardState,
    watchdog: Watchdog,
    max_events: u32,
    timeline_id: u32,
    events_loaded: u32,
    safe_cause: Option<BridgeError>,
}

impl CardMachine {
    /// An idle card with `max_events` of timeline memory and a `watchdog_ms` heartbeat watchdog.
    pub const fn new(watchdog_ms: u64, max_events: u32) -> Self {
        Self {
            state: CardState::Idle,
            watchdog: Watchdog::new(watchdog_ms),
            max_events,
            timeline_id: 0,
            events_loaded: 0,
            safe_cause: None,
        }
    }

    /// Current state.
    pub const fn state(&self) -> CardState {
        self.state
    }

    /// Events of the current timeline loaded so far.
    pub const fn events_loaded(&self) -> u32 {
        self.events_loaded
    }

    /// Why the card is in the safe state, when it went there because of an error (watchdog).
    pub const fn safe_cause(&self) -> Option<BridgeError> {
        self.safe_cause
    }

    /// Checks the watchdog at `now_ms`; an expired watchdog forces the safe state. Returns the
    /// state after the check. Call it from the card's main loop / timer.
    pub fn tick(&mut self, now_ms: u64) -> CardState {
        if self.state != CardState::Safe && self.watchdog.expired(now_ms) {
            self.safe_cause = Some(BridgeError::WatchdogExpired {
                silent_ms: self.watchdog.silent_ms(now_ms).unwrap_or(0),
                timeout_ms: self.watchdog.timeout_ms(),
            });
            self.enter_safe();
        }
        self.state
    }

    fn enter_safe(&mut self) {
        self.state = CardState::Safe;
        self.timeline_id = 0;
        self.events_loaded = 0;
    }

    /// The current playback finished all its shots (`Running` → `Armed`, timeline kept, ready for
    /// the next `Start`).
    pub fn finished(&mut self) {
        if self.state == CardState::Running {
            self.state = CardState::Armed;
        }
    }

    /// Timeline id of the loaded timeline (0: none).
    pub const fn timeline_id(&self) -> u32 {
        self.timeline_id
    }

    fn invalid(&self, msg: &Message) -> BridgeError {
        BridgeError::InvalidState {
            state: self.state.code(),
            msg_type: msg.msg_type(),
        }
    }

    /// Applies a message from the host received at `now_ms` (which feeds the watchdog first, even when
    /// the command is refused). Returns the new state, or why the command is not allowed (state
    /// unchanged).
    pub fn handle(&mut self, msg: &Message, now_ms: u64) -> Result<CardState, BridgeError> {
        // A watchdog that expired before this frame arrived still wins.
        self.tick(now_ms);
        self.watchdog.feed(now_ms);
        use CardState as S;
        match msg {
            Message::UploadChunk {
                timeline_id,
                offset,
                events,
            } => {
                let fresh = *offset == 0;
                let expected = if fresh { 0 } else { self.events_loaded };
                match self.state {
                    S::Idle | S::Safe if !fresh => {
                        return Err(BridgeError::UploadOutOfOrder {
                            expected: 0,
                            got: *offset,
                        })
                    }
                    S::Armed | S::Running => return Err(self.invalid(msg)),
                    _ => {}
                }
                if !fresh && *timeline_id != self.timeline_id {
                    return Err(BridgeError::TimelineMismatch {
                        loaded: self.timeline_id,
                        got: *timeline_id,
                    });
                }
                if *offset != expected {
                    return Err(BridgeError::UploadOutOfOrder {
                        expected,
                        got: *offset,
                    });
                }
                let total = offset.saturating_add(events.len() as u32);
                if total > self.max_events {
                    return Err(BridgeError::TimelineTooLarge {
                        events: total,
                        max: self.max_events,
                    });
                }
                self.timeline_id = *timeline_id;
                self.events_loaded = total;
                self.safe_cause = None;
                self.state = S::Loaded;
            }
            Message::Arm {
                timeline_id,
                events_total,
            } => {
                if self.state != S::Loaded {
                    return Err(self.invalid(msg));
                }
                if *timeline_id != self.timeline_id {
                    return Err(BridgeError::TimelineMismatch {
                        loaded: self.timeline_id,
                        got: *timeline_id,
                    });
                }
                if *events_total != self.events_loaded {
                    return Err(BridgeError::TimelineIncomplete {
                        loaded: self.events_loaded,
                        total: *events_total,
                    });
                }
                self.state = S::Armed;
            }
            Message::Start { .. } => {
                if self.state != S::Armed {
                    return Err(self.invalid(msg));
                }
                self.state = S::Running;
            }
            Message::Abort => match self.state {
                S::Armed | S::Running => self.state = S::Loaded,
                S::Idle | S::Loaded | S::Safe => {}
            },
            Message::SafeState => {
                self.safe_cause = None;
                self.enter_safe();
            }
            Message::Hello { .. } | Message::Heartbeat { .. } | Message::Ack { .. } => {}
            Message::Status(_)
            | Message::AcquisitionChunk { .. }
            | Message::EventTimestamps { .. }
            | Message::Error { .. } => {
                // Card → host messages are not commands; an `Error` from the host is only logged.
                if msg.msg_type() != msg_type::ERROR {
                    return Err(self.invalid(msg));
                }
            }
        }
        Ok(self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::WireEvent;

    fn chunk(timeline_id: u32, offset: u32, n: usize) -> Message {
        let mut events = heapless::Vec::new();
        for i in 0..n {
            events
                .push(WireEvent {
                    t_ticks: i as u64 * 10,
                    ..WireEvent::default()
                })
                .unwrap();
        }
        Message::UploadChunk {
            timeline_id,
            offset,
            events,
        }
    }

    #[test]
    fn watchdog_expires_only_after_timeout_and_feed_restarts_it() {
        let mut w = Watchdog::new(100);
        assert!(!w.expired(1_000_000), "unfed watchdog is not running");
        w.feed(1000);
        assert!(!w.expired(1099));
        assert!(w.expired(1100));
        w.feed(1100);
        assert!(!w.expired(1150));
        assert!(!w.expired(500), "clock going backwards does not expire");
        w.disarm();
        assert!(!w.expired(5000));
        assert_eq!(Watchdog::new(0).timeout_ms(), 1);
    }

    fn run_to(state: CardState) -> CardMachine {
        let mut m = CardMachine::new(100, 1000);
        m.handle(&chunk(7, 0, 3), 0).unwrap();
        m.handle(&chunk(7, 3, 2), 10).unwrap();
        if state == CardState::Loaded {
            return m;
        }
        m.handle(
            &Message::Arm {
                timeline_id: 7,
                events_total: 5,
            },
            20,
        )
        .unwrap();
        if state == CardState::Armed {
            return m;
        }
        m.handle(
            &Message::Start {
                at_card_ticks: 0,
                shots: 1,
            },
            30,
        )
        .unwrap();
        m
    }

    #[test]
    fn normal_sequence_and_abort() {
        let mut m = run_to(CardState::Running);
        assert_eq!(m.state(), CardState::Running);
        assert_eq!(m.handle(&Message::Abort, 40), Ok(CardState::Loaded));
        m.handle(
            &Message::Arm {
                timeline_id: 7,
                events_total: 5,
            },
            50,
        )
        .unwrap();
        m.handle(
            &Message::Start {
                at_card_ticks: 0,
                shots: 1,
            },
            60,
        )
        .unwrap();
        m.finished();
        assert_eq!(m.state(), CardState::Armed, "all shots done: armed again");
        assert!(m
            .handle(
                &Message::Start {
                    at_card_ticks: 0,
                    shots: 1,
                },
                70,
            )
            .is_ok());
    }

    #[test]
    fn watchdog_expiry_forces_safe_in_every_state() {
        for s in [CardState::Loaded, CardState::Armed, CardState::Running] {
            let mut m = run_to(s);
            m.handle(
                &Message::Heartbeat {
                    card_ticks: 0,
                    state: 0,
                },
                30,
            )
            .unwrap();
            assert_eq!(m.tick(129), s, "still fed recently");
            assert_eq!(m.tick(30 + 100), CardState::Safe);
            assert!(matches!(
                m.safe_cause(),
                Some(BridgeError::WatchdogExpired {
                    silent_ms: 100,
                    timeout_ms: 100
                })
            ));
            assert_eq!(m.events_loaded(), 0, "timeline discarded in safe state");
        }
    }

    #[test]
    fn heartbeats_keep_the_card_running() {
        let mut m = run_to(CardState::Running);
        for t in (80..2000).step_by(80) {
            m.handle(
                &Message::Heartbeat {
                    card_ticks: 0,
                    state: 0,
                },
                t,
            )
            .unwrap();
            assert_eq!(m.tick(t + 50), CardState::Running);
        }
    }

    #[test]
    fn late_frame_after_expiry_does_not_revive_the_card() {
        let mut m = run_to(CardState::Running);
        let r = m.handle(
            &Message::Start {
                at_card_ticks: 0,
                shots: 1,
            },
            500,
        );
        assert_eq!(
            r,
            Err(BridgeError::InvalidState {
                state: 4,
                msg_type: msg_type::START
            })
        );
        assert_eq!(m.state(), CardState::Safe);
        // Only a fresh upload leaves the safe state.
        assert_eq!(
            m.handle(&chunk(8, 3, 1), 510),
            Err(BridgeError::UploadOutOfOrder {
                expected: 0,
                got: 3
            })
        );
        assert_eq!(m.handle(&chunk(8, 0, 1), 520), Ok(CardState::Loaded));
        assert_eq!(m.safe_cause(), None);
    }

    #[test]
    fn invalid_commands_are_refused_with_reasons() {
        let mut m = CardMachine::new(100, 4);
        assert!(matches!(
            m.handle(
                &Message::Start {
                    at_card_ticks: 0,
                    shots: 1
                },
                0
            ),
            Err(BridgeError::InvalidState { state: 0, .. })
        ));
        assert_eq!(
            m.handle(&chunk(1, 0, 5), 0),
            Err(BridgeError::TimelineTooLarge { events: 5, max: 4 })
        );
        m.handle(&chunk(1, 0, 2), 0).unwrap();
        assert_eq!(
            m.handle(&chunk(2, 2, 1), 0),
            Err(BridgeError::TimelineMismatch { loaded: 1, got: 2 })
        );
        assert_eq!(
            m.handle(&chunk(1, 1, 1), 0),
            Err(BridgeError::UploadOutOfOrder {
                expected: 2,
                got: 1
            })
        );
        assert_eq!(
            m.handle(
                &Message::Arm {
                    timeline_id: 1,
                    events_total: 3
                },
                0
            ),
            Err(BridgeError::TimelineIncomplete {
                loaded: 2,
                total: 3
            })
        );
        m.handle(
            &Message::Arm {
                timeline_id: 1,
                events_total: 2,
            },
            0,
        )
        .unwrap();
        assert!(matches!(
            m.handle(&chunk(1, 0, 1), 0),
            Err(BridgeError::InvalidState { state: 2, .. })
        ));
        assert_eq!(m.handle(&Message::SafeState, 0), Ok(CardState::Safe));
        for code in 0..=4 {
            assert_eq!(CardState::from_code(code).map(CardState::code), Some(code));
        }
        assert_eq!(CardState::from_code(5), None);
    }
}
