use shotline_store::{
    ExecutionEnd, ExecutionOutcome, ExecutionRecord, JobStatus, SettlePolicy, ShotDataRecord,
    StoreError,
};

use crate::harness::{Harness, T1, T2, T3};

fn record(id: &str, job_id: &str, attempt: u32) -> ExecutionRecord {
    ExecutionRecord {
        id: id.to_owned(),
        job_id: job_id.to_owned(),
        backend: "b1".to_owned(),
        attempt,
        seed: u64::MAX - 7,
        config_hash: "cfg".to_owned(),
        software_version: "0.1.0".to_owned(),
        calibration: "{}".to_owned(),
        started_at: T1.to_owned(),
        ended_at: None,
        outcome: None,
        detail: None,
    }
}

fn shots(execution_id: &str, index: u32) -> ShotDataRecord {
    ShotDataRecord {
        execution_id: execution_id.to_owned(),
        experiment_index: index,
        experiment_name: format!("e{index}"),
        shots: 2,
        memory: vec!["0x0".into(), "0x1".into()],
        timing: "{}".to_owned(),
        first_shot_at: Some(T1.to_owned()),
        last_shot_at: Some("2026-11-22T10:00:01.5Z".to_owned()),
    }
}

fn policy(counted: bool, max_attempts: u32, fail_interrupted: bool) -> SettlePolicy {
    SettlePolicy {
        cause: "interrupted by restart".to_owned(),
        counted,
        max_attempts,
        fail_interrupted,
    }
}

/// A user, a queued job `id` and its started execution `x-<id>`.
async fn running(h: &Harness, user: &str, id: &str) -> String {
    let u = match h.engine.user_by_name(user).await.unwrap() {
        Some(u) => u,
        None => h.user(user).await,
    };
    h.job(&u, id, "b1").await;
    let x = format!("x-{id}");
    assert!(h.engine.start_execution(&record(&x, id, 1)).await.unwrap());
    x
}

pub async fn execution_ids_count_up_per_day_and_reject_bad_days(h: Harness) {
    let e = &h.engine;
    assert_eq!(
        e.next_execution_id("20261122").await.unwrap(),
        "20261122-001"
    );
    assert_eq!(
        e.next_execution_id("20261122").await.unwrap(),
        "20261122-002"
    );
    assert_eq!(
        e.next_execution_id("20261123").await.unwrap(),
        "20261123-001"
    );
    for bad in ["2026-11-22", "2026112", "abcdefgh"] {
        match e.next_execution_id(bad).await {
            Err(StoreError::Invalid { field, .. }) => assert_eq!(field, "day"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    // The counter is durable: a reopened store goes on.
    let again = h.another_process().await;
    assert_eq!(
        again.next_execution_id("20261122").await.unwrap(),
        "20261122-003"
    );
}

pub async fn a_started_execution_commits_its_result_exactly_once(h: Harness) {
    let e = &h.engine;
    let x = running(&h, "alice", "j").await;
    let job = e.job("j").await.unwrap().unwrap();
    assert_eq!(job.job_status(), Some(JobStatus::Running));
    assert_eq!(
        (job.attempts, job.detail.as_deref()),
        (1, Some("execution x-j"))
    );
    assert!(
        !e.start_execution(&record("x2", "j", 2)).await.unwrap(),
        "only a queued job starts"
    );
    assert!(!e.start_execution(&record("x3", "nope", 1)).await.unwrap());
    let stored = e.execution(&x).await.unwrap().unwrap();
    assert_eq!(stored.seed, u64::MAX - 7, "the full u64 seed round-trips");
    assert_eq!(stored.ended_at, None);

    e.set_execution_progress(&x, "shot 1 of 4").await.unwrap();
    assert_eq!(
        e.execution(&x).await.unwrap().unwrap().detail.as_deref(),
        Some("shot 1 of 4")
    );
    let rows = [shots(&x, 0), shots(&x, 1)];
    assert!(
        !e.commit_result("j", "x-other", &rows, "{}", T2)
            .await
            .unwrap(),
        "not its execution"
    );
    assert!(e
        .commit_result("j", &x, &rows, "{\"ok\":true}", T2)
        .await
        .unwrap());
    let job = e.job("j").await.unwrap().unwrap();
    assert_eq!(job.job_status(), Some(JobStatus::Done));
    let result = e.result("j").await.unwrap().unwrap();
    assert_eq!(
        (result.execution_id.as_str(), result.body.as_str()),
        (x.as_str(), "{\"ok\":true}")
    );
    let data = e.shot_data(&x).await.unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1].memory, ["0x0", "0x1"]);
    assert_eq!(
        data[0].last_shot_at.as_deref(),
        Some("2026-11-22T10:00:01.500Z")
    );
    let ended = e.execution(&x).await.unwrap().unwrap();
    assert_eq!(
        ended.outcome.as_deref(),
        Some(ExecutionOutcome::Done.as_str())
    );
    assert_eq!(ended.ended_at.as_deref(), Some(T2));
    // A second commit (a late duplicate) changes nothing.
    assert!(!e
        .commit_result("j", &x, &rows, "{\"ok\":false}", T3)
        .await
        .unwrap());
    assert_eq!(e.result("j").await.unwrap().unwrap().body, "{\"ok\":true}");
    let progress_after_end = e.set_execution_progress(&x, "shot 9 of 9").await;
    assert!(progress_after_end.is_ok());
    assert_eq!(
        e.execution(&x).await.unwrap().unwrap().detail,
        None,
        "an ended execution keeps its detail"
    );
    let statuses: Vec<String> = e
        .job_events("j")
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.status)
        .collect();
    assert_eq!(statuses, ["QUEUED", "RUNNING", "DONE"]);
    assert_eq!(e.executions_for_job("j").await.unwrap().len(), 1);
}

