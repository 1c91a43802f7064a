//! The backend supervisor (`backend:<name>`): one per apparatus, `one_for_all` over its sequencers (one per
//! device), acquisition and analysis, and the coordinator of the execution running on it.
//!
//! It owns the devices and the shot clock thread. When any child fails it stops the current execution at a
//! shot boundary (the job is re-queued, or ended ERROR after too many attempts), stops every child, drives
//! every device to its safe state, builds a fresh shot clock and restarts all children together. Above the
//! restart intensity it fails itself and the root decides.

pub mod compile;
pub mod devices;
pub mod execution;
pub mod pause;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use shotline_config::{BackendSection, InterruptedPolicy, UnderflowPolicy as CfgPolicy};
use shotline_hal::realtime::RealtimeOptions;
use shotline_hal::shot_clock::{self, ClockConfig, ClockControl, UnderflowPolicy};
use shotline_hal::time::MonotonicTimer;
use shotline_hal::DeviceHandle;
use shotline_protocol::BackendConfig;

use crate::acquisition::{AcquisitionActor, AcquisitionArgs, AcquisitionMsg};
use crate::analysis::{AnalysisActor, AnalysisMsg};
use crate::context::{roles, Ctx};
use crate::persistence::Db;
use crate::registry::RegistryMsg;
use crate::scheduler::SchedulerMsg;
use crate::sequencer::{SequencerActor, SequencerArgs, SequencerMsg};
use crate::supervision::{RestartPolicy, RestartTracker};
use execution::{ExecEnd, ExecEnv};

/// How long a deferred job waits before it is offered again.
pub const DEFER_RETRY: Duration = Duration::from_secs(1);

/// Messages of a backend supervisor.
pub enum BackendMsg {
    /// The scheduler offers a queued job; answers whether it was taken.
    Offer(String, RpcReplyPort<bool>),
    /// The execution task ended.
    ExecutionEnded(String, ExecEnd),
    /// What is running now: (job id, execution id known to the registry).
    Current(RpcReplyPort<Option<String>>),
    /// Stop the current execution at the next shot boundary and re-queue it.
    StopCurrent(RpcReplyPort<bool>),
    /// Cancel job `.0` if it is the one running: it stops at the next shot boundary and ends CANCELLED.
    Cancel(String, RpcReplyPort<bool>),
    /// Pause (true) or resume (false): a paused backend takes no job; pausing re-queues the running one.
    SetPaused(bool, RpcReplyPort<()>),
    /// Emergency stop: pause, abort the running shot sequence at once, every device to its safe state.
    Estop(RpcReplyPort<()>),
    /// Whether the backend is paused.
    IsPaused(RpcReplyPort<bool>),
    /// Fault injection: a device or clock fault (tests and drills).
    InjectFault(
        crate::faults::FaultSpec,
        RpcReplyPort<Result<String, String>>,
    ),
    /// Fault injection: panic inside the handler (tests and drills).
    InjectPanic,
}

/// Start arguments.
#[derive(Clone)]
pub struct BackendArgs {
    /// Runtime context.
    pub ctx: Ctx,
    /// Configuration of this backend.
    pub section: BackendSection,
    /// What it publishes.
    pub published: BackendConfig,
}

struct Children {
    sequencers: Vec<ActorRef<SequencerMsg>>,
    #[allow(dead_code)]
    // kept so the tree is visible in one place; acquisition is driven by its own timer
    acquisition: ActorRef<AcquisitionMsg>,
    analysis: ActorRef<AnalysisMsg>,
}

impl Children {
    fn contains(&self, id: ractor::ActorId) -> bool {
        self.acquisition.get_id() == id
            || self.analysis.get_id() == id
            || self.sequencers.iter().any(|s| s.get_id() == id)
    }
}

struct Running {
    job_id: String,
    stop: Arc<AtomicU8>,
    task: tokio::task::JoinHandle<()>,
}

/// State of a backend supervisor.
pub struct BackendState {
    args: BackendArgs,
    devices: Vec<DeviceHandle>,
    clock: Arc<parking_lot::Mutex<ClockControl>>,
    children: Children,
    running: Option<Running>,
    restarts: RestartTracker,
    restarting: bool,
    paused: bool,
    faults: Vec<(String, shotline_hal::sim::FaultSwitch)>,
    /// Timing-card session status per device (`driver: bridge` only), for the sequencers.
    cards: Vec<Option<shotline_hal::bridge::StatusHandle>>,
}

/// The backend supervisor actor.
pub struct BackendActor;

