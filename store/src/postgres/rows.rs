//! Statement helpers (cached prepared statements, errors mapped) and PostgreSQL rows as store records.
//!
//! Columns are typed as in the schema (`BIGINT` ↔ `i64`, `TEXT` ↔ `String`, `DOUBLE PRECISION` ↔ `f64`);
//! a stored value out of a record's range (e.g. a negative attempt count) is a [`StoreError::Postgres`]
//! naming the column, never a panic.

use deadpool_postgres::GenericClient;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::Row;

use super::error::{pg_error, violation, Violation};
use crate::records::{
    CalibrationRecord, ExecutionRecord, JobEvent, JobRecord, LockRecord, ShotDataRecord, UserRecord,
};
use crate::StoreError;

pub(crate) type Result<T> = std::result::Result<T, StoreError>;
pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Rows of a (cached) statement.
pub(crate) async fn rows<C: GenericClient>(c: &C, sql: &str, p: Params<'_>) -> Result<Vec<Row>> {
    let st = c.prepare_cached(sql).await.map_err(pg_error)?;
    c.query(&st, p).await.map_err(pg_error)
}

/// At most one row of a (cached) statement.
pub(crate) async fn opt<C: GenericClient>(c: &C, sql: &str, p: Params<'_>) -> Result<Option<Row>> {
    let st = c.prepare_cached(sql).await.map_err(pg_error)?;
    c.query_opt(&st, p).await.map_err(pg_error)
}

/// Exactly one row of a (cached) statement.
pub(crate) async fn one<C: GenericClient>(c: &C, sql: &str, p: Params<'_>) -> Result<Row> {
    let st = c.prepare_cached(sql).await.map_err(pg_error)?;
    c.query_one(&st, p).await.map_err(pg_error)
}

/// Runs a (cached) statement; returns the rows it changed.
pub(crate) async fn exec<C: GenericClient>(c: &C, sql: &str, p: Params<'_>) -> Result<u64> {
    exec_or(c, sql, p, |_| None).await
}

/// Runs a (cached) statement; a constraint violation becomes what `on_violation` says (when `Some`).
pub(crate) async fn exec_or<C: GenericClient>(
    c: &C,
    sql: &str,
    p: Params<'_>,
    on_violation: impl FnOnce(Violation) -> Option<StoreError>,
) -> Result<u64> {
    let st = c.prepare_cached(sql).await.map_err(pg_error)?;
    match c.execute(&st, p).await {
        Ok(n) => Ok(n),
        Err(e) => Err(violation(&e)
            .and_then(on_violation)
            .unwrap_or_else(|| pg_error(e))),
    }
}

fn get<'r, T: FromSql<'r>>(row: &'r Row, idx: usize, column: &'static str) -> Result<T> {
    row.try_get(idx).map_err(|e| StoreError::Postgres {
        sqlstate: "-----".into(),
        message: format!("column {column}: {e}"),
    })
}

fn u32_of(row: &Row, idx: usize, column: &'static str) -> Result<u32> {
    let v: i64 = get(row, idx, column)?;
    u32::try_from(v).map_err(|_| StoreError::Postgres {
        sqlstate: "-----".into(),
        message: format!("column {column} holds {v}, outside 0..={}", u32::MAX),
    })
}

fn json_of<T: serde::de::DeserializeOwned>(
    row: &Row,
    idx: usize,
    column: &'static str,
) -> Result<T> {
    let text: String = get(row, idx, column)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Postgres {
        sqlstate: "-----".into(),
        message: format!("column {column} does not hold the expected JSON: {e}"),
    })
}

/// Columns read by [`user`].
pub(crate) const USER_COLS: &str = "id, name, email, password_hash, is_admin, disabled, created_at";

pub(crate) fn user(row: &Row) -> Result<UserRecord> {
    Ok(UserRecord {
        id: get(row, 0, "users.id")?,
        name: get(row, 1, "users.name")?,
        email: get(row, 2, "users.email")?,
        password_hash: get(row, 3, "users.password_hash")?,
        is_admin: get::<i64>(row, 4, "users.is_admin")? != 0,
        disabled: get::<i64>(row, 5, "users.disabled")? != 0,
        created_at: get(row, 6, "users.created_at")?,
    })
}

/// Columns read by [`job`].
pub(crate) const JOB_COLS: &str =
    "id, seq, user_id, backend, qobj_id, priority, tags, idempotency_key, \
     body, status, detail, error_message, attempts, submitted_at, updated_at";

