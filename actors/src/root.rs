//! The root supervisor: `one_for_one` over persistence, registry, lock manager, scheduler, one backend
//! supervisor per backend and the gateway, with a restart intensity from the config. Above the intensity it
//! records why and stops the tree in order, and the process exits non-zero so that a service manager restarts
//! it. On a normal stop it stops its children in reverse start order: the gateway first (no new work), then the
//! backends (devices to their safe state, running jobs re-queued), and persistence last (it drains its queue).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::backend::{BackendActor, BackendArgs};
use crate::context::{roles, Ctx};
use crate::gateway::{GatewayActor, GatewayArgs};
use crate::lock_manager::LockManagerActor;
use crate::persistence::{PersistenceActor, PersistenceArgs};
use crate::registry::RegistryActor;
use crate::scheduler::SchedulerActor;
use crate::supervision::{RestartPolicy, RestartTracker};

/// Why the tree gave up, shared with whoever started it.
pub type FailureSlot = Arc<parking_lot::Mutex<Option<String>>>;

/// Start arguments.
pub struct RootArgs {
    /// Runtime context.
    pub ctx: Ctx,
    /// The gateway, when the runtime listens (embedded use may not).
    pub gateway: Option<GatewayArgs>,
    /// Where the reason of a give-up is written.
    pub failure: FailureSlot,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Child {
    Persistence,
    Registry,
    LockManager,
    Scheduler,
    Backend(usize),
    Gateway,
}

/// State of the root.
pub struct RootState {
    ctx: Ctx,
    gateway: Option<GatewayArgs>,
    failure: FailureSlot,
    children: Vec<(Child, ActorCell)>,
    tracker: RestartTracker,
    stopping: bool,
}

/// Messages of the root.
pub enum RootMsg {
    /// Restart a child after a back-off.
    Restart(ChildId),
}

/// Opaque child identifier used in restart messages.
pub struct ChildId(Child);

/// The root supervisor actor.
pub struct RootActor;

impl RootState {
    async fn spawn(
        &self,
        child: &Child,
        myself: &ActorRef<RootMsg>,
    ) -> Result<ActorCell, ActorProcessingErr> {
        let ctx = &self.ctx;
        let sup = myself.get_cell();
        let cell = match child {
            Child::Persistence => {
                let cfg = ctx.config();
                Actor::spawn_linked(
                    Some(ctx.name(roles::PERSISTENCE)),
                    PersistenceActor,
                    PersistenceArgs {
                        selection: crate::persistence::store_selection(cfg),
                    },
                    sup,
                )
                .await?
                .0
                .get_cell()
            }
            Child::Registry => Actor::spawn_linked(
                Some(ctx.name(roles::REGISTRY)),
                RegistryActor,
                ctx.clone(),
                sup,
            )
            .await?
            .0
            .get_cell(),
            Child::LockManager => Actor::spawn_linked(
                Some(ctx.name(roles::LOCK_MANAGER)),
                LockManagerActor,
                ctx.clone(),
                sup,
            )
            .await?
            .0
            .get_cell(),
            Child::Scheduler => Actor::spawn_linked(
                Some(ctx.name(roles::SCHEDULER)),
                SchedulerActor,
                ctx.clone(),
                sup,
            )
            .await?
            .0
            .get_cell(),
            Child::Backend(i) => {
                let section = ctx.config().backends[*i].clone();
                let model = ctx.model_of(&section)?;
                Actor::spawn_linked(
                    Some(ctx.name(&roles::backend(&section.name))),
                    BackendActor,
                    BackendArgs {
                        ctx: ctx.clone(),
                        published: model.publish(&section),
                        model,
                        section,
                    },
                    sup,
                )
                .await?
                .0
                .get_cell()
            }
            Child::Gateway => {
                let args = self.gateway.clone().ok_or("no gateway configured")?;
                Actor::spawn_linked(Some(ctx.name(roles::GATEWAY)), GatewayActor, args, sup)
                    .await?
                    .0
                    .get_cell()
            }
        };
        Ok(cell)
    }

    fn give_up(&mut self, myself: &ActorRef<RootMsg>, reason: String) {
        tracing::error!(%reason, "supervision tree gives up");
        *self.failure.lock() = Some(reason.clone());
        myself.stop(Some(reason));
    }
}

impl Actor for RootActor {
    type Msg = RootMsg;
    type State = RootState;
    type Arguments = RootArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: RootArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let sup = &args.ctx.config().supervision;
        let mut state = RootState {
            tracker: RestartTracker::new(RestartPolicy {
                max_restarts: sup.max_restarts,
                period: Duration::from_millis(sup.period_ms),
            }),
            ctx: args.ctx.clone(),
            gateway: args.gateway,
            failure: args.failure,
            children: Vec::new(),
            stopping: false,
        };
        let mut order = vec![
            Child::Persistence,
            Child::Registry,
            Child::LockManager,
            Child::Scheduler,
        ];
        order.extend((0..state.ctx.config().backends.len()).map(Child::Backend));
        if state.gateway.is_some() {
            order.push(Child::Gateway);
        }
        for child in order {
            let cell = state.spawn(&child, &myself).await?;
            state.children.push((child, cell));
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: RootMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RootMsg::Restart(ChildId(child)) => {
                if state.stopping {
                    return Ok(());
                }
                match state.spawn(&child, &myself).await {
                    Ok(cell) => {
                        tracing::info!(?child, "restarted");
                        state.children.push((child, cell));
                    }
                    Err(e) => {
                        if state.tracker.allow(Instant::now()) {
                            tracing::error!(?child, error = %e, "restart failed; retrying");
                            myself.send_after(Duration::from_millis(200), move || {
                                RootMsg::Restart(ChildId(child))
                            });
                        } else {
                            state.give_up(&myself, format!("{child:?} cannot be restarted: {e}"));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.unwrap_or_else(|| "stopped".into()))
            }
            _ => return Ok(()),
        };
        let Some(pos) = state
            .children
            .iter()
            .position(|(_, c)| c.get_id() == cell.get_id())
        else {
            return Ok(());
        };
        let (child, _) = state.children.remove(pos);
        if state.stopping {
            return Ok(());
        }
        tracing::error!(?child, reason = %why, "actor stopped unexpectedly; restarting it");
        if !state.tracker.allow(Instant::now()) {
            let sup = &state.ctx.config().supervision;
            let reason = format!(
                "restart intensity exceeded: more than {} restarts within {} ms (last: {child:?}: {why})",
                sup.max_restarts, sup.period_ms
            );
            state.give_up(&myself, reason);
            return Ok(());
        }
        // The name of the dead actor is released once it has fully stopped; restart right after.
        myself.send_after(Duration::from_millis(10), move || {
            RootMsg::Restart(ChildId(child))
        });
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.stopping = true;
        while let Some((child, cell)) = state.children.pop() {
            let wait = match child {
                Child::Backend(_) => Duration::from_secs(20),
                _ => Duration::from_secs(10),
            };
            if cell
                .stop_and_wait(Some("shutdown".into()), Some(wait))
                .await
                .is_err()
            {
                tracing::warn!(?child, "did not stop in time; killing it");
                cell.kill();
            }
        }
        Ok(())
    }
}
