//! The store's typed error.

use std::path::PathBuf;

/// Everything that can go wrong in the store. Every message says what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("database error: {0} (check that the database file is readable/writable and the disk is not full)")]
    Sqlite(#[from] rusqlite::Error),

    /// A durability pragma did not read back as required (e.g. the filesystem does not support WAL).
    #[error(
        "durability check failed: PRAGMA {pragma} is {got:?}, expected {expected:?}; \
         put the database on a local filesystem that supports WAL and fsync"
    )]
    Durability {
        /// The pragma that was checked.
        pragma: &'static str,
        /// The value shotline requires.
        expected: String,
        /// The value SQLite reported.
        got: String,
    },

    /// The write would violate a uniqueness or ownership rule; the message names the record.
    #[error("conflict: {0}")]
    Conflict(String),

    /// The record the operation refers to does not exist; the message names it.
    #[error("not found: {0}")]
    NotFound(String),

    /// The schema cannot be migrated (e.g. the database is newer than this build).
    #[error("schema migration error: {0}")]
    Migration(String),

    /// An argument does not have the required shape.
    #[error("invalid {field}: {value:?} (expected {expected})")]
    Invalid {
        /// Which argument or field was wrong.
        field: &'static str,
        /// The offending value.
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },

    /// A filesystem or thread operation failed.
    #[error("cannot {what} {path:?}: {source} (check the path and its permissions)")]
    Io {
        /// What was attempted.
        what: &'static str,
        /// The path involved (empty if none).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The batch transaction of the writer thread could not be started or committed; nothing of the
    /// operation was persisted.
    #[error(
        "transaction failed, the operation was not persisted: {0}; retry later and check the disk"
    )]
    Transaction(String),

    /// The database's storage is full or failing (disk full, I/O error, corrupt or read-only file); nothing
    /// of the operation was persisted.
    #[error("{message}")]
    Storage {
        /// Full or failing.
        problem: StorageProblem,
        /// What SQLite reported and what to do.
        message: String,
    },

    /// An operation panicked on the writer thread; it was rolled back.
    #[error("operation panicked on the store thread and was rolled back: {0}; this is a bug, please report it")]
    Panicked(String),

    /// The writer thread is gone (shut down or failed).
    #[error("the store writer thread is closed; restart the persistence actor")]
    Closed,

    /// The selected engine is not available in this build.
    #[error("the {engine} store engine is not available in this build: {hint}")]
    Unsupported {
        /// The engine asked for.
        engine: &'static str,
        /// What to do instead.
        hint: &'static str,
    },

    /// The writer thread's queue is full.
    #[error("the store writer queue is full; retry later or reduce the submission rate")]
    Busy,

    /// PostgreSQL refused a statement for a reason that is neither a storage problem nor a constraint the
    /// store turns into [`StoreError::Conflict`] / [`StoreError::NotFound`].
    #[error("PostgreSQL error {sqlstate}: {message}")]
    Postgres {
        /// The five-character SQLSTATE (e.g. `42P01`), or `-----` when the server sent none.
        sqlstate: String,
        /// What the server or the client library said.
        message: String,
    },

    /// A PostgreSQL server setting breaks the durability promise (acknowledge only what is on disk).
    #[error(
        "durability check failed: PostgreSQL setting {setting} is {got:?}, expected {expected}; set it in \
         postgresql.conf or with ALTER DATABASE ... SET, or set store.allow_synchronous_commit_off: true to \
         accept losing acknowledged writes in a server crash"
    )]
    PostgresSetting {
        /// The setting checked.
        setting: &'static str,
        /// What shotline requires.
        expected: &'static str,
        /// What the server reported.
        got: String,
    },
}

/// What is wrong with the database's storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageProblem {
    /// The disk (or the database's size limit) is full.
    Full,
    /// An I/O error, a corrupt or unreadable file, a read-only file system or lost permissions.
    Failing,
}

/// Classifies a SQLite error as a storage problem, if it is one.
pub fn storage_problem_of(e: &rusqlite::Error) -> Option<StorageProblem> {
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code()? {
        C::DiskFull => Some(StorageProblem::Full),
        C::SystemIoFailure
        | C::DatabaseCorrupt
        | C::NotADatabase
        | C::ReadOnly
        | C::CannotOpen
        | C::PermissionDenied
        | C::FileLockingProtocolFailed => Some(StorageProblem::Failing),
        _ => None,
    }
}

