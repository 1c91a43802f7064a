//! One execution: a job played on a backend from lock to result.
//!
//! The steps: create the execution (id `YYYYMMDD-NNN`, provenance) and mark the job RUNNING in one commit;
//! take the backend's lock (owner = execution id); for each experiment compile the timelines, program every
//! device in parallel through its sequencer, register the run with analysis, start the shot clock and wait
//! for the analysed outcome; then commit the shot data, the result, the end of the execution and DONE in a
//! single transaction (a job never ends with two results). Any failure ends the job ERROR with the reason,
//! names the device and event where there is one, and brings the devices to their safe state.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use shotline_config::{BackendSection, DeviceFaultAction, OverflowPolicy};
use shotline_hal::shot_clock::{ClockControl, ExperimentRun, RunOutcome};
use shotline_hal::DeviceHandle;
use shotline_protocol::{
    BackendConfig, ExperimentData, ExperimentHeader, ExperimentResult, Job, JobResult, JobStatus,
    StatusRecord,
};
use shotline_store::{ExecutionEnd, ExecutionRecord, ShotDataRecord};
use tokio::sync::oneshot;

use super::lease;
use crate::analysis::{AnalysisMsg, ExperimentOutcome, RunProgress};
use crate::context::{roles, Ctx, SOFTWARE_VERSION};
use crate::lock_manager::LockMsg;
use crate::persistence::Db;
use crate::registry::RegistryMsg;
use crate::sequencer::{SequencerError, SequencerMsg};
use crate::time::{utc_day, utc_now};
use shotline_models::{shot_period_ns, BackendModel, CalibrationValue};

static RUN_IDS: AtomicU64 = AtomicU64::new(1);

/// The execution runs on.
pub const STOP_NONE: u8 = 0;
/// Stop at the next shot boundary for a clean shutdown (re-queue, not counted as a failed attempt).
pub const STOP_SHUTDOWN: u8 = 1;
/// Stop at the next shot boundary because the backend is restarting after a fault (counted).
pub const STOP_FAULT: u8 = 2;
/// Stop at the next shot boundary because the user cancelled the job: it ends CANCELLED.
pub const STOP_CANCEL: u8 = 3;
/// Stop at the next shot boundary because the backend's lease was lost (see `lease.rs`): on a shared store
/// the job is left RUNNING for the next lease holder to settle; on SQLite it is re-queued (counted).
pub const STOP_LEASE: u8 = 4;

