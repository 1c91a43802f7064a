//! Acquisition: drains the shot clock's output rings at a bounded interval (never from inside a shot),
//! forwards each shot record to analysis, and folds every event's lateness into a per-run histogram whose
//! summary (p50, p99, p99.9, max, underflows) travels with the end-of-run report.
//!
//! Backpressure is kept end to end: at most [`ShotBacklog`]'s limit of shot records (the shot ring's
//! capacity) wait in analysis's mailbox. When analysis is that far behind, acquisition stops draining the
//! shot ring; the ring fills and the shot clock's overflow policy applies at the source, where lost shots are
//! counted (`lost_shots`). Memory stays bounded by two rings' worth of records whatever analysis does.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use shotline_hal::shot_clock::{ClockOutputs, ClockReport, RunSummary, Stamp};
use shotline_protocol::{LatenessStamp, TimingSummary};

use crate::analysis::AnalysisMsg;

/// How often the rings are drained.
pub const POLL_INTERVAL: Duration = Duration::from_millis(2);

/// The shot records handed to analysis and not yet analysed, shared by acquisition (adds) and analysis
/// (removes), with the limit above which acquisition leaves records in the ring.
#[derive(Debug, Clone)]
pub struct ShotBacklog {
    inner: Arc<BacklogInner>,
}

#[derive(Debug)]
struct BacklogInner {
    pending: AtomicUsize,
    most: AtomicUsize,
    limit: usize,
}

impl ShotBacklog {
    /// A backlog that lets at most `limit` (at least 1) records wait in analysis's mailbox.
    pub fn new(limit: usize) -> Self {
        ShotBacklog {
            inner: Arc::new(BacklogInner {
                pending: AtomicUsize::new(0),
                most: AtomicUsize::new(0),
                limit: limit.max(1),
            }),
        }
    }

    /// Whether another record may be handed to analysis now.
    pub fn has_room(&self) -> bool {
        self.inner.pending.load(Ordering::Acquire) < self.inner.limit
    }

    /// A record was handed to analysis.
    pub fn added(&self) {
        let now = self.inner.pending.fetch_add(1, Ordering::AcqRel) + 1;
        self.inner.most.fetch_max(now, Ordering::Relaxed);
    }

    /// Analysis took a record out of its mailbox.
    pub fn taken(&self) {
        let _ = self
            .inner
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Records waiting now.
    pub fn pending(&self) -> usize {
        self.inner.pending.load(Ordering::Acquire)
    }

    /// The most records that ever waited at once.
    pub fn most(&self) -> usize {
        self.inner.most.load(Ordering::Relaxed)
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }
}

/// Messages of acquisition.
pub enum AcquisitionMsg {
    /// Drain the rings.
    Poll,
    /// Fault injection: panic inside the handler (tests and drills).
    InjectPanic,
}

/// Start arguments.
pub struct AcquisitionArgs {
    /// The consumer side of the backend's shot clock.
    pub outputs: ClockOutputs,
    /// Where shot records go.
    pub analysis: ActorRef<AnalysisMsg>,
    /// Records waiting in analysis's mailbox (shared with analysis).
    pub backlog: ShotBacklog,
}

/// State of acquisition.
pub struct Acquisition {
    outputs: ClockOutputs,
    analysis: ActorRef<AnalysisMsg>,
    backlog: ShotBacklog,
    lateness: BTreeMap<u64, Histogram<u64>>,
    /// Per run: (events stamped after the device call, events stamped by the device).
    stamps: BTreeMap<u64, (u64, u64)>,
}

/// The acquisition actor.
pub struct AcquisitionActor;

/// Adds one lateness to a run's histogram. `record` grows the auto-resizing histogram (a lateness of
/// seconds is kept as such); it saturates only if growing is impossible.
fn record_lateness(h: &mut Histogram<u64>, lateness_ns: i64) {
    let v = lateness_ns.max(0) as u64;
    if h.record(v).is_err() {
        h.saturating_record(v);
    }
}

impl Acquisition {
    fn drain_events(&mut self) {
        while let Ok(ev) = self.outputs.events.pop() {
            if let std::collections::btree_map::Entry::Vacant(slot) = self.lateness.entry(ev.run_id)
            {
                // Three significant digits: always a valid histogram.
                let Ok(h) = Histogram::new(3) else { continue };
                slot.insert(h);
            }
            if let Some(h) = self.lateness.get_mut(&ev.run_id) {
                record_lateness(h, ev.lateness_ns);
            }
            let counts = self.stamps.entry(ev.run_id).or_default();
            match ev.stamp {
                Stamp::AfterApply => counts.0 += 1,
                Stamp::Device => counts.1 += 1,
            }
        }
    }

