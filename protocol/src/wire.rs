//! Client <-> gateway messages and length-prefixed msgpack framing (pure functions, no I/O).
//!
//! A frame is a 4-byte big-endian unsigned length `N` followed by `N` bytes of msgpack
//! written with string map keys (`rmp_serde::to_vec_named`).

use std::io::Cursor;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::backend::BackendConfig;
use crate::error::{ValidationError, ValidationReport};
use crate::result::{JobResult, JobStatus, StatusRecord};
use crate::value::Value;

/// ALPN protocol name (carries the major version).
pub const ALPN: &[u8] = b"shotline/1";
/// Protocol version.
pub const PROTOCOL_VERSION: u32 = 1;
/// Default maximum frame body size in bytes.
pub const DEFAULT_MAX_FRAME: usize = 8 * 1024 * 1024;
/// Size of the frame length prefix.
pub const FRAME_HEADER_LEN: usize = 4;
/// Maximum nesting depth accepted when decoding a frame body.
pub const MAX_DECODE_DEPTH: usize = 64;

/// A client request; msgpack map tagged by `op`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Exchange credentials for a token.
    Login {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// List backends.
    Backends {
        /// Session token.
        token: String,
    },
    /// Describe one backend.
    Backend {
        /// Session token.
        token: String,
        /// Backend name.
        name: String,
    },
    /// Submit a job.
    Submit {
        /// Session token.
        token: String,
        /// Target backend name.
        backend: String,
        /// The raw job (validated by the gateway).
        job: Value,
        /// Client-side job object id.
        #[serde(default)]
        qobj_id: Option<String>,
        /// Scheduling priority (higher first).
        #[serde(default)]
        priority: i32,
        /// Free-form tags.
        #[serde(default)]
        tags: Vec<String>,
        /// Makes retried submissions return the first job instead of a new one.
        #[serde(default)]
        idempotency_key: Option<String>,
    },
    /// Ask for a job's status.
    Status {
        /// Session token.
        token: String,
        /// Job identifier.
        job_id: String,
    },
    /// Fetch a job's result.
    Result {
        /// Session token.
        token: String,
        /// Job identifier.
        job_id: String,
    },
    /// Revoke the token.
    Logout {
        /// Session token.
        token: String,
    },
    /// Who the token belongs to.
    Whoami {
        /// Session token.
        token: String,
    },
    /// Create an account (only when the server allows self-registration).
    Register {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// List jobs: one's own, or everyone's for an administrator with `all`.
    Jobs {
        /// Session token.
        token: String,
        /// Only jobs with this status.
        #[serde(default)]
        status: Option<JobStatus>,
        /// Only jobs of this backend.
        #[serde(default)]
        backend: Option<String>,
        /// Only jobs submitted at or after this time (RFC 3339 UTC).
        #[serde(default)]
        since: Option<String>,
        /// Only jobs submitted before this time (RFC 3339 UTC).
        #[serde(default)]
        until: Option<String>,
        /// Page size (1..=500, default 50).
        #[serde(default)]
        limit: Option<u32>,
        /// Continue after this cursor (`next` of the previous page).
        #[serde(default)]
        after: Option<i64>,
        /// Administrators: every user's jobs.
        #[serde(default)]
        all: bool,
    },
    /// Cancel a job: a queued job at once, a running one at the next shot boundary.
    Cancel {
        /// Session token.
        token: String,
        /// Job identifier.
        job_id: String,
    },
    /// Receive every status change and progress of a job on this stream until it is terminal.
    Watch {
        /// Session token.
        token: String,
        /// Job identifier.
        job_id: String,
        /// Also push each shot's memory value as it is analysed.
        #[serde(default)]
        shots: bool,
    },
    /// Administrators: a backend finishes nothing new until resumed (the running job is re-queued).
    PauseBackend {
        /// Session token.
        token: String,
        /// Backend name.
        name: String,
    },
    /// Administrators: undo a pause.
    ResumeBackend {
        /// Session token.
        token: String,
        /// Backend name.
        name: String,
    },
    /// Administrators: emergency stop of every backend (devices to safe state, running jobs re-queued,
    /// backends paused).
    Estop {
        /// Session token.
        token: String,
    },
}

/// Options of a submission besides the job itself (the optional fields of a `submit` request).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubmitOptions {
    /// Client-side id echoed in the result.
    pub qobj_id: Option<String>,
    /// Higher runs first.
    pub priority: i32,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// Retry-safe key: the same key returns the same job.
    pub idempotency_key: Option<String>,
}

