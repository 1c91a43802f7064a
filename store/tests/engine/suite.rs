//! Engine-neutral bodies of the store interface's contract (see `main.rs`).

use std::collections::BTreeSet;
use std::sync::Arc;

use shotline_store::{
    Admission, BackendPause, Engine, ExecutionEnd, ExecutionOutcome, ExecutionRecord, JobStatus,
    LockGrant, NewJob, SettlePolicy, ShotDataRecord, StoreError,
};

const T0: &str = "2026-11-22T10:00:00.000Z";
const T1: &str = "2026-11-22T10:00:01.000Z";
const T2: &str = "2026-11-22T10:00:02.000Z";

async fn user(e: &dyn Engine, name: &str) -> i64 {
    e.add_user(name, None, "hash", false, T0).await.unwrap().id
}

fn new_job(id: &str, user_id: i64, backend: &str, key: Option<&str>) -> NewJob {
    NewJob {
        id: id.into(),
        user_id,
        backend: backend.into(),
        qobj_id: None,
        priority: 0,
        tags: vec!["t".into()],
        idempotency_key: key.map(str::to_owned),
        body: "{}".into(),
        submitted_at: T0.into(),
    }
}

async fn queued(e: &dyn Engine, id: &str, user_id: i64, backend: &str) {
    match e
        .admit_job(new_job(id, user_id, backend, None), u64::MAX)
        .await
        .unwrap()
    {
        Admission::Admitted(j) => assert_eq!(j.job_status(), Some(JobStatus::Queued)),
        other => panic!("expected admission, got {other:?}"),
    }
}

fn execution(id: &str, job_id: &str, backend: &str, attempt: u32) -> ExecutionRecord {
    ExecutionRecord {
        id: id.into(),
        job_id: job_id.into(),
        backend: backend.into(),
        attempt,
        seed: u64::MAX,
        config_hash: "h".into(),
        software_version: "v".into(),
        calibration: "{}".into(),
        started_at: T1.into(),
        ended_at: None,
        outcome: None,
        detail: None,
    }
}

/// Admits `job_id` and starts it as execution `xid`.
async fn running(e: &dyn Engine, job_id: &str, xid: &str, uid: i64, backend: &str) {
    queued(e, job_id, uid, backend).await;
    assert!(e
        .start_execution(&execution(xid, job_id, backend, 1))
        .await
        .unwrap());
}

async fn status(e: &dyn Engine, id: &str) -> JobStatus {
    e.job(id).await.unwrap().unwrap().job_status().unwrap()
}

pub async fn admission_is_idempotent_and_limited(e: Arc<dyn Engine>) {
    let uid = user(&*e, "alice").await;
    let first = match e
        .admit_job(new_job("j1", uid, "b", Some("k1")), 2)
        .await
        .unwrap()
    {
        Admission::Admitted(j) => j,
        other => panic!("{other:?}"),
    };
    assert_eq!((first.seq, first.attempts), (1, 0));
    assert_eq!(
        e.job_events("j1").await.unwrap()[0].status,
        JobStatus::Queued.as_str()
    );
    queued(&*e, "j2", uid, "b").await;
    // At the limit: a new job is refused, nothing written...
    assert_eq!(
        e.admit_job(new_job("j3", uid, "b", None), 2).await.unwrap(),
        Admission::LimitReached { active: 2 }
    );
    assert!(e.job("j3").await.unwrap().is_none());
    // ...but a retried submit still finds its job.
    match e
        .admit_job(new_job("j1-retry", uid, "b", Some("k1")), 2)
        .await
        .unwrap()
    {
        Admission::Existing(j) => assert_eq!(j.id, "j1"),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.count_active_jobs_of_user(uid).await.unwrap(), 2);
    assert_eq!(e.count_jobs("b", JobStatus::Queued).await.unwrap(), 2);
    // A job id used twice is a conflict, an unknown user is not found.
    let dup = e.admit_job(new_job("j1", uid, "b", None), u64::MAX).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let nobody = e
        .admit_job(new_job("j9", uid + 100, "b", None), u64::MAX)
        .await;
    assert!(matches!(nobody, Err(StoreError::NotFound(_))), "{nobody:?}");
}

