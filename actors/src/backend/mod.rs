//! The backend supervisor (`backend:<name>`): one per apparatus, `one_for_all` over its sequencers (one per
//! device), acquisition and analysis, and the coordinator of the execution running on it.
//!
//! It owns the devices and the shot clock thread. Its state is explicit ([`PhaseKind`]: idle, running,
//! stopping, settling, restarting) and its handlers never wait: stopping an execution, settling a job whose
//! execution panicked, a one_for_all restart, an emergency stop and pause writes run in tasks (blocking work
//! — device safe states, joining the shot clock — on their own threads) that report back with a message, so
//! cancels, offers and status questions are answered at once whatever the devices do.
//!
//! The execution is a supervised task ([`supervised::Execution`]): however it ends (normally, by a panic,
//! killed) the backend learns it; when it did not settle its job, the backend does (closed INTERRUPTED,
//! re-queued or ERROR per the recovery rules, lock released, devices safe) and takes the next job.
//!
//! When any child fails it stops the current execution at a shot boundary (the job is re-queued, or ended
//! ERROR after too many attempts), stops every child, drives every device to its safe state, builds a fresh
//! shot clock and restarts all children together. Above the restart intensity it fails itself and the root
//! decides.

pub mod devices;
pub mod estop;
pub mod execution;
pub mod lease;
pub mod pause;
pub mod recover;
pub mod safety;
pub mod supervised;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use shotline_config::{BackendSection, UnderflowPolicy as CfgPolicy};
use shotline_hal::realtime::RealtimeOptions;
use shotline_hal::shot_clock::{self, ClockConfig, ClockControl, UnderflowPolicy};
use shotline_hal::time::MonotonicTimer;
use shotline_hal::DeviceHandle;
use shotline_protocol::wire::BackendEstop;
use shotline_protocol::BackendConfig;
use tokio::sync::watch;

use crate::acquisition::{AcquisitionActor, AcquisitionArgs, AcquisitionMsg, ShotBacklog};
use crate::analysis::{AnalysisActor, AnalysisArgs, AnalysisMsg};
use crate::context::{roles, Ctx};
use crate::persistence::Db;
use crate::registry::RegistryMsg;
use crate::scheduler::SchedulerMsg;
use crate::sequencer::{SequencerActor, SequencerArgs, SequencerMsg};
use crate::supervision::{RestartPolicy, RestartTracker};
use execution::{ExecEnd, ExecEnv};
use pause::PauseWriter;
use safety::NamedDevice;
use supervised::Execution;

/// How long a deferred job waits before it is offered again.
pub const DEFER_RETRY: Duration = Duration::from_secs(1);
/// How long a pause, a stop or a shutdown waits for the execution to reach a shot boundary before it is
/// killed and its job re-queued directly.
pub const STOP_WAIT: Duration = Duration::from_secs(10);
/// The same for a one_for_all restart.
pub const RESTART_STOP_WAIT: Duration = Duration::from_secs(5);
/// After an emergency stop's answer, how long a device still held keeps being driven to its safe state.
pub const SAFE_KEEP_TRYING: Duration = Duration::from_secs(60);

/// Messages of a backend supervisor.
pub enum BackendMsg {
    /// The scheduler offers a queued job; answers whether it was taken.
    Offer(String, RpcReplyPort<bool>),
    /// The execution `seq` of job `job_id` ended, however it ended (from its supervising watcher).
    ExecutionEnded {
        /// Sequence number of the execution.
        seq: u64,
        /// Its job.
        job_id: String,
        /// How it ended.
        end: ExecEnd,
    },
    /// What is running now (the job id).
    Current(RpcReplyPort<Option<String>>),
    /// What the backend is doing.
    Phase(RpcReplyPort<PhaseKind>),
    /// Stop the current execution at the next shot boundary and re-queue it; answers (whether one ran) once
    /// its job left RUNNING.
    StopCurrent(RpcReplyPort<bool>),
    /// Cancel job `.0` if it is the one running: it stops at the next shot boundary and ends CANCELLED.
    Cancel(String, RpcReplyPort<bool>),
    /// Pause (true) or resume (false): a paused backend takes no job; pausing re-queues the running one.
    /// Answers once the pause is recorded and the running job left RUNNING (bounded).
    SetPaused(bool, RpcReplyPort<()>),
    /// Emergency stop: pause, abort the running shot sequence at once, every device to its safe state;
    /// answers per device whether the safe state was reached within the call timeout.
    Estop(RpcReplyPort<BackendEstop>),
    /// Whether the backend is paused.
    IsPaused(RpcReplyPort<bool>),
    /// Fault injection: a device, clock, execution or analysis fault (tests and drills).
    InjectFault(
        crate::faults::FaultSpec,
        RpcReplyPort<Result<String, String>>,
    ),
    /// Fault injection: panic inside the handler (tests and drills).
    InjectPanic,
    /// Internal: the stop of execution `.0` was asked [`STOP_WAIT`] ago.
    StopDeadline(u64),
    /// Internal: the job of execution `.0`, which ended without settling it, is settled.
    Settled(u64),
    /// Internal: restart `.0` stopped the old children and clock and made the devices safe.
    RestartReady(u64),
    /// Internal, shared store only (every half lease): while idle, settle the jobs a dead server left
    /// RUNNING on this backend once its lease expired, and let the scheduler pick up jobs queued elsewhere.
    LeaseSweep,
}