impl Drop for BackendState {
    fn drop(&mut self) {
        // Also when the supervisor is killed (no post_stop): its execution must not outlive it. It is
        // cancelled, not asked to stop: like a crash, it must not settle its job, which stays RUNNING for
        // the recovery of the restarted backend. The shot clock shuts down with the last handle on it.
        if let Some(r) = self.running.take() {
            r.task.abort();
        }
    }
}

/// The shot clock configuration of a backend.
pub fn clock_config(section: &BackendSection) -> ClockConfig {
    let t = &section.timing;
    ClockConfig {
        lead_ns: t.lead_ns,
        cycle_ns: t.cycle_ns,
        slack_ns: t.slack_ns,
        underflow_policy: match t.underflow_policy {
            CfgPolicy::Fail => UnderflowPolicy::Fail,
            CfgPolicy::Record => UnderflowPolicy::Record,
        },
        shot_ring: t.shot_ring as usize,
        event_ring: t.event_ring as usize,
        realtime: RealtimeOptions {
            enabled: t.realtime.enabled,
            priority: t.realtime.priority,
            cpu: t.realtime.cpu,
            mlock: t.realtime.mlock,
        },
    }
}

async fn start_children(
    myself: &ActorRef<BackendMsg>,
    args: &BackendArgs,
    devices: &[DeviceHandle],
    cards: &[Option<shotline_hal::bridge::StatusHandle>],
) -> Result<(Arc<parking_lot::Mutex<ClockControl>>, Children), ActorProcessingErr> {
    let name = &args.section.name;
    let (control, outputs) = shot_clock::spawn(
        name,
        clock_config(&args.section),
        Box::new(MonotonicTimer::new(args.section.timing.sleep_margin_ns)),
    )?;
    let cell = myself.get_cell();
    let (analysis, _) = Actor::spawn_linked(
        Some(args.ctx.name(&roles::backend_child(name, "analysis"))),
        AnalysisActor,
        args.ctx.clone(),
        cell.clone(),
    )
    .await?;
    let (acquisition, _) = Actor::spawn_linked(
        Some(args.ctx.name(&roles::backend_child(name, "acquisition"))),
        AcquisitionActor,
        AcquisitionArgs {
            outputs,
            analysis: analysis.clone(),
        },
        cell.clone(),
    )
    .await?;
    let mut sequencers = Vec::with_capacity(devices.len());
    for (i, (dev, section)) in devices.iter().zip(&args.section.devices).enumerate() {
        let (s, _) = Actor::spawn_linked(
            Some(args.ctx.name(&roles::backend_child(
                name,
                &format!("sequencer:{}", section.name),
            ))),
            SequencerActor,
            SequencerArgs {
                device: dev.clone(),
                device_timeout: args.ctx.call_timeout(),
                card: cards.get(i).cloned().flatten(),
            },
            cell.clone(),
        )
        .await?;
        sequencers.push(s);
    }
    Ok((
        Arc::new(parking_lot::Mutex::new(control)),
        Children {
            sequencers,
            acquisition,
            analysis,
        },
    ))
}

fn set_registry_paused(args: &BackendArgs, paused: bool) {
    if let Some(r) = args.ctx.lookup::<RegistryMsg>(roles::REGISTRY) {
        let _ = r.cast(RegistryMsg::SetPaused(args.section.name.clone(), paused));
    }
}

/// Drives every device to its safe state directly (the children may be gone).
fn safe_state_devices(name: &str, devices: &[DeviceHandle], timeout: Duration) {
    for d in devices {
        match d.try_lock_for(timeout) {
            Some(mut g) => {
                if let Err(e) = g.safe_state() {
                    tracing::error!(backend = name, error = %e, "device refused its safe state");
                }
            }
            None => tracing::error!(
                backend = name,
                "device still busy; could not reach its safe state"
            ),
        }
    }
}

