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

async fn kill_during_a_job(engine: &TestEngine, role: &str) {
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(engine, dir.path(), sim_config()).await;
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

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn the_scheduler_is_restarted_while_a_job_runs);
async fn the_scheduler_is_restarted_while_a_job_runs(engine: TestEngine) {
    kill_during_a_job(&engine, "scheduler").await;
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn the_lock_manager_is_restarted_while_a_job_runs);
async fn the_lock_manager_is_restarted_while_a_job_runs(engine: TestEngine) {
    kill_during_a_job(&engine, "lock_manager").await;
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn persistence_is_restarted_while_a_job_runs);
async fn persistence_is_restarted_while_a_job_runs(engine: TestEngine) {
    kill_during_a_job(&engine, "persistence").await;
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn a_sequencer_failure_restarts_the_backend_and_requeues_the_job);
async fn a_sequencer_failure_restarts_the_backend_and_requeues_the_job(engine: TestEngine) {
    kill_during_a_job(&engine, "backend:singlequdit/sequencer:rf").await;
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn above_the_restart_intensity_the_runtime_gives_up);
async fn above_the_restart_intensity_the_runtime_gives_up(engine: TestEngine) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = sim_config();
    config.supervision.max_restarts = 2;
    config.supervision.period_ms = 60_000;
    let mut rt = start_in(&engine, dir.path(), config).await;
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

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn shutdown_requeues_a_running_job_and_the_next_start_finishes_it);
async fn shutdown_requeues_a_running_job_and_the_next_start_finishes_it(engine: TestEngine) {
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(&engine, dir.path(), sim_config()).await;
    let s = rt
        .submit("singlequdit", &very_long_job(), SubmitOptions::default())
        .await
        .unwrap();
    wait_running(&rt, &s.job_id).await;
    rt.shutdown().await.unwrap();
    let store = engine.open(dir.path()).await;
    let job = store.job(&s.job_id).await.unwrap().unwrap();
    assert_eq!(
        job.status,
        JobStatus::Queued.as_str(),
        "re-queued at shutdown: {job:?}"
    );
    assert!(
        store.locks().await.unwrap().is_empty(),
        "the backend lock was released"
    );
    store.shutdown().await.unwrap();
    drop(store);
    let rt = start_in(&engine, dir.path(), sim_config()).await;
    let end = rt.wait(&s.job_id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(end.status, JobStatus::Done);
    rt.shutdown().await.unwrap();
}

fn with_faults(mut c: shotline::config::Config) -> shotline::config::Config {
    c.faults.enabled = true;
    c
}

fn backend_ref(rt: &Runtime) -> ractor::ActorRef<shotline_actors::backend::BackendMsg> {
    ractor::registry::where_is(rt.ctx().name("backend:singlequdit"))
        .expect("backend actor")
        .into()
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn a_panicking_execution_is_settled_and_the_backend_takes_the_next_job);
async fn a_panicking_execution_is_settled_and_the_backend_takes_the_next_job(engine: TestEngine) {
    use shotline_actors::faults::FaultSpec;
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(&engine, dir.path(), with_faults(sim_config())).await;
    rt.service()
        .inject_fault(FaultSpec::ExecutionPanic {
            backend: "singlequdit".into(),
        })
        .await
        .unwrap();
    let job = job1(
        json!([["rlx", [0], [std::f64::consts::PI]], ["measure", [0], []]]),
        3,
        None,
    );
    let a = rt
        .submit("singlequdit", &job, SubmitOptions::default())
        .await
        .unwrap();
    // The first execution panics (job RUNNING, lock held): the backend settles it — execution closed
    // INTERRUPTED, job re-queued (a counted attempt), lock released, devices safe — and runs it again.
    let end = rt.wait(&a.job_id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(end.status, JobStatus::Done, "{end:?}");
    let store = engine.open(dir.path()).await;
    let runs = store.executions_for_job(&a.job_id).await.unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0].outcome.as_deref(), Some("INTERRUPTED"), "{runs:?}");
    assert!(
        runs[0]
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("panic")),
        "{runs:?}"
    );
    assert_eq!(store.job(&a.job_id).await.unwrap().unwrap().attempts, 2);
    // The next job runs too, and the backend is idle again with every device safe.
    let b = run_ok(&rt, &job).await;
    assert_eq!(b.results[0].data.memory, vec!["1"; 3]);
    // DONE is announced when the result commits; the backend's phase returns to idle right after, when the
    // execution task reports back (a message later): wait for it, boundedly.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let phase = loop {
        let phase = ractor::call_t!(
            backend_ref(&rt),
            shotline_actors::backend::BackendMsg::Phase,
            5000
        )
        .unwrap();
        if phase == shotline_actors::backend::PhaseKind::Idle
            || std::time::Instant::now() > deadline
        {
            break phase;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(phase, shotline_actors::backend::PhaseKind::Idle);
    crate::faults::devices_are_safe(&rt).await;
    rt.shutdown().await.unwrap();
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn a_hung_device_does_not_stall_the_backend_actor);
async fn a_hung_device_does_not_stall_the_backend_actor(engine: TestEngine) {
    use shotline_actors::backend::{BackendMsg, PhaseKind};
    use shotline_actors::faults::{DeviceFaultKind, FaultSpec};
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(&engine, dir.path(), with_faults(sim_config())).await;
    let s = rt
        .submit("singlequdit", &very_long_job(), SubmitOptions::default())
        .await
        .unwrap();
    // The job's owner, the built-in local administrator.
    let admin = rt.service().user("local").await.unwrap();
    wait_running(&rt, &s.job_id).await;
    // The camera hangs 2.5 s inside a shot: the shot clock holds every device, nothing can be made safe.
    rt.service()
        .inject_fault(FaultSpec::Device {
            backend: "singlequdit".into(),
            device: "camera".into(),
            kind: DeviceFaultKind::Hang,
            at_shot: 0,
            hang_ms: 2500,
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A pause must wait for the shot boundary; it does so without holding the backend actor.
    let pausing = {
        let service = rt.service().clone();
        let admin = admin.clone();
        tokio::spawn(async move { service.set_paused(&admin, "singlequdit", true).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let b = backend_ref(&rt);
    let t = std::time::Instant::now();
    assert!(ractor::call_t!(b, BackendMsg::IsPaused, 5000).unwrap());
    assert_eq!(
        ractor::call_t!(b, BackendMsg::Phase, 5000).unwrap(),
        PhaseKind::Stopping
    );
    let (_, status) = rt.service().backend("singlequdit").await.unwrap();
    assert!(status.paused);
    // The owner cancels meanwhile: answered at once. When the hang ends, the hung shot is a device fault
    // (policy fail): the job ends ERROR naming the camera.
    let now = rt.service().cancel(&admin, &s.job_id).await;
    let answered = t.elapsed();
    assert!(now.is_ok(), "{now:?}");
    assert!(
        answered < Duration::from_millis(1000),
        "the backend answered after {answered:?} while a device hung"
    );
    let end = rt.wait(&s.job_id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(end.status, JobStatus::Error, "{end:?}");
    assert!(end.error_message.contains("device camera"), "{end:?}");
    pausing.await.unwrap().unwrap();
    crate::faults::devices_are_safe(&rt).await;
    // Resumed, the backend runs work again.
    rt.set_paused("singlequdit", false).await.unwrap();
    run_ok(&rt, &job1(json!([["measure", [0], []]]), 2, None)).await;
    rt.shutdown().await.unwrap();
}