/// Everything an execution needs from its backend.
#[derive(Clone)]
pub struct ExecEnv {
    /// Runtime context.
    pub ctx: Ctx,
    /// Store facade.
    pub db: Db,
    /// The backend's configuration.
    pub section: BackendSection,
    /// What the backend publishes.
    pub published: BackendConfig,
    /// The backend's model (compiler, calibration).
    pub model: Arc<dyn BackendModel>,
    /// Devices, in configuration order.
    pub devices: Vec<DeviceHandle>,
    /// Their sequencers (same order).
    pub sequencers: Vec<ActorRef<SequencerMsg>>,
    /// The analysis actor.
    pub analysis: ActorRef<AnalysisMsg>,
    /// The backend's shot clock.
    pub clock: Arc<parking_lot::Mutex<ClockControl>>,
    /// Fault injection: the execution panics at the start of its next experiment.
    pub panic_next: Arc<std::sync::atomic::AtomicBool>,
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecEnd {
    /// The job was not QUEUED any more (cancelled or handled elsewhere).
    Skipped,
    /// The job could not start now (store unavailable, lock held): it stays QUEUED and is offered again.
    Deferred {
        /// Why.
        reason: String,
    },
    /// DONE, result committed.
    Done {
        /// Execution id.
        execution_id: String,
    },
    /// ERROR committed with this reason.
    Failed {
        /// Execution id, if one was created.
        execution_id: Option<String>,
        /// Why.
        reason: String,
    },
    /// A device failed (in a shot, while arming or while programming); `then` is what happened to the job
    /// (per `device_faults.action`).
    DeviceFault {
        /// The device.
        device: String,
        /// The fault.
        reason: String,
        /// The backend must pause its queue.
        pause_backend: bool,
        /// The job's end.
        then: Box<ExecEnd>,
    },
    /// Cancelled by its owner at a shot boundary.
    Cancelled {
        /// Execution id.
        execution_id: String,
        /// Shots completed before the cancel.
        shots_done: u64,
    },
    /// Stopped at a shot boundary (shutdown, pause) and put back in the queue.
    Requeued {
        /// Execution id.
        execution_id: String,
    },
    /// The execution task panicked: nothing of its job was settled; the backend settles it.
    Panicked {
        /// The panic message.
        reason: String,
    },
    /// The execution task was killed (it did not stop in time, or its backend went away): the backend
    /// settles its job.
    Killed,
}

/// How an execution record is closed (`executions.outcome` in the store).
pub use shotline_store::ExecutionOutcome as ExecOutcome;

/// The typed status of a stored job (`None`: a value no release writes).
pub fn job_status(job: &shotline_store::JobRecord) -> Option<JobStatus> {
    job.job_status()
}

/// The lock resource of a backend.
pub fn lock_resource(backend: &str) -> String {
    format!("backend:{backend}")
}

/// Seed used when the job has none: chosen once per job and reused by every later execution of it, so a
/// re-run reproduces the first.
async fn job_seed(db: &Db, job_id: &str) -> Result<u64, String> {
    let id = job_id.to_string();
    let previous = db
        .run(move |e| async move { e.executions_for_job(&id).await })
        .await
        .map_err(|e| e.to_string())?;
    if let Some(first) = previous.first() {
        return Ok(first.seed);
    }
    Ok(rand::random::<u64>())
}

/// Runs job `job_id`. Never panics on job content; every error ends in a committed status.
pub async fn run(env: ExecEnv, job_id: String, stop: Arc<AtomicU8>) -> ExecEnd {
    let id = job_id.clone();
    let job = match env.db.run(move |e| async move { e.job(&id).await }).await {
        Ok(Some(j)) if job_status(&j) == Some(JobStatus::Queued) => j,
        Ok(_) => return ExecEnd::Skipped,
        Err(e) => {
            return ExecEnd::Deferred {
                reason: format!("could not read the job: {e}"),
            }
        }
    };
    let parsed: Job = match serde_json::from_str(&job.body) {
        Ok(j) => j,
        Err(e) => {
            return fail(
                &env,
                &job_id,
                None,
                format!("stored job body is unreadable: {e}"),
            )
            .await
        }
    };
    let seed = match job_seed(&env.db, &job_id).await {
        Ok(s) => s,
        Err(e) => {
            return ExecEnd::Deferred {
                reason: format!("store: {e}"),
            }
        }
    };
    let day = utc_day();
    let execution_id = match env
        .db
        .run(move |e| async move { e.next_execution_id(&day).await })
        .await
    {
        Ok(x) => x,
        Err(e) => {
            return ExecEnd::Deferred {
                reason: format!("store: {e}"),
            }
        }
    };
    // Lock the backend's devices for this execution.
    let resource = lock_resource(&env.section.name);
    match lock(&env, LockAction::Acquire, &resource, &execution_id).await {
        Ok(()) => {}
        Err(e) => {
            return ExecEnd::Deferred {
                reason: format!("backend lock not granted: {e}"),
            }
        }
    }
    let record = ExecutionRecord {
        id: execution_id.clone(),
        job_id: job_id.clone(),
        backend: env.section.name.clone(),
        attempt: job.attempts + 1,
        seed,
        config_hash: env.ctx.config_hash().to_string(),
        software_version: SOFTWARE_VERSION.to_string(),
        calibration: calibration_json(env.model.as_ref(), &env.section),
        started_at: utc_now(),
        ended_at: None,
        outcome: None,
        detail: None,
    };
    // On a shared store the lease may have been taken over from a server that died: the jobs it left
    // RUNNING on this backend are settled by the new holder before anything else runs.
    if env.ctx.shared_store() {
        if let Err(e) = lease::settle_backend(
            &env.ctx,
            &env.section.name,
            "interrupted: its server's lease expired",
        )
        .await
        {
            release(&env, &resource, &execution_id).await;
            return ExecEnd::Deferred {
                reason: format!("store: {e}"),
            };
        }
    }
    let _renewal = lease::Renewal::start(
        &env.ctx,
        &resource,
        &execution_id,
        stop.clone(),
        env.clock.clone(),
    );
    // A cancel may have come between the offer and now: the store starts only a job that is still queued.
    let started = env
        .db
        .run(move |e| async move { e.start_execution(&record).await })
        .await;
    match started {
        Ok(true) => env.ctx.publish_status(StatusRecord {
            job_id: job_id.clone(),
            status: JobStatus::Running,
            detail: format!("execution {execution_id}"),
            error_message: String::new(),
        }),
        Ok(false) => {
            release(&env, &resource, &execution_id).await;
            return ExecEnd::Skipped;
        }
        Err(e) => {
            release(&env, &resource, &execution_id).await;
            return ExecEnd::Deferred {
                reason: format!("store: {e}"),
            };
        }
    }
    if let Some(registry) = env.ctx.lookup::<RegistryMsg>(roles::REGISTRY) {
        let _ = registry.cast(RegistryMsg::SetRunning(
            env.section.name.clone(),
            Some(execution_id.clone()),
        ));
    }
    let outcome = play_all(&env, &job_id, &execution_id, &parsed, seed, &stop).await;
    safe_state_all(&env).await;
    let end = match outcome {
        Ok(results) => commit_done(&env, &job_id, &execution_id, &parsed, results).await,
        Err(PlayError::Stopped { shots_done }) => match stop.load(Ordering::SeqCst) {
            STOP_CANCEL => {
                let total = parsed.total_shots();
                cancelled(&env, &job_id, &execution_id, shots_done, total).await
            }
            STOP_LEASE if env.ctx.shared_store() => {
                // Another server may hold the lease now: the job is its to settle.
                tracing::error!(job = %job_id, execution = %execution_id, "lease lost: the job is left to the lease's next holder");
                ExecEnd::Skipped
            }
            reason => requeue(&env, &job_id, &execution_id, reason != STOP_SHUTDOWN).await,
        },
        Err(PlayError::Failed(reason)) => {
            fail(&env, &job_id, Some(execution_id.clone()), reason).await
        }
        Err(PlayError::Abandoned) => ExecEnd::Skipped,
        Err(PlayError::DeviceFault { device, reason }) => {
            // Every device is already in its safe state (above); the policy decides the job's fate.
            let policy = &env.section.device_faults;
            tracing::error!(job = %job_id, %device, %reason, "device fault");
            let end = match policy.action {
                DeviceFaultAction::Retry => {
                    let max = env.ctx.config().recovery.max_attempts;
                    let (jid, xid, why) = (job_id.clone(), execution_id.clone(), reason.clone());
                    let r = env
                        .db
                        .run(move |e| async move {
                            let close = ExecutionEnd {
                                id: &xid,
                                outcome: ExecOutcome::Error,
                                detail: &why,
                            };
                            let again = format!("{why}; re-queued");
                            e.requeue_running(&jid, Some(close), &again, Some(max), &utc_now())
                                .await
                        })
                        .await;
                    match r {
                        Ok(Some(job)) => {
                            notify_requeued(&env.ctx, &job);
                            ExecEnd::Requeued {
                                execution_id: execution_id.clone(),
                            }
                        }
                        _ => fail(&env, &job_id, None, reason.clone()).await,
                    }
                }
                DeviceFaultAction::Fail => {
                    fail(&env, &job_id, Some(execution_id.clone()), reason.clone()).await
                }
            };
            ExecEnd::DeviceFault {
                device,
                reason,
                pause_backend: policy.pause_backend,
                then: Box::new(end),
            }
        }
    };
    drop(_renewal);
    release(&env, &resource, &execution_id).await;
    if let Some(registry) = env.ctx.lookup::<RegistryMsg>(roles::REGISTRY) {
        let _ = registry.cast(RegistryMsg::SetRunning(env.section.name.clone(), None));
    }
    end
}

enum PlayError {
    Stopped { shots_done: u64 },
    Abandoned,
    Failed(String),
    DeviceFault { device: String, reason: String },
}

/// One experiment's outcome with the seed it used.
struct Played {
    outcome: ExperimentOutcome,
    seed: u64,
    started_at: String,
    ended_at: String,
}

async fn play_all(
    env: &ExecEnv,
    job_id: &str,
    execution_id: &str,
    job: &Job,
    job_seed: u64,
    stop: &AtomicU8,
) -> Result<Vec<Played>, PlayError> {
    let mut played: Vec<Played> = Vec::with_capacity(job.experiments.len());
    let shots_total = job.total_shots();
    let done_before =
        |played: &[Played]| -> u64 { played.iter().map(|p| p.outcome.memory.len() as u64).sum() };
    for (index, (name, experiment)) in job.experiments.iter().enumerate() {
        if stop.load(Ordering::SeqCst) != STOP_NONE {
            return Err(PlayError::Stopped {
                shots_done: done_before(&played),
            });
        }
        if env.panic_next.swap(false, Ordering::SeqCst) {
            panic!("injected fault: the execution of job {job_id} panics on request");
        }
        let timelines = env
            .model
            .compile(&env.section, experiment)
            .map_err(|e| PlayError::Failed(format!("{name}: {e}")))?;
        program_all(env, name, &timelines).await?;
        let seed = experiment.seed.unwrap_or(job_seed);
        let run_id = RUN_IDS.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        env.analysis
            .cast(AnalysisMsg::Begin {
                run_id,
                shots: u64::from(experiment.shots),
                done: tx,
                progress: Some(RunProgress {
                    job_id: job_id.to_string(),
                    execution_id: execution_id.to_string(),
                    experiment_index: index as u32,
                    experiment: name.clone(),
                    shots_before: done_before(&played),
                    shots_total,
                }),
            })
            .map_err(|_| PlayError::Failed("the analysis actor is not running".into()))?;
        let timing = &env.section.timing;
        let per_shot = shot_period_ns(timing, &timelines);
        let expected = Duration::from_nanos(per_shot.saturating_mul(u64::from(experiment.shots)));
        let started_at = utc_now();
        env.clock
            .lock()
            .start(ExperimentRun {
                run_id,
                experiment: index as u32,
                shots: u64::from(experiment.shots),
                seed,
                devices: env.devices.clone(),
                timelines,
            })
            .map_err(|e| PlayError::Failed(e.to_string()))?;
        // A stop requested while the run was being handed over: abort it too (the abort covers every run
        // already handed to the clock), so it ends at its first shot boundary.
        if stop.load(Ordering::SeqCst) != STOP_NONE {
            env.clock.lock().abort();
        }
        // Generous watchdog: twice the planned duration plus half a minute.
        let watchdog = expected * 2 + Duration::from_secs(30);
        let outcome = match tokio::time::timeout(watchdog, rx).await {
            Ok(Ok(o)) => o,
            Ok(Err(_)) => {
                // Analysis went away: its backend is restarting or dying. The job is left RUNNING for
                // whoever settles it: the backend's one_for_all restart re-queues it after this task ends,
                // the recovery of a restarted backend resolves it after a kill.
                env.clock.lock().abort();
                return Err(PlayError::Abandoned);
            }
            Err(_) => {
                env.clock.lock().abort();
                return Err(PlayError::Failed(format!(
                    "{name}: no end of run within {} s",
                    watchdog.as_secs()
                )));
            }
        };
        let shots_done = outcome.summary.shots_done;
        match &outcome.summary.outcome {
            RunOutcome::Completed => {}
            RunOutcome::Aborted => {
                return Err(PlayError::Stopped {
                    shots_done: done_before(&played) + shots_done,
                })
            }
            RunOutcome::Underflow {
                shot,
                device_name,
                event,
                lateness_ns,
                slack_ns,
                ..
            } => {
                return Err(PlayError::Failed(format!(
                    "{name}: underflow in shot {shot}: event {event} of device {device_name} was {lateness_ns} ns late (slack {slack_ns} ns); {shots_done} shots completed"
                )))
            }
            RunOutcome::UnderflowAbort {
                shot,
                device_name,
                event,
                deadline_ns,
                lateness_ns,
                slack_ns,
                ..
            } => {
                return Err(PlayError::Failed(format!(
                    "{name}: underflow abort in shot {shot}: event {event} of device {device_name} (deadline {deadline_ns} ns after the shot start) would have been {lateness_ns} ns late (slack {slack_ns} ns); it was not applied, the devices were driven to their safe state; {shots_done} shots completed"
                )))
            }
            RunOutcome::Overrun { shot, overrun_ns } => {
                return Err(PlayError::Failed(format!(
                    "{name}: shot {shot} overran its cycle by {overrun_ns} ns; {shots_done} shots completed"
                )))
            }
            RunOutcome::DeviceFault {
                shot,
                device_name,
                error,
            } => {
                let when = shot.map(|s| format!("in shot {s}")).unwrap_or_else(|| "while arming".into());
                return Err(PlayError::DeviceFault {
                    device: device_name.to_string(),
                    reason: format!(
                        "{name}: device {device_name} failed {when}: {error}; {shots_done} shots completed"
                    ),
                });
            }
            RunOutcome::Rejected(why) => {
                return Err(PlayError::Failed(format!("{name}: run rejected: {why}")))
            }
        }
        let degrade = env.section.timing.overflow_policy == OverflowPolicy::Degrade;
        let lost_only_to_overflow = outcome.memory.len() as u64 + outcome.summary.shot_overflows
            == u64::from(experiment.shots);
        if outcome.summary.shot_overflows > 0 && degrade && lost_only_to_overflow {
            tracing::warn!(
                experiment = %name,
                lost = outcome.summary.shot_overflows,
                "acquisition ring overflowed; keeping the acquired shots (overflow_policy: degrade)"
            );
        } else if outcome.memory.len() as u64 != u64::from(experiment.shots) {
            return Err(PlayError::Failed(format!(
                "{name}: {} of {} shots were acquired ({} lost to a full ring, {} without a read-out)",
                outcome.memory.len(),
                experiment.shots,
                outcome.summary.shot_overflows,
                outcome.empty_shots
            )));
        }
        played.push(Played {
            outcome,
            seed,
            started_at,
            ended_at: utc_now(),
        });
    }
    Ok(played)
}

/// Programs every device in parallel through its sequencer. A device fault (the device failed, hung, was
/// disconnected or did not answer) is a [`PlayError::DeviceFault`], so the backend's device-fault policy
/// applies exactly as to a fault in a shot; a program the device refused is the job's fault.
async fn program_all(
    env: &ExecEnv,
    experiment: &str,
    timelines: &[shotline_hal::DeviceTimeline],
) -> Result<(), PlayError> {
    let timeout = env.ctx.call_timeout();
    let mut tasks = tokio::task::JoinSet::new();
    for (seq, tl) in env.sequencers.iter().zip(timelines) {
        let (seq, tl) = (seq.clone(), tl.clone());
        tasks.spawn(async move {
            let device = tl.device.clone();
            let r = seq
                .call(|reply| SequencerMsg::Program(tl, reply), Some(timeout))
                .await;
            match r {
                Ok(ractor::rpc::CallResult::Success(Ok(_))) => Ok(()),
                Ok(ractor::rpc::CallResult::Success(Err(e))) => {
                    Err((device, ProgramFailure::Sequencer(e)))
                }
                Ok(_) => Err((device, ProgramFailure::NoAnswer(timeout))),
                Err(e) => Err((device, ProgramFailure::Unavailable(e.to_string()))),
            }
        });
    }
    let mut first_error: Option<PlayError> = None;
    while let Some(r) = tasks.join_next().await {
        let err = match r {
            Ok(Ok(())) => continue,
            Ok(Err((device, failure))) => failure.into_play_error(experiment, device),
            Err(e) => PlayError::Failed(format!("{experiment}: programming task failed: {e}")),
        };
        // A device fault wins over other errors: its policy (e.g. pausing the backend) must apply.
        match (&first_error, &err) {
            (None, _) | (Some(PlayError::Failed(_)), PlayError::DeviceFault { .. }) => {
                first_error = Some(err)
            }
            _ => {}
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Why a device could not be programmed.
enum ProgramFailure {
    /// The sequencer answered with this error.
    Sequencer(SequencerError),
    /// The sequencer did not answer within the call timeout (its device hangs).
    NoAnswer(Duration),
    /// The sequencer is gone (its backend is restarting).
    Unavailable(String),
}

impl ProgramFailure {
    fn into_play_error(self, experiment: &str, device: String) -> PlayError {
        match self {
            ProgramFailure::Sequencer(e) if e.is_device_fault() => PlayError::DeviceFault {
                reason: format!("{experiment}: device {device} failed while programming: {e}"),
                device,
            },
            ProgramFailure::Sequencer(e) => {
                PlayError::Failed(format!("{experiment}: programming {e}"))
            }
            ProgramFailure::NoAnswer(t) => PlayError::DeviceFault {
                reason: format!(
                    "{experiment}: device {device} failed while programming: no answer within {} ms",
                    t.as_millis()
                ),
                device,
            },
            ProgramFailure::Unavailable(e) => PlayError::Failed(format!(
                "{experiment}: device {device}: sequencer unavailable: {e}"
            )),
        }
    }
}

/// Brings every device of the backend to its safe state (transition to manual) through the sequencers, all
/// at once; a device whose sequencer does not confirm is driven directly (on its own thread, never on this
/// task), and failures are logged.
pub async fn safe_state_all(env: &ExecEnv) {
    let timeout = env.ctx.call_timeout();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, seq) in env.sequencers.iter().enumerate() {
        let seq = seq.clone();
        tasks.spawn(async move {
            let r = seq.call(SequencerMsg::SafeState, Some(timeout)).await;
            (i, matches!(r, Ok(ractor::rpc::CallResult::Success(Ok(())))))
        });
    }
    let mut unconfirmed = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok((_, true)) => {}
            Ok((i, false)) => unconfirmed.push(i),
            Err(_) => {}
        }
    }
    if unconfirmed.is_empty() {
        return;
    }
    tracing::error!(backend = %env.section.name, "a device did not confirm its safe state; forcing it directly");
    let all = super::safety::named(&env.section, &env.devices);
    let direct: Vec<_> = unconfirmed
        .into_iter()
        .filter_map(|i| all.get(i).cloned())
        .collect();
    super::safety::drive_safe(&env.section.name, &direct, timeout, timeout).await;
}

/// The model's calibration values as a JSON object (name -> value, in the model's order).
fn calibration_json(model: &dyn BackendModel, section: &BackendSection) -> String {
    let map: serde_json::Map<String, serde_json::Value> = model
        .calibration(section)
        .into_iter()
        .map(|p| {
            let value = match p.value {
                CalibrationValue::Real(x) => serde_json::json!(x),
                CalibrationValue::Integer(n) => serde_json::json!(n),
            };
            (p.name.to_owned(), value)
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}

async fn commit_done(
    env: &ExecEnv,
    job_id: &str,
    execution_id: &str,
    job: &Job,
    played: Vec<Played>,
) -> ExecEnd {
    let mut results = Vec::with_capacity(played.len());
    let mut shot_rows = Vec::with_capacity(played.len());
    for (index, ((name, experiment), p)) in job.experiments.iter().zip(played).enumerate() {
        // The shots the memory holds: all of them, unless the `degrade` overflow policy kept fewer.
        let acquired = p.outcome.memory.len() as u32;
        shot_rows.push(ShotDataRecord {
            execution_id: execution_id.to_string(),
            experiment_index: index as u32,
            experiment_name: name.clone(),
            shots: acquired,
            memory: p.outcome.memory.clone(),
            timing: serde_json::to_string(&p.outcome.timing).unwrap_or_else(|_| "{}".into()),
            first_shot_at: Some(p.started_at.clone()),
            last_shot_at: Some(p.ended_at.clone()),
        });
        results.push(ExperimentResult {
            header: ExperimentHeader { name: name.clone() },
            shots: acquired,
            success: true,
            data: ExperimentData {
                memory: p.outcome.memory,
                instructions: Some(experiment.instructions.clone()),
                counts: p.outcome.counts,
            },
            timing: Some(p.outcome.timing),
            seed: Some(p.seed),
        });
    }
    let id = job_id.to_string();
    let record = match env.db.run(move |e| async move { e.job(&id).await }).await {
        Ok(Some(r)) => r,
        _ => {
            return ExecEnd::Failed {
                execution_id: Some(execution_id.to_string()),
                reason: "job vanished".into(),
            }
        }
    };
    let result = JobResult {
        backend_name: env.published.backend_name.clone(),
        display_name: env.published.display_name.clone(),
        backend_version: env.published.backend_version.clone(),
        job_id: job_id.to_string(),
        qobj_id: record.qobj_id.clone(),
        success: true,
        status: JobStatus::Done,
        header: Default::default(),
        results,
        execution_id: Some(execution_id.to_string()),
    };
    let body = match serde_json::to_string(&result) {
        Ok(b) => b,
        Err(e) => {
            return fail(
                env,
                job_id,
                Some(execution_id.to_string()),
                format!("result encoding: {e}"),
            )
            .await
        }
    };
    let (jid, xid) = (job_id.to_string(), execution_id.to_string());
    // Only the live execution of a RUNNING job may commit its result (a backend restart may have re-queued or
    // failed the job meanwhile): the store checks that in the same transaction.
    let committed = env
        .db
        .run(move |e| async move {
            e.commit_result(&jid, &xid, &shot_rows, &body, &utc_now())
                .await
        })
        .await;
    match committed {
        Ok(false) => {
            tracing::warn!(job = %job_id, execution = %execution_id, "the job was resolved elsewhere; result discarded");
            ExecEnd::Skipped
        }
        Ok(true) => {
            env.ctx.publish_status(StatusRecord {
                job_id: job_id.to_string(),
                status: JobStatus::Done,
                detail: format!("execution {execution_id}"),
                error_message: String::new(),
            });
            ExecEnd::Done {
                execution_id: execution_id.to_string(),
            }
        }
        Err(e) => {
            fail(
                env,
                job_id,
                Some(execution_id.to_string()),
                format!("could not store the result: {e}"),
            )
            .await
        }
    }
}

/// Ends the job ERROR with `reason` (only if it is still RUNNING or QUEUED: never over a committed result).
pub async fn fail(
    env: &ExecEnv,
    job_id: &str,
    execution_id: Option<String>,
    reason: String,
) -> ExecEnd {
    tracing::warn!(job = %job_id, execution = ?execution_id, %reason, "job failed");
    let (jid, xid, why) = (job_id.to_string(), execution_id.clone(), reason.clone());
    let r = env
        .db
        .run(move |e| async move { e.fail_job(&jid, xid.as_deref(), &why, &utc_now()).await })
        .await;
    match r {
        Ok(true) => env.ctx.publish_status(StatusRecord {
            job_id: job_id.to_string(),
            status: JobStatus::Error,
            detail: "failed".into(),
            error_message: reason.clone(),
        }),
        Ok(false) => {}
        Err(e) => tracing::error!(job = %job_id, error = %e, "could not record the failure"),
    }
    ExecEnd::Failed {
        execution_id,
        reason,
    }
}

/// Ends a running job CANCELLED after `shots_done` of `shots_total` shots (its devices are already safe).
pub async fn cancelled(
    env: &ExecEnv,
    job_id: &str,
    execution_id: &str,
    shots_done: u64,
    shots_total: u64,
) -> ExecEnd {
    let detail = format!("cancelled after {shots_done} of {shots_total} shots");
    let (jid, xid, d) = (job_id.to_string(), execution_id.to_string(), detail.clone());
    let r = env
        .db
        .run(move |e| async move { e.cancel_running(&jid, &xid, &d, &utc_now()).await })
        .await;
    match r {
        Ok(true) => env.ctx.publish_status(StatusRecord {
            job_id: job_id.to_string(),
            status: JobStatus::Cancelled,
            detail,
            error_message: String::new(),
        }),
        Ok(false) => {}
        Err(e) => tracing::error!(job = %job_id, error = %e, "could not record the cancel"),
    }
    ExecEnd::Cancelled {
        execution_id: execution_id.to_string(),
        shots_done,
    }
}

/// Puts a RUNNING job back in the queue (stopped at a shot boundary by shutdown or pause).
pub async fn requeue(env: &ExecEnv, job_id: &str, execution_id: &str, counted: bool) -> ExecEnd {
    let limit = counted.then(|| env.ctx.config().recovery.max_attempts);
    let (jid, xid) = (job_id.to_string(), execution_id.to_string());
    let r = env
        .db
        .run(move |e| async move {
            let why = "stopped at a shot boundary; re-queued";
            let close = ExecutionEnd {
                id: &xid,
                outcome: ExecOutcome::Interrupted,
                detail: why,
            };
            e.requeue_running(&jid, Some(close), why, limit, &utc_now())
                .await
        })
        .await;
    match r {
        Ok(Some(job)) => notify_requeued(&env.ctx, &job),
        Ok(None) => {}
        Err(e) => tracing::error!(job = %job_id, error = %e, "could not re-queue the job"),
    }
    ExecEnd::Requeued {
        execution_id: execution_id.to_string(),
    }
}

/// Tells the scheduler that a job is queued again.
pub fn notify_requeued(ctx: &Ctx, job: &shotline_store::JobRecord) {
    ctx.publish_status(StatusRecord {
        job_id: job.id.clone(),
        status: JobStatus::Queued,
        detail: "re-queued".into(),
        error_message: String::new(),
    });
    if let Some(s) = ctx.lookup::<crate::scheduler::SchedulerMsg>(roles::SCHEDULER) {
        let _ = s.cast(crate::scheduler::SchedulerMsg::Enqueue {
            job_id: job.id.clone(),
            backend: job.backend.clone(),
            priority: job.priority,
            seq: job.seq,
        });
    }
}

#[derive(Clone, Copy)]
enum LockAction {
    Acquire,
}

async fn lock(
    env: &ExecEnv,
    _action: LockAction,
    resource: &str,
    owner: &str,
) -> Result<(), String> {
    let lm = env
        .ctx
        .lookup::<LockMsg>(roles::LOCK_MANAGER)
        .ok_or("the lock manager is restarting")?;
    let (resource, owner) = (resource.to_string(), owner.to_string());
    match lm
        .call(
            |reply| LockMsg::Acquire {
                resource,
                owner,
                reply,
            },
            Some(env.ctx.call_timeout()),
        )
        .await
    {
        Ok(ractor::rpc::CallResult::Success(r)) => r.map_err(|e| e.to_string()),
        Ok(_) => Err("the lock manager did not answer in time".into()),
        Err(e) => Err(format!("lock manager: {e}")),
    }
}

/// Releases the backend lock of `owner` (retrying once if the lock manager is restarting).
pub async fn release(env: &ExecEnv, resource: &str, owner: &str) {
    for attempt in 0..3 {
        if let Some(lm) = env.ctx.lookup::<LockMsg>(roles::LOCK_MANAGER) {
            let (r, o) = (resource.to_string(), owner.to_string());
            let res = lm
                .call(
                    |reply| LockMsg::Release {
                        resource: r,
                        owner: o,
                        reply,
                    },
                    Some(env.ctx.call_timeout()),
                )
                .await;
            if let Ok(ractor::rpc::CallResult::Success(_)) = res {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
    }
    tracing::error!(%resource, %owner, "could not release the backend lock");
}
