//! A session with one timing card: a thread owning the transport, the reliable link, the frame decoder
//! and the clock estimate (see `docs/firmware-bridge.md`, section 8).
//!
//! The control plane talks to it with blocking [`Session::request`]s (each bounded by its timeout). The
//! shot path uses [`Session::trigger`] and [`Session::next_report`]: lock-free `rtrb` rings of fixed
//! records plus an eventfd write, no allocation, no blocking.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use shotline_firmware_bridge::frame::DecoderStats;
use shotline_firmware_bridge::link::LinkStats;
use shotline_firmware_bridge::message::{Status, MAX_ERROR_DETAIL};
use shotline_firmware_bridge::WireEvent;

use super::transport::Endpoint;
use super::wake::EventFd;
use super::wire::error_name;
use super::worker::Worker;
use crate::time::{monotonic_ns, Nanos};

/// Largest host send window (frames).
pub const MAX_WINDOW: usize = 32;
/// Capacity of the shot-report ring (the session keeps a backlog beyond it).
pub const REPORT_RING: usize = 4096;
/// Capacity of the trigger ring.
pub const TRIGGER_RING: usize = 64;

/// Session settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    /// The card.
    pub endpoint: Endpoint,
    /// Bound on connecting plus the `Hello` exchange.
    pub connect_timeout_ms: u64,
    /// Default bound on a request's answer.
    pub reply_timeout_ms: u64,
    /// Heartbeat period (must be at most the card's `watchdog_ms / 3`).
    pub heartbeat_ms: u64,
    /// Link retransmission timeout.
    pub retransmit_ms: u64,
    /// Retransmissions before the link is down.
    pub max_retries: u8,
    /// Host send window, `1 ..=` [`MAX_WINDOW`].
    pub window: usize,
    /// Longest wait between reconnection attempts (the first waits 50 ms, then doubling).
    pub backoff_max_ms: u64,
}

impl SessionConfig {
    /// Defaults: connect 2 s, reply 1 s, heartbeat 100 ms, retransmit 50 ms, 5 retries, window 8,
    /// backoff up to 2 s.
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            connect_timeout_ms: 2000,
            reply_timeout_ms: 1000,
            heartbeat_ms: 100,
            retransmit_ms: 50,
            max_retries: 5,
            window: 8,
            backoff_max_ms: 2000,
        }
    }

    fn validate(&self) -> Result<(), SessionError> {
        let bad = |field: &'static str, value: u64, allowed: &'static str| {
            Err(SessionError::Config {
                field,
                value,
                allowed,
            })
        };
        if self.window == 0 || self.window > MAX_WINDOW {
            return bad("window", self.window as u64, "1 ..= 32 frames");
        }
        for (field, v) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("reply_timeout_ms", self.reply_timeout_ms),
            ("heartbeat_ms", self.heartbeat_ms),
            ("retransmit_ms", self.retransmit_ms),
        ] {
            if v == 0 || v > 3_600_000 {
                return bad(field, v, "1 ..= 3600000 ms");
            }
        }
        if self.backoff_max_ms < 50 || self.backoff_max_ms > 3_600_000 {
            return bad("backoff_max_ms", self.backoff_max_ms, "50 ..= 3600000 ms");
        }
        Ok(())
    }
}

/// What the card said about itself in its `Hello`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardInfo {
    /// Serial number.
    pub card_id: u32,
    /// Output channels.
    pub channels: u16,
    /// Card clock rate.
    pub clock_hz: u64,
    /// Largest timeline.
    pub max_events: u32,
    /// Events buffered ahead of playback.
    pub buffer_events: u32,
    /// Heartbeat watchdog.
    pub watchdog_ms: u32,
}

