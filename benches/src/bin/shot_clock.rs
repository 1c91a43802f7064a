//! `shot_clock`: how late a thread wakes up for an absolute deadline, and what waiting costs in CPU.
//!
//! Compared in the same run, on a grid of deadlines every 100 µs and every 1 ms:
//! - `shotline_hal::time::MonotonicTimer` (sleep with `clock_nanosleep(TIMER_ABSTIME)` until `margin` before
//!   the deadline, then spin) with margins 0, 50 µs, 100 µs and 200 µs (the `sim.yaml` default), and margins
//!   0 and 50 µs again with the thread's timer slack lowered from the default 50 µs to 1 ns;
//! - `tokio::time::sleep_until` on a current-thread runtime;
//! - `std::thread::sleep` for the remaining duration.
//!
//! Lateness = time the wait returned − deadline. `cpu_fraction` = CPU time of the waiting thread / wall time.
//! Then the full path: the real shot clock thread with simulated devices plays back-to-back shots.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use hdrhistogram::Histogram;
use shotline_benches::{
    args_or_exit, fraction, new_histogram, record, thread_cpu_ns, Percentiles, Report, ResultRow,
};
use shotline_hal::device::{handle, DeviceHandle};
use shotline_hal::shot_clock::{self, ClockReport, RunOutcome};
use shotline_hal::sim::{Coupling, SimDevice, SimDriver, SimWorld};
use shotline_hal::time::{monotonic_ns, MonotonicTimer, Nanos, ShotTimer};
use shotline_hal::{Action, ClockConfig, DeviceTimeline, Event, ExperimentRun, UnderflowPolicy};

/// A way of waiting for a deadline.
#[derive(Debug, Clone, Copy)]
enum Method {
    /// `MonotonicTimer::new(margin_ns)`; `slack_1ns`: with the thread's timer slack set to 1 ns
    /// (`prctl(PR_SET_TIMERSLACK)`) instead of the kernel's default 50 µs.
    Monotonic {
        margin_ns: Nanos,
        slack_1ns: bool,
    },
    Tokio,
    StdSleep,
}

impl Method {
    fn name(self) -> String {
        match self {
            Method::Monotonic {
                margin_ns,
                slack_1ns,
            } => format!(
                "monotonic_margin_{}us{}",
                margin_ns / 1000,
                if slack_1ns { "_slack1ns" } else { "" }
            ),
            Method::Tokio => "tokio_sleep_until".into(),
            Method::StdSleep => "std_thread_sleep".into(),
        }
    }
}

/// The lateness distribution of one method at one period.
struct Waits {
    lateness: Histogram<u64>,
    /// Waits that started after their deadline had already passed (the previous wait was later than a period).
    behind: u64,
    /// Waits that returned before their deadline (must stay 0).
    early: u64,
    cpu_ns: u64,
    wall_ns: u64,
}

impl Waits {
    fn new() -> Self {
        Self {
            lateness: new_histogram(),
            behind: 0,
            early: 0,
            cpu_ns: 0,
            wall_ns: 0,
        }
    }

    /// Records one wait for `deadline` that returned at `returned`, entered at `entered`.
    fn add(&mut self, deadline: Nanos, entered: Nanos, returned: Nanos) {
        if entered >= deadline {
            self.behind += 1;
        }
        if returned < deadline {
            self.early += 1;
        }
        record(&mut self.lateness, returned.saturating_sub(deadline));
    }
}

/// Waits for `n` deadlines `period_ns` apart (absolute grid starting one period from now) with `method`.
fn measure(method: Method, period_ns: Nanos, n: u64) -> Result<Waits> {
    let mut waits = Waits::new();
    let cpu0 = thread_cpu_ns();
    let wall0 = monotonic_ns();
    let first = wall0 + period_ns;
    match method {
        Method::Monotonic {
            margin_ns,
            slack_1ns,
        } => {
            if slack_1ns {
                set_timer_slack(1)?;
            }
            let mut timer = MonotonicTimer::new(margin_ns);
            for i in 0..n {
                let deadline = first + i * period_ns;
                let entered = monotonic_ns();
                let returned = timer.wait_until(deadline);
                waits.add(deadline, entered, returned);
            }
            if slack_1ns {
                // 0 restores the thread's default slack.
                set_timer_slack(0)?;
            }
        }
        Method::StdSleep => {
            for i in 0..n {
                let deadline = first + i * period_ns;
                let entered = monotonic_ns();
                if deadline > entered {
                    std::thread::sleep(Duration::from_nanos(deadline - entered));
                }
                waits.add(deadline, entered, monotonic_ns());
            }
        }
        Method::Tokio => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .context("building the tokio current-thread runtime")?;
            // std/tokio Instants are CLOCK_MONOTONIC on Linux: map nanoseconds onto them through one pair
            // of readings taken back to back.
            let base_instant = Instant::now();
            let base_ns = monotonic_ns();
            rt.block_on(async {
                for i in 0..n {
                    let deadline = first + i * period_ns;
                    let at = base_instant + Duration::from_nanos(deadline.saturating_sub(base_ns));
                    let entered = monotonic_ns();
                    tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                    waits.add(deadline, entered, monotonic_ns());
                }
            });
        }
    }
    waits.cpu_ns = thread_cpu_ns() - cpu0;
    waits.wall_ns = monotonic_ns() - wall0;
    Ok(waits)
}