/// Filters of a job listing (the optional fields of a `jobs` request).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobsQuery {
    /// Only this status.
    pub status: Option<JobStatus>,
    /// Only this backend.
    pub backend: Option<String>,
    /// Submitted at or after (RFC 3339).
    pub since: Option<String>,
    /// Submitted before (RFC 3339).
    pub until: Option<String>,
    /// Page size (1..=500; default 50).
    pub limit: Option<u32>,
    /// Cursor from the previous page.
    pub after: Option<i64>,
    /// Administrators: everyone's jobs.
    pub all: bool,
}

/// One job in a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    /// Job identifier.
    pub job_id: String,
    /// Owner.
    pub user: String,
    /// Backend.
    pub backend: String,
    /// Status.
    pub status: JobStatus,
    /// Status detail.
    pub detail: String,
    /// Client-side id.
    pub qobj_id: Option<String>,
    /// Priority.
    pub priority: i64,
    /// Tags.
    pub tags: Vec<String>,
    /// Submission time.
    pub submitted_at: String,
    /// Last change.
    pub updated_at: String,
}

/// How far a running job has come.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Shots done over all experiments.
    pub shots_done: u64,
    /// Shots of the whole job.
    pub shots_total: u64,
    /// Index of the experiment running.
    pub experiment_index: u32,
    /// Its name.
    pub experiment: String,
}

/// Something that happened to a watched job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobEvent {
    /// The status changed (the first event of a watch is the current status).
    Status {
        /// The new status.
        status: StatusRecord,
    },
    /// Shots were done.
    Progress {
        /// Job identifier.
        job_id: String,
        /// Where the job is.
        progress: Progress,
    },
    /// One shot was analysed (only with `shots: true`).
    Shot {
        /// Job identifier.
        job_id: String,
        /// Experiment index.
        experiment_index: u32,
        /// Shot index.
        shot: u64,
        /// Its memory value.
        memory: String,
    },
}

impl JobEvent {
    /// The job the event is about.
    pub fn job_id(&self) -> &str {
        match self {
            JobEvent::Status { status } => &status.job_id,
            JobEvent::Progress { job_id, .. } | JobEvent::Shot { job_id, .. } => job_id,
        }
    }
}

/// A gateway response; msgpack map tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// Login succeeded.
    LoggedIn {
        /// Session token.
        token: String,
        /// User name.
        user: String,
        /// Expiry time (RFC 3339, UTC).
        expires_at: String,
    },
    /// Backend list.
    Backends {
        /// One summary per backend.
        backends: Vec<BackendSummary>,
    },
    /// One backend's configuration and status.
    Backend {
        /// Published configuration.
        config: BackendConfig,
        /// Current status.
        status: BackendStatus,
    },
    /// A job was accepted (durably).
    Submitted {
        /// Job identifier.
        job_id: String,
        /// Its status.
        status: StatusRecord,
        /// Whether this repeats an earlier submission with the same idempotency key.
        duplicate: bool,
    },
    /// A job's status.
    Status {
        /// The status record.
        status: StatusRecord,
    },
    /// A job's result.
    Result {
        /// The result.
        result: JobResult,
    },
    /// The token was revoked.
    LoggedOut {},
    /// The caller.
    Whoami {
        /// User name.
        user: String,
        /// Administrator.
        is_admin: bool,
    },
    /// An account was created.
    Registered {
        /// User name.
        user: String,
    },
    /// A page of jobs, newest first.
    Jobs {
        /// The jobs.
        jobs: Vec<JobSummary>,
        /// Cursor of the next page (`after`), absent on the last page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<i64>,
    },
    /// The cancel was accepted: a queued job is CANCELLED; a running one stops at the next shot boundary
    /// (watch it, or ask its status, to see it end CANCELLED).
    Cancelled {
        /// The status right after the request.
        status: StatusRecord,
    },
    /// One pushed event of a `watch` stream (the stream ends after the terminal status).
    Event {
        /// The event.
        event: JobEvent,
    },
    /// An administrative action was done.
    Done {
        /// What was done.
        message: String,
    },
    /// The answer to `estop`: what the emergency stop did, per backend and per device.
    Estopped(EstopReport),
    /// The request failed.
    Error {
        /// What went wrong.
        error: ErrorBody,
    },
}

