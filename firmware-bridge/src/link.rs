//! Reliable, ordered delivery over a lossy frame channel: sequence numbers, cumulative
//! acknowledgements, retransmission on timeout and a bounded send window in fixed storage.
//!
//! The link is transport- and clock-agnostic: the caller feeds it received frames and the current time
//! in milliseconds, and calls [`Link::poll`] regularly with a closure that transmits bytes.
//!
//! Rules (see `docs/firmware-bridge.md`):
//! - every message except `Ack` is *sequenced*: it gets the next sequence number (wrapping `u16`,
//!   starting at 0) and stays in the send window until acknowledged;
//! - every frame carries in its header `ack` = the last sequence number received in order
//!   (cumulative); `Ack` frames carry sequence 0, which the receiver ignores;
//! - the receiver delivers only the next expected sequence number; duplicates and frames from the
//!   future are dropped (the sender retransmits them), and every sequenced frame received triggers an
//!   acknowledgement;
//! - go-back-N recovery: when the *oldest* unacknowledged frame is still unacknowledged
//!   `retransmit_ms` after its last transmission, it alone is sent again (the receiver dropped
//!   everything after a gap anyway); as soon as an acknowledgement advances the window after such a
//!   retransmission, every remaining transmitted frame is sent again at once;
//! - after `max_retries` timeouts of the same frame the link is down until [`Link::reset`];
//! - **a `Hello` with sequence 0 starts a new session** when this side had already received more than
//!   the first frame of a session (`next_expected` is neither 0 nor 1): a peer that restarted (a
//!   host reconnecting over a serial line, a card that rebooted) numbers from 0 again. The receiver
//!   checks [`Link::starts_new_session`] *before* [`Link::on_frame`], resets its link (both
//!   directions, send window emptied) and then delivers the `Hello` as frame 0.

use crate::error::BridgeError;
use crate::frame::{encode_frame, Frame, MAX_ENCODED_FRAME, MAX_PAYLOAD};
use crate::message::{msg_type, Message};

/// Timing parameters of a [`Link`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkConfig {
    /// Retransmit a frame this long after its last transmission when still unacknowledged.
    pub retransmit_ms: u64,
    /// Retransmissions before giving up (link down).
    pub max_retries: u8,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            retransmit_ms: 50,
            max_retries: 5,
        }
    }
}

/// Counters of a [`Link`] (wrapping).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Sequenced frames transmitted for the first time.
    pub sent: u32,
    /// Retransmissions.
    pub retransmitted: u32,
    /// Sequenced frames delivered to the caller.
    pub delivered: u32,
    /// Duplicates dropped (already delivered).
    pub duplicates: u32,
    /// Frames dropped because an earlier one is missing.
    pub out_of_order: u32,
    /// Standalone `Ack` frames transmitted.
    pub acks_sent: u32,
}

#[derive(Debug, Clone)]
struct Pending {
    frame: Frame,
    /// First transmission (untransmitted frames) or timeout (oldest frame) at this time.
    due_ms: u64,
    transmissions: u16,
    /// Timeouts of this frame so far.
    retries: u8,
    /// Send again at the next poll (go-back-N after recovery progress).
    resend: bool,
}

/// One end of a reliable link with a send window of `WINDOW` frames (`1 ..= 32767`).
#[derive(Debug, Clone)]
pub struct Link<const WINDOW: usize> {
    config: LinkConfig,
    window: heapless::Deque<Pending, WINDOW>,
    next_seq: u16,
    next_expected: u16,
    ack_pending: bool,
    recovering: bool,
    down: Option<BridgeError>,
    last_rx_ms: Option<u64>,
    stats: LinkStats,
}

/// `true` when `a` is at or before `b` in wrapping sequence space.
fn seq_before_or_eq(a: u16, b: u16) -> bool {
    b.wrapping_sub(a) < 0x8000
}

impl<const WINDOW: usize> Link<WINDOW> {
    const WINDOW_OK: () = assert!(WINDOW >= 1 && WINDOW < 0x8000, "WINDOW must be 1..=32767");

