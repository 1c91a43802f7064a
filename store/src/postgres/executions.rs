//! [`ExecutionStore`] on PostgreSQL: execution ids, provenance reads, and the job life-cycle transitions.
//!
//! Every transition locks the job row first (`SELECT ... FOR UPDATE`, see [`lock_job`]) and only then
//! touches its executions, so two processes never interleave on one job and never deadlock on it.

use deadpool_postgres::GenericClient;

use super::error::Violation;
use super::jobs::{is, lock_job, set_status};
use super::rows::{self, exec, exec_or, one, opt, Result, EXECUTION_COLS, SHOT_DATA_COLS};
use super::PgEngine;
use crate::api::{
    ExecutionEnd, ExecutionOutcome, ExecutionStore, JobStatus, SettlePolicy, Settled, StoreFuture,
};
use crate::records::{ExecutionRecord, JobRecord, ResultRecord, ShotDataRecord};
use crate::{normalize_time, StoreError};

fn day_ok(day: &str) -> bool {
    day.len() == 8 && day.bytes().all(|b| b.is_ascii_digit())
}

/// Closes an execution (whatever its state, as the SQLite engine does). Unknown id: NotFound.
async fn finish<C: GenericClient>(
    c: &C,
    id: &str,
    now: &str,
    outcome: ExecutionOutcome,
    detail: Option<&str>,
) -> Result<()> {
    let n = exec(
        c,
        "UPDATE executions SET ended_at = $1, outcome = $2, detail = $3 WHERE id = $4",
        &[&now, &outcome.as_str(), &detail, &id],
    )
    .await?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("execution {id:?}")));
    }
    Ok(())
}

async fn execution_of<C: GenericClient>(c: &C, id: &str) -> Result<Option<ExecutionRecord>> {
    let sql = format!("SELECT {EXECUTION_COLS} FROM executions WHERE id = $1");
    opt(c, &sql, &[&id])
        .await?
        .as_ref()
        .map(rows::execution)
        .transpose()
}

async fn executions_of<C: GenericClient>(c: &C, job_id: &str) -> Result<Vec<ExecutionRecord>> {
    let sql =
        format!("SELECT {EXECUTION_COLS} FROM executions WHERE job_id = $1 ORDER BY attempt, id");
    rows::all(rows::rows(c, &sql, &[&job_id]).await?, rows::execution)
}

/// Re-queues `job` (locked, RUNNING) or, past `max_attempts`, ends it ERROR. Returns it if re-queued.
async fn requeue_locked<C: GenericClient>(
    c: &C,
    job: JobRecord,
    why: &str,
    max_attempts: Option<u32>,
    now: &str,
) -> Result<Option<JobRecord>> {
    if max_attempts.is_some_and(|m| job.attempts >= m) {
        let reason = format!("{why}; gave up after {} attempts", job.attempts);
        set_status(
            c,
            &job.id,
            JobStatus::Error,
            Some("failed"),
            Some(&reason),
            now,
        )
        .await?;
        return Ok(None);
    }
    set_status(c, &job.id, JobStatus::Queued, Some(why), None, now).await?;
    Ok(Some(job))
}

/// Settles `job` (locked, RUNNING) by `policy`; returns it if re-queued.
async fn settle_locked<C: GenericClient>(
    c: &C,
    job: JobRecord,
    policy: &SettlePolicy,
    now: &str,
) -> Result<Option<JobRecord>> {
    let open: Vec<ExecutionRecord> = executions_of(c, &job.id)
        .await?
        .into_iter()
        .filter(|e| e.ended_at.is_none())
        .collect();
    let why = policy.reason(&open);
    for x in &open {
        finish(c, &x.id, now, ExecutionOutcome::Interrupted, Some(&why)).await?;
    }
    if policy.counted && policy.fail_interrupted {
        set_status(
            c,
            &job.id,
            JobStatus::Error,
            Some("failed"),
            Some(&why),
            now,
        )
        .await?;
        return Ok(None);
    }
    let max = policy.counted.then_some(policy.max_attempts);
    requeue_locked(c, job, &format!("{why}; re-queued"), max, now).await
}

