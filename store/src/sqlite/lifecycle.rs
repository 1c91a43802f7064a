//! The SQLite side of the store interface's compound operations: admission and the job life-cycle
//! transitions. Each runs inside one savepoint (one op of a writer-thread batch), so it is atomic; the
//! contracts are documented on the traits in [`crate::api`].

use crate::api::{Admission, ExecutionEnd, ExecutionOutcome, LockGrant, SettlePolicy, Settled};
use crate::records::{
    normalize_time, ExecutionRecord, JobRecord, LockRecord, NewJob, ShotDataRecord,
};
use crate::{JobStatus, Store, StoreError};

type Result<T> = std::result::Result<T, StoreError>;

fn status_is(job: &Option<JobRecord>, wanted: &[JobStatus]) -> bool {
    job.as_ref()
        .and_then(JobRecord::job_status)
        .is_some_and(|s| wanted.contains(&s))
}

impl Store {
    /// [`JobStore::admit_job`](crate::JobStore::admit_job): idempotency lookup, per-user limit, insert.
    pub fn admit_job(&self, new: &NewJob, max_active: u64) -> Result<Admission> {
        self.atomic(|_| {
            if let Some(key) = &new.idempotency_key {
                if let Some(j) = self.job_by_idempotency_key(new.user_id, key)? {
                    return Ok(Admission::Existing(j));
                }
            }
            let active = self.count_active_jobs_of_user(new.user_id)?;
            if active >= max_active {
                return Ok(Admission::LimitReached { active });
            }
            let inserted = self.insert_job(new)?;
            Ok(if inserted.existing {
                Admission::Existing(inserted.job)
            } else {
                Admission::Admitted(inserted.job)
            })
        })
    }

    /// [`JobStore::cancel_queued`](crate::JobStore::cancel_queued).
    pub fn cancel_queued(&self, id: &str, detail: &str, now: &str) -> Result<Option<JobRecord>> {
        self.atomic(|_| {
            if !status_is(&self.job(id)?, &[JobStatus::Queued]) {
                return Ok(None);
            }
            self.set_job_status(id, JobStatus::Cancelled.as_str(), Some(detail), None, now)?;
            self.job(id)
        })
    }

    /// [`ExecutionStore::start_execution`](crate::ExecutionStore::start_execution).
    pub fn start_execution(&self, record: &ExecutionRecord) -> Result<bool> {
        self.atomic(|_| {
            if !status_is(&self.job(&record.job_id)?, &[JobStatus::Queued]) {
                return Ok(false);
            }
            self.insert_execution(record)?;
            self.increment_attempts(&record.job_id)?;
            self.set_job_status(
                &record.job_id,
                JobStatus::Running.as_str(),
                Some(&format!("execution {}", record.id)),
                None,
                &record.started_at,
            )?;
            Ok(true)
        })
    }

    /// [`ExecutionStore::commit_result`](crate::ExecutionStore::commit_result).
    pub fn commit_result(
        &self,
        job_id: &str,
        execution_id: &str,
        shot_rows: &[ShotDataRecord],
        body: &str,
        now: &str,
    ) -> Result<bool> {
        self.atomic(|_| {
            let live = self
                .execution(execution_id)?
                .is_some_and(|e| e.job_id == job_id && e.ended_at.is_none());
            if !live || !status_is(&self.job(job_id)?, &[JobStatus::Running]) {
                return Ok(false);
            }
            for row in shot_rows {
                self.insert_shot_data(row)?;
            }
            self.put_result(job_id, execution_id, body, now)?;
            self.finish_execution(execution_id, now, ExecutionOutcome::Done.as_str(), None)?;
            self.set_job_status(
                job_id,
                JobStatus::Done.as_str(),
                Some(&format!("execution {execution_id}")),
                None,
                now,
            )?;
            Ok(true)
        })
    }

    /// [`ExecutionStore::fail_job`](crate::ExecutionStore::fail_job).
    pub fn fail_job(
        &self,
        job_id: &str,
        execution_id: Option<&str>,
        reason: &str,
        now: &str,
    ) -> Result<bool> {
        self.atomic(|_| {
            if let Some(x) = execution_id {
                self.finish_execution(x, now, ExecutionOutcome::Error.as_str(), Some(reason))?;
            }
            if !status_is(&self.job(job_id)?, &[JobStatus::Running, JobStatus::Queued]) {
                return Ok(false);
            }
            self.set_job_status(
                job_id,
                JobStatus::Error.as_str(),
                Some("failed"),
                Some(reason),
                now,
            )?;
            Ok(true)
        })
    }

    /// [`ExecutionStore::cancel_running`](crate::ExecutionStore::cancel_running).
    pub fn cancel_running(
        &self,
        job_id: &str,
        execution_id: &str,
        detail: &str,
        now: &str,
    ) -> Result<bool> {
        self.atomic(|_| {
            self.finish_execution(
                execution_id,
                now,
                ExecutionOutcome::Cancelled.as_str(),
                Some(detail),
            )?;
            if !status_is(&self.job(job_id)?, &[JobStatus::Running]) {
                return Ok(false);
            }
            self.set_job_status(
                job_id,
                JobStatus::Cancelled.as_str(),
                Some(detail),
                None,
                now,
            )?;
            Ok(true)
        })
    }

