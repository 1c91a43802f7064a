//! The SQLite engine: schema and versioned migrations ([`schema`]), the queries ([`Store`]), the single
//! writer thread that group-commits batches ([`DbThread`]), and the store interface on top of them
//! ([`SqliteEngine`]). Promises: WAL, `synchronous=FULL` (both read back at open), one writer thread,
//! group commit, acknowledge after commit, crash recovery by SQLite's WAL replay plus the
//! acknowledged-work mark ([`crate::marks`]).

mod engine;
mod lifecycle;
mod listing;
mod rows;
pub mod schema;
mod store;
mod thread;

pub use engine::SqliteEngine;
pub use store::Store;
pub use thread::{DbOp, DbThread, Reply, MAX_EXTRA_PER_BATCH};
