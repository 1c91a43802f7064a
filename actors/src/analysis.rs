//! Analysis: single-shot (a shot record becomes its memory string: the read-out values, space-separated)
//! and multi-shot (counts per outcome over the experiment). It runs concurrently with the next shots.

use std::collections::{BTreeMap, HashMap};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use shotline_hal::shot_clock::{RunSummary, ShotRecord};
use shotline_protocol::TimingSummary;
use tokio::sync::oneshot;

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
    },
    /// One shot record.
    Shot(Box<ShotRecord>),
    /// The run ended.
    RunDone(Box<RunSummary>, TimingSummary),
}

/// What analysis accumulates for one run.
pub struct RunAcc {
    memory: Vec<(u64, String)>,
    counts: BTreeMap<String, u64>,
    first_t0: Option<u64>,
    last_t0: Option<u64>,
    empty: u64,
    done: oneshot::Sender<ExperimentOutcome>,
}

/// The analysis actor.
pub struct AnalysisActor;

/// Single-shot analysis: the memory string of one shot record.
pub fn memory_of(record: &ShotRecord) -> Option<String> {
    if record.readout.is_empty() {
        return None;
    }
    let parts: Vec<String> = record.readout.iter().map(|v| v.value.to_string()).collect();
    Some(parts.join(" "))
}

impl Actor for AnalysisActor {
    type Msg = AnalysisMsg;
    type State = HashMap<u64, RunAcc>;
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        _args: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(HashMap::new())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: AnalysisMsg,
        runs: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AnalysisMsg::Begin {
                run_id,
                shots,
                done,
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
                    },
                );
            }
            AnalysisMsg::Shot(record) => {
                if let Some(acc) = runs.get_mut(&record.run_id) {
                    acc.first_t0.get_or_insert(record.t0_ns);
                    acc.last_t0 = Some(record.t0_ns);
                    match memory_of(&record) {
                        Some(m) => {
                            *acc.counts.entry(m.clone()).or_insert(0) += 1;
                            acc.memory.push((record.shot, m));
                        }
                        None => acc.empty += 1,
                    }
                }
            }
            AnalysisMsg::RunDone(summary, timing) => {
                if let Some(mut acc) = runs.remove(&summary.run_id) {
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
