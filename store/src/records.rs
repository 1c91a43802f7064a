//! Row structs returned by and passed to the [`Store`](crate::Store), and the timestamp format.
//!
//! # Timestamps
//! Every time is passed in by the caller as an RFC 3339 UTC string such as `2026-11-22T10:00:00.123Z`
//! (the store never reads the clock). Inputs may carry 0 to 9 fractional digits and end in `Z` or
//! `+00:00`; they are normalised to exactly millisecond precision with a `Z` suffix
//! (`YYYY-MM-DDTHH:MM:SS.mmmZ`) before being stored, so that stored times compare correctly as
//! plain strings (token expiry and lock expiry rely on this).

/// Status given to a newly inserted job.
pub const STATUS_QUEUED: &str = "QUEUED";

/// Whether `YYYY-MM-DDTHH:MM:SS` (digits already checked) is a real date and time: month 01-12, a day that
/// exists in that month (leap years included), hour 00-23, minute and second 00-59.
fn calendar_ok(main: &str) -> bool {
    let num = |a: usize, b: usize| main.get(a..b).and_then(|s| s.parse::<u32>().ok());
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(sec)) = (
        num(0, 4),
        num(5, 7),
        num(8, 10),
        num(11, 13),
        num(14, 16),
        num(17, 19),
    ) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d) && h < 24 && mi < 60 && sec < 60
}

/// Normalises an RFC 3339 UTC timestamp to `YYYY-MM-DDTHH:MM:SS.mmmZ` (see the module docs).
///
/// `field` names the argument in the error if `value` is not of that shape.
pub fn normalize_time(field: &'static str, value: &str) -> Result<String, crate::StoreError> {
    const EXPECTED: &str = "an RFC 3339 UTC time like 2026-11-22T10:00:00.123Z";
    let bad = || crate::StoreError::invalid(field, value, EXPECTED);
    let body = value
        .strip_suffix('Z')
        .or_else(|| value.strip_suffix("+00:00"))
        .ok_or_else(bad)?;
    let (main, frac) = match body.split_once('.') {
        Some((m, f)) => (m, f),
        None => (body, ""),
    };
    let shape_ok = main.len() == 19
        && main.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        });
    let frac_ok = frac.len() <= 9
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(body.contains('.') && frac.is_empty());
    if !shape_ok || !frac_ok || !calendar_ok(main) {
        return Err(bad());
    }
    let mut millis: String = frac.chars().take(3).collect();
    while millis.len() < 3 {
        millis.push('0');
    }
    Ok(format!("{main}.{millis}Z"))
}

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Database id.
    pub id: i64,
    /// Unique login name.
    pub name: String,
    /// Contact address, if known.
    pub email: Option<String>,
    /// Password hash (PHC string); never the password.
    pub password_hash: String,
    /// Whether the user may administer the gateway.
    pub is_admin: bool,
    /// Disabled users cannot authenticate.
    pub disabled: bool,
    /// Creation time (normalised RFC 3339 UTC).
    pub created_at: String,
}

/// A job to insert with [`Store::insert_job`](crate::Store::insert_job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// Job id (unique).
    pub id: String,
    /// Submitting user.
    pub user_id: i64,
    /// Target backend.
    pub backend: String,
    /// Client-side id of the submission, if any.
    pub qobj_id: Option<String>,
    /// Scheduling priority.
    pub priority: i64,
    /// Free-form tags (stored as a JSON array).
    pub tags: Vec<String>,
    /// Client idempotency key; a second insert with the same (user, key) returns the first job.
    pub idempotency_key: Option<String>,
    /// JSON of the validated job.
    pub body: String,
    /// Submission time (RFC 3339 UTC).
    pub submitted_at: String,
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    /// Job id.
    pub id: String,
    /// Submission order (1, 2, ...).
    pub seq: i64,
    /// Submitting user.
    pub user_id: i64,
    /// Target backend.
    pub backend: String,
    /// Client-side id of the submission, if any.
    pub qobj_id: Option<String>,
    /// Scheduling priority.
    pub priority: i64,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// Client idempotency key.
    pub idempotency_key: Option<String>,
    /// JSON of the validated job.
    pub body: String,
    /// Current status (e.g. `QUEUED`).
    pub status: String,
    /// Human-readable detail of the current status.
    pub detail: Option<String>,
    /// Error message, if the job failed.
    pub error_message: Option<String>,
    /// Number of executions started for this job.
    pub attempts: u32,
    /// Submission time.
    pub submitted_at: String,
    /// Time of the last status change.
    pub updated_at: String,
}

