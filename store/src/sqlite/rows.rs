//! Reading rows of the SQLite tables into the engine-neutral records.

use rusqlite::types::Type;
use rusqlite::Row;

use crate::records::*;

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