pub async fn failing_and_cancelling_never_override_a_result(h: Harness) {
    let e = &h.engine;
    let x = running(&h, "alice", "f").await;
    assert!(e
        .fail_job("f", Some(&x), "laser unlocked", T2)
        .await
        .unwrap());
    let job = e.job("f").await.unwrap().unwrap();
    assert_eq!(job.job_status(), Some(JobStatus::Error));
    assert_eq!(
        (job.detail.as_deref(), job.error_message.as_deref()),
        (Some("failed"), Some("laser unlocked"))
    );
    let ex = e.execution(&x).await.unwrap().unwrap();
    assert_eq!(
        (ex.outcome.as_deref(), ex.detail.as_deref()),
        (Some("ERROR"), Some("laser unlocked"))
    );
    assert!(
        !e.fail_job("f", None, "again", T3).await.unwrap(),
        "an ended job stays as it is"
    );

    let done = running(&h, "alice", "d").await;
    assert!(e.commit_result("d", &done, &[], "{}", T2).await.unwrap());
    assert!(!e.fail_job("d", None, "late", T3).await.unwrap());
    assert!(!e
        .cancel_running("d", &done, "late cancel", T3)
        .await
        .unwrap());
    assert_eq!(
        e.job("d").await.unwrap().unwrap().job_status(),
        Some(JobStatus::Done)
    );

    let c = running(&h, "alice", "c").await;
    assert!(e
        .cancel_running("c", &c, "cancelled after 2 of 4 shots", T2)
        .await
        .unwrap());
    let job = e.job("c").await.unwrap().unwrap();
    assert_eq!(job.job_status(), Some(JobStatus::Cancelled));
    assert_eq!(job.detail.as_deref(), Some("cancelled after 2 of 4 shots"));
    assert_eq!(
        e.execution(&c).await.unwrap().unwrap().outcome.as_deref(),
        Some("CANCELLED")
    );

    // A queued job can be failed (never started); an unknown execution is named.
    let u = e.user_by_name("alice").await.unwrap().unwrap();
    h.job(&u, "q", "b1").await;
    assert!(e.fail_job("q", None, "bad program", T2).await.unwrap());
    assert!(matches!(
        e.fail_job("q", Some("no-such-execution"), "x", T2).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn requeue_closes_the_execution_and_gives_up_at_the_limit(h: Harness) {
    let e = &h.engine;
    let x = running(&h, "alice", "r").await;
    let end = ExecutionEnd {
        id: &x,
        outcome: ExecutionOutcome::Interrupted,
        detail: "stopped",
    };
    let back = e
        .requeue_running(
            "r",
            Some(end),
            "stopped at a shot boundary; re-queued",
            Some(3),
            T2,
        )
        .await
        .unwrap()
        .expect("a running job under its limit is re-queued");
    assert_eq!(
        back.job_status(),
        Some(JobStatus::Running),
        "the job as read before the change"
    );
    let job = e.job("r").await.unwrap().unwrap();
    assert_eq!(job.job_status(), Some(JobStatus::Queued));
    assert_eq!(
        job.detail.as_deref(),
        Some("stopped at a shot boundary; re-queued")
    );
    let ex = e.execution(&x).await.unwrap().unwrap();
    assert_eq!(
        (ex.outcome.as_deref(), ex.detail.as_deref()),
        (Some("INTERRUPTED"), Some("stopped"))
    );
    assert_eq!(
        e.requeue_running("r", None, "again", None, T2)
            .await
            .unwrap(),
        None,
        "not running"
    );

    // Started once, limit 1: gives up.
    assert!(e.start_execution(&record("x-r2", "r", 2)).await.unwrap());
    let job = e.job("r").await.unwrap().unwrap();
    assert_eq!(job.attempts, 2);
    assert_eq!(
        e.requeue_running("r", None, "device fault; re-queued", Some(2), T3)
            .await
            .unwrap(),
        None
    );
    let job = e.job("r").await.unwrap().unwrap();
    assert_eq!(job.job_status(), Some(JobStatus::Error));
    assert_eq!(
        job.error_message.as_deref(),
        Some("device fault; re-queued; gave up after 2 attempts")
    );
}

pub async fn settling_applies_the_recovery_policy(h: Harness) {
    let e = &h.engine;
    let x = running(&h, "alice", "s").await;
    e.set_execution_progress(&x, "shot 3 of 10").await.unwrap();
    let back = e
        .settle_running("s", &policy(true, 3, false), T2)
        .await
        .unwrap();
    assert!(back.is_some(), "counted, under the limit: re-queued");
    let job = e.job("s").await.unwrap().unwrap();
    assert_eq!(job.job_status(), Some(JobStatus::Queued));
    assert_eq!(
        job.detail.as_deref(),
        Some("interrupted by restart at shot 3 of 10; re-queued")
    );
    let ex = e.execution(&x).await.unwrap().unwrap();
    assert_eq!(ex.outcome.as_deref(), Some("INTERRUPTED"));
    assert_eq!(
        ex.detail.as_deref(),
        Some("interrupted by restart at shot 3 of 10")
    );
    assert_eq!(
        e.settle_running("s", &policy(true, 3, false), T2)
            .await
            .unwrap(),
        None,
        "not running"
    );

    // fail_interrupted ends a counted job at once; an execution without progress is "an unknown shot".
    let y = running(&h, "alice", "t").await;
    assert_eq!(
        e.settle_running("t", &policy(true, 3, true), T2)
            .await
            .unwrap(),
        None
    );
    let job = e.job("t").await.unwrap().unwrap();
    assert_eq!(job.job_status(), Some(JobStatus::Error));
    assert_eq!(
        job.error_message.as_deref(),
        Some("interrupted by restart at an unknown shot")
    );
    assert_eq!(
        e.execution(&y).await.unwrap().unwrap().outcome.as_deref(),
        Some("INTERRUPTED")
    );

    // A clean stop (not counted) is always re-queued, whatever the limits.
    running(&h, "alice", "u").await;
    assert!(e
        .settle_running("u", &policy(false, 1, true), T2)
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        e.job("u").await.unwrap().unwrap().job_status(),
        Some(JobStatus::Queued)
    );
}

pub async fn settling_a_backend_touches_only_its_running_jobs(h: Harness) {
    let e = &h.engine;
    running(&h, "alice", "r1").await;
    running(&h, "alice", "r2").await;
    let u = e.user_by_name("alice").await.unwrap().unwrap();
    h.job(&u, "queued", "b1").await;
    let other = h.job(&u, "elsewhere", "b2").await;
    let mut rec = record("x-elsewhere", &other.id, 1);
    rec.backend = "b2".into();
    assert!(e.start_execution(&rec).await.unwrap());
    let settled = e
        .settle_running_of_backend("b1", &policy(true, 1, false), T2)
        .await
        .unwrap();
    let ids: Vec<&str> = settled.iter().map(|s| s.job_id.as_str()).collect();
    assert_eq!(ids, ["r1", "r2"]);
    assert!(
        settled.iter().all(|s| s.requeued.is_none()),
        "started once, limit 1: failed"
    );
    for id in ["r1", "r2"] {
        assert_eq!(
            e.job(id).await.unwrap().unwrap().job_status(),
            Some(JobStatus::Error)
        );
    }
    assert_eq!(
        e.job("queued").await.unwrap().unwrap().job_status(),
        Some(JobStatus::Queued)
    );
    assert_eq!(
        e.job("elsewhere").await.unwrap().unwrap().job_status(),
        Some(JobStatus::Running)
    );
    assert!(e
        .settle_running_of_backend("b1", &policy(true, 1, false), T3)
        .await
        .unwrap()
        .is_empty());
}
