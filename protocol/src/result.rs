//! Job results and status records.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::job::Instruction;

/// The lifecycle state of a job (serialised `INITIALIZING`, `QUEUED`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Accepted, not yet queued.
    Initializing,
    /// Waiting for the backend.
    Queued,
    /// Executing.
    Running,
    /// Finished successfully.
    Done,
    /// Finished with an error.
    Error,
    /// Cancelled before finishing.
    Cancelled,
}

impl JobStatus {
    /// All statuses, in lifecycle order.
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Initializing,
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Done,
        JobStatus::Error,
        JobStatus::Cancelled,
    ];

    /// Whether the job can no longer change state (`DONE`, `ERROR`, `CANCELLED`).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Done | JobStatus::Error | JobStatus::Cancelled
        )
    }

    /// The wire form, e.g. `QUEUED`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Initializing => "INITIALIZING",
            JobStatus::Queued => "QUEUED",
            JobStatus::Running => "RUNNING",
            JobStatus::Done => "DONE",
            JobStatus::Error => "ERROR",
            JobStatus::Cancelled => "CANCELLED",
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a job status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job status {0:?}; allowed: INITIALIZING, QUEUED, RUNNING, DONE, ERROR, CANCELLED")]
pub struct UnknownStatus(pub String);

impl FromStr for JobStatus {
    type Err = UnknownStatus;

    /// Parses the wire form, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

/// The status of one job as reported to clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusRecord {
    /// Job identifier.
    pub job_id: String,
    /// Current status.
    pub status: JobStatus,
    /// Human detail (e.g. queue position).
    pub detail: String,
    /// Error message when `status` is `ERROR`, else empty.
    pub error_message: String,
}

/// Identifies the experiment a result belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentHeader {
    /// The experiment name from the job.
    pub name: String,
}

/// Measured data of one experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentData {
    /// One string per shot: the measured value(s), several wires separated by single spaces.
    pub memory: Vec<String>,
    /// The executed instructions, when requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<Vec<Instruction>>,
    /// Histogram of `memory`, when computed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, u64>,
}

/// Timing quality of an execution (lateness of events against their programmed times).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimingSummary {
    /// Shots executed.
    pub shots: u64,
    /// Timeline events applied.
    pub events: u64,
    /// Median lateness in nanoseconds.
    pub p50_ns: i64,
    /// 99th percentile lateness in nanoseconds.
    pub p99_ns: i64,
    /// 99.9th percentile lateness in nanoseconds.
    pub p999_ns: i64,
    /// Worst lateness in nanoseconds.
    pub max_ns: i64,
    /// Events later than the backend's slack, plus shots that overran their cycle.
    pub underflows: u64,
    /// Shot records lost to a full acquisition ring (non-zero only under the `degrade` overflow policy).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lost_shots: u64,
    /// Lateness records lost to a full event ring (the percentiles then cover the others).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lost_events: u64,
    /// Which time the lateness was measured with.
    #[serde(default)]
    pub stamped: LatenessStamp,
}

/// Which time an execution's lateness figures were measured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatenessStamp {
    /// The host's monotonic clock when the device call returned (software-timed devices; never optimistic).
    #[default]
    AfterApply,
    /// The driver's own applied time (hardware-timed devices: a timing card's time stamps).
    DeviceApplied,
    /// Some events of each kind (a backend with software- and hardware-timed devices).
    Mixed,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// The result of one experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentResult {
    /// Which experiment.
    pub header: ExperimentHeader,
    /// Shots executed.
    pub shots: u32,
    /// Whether the experiment succeeded.
    pub success: bool,
    /// Measured data.
    pub data: ExperimentData,
    /// Timing summary, when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<TimingSummary>,
    /// Seed used (client-given or server-chosen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// The result of a whole job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    /// Backend identifier.
    pub backend_name: String,
    /// Backend human name.
    pub display_name: String,
    /// Backend version that ran the job.
    pub backend_version: String,
    /// Job identifier.
    pub job_id: String,
    /// Client-side job object id, if given at submission.
    pub qobj_id: Option<String>,
    /// Whether every experiment succeeded.
    pub success: bool,
    /// Job status.
    pub status: JobStatus,
    /// Free-form header.
    pub header: BTreeMap<String, String>,
    /// One result per experiment, in submission order.
    pub results: Vec<ExperimentResult>,
    /// The execution that produced this result.
    #[serde(default)]
    pub execution_id: Option<String>,
}
