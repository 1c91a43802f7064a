//! The session thread: connects (with backoff), says `Hello`, keeps the link and the heartbeat going,
//! runs control-plane requests one at a time, turns triggers into `Start`s and card reports into
//! [`ShotReport`]s on the host timebase.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use shotline_firmware_bridge::{Frame, FrameDecoder, Link, LinkConfig, Message};

use super::clock::ClockEstimate;
use super::session::{
    CardInfo, Command, Reply, Request, SessionConfig, SessionError, Shared, ShotFault, ShotReport,
    ShotRequest, MAX_WINDOW,
};
use super::transport::Transport;
use super::wake::EventFd;
use crate::time::monotonic_ns;

mod incoming;
mod progress;

const MS: u64 = 1_000_000;
const MIN_BACKOFF_MS: u64 = 50;
const CARD_ARMED: u8 = 2;
const CARD_RUNNING: u8 = 3;
const CARD_SAFE: u8 = 4;
const WATCHDOG_EXPIRED: u16 = 21;

struct Conn {
    transport: Transport,
    link: Link<MAX_WINDOW>,
    decoder: FrameDecoder,
    ready: bool,
    handshake_deadline_ns: u64,
    clock: ClockEstimate,
    /// Send times of heartbeats whose answer is outstanding, oldest first.
    hb_inflight: VecDeque<u64>,
    hb_sent: u64,
    hb_answered: u64,
    next_hb_ns: u64,
}

enum OpState {
    Upload {
        timeline_id: u32,
        events: Vec<shotline_firmware_bridge::WireEvent>,
        next: usize,
        started: bool,
        barrier: Option<u64>,
        error: Option<SessionError>,
    },
    AwaitStatus {
        message: Box<Message>,
        sent: bool,
    },
}

struct Op {
    cmd: Command,
    state: OpState,
}

#[derive(Clone, Copy)]
struct Outstanding {
    host_shot: u64,
    card_shot: u32,
}

/// Why a connection ended.
enum Ending {
    Link(u8),
    Io(String),
}

pub(crate) struct Worker {
    cfg: SessionConfig,
    endpoint: String,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
    wake: Arc<EventFd>,
    triggers: rtrb::Consumer<ShotRequest>,
    reports: rtrb::Producer<ShotReport>,
    backlog: VecDeque<ShotReport>,
    pushed: bool,
    conn: Option<Conn>,
    backoff_ms: u64,
    next_connect_ns: u64,
    queue: VecDeque<Command>,
    op: Option<Op>,
    outstanding: VecDeque<Outstanding>,
    card_shots: u32,
    card: Option<CardInfo>,
    out: Vec<u8>,
    frames: Vec<Frame>,
}

impl Worker {
    pub(crate) fn new(
        cfg: SessionConfig,
        shared: Arc<Shared>,
        commands: mpsc::Receiver<Command>,
        wake: Arc<EventFd>,
        triggers: rtrb::Consumer<ShotRequest>,
        reports: rtrb::Producer<ShotReport>,
    ) -> Self {
        Self {
            endpoint: cfg.endpoint.to_string(),
            cfg,
            shared,
            commands,
            wake,
            triggers,
            reports,
            backlog: VecDeque::new(),
            pushed: false,
            conn: None,
            backoff_ms: 0,
            next_connect_ns: 0,
            queue: VecDeque::new(),
            op: None,
            outstanding: VecDeque::new(),
            card_shots: 0,
            card: None,
            out: Vec::with_capacity(16 * 1024),
            frames: Vec::new(),
        }
    }

    pub(crate) fn run(mut self) {
        while !self.shared.stop.load(Ordering::SeqCst) {
            self.wake.drain();
            let now = monotonic_ns();
            if self.conn.is_none() && now >= self.next_connect_ns {
                self.connect();
            }
            self.take_commands();
            self.read_input();
            self.step();
            self.flush();
            self.publish();
            self.wait();
        }
        self.conn = None;
        let mut st = self.shared.status.lock();
        st.connected = false;
        self.shared.changed.notify_all();
    }

