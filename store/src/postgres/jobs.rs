//! [`JobStore`] on PostgreSQL, and the job status change shared by the life-cycle transitions.

use deadpool_postgres::GenericClient;

use super::error::Violation;
use super::rows::{self, exec, exec_or, one, opt, Result, JOB_COLS};
use super::PgEngine;
use crate::api::{Admission, JobStatus, JobStore, StoreFuture};
use crate::records::{listing_row_bytes, JobEvent, JobFilter, JobRecord, NewJob};
use crate::{normalize_time, StoreError};

/// The job row, locked until the end of the transaction: a transition reads the status it checks under
/// this lock, so another process cannot change the job between the check and the write.
pub(crate) async fn lock_job<C: GenericClient>(c: &C, id: &str) -> Result<Option<JobRecord>> {
    let sql = format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1 FOR UPDATE");
    opt(c, &sql, &[&id])
        .await?
        .as_ref()
        .map(rows::job)
        .transpose()
}

/// Whether a job record is in `status`.
pub(crate) fn is(job: &JobRecord, status: JobStatus) -> bool {
    job.status == status.as_str()
}

/// Changes a job's status and appends its job event (`now` already normalised).
pub(crate) async fn set_status<C: GenericClient>(
    c: &C,
    id: &str,
    status: JobStatus,
    detail: Option<&str>,
    error_message: Option<&str>,
    now: &str,
) -> Result<()> {
    let n = exec(
        c,
        "UPDATE jobs SET status = $1, detail = $2, error_message = $3, updated_at = $4 WHERE id = $5",
        &[&status.as_str(), &detail, &error_message, &now, &id],
    )
    .await?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("job {id:?}")));
    }
    exec(
        c,
        "INSERT INTO job_events (job_id, status, detail, at) VALUES ($1, $2, $3, $4)",
        &[&id, &status.as_str(), &detail, &now],
    )
    .await?;
    Ok(())
}

const ACTIVE_JOBS_OF_USER: &str =
    "SELECT COUNT(*) FROM jobs WHERE user_id = $1 AND status IN ('QUEUED', 'RUNNING')";

impl PgEngine {
    async fn admit(&self, new: NewJob, max_active: u64) -> Result<Admission> {
        let submitted_at = normalize_time("submitted_at", &new.submitted_at)?;
        let tags = serde_json::to_string(&new.tags)
            .map_err(|e| StoreError::invalid("tags", &e.to_string(), "a list of strings"))?;
        let mut c = self.client().await?;
        let tx = Self::begin(&mut c).await?;
        // Every admission of this user, from any process, queues on this row lock; the statements below
        // (READ COMMITTED) see every admission that committed while this one waited.
        let user = opt(
            &tx,
            "SELECT id FROM users WHERE id = $1 FOR NO KEY UPDATE",
            &[&new.user_id],
        )
        .await?;
        if user.is_none() {
            return Err(StoreError::NotFound(format!("user id {}", new.user_id)));
        }
        if let Some(key) = &new.idempotency_key {
            let sql =
                format!("SELECT {JOB_COLS} FROM jobs WHERE user_id = $1 AND idempotency_key = $2");
            if let Some(row) = opt(&tx, &sql, &[&new.user_id, key]).await? {
                return Ok(Admission::Existing(rows::job(&row)?));
            }
        }
        let active = rows::count(&one(&tx, ACTIVE_JOBS_OF_USER, &[&new.user_id]).await?)?;
        if active >= max_active {
            return Ok(Admission::LimitReached { active });
        }
        let seq: i64 = one(&tx, "SELECT nextval('jobs_seq_counter')", &[])
            .await?
            .get(0);
        let queued = JobStatus::Queued.as_str();
        exec_or(
            &tx,
            "INSERT INTO jobs (id, seq, user_id, backend, qobj_id, priority, tags, idempotency_key, \
             body, status, detail, error_message, attempts, submitted_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, NULL, 0, $11, $11)",
            &[
                &new.id,
                &seq,
                &new.user_id,
                &new.backend,
                &new.qobj_id,
                &new.priority,
                &tags,
                &new.idempotency_key,
                &new.body,
                &queued,
                &submitted_at,
            ],
            |v| {
                Some(match v {
                    Violation::ForeignKey => {
                        StoreError::NotFound(format!("user id {}", new.user_id))
                    }
                    Violation::Unique => StoreError::Conflict(format!(
                        "job id {:?} already exists; use a fresh job id",
                        new.id
                    )),
                })
            },
        )
        .await?;
        exec(
            &tx,
            "INSERT INTO job_events (job_id, status, detail, at) VALUES ($1, $2, NULL, $3)",
            &[&new.id, &queued, &submitted_at],
        )
        .await?;
        self.commit(tx).await?;
        Ok(Admission::Admitted(JobRecord {
            id: new.id,
            seq,
            user_id: new.user_id,
            backend: new.backend,
            qobj_id: new.qobj_id,
            priority: new.priority,
            tags: new.tags,
            idempotency_key: new.idempotency_key,
            body: new.body,
            status: queued.to_owned(),
            detail: None,
            error_message: None,
            attempts: 0,
            submitted_at: submitted_at.clone(),
            updated_at: submitted_at,
        }))
    }

