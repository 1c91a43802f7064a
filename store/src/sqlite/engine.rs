//! [`SqliteEngine`]: the store interface on SQLite. Every trait method is one closure queued to the
//! single writer thread ([`DbThread`]): it runs inside the next group-commit batch (its own savepoint) and
//! its future resolves only after the batch's `COMMIT` returned (WAL, `synchronous=FULL`).

use std::future::ready;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::api::*;
use crate::marks::AckMarks;
use crate::records::JobFilter;
use crate::records::{
    CalibrationRecord, ExecutionRecord, JobEvent, JobRecord, LockRecord, NewJob, ResultRecord,
    ShotDataRecord, UserRecord,
};
use crate::{DbThread, Store, StoreError};

/// The SQLite engine: owns the writer thread of one database file.
pub struct SqliteEngine {
    path: PathBuf,
    thread: Mutex<Option<DbThread>>,
}

impl std::fmt::Debug for SqliteEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteEngine")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteEngine {
    /// Opens the database at `path` on a new writer thread (blocking: call it off async workers).
    pub fn open(path: &Path, queue_capacity: usize) -> Result<SqliteEngine, StoreError> {
        let thread = DbThread::spawn(path, queue_capacity)?;
        Ok(SqliteEngine {
            path: path.to_path_buf(),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with_thread<R>(&self, f: impl FnOnce(&DbThread) -> R) -> Option<R> {
        let guard = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map(f)
    }

    /// Ops queued and not yet taken by the writer thread.
    pub fn queue_len(&self) -> usize {
        self.with_thread(DbThread::queue_len).unwrap_or(0)
    }

    /// Queues `f` now (it runs in the next batch) and returns the future of its committed value.
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'static, T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.with_thread(|t| t.enqueue_with(f, tx)).is_none() {
            return Box::pin(ready(Err(StoreError::Closed)));
        }
        Box::pin(async move { rx.await.map_err(|_| StoreError::Closed)? })
    }
}

fn own(s: &str) -> String {
    s.to_owned()
}

fn own_opt(s: Option<&str>) -> Option<String> {
    s.map(str::to_owned)
}

impl UserStore for SqliteEngine {
    fn add_user<'a>(
        &'a self,
        name: &'a str,
        email: Option<&'a str>,
        password_hash: &'a str,
        is_admin: bool,
        now: &'a str,
    ) -> StoreFuture<'a, UserRecord> {
        let (name, email, hash, now) = (own(name), own_opt(email), own(password_hash), own(now));
        self.call(move |s| s.add_user(&name, email.as_deref(), &hash, is_admin, &now))
    }

    fn user_by_name<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<UserRecord>> {
        let name = own(name);
        self.call(move |s| s.user_by_name(&name))
    }

    fn user_by_id(&self, id: i64) -> StoreFuture<'_, Option<UserRecord>> {
        self.call(move |s| s.user_by_id(id))
    }

    fn list_users(&self) -> StoreFuture<'_, Vec<UserRecord>> {
        self.call(|s| s.list_users())
    }

    fn set_user_disabled<'a>(&'a self, name: &'a str, disabled: bool) -> StoreFuture<'a, ()> {
        let name = own(name);
        self.call(move |s| s.set_user_disabled(&name, disabled))
    }

    fn set_password_hash<'a>(
        &'a self,
        name: &'a str,
        password_hash: &'a str,
    ) -> StoreFuture<'a, ()> {
        let (name, hash) = (own(name), own(password_hash));
        self.call(move |s| s.set_password_hash(&name, &hash))
    }

    fn delete_user<'a>(&'a self, name: &'a str) -> StoreFuture<'a, ()> {
        let name = own(name);
        self.call(move |s| s.delete_user(&name))
    }

    fn insert_token<'a>(
        &'a self,
        token_hash: &'a str,
        user_id: i64,
        now: &'a str,
        expires_at: &'a str,
    ) -> StoreFuture<'a, ()> {
        let (hash, now, exp) = (own(token_hash), own(now), own(expires_at));
        self.call(move |s| s.insert_token(&hash, user_id, &now, &exp))
    }

    fn user_for_token<'a>(
        &'a self,
        token_hash: &'a str,
        now: &'a str,
    ) -> StoreFuture<'a, Option<UserRecord>> {
        let (hash, now) = (own(token_hash), own(now));
        self.call(move |s| s.user_for_token(&hash, &now))
    }

    fn revoke_token<'a>(&'a self, token_hash: &'a str) -> StoreFuture<'a, bool> {
        let hash = own(token_hash);
        self.call(move |s| s.revoke_token(&hash))
    }
}

