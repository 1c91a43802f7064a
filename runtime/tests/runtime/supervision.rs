//! Supervision: actors killed while a job runs are restarted, the service keeps answering, and the job ends
//! DONE, ERROR with a reason, or is re-queued and then done; no acknowledged job is lost.

use std::time::Duration;

use serde_json::json;
use shotline::protocol::JobStatus;
use shotline::{Runtime, SubmitOptions};

use crate::common::*;

/// A job that runs for a good fraction of a second.
fn long_job() -> serde_json::Value {
    job1(
        json!([
            ["load", [0], [10]],
            ["rlx", [0], [1.0]],
            ["measure", [0], []]
        ]),
        3000,
        Some(9),
    )
}

/// A job of ~4 s: a shutdown right after it starts finds it running even on a loaded machine.
fn very_long_job() -> serde_json::Value {
    job1(
        json!([
            ["load", [0], [10]],
            ["rlx", [0], [1.0]],
            ["measure", [0], []]
        ]),
        15_000,
        Some(9),
    )
}

fn kill(rt: &Runtime, role: &str) {
    let cell = ractor::registry::where_is(rt.ctx().name(role))
        .unwrap_or_else(|| panic!("no actor {role}"));
    cell.kill();
}

async fn wait_running(rt: &Runtime, job: &str) {
    for _ in 0..500 {
        if rt.status(job).await.map(|s| s.status) == Ok(JobStatus::Running) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("job {job} never ran");
}

/// Waits until `role` is registered again (restarted).
async fn wait_back(rt: &Runtime, role: &str) {
    for _ in 0..500 {
        if ractor::registry::where_is(rt.ctx().name(role)).is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{role} was not restarted");
}

async fn kill_during_a_job(role: &str) {
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(dir.path(), sim_config()).await;
    let s = rt
        .submit("singlequdit", &long_job(), SubmitOptions::default())
        .await
        .unwrap();
    wait_running(&rt, &s.job_id).await;
    kill(&rt, role);
    tokio::time::sleep(Duration::from_millis(50)).await;
    wait_back(&rt, role).await;
    // The service keeps answering.
    let backends = rt.service().backends().await.expect("service answers");
    assert_eq!(backends.len(), 1);
    // The job is not lost: it ends DONE (possibly after a re-queue) or ERROR with a reason.
    let end = rt.wait(&s.job_id, Duration::from_secs(60)).await.unwrap();
    match end.status {
        JobStatus::Done => {
            let r = rt.result(&s.job_id).await.unwrap();
            assert_eq!(r.results[0].data.memory.len(), 3000);
        }
        JobStatus::Error => assert!(!end.error_message.is_empty(), "ERROR without a reason"),
        other => panic!("job ended {other} after killing {role}"),
    }
    // And the runtime still runs new work.
    let after = run_ok(&rt, &job1(json!([["measure", [0], []]]), 3, Some(1))).await;
    assert_eq!(after.results[0].data.memory, vec!["0"; 3]);
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_is_restarted_while_a_job_runs() {
    kill_during_a_job("scheduler").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_manager_is_restarted_while_a_job_runs() {
    kill_during_a_job("lock_manager").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistence_is_restarted_while_a_job_runs() {
    kill_during_a_job("persistence").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequencer_failure_restarts_the_backend_and_requeues_the_job() {
    kill_during_a_job("backend:singlequdit/sequencer:rf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_the_restart_intensity_the_runtime_gives_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = sim_config();
    config.supervision.max_restarts = 2;
    config.supervision.period_ms = 60_000;
    let mut rt = start_in(dir.path(), config).await;
    for _ in 0..3 {
        wait_back(&rt, "registry").await;
        kill(&rt, "registry");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let reason = tokio::time::timeout(Duration::from_secs(30), rt.stopped())
        .await
        .expect("the tree stops")
        .expect("with a reason");
    assert!(reason.contains("restart intensity"), "{reason}");
    assert!(
        rt.shutdown().await.is_err(),
        "a give-up is an error for the caller"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_requeues_a_running_job_and_the_next_start_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(dir.path(), sim_config()).await;
    let s = rt
        .submit("singlequdit", &very_long_job(), SubmitOptions::default())
        .await
        .unwrap();
    wait_running(&rt, &s.job_id).await;
    rt.shutdown().await.unwrap();
    let store = shotline_store::Store::open(&dir.path().join("shotline.db")).unwrap();
    let job = store.job(&s.job_id).unwrap().unwrap();
    assert_eq!(job.status, "QUEUED", "re-queued at shutdown: {job:?}");
    assert!(
        store.locks().unwrap().is_empty(),
        "the backend lock was released"
    );
    drop(store);
    let rt = start_in(dir.path(), sim_config()).await;
    let end = rt.wait(&s.job_id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(end.status, JobStatus::Done);
    rt.shutdown().await.unwrap();
}
