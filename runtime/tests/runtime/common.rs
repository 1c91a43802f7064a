//! Shared helpers: a runtime on the embedded default config in a temporary data dir.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use shotline::config::{parse_str, Config, SIM_YAML};
use shotline::protocol::{JobResult, JobStatus};
use shotline::{Runtime, StartOptions, SubmitOptions};

/// The embedded default config.
pub fn sim_config() -> Config {
    parse_str(SIM_YAML, "sim.yaml").expect("sim.yaml is valid")
}

/// An in-process runtime (no gateway) on `dir`.
pub async fn start_in(dir: &Path, config: Config) -> Runtime {
    if std::env::var_os("SHOTLINE_TEST_LOG").is_some() {
        shotline::logging::init(&config.logging);
    }
    Runtime::start_with(
        config,
        "sha256:test".into(),
        StartOptions {
            data_dir: Some(dir.to_path_buf()),
            ..Default::default()
        },
    )
    .await
    .expect("runtime starts")
}

/// One experiment of singlequdit.
pub fn experiment(instructions: Value, shots: u32, seed: Option<u64>) -> Value {
    let mut e = json!({
        "instructions": instructions,
        "num_wires": 1,
        "shots": shots,
        "wire_order": "sequential",
    });
    if let Some(s) = seed {
        e["seed"] = json!(s);
    }
    e
}

/// A job of one experiment.
pub fn job1(instructions: Value, shots: u32, seed: Option<u64>) -> Value {
    json!({ "experiment_0": experiment(instructions, shots, seed) })
}

/// Submits and waits for a terminal status (panics on timeout).
pub async fn run_job(rt: &Runtime, job: &Value) -> (String, JobStatus) {
    let s = rt
        .submit("singlequdit", job, SubmitOptions::default())
        .await
        .expect("submit accepted");
    let status = rt
        .wait(&s.job_id, Duration::from_secs(60))
        .await
        .expect("status");
    assert!(
        status.status.is_terminal(),
        "job did not finish: {status:?}"
    );
    (s.job_id, status.status)
}

/// Runs a job that must succeed and returns its result.
pub async fn run_ok(rt: &Runtime, job: &Value) -> JobResult {
    let (id, status) = run_job(rt, job).await;
    let result = rt.result(&id).await.expect("result");
    assert_eq!(status, JobStatus::Done, "job failed: {:?}", result.header);
    result
}

/// The measured occupation numbers of experiment `i`.
pub fn memory(result: &JobResult, i: usize) -> Vec<u32> {
    result.results[i]
        .data
        .memory
        .iter()
        .map(|m| m.parse().expect("memory is a number"))
        .collect()
}
