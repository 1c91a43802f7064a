//! Analysis: single-shot (a shot record becomes its memory string: the read-out values, space-separated)
//! and multi-shot (counts per outcome over the experiment). It runs concurrently with the next shots.

use std::collections::{BTreeMap, HashMap};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use shotline_hal::shot_clock::{RunSummary, ShotRecord};
use shotline_protocol::wire::{JobEvent, Progress};
use shotline_protocol::TimingSummary;
use tokio::sync::oneshot;

use crate::acquisition::ShotBacklog;
use crate::context::Ctx;

/// Start arguments of analysis.
pub struct AnalysisArgs {
    /// Runtime context.
    pub ctx: Ctx,
    /// Shot records waiting in this actor's mailbox (shared with acquisition, which stops forwarding when
    /// it is full).
    pub backlog: ShotBacklog,
    /// Fault injection: extra time spent on every shot, microseconds (0: none).
    pub delay_us: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The backend's model: its default analysis makes a shot's memory string.
    pub model: std::sync::Arc<dyn shotline_models::BackendModel>,
}

/// Everything an experiment produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentOutcome {
    /// One memory string per shot, in shot order.
    pub memory: Vec<String>,
    /// Counts per memory value.
    pub counts: BTreeMap<String, u64>,
    /// Monotonic t0 of the first and last shot.
    pub first_t0_ns: Option<u64>,
    /// Monotonic t0 of the last shot.
    pub last_t0_ns: Option<u64>,
    /// How the run ended.
    pub summary: RunSummary,
    /// Lateness statistics.
    pub timing: TimingSummary,
    /// Shots whose record arrived with no read-out value.
    pub empty_shots: u64,
}

/// Which job a run belongs to, for the progress events pushed to watchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunProgress {
    /// The job.
    pub job_id: String,
    /// Its execution.
    pub execution_id: String,
    /// Experiment index.
    pub experiment_index: u32,
    /// Experiment name.
    pub experiment: String,
    /// Shots done by the job's earlier experiments.
    pub shots_before: u64,
    /// Shots of the whole job.
    pub shots_total: u64,
}

/// Progress events are pushed at most this often per run (and once at its end).
pub const PROGRESS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);
/// Progress is written to the store (the execution's detail) at most this often per run: after a crash it
/// says at which shot the job was interrupted.
pub const PROGRESS_PERSIST_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Messages of analysis.
pub enum AnalysisMsg {
    /// A run is about to start: collect its shots and answer on `done` when it ends.
    Begin {
        /// The run.
        run_id: u64,
        /// Expected shots (capacity hint).
        shots: u64,
        /// Where the outcome goes.
        done: oneshot::Sender<ExperimentOutcome>,
        /// The job the run belongs to (progress events for watchers).
        progress: Option<RunProgress>,
    },
    /// One shot record.
    Shot(Box<ShotRecord>),
    /// The run ended.
    RunDone(Box<RunSummary>, TimingSummary),
    /// Fault injection: panic inside the handler (tests and drills).
    InjectPanic,
}

/// What analysis accumulates for one run.
pub struct RunAcc {
    memory: Vec<(u64, String)>,
    counts: BTreeMap<String, u64>,
    first_t0: Option<u64>,
    last_t0: Option<u64>,
    empty: u64,
    done: oneshot::Sender<ExperimentOutcome>,
    progress: Option<RunProgress>,
    last_progress: Option<std::time::Instant>,
    last_persisted: Option<std::time::Instant>,
}

impl RunAcc {
    fn progress_event(&self, p: &RunProgress) -> JobEvent {
        JobEvent::Progress {
            job_id: p.job_id.clone(),
            progress: Progress {
                shots_done: p.shots_before + self.memory.len() as u64 + self.empty,
                shots_total: p.shots_total,
                experiment_index: p.experiment_index,
                experiment: p.experiment.clone(),
            },
        }
    }
}

/// The analysis actor.
pub struct AnalysisActor;

