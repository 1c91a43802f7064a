//! The shot clock: one `std::thread` per backend that plays armed timelines shot after shot.
//!
//! The control plane hands it an [`ExperimentRun`] through an `rtrb` command ring; it locks the run's devices
//! once (before the first shot), arms them, then for every shot waits for each event's absolute deadline,
//! applies it, time-stamps it and pushes fixed-size records into two output rings (shots, event lateness).
//! Inside a shot it does not allocate, lock or log. Abort is an atomic flag checked at every shot boundary.
//! When an output ring is full the record is dropped and counted; the clock never blocks on a consumer,
//! except for the final [`RunSummary`], which it retries until there is room (it is never lost).

pub mod records;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

pub use records::{ClockReport, EventRecord, RunOutcome, RunSummary, ShotRecord, Stamp};

use crate::device::{Device, DeviceHandle, Readout, ShotContext};
use crate::realtime::{apply_realtime, rests_between_shots, spins_shot, RealtimeOptions};
use crate::time::{Nanos, ShotTimer};
use crate::timeline::DeviceTimeline;

/// What to do with an event later than the slack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnderflowPolicy {
    /// Fail the shot and the run.
    Fail,
    /// Count it and go on.
    Record,
    /// Stop the run before the late event is applied (checked right before the device call: if the clock
    /// is already later than deadline + slack, the event is not applied), drive every device of the run to
    /// its safe state and end with [`RunOutcome::UnderflowAbort`].
    Abort,
}

/// `a - b` as a signed lateness, saturating instead of wrapping.
fn signed_diff(a: Nanos, b: Nanos) -> i64 {
    if a >= b {
        (a - b).min(i64::MAX as u64) as i64
    } else {
        -((b - a).min(i64::MAX as u64) as i64)
    }
}

/// The slack as a signed lateness bound (saturating: a huge slack never wraps negative).
fn slack_i64(slack_ns: Nanos) -> i64 {
    i64::try_from(slack_ns).unwrap_or(i64::MAX)
}

/// Timing parameters of a shot clock.
#[derive(Debug, Clone, PartialEq)]
pub struct ClockConfig {
    /// Each shot starts this long after the clock decides to start it.
    pub lead_ns: Nanos,
    /// Shot repetition period; 0 = back to back.
    pub cycle_ns: Nanos,
    /// Lateness above this is an underflow.
    pub slack_ns: Nanos,
    /// Policy for underflows and cycle overruns.
    pub underflow_policy: UnderflowPolicy,
    /// Capacity of the shot record ring.
    pub shot_ring: usize,
    /// Capacity of the event record ring.
    pub event_ring: usize,
    /// Opt-in real-time scheduling of the clock thread.
    pub realtime: RealtimeOptions,
    /// A shot whose lead plus length is at most this is spun from the start of its lead to its end, never
    /// sleeping inside it (0 = never; capped at [`crate::realtime::MAX_SPIN_SHOT_NS`]). With real time
    /// granted the clock also rests between such shots for a quarter of the time it spun.
    pub spin_shots_up_to_ns: Nanos,
}

impl Default for ClockConfig {
    fn default() -> Self {
        Self {
            lead_ns: 200_000,
            cycle_ns: 0,
            slack_ns: 100_000,
            underflow_policy: UnderflowPolicy::Record,
            shot_ring: 4096,
            event_ring: 65_536,
            realtime: RealtimeOptions::default(),
            spin_shots_up_to_ns: 2_000_000,
        }
    }
}

/// One experiment to play: the devices (already programmed) and their timelines.
pub struct ExperimentRun {
    /// Identifies the run in every record.
    pub run_id: u64,
    /// Experiment index.
    pub experiment: u32,
    /// Number of shots.
    pub shots: u64,
    /// Seed for the simulated devices.
    pub seed: u64,
    /// Devices, in backend order.
    pub devices: Vec<DeviceHandle>,
    /// The programmed timeline of each device (same order).
    pub timelines: Vec<DeviceTimeline>,
}