impl PgEngine {
    async fn next_id(&self, day: &str) -> Result<String> {
        if !day_ok(day) {
            return Err(StoreError::invalid(
                "day",
                day,
                "a UTC date as YYYYMMDD, e.g. 20261122",
            ));
        }
        let c = self.client().await?;
        // One statement, atomic in PostgreSQL: concurrent callers (any process) queue on the row.
        let n: i64 = one(
            &c,
            "INSERT INTO execution_counters (day, last) VALUES ($1, 1) \
             ON CONFLICT (day) DO UPDATE SET last = execution_counters.last + 1 RETURNING last",
            &[&day],
        )
        .await?
        .get(0);
        self.count_commit();
        Ok(format!("{day}-{n:03}"))
    }

    async fn start(&self, e: &ExecutionRecord) -> Result<bool> {
        let started_at = normalize_time("started_at", &e.started_at)?;
        let ended_at = e
            .ended_at
            .as_deref()
            .map(|t| normalize_time("ended_at", t))
            .transpose()?;
        let mut c = self.client().await?;
        let tx = Self::begin(&mut c).await?;
        match lock_job(&tx, &e.job_id).await? {
            Some(j) if is(&j, JobStatus::Queued) => {}
            _ => return Ok(false),
        }
        exec_or(
            &tx,
            "INSERT INTO executions (id, job_id, backend, attempt, seed, config_hash, software_version, \
             calibration, started_at, ended_at, outcome, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            &[
                &e.id,
                &e.job_id,
                &e.backend,
                &i64::from(e.attempt),
                &(e.seed as i64),
                &e.config_hash,
                &e.software_version,
                &e.calibration,
                &started_at,
                &ended_at,
                &e.outcome,
                &e.detail,
            ],
            |v| {
                Some(match v {
                    Violation::ForeignKey => StoreError::NotFound(format!("job {:?}", e.job_id)),
                    Violation::Unique => StoreError::Conflict(format!(
                        "execution id {:?} already exists; allocate ids with next_execution_id",
                        e.id
                    )),
                })
            },
        )
        .await?;
        exec(
            &tx,
            "UPDATE jobs SET attempts = attempts + 1 WHERE id = $1",
            &[&e.job_id],
        )
        .await?;
        let detail = format!("execution {}", e.id);
        set_status(
            &tx,
            &e.job_id,
            JobStatus::Running,
            Some(&detail),
            None,
            &started_at,
        )
        .await?;
        self.commit(tx).await?;
        Ok(true)
    }

    async fn commit_done(
        &self,
        job_id: &str,
        execution_id: &str,
        shot_rows: &[ShotDataRecord],
        body: &str,
        now: &str,
    ) -> Result<bool> {
        let now = normalize_time("now", now)?;
        let mut prepared = Vec::with_capacity(shot_rows.len());
        for d in shot_rows {
            let (first, last, memory) = d.stored_columns()?;
            prepared.push((d, first, last, memory));
        }
        let mut c = self.client().await?;
        let tx = Self::begin(&mut c).await?;
        match lock_job(&tx, job_id).await? {
            Some(j) if is(&j, JobStatus::Running) => {}
            _ => return Ok(false),
        }
        match execution_of(&tx, execution_id).await? {
            Some(e) if e.ended_at.is_none() && e.job_id == job_id => {}
            _ => return Ok(false),
        }
        let insert_shots = format!(
            "INSERT INTO shot_data ({SHOT_DATA_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        );
        for (d, first, last, memory) in &prepared {
            exec_or(
                &tx,
                &insert_shots,
                &[
                    &d.execution_id,
                    &i64::from(d.experiment_index),
                    &d.experiment_name,
                    &i64::from(d.shots),
                    memory,
                    &d.timing,
                    first,
                    last,
                ],
                |v| {
                    Some(match v {
                        Violation::ForeignKey => {
                            StoreError::NotFound(format!("execution {:?}", d.execution_id))
                        }
                        Violation::Unique => StoreError::Conflict(format!(
                            "shot data for execution {:?} experiment {} already stored",
                            d.execution_id, d.experiment_index
                        )),
                    })
                },
            )
            .await?;
        }
        exec_or(
            &tx,
            "INSERT INTO results (job_id, execution_id, body, created_at) VALUES ($1, $2, $3, $4)",
            &[&job_id, &execution_id, &body, &now],
            |v| {
                Some(match v {
                    Violation::Unique => StoreError::Conflict(format!(
                        "job {job_id:?} already has a result; results are stored exactly once"
                    )),
                    Violation::ForeignKey => StoreError::NotFound(format!("job {job_id:?}")),
                })
            },
        )
        .await?;
        finish(&tx, execution_id, &now, ExecutionOutcome::Done, None).await?;
        let detail = format!("execution {execution_id}");
        set_status(&tx, job_id, JobStatus::Done, Some(&detail), None, &now).await?;
        self.commit(tx).await?;
        Ok(true)
    }

    async fn fail(
        &self,
        job_id: &str,
        execution_id: Option<&str>,
        reason: &str,
        now: &str,
    ) -> Result<bool> {
        let now = normalize_time("now", now)?;
        let mut c = self.client().await?;
        let tx = Self::begin(&mut c).await?;
        let job = lock_job(&tx, job_id).await?;
        if let Some(x) = execution_id {
            finish(&tx, x, &now, ExecutionOutcome::Error, Some(reason)).await?;
        }
        let changed = match job {
            Some(j) if is(&j, JobStatus::Running) || is(&j, JobStatus::Queued) => {
                set_status(
                    &tx,
                    job_id,
                    JobStatus::Error,
                    Some("failed"),
                    Some(reason),
                    &now,
                )
                .await?;
                true
            }
            _ => false,
        };
        self.commit(tx).await?;
        Ok(changed)
    }

    async fn cancel(
        &self,
        job_id: &str,
        execution_id: &str,
        detail: &str,
        now: &str,
    ) -> Result<bool> {
        let now = normalize_time("now", now)?;
        let mut c = self.client().await?;
        let tx = Self::begin(&mut c).await?;
        let job = lock_job(&tx, job_id).await?;
        finish(
            &tx,
            execution_id,
            &now,
            ExecutionOutcome::Cancelled,
            Some(detail),
        )
        .await?;
        let changed = match job {
            Some(j) if is(&j, JobStatus::Running) => {
                set_status(&tx, job_id, JobStatus::Cancelled, Some(detail), None, &now).await?;
                true
            }
            _ => false,
        };
        self.commit(tx).await?;
        Ok(changed)
    }

    async fn requeue(
        &self,
        job_id: &str,
        close: Option<ExecutionEnd<'_>>,
        why: &str,
        max_attempts: Option<u32>,
        now: &str,
    ) -> Result<Option<JobRecord>> {
        let now = normalize_time("now", now)?;
        let mut c = self.client().await?;
        let tx = Self::begin(&mut c).await?;
        let job = lock_job(&tx, job_id).await?;
        if let Some(end) = &close {
            if execution_of(&tx, end.id)
                .await?
                .is_some_and(|e| e.ended_at.is_none())
            {
                finish(&tx, end.id, &now, end.outcome, Some(end.detail)).await?;
            }
        }
        let requeued = match job {
            Some(j) if is(&j, JobStatus::Running) => {
                requeue_locked(&tx, j, why, max_attempts, &now).await?
            }
            _ => None,
        };
        self.commit(tx).await?;
        Ok(requeued)
    }

    async fn settle(
        &self,
        job_id: &str,
        policy: &SettlePolicy,
        now: &str,
    ) -> Result<Option<JobRecord>> {
        let now = normalize_time("now", now)?;
        let mut c = self.client().await?;
        let tx = Self::begin(&mut c).await?;
        let requeued = match lock_job(&tx, job_id).await? {
            Some(j) if is(&j, JobStatus::Running) => settle_locked(&tx, j, policy, &now).await?,
            _ => return Ok(None),
        };
        self.commit(tx).await?;
        Ok(requeued)
    }

    async fn settle_backend(
        &self,
        backend: &str,
        policy: &SettlePolicy,
        now: &str,
    ) -> Result<Vec<Settled>> {
        let now = normalize_time("now", now)?;
        let mut c = self.client().await?;
        let tx = Self::begin(&mut c).await?;
        let sql = format!(
            "SELECT {} FROM jobs WHERE status = $1 AND backend = $2 ORDER BY seq FOR UPDATE",
            rows::JOB_COLS
        );
        let running = rows::all(
            rows::rows(&tx, &sql, &[&JobStatus::Running.as_str(), &backend]).await?,
            rows::job,
        )?;
        let mut settled = Vec::with_capacity(running.len());
        for j in running {
            let job_id = j.id.clone();
            let requeued = settle_locked(&tx, j, policy, &now).await?;
            settled.push(Settled { job_id, requeued });
        }
        self.commit(tx).await?;
        Ok(settled)
    }
}

