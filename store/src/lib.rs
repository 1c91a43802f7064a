//! shotline's durable store: the SQLite schema and its versioned migrations, the queries, and the
//! single writer thread that group-commits batches of operations.
//!
//! Times are RFC 3339 UTC strings passed in by the caller (see [`records`]); the store never reads
//! the clock. The SQL is kept portable (plain TEXT/INTEGER/REAL columns, standard statements).

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

pub use error::{storage_problem_of, StorageProblem, StoreError};
pub use listing::JobFilter;
pub use marks::{ack_hwm_path, read_ack_hwm, write_ack_hwm, AckMarks};
pub use records::{
    normalize_time, CalibrationRecord, ExecutionRecord, Inserted, JobEvent, JobRecord, LockRecord,
    NewJob, Pragmas, ResultRecord, ShotDataRecord, UserRecord, STATUS_QUEUED,
};
pub use store::Store;
pub use thread::{DbOp, DbThread, Reply, MAX_EXTRA_PER_BATCH};
