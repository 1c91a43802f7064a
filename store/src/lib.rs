//! shotline's durable store: the engine-neutral interface ([`api`]: the traits the runtime uses), and the
//! SQLite engine (schema and versioned migrations, the queries, the single writer thread that
//! group-commits batches of operations).
//!
//! Times are RFC 3339 UTC strings passed in by the caller (see [`records`]); the store never reads
//! the clock. The SQL is kept portable (plain TEXT/INTEGER/REAL columns, standard statements).

pub mod api;
mod error;
mod listing;
pub mod marks;
pub mod postgres;
pub mod records;
pub mod schema;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod thread;

use std::sync::Arc;

pub use api::{
    redact_url, Admission, BackendPause, BackendStore, CalibrationStore, Engine, EngineKind,
    EngineStats, ExecutionEnd, ExecutionOutcome, ExecutionStore, JobStatus, JobStore, LockGrant,
    LockStore, SettlePolicy, Settled, StoreFuture, StoreSelection, UserStore,
};
pub use error::{storage_problem_of, StorageProblem, StoreError};
pub use listing::JobFilter;
pub use marks::{ack_hwm_path, read_ack_hwm, write_ack_hwm, AckMarks};
pub use records::{
    normalize_time, CalibrationRecord, ExecutionRecord, Inserted, JobEvent, JobRecord, LockRecord,
    NewJob, Pragmas, ResultRecord, ShotDataRecord, UserRecord, STATUS_QUEUED,
};
pub use store::Store;
pub use thread::{DbOp, DbThread, Reply, MAX_EXTRA_PER_BATCH};

/// Opens the selected store engine: SQLite (the default: the database file, its writer thread, migrations,
/// the durability checks) or PostgreSQL. Blocking work runs off the async worker threads.
pub async fn open(selection: &StoreSelection) -> Result<Arc<dyn Engine>, StoreError> {
    match selection {
        StoreSelection::Sqlite { .. } => Err(StoreError::Unsupported {
            engine: "sqlite",
            hint: "the SQLite engine is being ported to the store interface",
        }),
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