/// What an emergency stop did (`estop`): every backend was told at once; per backend and per device whether
/// the safe state was reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EstopReport {
    /// One line for people, naming what is not safe.
    pub message: String,
    /// Every backend answered and every device reached its safe state.
    pub all_safe: bool,
    /// One entry per configured backend, in configuration order.
    pub backends: Vec<BackendEstop>,
}

/// What an emergency stop did on one backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendEstop {
    /// Backend name.
    pub backend: String,
    /// Whether the backend answered in time (false: `error` says why; nothing is known of its devices).
    pub answered: bool,
    /// Whether the backend is paused now.
    pub paused: bool,
    /// The job that was running, if any; it is re-queued once its shot clock reaches a shot boundary.
    #[serde(default)]
    pub job_id: Option<String>,
    /// Whether that job had left `RUNNING` (re-queued) before the answer.
    #[serde(default)]
    pub job_settled: bool,
    /// Every device of the backend, in configuration order.
    #[serde(default)]
    pub devices: Vec<DeviceSafeState>,
    /// Why the backend did not answer.
    #[serde(default)]
    pub error: Option<String>,
}

/// Whether one device reached its safe state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSafeState {
    /// Device name (configuration).
    pub device: String,
    /// The device confirmed its safe state.
    pub safe: bool,
    /// Why not (busy past the deadline, refused, no answer).
    #[serde(default)]
    pub reason: Option<String>,
}

impl EstopReport {
    /// Builds the report and its message from the backends' answers.
    pub fn new(backends: Vec<BackendEstop>) -> Self {
        let mut problems = Vec::new();
        for b in &backends {
            if !b.answered {
                problems.push(format!(
                    "backend {} did not answer ({})",
                    b.backend,
                    b.error.as_deref().unwrap_or("no reason")
                ));
            }
            for d in b.devices.iter().filter(|d| !d.safe) {
                problems.push(format!(
                    "{}/{} NOT SAFE: {}",
                    b.backend,
                    d.device,
                    d.reason.as_deref().unwrap_or("no reason")
                ));
            }
        }
        let all_safe = problems.is_empty();
        let message = if all_safe {
            format!(
                "emergency stop: {} backend(s) stopped, every device in its safe state, running jobs re-queued, backends paused until resumed",
                backends.len()
            )
        } else {
            format!(
                "emergency stop INCOMPLETE: {}; backends paused until resumed",
                problems.join("; ")
            )
        };
        EstopReport {
            message,
            all_safe,
            backends,
        }
    }
}

/// A backend in the backend list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendSummary {
    /// Backend identifier.
    pub name: String,
    /// Human name.
    pub display_name: String,
    /// Backend version.
    pub version: String,
    /// Whether it is a simulator.
    pub simulator: bool,
    /// Current status.
    pub status: BackendStatus,
}

/// Operational state of a backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendStatus {
    /// Whether it can execute jobs.
    pub operational: bool,
    /// Whether an operator paused it.
    pub paused: bool,
    /// Jobs waiting for it.
    pub pending_jobs: u64,
    /// Human status message.
    pub status_msg: String,
    /// The execution currently running, if any.
    pub running_execution: Option<String>,
    /// The backend's devices (only in the answer to `backend`; empty in `backends`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceStatus>,
}

/// One device of a backend, as its sequencer sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceStatus {
    /// Device name from the configuration.
    pub name: String,
    /// Driver (`sim_ttl`, `sim_dds`, `sim_camera`, `bridge`).
    pub driver: String,
    /// Lifecycle state: `manual`, `programming`, `programmed`, `armed`, `running`, `fault`; `unknown` when
    /// its sequencer did not answer.
    pub state: String,
    /// The last error of a program, safe state or reset, if the last such operation failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// For a device on a timing card (`driver: bridge`): the card and its link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<CardStatus>,
}