    fn timing(&mut self, summary: &RunSummary) -> TimingSummary {
        let h = self.lateness.remove(&summary.run_id);
        let stamped = match self.stamps.remove(&summary.run_id).unwrap_or_default() {
            (_, 0) => LatenessStamp::AfterApply,
            (0, _) => LatenessStamp::DeviceApplied,
            _ => LatenessStamp::Mixed,
        };
        let q = |h: &Option<Histogram<u64>>, q: f64| {
            h.as_ref()
                .map(|h| h.value_at_quantile(q) as i64)
                .unwrap_or(0)
        };
        TimingSummary {
            shots: summary.shots_done,
            events: h.as_ref().map(|h| h.len()).unwrap_or(0),
            p50_ns: q(&h, 0.5),
            p99_ns: q(&h, 0.99),
            p999_ns: q(&h, 0.999),
            max_ns: h.as_ref().map(|h| h.max() as i64).unwrap_or(0),
            underflows: summary.underflows,
            lost_shots: summary.shot_overflows,
            lost_events: summary.event_overflows,
            stamped,
        }
    }
}

impl Actor for AcquisitionActor {
    type Msg = AcquisitionMsg;
    type State = Acquisition;
    type Arguments = AcquisitionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: AcquisitionArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(POLL_INTERVAL, || AcquisitionMsg::Poll);
        Ok(Acquisition {
            outputs: args.outputs,
            analysis: args.analysis,
            backlog: args.backlog,
            lateness: BTreeMap::new(),
            stamps: BTreeMap::new(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: AcquisitionMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AcquisitionMsg::InjectPanic => {
                panic!("injected fault: AcquisitionMsg panics on request")
            }
            AcquisitionMsg::Poll => {
                state.drain_events();
                // Analysis behind by a ring's worth: leave the records in the ring (it fills, the clock
                // counts what it cannot push) until analysis catches up.
                while state.backlog.has_room() {
                    let Ok(report) = state.outputs.reports.pop() else {
                        break;
                    };
                    match report {
                        ClockReport::Shot(record) => {
                            state.backlog.added();
                            state.analysis.cast(AnalysisMsg::Shot(Box::new(record)))?;
                        }
                        ClockReport::Done(summary) => {
                            // Every event of the run was pushed before its summary.
                            state.drain_events();
                            let timing = state.timing(&summary);
                            state
                                .analysis
                                .cast(AnalysisMsg::RunDone(Box::new(summary), timing))?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_refuses_past_its_limit_and_remembers_its_peak() {
        let b = ShotBacklog::new(3);
        for _ in 0..3 {
            assert!(b.has_room());
            b.added();
        }
        assert!(!b.has_room());
        b.taken();
        assert!(b.has_room());
        assert_eq!((b.pending(), b.most(), b.limit()), (2, 3, 3));
        for _ in 0..5 {
            b.taken();
        }
        assert_eq!(b.pending(), 0, "never below zero");
    }

    #[test]
    fn large_latenesses_are_kept_not_clamped() {
        let mut h = Histogram::new(3).unwrap();
        record_lateness(&mut h, 15);
        record_lateness(&mut h, 150_000);
        record_lateness(&mut h, 2_000_000_000);
        record_lateness(&mut h, -5);
        assert_eq!(h.len(), 4);
        assert!(h.max() >= 1_999_000_000, "max {}", h.max());
        assert!(h.value_at_quantile(0.6) >= 149_000);
    }
}
