//! The real binary with `store: { postgres: URL }`: `check-config` checks the database, `serve` runs on it.
//! (A throw-away database per test: `shotline_store::testing`.)

#[allow(dead_code, unused_imports, unused_macros)]
#[path = "runtime/common.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use shotline_store::testing::TestDatabase;

/// `configs/sim.yaml` with `store.postgres` set to `db` (with a password the server ignores, to check it is
/// never shown).
fn config_for(dir: &Path, db: &TestDatabase) -> PathBuf {
    let url = db.url().replacen(
        "postgresql://postgres@",
        "postgresql://postgres:hunter2@",
        1,
    );
    assert!(url.contains("hunter2"), "{url}");
    let text = format!(
        "{}\nstore: {{ postgres: \"{url}\" }}\n",
        shotline_config::SIM_YAML
    );
    let path = dir.join("pg.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn check_config(config: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shotline"))
        .arg("check-config")
        .arg(config)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn check_config_reaches_the_database_and_refuses_unsafe_commits() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::new();
    let config = config_for(dir.path(), &db);
    let (ok, text) = check_config(&config);
    assert!(ok, "{text}");
    assert!(
        text.contains("schema version 0 of") && text.contains("synchronous_commit on"),
        "{text}"
    );
    db.admin(&format!(
        "ALTER DATABASE {} SET synchronous_commit = off",
        db.name()
    ));
    let (ok, text) = check_config(&config);
    assert!(!ok, "{text}");
    assert!(
        text.contains("synchronous_commit") && text.contains("\"off\""),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "the password was shown: {text}");
}

#[test]
fn serve_keeps_its_data_in_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::new();
    let config = config_for(dir.path(), &db);
    let data = dir.path().join("data");
    // The config names the database already: started as is (what `TestEngine::sqlite` does).
    let server = common::Server::start_with(&common::TestEngine::sqlite(), &config, &data);
    server.stop();
    // Restarts on the same data dir, and keeps no SQLite database of its own there.
    common::Server::start_with(&common::TestEngine::sqlite(), &config, &data).stop();
    assert!(!data.join("shotline.db").exists());
    // The server created the schema in the PostgreSQL database.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let version = rt.block_on(async {
        let engine = shotline_store::open(&shotline_store::StoreSelection::Postgres {
            url: db.url().to_owned(),
            allow_synchronous_commit_off: false,
        })
        .await
        .unwrap();
        let v = engine.schema_version().await.unwrap();
        engine.shutdown().await.unwrap();
        v
    });
    assert_eq!(version, shotline_store::schema::latest_version());
}

fn shotline(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_shotline"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn store_copy_moves_a_sqlite_data_dir_into_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let (ok, text) = shotline(
        &[
            "user",
            "add",
            "alice",
            "--admin",
            "--password-stdin",
            "--data-dir",
            data_arg,
        ],
        Some("correct horse battery\n"),
    );
    assert!(ok, "{text}");
    let db = TestDatabase::new();
    let url = db.url().replacen(
        "postgresql://postgres@",
        "postgresql://postgres:hunter2@",
        1,
    );
    let (ok, text) = shotline(&["store", "copy", "--from", data_arg, "--to", &url], None);
    assert!(ok, "{text}");
    assert!(text.contains("users 1"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    // Copying again into the same (no longer empty) database is refused.
    let (ok, text) = shotline(&["store", "copy", "--from", data_arg, "--to", &url], None);
    assert!(!ok && text.contains("empty database"), "{text}");

    let config = config_for(dir.path(), &db);
    let (ok, text) = shotline(
        &["store", "migrate", "--config", config.to_str().unwrap()],
        None,
    );
    assert!(ok, "{text}");
    assert!(text.contains("schema version"), "{text}");
    let (ok, text) = shotline(
        &["user", "list", "--config", config.to_str().unwrap()],
        None,
    );
    assert!(ok && text.contains("alice"), "{text}");
}

// The SIGKILL drill on PostgreSQL: `crash::sigkill_at_random_points_..::postgres` in tests/runtime.rs (one
// body for both engines).
