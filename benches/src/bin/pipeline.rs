//! `pipeline`: shots per second through shot clock → acquisition → analysis → persistence for zero-duration
//! timelines, and the runtime's overhead per shot.
//!
//! The embedded `sim.yaml` with `lead_ns: 0`, `cycle_ns: 0`, the camera's clock period at 1 ns and the
//! exposure at one period, rings large enough for a whole run; the job is one experiment of
//! `[["measure", [0], []]]` (the shortest timeline the backend accepts) with 200 000 shots (`--quick`:
//! 50 000), submitted through the embedding API (`Runtime::submit`) and timed from submit to the first
//! status poll (every 1 ms) that reports DONE. Rows:
//! - `pipeline`: shots/s submit → DONE (median of the runs), with the RUNNING → DONE figure beside it;
//! - `bare_shot_clock`: the HAL shot clock alone (`shot_clock::spawn`, `MonotonicTimer` with the sim.yaml
//!   margin, the same five simulated devices and the same one-event timeline, both rings drained every 1 ms);
//! - `runtime_overhead`: (pipeline time − bare clock time) / shots, in µs per shot.
//!
//! Targets: ≥ 100 000 shots/s and ≤ 10 µs runtime overhead per shot.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde_json::json;
use shotline_benches::inproc::{
    backend_mut, check_result, job1, sim_config, start_runtime, submit_and_time, tokio_runtime,
    POLL,
};
use shotline_benches::{args_or_exit, Report, ResultRow, Target};
use shotline_config::Config;
use shotline_hal::device::{handle, DeviceHandle};
use shotline_hal::shot_clock::{self, ClockReport, RunOutcome};
use shotline_hal::sim::{Coupling, SimDevice, SimDriver, SimWorld};
use shotline_hal::time::{monotonic_ns, MonotonicTimer, Nanos};
use shotline_hal::{Action, ClockConfig, DeviceTimeline, Event, ExperimentRun, UnderflowPolicy};

/// Shot and event ring capacities: a whole run fits, so the rings never decide the figure.
const SHOT_RING: u32 = 1 << 20;
const EVENT_RING: u32 = 1 << 22;
/// Camera clock period (and exposure) of the zero-duration timeline.
const CAMERA_PERIOD_NS: u64 = 1;

/// sim.yaml turned into a zero-duration pipeline: no lead, no cycle, 1 ns exposure, large rings.
fn zero_duration_config() -> Result<Config> {
    let mut config = sim_config()?;
    let b = backend_mut(&mut config)?;
    b.timing.lead_ns = 0;
    b.timing.cycle_ns = 0;
    b.timing.shot_ring = SHOT_RING;
    b.timing.event_ring = EVENT_RING;
    let camera = b.sequence.measure.device.clone();
    let device = b
        .devices
        .iter_mut()
        .find(|d| d.name == camera)
        .ok_or_else(|| anyhow!("sim.yaml: measure device `{camera}` is not a device"))?;
    device.clock_period_ns = CAMERA_PERIOD_NS;
    b.sequence.measure.exposure_ns = CAMERA_PERIOD_NS;
    Ok(config)
}

/// The backend's devices as the runtime builds them (same drivers, periods and couplings), and the
/// one-event timeline of a `measure`: the camera acquires at 0 for one period, the others have no events.
fn bare_rig(config: &Config) -> Result<(SimWorld, Vec<DeviceHandle>, Vec<DeviceTimeline>)> {
    let b = config
        .backends
        .first()
        .ok_or_else(|| anyhow!("the configuration has no backend"))?;
    let s = &b.sequence;
    let world = SimWorld::new(b.max_atoms);
    let mut devices = Vec::new();
    let mut timelines = Vec::new();
    for (i, d) in b.devices.iter().enumerate() {
        let driver = match d.driver.as_str() {
            "sim_ttl" => SimDriver::Ttl,
            "sim_dds" => SimDriver::Dds,
            "sim_camera" => SimDriver::Camera,
            other => {
                return Err(anyhow!(
                    "device {}: the pipeline benchmark runs on simulated devices only, not driver {other}",
                    d.name
                ))
            }
        };
        let coupling = if d.name == s.load.device {
            Coupling::Load
        } else if d.name == s.rlx.device {
            Coupling::RotateX {
                rate_hz: s.rlx.rabi_frequency_hz,
            }
        } else if d.name == s.rlz.device {
            Coupling::RotateZ {
                rate_hz: s.rlz.rate_hz,
            }
        } else if d.name == s.rlz2.device {
            Coupling::TwistZ2 {
                rate_hz: s.rlz2.rate_hz,
            }
        } else if d.name == s.measure.device {
            Coupling::Image
        } else {
            Coupling::None
        };
        let events = if d.name == s.measure.device {
            vec![Event {
                t_ns: 0,
                channel: 0,
                action: Action::Acquire {
                    exposure_ns: s.measure.exposure_ns,
                },
            }]
        } else {
            Vec::new()
        };
        let dev = handle(Box::new(SimDevice::new(
            &d.name,
            driver,
            d.clock_period_ns,
            i as u16,
            &world,
            coupling,
        )));
        let timeline = DeviceTimeline {
            device: d.name.clone(),
            events,
        };
        dev.lock()
            .program(&timeline)
            .map_err(|e| anyhow!("programming {}: {e}", d.name))?;
        devices.push(dev);
        timelines.push(timeline);
    }
    Ok((world, devices, timelines))
}