pub async fn concurrent_admissions_never_pass_the_limit(e: Arc<dyn Engine>) {
    let uid = user(&*e, "alice").await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let e = Arc::clone(&e);
        tasks.spawn(async move {
            e.admit_job(new_job(&format!("j{i}"), uid, "b", None), 5)
                .await
                .unwrap()
        });
    }
    let mut admitted = 0;
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Admission::Admitted(_) => admitted += 1,
            Admission::LimitReached { active } => assert_eq!(active, 5),
            Admission::Existing(j) => panic!("no key was given, yet {j:?}"),
        }
    }
    assert_eq!(admitted, 5);
    assert_eq!(e.count_active_jobs_of_user(uid).await.unwrap(), 5);
}

pub async fn execution_ids_never_repeat_under_concurrency(e: Arc<dyn Engine>) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let e = Arc::clone(&e);
        tasks.spawn(async move { e.next_execution_id("20261122").await.unwrap() });
    }
    let mut ids = BTreeSet::new();
    while let Some(r) = tasks.join_next().await {
        assert!(
            ids.insert(r.unwrap()),
            "an execution id was handed out twice"
        );
    }
    assert_eq!(ids.first().unwrap(), "20261122-001");
    assert_eq!(ids.last().unwrap(), "20261122-050");
    let bad = e.next_execution_id("2026-11-22").await;
    assert!(
        matches!(bad, Err(StoreError::Invalid { field: "day", .. })),
        "{bad:?}"
    );
}

pub async fn an_execution_starts_only_a_queued_job(e: Arc<dyn Engine>) {
    let uid = user(&*e, "alice").await;
    queued(&*e, "j", uid, "b").await;
    assert!(e
        .start_execution(&execution("x1", "j", "b", 1))
        .await
        .unwrap());
    let j = e.job("j").await.unwrap().unwrap();
    assert_eq!(j.job_status(), Some(JobStatus::Running));
    assert_eq!((j.attempts, j.detail.as_deref()), (1, Some("execution x1")));
    let x = e.execution("x1").await.unwrap().unwrap();
    assert_eq!((x.seed, x.ended_at), (u64::MAX, None));
    // Already running: a second start writes nothing.
    assert!(!e
        .start_execution(&execution("x2", "j", "b", 2))
        .await
        .unwrap());
    assert!(e.execution("x2").await.unwrap().is_none());
    assert_eq!(e.job("j").await.unwrap().unwrap().attempts, 1);
    // Unknown job.
    assert!(!e
        .start_execution(&execution("x3", "nope", "b", 1))
        .await
        .unwrap());
}

pub async fn only_the_live_execution_commits_a_result_once(e: Arc<dyn Engine>) {
    let uid = user(&*e, "alice").await;
    running(&*e, "j", "x1", uid, "b").await;
    let rows = vec![ShotDataRecord {
        execution_id: "x1".into(),
        experiment_index: 0,
        experiment_name: "e".into(),
        shots: 2,
        memory: vec!["0".into(), "1".into()],
        timing: "{}".into(),
        first_shot_at: Some(T1.into()),
        last_shot_at: Some(T2.into()),
    }];
    // A stale execution (not this job's live one) cannot commit.
    assert!(!e
        .commit_result("j", "x-other", &rows, "{}", T2)
        .await
        .unwrap());
    assert!(e
        .commit_result("j", "x1", &rows, "{\"ok\":1}", T2)
        .await
        .unwrap());
    assert_eq!(status(&*e, "j").await, JobStatus::Done);
    let x = e.execution("x1").await.unwrap().unwrap();
    assert_eq!(x.outcome.as_deref(), Some(ExecutionOutcome::Done.as_str()));
    assert_eq!(e.result("j").await.unwrap().unwrap().body, "{\"ok\":1}");
    assert_eq!(e.shot_data("x1").await.unwrap(), rows);
    // Exactly once: a second commit is refused without touching the first.
    assert!(!e
        .commit_result("j", "x1", &rows, "{\"ok\":2}", T2)
        .await
        .unwrap());
    assert_eq!(e.result("j").await.unwrap().unwrap().body, "{\"ok\":1}");
}

