//! The `--noisy` mode of `shot_clock` and `e2e_inproc`: a CPU and memory stressor on every core, control-plane
//! load through the QUIC gateway (status requests and durable submits), and the real-time opt-in made safe for
//! a 2-core machine.
//!
//! Safety of the real-time opt-in: the kernel's RT throttling must be on (`sched_rt_runtime_us` ≠ -1; it is
//! never changed here), otherwise nothing is asked for; real-time work runs in bounded windows of about 1 s
//! with a pause of [`RT_PAUSE`] between them; the real-time core is the last allowed CPU and only when at
//! least two are allowed; the control plane's threads (tokio workers, store writer) are kept off it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde_json::json;
use shotline_client::SubmitOptions;
use shotline_hal::realtime::{allowed_cpus, apply_realtime, exclude_cpus, RealtimeOptions};

use crate::inproc::{job1, sim_config, tokio_runtime};
use crate::remote::{to_value, Served};

/// Pause between two real-time windows: the rest of the machine runs.
pub const RT_PAUSE: Duration = Duration::from_millis(50);
/// `SCHED_FIFO` priority asked for.
pub const RT_PRIORITY: u8 = 80;
/// Bytes each stressor thread walks through (memory bandwidth and cache pressure).
const STRESS_BYTES: usize = 16 << 20;
/// Concurrent status requesters and submitters of the control-plane load.
const STATUS_TASKS: usize = 4;
const SUBMIT_TASKS: usize = 2;

/// What the real-time opt-in may use on this machine.
#[derive(Debug, Clone)]
pub struct RealtimePlan {
    /// The core kept for real-time work (None: not possible here, see `why_not`).
    pub cpu: Option<usize>,
    /// Why real time is not asked for, when it is not.
    pub why_not: Option<String>,
    /// `sched_rt_runtime_us` / `sched_rt_period_us` as read.
    pub throttle: String,
}

impl RealtimePlan {
    /// Decides the real-time core and checks that RT throttling is on.
    pub fn decide() -> Self {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
        };
        let runtime = read("/proc/sys/kernel/sched_rt_runtime_us");
        let period = read("/proc/sys/kernel/sched_rt_period_us");
        let throttle = format!(
            "sched_rt_runtime_us {} / sched_rt_period_us {}",
            runtime.map_or("?".into(), |v| v.to_string()),
            period.map_or("?".into(), |v| v.to_string())
        );
        let cpus = allowed_cpus();
        let why_not = match (runtime, cpus.len()) {
            (None, _) => Some("cannot read the RT throttling setting; not asking for real time".into()),
            (Some(-1), _) => Some(
                "RT throttling is off (sched_rt_runtime_us = -1): a spinning real-time thread could \
                 starve the machine; not asking for real time"
                    .into(),
            ),
            (_, n) if n < 2 => Some(format!(
                "only {n} CPU allowed: no core can be kept for real time; not asking for it"
            )),
            _ => None,
        };
        Self {
            cpu: if why_not.is_none() {
                cpus.last().copied()
            } else {
                None
            },
            why_not,
            throttle,
        }
    }

    /// The options of a real-time shot clock (or spin) on the kept core; disabled when not possible.
    pub fn options(&self) -> RealtimeOptions {
        RealtimeOptions {
            enabled: self.cpu.is_some(),
            priority: RT_PRIORITY,
            cpu: self.cpu,
            mlock: true,
        }
    }
}

/// Asks for real time for the calling thread per `plan`; returns whether everything was granted, and
/// prints what the OS refused.
pub fn enter_realtime(plan: &RealtimePlan) -> bool {
    if plan.cpu.is_none() {
        return false;
    }
    let refused = apply_realtime(&RealtimeOptions {
        mlock: false,
        ..plan.options()
    });
    for r in &refused {
        eprintln!("noisy: {r}");
    }
    refused.is_empty()
}

/// Back to normal scheduling for the calling thread (its affinity stays).
pub fn leave_realtime() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: valid sched_param for the calling thread (pid 0).
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_OTHER, &param);
    }
}

/// Whether the thread at `/proc/self/task/TID` runs `SCHED_FIFO` pinned to exactly `cpu`.
pub fn task_is_realtime_on(task: &std::path::Path, cpu: usize) -> bool {
    let Ok(stat) = std::fs::read_to_string(task.join("stat")) else {
        return false;
    };
    let Some(close) = stat.rfind(')') else {
        return false;
    };
    // Fields after the name start at field 3 (state); policy is field 41.
    let policy: Option<u32> = stat[close + 2..]
        .split_whitespace()
        .nth(41 - 3)
        .and_then(|v| v.parse().ok());
    let pinned = std::fs::read_to_string(task.join("status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| v.trim() == cpu.to_string())
        })
        .unwrap_or(false);
    policy == Some(libc::SCHED_FIFO as u32) && pinned
}

/// One busy thread per allowed core, pinned to it, walking a private buffer (CPU and memory).
pub struct Stressor {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Cores stressed.
    pub cpus: Vec<usize>,
}

