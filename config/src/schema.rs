//! The typed configuration schema: top-level document and service-wide sections.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::backend::BackendSection;

/// The whole configuration file of one `shotline` service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the service keeps its data and where it listens (required).
    pub service: ServiceSection,
    /// Log level and format.
    #[serde(default)]
    pub logging: LoggingSection,
    /// TLS certificate of the QUIC listener.
    #[serde(default)]
    pub tls: TlsSection,
    /// Authentication tokens and user registration.
    #[serde(default)]
    pub auth: AuthSection,
    /// Admission-control limits enforced by the gateway and the scheduler.
    #[serde(default)]
    pub limits: LimitsSection,
    /// Restart intensity of the supervision tree and actor call timeouts.
    #[serde(default)]
    pub supervision: SupervisionSection,
    /// The embedded store.
    #[serde(default)]
    pub persistence: PersistenceSection,
    /// Which engine holds the data: absent, SQLite in the data dir; `{ postgres: URL }`, PostgreSQL.
    #[serde(default)]
    pub store: crate::store::StoreSection,
    /// What happens to jobs interrupted by a crash or restart.
    #[serde(default)]
    pub recovery: RecoverySection,
    /// Fault injection for tests and drills (off by default).
    #[serde(default)]
    pub faults: FaultsSection,
    /// The apparatuses users submit to (required, at least one).
    pub backends: Vec<BackendSection>,
}

/// `service`: data directory and listen address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceSection {
    /// Data directory; relative paths are relative to the config file's directory.
    pub data_dir: PathBuf,
    /// UDP socket address of the QUIC listener.
    pub listen: SocketAddr,
}

impl Default for ServiceSection {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
        }
    }
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Informational messages (default).
    #[default]
    Info,
    /// Debugging detail.
    Debug,
    /// Everything.
    Trace,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable text (default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `logging`: level and format of the service log.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingSection {
    /// Log verbosity.
    pub level: LogLevel,
    /// Log line format.
    pub format: LogFormat,
}

/// Where the TLS certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Generate (once) and reuse a self-signed certificate in the data dir (default).
    #[default]
    SelfSigned,
    /// Read the certificate and key from `cert` and `key`.
    Files,
}

/// `tls`: certificate of the QUIC listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// Where the certificate comes from.
    pub mode: TlsMode,
    /// PEM certificate chain (required iff `mode = files`).
    pub cert: Option<PathBuf>,
    /// PEM private key (required iff `mode = files`).
    pub key: Option<PathBuf>,
    /// Subject alternative names of the generated self-signed certificate.
    pub names: Vec<String>,
}

impl Default for TlsSection {
    fn default() -> Self {
        Self {
            mode: TlsMode::SelfSigned,
            cert: None,
            key: None,
            names: vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
        }
    }
}

/// `auth`: tokens and registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Lifetime of a login token in seconds (60..=31_536_000).
    pub token_ttl_s: u64,
    /// Whether clients may create their own accounts.
    pub allow_registration: bool,
    /// Login attempts allowed per user name within a minute (1..=10_000).
    pub login_attempts_per_user: u32,
    /// Login attempts allowed per client address within a minute (1..=100_000); raise it when many users
    /// share one address (NAT, a jump host).
    pub login_attempts_per_address: u32,
    /// `register` requests allowed per client address within an hour (1..=10_000).
    pub registrations_per_address: u32,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            token_ttl_s: 86_400,
            allow_registration: false,
            login_attempts_per_user: 5,
            login_attempts_per_address: 20,
            registrations_per_address: 5,
        }
    }
}

