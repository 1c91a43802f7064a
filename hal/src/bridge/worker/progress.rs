//! Progress of the session: requests one at a time, uploads in chunks with their barrier, shots,
//! heartbeats and keepalives, transmission through the link.

use std::time::Duration;

use shotline_firmware_bridge::message::{msg_type, MAX_UPLOAD_EVENTS};
use shotline_firmware_bridge::{encode_frame, BridgeError, Frame, Message, MAX_ENCODED_FRAME};

use super::{Ending, Op, OpState, Outstanding, Worker, MS};
use crate::bridge::session::{Command, Reply, Request, SessionError, ShotFault, ShotReport};
use crate::time::monotonic_ns;

impl Worker {
    // ---- progress ----

    pub(super) fn can_send(&self) -> bool {
        self.conn
            .as_ref()
            .is_some_and(|c| c.ready && c.link.in_flight() < self.cfg.window)
    }

    pub(super) fn send(&mut self, msg: &Message) -> bool {
        let now_ms = monotonic_ns() / MS;
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        match conn.link.send(msg, now_ms) {
            Ok(_) => true,
            Err(BridgeError::Busy { .. }) => false,
            Err(e) => {
                tracing::warn!(card = %self.endpoint, "cannot send: {e}");
                false
            }
        }
    }

    pub(super) fn send_heartbeat(&mut self) -> Option<u64> {
        if !self.send(&Message::Heartbeat {
            card_ticks: 0,
            state: 0,
        }) {
            return None;
        }
        let now = monotonic_ns();
        let conn = self.conn.as_mut()?;
        conn.hb_inflight.push_back(now);
        conn.hb_sent += 1;
        conn.next_hb_ns = now + self.cfg.heartbeat_ms * MS;
        Some(conn.hb_sent)
    }

    /// The periodic watchdog feed: a `Heartbeat` (a clock sample) when none is awaiting its answer and
    /// the window has room; otherwise a bare `Ack` frame, which feeds the card's watchdog without adding
    /// to a congested link.
    pub(super) fn heartbeat_or_keepalive(&mut self, now: u64) {
        let idle = self.conn.as_ref().is_some_and(|c| c.hb_inflight.is_empty());
        if idle && self.can_send() && self.send_heartbeat().is_some() {
            return;
        }
        let timeout = Duration::from_millis(self.cfg.reply_timeout_ms);
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        conn.next_hb_ns = now + self.cfg.heartbeat_ms * MS;
        let ack = conn.link.ack_value();
        let mut payload = [0u8; 2];
        let mut buf = [0u8; MAX_ENCODED_FRAME];
        let encoded = Message::Ack { seq: ack }
            .encode(&mut payload)
            .and_then(|n| Frame::new(msg_type::ACK, 0, ack, &payload[..n]))
            .and_then(|f| encode_frame(&f, &mut buf));
        let written = match encoded {
            Ok(n) => conn.transport.write_all(&buf[..n], timeout),
            Err(e) => {
                tracing::warn!(card = %self.endpoint, "cannot encode a keepalive: {e}");
                return;
            }
        };
        if let Err(e) = written {
            self.disconnect(Ending::Io(e.to_string()));
        }
    }

    pub(super) fn step(&mut self) {
        let now = monotonic_ns();
        self.expire(now);
        let Some(conn) = self.conn.as_ref() else {
            self.fault_triggers();
            return;
        };
        if !conn.ready {
            if now >= conn.handshake_deadline_ns {
                let reason = format!(
                    "no Hello from the card within {} ms",
                    self.cfg.connect_timeout_ms
                );
                self.disconnect(Ending::Io(reason));
            } else {
                self.fault_triggers();
                self.poll_link();
            }
            return;
        }
        self.start_shots();
        if self.op.is_none() {
            if let Some(cmd) = self.queue.pop_front() {
                self.begin(cmd);
            }
        }
        self.advance_op();
        if self.conn.as_ref().is_some_and(|c| now >= c.next_hb_ns) {
            self.heartbeat_or_keepalive(now);
        }
        self.poll_link();
    }

    pub(super) fn expire(&mut self, now: u64) {
        let timeout = |cmd: &Command, endpoint: &str| SessionError::Timeout {
            endpoint: endpoint.to_string(),
            what: cmd.request.what(),
            ms: cmd.timeout_ms,
        };
        if self.op.as_ref().is_some_and(|op| now >= op.cmd.deadline_ns) {
            if let Some(op) = self.op.take() {
                let _ = op.cmd.reply.send(Err(timeout(&op.cmd, &self.endpoint)));
            }
        }
        let endpoint = self.endpoint.clone();
        self.queue.retain(|cmd| {
            if now >= cmd.deadline_ns {
                let _ = cmd.reply.send(Err(timeout(cmd, &endpoint)));
                false
            } else {
                true
            }
        });
    }