enum Command {
    Run(Box<ExperimentRun>),
    Shutdown,
}

/// Why a command could not be handed to the clock.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    /// The command ring is full (a run is already queued).
    #[error("shot clock {0}: command ring full")]
    Busy(String),
    /// The clock thread is gone.
    #[error("shot clock {0}: thread stopped")]
    Stopped(String),
}

/// The control side of a shot clock: commands in, abort, shutdown.
pub struct ClockControl {
    name: String,
    commands: rtrb::Producer<Command>,
    /// Runs with an id below this one are aborted at their next shot boundary.
    abort: Arc<AtomicU64>,
    /// Id of the last run handed to the clock.
    last_run: u64,
    stopping: Arc<AtomicBool>,
    delay: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

/// The consumer side: shot records and event lateness records out.
pub struct ClockOutputs {
    /// Shot records and run summaries.
    pub reports: rtrb::Consumer<ClockReport>,
    /// Lateness of every applied event.
    pub events: rtrb::Consumer<EventRecord>,
}

/// Starts a shot clock thread named `name`.
pub fn spawn(
    name: &str,
    config: ClockConfig,
    timer: Box<dyn ShotTimer>,
) -> std::io::Result<(ClockControl, ClockOutputs)> {
    let (cmd_tx, cmd_rx) = rtrb::RingBuffer::new(4);
    let (mut rep_tx, mut rep_rx) = rtrb::RingBuffer::new(config.shot_ring.max(2));
    let (mut ev_tx, mut ev_rx) = rtrb::RingBuffer::new(config.event_ring.max(2));
    // Touch every slot once now, so that the shot path never takes the page fault of a slot's first
    // write (measured: one fault per ~100 event records, tens of µs each on this VM; docs/performance.md).
    prefault(&mut rep_tx, &mut rep_rx, || {
        ClockReport::Shot(ShotRecord::default())
    });
    prefault(&mut ev_tx, &mut ev_rx, EventRecord::default);
    let abort = Arc::new(AtomicU64::new(0));
    let stopping = Arc::new(AtomicBool::new(false));
    let delay = Arc::new(AtomicU64::new(0));
    let worker = Worker {
        stopping: stopping.clone(),
        delay: delay.clone(),
        name: name.to_string(),
        config,
        timer,
        commands: cmd_rx,
        reports: rep_tx,
        events: ev_tx,
        abort: abort.clone(),
        realtime_granted: false,
        spin_backoff: SpinBackoff::default(),
    };
    let thread = thread::Builder::new()
        .name(format!("shot-clock-{name}"))
        .spawn(move || worker.run())?;
    Ok((
        ClockControl {
            name: name.to_string(),
            commands: cmd_tx,
            abort,
            last_run: 0,
            stopping,
            delay,
            thread: Some(thread),
        },
        ClockOutputs {
            reports: rep_rx,
            events: ev_rx,
        },
    ))
}

/// Pushes items until the ring is full, then pops them all: every slot's memory is written once, so its
/// pages are mapped before the first shot (and locked too when `mlock` is on, which happens later).
fn prefault<T>(tx: &mut rtrb::Producer<T>, rx: &mut rtrb::Consumer<T>, make: impl Fn() -> T) {
    while tx.push(make()).is_ok() {}
    while rx.pop().is_ok() {}
}

impl ClockControl {
    /// Queues a run. Run ids must increase from run to run: an abort applies to every run handed to the clock
    /// before it (playing or still queued), never to a later one.
    pub fn start(&mut self, run: ExperimentRun) -> Result<(), ClockError> {
        if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
            return Err(ClockError::Stopped(self.name.clone()));
        }
        self.last_run = self.last_run.max(run.run_id);
        self.commands
            .push(Command::Run(Box::new(run)))
            .map_err(|_| ClockError::Busy(self.name.clone()))?;
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
        Ok(())
    }

