//! Versioned schema migrations.
//!
//! Migrations are an ordered list of `(version, sql)`. Applied versions are recorded in
//! `schema_migrations(version, applied_at)`; opening applies only the missing ones, each in its own
//! transaction, and refuses a database whose version is newer than the newest known here.

use rusqlite::Connection;

use crate::StoreError;

/// The migrations, in strictly increasing version order. Plain, portable SQL (TEXT/INTEGER/REAL).
pub const MIGRATIONS: &[(u32, &str)] = &[(1, V1), (2, V2), (3, V3)];

/// v3: the admission check of every submit counts a user's QUEUED and RUNNING jobs; an index on
/// (user_id, status) makes that two index seeks instead of a scan over the user's whole history. It also
/// serves every lookup by user alone, so it replaces `jobs_user`.
const V3: &str = "
CREATE INDEX jobs_user_status ON jobs(user_id, status);
DROP INDEX jobs_user;
";

/// v2: a backend paused by an operator, an emergency stop or a device fault stays paused across restarts.
const V2: &str = "
CREATE TABLE backend_pauses (
    backend TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    paused_at TEXT NOT NULL
);
";

const V1: &str = "
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    email TEXT,
    password_hash TEXT NOT NULL,
    is_admin INTEGER NOT NULL DEFAULT 0,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tokens_user ON tokens(user_id);
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    seq INTEGER UNIQUE NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users(id),
    backend TEXT NOT NULL,
    qobj_id TEXT,
    priority INTEGER NOT NULL DEFAULT 0,
    tags TEXT NOT NULL,
    idempotency_key TEXT,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    detail TEXT,
    error_message TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    submitted_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX jobs_status_backend ON jobs(status, backend);
CREATE INDEX jobs_user ON jobs(user_id);
CREATE TABLE job_events (
    id INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs(id),
    status TEXT NOT NULL,
    detail TEXT,
    at TEXT NOT NULL
);
CREATE INDEX job_events_job ON job_events(job_id);
CREATE TABLE execution_counters (
    day TEXT PRIMARY KEY,
    last INTEGER NOT NULL
);
CREATE TABLE executions (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs(id),
    backend TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    config_hash TEXT NOT NULL,
    software_version TEXT NOT NULL,
    calibration TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    outcome TEXT,
    detail TEXT
);
CREATE INDEX executions_job ON executions(job_id);
CREATE TABLE shot_data (
    execution_id TEXT NOT NULL REFERENCES executions(id),
    experiment_index INTEGER NOT NULL,
    experiment_name TEXT NOT NULL,
    shots INTEGER NOT NULL,
    memory TEXT NOT NULL,
    timing TEXT NOT NULL,
    first_shot_at TEXT,
    last_shot_at TEXT,
    PRIMARY KEY (execution_id, experiment_index)
);
CREATE TABLE results (
    job_id TEXT PRIMARY KEY REFERENCES jobs(id),
    execution_id TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE locks (
    resource TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    acquired_at TEXT NOT NULL,
    expires_at TEXT
);
CREATE TABLE calibrations (
    id INTEGER PRIMARY KEY,
    backend TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    execution_id TEXT,
    task TEXT,
    calibrated_at TEXT NOT NULL
);
CREATE INDEX calibrations_backend_name ON calibrations(backend, name);
CREATE TABLE backend_configs (
    backend TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    body TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (backend, config_hash)
);
";

/// The newest schema version this build knows.
pub fn latest_version() -> u32 {
    MIGRATIONS.iter().map(|(v, _)| *v).max().unwrap_or(0)
}

/// Reads the applied schema version (0 for an empty database).
pub(crate) fn current_version(conn: &Connection) -> Result<u32, StoreError> {
    let v: Option<i64> = conn.query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
        r.get(0)
    })?;
    let v = v.unwrap_or(0);
    u32::try_from(v).map_err(|_| {
        StoreError::Migration(format!(
            "schema_migrations holds version {v}, which is not a valid version; the database is damaged"
        ))
    })
}

/// Applies every migration newer than the database's version. Idempotent.
///
/// `applied_at` is filled with the standard SQL `CURRENT_TIMESTAMP` (informational only; this is
/// the one time the store does not receive from its caller).
pub(crate) fn migrate(conn: &mut Connection) -> Result<u32, StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT)",
    )?;
    let current = current_version(conn)?;
    let latest = latest_version();
    if current > latest {
        return Err(StoreError::Migration(format!(
            "the database has schema version {current} but this build knows versions up to {latest}; \
             upgrade shotline or open a database written by this version"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql).map_err(|e| {
            StoreError::Migration(format!(
                "migration {version} failed: {e}; the database was left at version {current}"
            ))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, CURRENT_TIMESTAMP)",
            [i64::from(*version)],
        )?;
        tx.commit()?;
        tracing::info!(version, "applied schema migration");
    }
    Ok(latest.max(current))
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    #[test]
    fn migration_versions_strictly_increase_from_one() {
        for (expected, (v, _)) in (1..).zip(MIGRATIONS.iter()) {
            assert_eq!(
                *v, expected,
                "migrations must be numbered 1, 2, 3, ... without gaps"
            );
        }
    }
}