/// Sets the calling thread's timer slack (ns; 0 = back to the thread's default).
fn set_timer_slack(ns: libc::c_ulong) -> Result<()> {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and affects only the calling thread.
    let rc = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns, 0, 0, 0) };
    if rc != 0 {
        return Err(anyhow!(
            "prctl(PR_SET_TIMERSLACK, {ns}) failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// `100us`, `1ms`: a period for row names (whole µs below 1 ms, whole ms above).
fn period_label(period_ns: Nanos) -> String {
    if period_ns >= 1_000_000 {
        format!("{}ms", period_ns / 1_000_000)
    } else {
        format!("{}us", period_ns / 1000)
    }
}

/// Cost of one `monotonic_ns()` read (vDSO on most kernels): average over `n` back-to-back reads.
fn clock_read_cost(n: u64) -> (f64, f64) {
    let t0 = monotonic_ns();
    let mut sink = 0u64;
    for _ in 0..n {
        sink = sink.wrapping_add(std::hint::black_box(monotonic_ns()));
    }
    std::hint::black_box(sink);
    let elapsed = (monotonic_ns() - t0).max(1);
    (elapsed as f64 / n as f64, n as f64 / (elapsed as f64 / 1e9))
}

const PERIOD_NS: Nanos = 10;

fn pulse(t_ns: Nanos, duration_ns: Nanos, setpoint: f64) -> Event {
    Event {
        t_ns,
        channel: 0,
        action: Action::Pulse {
            duration_ns,
            setpoint,
        },
    }
}

/// The simulated single-qudit rig (MOT, RF, camera), programmed with one shot: load 5 atoms at 0, RF pulses at
/// 200 µs and 300 µs, image at 1 ms for 10 µs (shot length 1.01 ms, 4 events).
fn rig() -> Result<(SimWorld, Vec<DeviceHandle>, Vec<DeviceTimeline>)> {
    let world = SimWorld::new(64);
    let specs = [
        ("mot", SimDriver::Ttl, Coupling::Load),
        (
            "rf",
            SimDriver::Dds,
            Coupling::RotateX { rate_hz: 10_000.0 },
        ),
        ("camera", SimDriver::Camera, Coupling::Image),
    ];
    let devices: Vec<DeviceHandle> = specs
        .iter()
        .enumerate()
        .map(|(i, (name, driver, coupling))| {
            handle(Box::new(SimDevice::new(
                name, *driver, PERIOD_NS, i as u16, &world, *coupling,
            )))
        })
        .collect();
    let timelines = vec![
        DeviceTimeline {
            device: "mot".into(),
            events: vec![pulse(0, 20_000, 5.0)],
        },
        DeviceTimeline {
            device: "rf".into(),
            events: vec![pulse(200_000, 12_500, 1.0), pulse(300_000, 12_500, 1.0)],
        },
        DeviceTimeline {
            device: "camera".into(),
            events: vec![Event {
                t_ns: 1_000_000,
                channel: 0,
                action: Action::Acquire {
                    exposure_ns: 10_000,
                },
            }],
        },
    ];
    for (d, tl) in devices.iter().zip(&timelines) {
        d.lock()
            .program(tl)
            .map_err(|e| anyhow!("programming {}: {e}", tl.device))?;
    }
    Ok((world, devices, timelines))
}

/// The `/proc/self/task/TID` directory of this process's thread named `comm` (15 bytes at most), waiting up
/// to 1 s for a freshly spawned thread to set its name.
fn find_thread(comm: &str) -> Option<std::path::PathBuf> {
    let until = Instant::now() + Duration::from_secs(1);
    loop {
        for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
            let path = entry.path();
            let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            if name.trim() == comm {
                return Some(path);
            }
        }
        if Instant::now() > until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// CPU time (ns) a thread has run so far, from its `schedstat`.
fn task_cpu_ns(task: &std::path::Path) -> Option<u64> {
    let stat = std::fs::read_to_string(task.join("schedstat")).ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// Plays `shots` back-to-back shots on the real shot clock with `MonotonicTimer::new(margin_ns)` and the
/// sim.yaml timing (lead 200 µs, slack 100 µs, cycle 0), draining both rings every 1 ms like acquisition.
fn full_path(margin_ns: Nanos, shots: u64) -> Result<ResultRow> {
    let (_world, devices, timelines) = rig()?;
    let config = ClockConfig {
        lead_ns: 200_000,
        cycle_ns: 0,
        slack_ns: 100_000,
        underflow_policy: UnderflowPolicy::Record,
        ..ClockConfig::default()
    };
    let (mut control, mut outputs) =
        shot_clock::spawn("b", config, Box::new(MonotonicTimer::new(margin_ns)))
            .context("spawning the shot clock thread")?;
    let events_per_shot: u64 = timelines.iter().map(|t| t.events.len() as u64).sum();
    let mut lateness = new_histogram();
    let task = find_thread("shot-clock-b");
    let cpu0 = task.as_deref().and_then(task_cpu_ns);
    let wall0 = monotonic_ns();
    control
        .start(ExperimentRun {
            run_id: 1,
            experiment: 0,
            shots,
            seed: 7,
            devices,
            timelines,
        })
        .map_err(|e| anyhow!("starting the run: {e}"))?;
    let guard = Instant::now() + Duration::from_secs(120);
    let mut shot_records = 0u64;
    let summary = loop {
        while let Ok(e) = outputs.events.pop() {
            record(&mut lateness, e.lateness_ns.max(0) as u64);
        }
        match outputs.reports.pop() {
            Ok(ClockReport::Shot(_)) => shot_records += 1,
            Ok(ClockReport::Done(summary)) => break summary,
            Err(_) => {
                if Instant::now() > guard {
                    return Err(anyhow!("the shot clock sent no summary within 120 s"));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    };
    let wall = monotonic_ns() - wall0;
    let cpu1 = task.as_deref().and_then(task_cpu_ns);
    while let Ok(e) = outputs.events.pop() {
        record(&mut lateness, e.lateness_ns.max(0) as u64);
    }
    control.shutdown();
    if summary.outcome != RunOutcome::Completed {
        return Err(anyhow!("run ended with {:?}", summary.outcome));
    }
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => serde_json::Value::from(fraction(b.saturating_sub(a), wall)),
        _ => serde_json::Value::Null,
    };
    Ok(
        ResultRow::new(format!("full_path_margin_{}us", margin_ns / 1000))
            .rate((summary.shots_done as f64 / (wall as f64 / 1e9) * 10.0).round() / 10.0)
            .percentiles(&Percentiles::of(&lateness))
            .field("shots", summary.shots_done)
            .field("shot_records", shot_records)
            .field("events_per_shot", events_per_shot)
            .field("underflows", summary.underflows)
            .field("event_overflows", summary.event_overflows)
            .field("cpu_fraction", cpu),
    )
}

fn main() -> Result<()> {
    let args = args_or_exit(
        "shot_clock",
        "shot_clock: lateness and CPU cost of absolute-deadline waits (MonotonicTimer vs tokio vs std sleep), \
         and the real shot clock on simulated devices",
    );
    let (n_100us, n_1ms, shots) = if args.quick {
        (1_000u64, 200u64, 300u64)
    } else {
        (5_000, 3_000, 2_000)
    };
    let mono = |margin_ns, slack_1ns| Method::Monotonic {
        margin_ns,
        slack_1ns,
    };
    let methods = [
        mono(0, false),
        mono(50_000, false),
        mono(100_000, false),
        mono(200_000, false),
        mono(0, true),
        mono(50_000, true),
        Method::Tokio,
        Method::StdSleep,
    ];
    let mut report = Report::new("shot_clock", args);
    let (read_ns, reads_per_s) = clock_read_cost(if args.quick { 200_000 } else { 2_000_000 });
    report.results.push(
        ResultRow::new("monotonic_ns_read")
            .rate(reads_per_s.round())
            .field("ns_per_read", (read_ns * 10.0).round() / 10.0),
    );
    for (period_ns, n) in [(100_000u64, n_100us), (1_000_000, n_1ms)] {
        for method in methods {
            let w = measure(method, period_ns, n)
                .with_context(|| format!("{} every {period_ns} ns", method.name()))?;
            report.results.push(
                ResultRow::new(format!("{}@{}", method.name(), period_label(period_ns)))
                    .percentiles(&Percentiles::of(&w.lateness))
                    .field("period_ns", period_ns)
                    .field("cpu_fraction", fraction(w.cpu_ns, w.wall_ns))
                    .field("behind", w.behind)
                    .field("early", w.early),
            );
        }
    }
    for margin_ns in [0, 50_000, 100_000, 200_000] {
        report.results.push(
            full_path(margin_ns, shots)
                .with_context(|| format!("full path with margin {margin_ns} ns"))?,
        );
    }
    report.print(args.json)?;
    Ok(())
}