impl BackendState {
    fn inject(&self, spec: crate::faults::FaultSpec) -> Result<String, String> {
        use crate::faults::{DeviceFaultKind, FaultSpec};
        use shotline_hal::sim::InjectedFault;
        match spec {
            FaultSpec::Device {
                device,
                kind,
                at_shot,
                hang_ms,
                ..
            } => {
                let Some((_, switch)) = self.faults.iter().find(|(n, _)| *n == device) else {
                    let names: Vec<&str> = self.faults.iter().map(|(n, _)| n.as_str()).collect();
                    return Err(format!(
                        "backend {} has no device {device:?}; devices: {}",
                        self.args.section.name,
                        names.join(", ")
                    ));
                };
                switch.set(match kind {
                    DeviceFaultKind::Error => InjectedFault::Error { at_shot },
                    DeviceFaultKind::Hang => InjectedFault::Hang {
                        at_shot,
                        hang: Duration::from_millis(hang_ms),
                    },
                    DeviceFaultKind::Disconnect => InjectedFault::Disconnect,
                    DeviceFaultKind::Clear => InjectedFault::None,
                });
                tracing::warn!(backend = %self.args.section.name, %device, ?kind, at_shot, "fault injected");
                Ok(format!("device {device}: {kind:?} armed"))
            }
            FaultSpec::ClockDelay { delay_ns, .. } => {
                self.clock.lock().delay_next_event(delay_ns);
                tracing::warn!(backend = %self.args.section.name, delay_ns, "clock delay injected");
                Ok(format!("the next event is applied {delay_ns} ns late"))
            }
            FaultSpec::Actor { .. } | FaultSpec::StoreCommitDelay { .. } => {
                Err("actor and store faults are handled by the service".into())
            }
        }
    }

    fn env(&self) -> ExecEnv {
        ExecEnv {
            ctx: self.args.ctx.clone(),
            db: Db::new(&self.args.ctx),
            section: self.args.section.clone(),
            published: self.args.published.clone(),
            devices: self.devices.clone(),
            sequencers: self.children.sequencers.clone(),
            analysis: self.children.analysis.clone(),
            clock: self.clock.clone(),
        }
    }

    /// Stops the running execution at a shot boundary and waits (bounded) for it to settle its job.
    async fn stop_running(&mut self, wait: Duration, why: u8) {
        if let Some(r) = self.running.take() {
            r.stop.store(why, Ordering::SeqCst);
            self.clock.lock().abort();
            let mut task = r.task;
            if tokio::time::timeout(wait, &mut task).await.is_err() {
                task.abort();
                tracing::warn!(job = %r.job_id, "execution did not stop in time; re-queueing it directly");
            }
            // Whatever happened, a job still RUNNING goes back to the queue.
            let job = r.job_id.clone();
            let max_attempts = self.args.ctx.config().recovery.max_attempts;
            let requeued = Db::new(&self.args.ctx)
                .run(move |s| {
                    let limit = (why != execution::STOP_SHUTDOWN).then_some(max_attempts);
                    execution::requeue_in_store(s, &job, None, "interrupted; re-queued", limit)
                })
                .await;
            if let Ok(Some(job)) = requeued {
                execution::notify_requeued(&self.args.ctx, &job);
            }
        }
    }
}

/// Before a backend (re)starts: no job of it can be running, so every job of this backend still RUNNING
/// (from a previous process, or from this backend before it failed) is re-queued (or ended ERROR after
/// `recovery.max_attempts`; or, with `recovery.on_interrupted: fail`, ended ERROR "interrupted by restart at
/// shot K of N"), and the backend's lock, whose owner is dead, is released (and logged).
async fn recover(args: &BackendArgs) {
    let db = Db::new(&args.ctx);
    let backend = args.section.name.clone();
    let b = backend.clone();
    let recovery = args.ctx.config().recovery.clone();
    let requeued = db
        .run(move |s| {
            let mut n = Vec::new();
            for j in s.jobs_with_status(shotline_protocol::JobStatus::Running.as_str())? {
                if j.backend != b {
                    continue;
                }
                // Where the job was: the progress its last execution recorded ("shot K of N").
                let open: Vec<_> = s
                    .executions_for_job(&j.id)?
                    .into_iter()
                    .filter(|e| e.ended_at.is_none())
                    .collect();
                let at = open
                    .iter()
                    .filter_map(|e| e.detail.clone())
                    .next_back()
                    .unwrap_or_else(|| "an unknown shot".into());
                let why = format!("interrupted by restart at {at}");
                let now = crate::time::utc_now();
                for x in &open {
                    s.finish_execution(&x.id, &now, "INTERRUPTED", Some(&why))?;
                }
                let again = match recovery.on_interrupted {
                    InterruptedPolicy::Requeue => execution::requeue_in_store(
                        s,
                        &j.id,
                        None,
                        &format!("{why}; re-queued"),
                        Some(recovery.max_attempts),
                    )?,
                    InterruptedPolicy::Fail => {
                        s.set_job_status(
                            &j.id,
                            shotline_protocol::JobStatus::Error.as_str(),
                            Some("failed"),
                            Some(&why),
                            &now,
                        )?;
                        None
                    }
                };
                n.push((j.id, again));
            }
            Ok(n)
        })
        .await;
    match requeued {
        Ok(jobs) => {
            for (job, again) in jobs {
                tracing::warn!(%backend, %job, requeued = again.is_some(), "job found RUNNING at backend start");
                if let Some(j) = again {
                    execution::notify_requeued(&args.ctx, &j);
                }
            }
        }
        Err(e) => tracing::error!(%backend, error = %e, "could not recover running jobs"),
    }
    if let Some(lm) = args
        .ctx
        .lookup::<crate::lock_manager::LockMsg>(roles::LOCK_MANAGER)
    {
        let resource = execution::lock_resource(&backend);
        let r = lm
            .call(
                |reply| crate::lock_manager::LockMsg::ForceRelease { resource, reply },
                Some(args.ctx.call_timeout()),
            )
            .await;
        if let Ok(ractor::rpc::CallResult::Success(Some(owner))) = r {
            tracing::warn!(%backend, %owner, "released the lock of a dead execution");
        }
    }
}