impl JobRecord {
    /// The typed status (`None`: a stored value no release writes).
    pub fn job_status(&self) -> Option<crate::JobStatus> {
        self.status.parse().ok()
    }
}

/// Result of [`Store::insert_job`](crate::Store::insert_job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inserted {
    /// The stored job (the pre-existing one if `existing`).
    pub job: JobRecord,
    /// True if the idempotency key matched an existing job and nothing was inserted.
    pub existing: bool,
}

/// One status change of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEvent {
    /// Event id (increasing).
    pub id: i64,
    /// The job.
    pub job_id: String,
    /// New status.
    pub status: String,
    /// Detail of the change.
    pub detail: Option<String>,
    /// Time of the change.
    pub at: String,
}

/// One execution (attempt) of a job, with its provenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionRecord {
    /// Execution id `YYYYMMDD-NNN` from [`Store::next_execution_id`](crate::Store::next_execution_id).
    pub id: String,
    /// The job executed.
    pub job_id: String,
    /// The backend that ran it.
    pub backend: String,
    /// Attempt number (1-based).
    pub attempt: u32,
    /// Random seed. Stored in an INTEGER column as the i64 with the same bit pattern
    /// (`seed as i64`), read back with `as u64`, so the full u64 range round-trips.
    pub seed: u64,
    /// Hash of the backend config used.
    pub config_hash: String,
    /// Software version that ran the execution.
    pub software_version: String,
    /// JSON of the calibration values used.
    pub calibration: String,
    /// Start time.
    pub started_at: String,
    /// End time, once finished.
    pub ended_at: Option<String>,
    /// Outcome, once finished (e.g. `DONE`, `ERROR`).
    pub outcome: Option<String>,
    /// Detail of the outcome.
    pub detail: Option<String>,
}

/// The acquired data of one experiment of an execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShotDataRecord {
    /// The execution.
    pub execution_id: String,
    /// Index of the experiment in the job.
    pub experiment_index: u32,
    /// Name of the experiment.
    pub experiment_name: String,
    /// Number of shots taken.
    pub shots: u32,
    /// One measured string per shot (stored as a JSON array).
    pub memory: Vec<String>,
    /// JSON of the shot timing (UTC shot times, lateness...).
    pub timing: String,
    /// Time of the first shot.
    pub first_shot_at: Option<String>,
    /// Time of the last shot.
    pub last_shot_at: Option<String>,
}

impl ShotDataRecord {
    /// The columns every engine stores as text: first and last shot time (normalised) and the memory as a
    /// JSON array.
    pub(crate) fn stored_columns(
        &self,
    ) -> Result<(Option<String>, Option<String>, String), crate::StoreError> {
        let first = self
            .first_shot_at
            .as_deref()
            .map(|t| normalize_time("first_shot_at", t))
            .transpose()?;
        let last = self
            .last_shot_at
            .as_deref()
            .map(|t| normalize_time("last_shot_at", t))
            .transpose()?;
        let memory = serde_json::to_string(&self.memory).map_err(|e| {
            crate::StoreError::invalid("memory", &e.to_string(), "a list of strings")
        })?;
        Ok((first, last, memory))
    }
}

/// The result of a job (at most one per job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultRecord {
    /// The job.
    pub job_id: String,
    /// The execution that produced it.
    pub execution_id: String,
    /// JSON body of the result.
    pub body: String,
    /// Creation time.
    pub created_at: String,
}

/// A held lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRecord {
    /// Locked resource.
    pub resource: String,
    /// Holder.
    pub owner: String,
    /// Acquisition time.
    pub acquired_at: String,
    /// Expiry, if any.
    pub expires_at: Option<String>,
}

