//! The registry: which backends exist, what they publish (their config: instructions, limits) and their
//! live status (operational, paused, the running execution).

use std::collections::BTreeMap;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use shotline_config::BackendSection;

use crate::backend::BackendMsg;
use crate::context::{roles, Ctx};
use shotline_protocol::BackendConfig;

/// What the registry knows of one backend.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendEntry {
    /// The published config.
    pub config: BackendConfig,
    /// Whether it can run jobs.
    pub operational: bool,
    /// Paused by an operator: queued jobs wait.
    pub paused: bool,
    /// Human-readable status.
    pub status_msg: String,
    /// The execution running now.
    pub running_execution: Option<String>,
}

/// Messages of the registry.
pub enum RegistryMsg {
    /// Every backend, by name.
    List(RpcReplyPort<Vec<BackendEntry>>),
    /// One backend.
    Get(String, RpcReplyPort<Option<BackendEntry>>),
    /// A backend started or finished an execution.
    SetRunning(String, Option<String>),
    /// A backend became (non-)operational, with a reason.
    SetOperational(String, bool, String),
    /// A backend was paused or resumed by an operator.
    SetPaused(String, bool),
    /// Fault injection: panic inside the handler (tests and drills).
    InjectPanic,
}

/// Builds the published config of a configured backend through its model (`None`: the model is not
/// registered, which the runtime refuses at start).
pub fn publish(ctx: &Ctx, section: &BackendSection) -> Option<BackendConfig> {
    ctx.model_of(section).ok().map(|m| m.publish(section))
}

/// The registry actor.
pub struct RegistryActor;

impl Actor for RegistryActor {
    type Msg = RegistryMsg;
    type State = BTreeMap<String, BackendEntry>;
    type Arguments = Ctx;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        ctx: Ctx,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut entries = BTreeMap::new();
        for s in &ctx.config().backends {
            // After a registry restart the backends are alive and know whether they are paused.
            let paused = match ctx.lookup::<BackendMsg>(&roles::backend(&s.name)) {
                Some(b) => matches!(
                    b.call(BackendMsg::IsPaused, Some(ctx.call_timeout())).await,
                    Ok(ractor::rpc::CallResult::Success(true))
                ),
                None => false,
            };
            let Some(config) = publish(&ctx, s) else {
                tracing::error!(backend = %s.name, model = %s.model, "backend model not registered");
                continue;
            };
            entries.insert(
                s.name.clone(),
                BackendEntry {
                    config,
                    operational: true,
                    paused,
                    status_msg: if paused {
                        "paused".into()
                    } else {
                        "ready".into()
                    },
                    running_execution: None,
                },
            );
        }
        Ok(entries)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: RegistryMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RegistryMsg::InjectPanic => panic!("injected fault: RegistryMsg panics on request"),
            RegistryMsg::List(reply) => {
                let _ = reply.send(state.values().cloned().collect());
            }
            RegistryMsg::Get(name, reply) => {
                let _ = reply.send(state.get(&name).cloned());
            }
            RegistryMsg::SetRunning(name, exec) => {
                if let Some(e) = state.get_mut(&name) {
                    e.status_msg = match &exec {
                        Some(x) => format!("running execution {x}"),
                        None => "ready".into(),
                    };
                    e.running_execution = exec;
                }
            }
            RegistryMsg::SetPaused(name, paused) => {
                if let Some(e) = state.get_mut(&name) {
                    e.paused = paused;
                }
            }
            RegistryMsg::SetOperational(name, ok, why) => {
                if let Some(e) = state.get_mut(&name) {
                    e.operational = ok;
                    e.status_msg = why;
                }
            }
        }
        Ok(())
    }
}
