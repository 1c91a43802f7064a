//! `copy_sqlite_to_postgres`: a SQLite store moved into PostgreSQL reads back the same through the store
//! interface, and the copy goes on where the source stopped (ids, sequence numbers, execution counters).

use std::sync::Arc;

use shotline_store::postgres::{copy_sqlite_to_postgres, PgEngine};
use shotline_store::testing::TestDatabase;
use shotline_store::{
    Admission, BackendPause, CalibrationRecord, Engine, ExecutionRecord, JobFilter, NewJob,
    ShotDataRecord, StoreError, StoreSelection,
};

const T0: &str = "2026-11-22T10:00:00.000Z";
const T1: &str = "2026-11-22T10:00:01.000Z";

fn job(id: &str, user_id: i64, key: Option<&str>) -> NewJob {
    NewJob {
        id: id.into(),
        user_id,
        backend: "b1".into(),
        qobj_id: Some(format!("q{id}")),
        priority: 2,
        tags: vec!["scan".into(), "α".into()],
        idempotency_key: key.map(Into::into),
        body: format!("{{\"id\":\"{id}\"}}"),
        submitted_at: T0.into(),
    }
}

fn execution(id: &str, job_id: &str) -> ExecutionRecord {
    ExecutionRecord {
        id: id.into(),
        job_id: job_id.into(),
        backend: "b1".into(),
        attempt: 1,
        seed: u64::MAX,
        config_hash: "sha256:x".into(),
        software_version: "0.1.0".into(),
        calibration: "{}".into(),
        started_at: T0.into(),
        ended_at: None,
        outcome: None,
        detail: None,
    }
}

/// A SQLite store with a bit of everything.
async fn populated(e: &Arc<dyn Engine>) {
    let alice = e
        .add_user("alice", Some("a@lab"), "h", true, T0)
        .await
        .unwrap();
    let bob = e.add_user("bob", None, "h", false, T0).await.unwrap();
    e.insert_token("t1", alice.id, T0, "2027-01-01T00:00:00Z")
        .await
        .unwrap();
    e.set_user_disabled("bob", true).await.unwrap();
    for (id, user, key) in [
        ("j1", alice.id, Some("k")),
        ("j2", alice.id, None),
        ("j3", bob.id, None),
    ] {
        assert!(matches!(
            e.admit_job(job(id, user, key), 10).await.unwrap(),
            Admission::Admitted(_)
        ));
    }
    let x1 = e.next_execution_id("20261122").await.unwrap();
    assert!(e.start_execution(&execution(&x1, "j1")).await.unwrap());
    let shots = ShotDataRecord {
        execution_id: x1.clone(),
        experiment_index: 0,
        experiment_name: "rabi".into(),
        shots: 2,
        memory: vec!["0x1".into(), "0x0".into()],
        timing: "{}".into(),
        first_shot_at: Some(T0.into()),
        last_shot_at: Some(T1.into()),
    };
    assert!(e
        .commit_result("j1", &x1, &[shots], "{\"r\":1}", T1)
        .await
        .unwrap());
    let x2 = e.next_execution_id("20261122").await.unwrap();
    assert!(e.start_execution(&execution(&x2, "j2")).await.unwrap());
    e.set_execution_progress(&x2, "shot 3 of 9").await.unwrap();
    e.cancel_queued("j3", "cancelled", T1).await.unwrap();
    e.acquire_lock("backend:b1", &x2, T0, Some(T1))
        .await
        .unwrap();
    e.insert_calibration(&CalibrationRecord {
        id: 0,
        backend: "b1".into(),
        name: "pi_time".into(),
        value: 1.25e-6,
        execution_id: Some(x1.clone()),
        task: Some("rabi".into()),
        calibrated_at: T1.into(),
    })
    .await
    .unwrap();
    e.record_backend_config("b1", "sha256:x", "{}", T0)
        .await
        .unwrap();
    e.set_backend_pause(
        "b1",
        Some(&BackendPause {
            reason: "estop".into(),
            paused_at: T1.into(),
        }),
    )
    .await
    .unwrap();
}

/// Everything the interface can read, as one comparable text.
async fn everything(e: &Arc<dyn Engine>) -> String {
    let mut out = format!(
        "{:?}\n{:?}\n",
        e.list_users().await.unwrap(),
        e.locks().await.unwrap()
    );
    let jobs = e
        .list_jobs(&JobFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    for (j, owner) in &jobs {
        out += &format!(
            "{owner} {:?}\n{:?}\n",
            e.job(&j.id).await.unwrap(),
            e.job_events(&j.id).await.unwrap()
        );
        for x in e.executions_for_job(&j.id).await.unwrap() {
            out += &format!("{x:?}\n{:?}\n", e.shot_data(&x.id).await.unwrap());
        }
        out += &format!("{:?}\n", e.result(&j.id).await.unwrap());
    }
    out += &format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n",
        e.calibrations("b1").await.unwrap(),
        e.backend_config("b1", "sha256:x").await.unwrap(),
        e.backend_pause("b1").await.unwrap(),
        e.user_for_token("t1", T1).await.unwrap(),
        e.ack_marks().await.unwrap(),
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_store_reads_back_the_same_and_goes_on_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shotline.db");
    let sqlite = shotline_store::open(&StoreSelection::Sqlite {
        path: path.clone(),
        queue_capacity: 64,
    })
    .await
    .unwrap();
    populated(&sqlite).await;
    let before = everything(&sqlite).await;
    // The copy reads a consistent snapshot, so the source may stay open.
    let db = TestDatabase::new();
    let report = copy_sqlite_to_postgres(&path, &db.options()).await.unwrap();
    assert!(report.tables.contains(&("jobs", 3)), "{report:?}");
    assert!(report.tables.contains(&("shot_data", 1)), "{report:?}");
    let pg: Arc<dyn Engine> = Arc::new(PgEngine::open(&db.options()).await.unwrap());
    assert_eq!(everything(&pg).await, before);

    // New rows continue after the copied ones, in both engines alike.
    for e in [&sqlite, &pg] {
        assert_eq!(
            e.next_execution_id("20261122").await.unwrap(),
            "20261122-003"
        );
        let carol = e.add_user("carol", None, "h", false, T1).await.unwrap();
        let max_id = e
            .list_users()
            .await
            .unwrap()
            .iter()
            .map(|u| u.id)
            .max()
            .unwrap();
        assert_eq!(carol.id, max_id);
        let marks = e.ack_marks().await.unwrap();
        match e.admit_job(job("j4", carol.id, None), 10).await.unwrap() {
            Admission::Admitted(j) => assert!(j.seq > 3, "{j:?}"),
            other => panic!("{other:?}"),
        }
        assert!(e.ack_marks().await.unwrap().job_event > marks.job_event);
        // The copied idempotency key still answers.
        let alice = e.user_by_name("alice").await.unwrap().unwrap();
        assert!(matches!(
            e.admit_job(job("j5", alice.id, Some("k")), 10).await.unwrap(),
            Admission::Existing(j) if j.id == "j1"
        ));
    }

    // A second copy into the now non-empty database is refused and changes nothing.
    let marks = pg.ack_marks().await.unwrap();
    match copy_sqlite_to_postgres(&path, &db.options()).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("empty database"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(pg.ack_marks().await.unwrap(), marks);
    let missing = dir.path().join("nope.db");
    assert!(matches!(
        copy_sqlite_to_postgres(&missing, &db.options()).await,
        Err(StoreError::NotFound(_))
    ));
}
