//! Input from the card: frames, the firmware-reset rule, and what each message means for the
//! pending request and the shots in flight.

use shotline_firmware_bridge::message::{msg_type, Status, MAX_TIMESTAMPS};
use shotline_firmware_bridge::{Frame, Message};

use super::{Ending, OpState, Worker, CARD_ARMED, CARD_RUNNING, CARD_SAFE, MS, WATCHDOG_EXPIRED};
use crate::bridge::clock::ClockEstimate;
use crate::bridge::session::{CardInfo, Reply, SessionError, ShotFault, ShotReport};
use crate::bridge::transport::ReadOutcome;
use crate::bridge::wire::error_name;
use crate::time::monotonic_ns;

impl Worker {
    // ---- input ----

    pub(super) fn read_input(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let mut buf = [0u8; 4096];
        let mut closed = None;
        loop {
            match conn.transport.read(&mut buf) {
                Ok(ReadOutcome::Data(n)) => {
                    let frames = &mut self.frames;
                    conn.decoder.push_slice(&buf[..n], |r| {
                        if let Ok(f) = r {
                            frames.push(f);
                        }
                    });
                }
                Ok(ReadOutcome::WouldBlock) => break,
                Err(e) => {
                    closed = Some(e.to_string());
                    break;
                }
            }
        }
        let frames = std::mem::take(&mut self.frames);
        for frame in &frames {
            if self.conn.is_none() {
                break;
            }
            self.on_frame(frame);
        }
        self.frames = frames;
        self.frames.clear();
        if let Some(reason) = closed {
            if self.conn.is_some() {
                self.disconnect(Ending::Io(reason));
            }
        }
    }

    pub(super) fn on_frame(&mut self, frame: &Frame) {
        let now = monotonic_ns();
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let last = conn.link.ack_value();
        let mid_session = last != 0xFFFF && last != 0;
        if frame.msg_type == msg_type::HELLO && frame.seq == 0 && mid_session {
            self.firmware_reset();
        }
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        match conn.link.on_frame(frame, now / MS) {
            Ok(Some(msg)) => self.on_message(msg, now),
            Ok(None) => {}
            Err(e) => tracing::debug!(card = %self.endpoint, "undecodable message: {e}"),
        }
    }

    pub(super) fn firmware_reset(&mut self) {
        tracing::warn!(card = %self.endpoint, "card said Hello mid-session: firmware reset, its timeline is lost");
        if let Some(conn) = self.conn.as_mut() {
            conn.link.reset();
            conn.hb_inflight.clear();
            conn.hb_sent = 0;
            conn.hb_answered = 0;
            conn.ready = false;
            conn.handshake_deadline_ns = monotonic_ns() + self.cfg.connect_timeout_ms * MS;
        }
        {
            let mut st = self.shared.status.lock();
            st.firmware_resets += 1;
            st.epoch += 1;
            st.connected = false;
            st.last_error = Some("firmware reset".into());
        }
        let err = SessionError::FirmwareReset {
            endpoint: self.endpoint.clone(),
        };
        self.fail_pending(&err, &ShotFault::FirmwareReset);
    }

    pub(super) fn on_message(&mut self, msg: Message, now: u64) {
        match msg {
            Message::Hello {
                protocol_version,
                card_id,
                channels,
                clock_hz,
                max_events,
                buffer_events,
                watchdog_ms,
            } => self.on_hello(
                protocol_version,
                CardInfo {
                    card_id,
                    channels,
                    clock_hz,
                    max_events,
                    buffer_events,
                    watchdog_ms,
                },
                now,
            ),
            Message::Heartbeat { card_ticks, .. } => {
                let Some(conn) = self.conn.as_mut() else {
                    return;
                };
                if let Some(t_send) = conn.hb_inflight.pop_front() {
                    conn.clock.add_sample(t_send, now, card_ticks);
                }
                conn.hb_answered += 1;
            }
            Message::Status(s) => self.on_status(s),
            Message::Error { code, detail } => self.on_error(code, detail),
            Message::EventTimestamps {
                shot,
                first_event,
                applied_ticks,
            } => {
                let Some(host_shot) = self.host_shot(shot) else {
                    return;
                };
                let Some(conn) = self.conn.as_ref() else {
                    return;
                };
                // Converted first (no copy of the estimate, no allocation), then reported.
                let mut host_ns = [0u64; MAX_TIMESTAMPS];
                for (h, t) in host_ns.iter_mut().zip(applied_ticks.iter()) {
                    *h = conn.clock.card_to_host(*t);
                }
                for (i, h) in host_ns.iter().take(applied_ticks.len()).enumerate() {
                    self.report(ShotReport::Applied {
                        shot: host_shot,
                        event: first_event.saturating_add(i as u32),
                        host_ns: *h,
                    });
                }
            }
            Message::AcquisitionChunk {
                shot,
                channel,
                offset,
                samples,
            } => {
                if let Some(host_shot) = self.host_shot(shot) {
                    let sum = samples.iter().map(|s| i64::from(*s)).sum();
                    self.report(ShotReport::Acquired {
                        shot: host_shot,
                        channel,
                        offset,
                        sum,
                    });
                }
            }
            other => {
                tracing::debug!(card = %self.endpoint, "ignoring {:?} from the card", other.msg_type())
            }
        }
    }