    // ---- connection ----

    fn connect(&mut self) {
        let timeout = Duration::from_millis(self.cfg.connect_timeout_ms);
        match Transport::open(&self.cfg.endpoint, timeout) {
            Ok(mut transport) => {
                let link_cfg = LinkConfig {
                    retransmit_ms: self.cfg.retransmit_ms,
                    max_retries: self.cfg.max_retries,
                };
                let now = monotonic_ns();
                let mut link = Link::new(link_cfg);
                let hello = Message::host_hello();
                let flushed = transport.write_all(&[0], timeout);
                if let Err(e) = flushed {
                    self.connect_failed(e.to_string());
                    return;
                }
                if let Err(e) = link.send(&hello, now / MS) {
                    self.connect_failed(format!("cannot queue Hello: {e}"));
                    return;
                }
                tracing::debug!(card = %self.endpoint, "connected, saying Hello");
                self.conn = Some(Conn {
                    transport,
                    link,
                    decoder: FrameDecoder::new(),
                    ready: false,
                    handshake_deadline_ns: now + self.cfg.connect_timeout_ms * MS,
                    clock: ClockEstimate::new(1),
                    hb_inflight: VecDeque::new(),
                    hb_sent: 0,
                    hb_answered: 0,
                    next_hb_ns: now,
                });
            }
            Err(e) => self.connect_failed(e.to_string()),
        }
    }

    fn connect_failed(&mut self, reason: String) {
        tracing::debug!(card = %self.endpoint, %reason, "connection attempt failed");
        while let Some(cmd) = self.queue.pop_front() {
            let _ = cmd.reply.send(Err(SessionError::NotConnected {
                endpoint: self.endpoint.clone(),
                reason: reason.clone(),
            }));
        }
        self.set_error(reason);
        self.schedule_reconnect();
    }

    fn schedule_reconnect(&mut self) {
        self.backoff_ms = if self.backoff_ms == 0 {
            MIN_BACKOFF_MS
        } else {
            (self.backoff_ms * 2).min(self.cfg.backoff_max_ms)
        };
        self.next_connect_ns = monotonic_ns() + self.backoff_ms * MS;
    }

    /// Records the last problem, without the `card <endpoint>: ` prefix (the status names the card).
    fn set_error(&mut self, reason: String) {
        let prefix = format!("card {}: ", self.endpoint);
        let reason = match reason.strip_prefix(&prefix) {
            Some(rest) => rest.to_string(),
            None => reason,
        };
        self.shared.status.lock().last_error = Some(reason);
    }

    /// Ends the connection: fails what is pending and schedules a reconnection.
    fn disconnect(&mut self, why: Ending) {
        let (err, fault) = match &why {
            Ending::Link(retries) => (
                SessionError::LinkDown {
                    endpoint: self.endpoint.clone(),
                    retries: *retries,
                },
                ShotFault::LinkDown { retries: *retries },
            ),
            Ending::Io(reason) => (
                SessionError::Disconnected {
                    endpoint: self.endpoint.clone(),
                    reason: reason.clone(),
                },
                ShotFault::Disconnected,
            ),
        };
        tracing::warn!(card = %self.endpoint, "session ended: {err}");
        self.set_error(err.to_string());
        self.conn = None;
        self.fail_pending(&err, &fault);
        while let Some(cmd) = self.queue.pop_front() {
            let _ = cmd.reply.send(Err(err.clone()));
        }
        self.schedule_reconnect();
    }

    fn fail_pending(&mut self, err: &SessionError, fault: &ShotFault) {
        if let Some(op) = self.op.take() {
            let _ = op.cmd.reply.send(Err(err.clone()));
        }
        while let Some(o) = self.outstanding.pop_front() {
            self.report(ShotReport::Fault {
                shot: Some(o.host_shot),
                fault: fault.clone(),
            });
        }
    }

