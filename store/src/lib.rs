//! shotline's durable store: the engine-neutral interface ([`api`]: the traits the runtime uses), and the
//! SQLite engine (schema and versioned migrations, the queries, the single writer thread that
//! group-commits batches of operations).
//!
//! Times are RFC 3339 UTC strings passed in by the caller (see [`records`]); the store never reads
//! the clock. The SQL is kept portable (plain TEXT/INTEGER/REAL columns, standard statements).

pub mod api;
mod error;
pub mod marks;
pub mod migrations;
pub mod postgres;
pub mod records;
pub mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;

pub use api::{
    redact_url, Admission, BackendPause, BackendStore, CalibrationStore, Engine, EngineKind,
    EngineStats, ExecutionEnd, ExecutionOutcome, ExecutionStore, JobStatus, JobStore, LockGrant,
    LockStore, SettlePolicy, Settled, StoreFuture, StoreSelection, UserStore,
};
pub use error::{storage_problem_of, StorageProblem, StoreError};
pub use marks::{ack_hwm_path, read_ack_hwm, write_ack_hwm, AckMarks};
pub use records::{
    listing_row_bytes, normalize_time, CalibrationRecord, ExecutionRecord, Inserted, JobEvent,
    JobFilter, JobRecord, LockRecord, NewJob, Pragmas, ResultRecord, ShotDataRecord, UserRecord,
    STATUS_QUEUED,
};
pub use sqlite::{schema, DbOp, DbThread, Reply, SqliteEngine, Store, MAX_EXTRA_PER_BATCH};

/// Opens the selected store engine: SQLite (the default: the database file, its writer thread, migrations,
/// the durability checks) or PostgreSQL. Blocking work runs off the async worker threads.
pub async fn open(selection: &StoreSelection) -> Result<Arc<dyn Engine>, StoreError> {
    match selection {
        StoreSelection::Sqlite {
            path,
            queue_capacity,
        } => {
            let (path, cap) = (path.clone(), (*queue_capacity).max(1));
            let engine = tokio::task::spawn_blocking(move || SqliteEngine::open(&path, cap))
                .await
                .map_err(|e| StoreError::Panicked(format!("opening the SQLite store: {e}")))??;
            Ok(Arc::new(engine))
        }
        StoreSelection::Postgres {
            url,
            allow_synchronous_commit_off,
        } => {
            let options = postgres::PgOptions {
                allow_synchronous_commit_off: *allow_synchronous_commit_off,
                ..postgres::PgOptions::new(url)
            };
            Ok(Arc::new(postgres::PgEngine::open(&options).await?))
        }
    }
}
