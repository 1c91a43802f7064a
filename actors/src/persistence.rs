//! The persistence actor: the single writer to the store. It owns the store's writer thread (SQLite,
//! group commit, fsync on its own thread, never on a tokio worker) and forwards work to it. If the actor is
//! restarted, the old thread drains and closes and a new one reopens the database.
//!
//! Every other part of the runtime talks to it through [`Db`], which looks the actor up by name on each call
//! (so a restarted actor is found again) and bounds every call with the configured timeout.

use std::path::PathBuf;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use shotline_store::{DbThread, Store, StoreError};
use tokio::sync::oneshot;

use crate::context::{roles, Ctx};
use crate::error::ServiceError;

/// Work for the store thread: a closure that enqueues itself.
pub type DbWork = Box<dyn FnOnce(&DbThread) + Send>;

/// Messages of the persistence actor.
pub enum PersistenceMsg {
    /// Run some work on the store thread.
    Run(DbWork),
    /// `(batches, ops)` committed so far by the current thread.
    Stats(ractor::RpcReplyPort<(u64, u64)>),
    /// Fault injection: hold every commit this long.
    SetCommitDelay(Duration),
    /// Fault injection: panic inside the handler (tests and drills).
    InjectPanic,
}

/// Start arguments.
pub struct PersistenceArgs {
    /// The database file.
    pub path: PathBuf,
    /// Queue capacity of the writer thread.
    pub queue_capacity: usize,
}

/// The persistence actor.
pub struct PersistenceActor;

impl Actor for PersistenceActor {
    type Msg = PersistenceMsg;
    type State = Option<DbThread>;
    type Arguments = PersistenceArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: PersistenceArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let thread = tokio::task::spawn_blocking(move || {
            DbThread::spawn(&args.path, args.queue_capacity.max(1))
        })
        .await??;
        Ok(Some(thread))
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: PersistenceMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PersistenceMsg::InjectPanic => {
                panic!("injected fault: PersistenceMsg panics on request")
            }
            PersistenceMsg::Run(work) => match state {
                Some(t) => work(t),
                None => return Err("the store thread is closed".into()),
            },
            PersistenceMsg::SetCommitDelay(d) => {
                if let Some(t) = state {
                    t.set_commit_delay(d);
                }
            }
            PersistenceMsg::Stats(reply) => {
                let stats = state
                    .as_ref()
                    .map(|t| t.group_commit_stats())
                    .unwrap_or((0, 0));
                let _ = reply.send(stats);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(t) = state.take() {
            tokio::task::spawn_blocking(move || t.shutdown()).await??;
        }
        Ok(())
    }
}

/// The way into the store for every other part of the runtime.
#[derive(Clone, Debug)]
pub struct Db {
    ctx: Ctx,
}

impl Db {
    /// A facade for the runtime of `ctx`.
    pub fn new(ctx: &Ctx) -> Self {
        Self { ctx: ctx.clone() }
    }

    /// Runs `f` inside the next group-commit batch and returns its value once the batch has committed
    /// (durably: `synchronous=FULL`). A failed `f` is rolled back alone.
    pub async fn run<T, F>(&self, f: F) -> Result<T, ServiceError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let timeout = self.ctx.call_timeout();
        let (tx, rx) = oneshot::channel::<Result<T, StoreError>>();
        let work: DbWork = Box::new(move |thread: &DbThread| thread.enqueue_with(f, tx));
        let mut work = Some(work);
        // The actor may be restarting: look it up again for a short while.
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(actor) = self.ctx.lookup::<PersistenceMsg>(roles::PERSISTENCE) {
                if let Some(w) = work.take() {
                    match actor.cast(PersistenceMsg::Run(w)) {
                        Ok(()) => break,
                        Err(ractor::MessagingErr::SendErr(PersistenceMsg::Run(w))) => {
                            work = Some(w)
                        }
                        Err(_) => return Err(ServiceError::unavailable("the store is restarting")),
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ServiceError::unavailable("the store is not running"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r.map_err(ServiceError::from),
            Ok(Err(_)) => Err(ServiceError::unavailable(
                "the store restarted before answering",
            )),
            Err(_) => Err(ServiceError::unavailable(format!(
                "the store did not answer within {} ms",
                timeout.as_millis()
            ))),
        }
    }
}