impl ExecutionStore for PgEngine {
    fn next_execution_id<'a>(&'a self, day: &'a str) -> StoreFuture<'a, String> {
        Box::pin(self.next_id(day))
    }

    fn execution<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<ExecutionRecord>> {
        Box::pin(async move {
            let c = self.client().await?;
            execution_of(&c, id).await
        })
    }

    fn executions_for_job<'a>(&'a self, job_id: &'a str) -> StoreFuture<'a, Vec<ExecutionRecord>> {
        Box::pin(async move {
            let c = self.client().await?;
            executions_of(&c, job_id).await
        })
    }

    fn shot_data<'a>(&'a self, execution_id: &'a str) -> StoreFuture<'a, Vec<ShotDataRecord>> {
        Box::pin(async move {
            let c = self.client().await?;
            let sql = format!(
                "SELECT {SHOT_DATA_COLS} FROM shot_data WHERE execution_id = $1 ORDER BY experiment_index"
            );
            rows::all(
                rows::rows(&c, &sql, &[&execution_id]).await?,
                rows::shot_data,
            )
        })
    }

    fn result<'a>(&'a self, job_id: &'a str) -> StoreFuture<'a, Option<ResultRecord>> {
        Box::pin(async move {
            let c = self.client().await?;
            let row = opt(
                &c,
                "SELECT job_id, execution_id, body, created_at FROM results WHERE job_id = $1",
                &[&job_id],
            )
            .await?;
            Ok(row.map(|r| ResultRecord {
                job_id: r.get(0),
                execution_id: r.get(1),
                body: r.get(2),
                created_at: r.get(3),
            }))
        })
    }