impl JobStore for SqliteEngine {
    fn admit_job(&self, new: NewJob, max_active: u64) -> StoreFuture<'_, Admission> {
        self.call(move |s| s.admit_job(&new, max_active))
    }

    fn job<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<JobRecord>> {
        let id = own(id);
        self.call(move |s| s.job(&id))
    }

    fn list_jobs<'a>(&'a self, filter: &'a JobFilter) -> StoreFuture<'a, Vec<(JobRecord, String)>> {
        let filter = filter.clone();
        self.call(move |s| s.list_jobs(&filter))
    }

    fn job_events<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Vec<JobEvent>> {
        let id = own(id);
        self.call(move |s| s.job_events(&id))
    }

    fn jobs_with_status(&self, status: JobStatus) -> StoreFuture<'_, Vec<JobRecord>> {
        self.call(move |s| s.jobs_with_status(status.as_str()))
    }

    fn count_jobs<'a>(&'a self, backend: &'a str, status: JobStatus) -> StoreFuture<'a, u64> {
        let backend = own(backend);
        self.call(move |s| s.count_jobs(&backend, status.as_str()))
    }

    fn count_active_jobs_of_user(&self, user_id: i64) -> StoreFuture<'_, u64> {
        self.call(move |s| s.count_active_jobs_of_user(user_id))
    }

    fn cancel_queued<'a>(
        &'a self,
        id: &'a str,
        detail: &'a str,
        now: &'a str,
    ) -> StoreFuture<'a, Option<JobRecord>> {
        let (id, detail, now) = (own(id), own(detail), own(now));
        self.call(move |s| s.cancel_queued(&id, &detail, &now))
    }
}

impl ExecutionStore for SqliteEngine {
    fn next_execution_id<'a>(&'a self, day: &'a str) -> StoreFuture<'a, String> {
        let day = own(day);
        self.call(move |s| s.next_execution_id(&day))
    }

    fn execution<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<ExecutionRecord>> {
        let id = own(id);
        self.call(move |s| s.execution(&id))
    }

    fn executions_for_job<'a>(&'a self, job_id: &'a str) -> StoreFuture<'a, Vec<ExecutionRecord>> {
        let id = own(job_id);
        self.call(move |s| s.executions_for_job(&id))
    }

    fn shot_data<'a>(&'a self, execution_id: &'a str) -> StoreFuture<'a, Vec<ShotDataRecord>> {
        let id = own(execution_id);
        self.call(move |s| s.shot_data(&id))
    }

    fn result<'a>(&'a self, job_id: &'a str) -> StoreFuture<'a, Option<ResultRecord>> {
        let id = own(job_id);
        self.call(move |s| s.result(&id))
    }

    fn set_execution_progress<'a>(&'a self, id: &'a str, detail: &'a str) -> StoreFuture<'a, ()> {
        let (id, detail) = (own(id), own(detail));
        self.call(move |s| s.set_execution_progress(&id, &detail))
    }

    fn start_execution<'a>(&'a self, record: &'a ExecutionRecord) -> StoreFuture<'a, bool> {
        let record = record.clone();
        self.call(move |s| s.start_execution(&record))
    }

    fn commit_result<'a>(
        &'a self,
        job_id: &'a str,
        execution_id: &'a str,
        shot_rows: &'a [ShotDataRecord],
        body: &'a str,
        now: &'a str,
    ) -> StoreFuture<'a, bool> {
        let (jid, xid, rows, body, now) = (
            own(job_id),
            own(execution_id),
            shot_rows.to_vec(),
            own(body),
            own(now),
        );
        self.call(move |s| s.commit_result(&jid, &xid, &rows, &body, &now))
    }

    fn fail_job<'a>(
        &'a self,
        job_id: &'a str,
        execution_id: Option<&'a str>,
        reason: &'a str,
        now: &'a str,
    ) -> StoreFuture<'a, bool> {
        let (jid, xid, reason, now) = (own(job_id), own_opt(execution_id), own(reason), own(now));
        self.call(move |s| s.fail_job(&jid, xid.as_deref(), &reason, &now))
    }

    fn cancel_running<'a>(
        &'a self,
        job_id: &'a str,
        execution_id: &'a str,
        detail: &'a str,
        now: &'a str,
    ) -> StoreFuture<'a, bool> {
        let (jid, xid, detail, now) = (own(job_id), own(execution_id), own(detail), own(now));
        self.call(move |s| s.cancel_running(&jid, &xid, &detail, &now))
    }

    fn requeue_running<'a>(
        &'a self,
        job_id: &'a str,
        close: Option<ExecutionEnd<'a>>,
        why: &'a str,
        max_attempts: Option<u32>,
        now: &'a str,
    ) -> StoreFuture<'a, Option<JobRecord>> {
        let (jid, why, now) = (own(job_id), own(why), own(now));
        let close = close.map(|c| (own(c.id), c.outcome, own(c.detail)));
        self.call(move |s| {
            let end = close.as_ref().map(|(id, outcome, detail)| ExecutionEnd {
                id,
                outcome: *outcome,
                detail,
            });
            s.requeue_running(&jid, end.as_ref(), &why, max_attempts, &now)
        })
    }

    fn settle_running<'a>(
        &'a self,
        job_id: &'a str,
        policy: &'a SettlePolicy,
        now: &'a str,
    ) -> StoreFuture<'a, Option<JobRecord>> {
        let (jid, policy, now) = (own(job_id), policy.clone(), own(now));
        self.call(move |s| s.settle_running(&jid, &policy, &now))
    }

    fn settle_running_of_backend<'a>(
        &'a self,
        backend: &'a str,
        policy: &'a SettlePolicy,
        now: &'a str,
    ) -> StoreFuture<'a, Vec<Settled>> {
        let (backend, policy, now) = (own(backend), policy.clone(), own(now));
        self.call(move |s| s.settle_running_of_backend(&backend, &policy, &now))
    }
}

