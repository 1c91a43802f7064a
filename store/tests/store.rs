//! Integration tests of the store and its writer thread.

use std::path::PathBuf;
use std::sync::Arc;

use shotline_store::{DbThread, ExecutionRecord, NewJob, ShotDataRecord, Store, StoreError};

const T0: &str = "2026-11-22T10:00:00.000Z";
const T1: &str = "2026-11-22T11:00:00.000Z";
const T2: &str = "2026-11-22T12:00:00.000Z";

fn db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("shotline.db");
    (dir, path)
}

fn job(id: &str, user_id: i64, key: Option<&str>) -> NewJob {
    NewJob {
        id: id.into(),
        user_id,
        backend: "fermions".into(),
        qobj_id: Some("q1".into()),
        priority: 0,
        tags: vec!["a".into()],
        idempotency_key: key.map(Into::into),
        body: r#"{"experiments":[]}"#.into(),
        submitted_at: T0.into(),
    }
}

fn execution(id: &str, job_id: &str) -> ExecutionRecord {
    ExecutionRecord {
        id: id.into(),
        job_id: job_id.into(),
        backend: "fermions".into(),
        attempt: 1,
        seed: u64::MAX - 5,
        config_hash: "abc".into(),
        software_version: "0.1.0".into(),
        calibration: r#"{"omega":1.5}"#.into(),
        started_at: T0.into(),
        ended_at: None,
        outcome: None,
        detail: None,
    }
}

#[test]
fn open_creates_dirs_and_pragmas_read_back_wal_full() {
    let (_d, path) = db();
    let store = Store::open(&path).unwrap();
    let p = store.pragmas().unwrap();
    assert_eq!(p.journal_mode, "wal");
    assert_eq!(p.synchronous, 2);
}

#[test]
fn migrations_are_idempotent_and_a_newer_schema_is_refused() {
    let (_d, path) = db();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), 3);
    store.add_user("alice", None, "h", false, T0).unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), 3);
    assert!(
        store.user_by_name("alice").unwrap().is_some(),
        "reopen must keep data"
    );
    drop(store);

    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute(
        "INSERT INTO schema_migrations (version, applied_at) VALUES (99, 'x')",
        [],
    )
    .unwrap();
    drop(raw);
    match Store::open(&path) {
        Err(StoreError::Migration(msg)) => {
            assert!(msg.contains("99"), "{msg}");
            assert!(msg.contains("upgrade"), "{msg}");
        }
        other => panic!("expected a migration error, got {other:?}"),
    }
}