impl Actor for BackendActor {
    type Msg = BackendMsg;
    type State = BackendState;
    type Arguments = BackendArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: BackendArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        recover(&args).await;
        let built = devices::build(&args.section).map_err(|e| {
            format!(
                "backend {}: cannot create its devices: {e}",
                args.section.name
            )
        })?;
        // Whatever a previous process left behind, start from the safe state.
        safe_state_devices(&args.section.name, &built.handles, args.ctx.call_timeout());
        let (clock, children) =
            start_children(&myself, &args, &built.handles, &built.cards).await?;
        let sup = &args.ctx.config().supervision;
        // A pause survives a restart of the backend (the registry remembers it) and of the server (the
        // store does).
        let mut paused = match args.ctx.lookup::<RegistryMsg>(roles::REGISTRY) {
            Some(r) => {
                let name = args.section.name.clone();
                matches!(
                    r.call(|p| RegistryMsg::Get(name, p), Some(args.ctx.call_timeout()))
                        .await,
                    Ok(ractor::rpc::CallResult::Success(Some(e))) if e.paused
                )
            }
            None => false,
        };
        if !paused {
            if let Some((reason, since)) = pause::stored(&args).await {
                tracing::warn!(backend = %args.section.name, %reason, %since, "backend paused before the restart stays paused; resume it with `shotline backend resume`");
                set_registry_paused(&args, true);
                paused = true;
            }
        }
        Ok(BackendState {
            restarts: RestartTracker::new(RestartPolicy {
                max_restarts: sup.max_restarts,
                period: Duration::from_millis(sup.period_ms),
            }),
            args,
            devices: built.handles,
            clock,
            children,
            running: None,
            restarting: false,
            paused,
            faults: built.faults,
            cards: built.cards,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: BackendMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            BackendMsg::IsPaused(reply) => {
                let _ = reply.send(state.paused);
            }
            BackendMsg::InjectFault(spec, reply) => {
                let _ = reply.send(state.inject(spec));
            }
            BackendMsg::InjectPanic => panic!("injected fault: BackendMsg panics on request"),
            BackendMsg::Offer(job_id, reply) => {
                if state.running.is_some() || state.restarting || state.paused {
                    let _ = reply.send(false);
                    return Ok(());
                }
                let stop = Arc::new(AtomicU8::new(execution::STOP_NONE));
                let env = state.env();
                let me = myself.clone();
                let (jid, st) = (job_id.clone(), stop.clone());
                let task = tokio::spawn(async move {
                    let end = execution::run(env, jid.clone(), st).await;
                    let _ = me.cast(BackendMsg::ExecutionEnded(jid, end));
                });
                state.running = Some(Running { job_id, stop, task });
                let _ = reply.send(true);
            }
            BackendMsg::ExecutionEnded(job_id, end) => {
                if state.running.as_ref().is_some_and(|r| r.job_id == job_id) {
                    state.running = None;
                }
                tracing::info!(backend = %state.args.section.name, job = %job_id, ?end, "execution ended");
                if let ExecEnd::DeviceFault {
                    reason,
                    pause_backend: true,
                    ..
                } = &end
                {
                    state.paused = true;
                    set_registry_paused(&state.args, true);
                    pause::persist(&state.args, Some(format!("device fault: {reason}"))).await;
                    tracing::error!(backend = %state.args.section.name, %reason, "backend paused after a device fault (device_faults.pause_backend); resume it when the apparatus is fixed");
                }
                if let Some(s) = state.args.ctx.lookup::<SchedulerMsg>(roles::SCHEDULER) {
                    if let ExecEnd::Deferred { reason } = &end {
                        // The job is still QUEUED: the scheduler reloads its queue from the store a little
                        // later instead of offering the same job again at once.
                        tracing::warn!(job = %job_id, %reason, "job deferred; it stays queued");
                        s.send_after(DEFER_RETRY, || SchedulerMsg::Reload);
                    } else {
                        let _ = s.cast(SchedulerMsg::BackendIdle(state.args.section.name.clone()));
                    }
                }
            }
            BackendMsg::Current(reply) => {
                let _ = reply.send(state.running.as_ref().map(|r| r.job_id.clone()));
            }
            BackendMsg::Cancel(job_id, reply) => {
                let hit = match &state.running {
                    Some(r) if r.job_id == job_id => {
                        r.stop.store(execution::STOP_CANCEL, Ordering::SeqCst);
                        state.clock.lock().abort();
                        true
                    }
                    _ => false,
                };
                let _ = reply.send(hit);
            }
            BackendMsg::SetPaused(paused, reply) => {
                state.paused = paused;
                set_registry_paused(&state.args, paused);
                pause::persist(
                    &state.args,
                    paused.then(|| "paused by an operator".to_string()),
                )
                .await;
                if paused {
                    state
                        .stop_running(Duration::from_secs(10), execution::STOP_SHUTDOWN)
                        .await;
                } else if let Some(s) = state.args.ctx.lookup::<SchedulerMsg>(roles::SCHEDULER) {
                    let _ = s.cast(SchedulerMsg::BackendIdle(state.args.section.name.clone()));
                }
                let _ = reply.send(());
            }
            BackendMsg::Estop(reply) => {
                state.paused = true;
                set_registry_paused(&state.args, true);
                // Abort first (the clock stops at the next shot boundary), then wait for the job to settle.
                state.clock.lock().abort();
                state
                    .stop_running(Duration::from_secs(10), execution::STOP_SHUTDOWN)
                    .await;
                safe_state_devices(
                    &state.args.section.name,
                    &state.devices,
                    state.args.ctx.call_timeout(),
                );
                // Recorded after the devices are safe: the stop itself never waits for the disk.
                pause::persist(&state.args, Some("emergency stop".to_string())).await;
                tracing::warn!(backend = %state.args.section.name, "emergency stop: devices in their safe state, backend paused");
                let _ = reply.send(());
            }
            BackendMsg::StopCurrent(reply) => {
                let had = state.running.is_some();
                state
                    .stop_running(Duration::from_secs(10), execution::STOP_SHUTDOWN)
                    .await;
                let _ = reply.send(had);
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
        let (who, why) = match &event {
            SupervisionEvent::ActorFailed(cell, err) => (cell.get_name(), err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell.get_name(),
                reason.clone().unwrap_or_else(|| "stopped".into()),
            ),
            _ => return Ok(()),
        };
        if state.restarting {
            return Ok(());
        }
        // Events of children stopped by an earlier restart arrive late: only the current children count.
        let id = match &event {
            SupervisionEvent::ActorFailed(cell, _)
            | SupervisionEvent::ActorTerminated(cell, _, _) => cell.get_id(),
            _ => return Ok(()),
        };
        if !state.children.contains(id) {
            return Ok(());
        }
        let name = state.args.section.name.clone();
        tracing::error!(backend = %name, child = ?who, reason = %why, "backend child failed; restarting the backend's actors together");
        if !state.restarts.allow(Instant::now()) {
            return Err(format!(
                "backend {name}: restart intensity exceeded ({} restarts in {} ms); last failure: {why}",
                state.args.ctx.config().supervision.max_restarts,
                state.args.ctx.config().supervision.period_ms
            )
            .into());
        }
        state.restarting = true;
        state
            .stop_running(Duration::from_secs(5), execution::STOP_FAULT)
            .await;
        myself
            .stop_children_and_wait(
                Some("one_for_all restart".into()),
                Some(Duration::from_secs(5)),
            )
            .await;
        state.clock.lock().shutdown();
        safe_state_devices(&name, &state.devices, state.args.ctx.call_timeout());
        let (clock, children) =
            start_children(&myself, &state.args, &state.devices, &state.cards).await?;
        state.clock = clock;
        state.children = children;
        state.restarting = false;
        if let Some(s) = state.args.ctx.lookup::<SchedulerMsg>(roles::SCHEDULER) {
            let _ = s.cast(SchedulerMsg::BackendIdle(name));
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.restarting = true;
        state
            .stop_running(Duration::from_secs(10), execution::STOP_SHUTDOWN)
            .await;
        myself
            .stop_children_and_wait(
                Some("backend stopping".into()),
                Some(Duration::from_secs(5)),
            )
            .await;
        state.clock.lock().shutdown();
        safe_state_devices(
            &state.args.section.name,
            &state.devices,
            state.args.ctx.call_timeout(),
        );
        Ok(())
    }
}
