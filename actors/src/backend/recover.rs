//! Settling jobs whose execution did not settle them itself: at backend start (a crash, a kill, a restart),
//! after an execution panicked or was killed, after a one_for_all restart. The job's open executions are
//! closed `INTERRUPTED`; the job is re-queued, or ends `ERROR` after `recovery.max_attempts` starts (counted
//! stops only), or at once with `recovery.on_interrupted: fail` (counted stops only). The backend's lease,
//! whose holder is dead, is released; start-up recovery settles while holding the lease (see `lease.rs`).

use shotline_config::{InterruptedPolicy, RecoverySection};
use shotline_store::SettlePolicy;

use super::execution;
use super::lease;
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
    // Shared store: a lease lost meanwhile may have been taken over, and the job with it.
    if ctx.shared_store() && lease::held_elsewhere(ctx, backend).await {
        tracing::warn!(%backend, job = %job_id, "another server holds the backend's lease; the job is left to it");
        return;
    }
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

/// Releases the backend's lease if its holder is dead: a lease of this server (this instance, whose execution
/// is gone, or a previous process on the same data dir), or on SQLite a lease of any instance (one process
/// per data dir). On a shared store another server's lease is left to expire.
pub async fn force_release(ctx: &Ctx, backend: &str) {
    let Some(lm) = ctx.lookup::<crate::lock_manager::LockMsg>(roles::LOCK_MANAGER) else {
        tracing::error!(%backend, "the lock manager is restarting; the backend lock is released by its recovery");
        return;
    };
    let resource = execution::lock_resource(backend);
    let any_instance = !ctx.shared_store();
    let r = lm
        .call(
            |reply| crate::lock_manager::LockMsg::ForceRelease {
                resource,
                any_instance,
                reply,
            },
            Some(ctx.call_timeout()),
        )
        .await;
    if let Ok(ractor::rpc::CallResult::Success(Some(owner))) = r {
        tracing::warn!(%backend, %owner, "released the lock of a dead execution");
    }
}

/// Before a backend (re)starts: no execution of it is alive in this instance, so its lease, if this
/// instance's (or, on SQLite, anyone's), is released; then, holding the lease, every job of the backend still
/// RUNNING is settled as "interrupted by restart" (counted). On a shared store a live lease of another
/// server is honoured: its jobs are its own, and if that server died they are settled by whoever takes the
/// lease after it expired (an execution, or the idle sweep).
pub async fn recover(args: &BackendArgs) {
    let ctx = &args.ctx;
    let backend = args.section.name.clone();
    force_release(ctx, &backend).await;
    const CAUSE: &str = "interrupted by restart";
    match lease::settle_under_lease(ctx, &backend, CAUSE).await {
        Ok(_) => {}
        Err(e) if !ctx.shared_store() => {
            // SQLite: no other process, and no execution of this backend alive: settling is safe.
            tracing::warn!(%backend, error = %e, "recovery without the lease");
            if let Err(e) = lease::settle_backend(ctx, &backend, CAUSE).await {
                tracing::error!(%backend, error = %e, "could not recover running jobs");
            }
        }
        Err(e) => {
            tracing::error!(%backend, error = %e, "could not recover running jobs; the idle sweep retries")
        }
    }
}
