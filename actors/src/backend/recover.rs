//! Settling jobs whose execution did not settle them itself: at backend start (a crash, a kill, a restart),
//! after an execution panicked or was killed, after a one_for_all restart. The job's open executions are
//! closed `INTERRUPTED`; the job is re-queued, or ends `ERROR` after `recovery.max_attempts` starts (counted
//! stops only), or at once with `recovery.on_interrupted: fail` (counted stops only). The backend's lock,
//! whose owner is dead, is released.

use shotline_config::{InterruptedPolicy, RecoverySection};
use shotline_protocol::JobStatus;
use shotline_store::{JobRecord, Store, StoreError};

use super::execution::{self, job_status, ExecOutcome};
use super::BackendArgs;
use crate::context::{roles, Ctx};
use crate::persistence::Db;

/// Store side: settles `job` if it is still `RUNNING`. `cause` says what interrupted it (the shot it was at
/// is appended); `counted`: a fault (restart, panic), subject to `max_attempts` and `on_interrupted`, rather
/// than a clean stop (shutdown, pause, estop: always re-queued). Returns the job if it was re-queued.
pub fn settle_running_job(
    s: &Store,
    job_id: &str,
    cause: &str,
    recovery: &RecoverySection,
    counted: bool,
) -> Result<Option<JobRecord>, StoreError> {
    match s.job(job_id)? {
        Some(j) if job_status(&j) == Some(JobStatus::Running) => {}
        _ => return Ok(None),
    }
    // Where the job was: the progress its last execution recorded ("shot K of N").
    let open: Vec<_> = s
        .executions_for_job(job_id)?
        .into_iter()
        .filter(|e| e.ended_at.is_none())
        .collect();
    let at = open
        .iter()
        .filter_map(|e| e.detail.clone())
        .next_back()
        .unwrap_or_else(|| "an unknown shot".into());
    let why = format!("{cause} at {at}");
    let now = crate::time::utc_now();
    for x in &open {
        s.finish_execution(&x.id, &now, ExecOutcome::Interrupted.as_str(), Some(&why))?;
    }
    if counted && recovery.on_interrupted == InterruptedPolicy::Fail {
        s.set_job_status(
            job_id,
            JobStatus::Error.as_str(),
            Some("failed"),
            Some(&why),
            &now,
        )?;
        return Ok(None);
    }
    execution::requeue_in_store(
        s,
        job_id,
        None,
        &format!("{why}; re-queued"),
        counted.then_some(recovery.max_attempts),
    )
}

/// Settles one job (see [`settle_running_job`]) and hands a re-queued job back to the scheduler.
pub async fn settle_job(ctx: &Ctx, backend: &str, job_id: &str, cause: &str, counted: bool) {
    let recovery = ctx.config().recovery.clone();
    let (jid, c) = (job_id.to_string(), cause.to_string());
    let r = Db::new(ctx)
        .run(move |s| settle_running_job(s, &jid, &c, &recovery, counted))
        .await;
    match r {
        Ok(Some(j)) => {
            tracing::warn!(%backend, job = %job_id, %cause, "job re-queued");
            execution::notify_requeued(ctx, &j);
        }
        Ok(None) => {}
        Err(e) => tracing::error!(%backend, job = %job_id, error = %e, "could not settle the job"),
    }
}

/// Releases the backend's lock whoever holds it (only when no execution of the backend is alive).
pub async fn force_release(ctx: &Ctx, backend: &str) {
    let Some(lm) = ctx.lookup::<crate::lock_manager::LockMsg>(roles::LOCK_MANAGER) else {
        tracing::error!(%backend, "the lock manager is restarting; the backend lock is released by its recovery");
        return;
    };
    let resource = execution::lock_resource(backend);
    let r = lm
        .call(
            |reply| crate::lock_manager::LockMsg::ForceRelease { resource, reply },
            Some(ctx.call_timeout()),
        )
        .await;
    if let Ok(ractor::rpc::CallResult::Success(Some(owner))) = r {
        tracing::warn!(%backend, %owner, "released the lock of a dead execution");
    }
}

/// Before a backend (re)starts: no job of it can be running, so every job of this backend still RUNNING
/// (from a previous process, or from this backend before it failed) is settled as "interrupted by restart"
/// (counted), and the backend's lock, whose owner is dead, is released (and logged).
pub async fn recover(args: &BackendArgs) {
    let db = Db::new(&args.ctx);
    let backend = args.section.name.clone();
    let b = backend.clone();
    let recovery = args.ctx.config().recovery.clone();
    let settled = db
        .run(move |s| {
            let mut n = Vec::new();
            for j in s.jobs_with_status(JobStatus::Running.as_str())? {
                if j.backend != b {
                    continue;
                }
                let again =
                    settle_running_job(s, &j.id, "interrupted by restart", &recovery, true)?;
                n.push((j.id, again));
            }
            Ok(n)
        })
        .await;
    match settled {
        Ok(jobs) => {
            for (job, again) in jobs {
                tracing::warn!(%backend, %job, requeued = again.is_some(), "job found RUNNING at backend start");
                if let Some(j) = again {
                    execution::notify_requeued(&args.ctx, &j);
                }
            }
        }
        Err(e) => tracing::error!(%backend, error = %e, "could not recover running jobs"),
    }
    force_release(&args.ctx, &backend).await;
}
