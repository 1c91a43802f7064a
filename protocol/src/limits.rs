//! Size limits of a submission beyond the backend's own (`max_shots`, `max_experiments`): the server's
//! `limits` configuration. Checked by [`crate::validate::validate_job_within`] (experiment names, total
//! shots) and [`check_options`] (tags, `qobj_id`, idempotency key).

use crate::error::{ErrorCode, ValidationError};
use crate::wire::SubmitOptions;

/// Longest idempotency key in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 200;

/// The user-controlled sizes of a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobLimits {
    /// Longest experiment name in bytes.
    pub max_experiment_name_bytes: usize,
    /// Most shots of one job, summed over its experiments.
    pub max_shots_per_job: u64,
    /// Most tags.
    pub max_tags: usize,
    /// Longest tag in bytes.
    pub max_tag_bytes: usize,
    /// Longest `qobj_id` in bytes.
    pub max_qobj_id_bytes: usize,
}

impl Default for JobLimits {
    /// The defaults of the server's `limits` configuration.
    fn default() -> Self {
        Self {
            max_experiment_name_bytes: 256,
            max_shots_per_job: 10_000_000,
            max_tags: 32,
            max_tag_bytes: 256,
            max_qobj_id_bytes: 256,
        }
    }
}

fn too_long(path: String, what: &str, len: usize, max: usize, key: &str) -> ValidationError {
    ValidationError {
        code: ErrorCode::ValueTooLong,
        message: format!("{path} is {len} bytes long; {what} may be at most {max} bytes ({key})"),
        path,
        value: Some(format!("{len} bytes")),
        limit: Some(max.to_string()),
    }
}

/// Checks the options of a submit (tags, `qobj_id`, idempotency key) against `limits`; the first problem
/// found, naming the field path, the value and the limit.
pub fn check_options(options: &SubmitOptions, limits: &JobLimits) -> Result<(), ValidationError> {
    if options.tags.len() > limits.max_tags {
        return Err(ValidationError {
            code: ErrorCode::TooManyTags,
            path: "tags".to_string(),
            message: format!(
                "tags has {} entries; a job may have at most {} tags (limits.max_tags)",
                options.tags.len(),
                limits.max_tags
            ),
            value: Some(options.tags.len().to_string()),
            limit: Some(limits.max_tags.to_string()),
        });
    }
    if let Some((i, tag)) = options
        .tags
        .iter()
        .enumerate()
        .find(|(_, t)| t.len() > limits.max_tag_bytes)
    {
        return Err(too_long(
            format!("tags[{i}]"),
            "a tag",
            tag.len(),
            limits.max_tag_bytes,
            "limits.max_tag_bytes",
        ));
    }
    if let Some(q) = options
        .qobj_id
        .as_ref()
        .filter(|q| q.len() > limits.max_qobj_id_bytes)
    {
        return Err(too_long(
            "qobj_id".into(),
            "qobj_id",
            q.len(),
            limits.max_qobj_id_bytes,
            "limits.max_qobj_id_bytes",
        ));
    }
    if let Some(k) = &options.idempotency_key {
        if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY_BYTES {
            return Err(ValidationError {
                code: ErrorCode::ValueTooLong,
                path: "idempotency_key".to_string(),
                message: format!(
                    "idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} bytes, got {}",
                    k.len()
                ),
                value: Some(format!("{} bytes", k.len())),
                limit: Some(format!("[1, {MAX_IDEMPOTENCY_KEY_BYTES}]")),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(tags: Vec<String>, qobj_id: Option<String>, key: Option<String>) -> SubmitOptions {
        SubmitOptions {
            qobj_id,
            priority: 0,
            tags,
            idempotency_key: key,
        }
    }

    #[test]
    fn every_option_size_is_bounded_and_named() {
        let l = JobLimits {
            max_tags: 2,
            max_tag_bytes: 4,
            max_qobj_id_bytes: 3,
            ..JobLimits::default()
        };
        assert!(check_options(&opts(vec!["abcd".into(); 2], Some("q".into()), None), &l).is_ok());
        let e = check_options(&opts(vec!["a".into(); 3], None, None), &l).unwrap_err();
        assert_eq!((e.code, e.path.as_str()), (ErrorCode::TooManyTags, "tags"));
        assert!(e.message.contains("limits.max_tags") && e.message.contains('3'));
        let e = check_options(&opts(vec!["a".into(), "abcde".into()], None, None), &l).unwrap_err();
        assert_eq!(
            (e.code, e.path.as_str()),
            (ErrorCode::ValueTooLong, "tags[1]")
        );
        assert!(e.message.contains("5 bytes") && e.message.contains("at most 4"));
        let e = check_options(&opts(vec![], Some("long".into()), None), &l).unwrap_err();
        assert_eq!(e.path, "qobj_id");
        assert!(e.message.contains("limits.max_qobj_id_bytes"));
        let e = check_options(&opts(vec![], None, Some("k".repeat(201))), &l).unwrap_err();
        assert_eq!(e.path, "idempotency_key");
        assert!(check_options(&opts(vec![], None, Some(String::new())), &l).is_err());
    }
}