    pub(super) fn fault_triggers(&mut self) {
        while let Ok(req) = self.triggers.pop() {
            self.report(ShotReport::Fault {
                shot: Some(req.shot),
                fault: ShotFault::NotConnected,
            });
        }
    }

    pub(super) fn start_shots(&mut self) {
        while let Ok(req) = self.triggers.peek().copied() {
            if !self.can_send() {
                return;
            }
            let Some(conn) = self.conn.as_ref() else {
                return;
            };
            // The first heartbeat goes out with the handshake; until its answer the card clock is
            // unknown and the shot waits (bounded by the device's reply timeout).
            if conn.clock.samples() == 0 {
                return;
            }
            let at_card_ticks = conn.clock.host_to_card(req.t0_ns);
            if !self.send(&Message::Start {
                at_card_ticks,
                shots: 1,
            }) {
                return;
            }
            let _ = self.triggers.pop();
            self.outstanding.push_back(Outstanding {
                host_shot: req.shot,
                card_shot: self.card_shots,
            });
            self.card_shots = self.card_shots.wrapping_add(1);
        }
    }

    pub(super) fn begin(&mut self, cmd: Command) {
        let state = match &cmd.request {
            Request::Upload {
                timeline_id,
                events,
            } => OpState::Upload {
                timeline_id: *timeline_id,
                events: events.clone(),
                next: 0,
                started: false,
                barrier: None,
                error: None,
            },
            Request::Arm {
                timeline_id,
                events_total,
            } => OpState::AwaitStatus {
                message: Box::new(Message::Arm {
                    timeline_id: *timeline_id,
                    events_total: *events_total,
                }),
                sent: false,
            },
            Request::Abort => OpState::AwaitStatus {
                message: Box::new(Message::Abort),
                sent: false,
            },
            Request::SafeState => OpState::AwaitStatus {
                message: Box::new(Message::SafeState),
                sent: false,
            },
            Request::Reconnect => {
                let _ = cmd.reply.send(Ok(Reply::Done));
                return;
            }
        };
        self.op = Some(Op { cmd, state });
    }

    pub(super) fn advance_op(&mut self) {
        let Some(mut op) = self.op.take() else {
            return;
        };
        let mut finished = None;
        match &mut op.state {
            OpState::AwaitStatus { message, sent } => {
                if !*sent && self.can_send() && self.send(message) {
                    *sent = true;
                }
            }
            OpState::Upload {
                timeline_id,
                events,
                next,
                started,
                barrier,
                error,
            } => {
                while (!*started || *next < events.len()) && self.can_send() {
                    let end = (*next + MAX_UPLOAD_EVENTS).min(events.len());
                    let mut chunk = heapless::Vec::new();
                    for e in &events[*next..end] {
                        let _ = chunk.push(*e);
                    }
                    let msg = Message::UploadChunk {
                        timeline_id: *timeline_id,
                        offset: *next as u32,
                        events: chunk,
                    };
                    if !self.send(&msg) {
                        break;
                    }
                    *started = true;
                    *next = end;
                }
                if *started && *next >= events.len() && barrier.is_none() && self.can_send() {
                    *barrier = self.send_heartbeat();
                }
                if let (Some(b), Some(conn)) = (*barrier, self.conn.as_ref()) {
                    if conn.hb_answered >= b {
                        finished = Some(match error.take() {
                            Some(e) => Err(e),
                            None => Ok(Reply::Done),
                        });
                    }
                }
            }
        }
        match finished {
            Some(r) => {
                let _ = op.cmd.reply.send(r);
            }
            None => self.op = Some(op),
        }
    }

    pub(super) fn poll_link(&mut self) {
        let now_ms = monotonic_ns() / MS;
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        self.out.clear();
        let out = &mut self.out;
        let polled = conn.link.poll(now_ms, |b| out.extend_from_slice(b));
        let written = if self.out.is_empty() {
            Ok(())
        } else {
            let timeout = Duration::from_millis(self.cfg.reply_timeout_ms);
            conn.transport.write_all(&self.out, timeout)
        };
        match (polled, written) {
            (Err(BridgeError::LinkDown { retries, .. }), _) => {
                self.disconnect(Ending::Link(retries))
            }
            (_, Err(e)) => self.disconnect(Ending::Io(e.to_string())),
            (Err(e), _) => tracing::warn!(card = %self.endpoint, "link: {e}"),
            _ => {}
        }
    }
}