pub async fn failing_never_overwrites_a_result(e: Arc<dyn Engine>) {
    let uid = user(&*e, "alice").await;
    running(&*e, "j", "x1", uid, "b").await;
    assert!(e.fail_job("j", Some("x1"), "laser off", T2).await.unwrap());
    let j = e.job("j").await.unwrap().unwrap();
    assert_eq!(j.job_status(), Some(JobStatus::Error));
    assert_eq!(j.error_message.as_deref(), Some("laser off"));
    let x = e.execution("x1").await.unwrap().unwrap();
    assert_eq!(x.outcome.as_deref(), Some("ERROR"));
    assert_eq!(x.detail.as_deref(), Some("laser off"));
    // A queued job can fail too (unreadable body); a finished one cannot.
    queued(&*e, "q", uid, "b").await;
    assert!(e.fail_job("q", None, "unreadable", T2).await.unwrap());
    running(&*e, "d", "x2", uid, "b").await;
    assert!(e.commit_result("d", "x2", &[], "{}", T2).await.unwrap());
    assert!(!e.fail_job("d", None, "late", T2).await.unwrap());
    assert_eq!(status(&*e, "d").await, JobStatus::Done);
}

pub async fn cancels_apply_only_to_the_right_status(e: Arc<dyn Engine>) {
    let uid = user(&*e, "alice").await;
    queued(&*e, "q", uid, "b").await;
    let c = e
        .cancel_queued("q", "cancelled by alice", T1)
        .await
        .unwrap();
    let c = c.expect("a queued job is cancelled");
    assert_eq!(c.job_status(), Some(JobStatus::Cancelled));
    assert_eq!(c.detail.as_deref(), Some("cancelled by alice"));
    assert!(e.cancel_queued("q", "again", T1).await.unwrap().is_none());
    running(&*e, "r", "x1", uid, "b").await;
    assert!(e
        .cancel_queued("r", "too late", T1)
        .await
        .unwrap()
        .is_none());
    assert_eq!(status(&*e, "r").await, JobStatus::Running);
    assert!(e
        .cancel_running("r", "x1", "cancelled after 3 of 10 shots", T2)
        .await
        .unwrap());
    assert_eq!(status(&*e, "r").await, JobStatus::Cancelled);
    let x = e.execution("x1").await.unwrap().unwrap();
    assert_eq!(x.outcome.as_deref(), Some("CANCELLED"));
    let events: Vec<String> = e
        .job_events("r")
        .await
        .unwrap()
        .into_iter()
        .map(|ev| ev.status)
        .collect();
    assert_eq!(events, ["QUEUED", "RUNNING", "CANCELLED"]);
}

pub async fn requeue_gives_up_after_max_attempts(e: Arc<dyn Engine>) {
    let uid = user(&*e, "alice").await;
    running(&*e, "j", "x1", uid, "b").await;
    let close = ExecutionEnd {
        id: "x1",
        outcome: ExecutionOutcome::Interrupted,
        detail: "stopped",
    };
    let again = e
        .requeue_running("j", Some(close), "stopped; re-queued", Some(2), T2)
        .await
        .unwrap()
        .expect("re-queued");
    assert_eq!(again.id, "j");
    assert_eq!(status(&*e, "j").await, JobStatus::Queued);
    let x = e.execution("x1").await.unwrap().unwrap();
    assert_eq!(
        (x.outcome.as_deref(), x.detail.as_deref()),
        (Some("INTERRUPTED"), Some("stopped"))
    );
    // Second attempt reaches the limit: the job ends ERROR instead.
    assert!(e
        .start_execution(&execution("x2", "j", "b", 2))
        .await
        .unwrap());
    let r = e
        .requeue_running("j", None, "device fault; re-queued", Some(2), T2)
        .await
        .unwrap();
    assert!(r.is_none());
    let j = e.job("j").await.unwrap().unwrap();
    assert_eq!(j.job_status(), Some(JobStatus::Error));
    assert_eq!(
        j.error_message.as_deref(),
        Some("device fault; re-queued; gave up after 2 attempts")
    );
    // Not running: nothing happens.
    assert!(e
        .requeue_running("j", None, "x", None, T2)
        .await
        .unwrap()
        .is_none());
    assert_eq!(status(&*e, "j").await, JobStatus::Error);
}

