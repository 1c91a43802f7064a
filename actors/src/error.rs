//! The error every service verb answers with: a stable code, a human message, and for validation the
//! field-path details. It maps one-to-one onto the wire's `ErrorBody`.

use shotline_protocol::wire::{codes, ErrorBody};
use shotline_protocol::ValidationReport;
use shotline_store::{StorageProblem, StoreError};

/// A failed service call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ServiceError {
    /// Stable code from `shotline_protocol::wire::codes`.
    pub code: &'static str,
    /// What went wrong and what to do.
    pub message: String,
    /// Offending field, when one is to blame.
    pub path: Option<String>,
    /// Validation details.
    pub report: Option<ValidationReport>,
}

impl ServiceError {
    /// An error with a code and a message.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            path: None,
            report: None,
        }
    }

    /// A part of the runtime did not answer in time or is restarting.
    pub fn unavailable(what: impl Into<String>) -> Self {
        Self::new(
            codes::UNAVAILABLE,
            format!("{}; try again in a moment", what.into()),
        )
    }

    /// Something that should not happen.
    pub fn internal(what: impl Into<String>) -> Self {
        Self::new(codes::INTERNAL, what.into())
    }

    /// Unknown job, backend or user.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(codes::NOT_FOUND, what.into())
    }

    /// The job failed validation.
    pub fn validation(report: ValidationReport) -> Self {
        // One message for every path (wire, embedding): the one `ErrorBody::validation` writes.
        let body = ErrorBody::validation(report.clone());
        let mut e = Self::new(codes::VALIDATION_FAILED, body.message);
        e.path = body.path;
        e.report = Some(report);
        e
    }

    /// The wire form.
    pub fn to_body(&self) -> ErrorBody {
        let mut body = ErrorBody::new(self.code, &self.message);
        body.path = self.path.clone();
        if let Some(r) = &self.report {
            body.details = r.errors.clone();
            body.total_errors = r.total;
        }
        body
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ServiceError::not_found(what),
            StoreError::Conflict(what) => ServiceError::new(codes::CONFLICT, what),
            StoreError::Closed | StoreError::Busy => {
                ServiceError::unavailable(format!("the store is not accepting work ({e})"))
            }
            other => match other.storage_problem() {
                Some(StorageProblem::Full) => ServiceError::new(
                    codes::STORAGE_FULL,
                    format!(
                        "the server's storage is full, nothing was stored; retry later ({other})"
                    ),
                ),
                Some(StorageProblem::Failing) => ServiceError::new(
                    codes::STORAGE_UNAVAILABLE,
                    format!("the server's storage is failing, nothing was stored ({other})"),
                ),
                None => ServiceError::internal(format!("store: {other}")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_errors_have_their_own_codes() {
        let full = StoreError::Storage {
            problem: StorageProblem::Full,
            message: "COMMIT failed: database or disk is full".into(),
        };
        let e = ServiceError::from(full);
        assert_eq!(e.code, codes::STORAGE_FULL);
        assert!(e.message.contains("disk is full"), "{}", e.message);
        let failing = StoreError::Storage {
            problem: StorageProblem::Failing,
            message: "disk I/O error".into(),
        };
        assert_eq!(ServiceError::from(failing).code, codes::STORAGE_UNAVAILABLE);
        assert_eq!(
            ServiceError::from(StoreError::Migration("x".into())).code,
            codes::INTERNAL
        );
    }
}
