//! The scheduler: a durable queue per backend (priority, then submission order) that hands one job at a time
//! to each idle backend. The queue lives in the store (status `QUEUED`); this actor keeps an in-memory index
//! of it, rebuilt from the store whenever the actor (re)starts, so a restart loses nothing.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use shotline_protocol::JobStatus;
use shotline_store::JobRecord;

use crate::backend::BackendMsg;
use crate::context::{roles, Ctx};
use crate::persistence::Db;

/// A queued job as the scheduler orders it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    priority: i64,
    seq: Reverse<i64>,
    job_id: String,
}

/// Messages of the scheduler.
pub enum SchedulerMsg {
    /// A job was committed as QUEUED.
    Enqueue {
        /// Job id.
        job_id: String,
        /// Backend.
        backend: String,
        /// Priority (higher first).
        priority: i64,
        /// Submission order.
        seq: i64,
    },
    /// A backend finished its execution and is idle.
    BackendIdle(String),
    /// Queued jobs per backend.
    Pending(RpcReplyPort<BTreeMap<String, u64>>),
    /// Periodic re-dispatch (covers restarted backends).
    Tick,
    /// Re-read the QUEUED jobs from the store (after a job was deferred) and dispatch.
    Reload,
    /// Fault injection: panic inside the handler (tests and drills).
    InjectPanic,
}

/// Scheduler state.
pub struct SchedulerState {
    ctx: Ctx,
    db: Db,
    queues: BTreeMap<String, BinaryHeap<Entry>>,
    queued: BTreeSet<String>,
}

/// The scheduler actor.
pub struct SchedulerActor;

impl Actor for SchedulerActor {
    type Msg = SchedulerMsg;
    type State = SchedulerState;
    type Arguments = Ctx;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        ctx: Ctx,
    ) -> Result<Self::State, ActorProcessingErr> {
        let db = Db::new(&ctx);
        let jobs: Vec<JobRecord> = db
            .run(|e| async move { e.jobs_with_status(JobStatus::Queued).await })
            .await?;
        let mut state = SchedulerState {
            ctx,
            db,
            queues: BTreeMap::new(),
            queued: BTreeSet::new(),
        };
        for j in jobs {
            state.push(j.id, j.backend, j.priority, j.seq);
        }
        myself.send_interval(Duration::from_millis(500), || SchedulerMsg::Tick);
        let _ = myself.cast(SchedulerMsg::Tick);
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: SchedulerMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SchedulerMsg::InjectPanic => panic!("injected fault: SchedulerMsg panics on request"),
            SchedulerMsg::Enqueue {
                job_id,
                backend,
                priority,
                seq,
            } => {
                state.push(job_id, backend.clone(), priority, seq);
                state.dispatch(&backend).await;
            }
            SchedulerMsg::BackendIdle(backend) => state.dispatch(&backend).await,
            SchedulerMsg::Pending(reply) => {
                let counts = state
                    .queues
                    .iter()
                    .map(|(b, q)| (b.clone(), q.len() as u64))
                    .collect();
                let _ = reply.send(counts);
            }
            SchedulerMsg::Reload => {
                match state
                    .db
                    .run(|e| async move { e.jobs_with_status(JobStatus::Queued).await })
                    .await
                {
                    Ok(jobs) => {
                        for j in jobs {
                            state.push(j.id, j.backend, j.priority, j.seq);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "scheduler: could not reload the queue"),
                }
                let backends: Vec<String> = state.queues.keys().cloned().collect();
                for b in backends {
                    state.dispatch(&b).await;
                }
            }
            SchedulerMsg::Tick => {
                let backends: Vec<String> = state
                    .queues
                    .iter()
                    .filter(|(_, q)| !q.is_empty())
                    .map(|(b, _)| b.clone())
                    .collect();
                for b in backends {
                    state.dispatch(&b).await;
                }
            }
        }
        Ok(())
    }
}

impl SchedulerState {
    fn push(&mut self, job_id: String, backend: String, priority: i64, seq: i64) {
        if !self.queued.insert(job_id.clone()) {
            return;
        }
        self.queues.entry(backend).or_default().push(Entry {
            priority,
            seq: Reverse(seq),
            job_id,
        });
    }

    /// Offers the head of `backend`'s queue to the backend; keeps it queued when the backend is busy.
    async fn dispatch(&mut self, backend: &str) {
        let Some(actor) = self.ctx.lookup::<BackendMsg>(&roles::backend(backend)) else {
            return;
        };
        loop {
            let Some(head) = self.queues.get_mut(backend).and_then(|q| q.pop()) else {
                return;
            };
            // The job may have been cancelled or already handled since it was queued.
            let id = head.job_id.clone();
            let still_queued = match self.db.run(move |e| async move { e.job(&id).await }).await {
                Ok(Some(j)) => j.job_status() == Some(JobStatus::Queued),
                Ok(None) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler: store unavailable, will retry");
                    self.queues
                        .entry(backend.to_string())
                        .or_default()
                        .push(head);
                    return;
                }
            };
            if !still_queued {
                self.queued.remove(&head.job_id);
                continue;
            }
            let offered = ractor::call_t!(
                actor,
                BackendMsg::Offer,
                self.ctx.call_timeout().as_millis() as u64,
                head.job_id.clone()
            );
            match offered {
                Ok(true) => {
                    self.queued.remove(&head.job_id);
                    return;
                }
                Ok(false) => {
                    self.queues
                        .entry(backend.to_string())
                        .or_default()
                        .push(head);
                    return;
                }
                Err(e) => {
                    tracing::warn!(backend, error = %e, "scheduler: backend did not take the job");
                    self.queues
                        .entry(backend.to_string())
                        .or_default()
                        .push(head);
                    return;
                }
            }
        }
    }
}