    async fn list(&self, f: &JobFilter) -> Result<Vec<(JobRecord, String)>> {
        let since = f
            .since
            .as_deref()
            .map(|s| normalize_time("since", s))
            .transpose()?;
        let until = f
            .until
            .as_deref()
            .map(|s| normalize_time("until", s))
            .transpose()?;
        let cols: String = JOB_COLS
            .split(',')
            .map(|c| match c.trim() {
                "body" => "'' AS body".to_string(),
                c => format!("j.{c}"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {cols}, u.name FROM jobs j JOIN users u ON u.id = j.user_id \
             WHERE ($1::BIGINT IS NULL OR j.user_id = $1) AND ($2::TEXT IS NULL OR j.status = $2) \
             AND ($3::TEXT IS NULL OR j.backend = $3) AND ($4::TEXT IS NULL OR j.submitted_at >= $4) \
             AND ($5::TEXT IS NULL OR j.submitted_at < $5) AND ($6::BIGINT IS NULL OR j.seq < $6) \
             ORDER BY j.seq DESC LIMIT $7"
        );
        let c = self.client().await?;
        let limit = i64::from(f.limit.max(1));
        let found = rows::rows(
            &c,
            &sql,
            &[
                &f.user_id,
                &f.status,
                &f.backend,
                &since,
                &until,
                &f.before_seq,
                &limit,
            ],
        )
        .await?;
        let width = JOB_COLS.split(',').count();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for row in &found {
            let job = rows::job(row)?;
            let owner: String = row.try_get(width).map_err(super::pg_error)?;
            bytes = bytes.saturating_add(listing_row_bytes(&job, &owner));
            out.push((job, owner));
            if f.max_bytes > 0 && bytes > f.max_bytes {
                break;
            }
        }
        Ok(out)
    }

    async fn cancel_queued_job(
        &self,
        id: &str,
        detail: &str,
        now: &str,
    ) -> Result<Option<JobRecord>> {
        let now = normalize_time("now", now)?;
        let mut c = self.client().await?;
        let tx = Self::begin(&mut c).await?;
        match lock_job(&tx, id).await? {
            Some(j) if is(&j, JobStatus::Queued) => {}
            _ => return Ok(None),
        }
        set_status(&tx, id, JobStatus::Cancelled, Some(detail), None, &now).await?;
        let job = lock_job(&tx, id).await?;
        self.commit(tx).await?;
        Ok(job)
    }
}

impl JobStore for PgEngine {
    fn admit_job(&self, new: NewJob, max_active: u64) -> StoreFuture<'_, Admission> {
        Box::pin(self.admit(new, max_active))
    }

    fn job<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<JobRecord>> {
        Box::pin(async move {
            let c = self.client().await?;
            let sql = format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1");
            opt(&c, &sql, &[&id])
                .await?
                .as_ref()
                .map(rows::job)
                .transpose()
        })
    }

    fn list_jobs<'a>(&'a self, filter: &'a JobFilter) -> StoreFuture<'a, Vec<(JobRecord, String)>> {
        Box::pin(self.list(filter))
    }

    fn job_events<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Vec<JobEvent>> {
        Box::pin(async move {
            let c = self.client().await?;
            let found = rows::rows(
                &c,
                "SELECT id, job_id, status, detail, at FROM job_events WHERE job_id = $1 ORDER BY id",
                &[&id],
            )
            .await?;
            rows::all(found, rows::event)
        })
    }

    fn jobs_with_status(&self, status: JobStatus) -> StoreFuture<'_, Vec<JobRecord>> {
        Box::pin(async move {
            let c = self.client().await?;
            let sql = format!("SELECT {JOB_COLS} FROM jobs WHERE status = $1 ORDER BY seq");
            rows::all(rows::rows(&c, &sql, &[&status.as_str()]).await?, rows::job)
        })
    }

    fn count_jobs<'a>(&'a self, backend: &'a str, status: JobStatus) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let c = self.client().await?;
            rows::count(
                &one(
                    &c,
                    "SELECT COUNT(*) FROM jobs WHERE backend = $1 AND status = $2",
                    &[&backend, &status.as_str()],
                )
                .await?,
            )
        })
    }

    fn count_active_jobs_of_user(&self, user_id: i64) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let c = self.client().await?;
            rows::count(&one(&c, ACTIVE_JOBS_OF_USER, &[&user_id]).await?)
        })
    }

    fn cancel_queued<'a>(
        &'a self,
        id: &'a str,
        detail: &'a str,
        now: &'a str,
    ) -> StoreFuture<'a, Option<JobRecord>> {
        Box::pin(self.cancel_queued_job(id, detail, now))
    }
}