/// The connection to a timing card behind the firmware bridge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardStatus {
    /// `host:port` or serial device path.
    pub endpoint: String,
    /// The session is established (the card said `Hello`) and the link is up.
    pub connected: bool,
    /// The card's serial number from its `Hello` (current or last session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_id: Option<u32>,
    /// The card's clock rate in Hz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_hz: Option<u64>,
    /// Fitted drift of the card clock against the host's (ppm, positive: card fast).
    pub drift_ppm: f64,
    /// Heartbeat round trips in the clock fit.
    pub clock_samples: u64,
    /// Smallest heartbeat round trip in the fit window (ns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_rtt_ns: Option<u64>,
    /// Sessions established since the server started.
    pub connects: u64,
    /// Firmware resets seen (the card said `Hello` mid-session).
    pub firmware_resets: u64,
    /// Frames retransmitted on the current connection.
    pub retransmissions: u64,
    /// Frames rejected by their CRC on the current connection.
    pub crc_errors: u64,
    /// The last connection or protocol problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Stable error codes of [`ErrorBody::code`].
pub mod codes {
    /// No or unknown token.
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    /// Wrong user or password.
    pub const INVALID_CREDENTIALS: &str = "INVALID_CREDENTIALS";
    /// The token has expired; log in again.
    pub const TOKEN_EXPIRED: &str = "TOKEN_EXPIRED";
    /// Authenticated but not allowed.
    pub const FORBIDDEN: &str = "FORBIDDEN";
    /// No such backend or job.
    pub const NOT_FOUND: &str = "NOT_FOUND";
    /// The job failed validation (see `details`).
    pub const VALIDATION_FAILED: &str = "VALIDATION_FAILED";
    /// The request could not be decoded.
    pub const MALFORMED_REQUEST: &str = "MALFORMED_REQUEST";
    /// The frame exceeds the size limit.
    pub const FRAME_TOO_LARGE: &str = "FRAME_TOO_LARGE";
    /// Protocol version not supported.
    pub const UNSUPPORTED_VERSION: &str = "UNSUPPORTED_VERSION";
    /// The job has no result yet.
    pub const RESULT_NOT_READY: &str = "RESULT_NOT_READY";
    /// The service or backend is temporarily unavailable.
    pub const UNAVAILABLE: &str = "UNAVAILABLE";
    /// Server-side bug or failure.
    pub const INTERNAL: &str = "INTERNAL";
    /// The server's storage is full: nothing was stored; retry later (the operator must free disk space).
    pub const STORAGE_FULL: &str = "STORAGE_FULL";
    /// The server's storage is failing (I/O error, damaged or read-only database): nothing was stored.
    pub const STORAGE_UNAVAILABLE: &str = "STORAGE_UNAVAILABLE";
    /// Too many requests; retry later.
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    /// The idempotency key was already used by this user for a different job body.
    pub const IDEMPOTENCY_CONFLICT: &str = "IDEMPOTENCY_CONFLICT";
    /// A user with that name already exists.
    pub const CONFLICT: &str = "CONFLICT";
    /// A value of the request is not acceptable (outside validation of jobs).
    pub const INVALID_ARGUMENT: &str = "INVALID_ARGUMENT";
    /// The job is already finished (DONE, ERROR or CANCELLED) and cannot be cancelled.
    pub const ALREADY_FINISHED: &str = "ALREADY_FINISHED";
    /// A configured limit was hit (queued jobs, connections, streams, job size).
    pub const LIMIT_EXCEEDED: &str = "LIMIT_EXCEEDED";
}

/// A structured error: stable code, human message, and for validation the offending paths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// One of [`codes`].
    pub code: String,
    /// Human explanation.
    pub message: String,
    /// Offending field path, when there is a single one.
    #[serde(default)]
    pub path: Option<String>,
    /// Validation errors (capped).
    #[serde(default)]
    pub details: Vec<ValidationError>,
    /// Total number of validation errors (may exceed `details.len()`).
    #[serde(default)]
    pub total_errors: usize,
}

impl ErrorBody {
    /// An error without path or details.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        ErrorBody {
            code: code.to_string(),
            message: message.into(),
            path: None,
            details: Vec::new(),
            total_errors: 0,
        }
    }

    /// A `VALIDATION_FAILED` error carrying the report's errors; `path` is the first error's
    /// and `message` a one-line summary naming the first error.
    pub fn validation(report: ValidationReport) -> Self {
        let noun = if report.total == 1 { "error" } else { "errors" };
        let message = match report.errors.first() {
            Some(first) => format!(
                "the job is invalid: {} {noun}; first: {}: {}",
                report.total, first.path, first.code
            ),
            None => "the job is invalid".to_string(),
        };
        ErrorBody {
            code: codes::VALIDATION_FAILED.to_string(),
            message,
            path: report.errors.first().map(|e| e.path.clone()),
            total_errors: report.total,
            details: report.errors,
        }
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(path) = &self.path {
            write!(f, " (at {path})")?;
        }
        for d in &self.details {
            write!(f, "\n  {d}")?;
        }
        let hidden = self.total_errors.saturating_sub(self.details.len());
        if hidden > 0 {
            write!(f, "\n  ... and {hidden} more")?;
        }
        Ok(())
    }
}