#[test]
fn users_add_duplicate_lookup_and_disable() {
    let (_d, path) = db();
    let s = Store::open(&path).unwrap();
    let alice = s
        .add_user("alice", Some("a@lab"), "hash", true, T0)
        .unwrap();
    assert!(alice.is_admin && !alice.disabled);
    match s.add_user("alice", None, "x", false, T0) {
        Err(StoreError::Conflict(m)) => assert!(m.contains("alice"), "{m}"),
        other => panic!("expected conflict, got {other:?}"),
    }
    assert_eq!(s.user_by_name("alice").unwrap().unwrap(), alice);
    assert_eq!(s.user_by_id(alice.id).unwrap().unwrap(), alice);
    assert!(s.user_by_name("bob").unwrap().is_none());
    s.add_user("bob", None, "h", false, T0).unwrap();
    let names: Vec<_> = s
        .list_users()
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    s.set_user_disabled("alice", true).unwrap();
    assert!(s.user_by_name("alice").unwrap().unwrap().disabled);
    assert!(matches!(
        s.set_user_disabled("carol", true),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn tokens_valid_expired_revoked_and_disabled_user() {
    let (_d, path) = db();
    let s = Store::open(&path).unwrap();
    let u = s.add_user("alice", None, "h", false, T0).unwrap();
    s.insert_token("tok", u.id, T0, T1).unwrap();
    assert_eq!(s.user_for_token("tok", T0).unwrap().unwrap().name, "alice");
    // Different fractional precision still compares correctly after normalisation.
    assert!(s
        .user_for_token("tok", "2026-11-22T10:59:59.9999Z")
        .unwrap()
        .is_some());
    assert!(
        s.user_for_token("tok", T1).unwrap().is_none(),
        "expired at expires_at"
    );
    assert!(s.user_for_token("tok", T2).unwrap().is_none());
    assert!(s.user_for_token("unknown", T0).unwrap().is_none());

    s.set_user_disabled("alice", true).unwrap();
    assert!(
        s.user_for_token("tok", T0).unwrap().is_none(),
        "disabled user"
    );
    s.set_user_disabled("alice", false).unwrap();
    assert!(s.revoke_token("tok").unwrap());
    assert!(s.user_for_token("tok", T0).unwrap().is_none(), "revoked");
    assert!(!s.revoke_token("nope").unwrap());

    match s.insert_token("t2", u.id, "yesterday", T1) {
        Err(e @ StoreError::Invalid { .. }) => assert!(e.to_string().contains("now"), "{e}"),
        other => panic!("expected invalid, got {other:?}"),
    }
}

#[test]
fn idempotent_insert_returns_the_same_job_and_seq_follows_submission() {
    let (_d, path) = db();
    let s = Store::open(&path).unwrap();
    let u = s.add_user("alice", None, "h", false, T0).unwrap();
    let first = s.insert_job(&job("j1", u.id, Some("k1"))).unwrap();
    assert!(!first.existing);
    assert_eq!(first.job.status, "QUEUED");
    let again = s.insert_job(&job("j1-retry", u.id, Some("k1"))).unwrap();
    assert!(again.existing);
    assert_eq!(again.job, first.job);
    assert!(s.job("j1-retry").unwrap().is_none(), "never a second job");

    let second = s.insert_job(&job("j2", u.id, None)).unwrap();
    let third = s.insert_job(&job("j3", u.id, None)).unwrap();
    assert_eq!([first.job.seq, second.job.seq, third.job.seq], [1, 2, 3]);
    let queued: Vec<_> = s
        .jobs_with_status("QUEUED")
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(queued, ["j1", "j2", "j3"]);
    assert_eq!(s.job("j1").unwrap().unwrap(), first.job);
    assert_eq!(s.count_jobs("fermions", "QUEUED").unwrap(), 3);

    assert!(matches!(
        s.insert_job(&job("j2", u.id, None)),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.insert_job(&job("j9", 999, None)),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn status_changes_append_events() {
    let (_d, path) = db();
    let s = Store::open(&path).unwrap();
    let u = s.add_user("alice", None, "h", false, T0).unwrap();
    s.insert_job(&job("j1", u.id, None)).unwrap();
    s.set_job_status("j1", "RUNNING", Some("on fermions"), None, T1)
        .unwrap();
    s.set_job_status("j1", "ERROR", None, Some("camera timeout"), T2)
        .unwrap();
    let j = s.job("j1").unwrap().unwrap();
    assert_eq!(j.status, "ERROR");
    assert_eq!(j.error_message.as_deref(), Some("camera timeout"));
    assert_eq!(j.updated_at, T2);
    let ev: Vec<_> = s
        .job_events("j1")
        .unwrap()
        .into_iter()
        .map(|e| (e.status, e.at))
        .collect();
    assert_eq!(
        ev,
        [
            ("QUEUED".into(), T0.into()),
            ("RUNNING".into(), T1.into()),
            ("ERROR".into(), T2.into())
        ]
    );
    assert!(matches!(
        s.set_job_status("nope", "RUNNING", None, None, T1),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(s.increment_attempts("j1").unwrap(), 1);
    assert_eq!(s.increment_attempts("j1").unwrap(), 2);
    assert_eq!(s.count_jobs("fermions", "QUEUED").unwrap(), 0);
}

#[test]
fn execution_ids_count_survive_reopen_and_widen_past_999() {
    let (_d, path) = db();
    let s = Store::open(&path).unwrap();
    assert_eq!(s.next_execution_id("20261122").unwrap(), "20261122-001");
    assert_eq!(s.next_execution_id("20261122").unwrap(), "20261122-002");
    assert_eq!(s.next_execution_id("20261123").unwrap(), "20261123-001");
    assert!(matches!(
        s.next_execution_id("2026-11-22"),
        Err(StoreError::Invalid { .. })
    ));
    drop(s);
    let s = Store::open(&path).unwrap();
    assert_eq!(s.next_execution_id("20261122").unwrap(), "20261122-003");
    drop(s);
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute(
        "UPDATE execution_counters SET last = 998 WHERE day = '20261122'",
        [],
    )
    .unwrap();
    drop(raw);
    let s = Store::open(&path).unwrap();
    assert_eq!(s.next_execution_id("20261122").unwrap(), "20261122-999");
    assert_eq!(s.next_execution_id("20261122").unwrap(), "20261122-1000");
}

#[test]
fn executions_shot_data_and_exactly_once_results() {
    let (_d, path) = db();
    let s = Store::open(&path).unwrap();
    let u = s.add_user("alice", None, "h", false, T0).unwrap();
    s.insert_job(&job("j1", u.id, None)).unwrap();
    let id = s.next_execution_id("20261122").unwrap();
    s.insert_execution(&execution(&id, "j1")).unwrap();
    s.finish_execution(&id, T1, "DONE", None).unwrap();
    let e = s.execution(&id).unwrap().unwrap();
    assert_eq!(e.seed, u64::MAX - 5, "u64 seed round-trips");
    assert_eq!(e.outcome.as_deref(), Some("DONE"));
    assert_eq!(s.executions_for_job("j1").unwrap(), [e]);

    let shot = ShotDataRecord {
        execution_id: id.clone(),
        experiment_index: 0,
        experiment_name: "exp0".into(),
        shots: 2,
        memory: vec!["0 1".into(), "1 1".into()],
        timing: "{}".into(),
        first_shot_at: Some(T0.into()),
        last_shot_at: Some(T1.into()),
    };
    s.insert_shot_data(&shot).unwrap();
    assert_eq!(s.shot_data(&id).unwrap(), [shot]);

    s.put_result("j1", &id, r#"{"ok":true}"#, T1).unwrap();
    match s.put_result("j1", &id, r#"{"ok":false}"#, T2) {
        Err(StoreError::Conflict(m)) => assert!(m.contains("j1"), "{m}"),
        other => panic!("expected conflict, got {other:?}"),
    }
    assert_eq!(s.result("j1").unwrap().unwrap().body, r#"{"ok":true}"#);
    assert!(s.result("j2").unwrap().is_none());

    assert!(s
        .record_backend_config("fermions", "abc", "{}", T0)
        .unwrap());
    assert!(!s
        .record_backend_config("fermions", "abc", "{\"x\":1}", T1)
        .unwrap());
    assert_eq!(
        s.backend_config("fermions", "abc").unwrap().as_deref(),
        Some("{}")
    );
}

#[test]
fn lock_owner_rules() {
    let (_d, path) = db();
    let s = Store::open(&path).unwrap();
    s.put_lock("dds0", "node-a", T0, Some(T1)).unwrap();
    match s.put_lock("dds0", "node-b", T0, None) {
        Err(StoreError::Conflict(m)) => assert!(m.contains("node-a"), "{m}"),
        other => panic!("expected conflict, got {other:?}"),
    }
    s.put_lock("dds0", "node-a", T0, Some(T2)).unwrap(); // owner refreshes
    assert!(
        !s.delete_lock("dds0", "node-b").unwrap(),
        "only the owner releases"
    );
    assert_eq!(s.locks().unwrap().len(), 1);
    assert!(s.delete_lock("dds0", "node-a").unwrap());
    assert!(s.locks().unwrap().is_empty());

    s.put_lock("ttl", "node-a", T0, Some(T1)).unwrap();
    s.put_lock("ttl", "node-b", T2, None).unwrap(); // expired lock is taken over
    assert_eq!(s.locks().unwrap()[0].owner, "node-b");
    assert!(s.force_delete_lock("ttl").unwrap());
    assert!(!s.force_delete_lock("ttl").unwrap());
}

/// Holds the writer thread busy (inside a batch of its own) until the returned sender is dropped,
/// so that ops queued meanwhile land together in the next batch.
fn gate(t: &DbThread) -> crossbeam::channel::Sender<()> {
    let (tx, rx) = crossbeam::channel::bounded::<()>(0);
    let (entered_tx, entered_rx) = crossbeam::channel::bounded::<()>(1);
    t.submit(Box::new(move |_s: &Store| {
        let _ = entered_tx.send(());
        let _ = rx.recv();
        Box::new(|_| {})
    }))
    .unwrap();
    entered_rx.recv().unwrap();
    tx
}

/// Waits (without timing assumptions) until `n` ops are queued behind the gate.
async fn until_queued(t: &DbThread, n: usize) {
    while t.queue_len() < n {
        tokio::task::yield_now().await;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn concurrent_runs_all_succeed_and_are_group_committed() {
    let (_d, path) = db();
    let t = Arc::new(DbThread::spawn(&path, 1024).unwrap());
    runtime().block_on(async {
        let uid = t
            .run(|s| Ok(s.add_user("alice", None, "h", false, T0)?.id))
            .await
            .unwrap();
        let open = gate(&t);
        let mut handles = Vec::new();
        for i in 0..200 {
            let t = Arc::clone(&t);
            handles.push(tokio::spawn(async move {
                t.run(move |s| {
                    s.insert_job(&job(&format!("j{i}"), uid, None))
                        .map(|ins| ins.job.seq)
                })
                .await
            }));
        }
        until_queued(&t, 200).await;
        drop(open);
        for h in handles {
            h.await.unwrap().unwrap();
        }
    });
    let (batches, ops) = t.group_commit_stats();
    assert_eq!(ops, 202);
    assert!(
        batches < ops,
        "group commit expected: {batches} batches for {ops} ops"
    );
    assert!(
        batches <= 3,
        "the 200 queued ops form one batch: {batches} batches"
    );
    let t = Arc::into_inner(t).unwrap();
    t.shutdown().unwrap();
    let s = Store::open(&path).unwrap();
    assert_eq!(s.count_jobs("fermions", "QUEUED").unwrap(), 200);
}

#[test]
fn failing_op_is_rolled_back_without_spoiling_its_batch() {
    let (_d, path) = db();
    let t = DbThread::spawn(&path, 64).unwrap();
    let rt = runtime();
    rt.block_on(async {
        let uid = t
            .run(|s| Ok(s.add_user("alice", None, "h", false, T0)?.id))
            .await
            .unwrap();
        // Three ops queued together behind a gate; the middle one writes, then fails.
        let (b0, _) = t.group_commit_stats();
        let open = gate(&t);
        let ok1 = t.run(move |s| s.insert_job(&job("a", uid, None)).map(|_| ()));
        let bad = t.run(move |s| {
            s.insert_job(&job("partial", uid, None))?;
            s.put_result("missing-job", "x", "{}", T0)
        });
        let ok2 = t.run(move |s| s.insert_job(&job("b", uid, None)).map(|_| ()));
        let release = async {
            until_queued(&t, 3).await;
            drop(open);
        };
        let (r1, rb, r2, ()) = tokio::join!(ok1, bad, ok2, release);
        let (b1, _) = t.group_commit_stats();
        assert_eq!(
            b1 - b0,
            2,
            "the gate's batch, then the three ops in one batch"
        );
        r1.unwrap();
        r2.unwrap();
        assert!(matches!(rb, Err(StoreError::NotFound(_))), "{rb:?}");
        let ids = t
            .run(|s| {
                Ok(s.jobs_with_status("QUEUED")?
                    .into_iter()
                    .map(|j| j.id)
                    .collect::<Vec<_>>())
            })
            .await
            .unwrap();
        assert_eq!(
            ids,
            ["a", "b"],
            "the failed op's partial write was rolled back"
        );
    });
}

#[test]
fn panicking_op_returns_an_error_and_the_thread_keeps_serving() {
    let (_d, path) = db();
    let t = DbThread::spawn(&path, 64).unwrap();
    runtime().block_on(async {
        let r: Result<(), _> = t
            .run(|s| {
                s.add_user("ghost", None, "h", false, T0)?;
                panic!("boom in op")
            })
            .await;
        match r {
            Err(StoreError::Panicked(m)) => assert!(m.contains("boom"), "{m}"),
            other => panic!("expected panicked, got {other:?}"),
        }
        let ghost = t.run(|s| s.user_by_name("ghost")).await.unwrap();
        assert!(ghost.is_none(), "panicking op rolled back");
        t.run(|s| s.add_user("alice", None, "h", false, T0))
            .await
            .unwrap();
    });
}

#[test]
fn submitted_ops_reply_after_commit_and_data_survives_shutdown_and_reopen() {
    let (_d, path) = db();
    let t = DbThread::spawn(&path, 64).unwrap();
    let (tx, rx) = crossbeam::channel::unbounded();
    for name in ["alice", "bob"] {
        let tx = tx.clone();
        t.submit(Box::new(move |s: &Store| {
            let added = s.add_user(name, None, "h", false, T0).is_ok();
            Box::new(move |commit: Result<(), StoreError>| {
                let _ = tx.send(added && commit.is_ok());
            })
        }))
        .unwrap();
    }
    t.shutdown().unwrap();
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [true, true]);
    let s = Store::open(&path).unwrap();
    assert_eq!(s.list_users().unwrap().len(), 2);
}

#[test]
fn spawn_reports_open_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = DbThread::spawn(&file.join("db.sqlite"), 8).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

#[test]
fn dropping_the_thread_finishes_queued_work() {
    let (_d, path) = db();
    let t = DbThread::spawn(&path, 8).unwrap();
    t.submit(Box::new(|s: &Store| {
        let _ = s.add_user("alice", None, "h", false, T0);
        Box::new(|_| {})
    }))
    .unwrap();
    drop(t);
    let s = Store::open(&path).unwrap();
    assert!(s.user_by_name("alice").unwrap().is_some());
}

#[test]
fn calibrations_keep_their_provenance() {
    let (_d, path) = db();
    let s = Store::open(&path).unwrap();
    let cal = shotline_store::CalibrationRecord {
        id: 0,
        backend: "fermions".into(),
        name: "rabi_freq".into(),
        value: 2.5,
        execution_id: Some("20261122-001".into()),
        task: Some("rabi_scan".into()),
        calibrated_at: T1.into(),
    };
    let id = s.insert_calibration(&cal).unwrap();
    let got = s.calibrations("fermions").unwrap();
    assert_eq!(got, [shotline_store::CalibrationRecord { id, ..cal }]);
    assert!(s.calibrations("other").unwrap().is_empty());
}

#[test]
fn a_backend_pause_is_kept_until_it_is_lifted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    {
        let store = Store::open(&path).unwrap();
        assert_eq!(store.backend_pause("q").unwrap(), None);
        store
            .set_backend_pause(
                "q",
                Some(("emergency stop by admin", "2026-11-22T07:00:00Z")),
            )
            .unwrap();
        store
            .set_backend_pause("q", Some(("device fault: rf", "2026-11-22T07:01:00Z")))
            .unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.backend_pause("q").unwrap(),
        Some(("device fault: rf".into(), "2026-11-22T07:01:00Z".into()))
    );
    assert_eq!(store.backend_pause("other").unwrap(), None);
    store.set_backend_pause("q", None).unwrap();
    assert_eq!(store.backend_pause("q").unwrap(), None);
}

#[test]
fn disabling_a_user_revokes_its_tokens_for_good() {
    let (_d, path) = db();
    let s = Store::open(&path).unwrap();
    let u = s.add_user("alice", None, "h", false, T0).unwrap();
    s.insert_token("tok", u.id, T0, T2).unwrap();
    s.set_user_disabled("alice", true).unwrap();
    s.set_user_disabled("alice", false).unwrap();
    assert!(
        s.user_for_token("tok", T1).unwrap().is_none(),
        "re-enabling a user must not revive the tokens it had before it was disabled"
    );
    // A new login after re-enabling works.
    s.insert_token("tok2", u.id, T0, T2).unwrap();
    assert!(s.user_for_token("tok2", T1).unwrap().is_some());
    // Enabling alone revokes nothing.
    s.set_user_disabled("alice", false).unwrap();
    assert!(s.user_for_token("tok2", T1).unwrap().is_some());
}

#[test]
fn a_listing_stops_reading_rows_at_its_byte_budget() {
    let (_d, path) = db();
    let s = Store::open(&path).unwrap();
    let u = s.add_user("alice", None, "h", false, T0).unwrap();
    for i in 0..20 {
        let mut j = job(&format!("j{i}"), u.id, None);
        j.tags = vec!["t".repeat(10_000)];
        s.insert_job(&j).unwrap();
    }
    let mut f = shotline_store::JobFilter {
        user_id: Some(u.id),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(s.list_jobs(&f).unwrap().len(), 20);
    f.max_bytes = 35_000;
    let page = s.list_jobs(&f).unwrap();
    assert_eq!(
        page.len(),
        4,
        "three rows fit, the fourth crosses the budget"
    );
    assert_eq!(page[0].0.id, "j19", "newest first");
    assert!(
        page[0].0.body.is_empty(),
        "a listing does not read job bodies"
    );
    f.max_bytes = 1;
    assert_eq!(
        s.list_jobs(&f).unwrap().len(),
        1,
        "a page always progresses"
    );
}
