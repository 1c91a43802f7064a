//! `e2e_inproc`: submit → DONE latency of a 1-experiment, 100-shot singlequdit job through the embedding API.
//!
//! One in-process runtime on the embedded `sim.yaml` (default timings: 200 µs lead, 50 µs sleep margin) in a
//! temporary data dir; the job of `examples/rabi.json` (load 50 atoms, rlx(π/2), measure; 100 shots) is
//! submitted N times one after the other (`--quick`: 20, else 100) after one warm-up job. Latency = from
//! just before `Runtime::submit` to the first `Runtime::status` poll that reports DONE; the bench polls
//! every 1 ms (`Runtime::wait` polls every 20 ms, which would quantise the figure to 20 ms), so each figure
//! is up to ~1 ms long. Also reported: submit → first poll seeing RUNNING (queueing and compilation) and
//! RUNNING → DONE (playing, analysis, persistence). Every job's result is checked to hold 100 measurements.
//!
//! The same job also runs, alternating with the all-simulated one, on a second runtime whose RF drive is a
//! timing card behind the firmware bridge (the firmware simulator on loopback TCP, in this process): rows
//! `card_*`, and `card_overhead_per_shot_us` = (card p50 − all-sim p50) / shots. Both runtimes return the
//! same memory for the same seed (checked).

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde_json::Value;
use shotline::config::{BridgeSection, DeviceDriver};
use shotline_benches::inproc::{
    check_result, sim_config, start_runtime, submit_and_time, tokio_runtime, POLL,
};
use shotline_benches::{args_or_exit, new_histogram, record, Percentiles, Report, ResultRow};
use shotline_cardsim::{CardSim, CardSimConfig, Listen};

/// `examples/rabi.json`: one experiment, 100 shots.
const RABI_JOB: &str = include_str!("../../../examples/rabi.json");