    pub(super) fn host_shot(&self, card_shot: u32) -> Option<u64> {
        self.outstanding
            .iter()
            .find(|o| o.card_shot == card_shot)
            .map(|o| o.host_shot)
    }

    pub(super) fn on_hello(&mut self, version: u8, card: CardInfo, now: u64) {
        let hb = self.cfg.heartbeat_ms;
        let refusal = if version != 1 {
            Some(format!(
                "card {} speaks protocol version {version}, this host speaks version 1",
                self.endpoint
            ))
        } else if card.clock_hz == 0 {
            Some(format!("card {} announced a clock of 0 Hz", self.endpoint))
        } else if u64::from(card.watchdog_ms) / 3 < hb {
            Some(format!(
                "card {} has a watchdog of {} ms, so heartbeats are needed every {} ms, but heartbeat_ms is {hb}: lower heartbeat_ms to at most {}",
                self.endpoint,
                card.watchdog_ms,
                card.watchdog_ms / 3,
                card.watchdog_ms / 3
            ))
        } else {
            None
        };
        if let Some(reason) = refusal {
            tracing::warn!("{reason}");
            self.set_error(reason.clone());
            let err = SessionError::Unexpected {
                endpoint: self.endpoint.clone(),
                what: "Hello",
                got: reason,
            };
            self.conn = None;
            self.fail_pending(&err, &ShotFault::NotConnected);
            while let Some(cmd) = self.queue.pop_front() {
                let _ = cmd.reply.send(Err(err.clone()));
            }
            self.schedule_reconnect();
            return;
        }
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if !conn.ready {
            conn.ready = true;
            conn.clock = ClockEstimate::new(card.clock_hz);
            conn.next_hb_ns = now;
            self.backoff_ms = 0;
            tracing::info!(card = %self.endpoint, card_id = card.card_id, clock_hz = card.clock_hz, "card session established");
            let mut st = self.shared.status.lock();
            st.connected = true;
            st.connects += 1;
            st.epoch += 1;
            st.card = Some(card);
            st.last_error = None;
        }
        self.card = Some(card);
    }

    pub(super) fn on_status(&mut self, s: Status) {
        if let Some(op) = self.op.as_mut() {
            if let OpState::AwaitStatus { message, sent } = &op.state {
                // A shot's `Status` (state Armed or Running, `shots_done` ≥ 1) queued by the card
                // before it processed the command is not the command's answer: the answer to `Arm`
                // has `shots_done` 0, the answer to `Abort` / `SafeState` is never Armed or Running.
                let answer = match **message {
                    Message::Arm { .. } => s.shots_done == 0,
                    _ => s.state != CARD_ARMED && s.state != CARD_RUNNING,
                };
                if *sent && answer {
                    let reply = match **message {
                        Message::Arm { .. } if s.state != CARD_ARMED => {
                            Err(SessionError::Unexpected {
                                endpoint: self.endpoint.clone(),
                                what: "arm",
                                got: format!("status with card state {}", s.state),
                            })
                        }
                        _ => Ok(Reply::Status(s)),
                    };
                    match **message {
                        Message::Arm { .. } if reply.is_ok() => {
                            self.card_shots = 0;
                            self.outstanding.clear();
                        }
                        Message::Abort | Message::SafeState => self.outstanding.clear(),
                        _ => {}
                    }
                    if matches!(**message, Message::SafeState) || s.state == CARD_SAFE {
                        self.shared.status.lock().epoch += 1;
                    }
                    if let Some(op) = self.op.take() {
                        let _ = op.cmd.reply.send(reply);
                    }
                    return;
                }
            }
        }
        while let Some(o) = self.outstanding.front().copied() {
            if o.card_shot >= s.shots_done {
                break;
            }
            self.outstanding.pop_front();
            self.report(ShotReport::Done { shot: o.host_shot });
        }
    }

    pub(super) fn on_error(&mut self, code: u16, detail: heapless::String<64>) {
        let err = SessionError::Card {
            endpoint: self.endpoint.clone(),
            code,
            name: error_name(code),
            detail: detail.to_string(),
        };
        tracing::warn!(card = %self.endpoint, "{err}");
        if code == WATCHDOG_EXPIRED {
            self.shared.status.lock().epoch += 1;
        }
        match self.op.as_mut().map(|op| &mut op.state) {
            Some(OpState::Upload { error, .. }) => {
                if error.is_none() {
                    *error = Some(err);
                }
                return;
            }
            Some(OpState::AwaitStatus { sent: true, .. }) => {
                if let Some(op) = self.op.take() {
                    let _ = op.cmd.reply.send(Err(err));
                }
                return;
            }
            _ => {}
        }
        let fault = ShotFault::Card { code, detail };
        while let Some(o) = self.outstanding.pop_front() {
            self.report(ShotReport::Fault {
                shot: Some(o.host_shot),
                fault: fault.clone(),
            });
        }
    }
}