    fn set_execution_progress<'a>(&'a self, id: &'a str, detail: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let c = self.client().await?;
            exec(
                &c,
                "UPDATE executions SET detail = $1 WHERE id = $2 AND ended_at IS NULL",
                &[&detail, &id],
            )
            .await?;
            self.count_commit();
            Ok(())
        })
    }

    fn start_execution<'a>(&'a self, record: &'a ExecutionRecord) -> StoreFuture<'a, bool> {
        Box::pin(self.start(record))
    }

    fn commit_result<'a>(
        &'a self,
        job_id: &'a str,
        execution_id: &'a str,
        shot_rows: &'a [ShotDataRecord],
        body: &'a str,
        now: &'a str,
    ) -> StoreFuture<'a, bool> {
        Box::pin(self.commit_done(job_id, execution_id, shot_rows, body, now))
    }

    fn fail_job<'a>(
        &'a self,
        job_id: &'a str,
        execution_id: Option<&'a str>,
        reason: &'a str,
        now: &'a str,
    ) -> StoreFuture<'a, bool> {
        Box::pin(self.fail(job_id, execution_id, reason, now))
    }

    fn cancel_running<'a>(
        &'a self,
        job_id: &'a str,
        execution_id: &'a str,
        detail: &'a str,
        now: &'a str,
    ) -> StoreFuture<'a, bool> {
        Box::pin(self.cancel(job_id, execution_id, detail, now))
    }

    fn requeue_running<'a>(
        &'a self,
        job_id: &'a str,
        close: Option<ExecutionEnd<'a>>,
        why: &'a str,
        max_attempts: Option<u32>,
        now: &'a str,
    ) -> StoreFuture<'a, Option<JobRecord>> {
        Box::pin(self.requeue(job_id, close, why, max_attempts, now))
    }

    fn settle_running<'a>(
        &'a self,
        job_id: &'a str,
        policy: &'a SettlePolicy,
        now: &'a str,
    ) -> StoreFuture<'a, Option<JobRecord>> {
        Box::pin(self.settle(job_id, policy, now))
    }

    fn settle_running_of_backend<'a>(
        &'a self,
        backend: &'a str,
        policy: &'a SettlePolicy,
        now: &'a str,
    ) -> StoreFuture<'a, Vec<Settled>> {
        Box::pin(self.settle_backend(backend, policy, now))
    }
}