fn main() -> Result<()> {
    let args = args_or_exit(
        "e2e_inproc",
        "e2e_inproc: submit -> DONE latency of a 1-experiment 100-shot singlequdit job, in process",
    );
    if args.noisy {
        return noisy_main(args);
    }
    let jobs = if args.quick { 20u64 } else { 100 };
    let job: Value = serde_json::from_str(RABI_JOB).context("parsing examples/rabi.json")?;
    let shots = job["experiment_0"]["shots"].as_u64().unwrap_or(0);
    let config = sim_config()?;
    let card = CardSim::spawn(
        CardSimConfig::default(),
        Listen::Tcp("127.0.0.1:0".parse().context("loopback address")?),
    )
    .map_err(|e| anyhow!("card simulator: {e}"))?;
    let mut card_config = config.clone();
    let rf = card_config.backends[0]
        .devices
        .iter_mut()
        .find(|d| d.name == "rf")
        .ok_or_else(|| anyhow!("sim.yaml has no rf device"))?;
    rf.driver = DeviceDriver::Bridge;
    rf.bridge = Some(BridgeSection {
        address: card.endpoint(),
        ..BridgeSection::default()
    });
    let mut report = Report::new("e2e_inproc", args);
    let dir = tempfile::tempdir().context("creating a temporary data dir")?;
    let card_dir = tempfile::tempdir().context("creating a temporary data dir")?;
    let tokio = tokio_runtime(2)?;
    let (mut total, mut queued, mut playing) = (new_histogram(), new_histogram(), new_histogram());
    let (mut card_total, mut card_playing) = (new_histogram(), new_histogram());
    tokio.block_on(async {
        let rt = start_runtime(config, dir.path()).await?;
        let card_rt = start_runtime(card_config, card_dir.path()).await?;
        let timeout = Duration::from_secs(60);
        submit_and_time(&rt, "singlequdit", &job, timeout)
            .await
            .context("warm-up job")?;
        submit_and_time(&card_rt, "singlequdit", &job, timeout)
            .await
            .context("warm-up job with the RF on the card")?;
        for i in 0..jobs {
            let t = submit_and_time(&rt, "singlequdit", &job, timeout)
                .await
                .with_context(|| format!("job {i}"))?;
            check_result(&rt, &t.job_id, shots as usize).await?;
            record(&mut total, t.total_ns());
            record(&mut queued, t.running_ns.saturating_sub(t.submitted_ns));
            record(&mut playing, t.running_to_done_ns());
            let c = submit_and_time(&card_rt, "singlequdit", &job, timeout)
                .await
                .with_context(|| format!("job {i} with the RF on the card"))?;
            check_result(&card_rt, &c.job_id, shots as usize).await?;
            let (a, b) = (
                rt.result(&t.job_id).await.map_err(|e| anyhow!("{e}"))?,
                card_rt
                    .result(&c.job_id)
                    .await
                    .map_err(|e| anyhow!("{e}"))?,
            );
            if a.results[0].data.memory != b.results[0].data.memory {
                return Err(anyhow!(
                    "job {i}: the card run's memory differs from the all-sim run"
                ));
            }
            record(&mut card_total, c.total_ns());
            record(&mut card_playing, c.running_to_done_ns());
        }
        rt.shutdown()
            .await
            .map_err(|e| anyhow!("runtime shutdown: {e}"))?;
        card_rt
            .shutdown()
            .await
            .map_err(|e| anyhow!("runtime shutdown: {e}"))?;
        anyhow::Ok(())
    })?;
    drop(tokio);
    card.stop();
    report.results.push(
        ResultRow::new("submit_to_done")
            .percentiles(&Percentiles::of(&total))
            .field("shots_per_job", shots),
    );
    report
        .results
        .push(ResultRow::new("submit_to_running").percentiles(&Percentiles::of(&queued)));
    report
        .results
        .push(ResultRow::new("running_to_done").percentiles(&Percentiles::of(&playing)));
    let (sim_p50, card_p50) = (
        Percentiles::of(&total).p50_ns,
        Percentiles::of(&card_total).p50_ns,
    );
    report.results.push(
        ResultRow::new("card_submit_to_done")
            .percentiles(&Percentiles::of(&card_total))
            .field("shots_per_job", shots)
            .field(
                "card_overhead_per_shot_us",
                (card_p50 as f64 - sim_p50 as f64) / shots.max(1) as f64 / 1000.0,
            ),
    );
    report
        .results
        .push(ResultRow::new("card_running_to_done").percentiles(&Percentiles::of(&card_playing)));
    report.notes.push(format!(
        "status polled every {} ms (a thread sleep): figures are up to ~1 ms long; RUNNING is seen at the \
         first poll after it is set",
        POLL.as_millis()
    ));
    report.print(args.json)?;
    Ok(())
}

/// Whether some thread of this process named like a shot clock runs `SCHED_FIFO` pinned to `cpu`.
fn some_clock_is_realtime_on(cpu: usize) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return false;
    };
    dir.flatten().any(|e| {
        let name = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        name.starts_with("shot-clock-")
            && shotline_benches::noisy::task_is_realtime_on(&e.path(), cpu)
    })
}

