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

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn fault_injection_is_off_unless_configured);
async fn fault_injection_is_off_unless_configured(engine: TestEngine) {
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(&engine, dir.path(), sim_config()).await;
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

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn a_panic_in_every_actor_kind_is_contained);
async fn a_panic_in_every_actor_kind_is_contained(engine: TestEngine) {
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(&engine, dir.path(), with_faults(sim_config())).await;
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

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn device_faults_end_the_job_with_the_device_named_and_every_device_safe);
async fn device_faults_end_the_job_with_the_device_named_and_every_device_safe(engine: TestEngine) {
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(&engine, dir.path(), with_faults(sim_config())).await;
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

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn a_device_fault_can_retry_the_job_and_pause_the_backend);
async fn a_device_fault_can_retry_the_job_and_pause_the_backend(engine: TestEngine) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = with_faults(sim_config());
    config.backends[0].device_faults.action = DeviceFaultAction::Retry;
    config.backends[0].device_faults.pause_backend = true;
    let rt = start_in(&engine, dir.path(), config).await;
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

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn a_delayed_clock_is_an_underflow_that_fails_the_job_under_the_fail_policy);
async fn a_delayed_clock_is_an_underflow_that_fails_the_job_under_the_fail_policy(
    engine: TestEngine,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = with_faults(sim_config());
    config.backends[0].timing.underflow_policy = UnderflowPolicy::Fail;
    config.backends[0].timing.slack_ns = 4_000_000;
    let rt = start_in(&engine, dir.path(), config).await;
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

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn a_late_event_under_the_abort_policy_is_not_played_and_the_job_ends_error_naming_it);
async fn a_late_event_under_the_abort_policy_is_not_played_and_the_job_ends_error_naming_it(
    engine: TestEngine,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = with_faults(sim_config());
    config.backends[0].timing.underflow_policy = UnderflowPolicy::Abort;
    config.backends[0].timing.slack_ns = 4_000_000;
    let rt = start_in(&engine, dir.path(), config).await;
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
    let msg = &end.error_message;
    for needle in [
        "underflow abort in shot ",
        ": event ",
        " of device ",
        "(deadline ",
        "ns late (slack 4000000 ns)",
        "it was not applied",
        "safe state",
    ] {
        assert!(msg.contains(needle), "{needle:?} not in {msg}");
    }
    // It names the experiment first.
    assert!(msg.starts_with("experiment_0: "), "{msg}");
    rt.shutdown().await.unwrap();
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn an_interrupted_job_ends_error_with_where_it_stopped_under_the_fail_policy);
async fn an_interrupted_job_ends_error_with_where_it_stopped_under_the_fail_policy(
    engine: TestEngine,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = with_faults(sim_config());
    config.recovery.on_interrupted = InterruptedPolicy::Fail;
    let rt = start_in(&engine, dir.path(), config).await;
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

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn a_submission_is_acknowledged_only_after_its_commit_returned);
async fn a_submission_is_acknowledged_only_after_its_commit_returned(engine: TestEngine) {
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(&engine, dir.path(), with_faults(sim_config())).await;
    // Another connection to the store, like a second process. SQLite: a plain reading connection (a second
    // engine would queue behind the runtime's writer, which holds the commit), and the pragmas the durability
    // promise needs, read back from the file; the PostgreSQL engine checks `synchronous_commit` at start.
    let file = engine
        .is_sqlite()
        .then(|| shotline_store::Store::open(&dir.path().join("shotline.db")).unwrap());
    if let Some(file) = &file {
        let p = file.pragmas().unwrap();
        assert_eq!((p.journal_mode.as_str(), p.synchronous), ("wal", 2));
    }
    let reader = match file {
        Some(_) => None,
        None => Some(engine.open(dir.path()).await),
    };
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
        let row = match (&file, &reader) {
            (Some(file), _) => file.job(&s.job_id).unwrap(),
            (None, Some(reader)) => reader.job(&s.job_id).await.unwrap(),
            (None, None) => unreachable!("one reader or the other"),
        };
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

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn an_emergency_stop_survives_a_restart_of_the_server_until_resumed);
async fn an_emergency_stop_survives_a_restart_of_the_server_until_resumed(engine: TestEngine) {
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(&engine, dir.path(), sim_config()).await;
    rt.estop().await.unwrap();
    rt.shutdown().await.unwrap();

    // Restarted on the same data dir: still paused, a new job waits.
    let rt = start_in(&engine, dir.path(), sim_config()).await;
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
    let rt = start_in(&engine, dir.path(), sim_config()).await;
    assert!(!rt.service().backend("singlequdit").await.unwrap().1.paused);
    rt.shutdown().await.unwrap();
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn a_device_fault_while_programming_applies_the_device_fault_policy);
async fn a_device_fault_while_programming_applies_the_device_fault_policy(engine: TestEngine) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = with_faults(sim_config());
    config.backends[0].device_faults.pause_backend = true;
    let rt = start_in(&engine, dir.path(), config).await;
    // The MOT is disconnected before the job starts: its programming fails, not a shot.
    rt.service()
        .inject_fault(device(DeviceFaultKind::Disconnect, "mot", 0))
        .await
        .unwrap();
    let s = rt
        .submit("singlequdit", &long_job(10), SubmitOptions::default())
        .await
        .unwrap();
    let end = rt.wait(&s.job_id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(end.status, JobStatus::Error, "{end:?}");
    assert!(
        end.error_message
            .contains("device mot failed while programming"),
        "{}",
        end.error_message
    );
    assert!(
        end.error_message.contains("disconnected"),
        "{}",
        end.error_message
    );
    // The policy applied as to a fault in a shot: the backend is paused, the pause names the device.
    let mut paused = false;
    for _ in 0..300 {
        if rt.service().backends().await.unwrap()[0].status.paused {
            paused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        paused,
        "a device fault in programming did not pause the backend"
    );
    let mut reason = None;
    for _ in 0..300 {
        let store = engine.open(dir.path()).await;
        reason = store
            .backend_pause("singlequdit")
            .await
            .unwrap()
            .map(|p| p.reason);
        store.shutdown().await.unwrap();
        if reason.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reason = reason.expect("the pause is recorded");
    assert!(reason.contains("device mot"), "{reason}");
    rt.shutdown().await.unwrap();
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn a_slow_analysis_overflows_the_ring_at_the_source_not_a_mailbox);
async fn a_slow_analysis_overflows_the_ring_at_the_source_not_a_mailbox(engine: TestEngine) {
    use shotline::config::OverflowPolicy;
    let dir = tempfile::tempdir().unwrap();
    let mut config = with_faults(sim_config());
    config.backends[0].timing.shot_ring = 16;
    config.backends[0].timing.overflow_policy = OverflowPolicy::Degrade;
    let rt = start_in(&engine, dir.path(), config).await;
    // Analysis takes 2 ms a shot; the clock plays one every ~0.2 ms.
    rt.service()
        .inject_fault(FaultSpec::AnalysisDelay {
            backend: "singlequdit".into(),
            delay_us: 2000,
        })
        .await
        .unwrap();
    let shots = 400u64;
    let r = run_ok(
        &rt,
        &job1(json!([["measure", [0], []]]), shots as u32, Some(1)),
    )
    .await;
    let kept = r.results[0].data.memory.len() as u64;
    let timing = r.results[0].timing.clone().unwrap();
    // Acquisition stopped draining while analysis was a ring behind: the clock's ring overflowed and the
    // loss was counted there, per the policy (degrade: a shorter memory).
    assert!(timing.lost_shots > 0, "nothing lost: {timing:?}");
    assert_eq!(kept + timing.lost_shots, shots, "{timing:?}");
    // At most the ring plus a ring's worth in analysis's mailbox ever waited: far fewer than the shots.
    assert!(kept <= shots / 2, "kept {kept} of {shots}");
    rt.shutdown().await.unwrap();
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn an_estop_acts_on_every_backend_at_once_and_reports_each_device);
async fn an_estop_acts_on_every_backend_at_once_and_reports_each_device(engine: TestEngine) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = with_faults(sim_config());
    // Each backend's devices get one call timeout to confirm their safe state (2 s: a store call on a loaded
    // 2-core machine may take over 1 s; the hang below is 3 call timeouts long).
    config.supervision.call_timeout_ms = 2000;
    let mut second = config.backends[0].clone();
    second.name = "second".into();
    config.backends.push(second);
    let rt = start_in(&engine, dir.path(), config).await;
    let s = rt
        .submit("singlequdit", &long_job(20_000), SubmitOptions::default())
        .await
        .unwrap();
    running(&rt, &s.job_id).await;
    // The camera of `singlequdit` hangs 6 s inside a shot, holding the clock (and every device) with it.
    let mut hang = device(DeviceFaultKind::Hang, "camera", 0);
    if let FaultSpec::Device { hang_ms, .. } = &mut hang {
        *hang_ms = 6000;
    }
    rt.service().inject_fault(hang).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let t = std::time::Instant::now();
    let report = rt.estop().await.unwrap();
    let took = t.elapsed();
    // Bounded by the call timeout (the hung device is given one), not by the hang.
    assert!(
        took < Duration::from_millis(5000),
        "the estop took {took:?}"
    );
    assert!(!report.all_safe, "{report:?}");
    assert!(
        report.message.contains("singlequdit/camera NOT SAFE"),
        "{}",
        report.message
    );
    let hung = &report.backends[0];
    assert_eq!(hung.backend, "singlequdit");
    assert!(hung.answered && hung.paused, "{hung:?}");
    assert_eq!(hung.job_id.as_deref(), Some(s.job_id.as_str()));
    let camera = hung.devices.iter().find(|d| d.device == "camera").unwrap();
    assert!(!camera.safe, "{camera:?}");
    assert!(
        camera.reason.as_deref().is_some_and(|r| r.contains("busy")),
        "{camera:?}"
    );
    let other = &report.backends[1];
    assert_eq!(other.backend, "second");
    assert!(other.answered && other.paused, "{other:?}");
    assert_eq!(other.devices.len(), 5, "{other:?}");
    assert!(other.devices.iter().all(|d| d.safe), "{other:?}");
    // Both paused; once the hang ends, the hung shot is a device fault (policy fail: the job ends ERROR
    // naming the camera) and every device reaches its safe state.
    assert!(rt
        .service()
        .backends()
        .await
        .unwrap()
        .iter()
        .all(|b| b.status.paused));
    let end = rt.wait(&s.job_id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(end.status, JobStatus::Error, "{end:?}");
    assert!(end.error_message.contains("device camera"), "{end:?}");
    devices_are_safe(&rt).await;
    rt.shutdown().await.unwrap();
}