    // ---- commands ----

    fn take_commands(&mut self) {
        while let Ok(cmd) = self.commands.try_recv() {
            if matches!(cmd.request, Request::Reconnect) {
                if self.conn.take().is_some() {
                    let err = SessionError::Disconnected {
                        endpoint: self.endpoint.clone(),
                        reason: "reconnect requested".into(),
                    };
                    self.fail_pending(&err, &ShotFault::Disconnected);
                }
                self.backoff_ms = 0;
                self.next_connect_ns = 0;
                self.shared.status.lock().connected = false;
                self.shared.changed.notify_all();
                let _ = cmd.reply.send(Ok(Reply::Done));
                continue;
            }
            // Without a connection, a request waits only for an attempt that is due right now.
            if self.conn.is_none() && self.backoff_ms > 0 {
                let reason = self
                    .shared
                    .status
                    .lock()
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "connecting".into());
                let _ = cmd.reply.send(Err(SessionError::NotConnected {
                    endpoint: self.endpoint.clone(),
                    reason,
                }));
                continue;
            }
            self.queue.push_back(cmd);
        }
    }

    // ---- reports ----

    fn report(&mut self, r: ShotReport) {
        self.pushed = true;
        if !self.backlog.is_empty() {
            self.backlog.push_back(r);
            return;
        }
        if let Err(rtrb::PushError::Full(r)) = self.reports.push(r) {
            self.backlog.push_back(r);
        }
    }

    fn flush(&mut self) {
        while let Some(r) = self.backlog.pop_front() {
            if let Err(rtrb::PushError::Full(r)) = self.reports.push(r) {
                self.backlog.push_front(r);
                break;
            }
            self.pushed = true;
        }
        if std::mem::take(&mut self.pushed) {
            if let Some(t) = self.shared.notify.lock().as_ref() {
                t.unpark();
            }
        }
    }

    fn publish(&mut self) {
        let mut st = self.shared.status.lock();
        match self.conn.as_ref() {
            Some(c) => {
                st.connected = c.ready;
                st.link = c.link.stats();
                st.decoder = c.decoder.stats();
                st.drift_ppm = c.clock.drift_ppm();
                st.clock_samples = c.clock.samples();
                st.min_rtt_ns = c.clock.min_rtt_ns();
            }
            None => st.connected = false,
        }
        if st.card.is_none() {
            st.card = self.card;
        }
        drop(st);
        self.shared.changed.notify_all();
    }

    fn wait(&mut self) {
        let now = monotonic_ns();
        let mut deadline = now + 500 * MS;
        let mut consider = |t: u64| deadline = deadline.min(t);
        match self.conn.as_ref() {
            None => consider(self.next_connect_ns),
            Some(c) => {
                if !c.ready {
                    consider(c.handshake_deadline_ns);
                } else {
                    consider(c.next_hb_ns);
                }
                if let Some(ms) = c.link.next_deadline() {
                    consider(ms.saturating_mul(MS));
                }
            }
        }
        if let Some(op) = self.op.as_ref() {
            consider(op.cmd.deadline_ns);
        }
        for cmd in &self.queue {
            consider(cmd.deadline_ns);
        }
        if !self.backlog.is_empty() {
            consider(now + MS);
        }
        if !self.triggers.is_empty() || (self.op.is_some() && self.can_send()) {
            consider(now + MS);
        }
        // The link works in whole milliseconds: wake at the end of the deadline's millisecond.
        let timeout_ms = if deadline <= now {
            0
        } else {
            (deadline - now).div_ceil(MS).min(1000) as libc::c_int
        };
        let mut fds = [
            libc::pollfd {
                fd: self.wake.fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: -1,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        if let Some(c) = self.conn.as_ref() {
            fds[1].fd = c.transport.fd();
        }
        // SAFETY: two valid pollfds (a negative fd is ignored by poll).
        unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
    }
}