/// A snapshot of the session for logs and tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionStatus {
    /// The card endpoint.
    pub endpoint: String,
    /// The `Hello` exchange is done and the link is up.
    pub connected: bool,
    /// The card of the current (or last) session.
    pub card: Option<CardInfo>,
    /// Sessions established so far.
    pub connects: u64,
    /// Firmware resets seen (a card `Hello` with sequence 0 mid-session).
    pub firmware_resets: u64,
    /// Increments whenever the card may have lost its timeline (new session, firmware reset, watchdog
    /// expiry): an upload made in an older epoch must be repeated.
    pub epoch: u64,
    /// Link counters of the current connection.
    pub link: LinkStats,
    /// Frame decoder counters of the current connection.
    pub decoder: DecoderStats,
    /// Fitted card clock drift (ppm, positive: card fast).
    pub drift_ppm: f64,
    /// Clock samples in the estimate window.
    pub clock_samples: usize,
    /// Smallest heartbeat round trip in the window.
    pub min_rtt_ns: Option<u64>,
    /// The last connection or protocol problem.
    pub last_error: Option<String>,
}

/// A control-plane request.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Upload a timeline (chunks, then a heartbeat barrier).
    Upload {
        /// Timeline id.
        timeline_id: u32,
        /// Its events.
        events: Vec<WireEvent>,
    },
    /// Arm the uploaded timeline (answer: `Status` Armed).
    Arm {
        /// Timeline id.
        timeline_id: u32,
        /// Event count.
        events_total: u32,
    },
    /// Stop playing, keep the timeline (answer: `Status`).
    Abort,
    /// Drive outputs safe, discard the timeline (answer: `Status`).
    SafeState,
    /// Drop the connection and connect again at once.
    Reconnect,
}

impl Request {
    pub(crate) fn what(&self) -> &'static str {
        match self {
            Request::Upload { .. } => "upload",
            Request::Arm { .. } => "arm",
            Request::Abort => "abort",
            Request::SafeState => "safe state",
            Request::Reconnect => "reconnect",
        }
    }
}

/// A successful answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Done (upload accepted, reconnect started).
    Done,
    /// The card's status answer.
    Status(Status),
}

/// Why a request failed. Every message names the card.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SessionError {
    /// No session with the card right now.
    #[error("card {endpoint} is not connected: {reason}")]
    NotConnected {
        /// Card.
        endpoint: String,
        /// Last connection problem.
        reason: String,
    },
    /// No answer in time.
    #[error("card {endpoint} did not answer {what} within {ms} ms")]
    Timeout {
        /// Card.
        endpoint: String,
        /// The request.
        what: &'static str,
        /// The bound.
        ms: u64,
    },
    /// The card refused with an `Error` message.
    #[error("card {endpoint}: card error {code} {name}: {detail}")]
    Card {
        /// Card.
        endpoint: String,
        /// Wire code.
        code: u16,
        /// Its name.
        name: &'static str,
        /// The card's text.
        detail: String,
    },
    /// Retransmissions exhausted.
    #[error("card {endpoint}: link down after {retries} retransmissions")]
    LinkDown {
        /// Card.
        endpoint: String,
        /// Retries.
        retries: u8,
    },
    /// The card rebooted.
    #[error("card {endpoint}: card reset (firmware restarted); its timeline is lost")]
    FirmwareReset {
        /// Card.
        endpoint: String,
    },
    /// The stream broke.
    #[error("card {endpoint}: disconnected: {reason}")]
    Disconnected {
        /// Card.
        endpoint: String,
        /// What happened.
        reason: String,
    },
    /// The card answered something unexpected.
    #[error("card {endpoint}: unexpected answer to {what}: {got}")]
    Unexpected {
        /// Card.
        endpoint: String,
        /// The request.
        what: &'static str,
        /// The answer.
        got: String,
    },
    /// A setting is out of range.
    #[error("session setting {field} = {value} is invalid (allowed: {allowed})")]
    Config {
        /// Setting.
        field: &'static str,
        /// Value.
        value: u64,
        /// Allowed values.
        allowed: &'static str,
    },
    /// The session thread is gone.
    #[error("card {endpoint}: session stopped")]
    Stopped {
        /// Card.
        endpoint: String,
    },
}

/// Why a shot failed (fixed size: travels through the report ring).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShotFault {
    /// Retransmissions exhausted.
    LinkDown {
        /// Retries.
        retries: u8,
    },
    /// The card answered with an `Error`.
    Card {
        /// Wire code.
        code: u16,
        /// Card text.
        detail: heapless::String<MAX_ERROR_DETAIL>,
    },
    /// The card rebooted.
    FirmwareReset,
    /// The stream broke.
    Disconnected,
    /// No session when the shot was triggered.
    NotConnected,
    /// Too many triggers queued.
    TriggerOverflow,
}

