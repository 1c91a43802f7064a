//! PostgreSQL-only behaviour of the engine: opening, migrations, the durability check at start.

use shotline_store::postgres::{schema, PgEngine, PgOptions};
use shotline_store::testing::TestDatabase;
use shotline_store::StoreError;

#[tokio::test]
async fn open_migrates_an_empty_database_to_the_latest_version_once() {
    let db = TestDatabase::new();
    let engine = PgEngine::open(&db.options()).await.unwrap();
    assert_eq!(
        engine.schema_version().await.unwrap(),
        schema::latest_version()
    );
    assert!(engine.durability_settings().durable());
    assert!(!engine.description().contains("***"));
    drop(engine);
    // Reopening applies nothing and keeps the version.
    let again = PgEngine::open(&db.options()).await.unwrap();
    assert_eq!(
        again.schema_version().await.unwrap(),
        schema::latest_version()
    );
}

#[tokio::test]
async fn a_database_newer_than_this_build_is_refused() {
    let db = TestDatabase::new();
    PgEngine::open(&db.options()).await.unwrap();
    let newer = i64::from(schema::latest_version()) + 1;
    db.admin_in_database(&format!(
        "INSERT INTO schema_migrations (version, applied_at) VALUES ({newer}, 'later')"
    ));
    match PgEngine::open(&db.options()).await {
        Err(StoreError::Migration(m)) => assert!(m.contains(&newer.to_string()), "{m}"),
        other => panic!("expected a migration error, got {other:?}"),
    }
}

#[tokio::test]
async fn synchronous_commit_off_is_refused_unless_the_config_allows_it() {
    let db = TestDatabase::new();
    for (setting, value) in [
        ("synchronous_commit", "off"),
        ("synchronous_commit", "local"),
    ] {
        db.admin(&format!(
            "ALTER DATABASE {} SET {setting} = {value}",
            db.name()
        ));
        match PgEngine::open(&db.options()).await {
            Err(e @ StoreError::PostgresSetting { .. }) => {
                let m = e.to_string();
                assert!(m.contains(setting) && m.contains(value), "{m}");
            }
            other => panic!("expected a refusal for {setting}={value}, got {other:?}"),
        }
        let allowed = PgOptions {
            allow_synchronous_commit_off: true,
            ..db.options()
        };
        let engine = PgEngine::open(&allowed).await.unwrap();
        assert!(!engine.durability_settings().durable());
    }
}

#[tokio::test]
async fn an_unreachable_server_is_a_failing_storage_not_a_hang() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgresql://nobody:s3cret@127.0.0.1:{port}/none");
    let e = PgEngine::open(&PgOptions::new(&url)).await.unwrap_err();
    assert_eq!(
        e.storage_problem(),
        Some(shotline_store::StorageProblem::Failing),
        "{e}"
    );
    assert!(!e.to_string().contains("s3cret"), "{e}");
}

#[tokio::test]
async fn killed_connections_fail_as_storage_errors_and_the_pool_recovers() {
    use shotline_store::{StorageProblem, UserStore};
    let db = TestDatabase::new();
    let engine = PgEngine::open(&db.options()).await.unwrap();
    engine
        .add_user("alice", None, "h", false, "2026-11-22T10:00:00Z")
        .await
        .unwrap();
    // An administrator (or a server restart) ends every session of the database.
    db.admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
        db.name()
    ));
    let mut recovered = false;
    for _ in 0..4 {
        match engine.user_by_name("alice").await {
            Ok(u) => {
                assert_eq!(u.unwrap().name, "alice");
                recovered = true;
                break;
            }
            Err(e) => assert_eq!(e.storage_problem(), Some(StorageProblem::Failing), "{e}"),
        }
    }
    assert!(recovered, "the pool must replace the dead connections");
}

#[tokio::test]
async fn rows_copied_in_with_their_ids_do_not_collide_with_new_ones() {
    use shotline_store::{Admission, JobStore, NewJob, UserStore};
    let db = TestDatabase::new();
    drop(PgEngine::open(&db.options()).await.unwrap());
    // What a copy from SQLite does: rows with their original ids and seqs.
    db.admin_in_database(
        "INSERT INTO users (id, name, password_hash, is_admin, disabled, created_at) \
         VALUES (41, 'copied', 'h', 0, 0, '2026-01-01T00:00:00.000Z'); \
         INSERT INTO jobs (id, seq, user_id, backend, tags, body, status, attempts, submitted_at, updated_at) \
         VALUES ('old', 900, 41, 'b', '[]', '{}', 'DONE', 1, '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z'); \
         INSERT INTO job_events (id, job_id, status, at) VALUES (77, 'old', 'DONE', '2026-01-01T00:00:00.000Z')",
    );
    let engine = PgEngine::open(&db.options()).await.unwrap();
    let u = engine
        .add_user("new", None, "h", false, "2026-11-22T10:00:00Z")
        .await
        .unwrap();
    assert!(u.id > 41, "{}", u.id);
    let job = NewJob {
        id: "fresh".into(),
        user_id: u.id,
        backend: "b".into(),
        qobj_id: None,
        priority: 0,
        tags: vec![],
        idempotency_key: None,
        body: "{}".into(),
        submitted_at: "2026-11-22T10:00:00Z".into(),
    };
    match engine.admit_job(job, 10).await.unwrap() {
        Admission::Admitted(j) => assert!(j.seq > 900, "{}", j.seq),
        other => panic!("{other:?}"),
    }
    let events = engine.job_events("fresh").await.unwrap();
    assert!(events[0].id > 77, "{events:?}");
}
