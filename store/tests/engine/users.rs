use shotline_store::StoreError;

use crate::harness::{Harness, T0, T1, T2};

pub async fn users_are_added_found_listed_and_names_are_unique(h: Harness) {
    let e = &h.engine;
    let bob = e
        .add_user("bob", Some("bob@lab"), "h1", true, "2026-11-22T10:00:00Z")
        .await
        .unwrap();
    let alice = h.user("alice").await;
    assert_ne!(bob.id, alice.id);
    assert!(bob.is_admin && !bob.disabled);
    assert_eq!(bob.created_at, T0, "times are stored normalised");
    assert_eq!(e.user_by_name("bob").await.unwrap(), Some(bob.clone()));
    assert_eq!(e.user_by_id(alice.id).await.unwrap(), Some(alice.clone()));
    assert_eq!(e.user_by_name("nobody").await.unwrap(), None);
    assert_eq!(e.user_by_id(alice.id + bob.id + 100).await.unwrap(), None);
    let names: Vec<String> = e
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["alice", "bob"], "ordered by name");
    match e.add_user("bob", None, "h2", false, T0).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("bob"), "{m}"),
        other => panic!("a taken name must be a conflict, got {other:?}"),
    }
    assert!(matches!(
        e.add_user("", None, "h", false, T0).await,
        Err(StoreError::Invalid { .. })
    ));
    assert!(matches!(
        e.add_user("carol", None, "h", false, "yesterday").await,
        Err(StoreError::Invalid { field: "now", .. })
    ));
}

pub async fn tokens_authenticate_until_expired_revoked_or_disabled(h: Harness) {
    let e = &h.engine;
    let u = h.user("alice").await;
    e.insert_token("tok1", u.id, T0, T2).await.unwrap();
    assert_eq!(
        e.user_for_token("tok1", T1).await.unwrap().map(|u| u.id),
        Some(u.id)
    );
    assert_eq!(
        e.user_for_token("tok1", T2).await.unwrap(),
        None,
        "expired at expires_at"
    );
    assert_eq!(e.user_for_token("nope", T1).await.unwrap(), None);
    assert!(matches!(
        e.insert_token("tok1", u.id, T0, T2).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        e.insert_token("tok9", u.id + 1000, T0, T2).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(e.revoke_token("tok1").await.unwrap());
    assert!(!e.revoke_token("unknown").await.unwrap());
    assert_eq!(e.user_for_token("tok1", T1).await.unwrap(), None, "revoked");

    // Disabling revokes every token; re-enabling does not revive them.
    e.insert_token("tok2", u.id, T0, T2).await.unwrap();
    e.set_user_disabled("alice", true).await.unwrap();
    assert!(e.user_by_name("alice").await.unwrap().unwrap().disabled);
    assert_eq!(e.user_for_token("tok2", T1).await.unwrap(), None);
    e.set_user_disabled("alice", false).await.unwrap();
    assert_eq!(e.user_for_token("tok2", T1).await.unwrap(), None);
    e.insert_token("tok3", u.id, T0, T2).await.unwrap();
    assert!(e.user_for_token("tok3", T1).await.unwrap().is_some());
    assert!(matches!(
        e.set_user_disabled("nobody", true).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn password_changes_and_deletion_follow_the_rules(h: Harness) {
    let e = &h.engine;
    let u = h.user("alice").await;
    e.insert_token("tok", u.id, T0, T2).await.unwrap();
    e.set_password_hash("alice", "new-hash").await.unwrap();
    assert_eq!(
        e.user_by_name("alice")
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        "new-hash"
    );
    assert_eq!(
        e.user_for_token("tok", T1).await.unwrap(),
        None,
        "a password change revokes the user's tokens"
    );
    assert!(matches!(
        e.set_password_hash("nobody", "x").await,
        Err(StoreError::NotFound(_))
    ));

    // A user who owns a job keeps existing; one who never submitted can go, with the tokens.
    let owner = h.user("owner").await;
    h.job(&owner, "j1", "b").await;
    match e.delete_user("owner").await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("owner"), "{m}"),
        other => panic!("deleting a job owner must be refused, got {other:?}"),
    }
    e.delete_user("alice").await.unwrap();
    assert_eq!(e.user_by_name("alice").await.unwrap(), None);
    assert!(matches!(
        e.delete_user("alice").await,
        Err(StoreError::NotFound(_))
    ));
}