impl ShotFault {
    /// Words for a device fault, e.g. `card error 17 UploadOutOfOrder: …`.
    pub fn describe(&self) -> String {
        match self {
            ShotFault::LinkDown { retries } => format!("link down after {retries} retransmissions"),
            ShotFault::Card { code, detail } => {
                format!("card error {code} {}: {detail}", error_name(*code))
            }
            ShotFault::FirmwareReset => "card reset (firmware restarted)".into(),
            ShotFault::Disconnected => "connection to the card lost".into(),
            ShotFault::NotConnected => "card not connected".into(),
            ShotFault::TriggerOverflow => "too many shots triggered and not reported".into(),
        }
    }
}

/// One record from the session to the shot path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShotReport {
    /// Event `event` of shot `shot` was applied at host monotonic `host_ns`.
    Applied {
        /// Shot (host numbering, as triggered).
        shot: u64,
        /// Timeline index.
        event: u32,
        /// When, on the host clock.
        host_ns: Nanos,
    },
    /// Samples of an acquire event on `channel` (`offset` 0 starts a new event), summed.
    Acquired {
        /// Shot.
        shot: u64,
        /// Input channel.
        channel: u16,
        /// Index of the first sample within the event.
        offset: u32,
        /// Sum of the samples of this chunk.
        sum: i64,
    },
    /// The card finished the shot.
    Done {
        /// Shot.
        shot: u64,
    },
    /// The shot (or, with `None`, the session) failed.
    Fault {
        /// The shot concerned, if any.
        shot: Option<u64>,
        /// Why.
        fault: ShotFault,
    },
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct ShotRequest {
    pub(crate) shot: u64,
    pub(crate) t0_ns: Nanos,
}

pub(crate) struct Command {
    pub(crate) request: Request,
    pub(crate) reply: mpsc::Sender<Result<Reply, SessionError>>,
    pub(crate) deadline_ns: Nanos,
    pub(crate) timeout_ms: u64,
}

pub(crate) struct Shared {
    pub(crate) status: Mutex<SessionStatus>,
    pub(crate) changed: Condvar,
    pub(crate) stop: AtomicBool,
    pub(crate) notify: Mutex<Option<Thread>>,
}

/// A read-only view of a session's [`SessionStatus`] that can be kept apart from the device (operators
/// read it while the shot clock holds the device). Cheap to clone; outlives the session harmlessly.
#[derive(Clone)]
pub struct StatusHandle(Arc<Shared>);

impl StatusHandle {
    /// The session's current status.
    pub fn status(&self) -> SessionStatus {
        self.0.status.lock().clone()
    }
}

impl std::fmt::Debug for StatusHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StatusHandle").finish_non_exhaustive()
    }
}

