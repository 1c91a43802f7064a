//! Client <-> gateway messages and length-prefixed msgpack framing (pure functions, no I/O).
//!
//! A frame is a 4-byte big-endian unsigned length `N` followed by `N` bytes of msgpack
//! written with string map keys (`rmp_serde::to_vec_named`).

use std::io::Cursor;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::backend::BackendConfig;
use crate::error::{ValidationError, ValidationReport};
use crate::result::{JobResult, StatusRecord};
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
    /// The request failed.
    Error {
        /// What went wrong.
        error: ErrorBody,
    },
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
    /// Too many requests; retry later.
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    /// The idempotency key was already used by this user for a different job body.
    pub const IDEMPOTENCY_CONFLICT: &str = "IDEMPOTENCY_CONFLICT";
    /// A user with that name already exists.
    pub const CONFLICT: &str = "CONFLICT";
    /// A value of the request is not acceptable (outside validation of jobs).
    pub const INVALID_ARGUMENT: &str = "INVALID_ARGUMENT";
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
                "the job failed validation with {} {noun} (first: {}: {})",
                report.total, first.path, first.code
            ),
            None => "the job failed validation".to_string(),
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

/// Decodes a frame body (without its prefix). Trailing bytes are an error.
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
