//! PostgreSQL errors as [`StoreError`]s: storage problems keep their kind (full, failing), constraint
//! violations are recognised by SQLSTATE, everything else carries its SQLSTATE.

use tokio_postgres::error::SqlState;

use crate::{StorageProblem, StoreError};

/// The kind of constraint a failed statement violated, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Violation {
    /// PRIMARY KEY or UNIQUE (23505).
    Unique,
    /// FOREIGN KEY (23503).
    ForeignKey,
}

/// Classifies a PostgreSQL error as a constraint violation.
pub(crate) fn violation(e: &tokio_postgres::Error) -> Option<Violation> {
    match e.code()? {
        c if *c == SqlState::UNIQUE_VIOLATION => Some(Violation::Unique),
        c if *c == SqlState::FOREIGN_KEY_VIOLATION => Some(Violation::ForeignKey),
        _ => None,
    }
}

/// Classifies a SQLSTATE as a storage problem, if it is one.
///
/// Full: `53100` disk full. Failing: class `08` (connection exceptions), `53xxx` other insufficient
/// resources (out of memory, too many connections), `57P01`..`57P03` (admin or crash shutdown, cannot
/// connect now), class `58` (system and I/O errors), `XX001`/`XX002` (corrupt data or index) and `25006`
/// (read-only transaction: a standby or a read-only database).
pub(crate) fn storage_problem_of_sqlstate(code: &str) -> Option<StorageProblem> {
    if code == "53100" {
        return Some(StorageProblem::Full);
    }
    let failing = code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("58")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "XX001" | "XX002" | "25006"
        );
    failing.then_some(StorageProblem::Failing)
}

fn storage(problem: StorageProblem, what: &str, detail: &str) -> StoreError {
    StoreError::Storage {
        problem,
        message: format!(
            "{what}: {detail}; the operation may not have been persisted ({})",
            match problem {
                StorageProblem::Full => "the PostgreSQL server's disk is full: free space on it",
                StorageProblem::Failing =>
                    "the PostgreSQL server is unreachable, shutting down or failing: check it and its logs",
            }
        ),
    }
}

/// Maps a client error: storage problems (by SQLSTATE, or a closed connection / I/O error without one) to
/// [`StoreError::Storage`], everything else to [`StoreError::Postgres`] with its SQLSTATE.
pub(crate) fn pg_error(e: tokio_postgres::Error) -> StoreError {
    let detail = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    };
    match e.code() {
        Some(code) => {
            let code = code.code();
            match storage_problem_of_sqlstate(code) {
                Some(problem) => storage(problem, &format!("PostgreSQL error {code}"), &detail),
                None => StoreError::Postgres {
                    sqlstate: code.to_owned(),
                    message: detail,
                },
            }
        }
        // No SQLSTATE: the connection broke, timed out or could not be opened.
        None if e.is_closed() || std::error::Error::source(&e).is_some() => storage(
            StorageProblem::Failing,
            "PostgreSQL connection failed",
            &detail,
        ),
        None => StoreError::Postgres {
            sqlstate: "-----".to_owned(),
            message: detail,
        },
    }
}

/// Maps a pool error: a timeout or a failed connection is a failing storage.
pub(crate) fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    use deadpool_postgres::PoolError as P;
    match e {
        P::Backend(e) => pg_error(e),
        P::Timeout(kind) => storage(
            StorageProblem::Failing,
            "no PostgreSQL connection became available",
            &format!("pool timeout ({kind:?})"),
        ),
        P::Closed => StoreError::Closed,
        other => storage(
            StorageProblem::Failing,
            "cannot get a PostgreSQL connection",
            &other.to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_classify_as_storage_problems() {
        assert_eq!(
            storage_problem_of_sqlstate("53100"),
            Some(StorageProblem::Full)
        );
        for failing in [
            "08006", "08001", "57P01", "57P02", "58030", "XX001", "25006", "53300",
        ] {
            assert_eq!(
                storage_problem_of_sqlstate(failing),
                Some(StorageProblem::Failing),
                "{failing}"
            );
        }
        for not_storage in ["23505", "23503", "42P01", "40001", "22P02"] {
            assert_eq!(
                storage_problem_of_sqlstate(not_storage),
                None,
                "{not_storage}"
            );
        }
    }
}