/// What a backend is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseKind {
    /// Nothing runs: offers are taken unless paused.
    Idle,
    /// An execution runs.
    Running,
    /// An execution was asked to stop at its next shot boundary.
    Stopping,
    /// An execution ended without settling its job (panic, killed); the job, lock and devices are being
    /// settled.
    Settling,
    /// A one_for_all restart is under way.
    Restarting,
}

enum Phase {
    Idle,
    Running(Execution),
    Settling {
        seq: u64,
        job_id: String,
    },
    Restarting {
        generation: u64,
        execution: Option<Execution>,
    },
}

impl Phase {
    /// The job occupying the backend.
    fn job(&self) -> Option<String> {
        match self {
            Phase::Idle => None,
            Phase::Running(e) => Some(e.job_id.clone()),
            Phase::Settling { job_id, .. } => Some(job_id.clone()),
            Phase::Restarting { execution, .. } => execution.as_ref().map(|e| e.job_id.clone()),
        }
    }
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
    /// Its model (compiler, analysis, calibration).
    pub model: Arc<dyn shotline_models::BackendModel>,
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

/// State of a backend supervisor.
pub struct BackendState {
    args: BackendArgs,
    devices: Vec<DeviceHandle>,
    clock: Arc<parking_lot::Mutex<ClockControl>>,
    children: Children,
    phase: Phase,
    /// The job occupying the backend (running, stopping, settling), for tasks waiting for it to leave.
    busy: watch::Sender<Option<String>>,
    next_seq: u64,
    generation: u64,
    restarts: RestartTracker,
    paused: bool,
    pauses: Arc<PauseWriter>,
    faults: Vec<(String, shotline_hal::sim::FaultSwitch)>,
    /// Timing-card session status per device (`driver: bridge` only), for the sequencers.
    cards: Vec<Option<shotline_hal::bridge::StatusHandle>>,
    /// Fault injection: the next execution panics.
    panic_next: Arc<AtomicBool>,
    /// Fault injection: analysis time per shot (µs).
    analysis_delay: Arc<AtomicU64>,
}

/// The backend supervisor actor.
pub struct BackendActor;

impl Drop for BackendState {
    fn drop(&mut self) {
        // Also when the supervisor is killed (no post_stop): its execution must not outlive it. It is
        // killed, not asked to stop: like a crash, it must not settle its job, which stays RUNNING for
        // the recovery of the restarted backend. The shot clock shuts down with the last handle on it.
        match &self.phase {
            Phase::Running(e)
            | Phase::Restarting {
                execution: Some(e), ..
            } => e.kill(),
            _ => {}
        }
    }
}

pub fn clock_config(section: &BackendSection) -> ClockConfig {
    let t = &section.timing;
    ClockConfig {
        lead_ns: t.lead_ns,
        cycle_ns: t.cycle_ns,
        slack_ns: t.slack_ns,
        underflow_policy: match t.underflow_policy {
            CfgPolicy::Fail => UnderflowPolicy::Fail,
            CfgPolicy::Record => UnderflowPolicy::Record,
            CfgPolicy::Abort => UnderflowPolicy::Abort,
        },
        shot_ring: t.shot_ring as usize,
        event_ring: t.event_ring as usize,
        realtime: RealtimeOptions {
            enabled: t.realtime.enabled,
            priority: t.realtime.priority,
            cpu: t.realtime.cpu,
            mlock: t.realtime.mlock,
        },
        spin_shots_up_to_ns: t.spin_shots_up_to_ns,
    }
}

async fn start_children(
    myself: &ActorRef<BackendMsg>,
    args: &BackendArgs,
    devices: &[DeviceHandle],
    cards: &[Option<shotline_hal::bridge::StatusHandle>],
    analysis_delay: &Arc<AtomicU64>,
) -> Result<(Arc<parking_lot::Mutex<ClockControl>>, Children), ActorProcessingErr> {
    let name = &args.section.name;
    let (control, outputs) = shot_clock::spawn(
        name,
        clock_config(&args.section),
        Box::new(MonotonicTimer::new(args.section.timing.sleep_margin_ns)),
    )?;
    let cell = myself.get_cell();
    // At most a ring's worth of shot records waits in analysis's mailbox; beyond, they stay in the ring.
    let backlog = ShotBacklog::new(clock_config(&args.section).shot_ring);
    let (analysis, _) = Actor::spawn_linked(
        Some(args.ctx.name(&roles::backend_child(name, "analysis"))),
        AnalysisActor,
        AnalysisArgs {
            ctx: args.ctx.clone(),
            backlog: backlog.clone(),
            delay_us: analysis_delay.clone(),
            model: args.model.clone(),
        },
        cell.clone(),
    )
    .await?;
    let (acquisition, _) = Actor::spawn_linked(
        Some(args.ctx.name(&roles::backend_child(name, "acquisition"))),
        AcquisitionActor,
        AcquisitionArgs {
            outputs,
            analysis: analysis.clone(),
            backlog,
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
                name: section.name.clone(),
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
                let Some(clock) = self.clock.try_lock_for(Duration::from_millis(50)) else {
                    return Err("the shot clock is being replaced; try again".into());
                };
                clock.delay_next_event(delay_ns);
                tracing::warn!(backend = %self.args.section.name, delay_ns, "clock delay injected");
                Ok(format!("the next event is applied {delay_ns} ns late"))
            }
            FaultSpec::ExecutionPanic { .. } => {
                self.panic_next.store(true, Ordering::SeqCst);
                tracing::warn!(backend = %self.args.section.name, "execution panic injected");
                Ok("the next execution panics at its first experiment".into())
            }
            FaultSpec::AnalysisDelay { delay_us, .. } => {
                self.analysis_delay.store(delay_us, Ordering::SeqCst);
                tracing::warn!(backend = %self.args.section.name, delay_us, "analysis delay injected");
                Ok(format!("analysis spends {delay_us} µs on every shot"))
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
            model: self.args.model.clone(),
            devices: self.devices.clone(),
            sequencers: self.children.sequencers.clone(),
            analysis: self.children.analysis.clone(),
            clock: self.clock.clone(),
            panic_next: self.panic_next.clone(),
        }
    }

    fn named_devices(&self) -> Vec<NamedDevice> {
        safety::named(&self.args.section, &self.devices)
    }

    fn kind(&self) -> PhaseKind {
        match &self.phase {
            Phase::Idle => PhaseKind::Idle,
            Phase::Running(e) if e.stopping() => PhaseKind::Stopping,
            Phase::Running(_) => PhaseKind::Running,
            Phase::Settling { .. } => PhaseKind::Settling,
            Phase::Restarting { .. } => PhaseKind::Restarting,
        }
    }

    fn set_phase(&mut self, phase: Phase) {
        self.phase = phase;
        self.busy.send_replace(self.phase.job());
    }

    /// Aborts the shot clock's runs (they stop at their next shot boundary). Never waits: the clock's mutex
    /// is held either by the execution handing over a run (which checks its stop flag right after and aborts
    /// the clock itself) or by a restart joining the old clock (which aborts it anyway).
    fn abort_clock(&self) {
        match self.clock.try_lock() {
            Some(c) => c.abort(),
            None => {
                tracing::debug!(backend = %self.args.section.name, "shot clock held elsewhere; its holder aborts it")
            }
        }
    }

    /// Records a pause change in the store from a task, in order; the handle ends when it is written.
    fn write_pause(&self, reason: Option<String>) -> tokio::task::JoinHandle<()> {
        let (writer, args) = (self.pauses.clone(), self.args.clone());
        let generation = writer.next();
        tokio::spawn(async move { writer.write(&args, generation, reason).await })
    }

    fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
        set_registry_paused(&self.args, paused);
    }

