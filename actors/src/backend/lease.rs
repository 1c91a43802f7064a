//! The backend lock as a lease: its renewal while an execution runs, and settling the jobs of a backend
//! whose execution is gone while holding the lease (so a live execution of another server sharing the
//! database is never touched).
//!
//! Invariant: only the holder of a backend's lease runs, starts or settles that backend's jobs. A job
//! `RUNNING` on a backend whose lease is free, expired, or held by a dead holder of this instance is an
//! orphan, and the next holder settles it (re-queued or `ERROR` per `recovery`) before anything else.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use shotline_hal::shot_clock::ClockControl;

use super::execution::{self, STOP_LEASE, STOP_NONE};
use super::recover::settle_policy;
use crate::context::{roles, Ctx};
use crate::lock_manager::{LockError, LockMsg};
use crate::persistence::Db;
use crate::time::utc_now;

/// The holder name of a lease taken to settle a backend's orphaned jobs.
pub const RECOVERY_HOLDER: &str = "recovery";

/// One call to the lock manager (looked up again for a while if it is restarting).
pub async fn call<F>(ctx: &Ctx, make: F) -> Result<(), LockError>
where
    F: Fn(ractor::RpcReplyPort<Result<(), LockError>>) -> LockMsg,
{
    let deadline = Instant::now() + ctx.call_timeout();
    loop {
        if let Some(lm) = ctx.lookup::<LockMsg>(roles::LOCK_MANAGER) {
            match lm.call(&make, Some(ctx.call_timeout())).await {
                Ok(ractor::rpc::CallResult::Success(r)) => return r,
                Ok(ractor::rpc::CallResult::Timeout) => {
                    return Err(LockError::Store(
                        "the lock manager did not answer in time".into(),
                    ))
                }
                Ok(ractor::rpc::CallResult::SenderError) | Err(_) => {}
            }
        }
        if Instant::now() >= deadline {
            return Err(LockError::Store("the lock manager is not running".into()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Renews an execution's lease every third of `recovery.lock_lease_ms` until dropped. When the lease is
/// lost (taken over, force-released) or could not be renewed for two thirds of it (the store failing), it
/// sets the execution's stop flag to [`STOP_LEASE`] and aborts the shot clock: the execution stops at its
/// next shot boundary and its devices go to their safe state; it never plays on without the lease.
pub struct Renewal(tokio::task::JoinHandle<()>);

impl Renewal {
    /// Starts renewing `resource` for `holder`.
    pub fn start(
        ctx: &Ctx,
        resource: &str,
        holder: &str,
        stop: Arc<AtomicU8>,
        clock: Arc<Mutex<ClockControl>>,
    ) -> Self {
        let (ctx, resource, holder) = (ctx.clone(), resource.to_string(), holder.to_string());
        Self(tokio::spawn(async move {
            let lease = ctx.lock_lease();
            let every = lease / 3;
            let mut renewed = Instant::now();
            loop {
                tokio::time::sleep(every).await;
                let (r, h) = (resource.clone(), holder.clone());
                let result = call(&ctx, |reply| LockMsg::Renew {
                    resource: r.clone(),
                    owner: h.clone(),
                    reply,
                })
                .await;
                let why = match result {
                    Ok(()) => {
                        renewed = Instant::now();
                        continue;
                    }
                    Err(e @ LockError::Lost { .. }) | Err(e @ LockError::NotOwner { .. }) => {
                        e.to_string()
                    }
                    Err(e) if renewed.elapsed() + every >= lease => {
                        format!("the lease could not be renewed before it expires: {e}")
                    }
                    Err(e) => {
                        tracing::warn!(%resource, %holder, error = %e, "lease renewal failed; retrying");
                        continue;
                    }
                };
                tracing::error!(%resource, %holder, %why, "lease lost: stopping the execution at the next shot boundary");
                let _ = stop.compare_exchange(
                    STOP_NONE,
                    STOP_LEASE,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
                // The clock's mutex is held only briefly (a run being handed over); the execution also
                // checks the stop flag right after handing a run over.
                for _ in 0..20 {
                    if let Some(c) = clock.try_lock_for(Duration::from_millis(50)) {
                        c.abort();
                        break;
                    }
                }
                return;
            }
        }))
    }
}

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Settles every job of `backend` still `RUNNING` (counted, as `cause`) and hands the re-queued ones to the
/// scheduler. The caller holds the backend's lease (or, SQLite only, knows no execution of it is alive).
pub async fn settle_backend(ctx: &Ctx, backend: &str, cause: &str) -> Result<usize, String> {
    let policy = settle_policy(cause, &ctx.config().recovery, true);
    let b = backend.to_string();
    let settled = Db::new(ctx)
        .run(move |e| async move { e.settle_running_of_backend(&b, &policy, &utc_now()).await })
        .await
        .map_err(|e| e.to_string())?;
    let n = settled.len();
    for s in settled {
        let job = s.job_id;
        tracing::warn!(%backend, %job, %cause, requeued = s.requeued.is_some(), "job found RUNNING without a live execution");
        if let Some(j) = s.requeued {
            execution::notify_requeued(ctx, &j);
        }
    }
    Ok(n)
}

/// Takes the backend's lease as [`RECOVERY_HOLDER`], settles its orphaned jobs ([`settle_backend`]) and
/// releases it. `Ok(None)`: another holder has an unexpired lease (its jobs are its own), nothing done.
pub async fn settle_under_lease(
    ctx: &Ctx,
    backend: &str,
    cause: &str,
) -> Result<Option<usize>, String> {
    let resource = execution::lock_resource(backend);
    let take = call(ctx, |reply| LockMsg::Acquire {
        resource: resource.clone(),
        owner: RECOVERY_HOLDER.into(),
        reply,
    })
    .await;
    match take {
        Ok(()) => {}
        Err(LockError::Held { owner, .. }) => {
            tracing::info!(%backend, %owner, "backend lease held by a live execution; its jobs are left to it");
            return Ok(None);
        }
        Err(e) => return Err(e.to_string()),
    }
    let settled = settle_backend(ctx, backend, cause).await;
    if let Err(e) = call(ctx, |reply| LockMsg::Release {
        resource: resource.clone(),
        owner: RECOVERY_HOLDER.into(),
        reply,
    })
    .await
    {
        tracing::error!(%backend, error = %e, "could not release the recovery lease; it expires");
    }
    settled.map(Some)
}

/// Whether `backend` may have orphaned jobs another server left behind: a job of it is `RUNNING` while its
/// lease is free or expired. Cheap (two reads); used by the periodic sweep of servers on a shared store.
pub async fn orphans_possible(ctx: &Ctx, backend: &str) -> Result<bool, String> {
    let db = Db::new(ctx);
    let running = db
        .run(|e| async move {
            e.jobs_with_status(shotline_protocol::JobStatus::Running)
                .await
        })
        .await
        .map_err(|e| e.to_string())?;
    if !running.iter().any(|j| j.backend == backend) {
        return Ok(false);
    }
    let resource = execution::lock_resource(backend);
    let locks = db
        .run(|e| async move { e.locks().await })
        .await
        .map_err(|e| e.to_string())?;
    let now = utc_now();
    Ok(match locks.iter().find(|l| l.resource == resource) {
        None => true,
        Some(l) => l.expires_at.as_deref().is_some_and(|t| t <= now.as_str()),
    })
}

/// Whether another server holds an unexpired lease on `backend` (shared store): a job of this server's dead
/// execution must then be left to that server, which took the lease over and settles it itself.
pub async fn held_elsewhere(ctx: &Ctx, backend: &str) -> bool {
    let resource = execution::lock_resource(backend);
    let locks = match Db::new(ctx).run(|e| async move { e.locks().await }).await {
        Ok(l) => l,
        Err(_) => return false,
    };
    let now = utc_now();
    locks.iter().any(|l| {
        l.resource == resource
            && !l.owner.starts_with(ctx.server_prefix())
            && l.expires_at.as_deref().is_none_or(|t| t > now.as_str())
    })
}