/// A framing failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame body exceeds the limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Body length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// A zero-length frame.
    #[error("empty frame: the length prefix is 0, a frame must carry one msgpack map")]
    Empty,
    /// The message could not be encoded.
    #[error("cannot encode message as msgpack: {0}")]
    Encode(String),
    /// The body is not a valid message.
    #[error("cannot decode frame body: {0}")]
    Decode(String),
}

/// Encodes `msg` as one frame (length prefix + msgpack with string keys).
pub fn encode_frame<T: Serialize>(msg: &T, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut frame = vec![0u8; FRAME_HEADER_LEN];
    let mut ser = rmp_serde::Serializer::new(&mut frame).with_struct_map();
    msg.serialize(&mut ser)
        .map_err(|e| FrameError::Encode(e.to_string()))?;
    let len = frame.len() - FRAME_HEADER_LEN;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    let prefix = u32::try_from(len)
        .ok()
        .filter(|_| len <= max)
        .ok_or(FrameError::TooLarge { len, max })?;
    frame[..FRAME_HEADER_LEN].copy_from_slice(&prefix.to_be_bytes());
    Ok(frame)
}

/// Reads a frame's length prefix; rejects 0 and lengths above `max`.
pub fn frame_len(header: [u8; 4], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len == 0 {
        Err(FrameError::Empty)
    } else if len > max {
        Err(FrameError::TooLarge { len, max })
    } else {
        Ok(len)
    }
}

/// Appends `chunk` to a frame body being read towards `target` bytes, growing the buffer only with what
/// arrived (at most doubling, never beyond `target`): an announced length alone costs nothing, and a body
/// that does arrive is not reallocated at every chunk. Used by every reader of frames (server and client).
pub fn extend_frame_body(body: &mut Vec<u8>, chunk: &[u8], target: usize) {
    let need = body.len() + chunk.len();
    if need > body.capacity() {
        let cap = (body.capacity() * 2).max(need).min(target.max(need));
        body.reserve_exact(cap - body.len());
    }
    body.extend_from_slice(chunk);
}

/// Decodes a client request, refusing every encoding the protocol does not allow (serde alone would also
/// accept an array in field order, an `op` given as a number or as bytes, or integer field keys): the body
/// must be one msgpack map whose keys are all strings, with a string `op`.
pub fn decode_request(body: &[u8]) -> Result<Request, FrameError> {
    let v: Value = decode_body(body)?;
    let Value::Map(entries) = &v else {
        return Err(FrameError::Decode(format!(
            "a request is a msgpack map with string keys, got {}",
            v.type_name()
        )));
    };
    if let Some((k, _)) = entries.iter().find(|(k, _)| !matches!(k, Value::Str(_))) {
        return Err(FrameError::Decode(format!(
            "request keys must be strings, got a key of type {}",
            k.type_name()
        )));
    }
    match v.get("op") {
        Some(Value::Str(_)) => {}
        Some(other) => {
            return Err(FrameError::Decode(format!(
                "`op` must be a string naming the request, got {}",
                other.type_name()
            )))
        }
        None => {
            return Err(FrameError::Decode(
                "the request has no `op` field (a string naming the request)".into(),
            ))
        }
    }
    decode_body(body)
}

/// Decodes a frame body (one msgpack value) into `T`, refusing trailing bytes and excessive nesting.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    if body.is_empty() {
        return Err(FrameError::Empty);
    }
    let mut de = rmp_serde::Deserializer::new(Cursor::new(body));
    de.set_max_depth(MAX_DECODE_DEPTH);
    let msg = T::deserialize(&mut de).map_err(|e| FrameError::Decode(e.to_string()))?;
    let used = de.position();
    if used != body.len() as u64 {
        return Err(FrameError::Decode(format!(
            "{} trailing bytes after the message (a frame holds exactly one msgpack map)",
            body.len() as u64 - used
        )));
    }
    Ok(msg)
}