impl LockStore for SqliteEngine {
    fn locks(&self) -> StoreFuture<'_, Vec<LockRecord>> {
        self.call(|s| s.locks())
    }

    fn acquire_lock<'a>(
        &'a self,
        resource: &'a str,
        owner: &'a str,
        now: &'a str,
        expires_at: Option<&'a str>,
    ) -> StoreFuture<'a, LockGrant> {
        let (r, o, now, exp) = (own(resource), own(owner), own(now), own_opt(expires_at));
        self.call(move |s| s.acquire_lock(&r, &o, &now, exp.as_deref()))
    }

    fn renew_lock<'a>(
        &'a self,
        resource: &'a str,
        owner: &'a str,
        expires_at: Option<&'a str>,
    ) -> StoreFuture<'a, bool> {
        let (r, o, exp) = (own(resource), own(owner), own_opt(expires_at));
        self.call(move |s| s.renew_lock(&r, &o, exp.as_deref()))
    }

    fn release_lock<'a>(&'a self, resource: &'a str, owner: &'a str) -> StoreFuture<'a, bool> {
        let (r, o) = (own(resource), own(owner));
        self.call(move |s| s.delete_lock(&r, &o))
    }

    fn force_release_lock<'a>(&'a self, resource: &'a str) -> StoreFuture<'a, Option<LockRecord>> {
        let r = own(resource);
        self.call(move |s| s.force_release_lock(&r))
    }
}

impl CalibrationStore for SqliteEngine {
    fn insert_calibration<'a>(&'a self, cal: &'a CalibrationRecord) -> StoreFuture<'a, i64> {
        let cal = cal.clone();
        self.call(move |s| s.insert_calibration(&cal))
    }

    fn calibrations<'a>(&'a self, backend: &'a str) -> StoreFuture<'a, Vec<CalibrationRecord>> {
        let b = own(backend);
        self.call(move |s| s.calibrations(&b))
    }
}

impl BackendStore for SqliteEngine {
    fn record_backend_config<'a>(
        &'a self,
        backend: &'a str,
        hash: &'a str,
        body: &'a str,
        now: &'a str,
    ) -> StoreFuture<'a, bool> {
        let (b, h, body, now) = (own(backend), own(hash), own(body), own(now));
        self.call(move |s| s.record_backend_config(&b, &h, &body, &now))
    }

    fn backend_config<'a>(
        &'a self,
        backend: &'a str,
        hash: &'a str,
    ) -> StoreFuture<'a, Option<String>> {
        let (b, h) = (own(backend), own(hash));
        self.call(move |s| s.backend_config(&b, &h))
    }

    fn set_backend_pause<'a>(
        &'a self,
        backend: &'a str,
        pause: Option<&'a BackendPause>,
    ) -> StoreFuture<'a, ()> {
        let (b, pause) = (own(backend), pause.cloned());
        self.call(move |s| {
            s.set_backend_pause(
                &b,
                pause
                    .as_ref()
                    .map(|p| (p.reason.as_str(), p.paused_at.as_str())),
            )
        })
    }

    fn backend_pause<'a>(&'a self, backend: &'a str) -> StoreFuture<'a, Option<BackendPause>> {
        let b = own(backend);
        self.call(move |s| {
            Ok(s.backend_pause(&b)?
                .map(|(reason, paused_at)| BackendPause { reason, paused_at }))
        })
    }
}

impl Engine for SqliteEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Sqlite
    }

    fn describe(&self) -> String {
        format!("sqlite {}", self.path.display())
    }

    fn schema_version(&self) -> StoreFuture<'_, u32> {
        self.call(|s| s.schema_version())
    }

    fn ack_marks(&self) -> StoreFuture<'_, AckMarks> {
        self.call(|s| s.ack_marks())
    }

    fn stats(&self) -> EngineStats {
        let (commits, ops) = self
            .with_thread(DbThread::group_commit_stats)
            .unwrap_or((0, 0));
        EngineStats { commits, ops }
    }

    fn set_commit_delay(&self, delay: Duration) {
        self.with_thread(|t| t.set_commit_delay(delay));
    }

    fn shutdown(&self) -> StoreFuture<'_, ()> {
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        Box::pin(async move {
            match thread {
                Some(t) => tokio::task::spawn_blocking(move || t.shutdown())
                    .await
                    .map_err(|e| StoreError::Panicked(format!("store shutdown: {e}")))?,
                None => Ok(()),
            }
        })
    }
}
