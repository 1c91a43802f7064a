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
