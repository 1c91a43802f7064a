use shotline_store::LockGrant;

use crate::harness::{Harness, T0, T1, T2, T3};

pub async fn leases_are_granted_refreshed_and_held(h: Harness) {
    let e = &h.engine;
    assert_eq!(
        e.acquire_lock("backend:b1", "exec-1", T0, Some(T2))
            .await
            .unwrap(),
        LockGrant::Granted
    );
    match e
        .acquire_lock("backend:b1", "exec-2", T1, Some(T3))
        .await
        .unwrap()
    {
        LockGrant::Held(l) => {
            assert_eq!(
                (l.owner.as_str(), l.expires_at.as_deref()),
                ("exec-1", Some(T2))
            );
        }
        other => panic!("an unexpired lease must stay with its owner, got {other:?}"),
    }
    // The owner refreshes its own lease.
    assert_eq!(
        e.acquire_lock("backend:b1", "exec-1", T1, Some(T3))
            .await
            .unwrap(),
        LockGrant::Granted
    );
    let locks = e.locks().await.unwrap();
    assert_eq!(locks.len(), 1);
    assert_eq!(locks[0].expires_at.as_deref(), Some(T3));
    // A lease without expiry is never taken over.
    assert_eq!(
        e.acquire_lock("forever", "a", T0, None).await.unwrap(),
        LockGrant::Granted
    );
    assert!(matches!(
        e.acquire_lock("forever", "b", "2099-01-01T00:00:00Z", None)
            .await
            .unwrap(),
        LockGrant::Held(_)
    ));
    let names: Vec<String> = e
        .locks()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.resource)
        .collect();
    assert_eq!(names, ["backend:b1", "forever"], "by resource");
}

pub async fn an_expired_lease_is_taken_over_and_its_old_owner_loses_it(h: Harness) {
    let e = &h.engine;
    e.acquire_lock("r", "old", T0, Some(T2)).await.unwrap();
    assert!(
        matches!(
            e.acquire_lock("r", "new", T1, Some(T3)).await.unwrap(),
            LockGrant::Held(_)
        ),
        "before expiry"
    );
    assert_eq!(
        e.acquire_lock("r", "new", T2, Some(T3)).await.unwrap(),
        LockGrant::Granted,
        "at expiry"
    );
    let l = e.locks().await.unwrap().remove(0);
    assert_eq!((l.owner.as_str(), l.acquired_at.as_str()), ("new", T2));
    assert!(
        !e.renew_lock("r", "old", Some(T3)).await.unwrap(),
        "the old owner cannot renew"
    );
    assert!(!e.release_lock("r", "old").await.unwrap(), "nor release");
    assert!(e
        .renew_lock("r", "new", Some("2026-11-22T11:00:00Z"))
        .await
        .unwrap());
    assert_eq!(
        e.locks().await.unwrap()[0].expires_at.as_deref(),
        Some("2026-11-22T11:00:00.000Z")
    );
}

pub async fn releases_need_the_owner_unless_forced(h: Harness) {
    let e = &h.engine;
    e.acquire_lock("r", "a", T0, Some(T2)).await.unwrap();
    assert!(!e.release_lock("r", "b").await.unwrap());
    assert!(e.release_lock("r", "a").await.unwrap());
    assert!(!e.release_lock("r", "a").await.unwrap());
    assert!(e.locks().await.unwrap().is_empty());
    e.acquire_lock("r", "dead-owner", T0, None).await.unwrap();
    let gone = e
        .force_release_lock("r")
        .await
        .unwrap()
        .expect("it was held");
    assert_eq!(gone.owner, "dead-owner");
    assert_eq!(e.force_release_lock("r").await.unwrap(), None);
    assert_eq!(
        e.acquire_lock("r", "b", T1, None).await.unwrap(),
        LockGrant::Granted
    );
}