    /// Asks the runs handed to the clock so far to stop at their next shot boundary (a run already queued
    /// but not yet started stops before its first shot).
    pub fn abort(&self) {
        self.abort
            .fetch_max(self.last_run.saturating_add(1), Ordering::SeqCst);
    }

    /// Fault injection: the next event is applied `ns` late (tests and drills of the underflow path).
    pub fn delay_next_event(&self, ns: u64) {
        self.delay.store(ns, Ordering::SeqCst);
    }

    /// Aborts, stops the thread and waits for it (it releases every device lock first).
    pub fn shutdown(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.abort.store(u64::MAX, Ordering::SeqCst);
        let _ = self.commands.push(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for ClockControl {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Worker {
    name: String,
    config: ClockConfig,
    timer: Box<dyn ShotTimer>,
    commands: rtrb::Consumer<Command>,
    reports: rtrb::Producer<ClockReport>,
    events: rtrb::Producer<EventRecord>,
    abort: Arc<AtomicU64>,
    stopping: Arc<AtomicBool>,
    delay: Arc<AtomicU64>,
    /// Real time was asked for and everything asked for was granted.
    realtime_granted: bool,
    /// When a clock without real time spins again after it was kept off the CPU in a spun shot.
    spin_backoff: SpinBackoff,
}

/// First back-off from spinning after a preempted spun shot; doubled on every further one, up to
/// [`SPIN_BACKOFF_MAX_NS`], and back to this after a spun shot nobody preempted.
pub const SPIN_BACKOFF_MIN_NS: Nanos = 20_000_000;
/// Longest back-off from spinning (so a busy machine costs at most one contended spun shot per 10 s).
pub const SPIN_BACKOFF_MAX_NS: Nanos = 10_000_000_000;
/// Run delay (time runnable but waiting for a CPU) within one spun shot from which the clock backs off: a
/// CPU-bound neighbour keeps a spinner waiting for a time slice (milliseconds); a woken thread that runs
/// for some µs, or a kernel worker, stays below this.
pub const SPIN_CONTENDED_NS: Nanos = 250_000;

/// Spinning without real time competes fairly for the CPU: when other threads want it, the fair scheduler
/// makes a spinner wait for whole time slices (milliseconds), while a sleeper is woken promptly. So a clock
/// without real time that was kept waiting for the CPU for [`SPIN_CONTENDED_NS`] or more during a spun shot
/// sleeps (as `sleep_margin_ns` says) for a while. A short preemption (a woken thread running for a few µs)
/// does not count.
#[derive(Debug, Default)]
struct SpinBackoff {
    /// Timer time before which shots are not spun.
    resume_at: Nanos,
    /// Length of the next back-off (0 = [`SPIN_BACKOFF_MIN_NS`]).
    next_ns: Nanos,
    /// When the last contended spun shot ended.
    last_contended: Nanos,
}

impl SpinBackoff {
    fn allows(&self, now: Nanos) -> bool {
        now >= self.resume_at
    }

    /// After a spun shot: `contended` starts a back-off from `now`, twice as long as the previous one (up
    /// to the maximum); the length falls back to the minimum only after [`SPIN_BACKOFF_MAX_NS`] without a
    /// contended shot (a clean shot in between, on a machine that is busy on and off, does not reset it).
    fn after_shot(&mut self, now: Nanos, contended: bool) {
        if contended {
            let len = self.next_ns.max(SPIN_BACKOFF_MIN_NS);
            self.resume_at = now.saturating_add(len);
            self.next_ns = len.saturating_mul(2).min(SPIN_BACKOFF_MAX_NS);
            self.last_contended = now;
        } else if now.saturating_sub(self.last_contended) >= SPIN_BACKOFF_MAX_NS {
            self.next_ns = 0;
        }
    }
}

/// One entry of the merged schedule: (time, device, event index).
type Slot = (Nanos, u16, u32);

impl Worker {
    fn run(mut self) {
        // Wake-ups from clock_nanosleep come up to the thread's timer slack late (50 µs by default); the
        // clock asks for 1 ns so that a short sleep margin suffices (less spinning). Only this thread.
        // SAFETY: prctl(PR_SET_TIMERSLACK) takes a plain integer and affects the calling thread only.
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
        }
        self.timer.on_clock_thread();
        let refused = apply_realtime(&self.config.realtime);
        for warning in &refused {
            tracing::warn!(clock = %self.name, "{warning}");
        }
        self.realtime_granted = self.config.realtime.enabled && refused.is_empty();
        if self.config.spin_shots_up_to_ns > 0 {
            tracing::info!(
                clock = %self.name,
                up_to_ns = self.config.spin_shots_up_to_ns,
                rests = rests_between_shots(&self.config.realtime, self.realtime_granted),
                "short shots are spun through (no sleep inside them)"
            );
        }
        loop {
            match self.commands.pop() {
                Ok(Command::Run(run)) => {
                    let summary = self.play(&run);
                    drop(run);
                    self.push_summary(summary);
                }
                Ok(Command::Shutdown) => return,
                Err(_) => thread::park_timeout(Duration::from_millis(20)),
            }
        }
    }

    fn push_summary(&mut self, summary: RunSummary) {
        let mut report = ClockReport::Done(summary);
        loop {
            match self.reports.push(report) {
                Ok(()) => return,
                Err(rtrb::PushError::Full(r)) => {
                    report = r;
                    // Nobody will read it: the consumer is gone or the clock is shutting down.
                    if self.reports.is_abandoned() || self.stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }

    fn play(&mut self, run: &ExperimentRun) -> RunSummary {
        let mut summary = RunSummary {
            run_id: run.run_id,
            experiment: run.experiment,
            shots_done: 0,
            outcome: RunOutcome::Completed,
            shot_overflows: 0,
            event_overflows: 0,
            underflows: 0,
            spun_shots: 0,
            spin_backoffs: 0,
        };
        if run.devices.len() != run.timelines.len() || run.devices.len() > u16::MAX as usize {
            summary.outcome = RunOutcome::Rejected(format!(
                "{} devices but {} timelines",
                run.devices.len(),
                run.timelines.len()
            ));
            return summary;
        }
        // Locks are taken once per experiment, outside every shot.
        let mut guards: Vec<_> = run.devices.iter().map(|d| d.lock()).collect();
        let names: Vec<String> = guards.iter().map(|g| g.info().name.clone()).collect();
        self.play_locked(run, &mut guards, &names, &mut summary);
        if matches!(summary.outcome, RunOutcome::UnderflowAbort { .. }) {
            // RTIO-underflow semantics: nothing more is played, every output goes to its safe state now,
            // before the locks are released (the control plane makes them safe again afterwards).
            for g in guards.iter_mut() {
                let _ = g.safe_state();
            }
        } else {
            // Whatever happened, every device leaves the experiment in manual (its program stays cached).
            for g in guards.iter_mut() {
                let _ = g.disarm();
            }
        }
        summary
    }

    fn play_locked(
        &mut self,
        run: &ExperimentRun,
        guards: &mut [parking_lot::MutexGuard<'_, Box<dyn Device>>],
        names: &[String],
        summary: &mut RunSummary,
    ) {
        for (i, g) in guards.iter_mut().enumerate() {
            if let Err(error) = g.arm() {
                summary.outcome = RunOutcome::DeviceFault {
                    shot: None,
                    device_name: names[i].clone(),
                    error,
                };
                return;
            }
        }
        let mut schedule: Vec<Slot> = Vec::new();
        for (d, tl) in run.timelines.iter().enumerate() {
            for (e, ev) in tl.events.iter().enumerate() {
                schedule.push((ev.t_ns, d as u16, e as u32));
            }
        }
        schedule.sort_unstable();
        // A shot lasts until its last pulse or exposure ends, not until its last event starts.
        let shot_len = run.timelines.iter().map(|t| t.end_ns()).max().unwrap_or(0);
        let cfg = self.config.clone();
        // Hardware-timed devices play their events on their own clock: no waiting for their deadlines.
        let hardware: Vec<bool> = guards.iter().map(|g| g.hardware_timed()).collect();
        let any_hardware = hardware.contains(&true);
        let mut first_t0: Option<Nanos> = None;
        let mut readout = Readout::new();
        let slack = slack_i64(cfg.slack_ns);
        // A wait gives up when this run is aborted or the clock shuts down (long leads and cycles).
        let abort = self.abort.clone();
        let run_id = run.run_id;
        let cancelled = move || run_id < abort.load(Ordering::Relaxed);
        // A short shot is spun from its lead to its end: a sleep lets the (v)CPU halt, and the wake-up from it
        // comes tens to hundreds of µs late now and then, real time or not (docs/performance.md). Under real
        // time the clock rests between shots, before the next shot's deadlines exist, for a quarter of the
        // time it spun (busy ≤ 80 % of the core, under the kernel's RT throttling).
        let short = spins_shot(cfg.spin_shots_up_to_ns, cfg.lead_ns, shot_len);
        let fifo = rests_between_shots(&cfg.realtime, self.realtime_granted);
        let mut last_busy: Nanos = 0;
        for shot in 0..run.shots {
            if run.run_id < self.abort.load(Ordering::SeqCst) {
                summary.outcome = RunOutcome::Aborted;
                break;
            }
            let ctx = ShotContext {
                seed: run.seed,
                experiment: run.experiment,
                shot,
            };
            if fifo && last_busy > 0 {
                self.timer.rest(last_busy / 4);
            }
            let mut shot_begin = self.timer.now();
            // Under real time nothing of lower priority preempts the clock: it always spins short shots.
            let spin = short && (fifo || self.spin_backoff.allows(shot_begin));
            let delay_before = if spin && !fifo {
                self.timer.run_delay_ns()
            } else {
                0
            };
            let earliest = shot_begin.saturating_add(cfg.lead_ns);
            let (t0, overrun_ns) = match (cfg.cycle_ns, first_t0) {
                (c, Some(f)) if c > 0 => {
                    let slot = f.saturating_add(c.saturating_mul(shot));
                    if earliest > slot {
                        (earliest, earliest - slot)
                    } else {
                        (slot, 0)
                    }
                }
                _ => (earliest, 0),
            };
            first_t0.get_or_insert(t0);
            if spin && t0.saturating_sub(cfg.lead_ns) > shot_begin {
                // A cycle slot still far away: sleep until its lead begins (no deadline depends on it).
                match self
                    .timer
                    .wait_until_or(t0.saturating_sub(cfg.lead_ns), &cancelled)
                {
                    Some(now) => shot_begin = now,
                    None => {
                        summary.outcome = RunOutcome::Aborted;
                        break;
                    }
                }
            }
            let mut record = ShotRecord {
                run_id: run.run_id,
                experiment: run.experiment,
                shot,
                t0_ns: t0,
                end_ns: t0,
                readout: Readout::new(),
                events: 0,
                max_lateness_ns: 0,
                underflows: 0,
                overrun_ns,
            };
            if overrun_ns > 0 {
                record.underflows += 1;
                summary.underflows += 1;
                if cfg.underflow_policy != UnderflowPolicy::Record {
                    summary.outcome = RunOutcome::Overrun { shot, overrun_ns };
                    break;
                }
            }
            if let Err((d, error)) = start_all(guards, &hardware, &ctx, t0) {
                summary.outcome = RunOutcome::DeviceFault {
                    shot: Some(shot),
                    device_name: names[d].clone(),
                    error,
                };
                break;
            }
            let mut failed: Option<RunOutcome> = None;
            for &(t, d, e) in &schedule {
                if hardware[d as usize] {
                    // The hardware applies it; the device only records it (its lateness comes after the shot).
                    let event = &run.timelines[d as usize].events[e as usize];
                    if let Err(error) = guards[d as usize].apply(e as usize, event, &ctx) {
                        failed = Some(RunOutcome::DeviceFault {
                            shot: Some(shot),
                            device_name: names[d as usize].clone(),
                            error,
                        });
                        break;
                    }
                    record.events += 1;
                    continue;
                }
                let deadline = t0.saturating_add(t);
                let waited = if spin {
                    Some(self.timer.spin_until(deadline))
                } else {
                    self.timer.wait_until_or(deadline, &cancelled)
                };
                let Some(mut ready) = waited else {
                    failed = Some(RunOutcome::Aborted);
                    break;
                };
                // Fault injection only: a plain load on the hot path, the swap only when armed.
                let injected = match self.delay.load(Ordering::Relaxed) {
                    0 => 0,
                    _ => self.delay.swap(0, Ordering::Relaxed),
                };
                if injected > 0 {
                    ready = self.timer.wait_until(ready.saturating_add(injected));
                }
                let event = &run.timelines[d as usize].events[e as usize];
                if cfg.underflow_policy == UnderflowPolicy::Abort {
                    // Checked before the device call: a late output is never played.
                    let late = signed_diff(ready, deadline);
                    if late > slack {
                        record.underflows += 1;
                        summary.underflows += 1;
                        failed = Some(RunOutcome::UnderflowAbort {
                            shot,
                            device: d,
                            device_name: names[d as usize].clone(),
                            event: e,
                            deadline_ns: t,
                            lateness_ns: late,
                            slack_ns: cfg.slack_ns,
                        });
                        break;
                    }
                }
                if let Err(error) = guards[d as usize].apply(e as usize, event, &ctx) {
                    failed = Some(RunOutcome::DeviceFault {
                        shot: Some(shot),
                        device_name: names[d as usize].clone(),
                        error,
                    });
                    break;
                }
                // Stamped when the device call returned: the output is on by now at the latest.
                let applied = self.timer.now().max(ready);
                let ev_record = EventRecord {
                    run_id: run.run_id,
                    shot,
                    device: d,
                    event: e,
                    scheduled_ns: t,
                    lateness_ns: signed_diff(applied, deadline),
                    stamp: Stamp::AfterApply,
                };
                record.events += 1;
                record.end_ns = applied;
                if let Some(outcome) = self.note_lateness(&mut record, summary, ev_record, names) {
                    failed = Some(outcome);
                    break;
                }
            }
            if let Some(outcome) = failed {
                summary.outcome = outcome;
                break;
            }
            let shot_end = if spin {
                Some(self.timer.spin_until(t0.saturating_add(shot_len)))
            } else {
                self.timer
                    .wait_until_or(t0.saturating_add(shot_len), &cancelled)
            };
            match shot_end {
                Some(end) => record.end_ns = end,
                None => {
                    summary.outcome = RunOutcome::Aborted;
                    break;
                }
            }
            readout.clear();
            for (d, g) in guards.iter_mut().enumerate() {
                if let Err(error) = g.end_shot(&ctx, &mut readout) {
                    failed = Some(RunOutcome::DeviceFault {
                        shot: Some(shot),
                        device_name: names[d].clone(),
                        error,
                    });
                    break;
                }
            }
            if failed.is_none() && any_hardware {
                failed = self.hardware_lateness(
                    run,
                    guards,
                    &hardware,
                    names,
                    &ctx,
                    t0,
                    &mut record,
                    summary,
                );
            }
            if let Some(outcome) = failed {
                summary.outcome = outcome;
                break;
            }
            record.readout = readout.clone();
            if self.reports.push(ClockReport::Shot(record)).is_err() {
                summary.shot_overflows += 1;
            }
            summary.shots_done += 1;
            if spin {
                let now = self.timer.now();
                last_busy = now.saturating_sub(shot_begin);
                summary.spun_shots += 1;
                if !fifo {
                    let waited = self.timer.run_delay_ns().saturating_sub(delay_before);
                    let contended = waited >= SPIN_CONTENDED_NS;
                    summary.spin_backoffs += u64::from(contended);
                    self.spin_backoff.after_shot(now, contended);
                }
            } else {
                last_busy = 0;
            }
        }
    }
}

impl Worker {
    /// Records one event's lateness (ring, shot maximum, underflow count); under the `fail` policy an
    /// underflow ends the run with the returned outcome.
    fn note_lateness(
        &mut self,
        record: &mut ShotRecord,
        summary: &mut RunSummary,
        ev: EventRecord,
        names: &[String],
    ) -> Option<RunOutcome> {
        record.max_lateness_ns = record.max_lateness_ns.max(ev.lateness_ns);
        if self.events.push(ev).is_err() {
            summary.event_overflows += 1;
        }
        if ev.lateness_ns > slack_i64(self.config.slack_ns) {
            record.underflows += 1;
            summary.underflows += 1;
            // Under `abort` this is an event that was on time when its device call began but came out late
            // (the call itself took too long): it was played, so it ends the run like `fail`.
            if self.config.underflow_policy != UnderflowPolicy::Record {
                return Some(RunOutcome::Underflow {
                    shot: ev.shot,
                    device: ev.device,
                    device_name: names[ev.device as usize].clone(),
                    event: ev.event,
                    lateness_ns: ev.lateness_ns,
                    slack_ns: self.config.slack_ns,
                });
            }
        }
        None
    }

    /// After a shot: the hardware-timed devices' applied times, as lateness on the host timebase.
    #[allow(clippy::too_many_arguments)]
    fn hardware_lateness(
        &mut self,
        run: &ExperimentRun,
        guards: &mut [parking_lot::MutexGuard<'_, Box<dyn Device>>],
        hardware: &[bool],
        names: &[String],
        ctx: &ShotContext,
        t0: Nanos,
        record: &mut ShotRecord,
        summary: &mut RunSummary,
    ) -> Option<RunOutcome> {
        for (d, g) in guards.iter_mut().enumerate() {
            if !hardware[d] {
                continue;
            }
            let events = &run.timelines[d].events;
            let mut outcome = None;
            let reported = g.applied_times(ctx, &mut |e, applied| {
                if outcome.is_some() {
                    return;
                }
                let Some(ev) = events.get(e as usize) else {
                    return;
                };
                let deadline = t0.saturating_add(ev.t_ns);
                let rec = EventRecord {
                    run_id: run.run_id,
                    shot: ctx.shot,
                    device: d as u16,
                    event: e,
                    scheduled_ns: ev.t_ns,
                    lateness_ns: signed_diff(applied, deadline),
                    stamp: Stamp::Device,
                };
                outcome = self.note_lateness(record, summary, rec, names);
            });
            if let Err(error) = reported {
                return Some(RunOutcome::DeviceFault {
                    shot: Some(ctx.shot),
                    device_name: names[d].clone(),
                    error,
                });
            }
            if outcome.is_some() {
                return outcome;
            }
        }
        None
    }
}

fn start_all(
    guards: &mut [parking_lot::MutexGuard<'_, Box<dyn Device>>],
    hardware: &[bool],
    ctx: &ShotContext,
    t0: Nanos,
) -> Result<(), (usize, crate::device::DeviceError)> {
    for (d, g) in guards.iter_mut().enumerate() {
        g.start_shot(ctx).map_err(|e| (d, e))?;
        if hardware[d] {
            g.trigger(ctx, t0).map_err(|e| (d, e))?;
        }
    }
    Ok(())
}