pub(crate) fn job(row: &Row) -> Result<JobRecord> {
    Ok(JobRecord {
        id: get(row, 0, "jobs.id")?,
        seq: get(row, 1, "jobs.seq")?,
        user_id: get(row, 2, "jobs.user_id")?,
        backend: get(row, 3, "jobs.backend")?,
        qobj_id: get(row, 4, "jobs.qobj_id")?,
        priority: get(row, 5, "jobs.priority")?,
        tags: json_of(row, 6, "jobs.tags")?,
        idempotency_key: get(row, 7, "jobs.idempotency_key")?,
        body: get(row, 8, "jobs.body")?,
        status: get(row, 9, "jobs.status")?,
        detail: get(row, 10, "jobs.detail")?,
        error_message: get(row, 11, "jobs.error_message")?,
        attempts: u32_of(row, 12, "jobs.attempts")?,
        submitted_at: get(row, 13, "jobs.submitted_at")?,
        updated_at: get(row, 14, "jobs.updated_at")?,
    })
}

pub(crate) fn event(row: &Row) -> Result<JobEvent> {
    Ok(JobEvent {
        id: get(row, 0, "job_events.id")?,
        job_id: get(row, 1, "job_events.job_id")?,
        status: get(row, 2, "job_events.status")?,
        detail: get(row, 3, "job_events.detail")?,
        at: get(row, 4, "job_events.at")?,
    })
}

/// Columns read by [`execution`].
pub(crate) const EXECUTION_COLS: &str = "id, job_id, backend, attempt, seed, config_hash, \
     software_version, calibration, started_at, ended_at, outcome, detail";

pub(crate) fn execution(row: &Row) -> Result<ExecutionRecord> {
    Ok(ExecutionRecord {
        id: get(row, 0, "executions.id")?,
        job_id: get(row, 1, "executions.job_id")?,
        backend: get(row, 2, "executions.backend")?,
        attempt: u32_of(row, 3, "executions.attempt")?,
        // The seed's bit pattern is stored as a BIGINT, as in SQLite.
        seed: get::<i64>(row, 4, "executions.seed")? as u64,
        config_hash: get(row, 5, "executions.config_hash")?,
        software_version: get(row, 6, "executions.software_version")?,
        calibration: get(row, 7, "executions.calibration")?,
        started_at: get(row, 8, "executions.started_at")?,
        ended_at: get(row, 9, "executions.ended_at")?,
        outcome: get(row, 10, "executions.outcome")?,
        detail: get(row, 11, "executions.detail")?,
    })
}

/// Columns read by [`shot_data`].
pub(crate) const SHOT_DATA_COLS: &str = "execution_id, experiment_index, experiment_name, shots, \
     memory, timing, first_shot_at, last_shot_at";

pub(crate) fn shot_data(row: &Row) -> Result<ShotDataRecord> {
    Ok(ShotDataRecord {
        execution_id: get(row, 0, "shot_data.execution_id")?,
        experiment_index: u32_of(row, 1, "shot_data.experiment_index")?,
        experiment_name: get(row, 2, "shot_data.experiment_name")?,
        shots: u32_of(row, 3, "shot_data.shots")?,
        memory: json_of(row, 4, "shot_data.memory")?,
        timing: get(row, 5, "shot_data.timing")?,
        first_shot_at: get(row, 6, "shot_data.first_shot_at")?,
        last_shot_at: get(row, 7, "shot_data.last_shot_at")?,
    })
}

/// Columns read by [`lock`].
pub(crate) const LOCK_COLS: &str = "resource, owner, acquired_at, expires_at";

pub(crate) fn lock(row: &Row) -> Result<LockRecord> {
    Ok(LockRecord {
        resource: get(row, 0, "locks.resource")?,
        owner: get(row, 1, "locks.owner")?,
        acquired_at: get(row, 2, "locks.acquired_at")?,
        expires_at: get(row, 3, "locks.expires_at")?,
    })
}

pub(crate) fn calibration(row: &Row) -> Result<CalibrationRecord> {
    Ok(CalibrationRecord {
        id: get(row, 0, "calibrations.id")?,
        backend: get(row, 1, "calibrations.backend")?,
        name: get(row, 2, "calibrations.name")?,
        value: get(row, 3, "calibrations.value")?,
        execution_id: get(row, 4, "calibrations.execution_id")?,
        task: get(row, 5, "calibrations.task")?,
        calibrated_at: get(row, 6, "calibrations.calibrated_at")?,
    })
}

/// A count read as `BIGINT`.
pub(crate) fn count(row: &Row) -> Result<u64> {
    let n: i64 = get(row, 0, "count")?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// All rows mapped.
pub(crate) fn all<T>(rows: Vec<Row>, f: fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(f).collect()
}