/// Plays `shots` zero-duration shots on the bare HAL shot clock; returns (wall ns start → summary, shots).
fn bare_clock(config: &Config, shots: u64) -> Result<(u64, u64)> {
    let b = config
        .backends
        .first()
        .ok_or_else(|| anyhow!("the configuration has no backend"))?;
    let t = &b.timing;
    let (_world, devices, timelines) = bare_rig(config)?;
    let clock_config = ClockConfig {
        lead_ns: t.lead_ns,
        cycle_ns: t.cycle_ns,
        slack_ns: t.slack_ns,
        underflow_policy: UnderflowPolicy::Record,
        shot_ring: t.shot_ring as usize,
        event_ring: t.event_ring as usize,
        ..ClockConfig::default()
    };
    let (mut control, mut outputs) = shot_clock::spawn(
        "bench",
        clock_config,
        Box::new(MonotonicTimer::new(t.sleep_margin_ns as Nanos)),
    )
    .context("spawning the shot clock thread")?;
    let t0 = monotonic_ns();
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
        while outputs.events.pop().is_ok() {}
        match outputs.reports.pop() {
            Ok(ClockReport::Shot(_)) => shot_records += 1,
            Ok(ClockReport::Done(summary)) => break summary,
            Err(_) => {
                if Instant::now() > guard {
                    return Err(anyhow!("the shot clock sent no summary within 120 s"));
                }
                std::thread::sleep(POLL);
            }
        }
    };
    let wall = monotonic_ns() - t0;
    control.shutdown();
    if summary.outcome != RunOutcome::Completed {
        return Err(anyhow!("bare clock run ended with {:?}", summary.outcome));
    }
    if shot_records != shots {
        return Err(anyhow!(
            "bare clock: {shot_records} shot records for {shots} shots"
        ));
    }
    Ok((wall, summary.shots_done))
}

fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

fn per_s(n: u64, ns: u64) -> f64 {
    (n as f64 / (ns.max(1) as f64 / 1e9)).round()
}

fn main() -> Result<()> {
    let args = args_or_exit(
        "pipeline",
        "pipeline: zero-duration shots/s through shot clock -> acquisition -> analysis -> persistence, \
         and the runtime overhead per shot",
    );
    let (shots, runs) = if args.quick {
        (50_000u32, 1usize)
    } else {
        (200_000, 3)
    };
    let config = zero_duration_config()?;
    let mut report = Report::new("pipeline", args);

    let mut bare = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (wall, done) = bare_clock(&config, u64::from(shots)).context("bare shot clock")?;
        if done != u64::from(shots) {
            return Err(anyhow!("bare clock played {done} of {shots} shots"));
        }
        bare.push(wall);
    }

    let dir = tempfile::tempdir().context("creating a temporary data dir")?;
    let tokio = tokio_runtime(2)?;
    let (mut totals, mut running) = (Vec::new(), Vec::new());
    tokio.block_on(async {
        let rt = start_runtime(config.clone(), dir.path()).await?;
        let instructions = json!([["measure", [0], []]]);
        let timeout = Duration::from_secs(300);
        // Warm-up: the store, the actors and the local user exist before the first timed job.
        submit_and_time(
            &rt,
            "singlequdit",
            &job1(instructions.clone(), 1000, 1),
            timeout,
        )
        .await
        .context("warm-up job")?;
        for i in 0..runs {
            let job = job1(instructions.clone(), shots, 2 + i as u64);
            let t = submit_and_time(&rt, "singlequdit", &job, timeout)
                .await
                .with_context(|| format!("pipeline job {i} of {shots} shots"))?;
            check_result(&rt, &t.job_id, shots as usize).await?;
            totals.push(t.total_ns());
            running.push(t.running_to_done_ns());
        }
        rt.shutdown()
            .await
            .map_err(|e| anyhow!("runtime shutdown: {e}"))?;
        anyhow::Ok(())
    })?;
    drop(tokio);

    let n = u64::from(shots);
    let (total, run, bare_ns) = (median(&mut totals), median(&mut running), median(&mut bare));
    let rate = per_s(n, total);
    let overhead_us =
        (total.saturating_sub(bare_ns) as f64 / n as f64 / 1e3 * 1000.0).round() / 1000.0;
    report.results.push(
        ResultRow::new("pipeline")
            .rate(rate)
            .field("shots", n)
            .field("runs", runs as u64)
            .field("submit_to_done_ms", (total as f64 / 1e4).round() / 100.0)
            .field("running_to_done_per_s", per_s(n, run))
            .field(
                "us_per_shot",
                (total as f64 / n as f64 / 1e3 * 1000.0).round() / 1000.0,
            ),
    );
    report.results.push(
        ResultRow::new("bare_shot_clock")
            .rate(per_s(n, bare_ns))
            .field("shots", n)
            .field("wall_ms", (bare_ns as f64 / 1e4).round() / 100.0)
            .field(
                "us_per_shot",
                (bare_ns as f64 / n as f64 / 1e3 * 1000.0).round() / 1000.0,
            ),
    );
    report.results.push(
        ResultRow::new("runtime_overhead")
            .field("us_per_shot", overhead_us)
            .field("shots", n),
    );
    report.check(
        "pipeline",
        Target::new(
            "target_shots_per_s",
            rate >= 100_000.0,
            ">= 100000 zero-duration shots/s submit -> DONE",
            format!("{rate:.0} shots/s"),
        ),
    );
    report.check(
        "runtime_overhead",
        Target::new(
            "target_overhead_10us",
            overhead_us <= 10.0,
            "<= 10 us runtime overhead per shot",
            format!("{overhead_us:.3} us per shot"),
        ),
    );
    report.notes.push(format!(
        "times are submit -> first status poll reporting DONE; polls every {} ms, so each job time is up \
         to ~1 ms long",
        POLL.as_millis()
    ));
    report.print(args.json)?;
    Ok(())
}
