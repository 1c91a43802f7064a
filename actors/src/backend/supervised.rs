//! The execution of a job as a supervised task: a watcher owns its join handle and reports how it ended to
//! the backend actor — normally, by a panic, or killed — so a panicking execution never leaves its backend
//! stuck: the backend settles the job (closed INTERRUPTED, re-queued or ended ERROR per the recovery rules),
//! releases the lock, drives the devices safe and takes the next job.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::execution::{self, ExecEnd, ExecEnv};
use super::BackendMsg;

/// A running execution, as its backend sees it.
#[derive(Clone)]
pub struct Execution {
    /// Sequence number of the execution on this backend (stale reports are recognised by it).
    pub seq: u64,
    /// The job.
    pub job_id: String,
    /// Why it must stop at the next shot boundary (`execution::STOP_*`).
    pub stop: Arc<AtomicU8>,
    abort: AbortHandle,
    ended: watch::Receiver<bool>,
}

impl Execution {
    /// Spawns the execution of `job_id` and its watcher, which casts [`BackendMsg::ExecutionEnded`] to
    /// `backend` when it ends, however it ends.
    pub fn spawn(seq: u64, env: ExecEnv, job_id: String, backend: ActorRef<BackendMsg>) -> Self {
        let stop = Arc::new(AtomicU8::new(execution::STOP_NONE));
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(execution::run(env, job_id.clone(), stop.clone()));
        let abort = task.abort_handle();
        let jid = job_id.clone();
        tokio::spawn(async move {
            let end = match task.await {
                Ok(end) => end,
                Err(e) if e.is_panic() => ExecEnd::Panicked {
                    reason: panic_message(e.into_panic()),
                },
                Err(_) => ExecEnd::Killed,
            };
            tx.send_replace(true);
            let _ = backend.cast(BackendMsg::ExecutionEnded {
                seq,
                job_id: jid,
                end,
            });
        });
        Execution {
            seq,
            job_id,
            stop,
            abort,
            ended: rx,
        }
    }

    /// Asks it to stop at the next shot boundary for `why`, unless a stop was already asked (a cancel or an
    /// earlier stop keeps its reason). Returns whether this request set the reason.
    pub fn request_stop(&self, why: u8) -> bool {
        self.stop
            .compare_exchange(
                execution::STOP_NONE,
                why,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
    }

    /// Whether a stop was asked.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst) != execution::STOP_NONE
    }

    /// Why it was asked to stop.
    pub fn stop_reason(&self) -> u8 {
        self.stop.load(Ordering::SeqCst)
    }

    /// Kills the task (it settles nothing; the backend does).
    pub fn kill(&self) {
        self.abort.abort();
    }

    /// Waits up to `timeout` for the task to end; whether it did.
    pub async fn wait_ended(&self, timeout: Duration) -> bool {
        let mut rx = self.ended.clone();
        let ended = matches!(
            tokio::time::timeout(timeout, rx.wait_for(|e| *e)).await,
            Ok(Ok(_))
        );
        ended
    }
}

/// Spawns `work`, a step the backend waits for (settling a job, a restart), and once it ended — normally or
/// by a panic — spawns `then` (which tells the backend): a panicking step is logged and never leaves its
/// backend waiting for good.
pub fn spawn_step<W, T>(backend: String, step: &'static str, work: W, then: T)
where
    W: std::future::Future<Output = ()> + Send + 'static,
    T: std::future::Future<Output = ()> + Send + 'static,
{
    let task = tokio::spawn(work);
    tokio::spawn(async move {
        if let Err(e) = task.await {
            let reason = if e.is_panic() {
                panic_message(e.into_panic())
            } else {
                "cancelled".into()
            };
            tracing::error!(%backend, step, %reason, "a backend step failed; the backend goes on");
        }
        then.await;
    });
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic without a message".into()
    }
}

#[cfg(test)]
mod step_tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_step_still_tells_the_backend() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        spawn_step(
            "b".into(),
            "settle",
            async { panic!("injected: the step panics") },
            async move {
                let _ = tx.send(());
            },
        );
        tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .expect("the backend was never told")
            .unwrap();
    }
}
