//! Two engines on one database stand for two server processes sharing it.

use std::collections::BTreeSet;
use std::sync::Arc;

use shotline_store::{Admission, Engine, LockGrant};
use tokio::sync::Barrier;

use crate::harness::{new_job, Harness, T0, T1, T2};

/// Runs `per_engine` copies of `f` on each of the two engines at once; returns every answer.
async fn on_both<T, F, Fut>(h: &Harness, per_engine: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Arc<dyn Engine>, usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let engines = [h.engine.clone(), h.another_process().await];
    let barrier = Arc::new(Barrier::new(2 * per_engine));
    let mut tasks = Vec::new();
    for (which, engine) in engines.iter().enumerate() {
        for i in 0..per_engine {
            let fut = f(engine.clone(), which * per_engine + i);
            let barrier = barrier.clone();
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                fut.await
            }));
        }
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

pub async fn two_processes_never_admit_a_user_past_the_limit(h: Harness) {
    const LIMIT: u64 = 5;
    let u = h.user("alice").await;
    let answers = on_both(&h, 16, |e, i| async move {
        e.admit_job(new_job(u.id, &format!("j{i}"), "b", None), LIMIT)
            .await
            .unwrap()
    })
    .await;
    let admitted = answers
        .iter()
        .filter(|a| matches!(a, Admission::Admitted(_)))
        .count();
    assert_eq!(
        admitted as u64, LIMIT,
        "exactly the limit is admitted: {answers:?}"
    );
    for a in &answers {
        if let Admission::LimitReached { active } = a {
            assert!(*active >= LIMIT, "{a:?}");
        }
    }
    assert_eq!(
        h.engine.count_active_jobs_of_user(u.id).await.unwrap(),
        LIMIT
    );
}

pub async fn two_processes_admit_one_job_per_idempotency_key(h: Harness) {
    let u = h.user("alice").await;
    let answers = on_both(&h, 10, |e, i| async move {
        e.admit_job(new_job(u.id, &format!("k{i}"), "b", Some("same-key")), 100)
            .await
            .unwrap()
    })
    .await;
    let admitted: Vec<String> = answers
        .iter()
        .filter_map(|a| match a {
            Admission::Admitted(j) => Some(j.id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(admitted.len(), 1, "one job per key: {answers:?}");
    for a in &answers {
        match a {
            Admission::Admitted(_) => {}
            Admission::Existing(j) => assert_eq!(j.id, admitted[0]),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(h.engine.count_active_jobs_of_user(u.id).await.unwrap(), 1);
}

pub async fn two_processes_never_hand_out_one_execution_id_twice(h: Harness) {
    const PER_TASK: usize = 25;
    let lists = on_both(&h, 4, |e, _| async move {
        let mut ids = Vec::with_capacity(PER_TASK);
        for _ in 0..PER_TASK {
            ids.push(e.next_execution_id("20261122").await.unwrap());
        }
        ids
    })
    .await;
    let all: Vec<String> = lists.into_iter().flatten().collect();
    let unique: BTreeSet<&String> = all.iter().collect();
    assert_eq!(
        unique.len(),
        all.len(),
        "an execution id was handed out twice"
    );
    let expected: BTreeSet<String> = (1..=all.len())
        .map(|n| format!("20261122-{n:03}"))
        .collect();
    assert_eq!(
        unique.into_iter().cloned().collect::<BTreeSet<_>>(),
        expected,
        "no gaps either"
    );
}

pub async fn two_processes_race_for_a_lease_and_one_wins(h: Harness) {
    for round in 0..4 {
        let resource = format!("backend:b{round}");
        h.engine
            .acquire_lock(&resource, "dead", T0, Some(T1))
            .await
            .unwrap();
        // Before the expiry nobody takes it over.
        let r = resource.clone();
        let early = on_both(&h, 4, move |e, i| {
            let r = r.clone();
            async move {
                e.acquire_lock(&r, &format!("o{i}"), T0, Some(T2))
                    .await
                    .unwrap()
            }
        })
        .await;
        assert!(
            early
                .iter()
                .all(|g| matches!(g, LockGrant::Held(l) if l.owner == "dead")),
            "{early:?}"
        );
        // After it, exactly one contender gets it and everyone else sees the winner.
        let r = resource.clone();
        let late = on_both(&h, 4, move |e, i| {
            let r = r.clone();
            async move {
                (
                    i,
                    e.acquire_lock(&r, &format!("o{i}"), T1, Some(T2))
                        .await
                        .unwrap(),
                )
            }
        })
        .await;
        let winners: Vec<usize> = late
            .iter()
            .filter(|(_, g)| *g == LockGrant::Granted)
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(winners.len(), 1, "{late:?}");
        let winner = format!("o{}", winners[0]);
        for (_, g) in &late {
            if let LockGrant::Held(l) = g {
                assert_eq!(l.owner, winner);
            }
        }
        let held = h.engine.locks().await.unwrap();
        assert_eq!(
            held.iter().find(|l| l.resource == resource).unwrap().owner,
            winner
        );
    }
}