impl StoreError {
    /// Whether this error means the database's storage is full or failing (rather than a bad request or a
    /// bug): what a client is told with a storage error code.
    pub fn storage_problem(&self) -> Option<StorageProblem> {
        match self {
            StoreError::Storage { problem, .. } => Some(*problem),
            StoreError::Sqlite(e) => storage_problem_of(e),
            StoreError::Io { .. } => Some(StorageProblem::Failing),
            _ => None,
        }
    }

    /// A batch-level failure (`BEGIN`, `COMMIT`): a storage error when SQLite says so, otherwise
    /// [`StoreError::Transaction`].
    pub(crate) fn batch(what: &str, e: &rusqlite::Error) -> StoreError {
        match storage_problem_of(e) {
            Some(problem) => StoreError::Storage {
                problem,
                message: format!(
                    "{what} failed, the operation was not persisted: {e} ({})",
                    match problem {
                        StorageProblem::Full => "the database's disk is full: free space on it",
                        StorageProblem::Failing =>
                            "the database's storage is failing: check the disk and the file",
                    }
                ),
            },
            None => StoreError::Transaction(format!("{what} failed: {e}")),
        }
    }

    /// A copy for every reply of a failed batch.
    pub(crate) fn clone_batch(&self) -> StoreError {
        match self {
            StoreError::Storage { problem, message } => StoreError::Storage {
                problem: *problem,
                message: message.clone(),
            },
            other => StoreError::Transaction(match other {
                StoreError::Transaction(m) => m.clone(),
                o => o.to_string(),
            }),
        }
    }

    /// Builds an [`StoreError::Invalid`].
    pub(crate) fn invalid(field: &'static str, value: &str, expected: &'static str) -> Self {
        StoreError::Invalid {
            field,
            value: value.to_owned(),
            expected,
        }
    }
}

/// The kind of constraint a failed statement violated, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Violation {
    /// PRIMARY KEY or UNIQUE.
    Unique,
    /// FOREIGN KEY.
    ForeignKey,
}

/// Classifies a SQLite error as a constraint violation.
pub(crate) fn violation(err: &rusqlite::Error) -> Option<Violation> {
    const SQLITE_CONSTRAINT_FOREIGNKEY: i32 = 787;
    const SQLITE_CONSTRAINT_PRIMARYKEY: i32 = 1555;
    const SQLITE_CONSTRAINT_UNIQUE: i32 = 2067;
    let code = err.sqlite_error()?.extended_code;
    match code {
        SQLITE_CONSTRAINT_FOREIGNKEY => Some(Violation::ForeignKey),
        SQLITE_CONSTRAINT_PRIMARYKEY | SQLITE_CONSTRAINT_UNIQUE => Some(Violation::Unique),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DbThread, Store};

    #[test]
    fn a_full_database_is_a_storage_error_not_a_bug() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let store = Store::open(&db).unwrap();
        let pages: i64 = store
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        store
            .conn
            .execute_batch(&format!("PRAGMA max_page_count = {pages}"))
            .unwrap();
        let big = "x".repeat(64 * 1024);
        let e = store
            .add_user("alice", None, &big, false, "2026-01-01T00:00:00Z")
            .unwrap_err();
        assert_eq!(e.storage_problem(), Some(StorageProblem::Full), "{e}");
        drop(store);

        // Through the writer thread: a failing op and a failing batch keep the kind.
        let thread = DbThread::spawn(&db, 8).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let e = rt
            .block_on(thread.run(move |s| {
                s.conn.execute_batch("PRAGMA max_page_count = 1")?;
                s.add_user(
                    "bob",
                    None,
                    &"y".repeat(64 * 1024),
                    false,
                    "2026-01-01T00:00:00Z",
                )
            }))
            .unwrap_err();
        assert_eq!(e.storage_problem(), Some(StorageProblem::Full), "{e}");
        let not_full = StoreError::Conflict("x".into());
        assert_eq!(not_full.storage_problem(), None);
        let batch = StoreError::batch(
            "COMMIT",
            &rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(10), None),
        );
        assert_eq!(
            batch.storage_problem(),
            Some(StorageProblem::Failing),
            "{batch}"
        );
        assert_eq!(
            batch.clone_batch().storage_problem(),
            Some(StorageProblem::Failing)
        );
    }
}