/// Writes "shot K of N" into the execution's record, off the actor (fire and forget: progress is advice).
fn persist_progress(ctx: &Ctx, p: &RunProgress, done_in_run: u64) {
    let db = crate::persistence::Db::new(ctx);
    let (id, detail) = (
        p.execution_id.clone(),
        format!("shot {} of {}", p.shots_before + done_in_run, p.shots_total),
    );
    tokio::spawn(async move {
        let _ = db
            .run(move |e| async move { e.set_execution_progress(&id, &detail).await })
            .await;
    });
}

/// State of analysis.
pub struct Analysis {
    ctx: Ctx,
    runs: HashMap<u64, RunAcc>,
    backlog: ShotBacklog,
    delay_us: std::sync::Arc<std::sync::atomic::AtomicU64>,
    model: std::sync::Arc<dyn shotline_models::BackendModel>,
}

impl Actor for AnalysisActor {
    type Msg = AnalysisMsg;
    type State = Analysis;
    type Arguments = AnalysisArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: AnalysisArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(Analysis {
            ctx: args.ctx,
            runs: HashMap::new(),
            backlog: args.backlog,
            delay_us: args.delay_us,
            model: args.model,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: AnalysisMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let AnalysisMsg::Shot(_) = &msg {
            // Out of the mailbox: acquisition may forward one more.
            state.backlog.taken();
            let delay = state.delay_us.load(std::sync::atomic::Ordering::Relaxed);
            if delay > 0 {
                tokio::time::sleep(std::time::Duration::from_micros(delay)).await;
            }
        }
        let Analysis {
            ctx, runs, model, ..
        } = state;
        match msg {
            AnalysisMsg::InjectPanic => panic!("injected fault: AnalysisMsg panics on request"),
            AnalysisMsg::Begin {
                run_id,
                shots,
                done,
                progress,
            } => {
                runs.insert(
                    run_id,
                    RunAcc {
                        memory: Vec::with_capacity(shots.min(1 << 20) as usize),
                        counts: BTreeMap::new(),
                        first_t0: None,
                        last_t0: None,
                        empty: 0,
                        done,
                        progress,
                        last_progress: None,
                        last_persisted: None,
                    },
                );
            }
            AnalysisMsg::Shot(record) => {
                if let Some(acc) = runs.get_mut(&record.run_id) {
                    acc.first_t0.get_or_insert(record.t0_ns);
                    acc.last_t0 = Some(record.t0_ns);
                    match model.memory(&record) {
                        Some(m) => {
                            *acc.counts.entry(m.clone()).or_insert(0) += 1;
                            if let Some(p) = &acc.progress {
                                if ctx.shots_watched(&p.job_id) {
                                    ctx.publish_shot(JobEvent::Shot {
                                        job_id: p.job_id.clone(),
                                        experiment_index: p.experiment_index,
                                        shot: record.shot,
                                        memory: m.clone(),
                                    });
                                }
                            }
                            acc.memory.push((record.shot, m));
                        }
                        None => acc.empty += 1,
                    }
                    if let Some(p) = &acc.progress {
                        let now = std::time::Instant::now();
                        let due = acc
                            .last_progress
                            .is_none_or(|t| now.duration_since(t) >= PROGRESS_INTERVAL);
                        if due {
                            acc.last_progress = Some(now);
                            ctx.publish(acc.progress_event(p));
                        }
                        let persist = acc
                            .last_persisted
                            .is_none_or(|t| now.duration_since(t) >= PROGRESS_PERSIST_INTERVAL);
                        if persist {
                            acc.last_persisted = Some(now);
                            persist_progress(ctx, p, acc.memory.len() as u64 + acc.empty);
                        }
                    }
                }
            }
            AnalysisMsg::RunDone(summary, timing) => {
                if let Some(mut acc) = runs.remove(&summary.run_id) {
                    if let Some(p) = &acc.progress {
                        ctx.publish(acc.progress_event(p));
                    }
                    acc.memory.sort_by_key(|(shot, _)| *shot);
                    let outcome = ExperimentOutcome {
                        memory: acc.memory.into_iter().map(|(_, m)| m).collect(),
                        counts: acc.counts,
                        first_t0_ns: acc.first_t0,
                        last_t0_ns: acc.last_t0,
                        summary: *summary,
                        timing,
                        empty_shots: acc.empty,
                    };
                    let _ = acc.done.send(outcome);
                }
            }
        }
        Ok(())
    }
}
