use shotline_store::{Admission, JobFilter, JobStatus, StoreError};

use crate::harness::{new_job, Harness, T0, T1};

pub async fn admission_inserts_queued_jobs_in_order_with_an_event(h: Harness) {
    let e = &h.engine;
    let u = h.user("alice").await;
    let a = h.job(&u, "a", "b1").await;
    let b = h.job(&u, "b", "b1").await;
    assert!(b.seq > a.seq, "seq follows submission order");
    assert_eq!(a.job_status(), Some(JobStatus::Queued));
    assert_eq!((a.attempts, a.updated_at.as_str()), (0, T0));
    let stored = e.job("a").await.unwrap().unwrap();
    assert_eq!(stored, a, "the answer is what was stored");
    assert_eq!(stored.tags, ["t"]);
    let events = e.job_events("a").await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].status.as_str(), events[0].at.as_str()),
        ("QUEUED", T0)
    );
    assert_eq!(e.job("zzz").await.unwrap(), None);
}

pub async fn admission_honours_idempotency_keys_and_the_active_limit(h: Harness) {
    let e = &h.engine;
    let u = h.user("alice").await;
    let first = match e
        .admit_job(new_job(u.id, "k1", "b", Some("key")), 2)
        .await
        .unwrap()
    {
        Admission::Admitted(j) => j,
        other => panic!("{other:?}"),
    };
    // The same key again: the first job, nothing written (even with another job id).
    match e
        .admit_job(new_job(u.id, "k2", "b", Some("key")), 2)
        .await
        .unwrap()
    {
        Admission::Existing(j) => assert_eq!(j.id, first.id),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.job("k2").await.unwrap(), None);
    // Another user may use the same key.
    let v = h.user("victor").await;
    assert!(matches!(
        e.admit_job(new_job(v.id, "v1", "b", Some("key")), 2)
            .await
            .unwrap(),
        Admission::Admitted(_)
    ));
    h.job(&u, "k3", "b").await;
    match e
        .admit_job(new_job(u.id, "k4", "b", None), 2)
        .await
        .unwrap()
    {
        Admission::LimitReached { active } => assert_eq!(active, 2),
        other => panic!("the third active job must be refused, got {other:?}"),
    }
    assert_eq!(e.job("k4").await.unwrap(), None);
    assert_eq!(e.count_active_jobs_of_user(u.id).await.unwrap(), 2);
    // The key still answers at the limit; a finished job frees a place.
    assert!(matches!(
        e.admit_job(new_job(u.id, "k5", "b", Some("key")), 2)
            .await
            .unwrap(),
        Admission::Existing(_)
    ));
    e.cancel_queued("k3", "cancelled", T1)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        e.admit_job(new_job(u.id, "k4", "b", None), 2)
            .await
            .unwrap(),
        Admission::Admitted(_)
    ));
}

pub async fn admission_refuses_unknown_users_and_reused_job_ids(h: Harness) {
    let e = &h.engine;
    let u = h.user("alice").await;
    assert!(matches!(
        e.admit_job(new_job(u.id + 1000, "x", "b", None), 10).await,
        Err(StoreError::NotFound(_))
    ));
    h.job(&u, "dup", "b").await;
    match e.admit_job(new_job(u.id, "dup", "b", None), 10).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("dup"), "{m}"),
        other => panic!("a reused job id must be a conflict, got {other:?}"),
    }
    let mut bad = new_job(u.id, "t", "b", None);
    bad.submitted_at = "noon".into();
    assert!(matches!(
        e.admit_job(bad, 10).await,
        Err(StoreError::Invalid {
            field: "submitted_at",
            ..
        })
    ));
    assert_eq!(e.job_events("dup").await.unwrap().len(), 1);
}

pub async fn listings_filter_page_and_stop_at_their_byte_budget(h: Harness) {
    let e = &h.engine;
    let (a, b) = (h.user("alice").await, h.user("bob").await);
    for i in 0..5 {
        h.job(&a, &format!("a{i}"), "b1").await;
    }
    h.job(&b, "b0", "b2").await;
    let page = |f: JobFilter| async move { e.list_jobs(&f).await.unwrap() };
    let all = page(JobFilter {
        limit: 100,
        ..Default::default()
    })
    .await;
    let ids: Vec<&str> = all.iter().map(|(j, _)| j.id.as_str()).collect();
    assert_eq!(ids, ["b0", "a4", "a3", "a2", "a1", "a0"], "newest first");
    assert!(all.iter().all(|(j, _)| j.body.is_empty()), "no bodies");
    assert_eq!(all[0].1, "bob", "with the owner's name");
    let mine = page(JobFilter {
        user_id: Some(a.id),
        limit: 2,
        ..Default::default()
    })
    .await;
    assert_eq!(mine.len(), 2);
    let next = page(JobFilter {
        user_id: Some(a.id),
        before_seq: Some(mine[1].0.seq),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(
        next.iter().map(|(j, _)| j.id.as_str()).collect::<Vec<_>>(),
        ["a2", "a1", "a0"]
    );
    let b2 = page(JobFilter {
        backend: Some("b2".into()),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(b2.len(), 1);
    let queued = page(JobFilter {
        status: Some("QUEUED".into()),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(queued.len(), 6);
    let later = page(JobFilter {
        since: Some(T1.into()),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert!(later.is_empty());
    let earlier = page(JobFilter {
        until: Some(T1.into()),
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(earlier.len(), 6);
    // A budget of one byte still returns the row that crosses it, and only that one.
    let tight = page(JobFilter {
        limit: 100,
        max_bytes: 1,
        ..Default::default()
    })
    .await;
    assert_eq!(tight.len(), 1);
}

pub async fn queued_jobs_cancel_once_and_counts_follow_statuses(h: Harness) {
    let e = &h.engine;
    let u = h.user("alice").await;
    for id in ["c1", "c2", "c3"] {
        h.job(&u, id, "b1").await;
    }
    h.job(&u, "other", "b2").await;
    assert_eq!(e.count_jobs("b1", JobStatus::Queued).await.unwrap(), 3);
    let c = e
        .cancel_queued("c2", "cancelled by alice before it ran", T1)
        .await
        .unwrap()
        .expect("a queued job cancels");
    assert_eq!(c.job_status(), Some(JobStatus::Cancelled));
    assert_eq!(
        c.detail.as_deref(),
        Some("cancelled by alice before it ran")
    );
    assert_eq!(c.updated_at, T1);
    assert_eq!(e.cancel_queued("c2", "again", T1).await.unwrap(), None);
    assert_eq!(e.cancel_queued("nope", "x", T1).await.unwrap(), None);
    assert_eq!(
        e.job_events("c2").await.unwrap().len(),
        2,
        "one event per change"
    );
    assert_eq!(e.count_jobs("b1", JobStatus::Queued).await.unwrap(), 2);
    assert_eq!(e.count_jobs("b1", JobStatus::Cancelled).await.unwrap(), 1);
    let queued: Vec<String> = e
        .jobs_with_status(JobStatus::Queued)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(queued, ["c1", "c3", "other"], "in submission order");
    assert_eq!(e.count_active_jobs_of_user(u.id).await.unwrap(), 3);
}