    /// Asks the running execution to stop at its next shot boundary for `why` and arms its deadline; the job
    /// being stopped, if any.
    fn stop_execution(&mut self, myself: &ActorRef<BackendMsg>, why: u8) -> Option<String> {
        match &self.phase {
            Phase::Running(e) => {
                e.request_stop(why);
                self.abort_clock();
                let seq = e.seq;
                myself.send_after(STOP_WAIT, move || BackendMsg::StopDeadline(seq));
                Some(e.job_id.clone())
            }
            // Already being stopped by the restart.
            Phase::Restarting {
                execution: Some(e), ..
            } => Some(e.job_id.clone()),
            _ => None,
        }
    }

    /// Waits up to `timeout` until `job` no longer occupies the backend; whether it left.
    fn wait_free(
        &self,
        job: Option<String>,
        timeout: Duration,
    ) -> impl std::future::Future<Output = bool> + Send + 'static {
        let mut rx = self.busy.subscribe();
        async move {
            let Some(job) = job else { return true };
            let left = matches!(
                tokio::time::timeout(timeout, rx.wait_for(|b| b.as_deref() != Some(job.as_str())))
                    .await,
                Ok(Ok(_))
            );
            left
        }
    }

    fn scheduler_idle(&self) {
        if let Some(s) = self.args.ctx.lookup::<SchedulerMsg>(roles::SCHEDULER) {
            let _ = s.cast(SchedulerMsg::BackendIdle(self.args.section.name.clone()));
        }
    }

    /// The execution ended without settling its job (panic, killed): settle it in a task (devices safe,
    /// job closed per the recovery rules, lock released) that reports [`BackendMsg::Settled`].
    fn settle(
        &mut self,
        myself: &ActorRef<BackendMsg>,
        e: Execution,
        cause: String,
        counted: bool,
    ) {
        // The clock may still play the run the execution handed it.
        self.abort_clock();
        let (seq, job_id) = (e.seq, e.job_id.clone());
        self.set_phase(Phase::Settling {
            seq,
            job_id: job_id.clone(),
        });
        let ctx = self.args.ctx.clone();
        let backend = self.args.section.name.clone();
        let devices = self.named_devices();
        let me = myself.clone();
        let name = backend.clone();
        supervised::spawn_step(
            name,
            "settle",
            async move {
                let wait = ctx.call_timeout();
                safety::drive_safe(&backend, &devices, wait, wait).await;
                recover::settle_job(&ctx, &backend, &job_id, &cause, counted).await;
                recover::force_release(&ctx, &backend).await;
                if let Some(r) = ctx.lookup::<RegistryMsg>(roles::REGISTRY) {
                    let _ = r.cast(RegistryMsg::SetRunning(backend.clone(), None));
                }
            },
            async move {
                let _ = me.cast(BackendMsg::Settled(seq));
            },
        );
    }

    fn execution_ended(
        &mut self,
        myself: &ActorRef<BackendMsg>,
        seq: u64,
        job_id: &str,
        end: ExecEnd,
    ) {
        let name = self.args.section.name.clone();
        tracing::info!(backend = %name, job = %job_id, ?end, "execution ended");
        if let ExecEnd::DeviceFault {
            device,
            reason,
            pause_backend: true,
            ..
        } = &end
        {
            self.set_paused(true);
            drop(self.write_pause(Some(format!("device fault: {reason}"))));
            tracing::error!(backend = %name, %device, %reason, "backend paused after a device fault (device_faults.pause_backend); resume it when the apparatus is fixed");
        }
        if let Phase::Restarting { execution, .. } = &mut self.phase {
            // The restart task waits for it on its own; only the record of what occupies the backend changes.
            if execution.as_ref().is_some_and(|e| e.seq == seq) {
                *execution = None;
                self.busy.send_replace(self.phase.job());
            }
            return;
        }
        let e = match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Running(e) if e.seq == seq => e,
            other => {
                // A late report of an execution this backend no longer tracks.
                self.phase = other;
                return;
            }
        };
        match end {
            ExecEnd::Panicked { reason } => {
                tracing::error!(backend = %name, job = %job_id, %reason, "the execution panicked; settling its job");
                self.settle(
                    myself,
                    e,
                    format!("interrupted by a panic of its execution ({reason})"),
                    true,
                );
            }
            ExecEnd::Killed => {
                let counted = e.stop_reason() == execution::STOP_FAULT;
                self.settle(
                    myself,
                    e,
                    "stopped: the execution did not reach a shot boundary in time".into(),
                    counted,
                );
            }
            ExecEnd::Deferred { reason } => {
                self.set_phase(Phase::Idle);
                // The job is still QUEUED: the scheduler reloads its queue from the store a little later
                // instead of offering the same job again at once.
                tracing::warn!(job = %job_id, %reason, "job deferred; it stays queued");
                if let Some(s) = self.args.ctx.lookup::<SchedulerMsg>(roles::SCHEDULER) {
                    s.send_after(DEFER_RETRY, || SchedulerMsg::Reload);
                }
            }
            _ => {
                self.set_phase(Phase::Idle);
                self.scheduler_idle();
            }
        }
    }

    fn estop(&mut self, myself: &ActorRef<BackendMsg>, reply: RpcReplyPort<BackendEstop>) {
        let backend = self.args.section.name.clone();
        self.set_paused(true);
        // Abort first (every run stops at its next shot boundary), then everything else at once.
        self.abort_clock();
        let job = self.stop_execution(myself, execution::STOP_SHUTDOWN);
        let written = self.write_pause(Some("emergency stop".to_string()));
        let deadline = self.args.ctx.call_timeout();
        let free = self.wait_free(job.clone(), deadline);
        let devices = self.named_devices();
        tokio::spawn(async move {
            let (devices, settled, _) = tokio::join!(
                safety::drive_safe(&backend, &devices, deadline, SAFE_KEEP_TRYING),
                free,
                // Recorded alongside: the stop never waits for the disk beyond its deadline.
                tokio::time::timeout(deadline, written),
            );
            let safe = devices.iter().all(|d| d.safe);
            if safe {
                tracing::warn!(%backend, "emergency stop: devices in their safe state, backend paused");
            } else {
                tracing::error!(%backend, "emergency stop: NOT every device reached its safe state");
            }
            let _ = reply.send(BackendEstop {
                backend,
                answered: true,
                paused: true,
                job_settled: job.is_some() && settled,
                job_id: job,
                devices,
                error: None,
            });
        });
    }

    /// A child failed: stop the execution, then (in a task) the children, the clock, the devices; the
    /// restart ends with [`BackendMsg::RestartReady`].
    fn begin_restart(&mut self, myself: &ActorRef<BackendMsg>) {
        self.generation += 1;
        let generation = self.generation;
        let execution = match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Running(e) => {
                e.request_stop(execution::STOP_FAULT);
                Some(e)
            }
            _ => None,
        };
        self.abort_clock();
        self.set_phase(Phase::Restarting {
            generation,
            execution: execution.clone(),
        });
        let ctx = self.args.ctx.clone();
        let backend = self.args.section.name.clone();
        let devices = self.named_devices();
        let clock = self.clock.clone();
        let me = myself.clone();
        let ready = myself.clone();
        supervised::spawn_step(
            backend.clone(),
            "restart",
            async move {
                stop_and_settle(
                    &ctx,
                    &backend,
                    execution,
                    RESTART_STOP_WAIT,
                    "stopped by a backend restart",
                )
                .await;
                me.stop_children_and_wait(
                    Some("one_for_all restart".into()),
                    Some(Duration::from_secs(5)),
                )
                .await;
                shut_down_clock(clock).await;
                let wait = ctx.call_timeout();
                safety::drive_safe(&backend, &devices, wait, wait).await;
            },
            async move {
                let _ = ready.cast(BackendMsg::RestartReady(generation));
            },
        );
    }
}

