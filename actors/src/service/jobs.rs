//! Job verbs beyond submit/status/result: listing with filters and paging, and cancel.

use shotline_protocol::wire::{codes, JobSummary};
use shotline_protocol::{JobStatus, StatusRecord};
use shotline_store::{JobFilter, UserRecord};

use super::{status_of, Service};
use crate::backend::BackendMsg;
use crate::context::roles;
use crate::error::ServiceError;
use crate::time::utc_now;

pub use shotline_protocol::wire::JobsQuery as JobQuery;

/// Largest page.
pub const MAX_PAGE: u32 = 500;

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
        let filter = JobFilter {
            user_id: (!q.all).then_some(user.id),
            status: q.status.map(|s| s.as_str().to_string()),
            backend: q.backend,
            since: q.since,
            until: q.until,
            before_seq: q.after,
            limit: limit + 1,
        };
        let mut rows = self
            .db
            .run(move |s| s.list_jobs(&filter))
            .await
            .map_err(|e| {
                if e.message.contains("since") || e.message.contains("until") {
                    ServiceError::new(codes::INVALID_ARGUMENT, e.message)
                } else {
                    e
                }
            })?;
        let next = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|(j, _)| j.seq)
        } else {
            None
        };
        let jobs = rows
            .into_iter()
            .map(|(j, owner)| {
                let status = status_of(&j);
                JobSummary {
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
                }
            })
            .collect();
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
            .run(move |s| match s.job(&id)? {
                Some(j) if j.status == JobStatus::Queued.as_str() => {
                    s.set_job_status(
                        &id,
                        JobStatus::Cancelled.as_str(),
                        Some(&format!("cancelled by {by} before it ran")),
                        None,
                        &utc_now(),
                    )?;
                    Ok(s.job(&id)?)
                }
                _ => Ok(None),
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
