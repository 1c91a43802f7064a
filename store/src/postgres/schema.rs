//! Applying the versioned schema migrations on PostgreSQL: the one schema of `crate::migrations`, rendered
//! for PostgreSQL (`BIGINT`, `DOUBLE PRECISION`, identity columns, and the sequence `jobs_seq_counter` that
//! `jobs.seq` is drawn from because several processes insert at once).
//!
//! Applied versions are recorded in `schema_migrations(version, applied_at)`. Migrating runs in one
//! transaction under a transaction-scoped advisory lock, so processes starting together migrate once;
//! a database newer than this build is refused.

use tokio_postgres::Client;

use super::error::pg_error;
use crate::StoreError;

/// Advisory lock key held while migrating ("shotline" in ASCII, as a number).
const MIGRATION_LOCK: i64 = 0x7368_6f74_6c69_6e65;

/// The identity columns and sequences that rows copied in with explicit values can leave behind.
const SEQUENCES: &[(&str, &str, &str)] = &[
    ("users", "id", "pg_get_serial_sequence('users', 'id')"),
    (
        "job_events",
        "id",
        "pg_get_serial_sequence('job_events', 'id')",
    ),
    (
        "calibrations",
        "id",
        "pg_get_serial_sequence('calibrations', 'id')",
    ),
    ("jobs", "seq", "'jobs_seq_counter'"),
];

use crate::migrations::Dialect;
pub use crate::migrations::{latest_version, MIGRATIONS};

fn version_of(v: Option<i64>) -> Result<u32, StoreError> {
    let v = v.unwrap_or(0);
    u32::try_from(v).map_err(|_| {
        StoreError::Migration(format!(
            "schema_migrations holds version {v}, which is not a valid version; the database is damaged"
        ))
    })
}

/// The applied schema version (0 for an empty database).
pub(crate) async fn current_version(client: &Client) -> Result<u32, StoreError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .map_err(pg_error)?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let row = client
        .query_one("SELECT MAX(version) FROM schema_migrations", &[])
        .await
        .map_err(pg_error)?;
    version_of(row.get(0))
}

/// Applies every migration newer than the database's version (idempotent), then moves the sequences past
/// rows inserted with explicit values (a copy from SQLite). Returns the schema version.
pub(crate) async fn migrate(client: &mut Client) -> Result<u32, StoreError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT)",
    )
    .await
    .map_err(pg_error)?;
    let current = version_of(
        tx.query_one("SELECT MAX(version) FROM schema_migrations", &[])
            .await
            .map_err(pg_error)?
            .get(0),
    )?;
    let latest = latest_version();
    if current > latest {
        return Err(StoreError::Migration(format!(
            "the database has schema version {current} but this build knows versions up to {latest}; \
             upgrade shotline or open a database written by this version"
        )));
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        let version = m.version;
        tx.batch_execute(&m.sql(Dialect::Postgres))
            .await
            .map_err(|e| {
                StoreError::Migration(format!(
                    "migration {version} failed: {}; the database was left at version {current}",
                    pg_error(e)
                ))
            })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, CURRENT_TIMESTAMP::TEXT)",
            &[&i64::from(version)],
        )
        .await
        .map_err(pg_error)?;
        tracing::info!(version, "applied PostgreSQL schema migration");
    }
    resync_sequences(&tx).await?;
    tx.commit().await.map_err(pg_error)?;
    Ok(latest.max(current))
}

/// Moves each sequence past the largest value in its column when rows were inserted with explicit values
/// (only then: a sequence is never moved back, and values it handed out are never handed out again).
pub(crate) async fn resync_sequences(
    tx: &tokio_postgres::Transaction<'_>,
) -> Result<(), StoreError> {
    for (table, column, sequence) in SEQUENCES {
        let name: String = tx
            .query_one(&format!("SELECT {sequence}::regclass::text"), &[])
            .await
            .map_err(pg_error)?
            .get(0);
        let max: Option<i64> = tx
            .query_one(&format!("SELECT MAX({column}) FROM {table}"), &[])
            .await
            .map_err(pg_error)?
            .get(0);
        let row = tx
            .query_one(&format!("SELECT last_value, is_called FROM {name}"), &[])
            .await
            .map_err(pg_error)?;
        let (last, called): (i64, bool) = (row.get(0), row.get(1));
        let handed_out = if called { last } else { last - 1 };
        if let Some(max) = max.filter(|m| *m > handed_out) {
            tx.execute("SELECT setval($1::text::regclass, $2)", &[&name, &max])
                .await
                .map_err(pg_error)?;
            tracing::info!(sequence = %name, value = max, "moved a sequence past copied rows");
        }
    }
    Ok(())
}
