//! The fault-injection facility and the policies it exercises: actor panics are contained, device faults
//! end in a safe state with the job ended or retried per policy, crash recovery per policy.

use std::time::Duration;

use serde_json::json;
use shotline::config::{Config, DeviceFaultAction, InterruptedPolicy, UnderflowPolicy};
use shotline::protocol::JobStatus;
use shotline::{Runtime, SubmitOptions};
use shotline_actors::faults::{ActorFault, DeviceFaultKind, FaultSpec};

use crate::common::*;

fn with_faults(mut c: Config) -> Config {
    c.faults.enabled = true;
    c
}

fn long_job(shots: u32) -> serde_json::Value {
    job1(
        json!([
            ["load", [0], [5]],
            ["rlx", [0], [1.0]],
            ["measure", [0], []]
        ]),
        shots,
        Some(4),
    )
}

/// Waits until the job runs (or already ended: a loaded machine may be faster to fail than the poll).
async fn running(rt: &Runtime, job: &str) {
    for _ in 0..1000 {
        match rt.status(job).await.map(|s| s.status) {
            Ok(JobStatus::Running) => return,
            Ok(s) if s.is_terminal() => return,
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("job {job} never ran");
}

fn device(kind: DeviceFaultKind, device: &str, at_shot: u64) -> FaultSpec {
    FaultSpec::Device {
        backend: "singlequdit".into(),
        device: device.into(),
        kind,
        at_shot,
        hang_ms: 200,
    }
}

pub(crate) async fn devices_are_safe(rt: &Runtime) {
    for dev in ["mot", "rf", "detuning", "interaction", "camera"] {
        let seq = ractor::registry::where_is(
            rt.ctx()
                .name(&format!("backend:singlequdit/sequencer:{dev}")),
        )
        .map(ractor::ActorRef::<shotline_actors::sequencer::SequencerMsg>::from)
        .unwrap();
        let st =
            ractor::call_t!(seq, shotline_actors::sequencer::SequencerMsg::Status, 5000).unwrap();
        assert_eq!(
            st.state,
            shotline_hal::DeviceState::Manual,
            "{dev} is not in its safe state"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injection_is_off_unless_configured() {
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(dir.path(), sim_config()).await;
    let e = rt
        .service()
        .inject_fault(FaultSpec::Actor {
            role: "scheduler".into(),
            mode: ActorFault::Panic,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code, "FORBIDDEN");
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_every_actor_kind_is_contained() {
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(dir.path(), with_faults(sim_config())).await;
    let roles = [
        "scheduler",
        "lock_manager",
        "persistence",
        "registry",
        "backend:singlequdit/sequencer:camera",
        "backend:singlequdit/acquisition",
        "backend:singlequdit/analysis",
        "backend:singlequdit",
    ];
    for role in roles {
        let before = ractor::registry::where_is(rt.ctx().name(role))
            .unwrap()
            .get_id();
        rt.service()
            .inject_fault(FaultSpec::Actor {
                role: role.into(),
                mode: ActorFault::Panic,
            })
            .await
            .unwrap();
        // The actor is replaced by a new one and the service keeps working end to end.
        let mut replaced = false;
        for _ in 0..500 {
            if let Some(c) = ractor::registry::where_is(rt.ctx().name(role)) {
                if c.get_id() != before {
                    replaced = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(replaced, "{role} was not restarted");
        let r = run_ok(
            &rt,
            &job1(
                json!([["rlx", [0], [std::f64::consts::PI]], ["measure", [0], []]]),
                3,
                None,
            ),
        )
        .await;
        assert_eq!(
            r.results[0].data.memory,
            vec!["1"; 3],
            "after a panic of {role}"
        );
        // Space the faults out so the restart intensity (3 in 5 s) is not what is tested here.
        tokio::time::sleep(Duration::from_millis(1800)).await;
    }
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_faults_end_the_job_with_the_device_named_and_every_device_safe() {
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(dir.path(), with_faults(sim_config())).await;
    for (kind, dev, words) in [
        (DeviceFaultKind::Error, "rf", "injected error"),
        (DeviceFaultKind::Hang, "camera", "timed out"),
        (DeviceFaultKind::Disconnect, "mot", "disconnected"),
    ] {
        let s = rt
            .submit("singlequdit", &long_job(20_000), SubmitOptions::default())
            .await
            .unwrap();
        running(&rt, &s.job_id).await;
        rt.service()
            .inject_fault(device(kind, dev, 0))
            .await
            .unwrap();
        let end = rt.wait(&s.job_id, Duration::from_secs(60)).await.unwrap();
        assert_eq!(end.status, JobStatus::Error, "{kind:?}");
        assert!(
            end.error_message.contains(&format!("device {dev}")),
            "{}",
            end.error_message
        );
        assert!(end.error_message.contains(words), "{}", end.error_message);
        devices_are_safe(&rt).await;
        rt.service()
            .inject_fault(device(DeviceFaultKind::Clear, dev, 0))
            .await
            .unwrap();
        // The backend works again.
        run_ok(&rt, &job1(json!([["measure", [0], []]]), 2, None)).await;
    }
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_fault_can_retry_the_job_and_pause_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = with_faults(sim_config());
    config.backends[0].device_faults.action = DeviceFaultAction::Retry;
    config.backends[0].device_faults.pause_backend = true;
    let rt = start_in(dir.path(), config).await;
    let s = rt
        .submit("singlequdit", &long_job(6000), SubmitOptions::default())
        .await
        .unwrap();
    running(&rt, &s.job_id).await;
    rt.service()
        .inject_fault(device(DeviceFaultKind::Error, "rf", 0))
        .await
        .unwrap();
    // Re-queued, and the backend paused: it stays queued.
    for _ in 0..500 {
        if rt.status(&s.job_id).await.unwrap().status == JobStatus::Queued {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let st = rt.status(&s.job_id).await.unwrap();
    assert_eq!(st.status, JobStatus::Queued, "{st:?}");
    assert!(rt.service().backends().await.unwrap()[0].status.paused);
    // An operator resumes: the job runs again and completes.
    let admin = rt
        .service()
        .add_user("root", "password123", true)
        .await
        .unwrap();
    rt.service()
        .set_paused(&admin, "singlequdit", false)
        .await
        .unwrap();
    let end = rt.wait(&s.job_id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(end.status, JobStatus::Done);
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_clock_is_an_underflow_that_fails_the_job_under_the_fail_policy() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = with_faults(sim_config());
    config.backends[0].timing.underflow_policy = UnderflowPolicy::Fail;
    config.backends[0].timing.slack_ns = 4_000_000;
    let rt = start_in(dir.path(), config).await;
    let s = rt
        .submit("singlequdit", &long_job(20_000), SubmitOptions::default())
        .await
        .unwrap();
    running(&rt, &s.job_id).await;
    rt.service()
        .inject_fault(FaultSpec::ClockDelay {
            backend: "singlequdit".into(),
            delay_ns: 20_000_000,
        })
        .await
        .unwrap();
    let end = rt.wait(&s.job_id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(end.status, JobStatus::Error);
    assert!(
        end.error_message.contains("underflow"),
        "{}",
        end.error_message
    );
    assert!(
        end.error_message.contains("slack 4000000 ns"),
        "{}",
        end.error_message
    );
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_job_ends_error_with_where_it_stopped_under_the_fail_policy() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = with_faults(sim_config());
    config.recovery.on_interrupted = InterruptedPolicy::Fail;
    let rt = start_in(dir.path(), config).await;
    let s = rt
        .submit("singlequdit", &long_job(20_000), SubmitOptions::default())
        .await
        .unwrap();
    running(&rt, &s.job_id).await;
    // Let the progress be recorded, then kill the backend supervisor: no cleanup runs, as in a crash.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    rt.service()
        .inject_fault(FaultSpec::Actor {
            role: "backend:singlequdit".into(),
            mode: ActorFault::Kill,
        })
        .await
        .unwrap();
    let end = rt.wait(&s.job_id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(end.status, JobStatus::Error, "{end:?}");
    assert!(
        end.error_message
            .starts_with("interrupted by restart at shot "),
        "{}",
        end.error_message
    );
    assert!(
        end.error_message.ends_with(" of 20000"),
        "{}",
        end.error_message
    );
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_is_acknowledged_only_after_its_commit_returned() {
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(dir.path(), with_faults(sim_config())).await;
    // The pragmas are what the durability promise needs, read back from the file.
    let reader = shotline_store::Store::open(&dir.path().join("shotline.db")).unwrap();
    let p = reader.pragmas().unwrap();
    assert_eq!((p.journal_mode.as_str(), p.synchronous), ("wal", 2));
    // Hold every commit 400 ms: an acknowledgement sent before the commit would be seen here before the
    // row is visible to another connection.
    rt.service()
        .inject_fault(FaultSpec::StoreCommitDelay { delay_ms: 400 })
        .await
        .unwrap();
    for _ in 0..3 {
        let s = rt
            .submit(
                "singlequdit",
                &job1(json!([["measure", [0], []]]), 1, None),
                SubmitOptions::default(),
            )
            .await
            .unwrap();
        let row = reader.job(&s.job_id).unwrap();
        assert!(
            row.is_some(),
            "acknowledged job {} is not on disk yet",
            s.job_id
        );
    }
    rt.service()
        .inject_fault(FaultSpec::StoreCommitDelay { delay_ms: 0 })
        .await
        .unwrap();
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_stop_survives_a_restart_of_the_server_until_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(dir.path(), sim_config()).await;
    rt.estop().await.unwrap();
    rt.shutdown().await.unwrap();

    // Restarted on the same data dir: still paused, a new job waits.
    let rt = start_in(dir.path(), sim_config()).await;
    let (_, status) = rt.service().backend("singlequdit").await.unwrap();
    assert!(
        status.paused,
        "the emergency stop was forgotten by the restart"
    );
    let job = job1(json!([["measure", [0], []]]), 3, Some(1));
    let s = rt
        .submit("singlequdit", &job, SubmitOptions::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rt.status(&s.job_id).await.unwrap().status,
        JobStatus::Queued,
        "ran while paused"
    );
    // Resumed: the job runs, and the next restart starts unpaused.
    rt.set_paused("singlequdit", false).await.unwrap();
    let end = rt.wait(&s.job_id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(end.status, JobStatus::Done);
    rt.shutdown().await.unwrap();
    let rt = start_in(dir.path(), sim_config()).await;
    assert!(!rt.service().backend("singlequdit").await.unwrap().1.paused);
    rt.shutdown().await.unwrap();
}