/// Stops `execution` (if any) and waits up to `wait` for it to end (then kills it); settles its job if it
/// is still RUNNING (counted when it was stopped for a fault) and releases the backend's lock.
async fn stop_and_settle(
    ctx: &Ctx,
    backend: &str,
    execution: Option<Execution>,
    wait: Duration,
    cause: &str,
) {
    let Some(e) = execution else { return };
    if !e.wait_ended(wait).await {
        tracing::warn!(%backend, job = %e.job_id, "execution did not stop in time; settling its job directly");
        e.kill();
        e.wait_ended(Duration::from_secs(1)).await;
    }
    let counted = e.stop_reason() == execution::STOP_FAULT;
    recover::settle_job(ctx, backend, &e.job_id, cause, counted).await;
    recover::force_release(ctx, backend).await;
    if let Some(r) = ctx.lookup::<RegistryMsg>(roles::REGISTRY) {
        let _ = r.cast(RegistryMsg::SetRunning(backend.to_string(), None));
    }
}

/// The idle sweep of a backend on a shared store (see [`BackendMsg::LeaseSweep`]).
async fn sweep(ctx: &Ctx, backend: &str) {
    match lease::orphans_possible(ctx, backend).await {
        Ok(true) => {
            if let Err(e) =
                lease::settle_under_lease(ctx, backend, "interrupted: its server's lease expired")
                    .await
            {
                tracing::warn!(%backend, error = %e, "lease sweep: could not settle orphaned jobs");
            }
        }
        Ok(false) => {}
        Err(e) => tracing::debug!(%backend, error = %e, "lease sweep: store unavailable"),
    }
    if let Some(s) = ctx.lookup::<SchedulerMsg>(roles::SCHEDULER) {
        let _ = s.cast(SchedulerMsg::Reload);
    }
}

