//! The lock manager: exclusive locks on a backend's devices as leases in the store, with an owner and an
//! expiry. The stored owner is `<instance>/<holder>` (the runtime instance, random per start, and the
//! execution id, or `recovery`; the instance is `<server>:<pid>-<random>`, the server naming the data dir), so
//! servers sharing one database tell their leases apart. A lease lasts
//! `recovery.lock_lease_ms`; its holder renews it (an execution every third of the lease) and releases it at
//! the end. A lease is written before it is granted; another instance's lease is taken over only once it
//! has expired. This actor remembers the leases of its own instance only (rebuilt from the store when it
//! restarts).

use std::collections::BTreeMap;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::context::Ctx;
use crate::persistence::Db;
use crate::time::{utc_in_ms, utc_now};
use shotline_store::LockGrant;

/// Why a lock was not granted, renewed or released.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// Someone else holds an unexpired lease.
    #[error("{resource} is locked by {owner}")]
    Held {
        /// The resource.
        resource: String,
        /// Its owner as stored (`<instance>/<holder>`).
        owner: String,
    },
    /// Only the owner may renew or release.
    #[error("{resource} is not locked by {owner}")]
    NotOwner {
        /// The resource.
        resource: String,
        /// Who asked.
        owner: String,
    },
    /// The lease is gone (expired and taken over, or force-released): its holder must stop.
    #[error("the lease of {owner} on {resource} is lost")]
    Lost {
        /// The resource.
        resource: String,
        /// Who held it.
        owner: String,
    },
    /// The store failed.
    #[error("lock store: {0}")]
    Store(String),
}

/// Messages of the lock manager.
pub enum LockMsg {
    /// Take `resource` for `owner` (an execution id, or `recovery`) for one lease (idempotent for the same
    /// owner).
    Acquire {
        /// Resource name, e.g. `backend:singlequdit`.
        resource: String,
        /// Execution id (or `recovery`).
        owner: String,
        /// Answer.
        reply: RpcReplyPort<Result<(), LockError>>,
    },
    /// Extend `owner`'s lease by one lease from now ([`LockError::Lost`] if it is gone).
    Renew {
        /// Resource.
        resource: String,
        /// Must be the owner.
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
    /// Release a lease whose holder is dead (logged): a lease of this instance, or with `any_instance`
    /// a lease of any instance (SQLite: one process per data dir, so any other instance is dead).
    ForceRelease {
        /// Resource.
        resource: String,
        /// Also a lease of another instance.
        any_instance: bool,
        /// The previous owner (as stored), if a lease was released.
        reply: RpcReplyPort<Option<String>>,
    },
    /// The leases of this instance: resource -> owner as stored.
    List(RpcReplyPort<BTreeMap<String, String>>),
    /// Fault injection: panic inside the handler (tests and drills).
    InjectPanic,
}

/// The lock manager actor.
pub struct LockManagerActor;

/// State: this instance's leases and the store facade.
pub struct LockState {
    held: BTreeMap<String, String>,
    ctx: Ctx,
    db: Db,
}

impl LockState {
    /// The stored owner of `holder` in this instance.
    fn owner(&self, holder: &str) -> String {
        format!("{}/{holder}", self.ctx.instance())
    }

    /// The expiry of a lease taken or renewed now.
    fn expiry(&self) -> String {
        utc_in_ms(self.ctx.config().recovery.lock_lease_ms)
    }

    async fn acquire(&mut self, resource: String, holder: String) -> Result<(), LockError> {
        let owner = self.owner(&holder);
        match self.held.get(&resource) {
            Some(o) if *o == owner => return Ok(()),
            Some(o) => {
                return Err(LockError::Held {
                    resource,
                    owner: o.clone(),
                })
            }
            None => {}
        }
        let (r, o, now, until) = (resource.clone(), owner.clone(), utc_now(), self.expiry());
        let granted = self
            .db
            .run(move |e| async move { e.acquire_lock(&r, &o, &now, Some(&until)).await })
            .await;
        match granted {
            Ok(LockGrant::Granted) => {
                self.held.insert(resource, owner);
                Ok(())
            }
            Ok(LockGrant::Held(holder)) => Err(LockError::Held {
                resource,
                owner: holder.owner,
            }),
            Err(e) => Err(LockError::Store(e.to_string())),
        }
    }