/// The handle of a session thread. Dropping it tries a `SafeState`, then stops the thread.
pub struct Session {
    endpoint: String,
    reply_timeout: Duration,
    commands: mpsc::Sender<Command>,
    wake: Arc<EventFd>,
    triggers: rtrb::Producer<ShotRequest>,
    reports: rtrb::Consumer<ShotReport>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Starts the session thread, which connects in the background (never blocks on the network).
    pub fn start(config: SessionConfig) -> Result<Session, SessionError> {
        config.validate()?;
        let endpoint = config.endpoint.to_string();
        let stopped = |reason: String| SessionError::Disconnected {
            endpoint: endpoint.clone(),
            reason,
        };
        let wake = Arc::new(EventFd::new().map_err(|e| stopped(format!("eventfd: {e}")))?);
        let (commands, command_rx) = mpsc::channel();
        let (triggers, trigger_rx) = rtrb::RingBuffer::new(TRIGGER_RING);
        let (report_tx, reports) = rtrb::RingBuffer::new(REPORT_RING);
        let shared = Arc::new(Shared {
            status: Mutex::new(SessionStatus {
                endpoint: endpoint.clone(),
                ..SessionStatus::default()
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            notify: Mutex::new(None),
        });
        let reply_timeout = Duration::from_millis(config.reply_timeout_ms);
        let worker = Worker::new(
            config,
            shared.clone(),
            command_rx,
            wake.clone(),
            trigger_rx,
            report_tx,
        );
        let thread = std::thread::Builder::new()
            .name(format!("bridge {endpoint}"))
            .spawn(move || worker.run())
            .map_err(|e| stopped(format!("cannot start the session thread: {e}")))?;
        Ok(Session {
            endpoint,
            reply_timeout,
            commands,
            wake,
            triggers,
            reports,
            shared,
            thread: Some(thread),
        })
    }

    /// The card endpoint as text.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sends `request` and waits at most `timeout` for its answer.
    pub fn request(&self, request: Request, timeout: Duration) -> Result<Reply, SessionError> {
        let what = request.what();
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let (tx, rx) = mpsc::channel();
        let cmd = Command {
            request,
            reply: tx,
            deadline_ns: monotonic_ns().saturating_add(timeout_ms.saturating_mul(1_000_000)),
            timeout_ms,
        };
        if self.commands.send(cmd).is_err() {
            return Err(SessionError::Stopped {
                endpoint: self.endpoint.clone(),
            });
        }
        self.wake.wake();
        match rx.recv_timeout(timeout.saturating_add(Duration::from_millis(20))) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(SessionError::Timeout {
                endpoint: self.endpoint.clone(),
                what,
                ms: timeout_ms,
            }),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(SessionError::Stopped {
                endpoint: self.endpoint.clone(),
            }),
        }
    }

    /// A snapshot of the session.
    pub fn status(&self) -> SessionStatus {
        self.shared.status.lock().clone()
    }

    /// A status view to keep apart from the device.
    pub fn status_handle(&self) -> StatusHandle {
        StatusHandle(self.shared.clone())
    }

    /// Waits at most `timeout` for the session to be established; returns the card's `Hello`.
    pub fn wait_connected(&self, timeout: Duration) -> Result<CardInfo, SessionError> {
        let now = std::time::Instant::now();
        // A timeout too large for the clock waits "forever" (a year).
        let deadline = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600));
        let mut status = self.shared.status.lock();
        loop {
            if status.connected {
                if let Some(card) = status.card {
                    return Ok(card);
                }
            }
            if self
                .shared
                .changed
                .wait_until(&mut status, deadline)
                .timed_out()
            {
                if status.connected {
                    if let Some(card) = status.card {
                        return Ok(card);
                    }
                }
                return Err(SessionError::NotConnected {
                    endpoint: self.endpoint.clone(),
                    reason: match &status.last_error {
                        Some(e) => format!("{e} (waited {} ms)", timeout.as_millis()),
                        None => format!("no session within {} ms", timeout.as_millis()),
                    },
                });
            }
        }
    }

    /// The thread to `unpark` when a shot is done or failed (the shot clock thread).
    pub fn set_notify(&self, thread: Thread) {
        *self.shared.notify.lock() = Some(thread);
    }

    /// Shot path: start shot `shot` at host monotonic `t0_ns` (no allocation, no lock, no blocking).
    pub fn trigger(&mut self, shot: u64, t0_ns: Nanos) -> Result<(), ShotFault> {
        self.triggers
            .push(ShotRequest { shot, t0_ns })
            .map_err(|_| ShotFault::TriggerOverflow)?;
        self.wake.wake();
        Ok(())
    }

    /// Shot path: the next report, if any.
    pub fn next_report(&mut self) -> Option<ShotReport> {
        self.reports.pop().ok()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.shared.status.lock().connected {
            let _ = self.request(Request::SafeState, self.reply_timeout);
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        self.wake.wake();
        if let Some(t) = self.thread.take() {
            // The thread sees the stop flag within one loop turn, unless it is inside a blocking
            // step (a TCP connect, bounded by connect_timeout_ms; a write to a card that does not
            // read, bounded by reply_timeout_ms). Wait at most the reply timeout for it; a thread
            // still busy then is left to finish that step and exit on its own.
            let give_up = std::time::Instant::now() + self.reply_timeout;
            while !t.is_finished() && std::time::Instant::now() < give_up {
                std::thread::sleep(Duration::from_millis(1));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                tracing::warn!(card = %self.endpoint, "session thread still busy at drop; left to exit by itself");
            }
        }
    }
}