/// Shuts the shot clock down on a blocking thread (it joins the clock thread).
async fn shut_down_clock(clock: Arc<parking_lot::Mutex<ClockControl>>) {
    let _ = tokio::task::spawn_blocking(move || clock.lock().shutdown()).await;
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
        recover::recover(&args).await;
        let model = args
            .ctx
            .model_of(&args.section)
            .map_err(|e| format!("backend {}: {e}", args.section.name))?;
        let built =
            devices::build(&args.section, args.ctx.drivers(), model.as_ref()).map_err(|e| {
                format!(
                    "backend {}: cannot create its devices: {e}",
                    args.section.name
                )
            })?;
        // Whatever a previous process left behind, start from the safe state.
        let wait = args.ctx.call_timeout();
        safety::drive_safe(
            &args.section.name,
            &safety::named(&args.section, &built.handles),
            wait,
            wait,
        )
        .await;
        let analysis_delay = Arc::new(AtomicU64::new(0));
        let (clock, children) = start_children(
            &myself,
            &args,
            &built.handles,
            &built.cards,
            &analysis_delay,
        )
        .await?;
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
        if args.ctx.shared_store() {
            let every = (args.ctx.lock_lease() / 2).max(Duration::from_millis(500));
            myself.send_interval(every, || BackendMsg::LeaseSweep);
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
            phase: Phase::Idle,
            busy: watch::channel(None).0,
            next_seq: 0,
            generation: 0,
            paused,
            pauses: Arc::new(PauseWriter::default()),
            faults: built.faults,
            cards: built.cards,
            panic_next: Arc::new(AtomicBool::new(false)),
            analysis_delay,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: BackendMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // No arm waits: long work runs in tasks that answer the caller or report back with a message.
        match msg {
            BackendMsg::IsPaused(reply) => {
                let _ = reply.send(state.paused);
            }
            BackendMsg::Phase(reply) => {
                let _ = reply.send(state.kind());
            }
            BackendMsg::InjectFault(spec, reply) => {
                let _ = reply.send(state.inject(spec));
            }
            BackendMsg::InjectPanic => panic!("injected fault: BackendMsg panics on request"),
            BackendMsg::LeaseSweep => {
                if matches!(state.phase, Phase::Idle) && !state.paused {
                    let ctx = state.args.ctx.clone();
                    let backend = state.args.section.name.clone();
                    tokio::spawn(async move { sweep(&ctx, &backend).await });
                }
            }
            BackendMsg::Offer(job_id, reply) => {
                if !matches!(state.phase, Phase::Idle) || state.paused {
                    let _ = reply.send(false);
                    return Ok(());
                }
                state.next_seq += 1;
                let e = Execution::spawn(state.next_seq, state.env(), job_id, myself.clone());
                state.set_phase(Phase::Running(e));
                let _ = reply.send(true);
            }
            BackendMsg::ExecutionEnded { seq, job_id, end } => {
                state.execution_ended(&myself, seq, &job_id, end);
            }
            BackendMsg::Settled(seq) => {
                if matches!(state.phase, Phase::Settling { seq: s, .. } if s == seq) {
                    state.set_phase(Phase::Idle);
                    state.scheduler_idle();
                }
            }
            BackendMsg::StopDeadline(seq) => {
                if let Phase::Running(e) = &state.phase {
                    if e.seq == seq {
                        tracing::warn!(backend = %state.args.section.name, job = %e.job_id, "execution did not stop in time; killing it and settling its job directly");
                        e.kill();
                    }
                }
            }
            BackendMsg::Current(reply) => {
                let _ = reply.send(state.phase.job());
            }
            BackendMsg::Cancel(job_id, reply) => {
                let hit = match &state.phase {
                    Phase::Running(e) if e.job_id == job_id => {
                        e.stop.store(execution::STOP_CANCEL, Ordering::SeqCst);
                        state.abort_clock();
                        true
                    }
                    Phase::Restarting {
                        execution: Some(e), ..
                    } if e.job_id == job_id => {
                        // Its clock is already aborted by the restart.
                        e.stop.store(execution::STOP_CANCEL, Ordering::SeqCst);
                        true
                    }
                    _ => false,
                };
                let _ = reply.send(hit);
            }
            BackendMsg::SetPaused(paused, reply) => {
                state.set_paused(paused);
                let written =
                    state.write_pause(paused.then(|| "paused by an operator".to_string()));
                let free = if paused {
                    let job = state.stop_execution(&myself, execution::STOP_SHUTDOWN);
                    Some(state.wait_free(job, STOP_WAIT + Duration::from_secs(5)))
                } else {
                    if matches!(state.phase, Phase::Idle) {
                        state.scheduler_idle();
                    }
                    None
                };
                tokio::spawn(async move {
                    let _ = written.await;
                    if let Some(free) = free {
                        free.await;
                    }
                    let _ = reply.send(());
                });
            }
            BackendMsg::Estop(reply) => state.estop(&myself, reply),
            BackendMsg::StopCurrent(reply) => {
                let job = state.stop_execution(&myself, execution::STOP_SHUTDOWN);
                let had = job.is_some();
                let free = state.wait_free(job, STOP_WAIT + Duration::from_secs(5));
                tokio::spawn(async move {
                    free.await;
                    let _ = reply.send(had);
                });
            }
            BackendMsg::RestartReady(generation) => {
                if !matches!(state.phase, Phase::Restarting { generation: g, .. } if g == generation)
                {
                    return Ok(());
                }
                let (clock, children) = start_children(
                    &myself,
                    &state.args,
                    &state.devices,
                    &state.cards,
                    &state.analysis_delay,
                )
                .await?;
                state.clock = clock;
                state.children = children;
                state.set_phase(Phase::Idle);
                tracing::info!(backend = %state.args.section.name, "backend restarted");
                state.scheduler_idle();
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
        let (who, why, id) = match &event {
            SupervisionEvent::ActorFailed(cell, err) => {
                (cell.get_name(), err.to_string(), cell.get_id())
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell.get_name(),
                reason.clone().unwrap_or_else(|| "stopped".into()),
                cell.get_id(),
            ),
            _ => return Ok(()),
        };
        if matches!(state.phase, Phase::Restarting { .. }) {
            return Ok(());
        }
        // Events of children stopped by an earlier restart arrive late: only the current children count.
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
        state.begin_restart(&myself);
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // No message is handled any more: wait here, with the blocking parts on their own threads.
        let execution = match std::mem::replace(&mut state.phase, Phase::Idle) {
            Phase::Running(e) => Some(e),
            Phase::Restarting { execution, .. } => execution,
            _ => None,
        };
        if let Some(e) = &execution {
            e.request_stop(execution::STOP_SHUTDOWN);
            state.abort_clock();
        }
        let (ctx, name) = (state.args.ctx.clone(), state.args.section.name.clone());
        stop_and_settle(
            &ctx,
            &name,
            execution,
            STOP_WAIT,
            "stopped by the backend's shutdown",
        )
        .await;
        myself
            .stop_children_and_wait(
                Some("backend stopping".into()),
                Some(Duration::from_secs(5)),
            )
            .await;
        shut_down_clock(state.clock.clone()).await;
        let wait = ctx.call_timeout();
        safety::drive_safe(&name, &state.named_devices(), wait, wait).await;
        state.pauses.flush().await;
        Ok(())
    }
}
