//! Settling jobs whose execution did not settle them itself: at backend start (a crash, a kill, a restart),
//! after an execution panicked or was killed, after a one_for_all restart. The job's open executions are
//! closed `INTERRUPTED`; the job is re-queued, or ends `ERROR` after `recovery.max_attempts` starts (counted
//! stops only), or at once with `recovery.on_interrupted: fail` (counted stops only). The backend's lock,
//! whose owner is dead, is released.

use shotline_config::{InterruptedPolicy, RecoverySection};
use shotline_store::SettlePolicy;

use super::execution;
use super::BackendArgs;
use crate::context::{roles, Ctx};
use crate::persistence::Db;
use crate::time::utc_now;

/// The store's settle policy for `cause` under the configured recovery rules (`counted`: a fault such as a
/// restart or panic, subject to `max_attempts` and `on_interrupted`, rather than a clean stop: shutdown,
/// pause, estop, always re-queued). The store applies it in one transaction
/// ([`ExecutionStore::settle_running`](shotline_store::ExecutionStore::settle_running)).
pub fn settle_policy(cause: &str, recovery: &RecoverySection, counted: bool) -> SettlePolicy {
    SettlePolicy {
        cause: cause.to_string(),
        counted,
        max_attempts: recovery.max_attempts,
        fail_interrupted: recovery.on_interrupted == InterruptedPolicy::Fail,
    }
}

/// Settles one job (see [`settle_policy`]) and hands a re-queued job back to the scheduler.
pub async fn settle_job(ctx: &Ctx, backend: &str, job_id: &str, cause: &str, counted: bool) {
    let policy = settle_policy(cause, &ctx.config().recovery, counted);
    let jid = job_id.to_string();
    let r = Db::new(ctx)
        .run(move |e| async move { e.settle_running(&jid, &policy, &utc_now()).await })
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
    let policy = settle_policy("interrupted by restart", &args.ctx.config().recovery, true);
    let settled = db
        .run(move |e| async move { e.settle_running_of_backend(&b, &policy, &utc_now()).await })
        .await;
    match settled {
        Ok(jobs) => {
            for settled in jobs {
                let job = settled.job_id;
                tracing::warn!(%backend, %job, requeued = settled.requeued.is_some(), "job found RUNNING at backend start");
                if let Some(j) = settled.requeued {
                    execution::notify_requeued(&args.ctx, &j);
                }
            }
        }
        Err(e) => tracing::error!(%backend, error = %e, "could not recover running jobs"),
    }
    force_release(&args.ctx, &backend).await;
}