    /// [`ExecutionStore::requeue_running`](crate::ExecutionStore::requeue_running).
    pub fn requeue_running(
        &self,
        job_id: &str,
        close: Option<&ExecutionEnd<'_>>,
        why: &str,
        max_attempts: Option<u32>,
        now: &str,
    ) -> Result<Option<JobRecord>> {
        self.atomic(|_| {
            if let Some(end) = close {
                if self
                    .execution(end.id)?
                    .is_some_and(|e| e.ended_at.is_none())
                {
                    self.finish_execution(end.id, now, end.outcome.as_str(), Some(end.detail))?;
                }
            }
            let job = match self.job(job_id)? {
                Some(j) if j.job_status() == Some(JobStatus::Running) => j,
                _ => return Ok(None),
            };
            if max_attempts.is_some_and(|m| job.attempts >= m) {
                let reason = format!("{why}; gave up after {} attempts", job.attempts);
                self.set_job_status(
                    job_id,
                    JobStatus::Error.as_str(),
                    Some("failed"),
                    Some(&reason),
                    now,
                )?;
                return Ok(None);
            }
            self.set_job_status(job_id, JobStatus::Queued.as_str(), Some(why), None, now)?;
            Ok(Some(job))
        })
    }

    /// [`ExecutionStore::settle_running`](crate::ExecutionStore::settle_running).
    pub fn settle_running(
        &self,
        job_id: &str,
        policy: &SettlePolicy,
        now: &str,
    ) -> Result<Option<JobRecord>> {
        self.atomic(|_| {
            if !status_is(&self.job(job_id)?, &[JobStatus::Running]) {
                return Ok(None);
            }
            // Where the job was: the progress its last open execution recorded ("shot K of N").
            let open: Vec<_> = self
                .executions_for_job(job_id)?
                .into_iter()
                .filter(|e| e.ended_at.is_none())
                .collect();
            let why = policy.reason(&open);
            for x in &open {
                self.finish_execution(
                    &x.id,
                    now,
                    ExecutionOutcome::Interrupted.as_str(),
                    Some(&why),
                )?;
            }
            if policy.counted && policy.fail_interrupted {
                self.set_job_status(
                    job_id,
                    JobStatus::Error.as_str(),
                    Some("failed"),
                    Some(&why),
                    now,
                )?;
                return Ok(None);
            }
            self.requeue_running(
                job_id,
                None,
                &format!("{why}; re-queued"),
                policy.counted.then_some(policy.max_attempts),
                now,
            )
        })
    }

    /// [`ExecutionStore::settle_running_of_backend`](crate::ExecutionStore::settle_running_of_backend).
    pub fn settle_running_of_backend(
        &self,
        backend: &str,
        policy: &SettlePolicy,
        now: &str,
    ) -> Result<Vec<Settled>> {
        self.atomic(|_| {
            let mut settled = Vec::new();
            for j in self.jobs_with_status(JobStatus::Running.as_str())? {
                if j.backend != backend {
                    continue;
                }
                let requeued = self.settle_running(&j.id, policy, now)?;
                settled.push(Settled {
                    job_id: j.id,
                    requeued,
                });
            }
            Ok(settled)
        })
    }

    /// [`LockStore::acquire_lock`](crate::LockStore::acquire_lock).
    pub fn acquire_lock(
        &self,
        resource: &str,
        owner: &str,
        now: &str,
        expires_at: Option<&str>,
    ) -> Result<LockGrant> {
        let now = normalize_time("now", now)?;
        self.atomic(|_| {
            if let Some(held) = self.lock(resource)? {
                let expired = held
                    .expires_at
                    .as_deref()
                    .is_some_and(|e| e <= now.as_str());
                if held.owner != owner && !expired {
                    return Ok(LockGrant::Held(held));
                }
            }
            self.put_lock(resource, owner, &now, expires_at)?;
            Ok(LockGrant::Granted)
        })
    }

    /// [`LockStore::renew_lock`](crate::LockStore::renew_lock).
    pub fn renew_lock(
        &self,
        resource: &str,
        owner: &str,
        expires_at: Option<&str>,
    ) -> Result<bool> {
        let expires_at = expires_at
            .map(|t| normalize_time("expires_at", t))
            .transpose()?;
        let n = self.conn.execute(
            "UPDATE locks SET expires_at = ?1 WHERE resource = ?2 AND owner = ?3",
            rusqlite::params![expires_at, resource, owner],
        )?;
        Ok(n > 0)
    }

    /// [`LockStore::force_release_lock`](crate::LockStore::force_release_lock).
    pub fn force_release_lock(&self, resource: &str) -> Result<Option<LockRecord>> {
        self.atomic(|_| {
            let held = self.lock(resource)?;
            if held.is_some() {
                self.force_delete_lock(resource)?;
            }
            Ok(held)
        })
    }

    /// The lock on `resource`, if held.
    pub fn lock(&self, resource: &str) -> Result<Option<LockRecord>> {
        use rusqlite::OptionalExtension;
        Ok(self
            .conn
            .query_row(
                "SELECT resource, owner, acquired_at, expires_at FROM locks WHERE resource = ?1",
                [resource],
                super::rows::lock_from_row,
            )
            .optional()?)
    }
}