/// `limits`: admission control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Largest accepted frame in bytes (1024..=268_435_456).
    pub max_frame_bytes: u64,
    /// Concurrent streams per QUIC connection (1..=10_000).
    pub max_streams_per_connection: u32,
    /// Concurrent connections per user (>= 1).
    pub max_connections_per_user: u32,
    /// Jobs a user may have queued at once (>= 1).
    pub max_queued_jobs_per_user: u32,
    /// Time a client has to finish sending one request on a stream, in ms (>= 1).
    pub request_timeout_ms: u64,
    /// Most tags of one job (0..=256).
    pub max_tags: u32,
    /// Longest tag in bytes (1..=1024).
    pub max_tag_bytes: u32,
    /// Longest `qobj_id` in bytes (1..=1024).
    pub max_qobj_id_bytes: u32,
    /// Longest experiment name in bytes (1..=1024).
    pub max_experiment_name_bytes: u32,
    /// Most shots of one job, summed over its experiments (1..=100_000_000).
    pub max_shots_per_job: u64,
    /// Longest planned apparatus time of one job in seconds: shots x the compiled shot duration
    /// (1..=604_800).
    pub max_job_duration_s: u64,
    /// Largest answer the server produces, in bytes (65_536..=8_388_608, the clients' frame limit): a `jobs`
    /// page stops before it, and a job whose result could exceed it is refused at submission.
    pub max_response_bytes: u64,
    /// Connections not yet authenticated (including handshakes in progress) the gateway holds at once; more
    /// are refused before the handshake (1..=100_000).
    pub max_unauthenticated_connections: u32,
    /// Concurrent streams of a connection until it is authenticated (1..=10_000; at most
    /// `max_streams_per_connection` apply).
    pub max_unauthenticated_streams: u32,
    /// Bytes of a frame read before its token must have checked out; also the largest frame without a token
    /// (`login`, `register`) (1024..=268_435_456; at most `max_frame_bytes` apply).
    pub max_unauthenticated_frame_bytes: u64,
    /// A connection not authenticated within this many ms after its handshake is closed (100..=600_000).
    pub unauthenticated_timeout_ms: u64,
    /// A connection without any packet from the peer for this many ms is closed and stops counting
    /// (1000..=600_000); the server sends keep-alives every third of it.
    pub idle_timeout_ms: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_frame_bytes: 8 * 1024 * 1024,
            max_streams_per_connection: 64,
            max_connections_per_user: 16,
            max_queued_jobs_per_user: 1000,
            request_timeout_ms: 10_000,
            max_tags: 32,
            max_tag_bytes: 256,
            max_qobj_id_bytes: 256,
            max_experiment_name_bytes: 256,
            max_shots_per_job: 10_000_000,
            max_job_duration_s: 86_400,
            max_response_bytes: 8 * 1024 * 1024,
            max_unauthenticated_connections: 128,
            max_unauthenticated_streams: 4,
            max_unauthenticated_frame_bytes: 64 * 1024,
            unauthenticated_timeout_ms: 10_000,
            idle_timeout_ms: 6_000,
        }
    }
}

/// `supervision`: restart intensity and call timeouts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisionSection {
    /// At most this many restarts within `period_ms`; above it the supervisor escalates.
    pub max_restarts: u32,
    /// The restart-intensity window in ms (>= 1).
    pub period_ms: u64,
    /// Timeout of every actor request/reply in ms (>= 1).
    pub call_timeout_ms: u64,
}

impl Default for SupervisionSection {
    fn default() -> Self {
        Self {
            max_restarts: 3,
            period_ms: 5000,
            call_timeout_ms: 5000,
        }
    }
}

/// What happens to a job found RUNNING when its backend starts (after a crash, a kill or a backend
/// restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterruptedPolicy {
    /// Put it back in the queue with its attempt count incremented, up to `max_attempts` (default).
    #[default]
    Requeue,
    /// End it ERROR with "interrupted by restart at shot K of N".
    Fail,
}

/// `recovery`: crash recovery policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecoverySection {
    /// What to do with interrupted jobs.
    pub on_interrupted: InterruptedPolicy,
    /// A job interrupted by a crash or a fault is started at most this many times (1..=100).
    pub max_attempts: u32,
    /// Length of a backend lock's lease (1000..=600000 ms): an execution renews it every third of this,
    /// stops at its next shot boundary if a renewal fails, and another server on the same database takes
    /// the backend over once the lease has expired.
    pub lock_lease_ms: u64,
}

impl Default for RecoverySection {
    fn default() -> Self {
        Self {
            on_interrupted: InterruptedPolicy::Requeue,
            max_attempts: 3,
            lock_lease_ms: 30_000,
        }
    }
}

/// `faults`: the fault-injection facility (admin socket `shotline fault ...`), for tests and drills.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultsSection {
    /// Accept fault-injection requests. Never enable this on an apparatus in use.
    pub enabled: bool,
}

/// `persistence`: the embedded store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersistenceSection {
    /// SQLite database file, relative to `service.data_dir`.
    pub file: PathBuf,
    /// Capacity of the persistence actor's write queue (>= 1).
    pub queue_capacity: u32,
}

impl Default for PersistenceSection {
    fn default() -> Self {
        Self {
            file: PathBuf::from("shotline.db"),
            queue_capacity: 4096,
        }
    }
}
