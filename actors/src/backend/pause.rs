//! A backend's pause is durable: an operator's pause, an emergency stop or a device fault with
//! `device_faults.pause_backend` is recorded in the store (`backend_pauses`), so a restart of the server
//! does not silently resume a queue that someone stopped on purpose. Only `resume_backend` lifts it.

use super::BackendArgs;
use crate::persistence::Db;

/// Records that the backend is paused for `reason`, or (`None`) that it was resumed.
pub async fn persist(args: &BackendArgs, reason: Option<String>) {
    let backend = args.section.name.clone();
    let at = crate::time::utc_now();
    let b = backend.clone();
    let pause = reason.map(|reason| shotline_store::BackendPause {
        reason,
        paused_at: at,
    });
    let r = Db::new(&args.ctx)
        .run(move |e| async move { e.set_backend_pause(&b, pause.as_ref()).await })
        .await;
    if let Err(e) = r {
        tracing::error!(%backend, error = %e, "could not record the pause in the store: it will not survive a restart");
    }
}

/// The pause recorded for this backend (reason, since when), if any.
pub async fn stored(args: &BackendArgs) -> Option<(String, String)> {
    let backend = args.section.name.clone();
    let b = backend.clone();
    match Db::new(&args.ctx)
        .run(move |e| async move { e.backend_pause(&b).await })
        .await
    {
        Ok(p) => p.map(|p| (p.reason, p.paused_at)),
        Err(e) => {
            tracing::error!(%backend, error = %e, "could not read the recorded pause; starting unpaused");
            None
        }
    }
}

/// Writes pause changes from background tasks (the backend actor never waits for the store) in the order the
/// backend made them: each change has a generation, and a change older than the last one written is dropped.
#[derive(Default)]
pub struct PauseWriter {
    issued: std::sync::atomic::AtomicU64,
    written: tokio::sync::Mutex<u64>,
}

impl PauseWriter {
    /// The generation of a new change (call in the actor, in order).
    pub fn next(&self) -> u64 {
        self.issued
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1
    }

    /// Writes change `generation` unless a newer one was written already.
    pub async fn write(&self, args: &BackendArgs, generation: u64, reason: Option<String>) {
        let mut written = self.written.lock().await;
        if *written > generation {
            return;
        }
        persist(args, reason).await;
        *written = generation;
    }

    /// Waits for the write in progress, if any.
    pub async fn flush(&self) {
        let _ = self.written.lock().await;
    }
}
