//! Row structs returned by and passed to the [`Store`](crate::Store), and the timestamp format.
//!
//! # Timestamps
//! Every time is passed in by the caller as an RFC 3339 UTC string such as `2026-11-22T10:00:00.123Z`
//! (the store never reads the clock). Inputs may carry 0 to 9 fractional digits and end in `Z` or
//! `+00:00`; they are normalised to exactly millisecond precision with a `Z` suffix
//! (`YYYY-MM-DDTHH:MM:SS.mmmZ`) before being stored, so that stored times compare correctly as
//! plain strings (token expiry and lock expiry rely on this).

use rusqlite::types::Type;
use rusqlite::Row;

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

fn json_col<T: serde::de::DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

fn u32_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<u32> {
    let v: i64 = row.get(idx)?;
    u32::try_from(v)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Integer, Box::new(e)))
}

/// Columns selected by [`user_from_row`].
pub(crate) const USER_COLS: &str = "id, name, email, password_hash, is_admin, disabled, created_at";

pub(crate) fn user_from_row(row: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        email: row.get(2)?,
        password_hash: row.get(3)?,
        is_admin: row.get::<_, i64>(4)? != 0,
        disabled: row.get::<_, i64>(5)? != 0,
        created_at: row.get(6)?,
    })
}

/// Columns selected by [`job_from_row`].
pub(crate) const JOB_COLS: &str =
    "id, seq, user_id, backend, qobj_id, priority, tags, idempotency_key, \
     body, status, detail, error_message, attempts, submitted_at, updated_at";

pub(crate) fn job_from_row(row: &Row<'_>) -> rusqlite::Result<JobRecord> {
    Ok(JobRecord {
        id: row.get(0)?,
        seq: row.get(1)?,
        user_id: row.get(2)?,
        backend: row.get(3)?,
        qobj_id: row.get(4)?,
        priority: row.get(5)?,
        tags: json_col(row, 6)?,
        idempotency_key: row.get(7)?,
        body: row.get(8)?,
        status: row.get(9)?,
        detail: row.get(10)?,
        error_message: row.get(11)?,
        attempts: u32_col(row, 12)?,
        submitted_at: row.get(13)?,
        updated_at: row.get(14)?,
    })
}

pub(crate) fn event_from_row(row: &Row<'_>) -> rusqlite::Result<JobEvent> {
    Ok(JobEvent {
        id: row.get(0)?,
        job_id: row.get(1)?,
        status: row.get(2)?,
        detail: row.get(3)?,
        at: row.get(4)?,
    })
}

/// Columns selected by [`execution_from_row`].
pub(crate) const EXECUTION_COLS: &str = "id, job_id, backend, attempt, seed, config_hash, \
     software_version, calibration, started_at, ended_at, outcome, detail";

pub(crate) fn execution_from_row(row: &Row<'_>) -> rusqlite::Result<ExecutionRecord> {
    Ok(ExecutionRecord {
        id: row.get(0)?,
        job_id: row.get(1)?,
        backend: row.get(2)?,
        attempt: u32_col(row, 3)?,
        seed: row.get::<_, i64>(4)? as u64,
        config_hash: row.get(5)?,
        software_version: row.get(6)?,
        calibration: row.get(7)?,
        started_at: row.get(8)?,
        ended_at: row.get(9)?,
        outcome: row.get(10)?,
        detail: row.get(11)?,
    })
}

pub(crate) fn shot_data_from_row(row: &Row<'_>) -> rusqlite::Result<ShotDataRecord> {
    Ok(ShotDataRecord {
        execution_id: row.get(0)?,
        experiment_index: u32_col(row, 1)?,
        experiment_name: row.get(2)?,
        shots: u32_col(row, 3)?,
        memory: json_col(row, 4)?,
        timing: row.get(5)?,
        first_shot_at: row.get(6)?,
        last_shot_at: row.get(7)?,
    })
}

pub(crate) fn lock_from_row(row: &Row<'_>) -> rusqlite::Result<LockRecord> {
    Ok(LockRecord {
        resource: row.get(0)?,
        owner: row.get(1)?,
        acquired_at: row.get(2)?,
        expires_at: row.get(3)?,
    })
}

pub(crate) fn calibration_from_row(row: &Row<'_>) -> rusqlite::Result<CalibrationRecord> {
    Ok(CalibrationRecord {
        id: row.get(0)?,
        backend: row.get(1)?,
        name: row.get(2)?,
        value: row.get(3)?,
        execution_id: row.get(4)?,
        task: row.get(5)?,
        calibrated_at: row.get(6)?,
    })
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
