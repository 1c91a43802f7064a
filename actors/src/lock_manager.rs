//! The lock manager: exclusive locks on a backend's devices, owned by an execution id and released only by
//! their owner (or force-released by an operator, which is logged). Locks are persisted before they are
//! granted and rebuilt from the store when the actor (re)starts, before any new grant.

use std::collections::BTreeMap;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::persistence::Db;
use crate::time::utc_now;
use shotline_store::LockGrant;

/// Why a lock was not granted or released.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// Someone else holds it.
    #[error("{resource} is locked by execution {owner}")]
    Held {
        /// The resource.
        resource: String,
        /// Its owner.
        owner: String,
    },
    /// Only the owner may release.
    #[error("{resource} is not locked by {owner}")]
    NotOwner {
        /// The resource.
        resource: String,
        /// Who asked.
        owner: String,
    },
    /// The store failed.
    #[error("lock store: {0}")]
    Store(String),
}

/// Messages of the lock manager.
pub enum LockMsg {
    /// Take `resource` for `owner` (idempotent for the same owner).
    Acquire {
        /// Resource name, e.g. `backend:singlequdit`.
        resource: String,
        /// Execution id.
        owner: String,
        /// Answer.
        reply: RpcReplyPort<Result<(), LockError>>,
    },
    /// Give it back.
    Release {
        /// Resource.
        resource: String,
        /// Must be the owner.
        owner: String,
        /// Answer.
        reply: RpcReplyPort<Result<(), LockError>>,
    },
    /// Operator override (logged).
    ForceRelease {
        /// Resource.
        resource: String,
        /// The previous owner, if any.
        reply: RpcReplyPort<Option<String>>,
    },
    /// Every held lock: resource -> owner.
    List(RpcReplyPort<BTreeMap<String, String>>),
    /// Fault injection: panic inside the handler (tests and drills).
    InjectPanic,
}

/// The lock manager actor.
pub struct LockManagerActor;

/// State: the held locks and the store facade.
pub struct LockState {
    held: BTreeMap<String, String>,
    db: Db,
}

impl Actor for LockManagerActor {
    type Msg = LockMsg;
    type State = LockState;
    type Arguments = Db;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        db: Db,
    ) -> Result<Self::State, ActorProcessingErr> {
        let locks = db.run(|e| async move { e.locks().await }).await?;
        let held = locks.into_iter().map(|l| (l.resource, l.owner)).collect();
        Ok(LockState { held, db })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: LockMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            LockMsg::InjectPanic => panic!("injected fault: LockMsg panics on request"),
            LockMsg::Acquire {
                resource,
                owner,
                reply,
            } => {
                let result = match state.held.get(&resource) {
                    Some(o) if *o == owner => Ok(()),
                    Some(o) => Err(LockError::Held {
                        resource: resource.clone(),
                        owner: o.clone(),
                    }),
                    None => {
                        let (r, o, now) = (resource.clone(), owner.clone(), utc_now());
                        let granted = state
                            .db
                            .run(move |e| async move { e.acquire_lock(&r, &o, &now, None).await })
                            .await;
                        match granted {
                            Ok(LockGrant::Granted) => {
                                state.held.insert(resource, owner);
                                Ok(())
                            }
                            Ok(LockGrant::Held(holder)) => Err(LockError::Held {
                                resource: resource.clone(),
                                owner: holder.owner,
                            }),
                            Err(e) => Err(LockError::Store(e.to_string())),
                        }
                    }
                };
                let _ = reply.send(result);
            }
            LockMsg::Release {
                resource,
                owner,
                reply,
            } => {
                let result = match state.held.get(&resource) {
                    Some(o) if *o == owner => {
                        let (r, o) = (resource.clone(), owner.clone());
                        match state
                            .db
                            .run(move |e| async move { e.release_lock(&r, &o).await })
                            .await
                        {
                            Ok(_) => {
                                state.held.remove(&resource);
                                Ok(())
                            }
                            Err(e) => Err(LockError::Store(e.to_string())),
                        }
                    }
                    _ => Err(LockError::NotOwner { resource, owner }),
                };
                let _ = reply.send(result);
            }
            LockMsg::ForceRelease { resource, reply } => {
                let previous = state.held.remove(&resource);
                let r = resource.clone();
                if let Err(e) = state
                    .db
                    .run(move |e| async move { e.force_release_lock(&r).await })
                    .await
                {
                    tracing::error!(%resource, error = %e, "force-unlock could not be persisted");
                }
                if let Some(owner) = &previous {
                    tracing::warn!(%resource, %owner, "lock force-released");
                }
                let _ = reply.send(previous);
            }
            LockMsg::List(reply) => {
                let _ = reply.send(state.held.clone());
            }
        }
        Ok(())
    }
}