/// `--noisy`: the rabi job on two runtimes, without and with the real-time opt-in (`timing.realtime` pinned
/// to the kept core), alternating, under a CPU+memory stressor on every core and control-plane load through
/// the gateway of a third runtime. Per variant: the shot clock's lateness p99 (99th percentile of the jobs'
/// own p99) and underflows (sum over the jobs) from each job's timing block.
fn noisy_main(args: shotline_benches::Args) -> Result<()> {
    use shotline_benches::noisy::{announce, ControlLoad, RealtimePlan, Stressor};
    let jobs = if args.quick { 10u64 } else { 50 };
    let job: Value = serde_json::from_str(RABI_JOB).context("parsing examples/rabi.json")?;
    let shots = job["experiment_0"]["shots"].as_u64().unwrap_or(0);
    let plan = RealtimePlan::decide();
    let plain_config = sim_config()?;
    let mut rt_config = plain_config.clone();
    {
        let r = &mut rt_config.backends[0].timing.realtime;
        let o = plan.options();
        r.enabled = o.enabled;
        r.priority = o.priority;
        r.cpu = o.cpu;
        r.mlock = o.mlock;
    }
    // The stressor first: one thread on every core, the kept one included.
    let stress = Stressor::start()?;
    // Then, as `serve` does: every thread created from here on (tokio workers, store threads) stays off the
    // kept core; the real-time shot clock pins itself to it.
    if let Err(e) = shotline::affinity::reserve_shot_clock_cpus(&rt_config) {
        eprintln!("noisy: {e}");
    }
    let load = ControlLoad::start(plan.cpu)?;
    announce(&stress, &plan);
    let mut report = Report::new("e2e_inproc", args);
    let dirs = (
        tempfile::tempdir().context("creating a temporary data dir")?,
        tempfile::tempdir().context("creating a temporary data dir")?,
    );
    let tokio = tokio_runtime(2)?;
    // (lateness p99 of each job, underflows, submit→DONE) per variant; whether RT was seen granted.
    let mut p99s = [new_histogram(), new_histogram()];
    let mut totals = [new_histogram(), new_histogram()];
    let mut underflows = [0u64, 0u64];
    let mut granted = plan.cpu.is_some();
    tokio.block_on(async {
        let runtimes = [
            start_runtime(plain_config, dirs.0.path()).await?,
            start_runtime(rt_config, dirs.1.path()).await?,
        ];
        let timeout = Duration::from_secs(120);
        for rt in &runtimes {
            submit_and_time(rt, "singlequdit", &job, timeout)
                .await
                .context("warm-up job")?;
        }
        if let Some(cpu) = plan.cpu {
            granted &= some_clock_is_realtime_on(cpu);
        }
        for i in 0..jobs {
            for (v, rt) in runtimes.iter().enumerate() {
                let t = submit_and_time(rt, "singlequdit", &job, timeout)
                    .await
                    .with_context(|| format!("job {i}"))?;
                check_result(rt, &t.job_id, shots as usize).await?;
                let result = rt.result(&t.job_id).await.map_err(|e| anyhow!("{e}"))?;
                if let Some(timing) = &result.results[0].timing {
                    record(&mut p99s[v], timing.p99_ns.max(0) as u64);
                    underflows[v] += timing.underflows;
                }
                record(&mut totals[v], t.total_ns());
            }
        }
        for rt in runtimes {
            rt.shutdown()
                .await
                .map_err(|e| anyhow!("runtime shutdown: {e}"))?;
        }
        anyhow::Ok(())
    })?;
    drop(tokio);
    let statuses = load.statuses.load(std::sync::atomic::Ordering::Relaxed);
    let submits = load.submits.load(std::sync::atomic::Ordering::Relaxed);
    let errors = load.errors.load(std::sync::atomic::Ordering::Relaxed);
    load.stop()?;
    drop(stress);
    for (v, realtime) in [(0usize, false), (1, true)] {
        report.results.push(
            ResultRow::new(if realtime {
                "rabi_lateness_realtime"
            } else {
                "rabi_lateness"
            })
            .percentiles(&Percentiles::of(&p99s[v]))
            .field("noisy", true)
            .field("realtime", realtime)
            .field("realtime_granted", realtime && granted)
            .field("underflows", underflows[v])
            .field("jobs", jobs)
            .field("shots_per_job", shots)
            .field("submit_to_done_p50_ns", Percentiles::of(&totals[v]).p50_ns)
            .field("control_status_requests", statuses)
            .field("control_submits", submits)
            .field("control_errors", errors),
        );
    }
    report.notes.push(
        "noisy: percentiles are over the jobs' own lateness p99 (timing block), underflows summed over the \
         jobs; a CPU+memory stressor on every core and control-plane load through the QUIC gateway of a \
         third runtime run throughout; the realtime runtime pins its shot clock (SCHED_FIFO 80, mlock) to the \
         last CPU, which every other thread of the process is kept off"
            .into(),
    );
    report.print(args.json)?;
    Ok(())
}