fn policy(counted: bool, max_attempts: u32, fail_interrupted: bool) -> SettlePolicy {
    SettlePolicy {
        cause: "interrupted by restart".into(),
        counted,
        max_attempts,
        fail_interrupted,
    }
}

pub async fn settling_names_the_shot_and_follows_the_policy(e: Arc<dyn Engine>) {
    let uid = user(&*e, "alice").await;
    running(&*e, "j", "x1", uid, "b").await;
    e.set_execution_progress("x1", "shot 120 of 3000")
        .await
        .unwrap();
    let p = policy(true, 3, false);
    let again = e.settle_running("j", &p, T2).await.unwrap();
    assert!(again.is_some());
    let j = e.job("j").await.unwrap().unwrap();
    assert_eq!(j.job_status(), Some(JobStatus::Queued));
    assert_eq!(
        j.detail.as_deref(),
        Some("interrupted by restart at shot 120 of 3000; re-queued")
    );
    let x = e.execution("x1").await.unwrap().unwrap();
    assert_eq!(
        x.detail.as_deref(),
        Some("interrupted by restart at shot 120 of 3000")
    );
    assert_eq!(x.outcome.as_deref(), Some("INTERRUPTED"));
    // Progress of a closed execution is not recorded.
    e.set_execution_progress("x1", "shot 1 of 3000")
        .await
        .unwrap();
    let x = e.execution("x1").await.unwrap().unwrap();
    assert_eq!(
        x.detail.as_deref(),
        Some("interrupted by restart at shot 120 of 3000")
    );
    // on_interrupted: fail ends a counted job at once; not a clean stop.
    assert!(e
        .start_execution(&execution("x2", "j", "b", 2))
        .await
        .unwrap());
    assert!(e
        .settle_running("j", &policy(false, 3, true), T2)
        .await
        .unwrap()
        .is_some());
    assert!(e
        .start_execution(&execution("x3", "j", "b", 3))
        .await
        .unwrap());
    assert!(e
        .settle_running("j", &policy(true, 10, true), T2)
        .await
        .unwrap()
        .is_none());
    let j = e.job("j").await.unwrap().unwrap();
    assert_eq!(j.job_status(), Some(JobStatus::Error));
    assert_eq!(
        j.error_message.as_deref(),
        Some("interrupted by restart at an unknown shot")
    );
    // Settling a job that is not running changes nothing.
    assert!(e.settle_running("j", &p, T2).await.unwrap().is_none());
}

pub async fn settling_a_backend_leaves_other_backends_alone(e: Arc<dyn Engine>) {
    let uid = user(&*e, "alice").await;
    running(&*e, "a1", "x1", uid, "a").await;
    running(&*e, "a2", "x2", uid, "a").await;
    running(&*e, "b1", "x3", uid, "b").await;
    // a2 runs a second time: with max_attempts 2 it ends ERROR, a1 (one start) is re-queued.
    e.requeue_running("a2", None, "paused", None, T1)
        .await
        .unwrap();
    assert!(e
        .start_execution(&execution("x4", "a2", "a", 2))
        .await
        .unwrap());
    let p = policy(true, 2, false);
    let mut settled = e.settle_running_of_backend("a", &p, T2).await.unwrap();
    settled.sort_by(|x, y| x.job_id.cmp(&y.job_id));
    assert_eq!(settled.len(), 2);
    assert_eq!(settled[0].job_id, "a1");
    assert_eq!(settled[0].requeued.as_ref().unwrap().id, "a1");
    assert_eq!(settled[1].job_id, "a2");
    assert!(settled[1].requeued.is_none());
    assert_eq!(status(&*e, "a1").await, JobStatus::Queued);
    assert_eq!(status(&*e, "a2").await, JobStatus::Error);
    assert_eq!(status(&*e, "b1").await, JobStatus::Running);
    let clean = policy(false, 1, false);
    let settled = e.settle_running_of_backend("b", &clean, T2).await.unwrap();
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0].requeued.as_ref().unwrap().id, "b1");
    assert_eq!(status(&*e, "b1").await, JobStatus::Queued);
    assert_eq!(
        e.jobs_with_status(JobStatus::Running).await.unwrap(),
        vec![]
    );
}