/// A calibration value with its provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationRecord {
    /// Database id (ignored on insert).
    pub id: i64,
    /// Backend calibrated.
    pub backend: String,
    /// Parameter name.
    pub name: String,
    /// Value.
    pub value: f64,
    /// Execution that produced it, if any.
    pub execution_id: Option<String>,
    /// Calibration task that produced it.
    pub task: Option<String>,
    /// Time of calibration.
    pub calibrated_at: String,
}

/// Durability pragmas as read back from SQLite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pragmas {
    /// `PRAGMA journal_mode` (lower case, `wal` when healthy).
    pub journal_mode: String,
    /// `PRAGMA synchronous` (2 = FULL).
    pub synchronous: i64,
}

/// Filters of a job listing (all optional; newest first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only this user's jobs.
    pub user_id: Option<i64>,
    /// Only this status.
    pub status: Option<String>,
    /// Only this backend.
    pub backend: Option<String>,
    /// Submitted at or after (RFC 3339 UTC, normalised by the caller's format).
    pub since: Option<String>,
    /// Submitted before.
    pub until: Option<String>,
    /// Only jobs with `seq` below this (the cursor of the previous page).
    pub before_seq: Option<i64>,
    /// Page size.
    pub limit: u32,
    /// Stop reading rows once those read hold more than this many bytes of text (0: no bound). The row
    /// that crosses the bound is still returned, so a page always progresses.
    pub max_bytes: usize,
}

/// Bytes of text a job row holds (what a listing answer carries of it); never more than the row's
/// summary takes encoded, so a listing the store stops at its budget is also over it encoded.
pub fn listing_row_bytes(j: &JobRecord, owner: &str) -> usize {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    j.id.len()
        + owner.len()
        + j.backend.len()
        + j.status.len()
        + opt(&j.qobj_id)
        + opt(&j.detail)
        + j.tags.iter().map(|t| t.len() + 1).sum::<usize>()
        + j.submitted_at.len()
        + j.updated_at.len()
}

#[cfg(test)]
mod tests {
    use super::normalize_time;

    #[test]
    fn times_are_normalised_to_millis() {
        let n = |s| normalize_time("t", s).unwrap();
        assert_eq!(n("2026-11-22T10:00:00Z"), "2026-11-22T10:00:00.000Z");
        assert_eq!(n("2026-11-22T10:00:00.1Z"), "2026-11-22T10:00:00.100Z");
        assert_eq!(
            n("2026-11-22T10:00:00.123456789Z"),
            "2026-11-22T10:00:00.123Z"
        );
        assert_eq!(
            n("2026-11-22T10:00:00.123+00:00"),
            "2026-11-22T10:00:00.123Z"
        );
    }

    #[test]
    fn real_calendar_dates_are_accepted() {
        for ok in [
            "2028-02-29T00:00:00Z",
            "2000-02-29T23:59:59.999Z",
            "2026-12-31T23:59:59Z",
            "2026-04-30T12:00:00Z",
        ] {
            assert!(normalize_time("t", ok).is_ok(), "{ok}");
        }
        assert!(normalize_time("t", "1900-02-29T00:00:00Z").is_err());
    }

    #[test]
    fn malformed_times_are_rejected_with_the_field_name() {
        for bad in [
            "",
            "2026-11-22 10:00:00Z",
            "2026-11-22T10:00:00",
            "2026-11-22T10:00:00.Z",
            "2026-11-22T10:00:00+01:00",
            "2026-13-40T10:00:00Z",
            "2026-02-30T10:00:00Z",
            "2026-02-29T10:00:00Z",
            "2026-00-10T10:00:00Z",
            "2026-04-31T10:00:00Z",
            "2026-11-00T10:00:00Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T10:60:00Z",
            "2026-11-22T10:00:61.5Z",
        ] {
            let err = normalize_time("expires_at", bad).unwrap_err().to_string();
            assert!(err.contains("expires_at"), "{err}");
        }
    }
}