impl Stressor {
    /// Starts the stressor on every allowed core.
    pub fn start() -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let cpus = allowed_cpus();
        let mut threads = Vec::new();
        for &cpu in &cpus {
            let stop = stop.clone();
            let t = std::thread::Builder::new()
                .name(format!("stress-{cpu}"))
                .spawn(move || {
                    let others: Vec<usize> =
                        allowed_cpus().into_iter().filter(|&c| c != cpu).collect();
                    let _ = exclude_cpus(&others);
                    let mut buf = vec![1u8; STRESS_BYTES];
                    let mut acc = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for i in (0..buf.len()).step_by(64) {
                            acc = acc
                                .wrapping_mul(6364136223846793005)
                                .wrapping_add(buf[i] as u64);
                            buf[i] = acc as u8;
                        }
                    }
                    std::hint::black_box(acc);
                })
                .context("spawning a stressor thread")?;
            threads.push(t);
        }
        Ok(Self {
            stop,
            threads,
            cpus,
        })
    }
}

impl Drop for Stressor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Control-plane load: an in-process runtime with the QUIC gateway, status requesters and durable
/// submitters (the backend is paused, so the submitted jobs stay queued: durable writes, no execution).
/// Its threads (tokio workers, store writer) are kept off the real-time core.
pub struct ControlLoad {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<()>>>,
    /// Status answers received.
    pub statuses: Arc<AtomicU64>,
    /// Submissions acknowledged (durable).
    pub submits: Arc<AtomicU64>,
    /// Requests that failed.
    pub errors: Arc<AtomicU64>,
}

impl ControlLoad {
    /// Starts the load; returns once the gateway answers.
    pub fn start(keep_free: Option<usize>) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let statuses = Arc::new(AtomicU64::new(0));
        let submits = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<String, String>>();
        let (s2, st2, su2, e2) = (
            stop.clone(),
            statuses.clone(),
            submits.clone(),
            errors.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("control-load".into())
            .spawn(move || -> Result<()> {
                if let Some(cpu) = keep_free {
                    exclude_cpus(&[cpu]).map_err(|e| anyhow!(e))?;
                }
                let tokio = tokio_runtime(2)?;
                tokio.block_on(async move {
                    let mut config = sim_config()?;
                    config.limits.max_queued_jobs_per_user = 10_000_000;
                    config.limits.max_streams_per_connection =
                        config.limits.max_streams_per_connection.max(64);
                    let served = match Served::start(config).await {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return Err(e);
                        }
                    };
                    let (client, token) = served.user("noisy", true).await?;
                    client
                        .pause_backend(&token, "singlequdit")
                        .await
                        .map_err(|e| anyhow!("pausing singlequdit: {e}"))?;
                    let job = to_value(&job1(json!([["measure", [0], []]]), 1, 1))?;
                    let first = client
                        .submit(&token, "singlequdit", job.clone(), SubmitOptions::default())
                        .await
                        .map_err(|e| anyhow!("first submit: {e}"))?;
                    let client = Arc::new(client);
                    let _ = ready_tx.send(Ok(served.addr.clone()));
                    let mut tasks = tokio::task::JoinSet::new();
                    for i in 0..STATUS_TASKS + SUBMIT_TASKS {
                        let (client, token, job, id) = (
                            client.clone(),
                            token.clone(),
                            job.clone(),
                            first.job_id.clone(),
                        );
                        let (stop, statuses, submits, errors) =
                            (s2.clone(), st2.clone(), su2.clone(), e2.clone());
                        tasks.spawn(async move {
                            while !stop.load(Ordering::Relaxed) {
                                let ok = if i < STATUS_TASKS {
                                    client.status(&token, &id).await.map(|_| &statuses)
                                } else {
                                    client
                                        .submit(
                                            &token,
                                            "singlequdit",
                                            job.clone(),
                                            SubmitOptions::default(),
                                        )
                                        .await
                                        .map(|_| &submits)
                                };
                                match ok {
                                    Ok(counter) => counter.fetch_add(1, Ordering::Relaxed),
                                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                                };
                            }
                        });
                    }
                    while tasks.join_next().await.is_some() {}
                    if let Ok(c) = Arc::try_unwrap(client) {
                        c.close().await;
                    }
                    served.shutdown().await
                })
            })
            .context("spawning the control-load thread")?;
        match ready_rx.recv_timeout(Duration::from_secs(120)) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(anyhow!("control-plane load did not start: {e}")),
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                return Err(match thread.join() {
                    Ok(Err(e)) => anyhow!("control-plane load did not start: {e}"),
                    _ => anyhow!("control-plane load did not start within 120 s"),
                });
            }
        }
        Ok(Self {
            stop,
            thread: Some(thread),
            statuses,
            submits,
            errors,
        })
    }

    /// Stops the load and the runtime.
    pub fn stop(mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(anyhow!("the control-load thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for ControlLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Prints what the noisy mode runs and what real time was granted (stderr, before the measurements).
pub fn announce(stress: &Stressor, plan: &RealtimePlan) {
    eprintln!(
        "noisy: CPU+memory stressor on cpus {:?} ({} MiB each), control-plane load (gateway: {STATUS_TASKS} \
         status requesters + {SUBMIT_TASKS} durable submitters, backend paused)",
        stress.cpus,
        STRESS_BYTES >> 20
    );
    eprintln!("noisy: RT throttling left as it is: {}", plan.throttle);
    match (&plan.why_not, plan.cpu) {
        (Some(why), _) => eprintln!("noisy: real-time rows run without real time: {why}"),
        (None, Some(cpu)) => eprintln!(
            "noisy: real-time opt-in: SCHED_FIFO {RT_PRIORITY} pinned to cpu {cpu}, mlock; real-time work in \
             bounded windows (~1 s at most) with pauses between them; control-plane threads kept off cpu {cpu}"
        ),
        (None, None) => {}
    }
}
