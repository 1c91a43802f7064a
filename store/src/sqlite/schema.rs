//! Applying the versioned schema migrations (`crate::migrations`, rendered for SQLite).
//!
//! Migrations are an ordered list of versions. Applied versions are recorded in
//! `schema_migrations(version, applied_at)`; opening applies only the missing ones, each in its own
//! transaction, and refuses a database whose version is newer than the newest known here.

use rusqlite::Connection;

use crate::StoreError;

use crate::migrations::Dialect;
pub use crate::migrations::{latest_version, MIGRATIONS};

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
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        let version = m.version;
        let tx = conn.transaction()?;
        tx.execute_batch(&m.sql(Dialect::Sqlite)).map_err(|e| {
            StoreError::Migration(format!(
                "migration {version} failed: {e}; the database was left at version {current}"
            ))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, CURRENT_TIMESTAMP)",
            [i64::from(version)],
        )?;
        tx.commit()?;
        tracing::info!(version, "applied schema migration");
    }
    Ok(latest.max(current))
}