    async fn renew(&mut self, resource: String, holder: String) -> Result<(), LockError> {
        let owner = self.owner(&holder);
        if self.held.get(&resource) != Some(&owner) {
            return Err(LockError::Lost { resource, owner });
        }
        let (r, o, until) = (resource.clone(), owner.clone(), self.expiry());
        match self
            .db
            .run(move |e| async move { e.renew_lock(&r, &o, Some(&until)).await })
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.held.remove(&resource);
                Err(LockError::Lost { resource, owner })
            }
            Err(e) => Err(LockError::Store(e.to_string())),
        }
    }

    async fn release(&mut self, resource: String, holder: String) -> Result<(), LockError> {
        let owner = self.owner(&holder);
        if self.held.get(&resource) != Some(&owner) {
            return Err(LockError::NotOwner { resource, owner });
        }
        let (r, o) = (resource.clone(), owner.clone());
        match self
            .db
            .run(move |e| async move { e.release_lock(&r, &o).await })
            .await
        {
            Ok(_) => {
                self.held.remove(&resource);
                Ok(())
            }
            Err(e) => Err(LockError::Store(e.to_string())),
        }
    }

    async fn force_release(&mut self, resource: String, any_instance: bool) -> Option<String> {
        self.held.remove(&resource);
        let r = resource.clone();
        let current = match self.db.run(move |e| async move { e.locks().await }).await {
            Ok(locks) => locks.into_iter().find(|l| l.resource == r),
            Err(e) => {
                tracing::error!(%resource, error = %e, "force-unlock: could not read the lease");
                return None;
            }
        };
        let lease = current?;
        // This server's (this instance or a dead predecessor on the same data dir), or any on SQLite.
        let ours = lease.owner.starts_with(self.ctx.server_prefix());
        if !ours && !any_instance {
            return None;
        }
        // Conditional on the owner read above: a lease taken over meanwhile is left alone.
        let (r, o) = (resource.clone(), lease.owner.clone());
        match self
            .db
            .run(move |e| async move { e.release_lock(&r, &o).await })
            .await
        {
            Ok(true) => {
                tracing::warn!(%resource, owner = %lease.owner, "lock force-released");
                Some(lease.owner)
            }
            Ok(false) => None,
            Err(e) => {
                tracing::error!(%resource, error = %e, "force-unlock could not be persisted");
                None
            }
        }
    }
}

impl Actor for LockManagerActor {
    type Msg = LockMsg;
    type State = LockState;
    type Arguments = Ctx;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        ctx: Ctx,
    ) -> Result<Self::State, ActorProcessingErr> {
        let db = Db::new(&ctx);
        let locks = db.run(|e| async move { e.locks().await }).await?;
        let mine = format!("{}/", ctx.instance());
        let held = locks
            .into_iter()
            .filter(|l| l.owner.starts_with(&mine))
            .map(|l| (l.resource, l.owner))
            .collect();
        Ok(LockState { held, ctx, db })
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
                let _ = reply.send(state.acquire(resource, owner).await);
            }
            LockMsg::Renew {
                resource,
                owner,
                reply,
            } => {
                let _ = reply.send(state.renew(resource, owner).await);
            }
            LockMsg::Release {
                resource,
                owner,
                reply,
            } => {
                let _ = reply.send(state.release(resource, owner).await);
            }
            LockMsg::ForceRelease {
                resource,
                any_instance,
                reply,
            } => {
                let _ = reply.send(state.force_release(resource, any_instance).await);
            }
            LockMsg::List(reply) => {
                let _ = reply.send(state.held.clone());
            }
        }
        Ok(())
    }
}
