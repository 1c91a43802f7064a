//! Job verbs beyond submit/status/result: listing with filters and paging, and cancel.

use shotline_protocol::wire::{codes, JobSummary};
use shotline_protocol::StatusRecord;
use shotline_store::{JobFilter, UserRecord};

use super::{shown, status_of, Service};
use crate::backend::BackendMsg;
use crate::context::roles;
use crate::error::ServiceError;
use crate::time::utc_now;

pub use shotline_protocol::wire::JobsQuery as JobQuery;

/// Largest page.
pub const MAX_PAGE: u32 = 500;

/// Room for the `jobs` answer around its summaries (type tag, array header, `next` cursor).
const PAGE_ENVELOPE_BYTES: usize = 64;

/// Bytes of `summary` in a msgpack answer.
fn encoded_len(summary: &JobSummary) -> usize {
    shotline_protocol::encode_frame(summary, usize::MAX).map_or(usize::MAX / 2, |f| {
        f.len() - shotline_protocol::FRAME_HEADER_LEN
    })
}

impl Service {
    /// A page of the user's jobs (everyone's for an administrator asking `all`), newest first, and the
    /// cursor of the next page.
    pub async fn jobs(
        &self,
        user: &UserRecord,
        q: JobQuery,
    ) -> Result<(Vec<JobSummary>, Option<i64>), ServiceError> {
        if q.all && !user.is_admin {
            return Err(ServiceError::new(
                codes::FORBIDDEN,
                "only administrators may list every user's jobs",
            ));
        }
        let limit = q.limit.unwrap_or(50);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ServiceError::new(
                codes::INVALID_ARGUMENT,
                format!("limit must be between 1 and {MAX_PAGE}, got {limit}"),
            ));
        }
        for (field, value) in [("since", &q.since), ("until", &q.until)] {
            if let Some(v) = value {
                shotline_store::normalize_time(field, v).map_err(|_| {
                    let mut e = ServiceError::new(
                        codes::INVALID_ARGUMENT,
                        format!(
                            "{field} {} is not a real date and time: expected RFC 3339 UTC like \
                             2026-11-22T10:00:00Z (month 01-12, a day of that month, hour 00-23, minute and \
                             second 00-59)",
                            shown(v)
                        ),
                    );
                    e.path = Some(field.to_string());
                    e
                })?;
            }
        }
        // The answer must fit in one frame a client reads: the page stops before `max_response_bytes`.
        let budget = usize::try_from(self.ctx.config().limits.max_response_bytes)
            .unwrap_or(usize::MAX)
            .saturating_sub(PAGE_ENVELOPE_BYTES);
        let filter = JobFilter {
            user_id: (!q.all).then_some(user.id),
            status: q.status.map(|s| s.as_str().to_string()),
            backend: q.backend,
            since: q.since,
            until: q.until,
            before_seq: q.after,
            limit: limit + 1,
            max_bytes: budget,
        };
        let rows = self
            .db
            .run(move |e| async move { e.list_jobs(&filter).await })
            .await?;
        let rows_read = rows.len();
        let more_rows = rows_read > limit as usize;
        let mut cut = false;
        let mut jobs = Vec::with_capacity(rows.len().min(limit as usize));
        let mut used = 0usize;
        let mut last_seq = None;
        for (j, owner) in rows.into_iter().take(limit as usize) {
            let status = status_of(&j);
            let mut summary = JobSummary {
                job_id: j.id,
                user: owner,
                backend: j.backend,
                status: status.status,
                detail: status.detail,
                qobj_id: j.qobj_id,
                priority: j.priority,
                tags: j.tags,
                submitted_at: j.submitted_at,
                updated_at: j.updated_at,
            };
            let mut size = encoded_len(&summary);
            if used + size > budget {
                if !jobs.is_empty() {
                    break;
                }
                // A job stored before the limits were set whose tags alone exceed an answer: shown without them.
                let hidden = summary.tags.len();
                summary.tags = vec![format!(
                    "({hidden} tags not shown: larger than limits.max_response_bytes)"
                )];
                size = encoded_len(&summary);
                cut = true;
            }
            used += size;
            last_seq = Some(j.seq);
            jobs.push(summary);
        }
        // More follow when the store had more rows than the page, or the page stopped at its byte budget (the
        // store's estimate never exceeds the encoded size, so a store stopped by bytes shows as a cut here).
        let next = if more_rows || jobs.len() < rows_read || cut {
            last_seq
        } else {
            None
        };
        Ok((jobs, next))
    }

    /// Cancels one of the user's jobs: a queued job becomes CANCELLED at once; a running job stops at the
    /// next shot boundary, its devices go to their safe state and it ends CANCELLED with the number of shots
    /// completed. A finished job cannot be cancelled.
    pub async fn cancel(
        &self,
        user: &UserRecord,
        job_id: &str,
    ) -> Result<StatusRecord, ServiceError> {
        let job = self.own_job(user, job_id).await?;
        let status = status_of(&job);
        if status.status.is_terminal() {
            return Err(ServiceError::new(
                codes::ALREADY_FINISHED,
                format!(
                    "job {job_id} is already {}: nothing to cancel",
                    status.status
                ),
            ));
        }
        // A queued job: cancel it in the store, unless it started meanwhile.
        let id = job_id.to_string();
        let by = user.name.clone();
        let cancelled_queued = self
            .db
            .run(move |e| async move {
                let detail = format!("cancelled by {by} before it ran");
                e.cancel_queued(&id, &detail, &utc_now()).await
            })
            .await?;
        if let Some(j) = cancelled_queued {
            let st = status_of(&j);
            self.ctx.publish_status(st.clone());
            return Ok(st);
        }
        // Running (or just started): ask its backend to stop it at the next shot boundary.
        let backend = self
            .ctx
            .lookup::<BackendMsg>(&roles::backend(&job.backend))
            .ok_or_else(|| {
                ServiceError::unavailable(format!("backend {} is restarting", job.backend))
            })?;
        let id = job_id.to_string();
        let hit = match backend
            .call(|r| BackendMsg::Cancel(id, r), Some(self.ctx.call_timeout()))
            .await
        {
            Ok(ractor::rpc::CallResult::Success(hit)) => hit,
            _ => {
                return Err(ServiceError::unavailable(format!(
                    "backend {}",
                    job.backend
                )))
            }
        };
        let now = self.status(user, job_id).await?;
        if !hit && !now.status.is_terminal() {
            // Between two states (e.g. re-queued at this instant): ask the caller to try again.
            return Err(ServiceError::unavailable(format!(
                "job {job_id} is changing state ({})",
                now.status
            )));
        }
        Ok(now)
    }
}
