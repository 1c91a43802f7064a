//! The persistence actor: it owns the store engine (an `Arc<dyn Engine>`: SQLite with its group-committing
//! writer thread, or PostgreSQL) and hands it to callers. If the actor is restarted, the old engine drains
//! what was queued and closes, and a new one is opened.
//!
//! Every other part of the runtime talks to the store through [`Db`], which looks the actor up by name on
//! each call (so a restarted actor is found again), calls one method of the store interface
//! ([`shotline_store::api`]: each method one atomic transaction, answered after its commit) and bounds the
//! whole call with the configured timeout. Nothing outside `shotline_store` sees SQL or a connection.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use shotline_config::Config;
use shotline_store::{Engine, StoreError, StoreSelection};

use crate::context::{roles, Ctx};
use crate::error::ServiceError;

/// Messages of the persistence actor.
pub enum PersistenceMsg {
    /// The current engine (callers use it for one call, then ask again).
    Engine(ractor::RpcReplyPort<Arc<dyn Engine>>),
    /// `(commits, ops)` so far by the current engine (SQLite: group-commit batches).
    Stats(ractor::RpcReplyPort<(u64, u64)>),
    /// Fault injection: hold every commit this long.
    SetCommitDelay(Duration),
    /// Fault injection: panic inside the handler (tests and drills).
    InjectPanic,
}

/// Start arguments.
pub struct PersistenceArgs {
    /// Which store to open.
    pub selection: StoreSelection,
}

/// The store the configuration selects: the PostgreSQL database of `store.postgres`, else the SQLite database
/// in the data directory, with a writer queue of `persistence.queue_capacity` operations.
pub fn store_selection(config: &Config) -> StoreSelection {
    match &config.store.postgres {
        Some(url) => StoreSelection::Postgres {
            url: url.expose().to_owned(),
            allow_synchronous_commit_off: config.store.allow_synchronous_commit_off,
        },
        None => StoreSelection::Sqlite {
            path: config.db_path(),
            queue_capacity: config.persistence.queue_capacity as usize,
        },
    }
}

/// The persistence actor.
pub struct PersistenceActor;

impl Actor for PersistenceActor {
    type Msg = PersistenceMsg;
    type State = Option<Arc<dyn Engine>>;
    type Arguments = PersistenceArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: PersistenceArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let engine = shotline_store::open(&args.selection).await?;
        tracing::debug!(store = %engine.describe(), "store opened");
        Ok(Some(engine))
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
            PersistenceMsg::Engine(reply) => match state {
                Some(e) => {
                    let _ = reply.send(Arc::clone(e));
                }
                None => return Err("the store is closed".into()),
            },
            PersistenceMsg::SetCommitDelay(d) => {
                if let Some(e) = state {
                    e.set_commit_delay(d);
                }
            }
            PersistenceMsg::Stats(reply) => {
                let s = state.as_ref().map(|e| e.stats()).unwrap_or_default();
                let _ = reply.send((s.commits, s.ops));
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(e) = state.take() {
            e.shutdown().await?;
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

    /// The current engine of the persistence actor (looked up again for a short while if it is restarting).
    async fn engine(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<Arc<dyn Engine>, ServiceError> {
        loop {
            if let Some(actor) = self.ctx.lookup::<PersistenceMsg>(roles::PERSISTENCE) {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                match actor.call(PersistenceMsg::Engine, Some(left)).await {
                    Ok(ractor::rpc::CallResult::Success(e)) => return Ok(e),
                    Ok(ractor::rpc::CallResult::Timeout) => {
                        return Err(ServiceError::unavailable(format!(
                            "the store did not answer within {} ms",
                            self.ctx.call_timeout().as_millis()
                        )))
                    }
                    // Stopping or restarting: look again.
                    Ok(ractor::rpc::CallResult::SenderError) | Err(_) => {}
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ServiceError::unavailable("the store is not running"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs one call of the store interface and returns its value once its transaction has committed
    /// (durably). `f` gets the engine and should make exactly one method call (one transaction):
    /// `db.run(move |e| async move { e.job(&id).await })`. The whole call (finding the actor, the
    /// transaction) is bounded by the call timeout.
    pub async fn run<T, F, Fut>(&self, f: F) -> Result<T, ServiceError>
    where
        F: FnOnce(Arc<dyn Engine>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let timeout = self.ctx.call_timeout();
        let deadline = tokio::time::Instant::now() + timeout;
        let engine = self.engine(deadline).await?;
        match tokio::time::timeout(timeout, f(engine)).await {
            Ok(r) => r.map_err(ServiceError::from),
            Err(_) => Err(ServiceError::unavailable(format!(
                "the store did not answer within {} ms",
                timeout.as_millis()
            ))),
        }
    }
}
