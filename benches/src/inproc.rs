//! In-process runtime helpers of the `pipeline` and `e2e_inproc` benchmarks: the embedded `sim.yaml`
//! configuration, a runtime on a temporary data dir, and a submit that times the job's status changes by
//! polling `Runtime::status` every millisecond.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};
use shotline::config::{parse_str, BackendSection, Config, SIM_YAML};
use shotline::protocol::JobStatus;
use shotline::{Runtime, StartOptions, SubmitOptions};
use shotline_hal::time::monotonic_ns;

/// Interval at which [`submit_and_time`] polls the job's status: figures are quantised to it.
pub const POLL: Duration = Duration::from_millis(1);

/// The embedded default configuration (`configs/sim.yaml`).
pub fn sim_config() -> Result<Config> {
    parse_str(SIM_YAML, "sim.yaml").map_err(|e| anyhow!("embedded sim.yaml: {e}"))
}

/// The first backend (`singlequdit`) of `config`.
pub fn backend_mut(config: &mut Config) -> Result<&mut BackendSection> {
    config
        .backends
        .first_mut()
        .ok_or_else(|| anyhow!("the configuration has no backend"))
}

/// Starts an in-process runtime (no gateway, no admin socket) with its data in `dir`.
pub async fn start_runtime(config: Config, dir: &Path) -> Result<Runtime> {
    Runtime::start_with(
        config,
        "sha256:bench".into(),
        StartOptions {
            data_dir: Some(dir.to_path_buf()),
            ..Default::default()
        },
    )
    .await
    .map_err(|e| anyhow!("starting the runtime in {}: {e}", dir.display()))
}

/// A job of one singlequdit experiment of `shots` shots.
pub fn job1(instructions: Value, shots: u32, seed: u64) -> Value {
    json!({
        "experiment_0": {
            "instructions": instructions,
            "num_wires": 1,
            "shots": shots,
            "wire_order": "sequential",
            "seed": seed,
        }
    })
}

/// When a job's status changes were seen (monotonic ns).
#[derive(Debug, Clone)]
pub struct JobTimes {
    /// Just before `submit` was called.
    pub submitted_ns: u64,
    /// First poll that saw `RUNNING` (or a terminal status, if it was never seen running).
    pub running_ns: u64,
    /// First poll that saw `DONE`.
    pub done_ns: u64,
    /// The job's identifier.
    pub job_id: String,
}

impl JobTimes {
    /// Submit → DONE, in ns.
    pub fn total_ns(&self) -> u64 {
        self.done_ns.saturating_sub(self.submitted_ns)
    }

    /// First `RUNNING` seen → DONE, in ns.
    pub fn running_to_done_ns(&self) -> u64 {
        self.done_ns.saturating_sub(self.running_ns)
    }
}

/// Submits `job` to `backend`, polls its status every [`POLL`] until it is terminal (at most `timeout`), and
/// returns when it was seen running and done. A job that ends other than `DONE` is an error with its message.
///
/// Call it only inside `Runtime::block_on` on a thread that is not a tokio worker (it sleeps the thread
/// between polls).
pub async fn submit_and_time(
    rt: &Runtime,
    backend: &str,
    job: &Value,
    timeout: Duration,
) -> Result<JobTimes> {
    let submitted_ns = monotonic_ns();
    let submitted = rt
        .submit(backend, job, SubmitOptions::default())
        .await
        .map_err(|e| anyhow!("submit refused: {e}"))?;
    let id = submitted.job_id;
    let limit = submitted_ns.saturating_add(timeout.as_nanos() as u64);
    let mut running_ns = None;
    loop {
        let s = rt
            .status(&id)
            .await
            .map_err(|e| anyhow!("status of {id}: {e}"))?;
        let now = monotonic_ns();
        if s.status == JobStatus::Running || s.status.is_terminal() {
            running_ns.get_or_insert(now);
        }
        if s.status.is_terminal() {
            if s.status != JobStatus::Done {
                return Err(anyhow!(
                    "job {id} ended {:?}: {}",
                    s.status,
                    s.error_message
                ));
            }
            return Ok(JobTimes {
                submitted_ns,
                running_ns: running_ns.unwrap_or(now),
                done_ns: now,
                job_id: id,
            });
        }
        if now > limit {
            return Err(anyhow!(
                "job {id} not done within {} s (last status {:?})",
                timeout.as_secs(),
                s.status
            ));
        }
        // A plain thread sleep (~1.05 ms with the default timer slack) rather than tokio's timer, which
        // rounds up to whole milliseconds (1-2 ms): this future runs in `block_on` on the bench's main
        // thread, not on a tokio worker, so the sleep blocks nothing else.
        std::thread::sleep(POLL);
    }
}

/// Checks that job `id` has a result with `shots` measurements in each of its experiments (the pipeline
/// really carried every shot to the store).
pub async fn check_result(rt: &Runtime, id: &str, shots: usize) -> Result<()> {
    let result = rt
        .result(id)
        .await
        .map_err(|e| anyhow!("result of {id}: {e}"))?;
    if result.results.is_empty() {
        return Err(anyhow!("job {id}: the result has no experiment"));
    }
    for (i, r) in result.results.iter().enumerate() {
        let n = r.data.memory.len();
        if n != shots {
            return Err(anyhow!(
                "job {id}: experiment {i} has {n} measurements, expected {shots}"
            ));
        }
    }
    Ok(())
}

/// A multi-thread tokio runtime with `workers` worker threads, for the embedded shotline runtime.
pub fn tokio_runtime(workers: usize) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("building the tokio runtime")
}