    /// A fresh link (sequence numbers start at 0 in both directions).
    pub fn new(config: LinkConfig) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::WINDOW_OK;
        Self {
            config,
            window: heapless::Deque::new(),
            next_seq: 0,
            next_expected: 0,
            ack_pending: false,
            recovering: false,
            down: None,
            last_rx_ms: None,
            stats: LinkStats::default(),
        }
    }

    /// Forgets all state (window, sequence numbers, link-down) — after a reconnect / `Hello`.
    pub fn reset(&mut self) {
        *self = Self::new(self.config);
    }

    /// Queues `msg` for reliable delivery; it is transmitted by the next [`Link::poll`] at or after
    /// `now_ms`. Returns its sequence number.
    ///
    /// Errors: [`BridgeError::Busy`] when `WINDOW` frames are unacknowledged, the link-down error once
    /// the link gave up, [`BridgeError::UnsequencedMessage`] for `Ack`, encoding errors.
    pub fn send(&mut self, msg: &Message, now_ms: u64) -> Result<u16, BridgeError> {
        if let Some(e) = self.down {
            return Err(e);
        }
        if msg.msg_type() == msg_type::ACK {
            return Err(BridgeError::UnsequencedMessage {
                msg_type: msg_type::ACK,
            });
        }
        if self.window.is_full() {
            return Err(BridgeError::Busy { window: WINDOW });
        }
        let mut payload = [0u8; MAX_PAYLOAD];
        let n = msg.encode(&mut payload)?;
        let seq = self.next_seq;
        let frame = Frame::new(msg.msg_type(), seq, 0, &payload[..n])?;
        let pending = Pending {
            frame,
            due_ms: now_ms,
            transmissions: 0,
            retries: 0,
            resend: false,
        };
        self.window
            .push_back(pending)
            .map_err(|_| BridgeError::Busy { window: WINDOW })?;
        self.next_seq = seq.wrapping_add(1);
        Ok(seq)
    }

    /// The sequence number this side expects next from its peer (0 on a fresh link).
    pub fn next_expected(&self) -> u16 {
        self.next_expected
    }

    /// `true` when `frame` starts a new session: a `Hello` with sequence 0 while this side had already
    /// received more than the first frame of the current one (`next_expected` ∉ {0, 1}). The caller
    /// then calls [`Link::reset`] and passes the frame to [`Link::on_frame`], which delivers it as
    /// frame 0. (With `next_expected` 0 the `Hello` is delivered normally; with 1 it is a duplicate of
    /// the session's first frame.)
    pub fn starts_new_session(&self, frame: &Frame) -> bool {
        frame.msg_type == msg_type::HELLO && frame.seq == 0 && self.next_expected > 1
    }

    /// The cumulative acknowledgement this side sends: the last sequence number received in order.
    pub fn ack_value(&self) -> u16 {
        self.next_expected.wrapping_sub(1)
    }

    /// Processes a frame received intact (from a `FrameDecoder`). Applies its acknowledgement and
    /// returns the message when it is the next one in sequence; duplicates, out-of-order frames and
    /// `Ack`s return `Ok(None)`.
    ///
    /// A frame in sequence whose payload does not decode (unknown type, bad length) is still
    /// acknowledged and consumed — it would never decode on retransmission either — and its decode
    /// error is returned so the caller can answer with an `Error` message.
    pub fn on_frame(&mut self, frame: &Frame, now_ms: u64) -> Result<Option<Message>, BridgeError> {
        self.last_rx_ms = Some(now_ms);
        self.apply_ack(frame.ack);
        if frame.msg_type == msg_type::ACK {
            return Ok(None);
        }
        self.ack_pending = true;
        if frame.seq != self.next_expected {
            if seq_before_or_eq(frame.seq, self.ack_value()) {
                self.stats.duplicates = self.stats.duplicates.wrapping_add(1);
            } else {
                self.stats.out_of_order = self.stats.out_of_order.wrapping_add(1);
            }
            return Ok(None);
        }
        self.next_expected = self.next_expected.wrapping_add(1);
        self.stats.delivered = self.stats.delivered.wrapping_add(1);
        Message::decode(frame.msg_type, &frame.payload).map(Some)
    }

    fn apply_ack(&mut self, ack: u16) {
        let Some(front) = self.window.front() else {
            return;
        };
        // Frames in the window have consecutive sequence numbers starting at `front`.
        let covered = usize::from(ack.wrapping_sub(front.frame.seq).wrapping_add(1));
        if covered == 0 || covered > self.window.len() {
            return;
        }
        for _ in 0..covered {
            self.window.pop_front();
        }
        if self.recovering {
            self.recovering = false;
            for p in self.window.iter_mut().filter(|p| p.transmissions > 0) {
                p.resend = true;
            }
        }
    }

    /// Transmits what is due at `now_ms` through `out` (one call per encoded frame, delimiter
    /// included): new frames, retransmissions of frames unacknowledged for `retransmit_ms`, and a
    /// standalone `Ack` when something was received and no data frame carried the acknowledgement.
    ///
    /// Returns [`BridgeError::LinkDown`] when a frame exhausted its retries (and from then on).
    pub fn poll(&mut self, now_ms: u64, mut out: impl FnMut(&[u8])) -> Result<(), BridgeError> {
        if let Some(e) = self.down {
            return Err(e);
        }
        let ack = self.ack_value();
        let mut buf = [0u8; MAX_ENCODED_FRAME];
        for (i, p) in self.window.iter_mut().enumerate() {
            let first = p.transmissions == 0 && p.due_ms <= now_ms;
            let timeout = i == 0 && p.transmissions > 0 && !p.resend && p.due_ms <= now_ms;
            if !(first || timeout || p.resend) {
                continue;
            }
            if timeout {
                if p.retries >= self.config.max_retries {
                    let e = BridgeError::LinkDown {
                        seq: p.frame.seq,
                        retries: self.config.max_retries,
                    };
                    self.down = Some(e);
                    return Err(e);
                }
                p.retries += 1;
                self.recovering = true;
            }
            p.frame.ack = ack;
            let n = encode_frame(&p.frame, &mut buf)?;
            out(&buf[..n]);
            if first {
                self.stats.sent = self.stats.sent.wrapping_add(1);
            } else {
                self.stats.retransmitted = self.stats.retransmitted.wrapping_add(1);
            }
            p.transmissions = p.transmissions.saturating_add(1);
            p.resend = false;
            p.due_ms = now_ms.saturating_add(self.config.retransmit_ms);
            self.ack_pending = false;
        }
        if self.ack_pending {
            let mut payload = [0u8; 2];
            let len = Message::Ack { seq: ack }.encode(&mut payload)?;
            let frame = Frame::new(msg_type::ACK, 0, ack, &payload[..len])?;
            let n = encode_frame(&frame, &mut buf)?;
            out(&buf[..n]);
            self.stats.acks_sent = self.stats.acks_sent.wrapping_add(1);
            self.ack_pending = false;
        }
        Ok(())
    }

    /// The earliest time at which [`Link::poll`] has something to do (`None`: nothing queued and no
    /// acknowledgement owed).
    pub fn next_deadline(&self) -> Option<u64> {
        let earliest = self
            .window
            .iter()
            .enumerate()
            .filter(|(i, p)| p.transmissions == 0 || p.resend || *i == 0)
            .map(|(_, p)| if p.resend { 0 } else { p.due_ms })
            .min();
        if self.ack_pending {
            Some(0)
        } else {
            earliest
        }
    }

    /// Frames sent and not yet acknowledged (or not yet transmitted).
    pub fn in_flight(&self) -> usize {
        self.window.len()
    }

    /// The error that took the link down, if it is down.
    pub fn down(&self) -> Option<BridgeError> {
        self.down
    }

    /// When the last frame was received (any frame, including `Ack`).
    pub fn last_rx_ms(&self) -> Option<u64> {
        self.last_rx_ms
    }

    /// Counters so far.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(msg_type: u8, seq: u16) -> Frame {
        Frame::new(msg_type, seq, 0xFFFF, &[]).unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn only_a_hello_with_seq_0_after_the_first_frame_starts_a_new_session() {
        let mut link: Link<2> = Link::new(LinkConfig::default());
        let hello0 = frame(msg_type::HELLO, 0);
        assert!(
            !link.starts_new_session(&hello0),
            "fresh link: normal delivery"
        );
        let _ = link.on_frame(&frame(msg_type::ABORT, 0), 0);
        assert!(
            !link.starts_new_session(&hello0),
            "next_expected 1: a duplicate"
        );
        let _ = link.on_frame(&frame(msg_type::ABORT, 1), 0);
        assert_eq!(link.next_expected(), 2);
        assert!(link.starts_new_session(&hello0));
        assert!(!link.starts_new_session(&frame(msg_type::HELLO, 1)));
        assert!(!link.starts_new_session(&frame(msg_type::HEARTBEAT, 0)));
    }
}