pub async fn a_lease_is_taken_over_only_after_it_expired(e: Arc<dyn Engine>) {
    let r = "backend:b";
    assert_eq!(
        e.acquire_lock(r, "gw1", T0, Some(T1)).await.unwrap(),
        LockGrant::Granted
    );
    // Before expiry another owner is refused and told who holds it.
    match e.acquire_lock(r, "gw2", T0, Some(T2)).await.unwrap() {
        LockGrant::Held(l) => assert_eq!(l.owner, "gw1"),
        other => panic!("{other:?}"),
    }
    // The holder may renew and re-acquire; a stranger may neither renew nor release.
    assert!(e.renew_lock(r, "gw1", Some(T1)).await.unwrap());
    assert!(!e.renew_lock(r, "gw2", Some(T2)).await.unwrap());
    assert!(!e.release_lock(r, "gw2").await.unwrap());
    // At expiry the lease is taken over.
    assert_eq!(
        e.acquire_lock(r, "gw2", T1, Some(T2)).await.unwrap(),
        LockGrant::Granted
    );
    let locks = e.locks().await.unwrap();
    assert_eq!(locks.len(), 1);
    assert_eq!(locks[0].owner, "gw2");
    assert!(!e.release_lock(r, "gw1").await.unwrap());
    let forced = e.force_release_lock(r).await.unwrap();
    assert_eq!(forced.unwrap().owner, "gw2");
    assert!(e.force_release_lock(r).await.unwrap().is_none());
    // A lease without expiry is never taken over.
    e.acquire_lock(r, "gw1", T0, None).await.unwrap();
    assert!(matches!(
        e.acquire_lock(r, "gw2", "2099-01-01T00:00:00Z", None)
            .await
            .unwrap(),
        LockGrant::Held(_)
    ));
    assert!(e.release_lock(r, "gw1").await.unwrap());
    assert!(e.locks().await.unwrap().is_empty());
}

pub async fn users_tokens_and_pauses_round_trip(e: Arc<dyn Engine>) {
    let uid = user(&*e, "alice").await;
    assert!(matches!(
        e.add_user("alice", None, "h", false, T0).await,
        Err(StoreError::Conflict(_))
    ));
    e.insert_token("tok", uid, T0, T2).await.unwrap();
    assert_eq!(
        e.user_for_token("tok", T1).await.unwrap().unwrap().name,
        "alice"
    );
    assert!(
        e.user_for_token("tok", T2).await.unwrap().is_none(),
        "expired"
    );
    e.set_user_disabled("alice", true).await.unwrap();
    e.set_user_disabled("alice", false).await.unwrap();
    assert!(
        e.user_for_token("tok", T1).await.unwrap().is_none(),
        "disabling revoked the token for good"
    );
    assert_eq!(e.user_by_id(uid).await.unwrap().unwrap().name, "alice");
    assert_eq!(e.list_users().await.unwrap().len(), 1);
    let pause = BackendPause {
        reason: "estop".into(),
        paused_at: T1.into(),
    };
    e.set_backend_pause("b", Some(&pause)).await.unwrap();
    assert_eq!(e.backend_pause("b").await.unwrap(), Some(pause));
    e.set_backend_pause("b", None).await.unwrap();
    assert_eq!(e.backend_pause("b").await.unwrap(), None);
    assert!(e.record_backend_config("b", "h1", "{}", T0).await.unwrap());
    assert!(!e.record_backend_config("b", "h1", "{}", T0).await.unwrap());
    assert_eq!(
        e.backend_config("b", "h1").await.unwrap().as_deref(),
        Some("{}")
    );
    e.delete_user("alice").await.unwrap();
    assert!(e.user_by_name("alice").await.unwrap().is_none());
    assert!(e.schema_version().await.unwrap() >= 1);
}

pub async fn a_shut_down_engine_refuses_work(e: Arc<dyn Engine>) {
    let uid = user(&*e, "alice").await;
    queued(&*e, "j", uid, "b").await;
    let marks = e.ack_marks().await.unwrap();
    assert_eq!((marks.job_seq, marks.job_event), (1, 1));
    assert!(e.stats().commits >= 1);
    e.shutdown().await.unwrap();
    assert!(matches!(e.job("j").await, Err(StoreError::Closed)));
    // Idempotent.
    e.shutdown().await.unwrap();
}
