//! The data dir and the client's home on the host: private modes whatever the umask, the data dir's lock,
//! and the start-up checks of the store (damaged, vanished, or missing acknowledged work).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use shotline::protocol::Value;
use shotline_client::{Client, SubmitOptions, Trust};

use crate::common::*;

const SIM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/sim.yaml");

/// The binary run under `umask 022` (the usual default, which made files 0644 and dirs 0755).
fn umask_cmd(args: &[&str]) -> Command {
    shell_cmd("umask 022 && exec \"$@\"", args)
}

/// The binary run by `sh -c script` (which ends with `exec ... "$@"`).
fn shell_cmd(script: &str, args: &[&str]) -> Command {
    let mut c = Command::new("sh");
    c.args(["-c", script, "sh", BIN]).args(args);
    c
}

/// Runs the CLI under umask 022 with `SHOTLINE_HOME=home`: (success, stdout, stderr).
fn cli(home: &Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    run_cli(umask_cmd(args), home, Some(stdin))
}

/// `shotline serve` under umask 022: the running server once ready, or what it printed when it exited.
fn serve(data: &Path, extra: &[&str]) -> Result<Server, String> {
    serve_by(umask_cmd, data, extra)
}

/// `shotline serve` started by `command` (given the binary's arguments).
fn serve_by(
    command: impl FnOnce(&[&str]) -> Command,
    data: &Path,
    extra: &[&str],
) -> Result<Server, String> {
    let data_s = data.to_str().unwrap();
    let mut args = vec![
        "serve",
        "--config",
        SIM,
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_s,
    ];
    args.extend_from_slice(extra);
    Server::spawn(command(&args))
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

/// Every entry under `dir` (and `dir` itself) that group or others can access, with its mode.
fn shared_entries(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut out = Vec::new();
    if mode(dir) & 0o077 != 0 {
        out.push((dir.to_path_buf(), mode(dir)));
    }
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            out.extend(shared_entries(&p));
        } else if mode(&p) & 0o077 != 0 {
            out.push((p.clone(), mode(&p)));
        }
    }
    out
}

fn add_user(home: &Path, data: &Path, name: &str) -> String {
    let (ok, out, err) = cli(
        home,
        &[
            "user",
            "add",
            name,
            "--admin",
            "--data-dir",
            data.to_str().unwrap(),
            "--password-stdin",
        ],
        "password123\n",
    );
    assert!(ok, "user add: {out} {err}");
    out
}

#[test]
fn data_dir_and_client_home_are_private_whatever_the_umask() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, home) = (tmp.path().join("data"), tmp.path().join("home/shotline"));
    // `user add` without a server creates the data dir and the database.
    let out = add_user(&home, &data, "alice");
    assert!(out.contains("directly in the store"), "{out}");
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("shotline.db")), 0o600);
    assert_eq!(shared_entries(&data), vec![]);

    let server = serve(&data, &[]).expect("serve starts");
    for f in [
        "shotline.db",
        "shotline.db-wal",
        "shotline.db-shm",
        "tls/key.pem",
    ] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    assert_eq!(mode(&data.join("tls")), 0o700);
    assert_eq!(shared_entries(&data), vec![]);

    // Login writes the session (a bearer token) and the pin into a home created 0700, files 0600.
    let (ok, out, err) = cli(
        &home,
        &[
            "login",
            "--server",
            &server.addr,
            "--user",
            "alice",
            "--password-stdin",
        ],
        "password123\n",
    );
    assert!(ok, "login: {out} {err}");
    assert_eq!(mode(&home), 0o700);
    assert_eq!(mode(&home.join("sessions.json")), 0o600);
    assert_eq!(mode(&home.join("known_servers.json")), 0o600);
    assert_eq!(shared_entries(&home), vec![]);
    // Logging out rewrites the sessions file: still private, no temporary file left.
    let (ok, _, err) = cli(&home, &["logout", "--server", &server.addr], "");
    assert!(ok, "logout: {err}");
    assert_eq!(shared_entries(&home), vec![]);
    let names: Vec<String> = std::fs::read_dir(&home)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains(".tmp")), "{names:?}");
    server.stop();
    assert_eq!(shared_entries(&data), vec![]);

    // A home or data dir left open by an older version is restricted to its owner.
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (_, _, _) = cli(&home, &["whoami", "--server", "127.0.0.1:1"], "");
    assert_eq!(mode(&home), 0o700);
}

#[test]
fn user_commands_never_open_the_store_behind_a_server_whose_socket_is_unreachable() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, home) = (tmp.path().join("data"), tmp.path().join("home"));
    add_user(&home, &data, "alice");
    let server = serve(&data, &[]).expect("serve starts");
    // The socket is replaced by something that does not answer.
    let sock = data.join("admin.sock");
    let moved = data.join("admin.sock.moved");
    std::fs::rename(&sock, &moved).unwrap();
    std::fs::write(&sock, b"not a socket").unwrap();
    let data_s = data.to_str().unwrap();
    let (ok, out, err) = cli(
        &home,
        &[
            "user",
            "add",
            "bob",
            "--data-dir",
            data_s,
            "--password-stdin",
        ],
        "password123\n",
    );
    assert!(!ok, "user add went through: {out}");
    assert!(
        err.contains("server.lock is held") && err.contains("refused"),
        "the error must say a server runs and why its socket failed: {err}"
    );
    // A second server is refused by the lock, although no socket answers.
    let second = serve(&data, &[]).map(|s| s.stop());
    let text = second.expect_err("a second server started on the same data dir");
    assert!(text.contains("server.lock is locked"), "{text}");
    // The store was not touched: bob does not exist.
    std::fs::remove_file(&sock).unwrap();
    std::fs::rename(&moved, &sock).unwrap();
    let (ok, out, err) = cli(&home, &["user", "list", "--data-dir", data_s, "--json"], "");
    assert!(ok, "{err}");
    assert!(out.contains("alice") && !out.contains("bob"), "{out}");
    server.stop();
    // With no server, the store is used directly.
    let (ok, out, err) = cli(
        &home,
        &[
            "user",
            "add",
            "bob",
            "--data-dir",
            data_s,
            "--password-stdin",
        ],
        "password123\n",
    );
    assert!(ok && out.contains("directly in the store"), "{out} {err}");
}

fn garble_page(db: &Path, page: u64) {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::OpenOptions::new().write(true).open(db).unwrap();
    f.seek(SeekFrom::Start(page * 4096)).unwrap();
    f.write_all(&[0xA5; 4096]).unwrap();
}

fn no_wal(db: &Path) {
    for s in ["-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{s}", db.display()));
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn a_damaged_emptied_or_vanished_database_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, home) = (tmp.path().join("data"), tmp.path().join("home"));
    let db = data.join("shotline.db");
    add_user(&home, &data, "alice");
    serve(&data, &[]).expect("serve starts").stop();
    assert!(data.join("INITIALISED").exists());
    let good = std::fs::read(&db).unwrap();

    // A garbled page: refused, naming the file and what quick_check found.
    garble_page(&db, 1);
    no_wal(&db);
    let text = serve(&data, &[])
        .map(|s| s.stop())
        .expect_err("served a damaged db");
    assert!(
        text.contains(&format!("the database {} is damaged", db.display())),
        "{text}"
    );
    assert!(
        serve(&data, &["--accept-data-loss"])
            .map(|s| s.stop())
            .is_err(),
        "a damaged db is refused even with --accept-data-loss"
    );

    // Emptied: refused, saying when the data dir was initialised.
    std::fs::write(&db, b"").unwrap();
    let text = serve(&data, &[])
        .map(|s| s.stop())
        .expect_err("served an empty db");
    assert!(
        text.contains("was initialised on") && text.contains("is empty"),
        "{text}"
    );
    // Vanished: the same.
    std::fs::remove_file(&db).unwrap();
    let text = serve(&data, &[])
        .map(|s| s.stop())
        .expect_err("served a new db");
    assert!(text.contains("is missing"), "{text}");

    // Restored from the backup: serves again, alice is there.
    std::fs::write(&db, &good).unwrap();
    let server = serve(&data, &[]).expect("the restored db serves");
    let (ok, out, err) = cli(
        &home,
        &["user", "list", "--data-dir", data.to_str().unwrap()],
        "",
    );
    assert!(ok && out.contains("alice"), "{out} {err}");
    server.stop();

    // The operator may start afresh on purpose.
    std::fs::remove_file(&db).unwrap();
    serve(&data, &["--accept-data-loss"])
        .expect("--accept-data-loss starts with an empty db")
        .stop();
    serve(&data, &[]).expect("and it serves afterwards").stop();
}

#[test]
fn acknowledged_jobs_lost_with_a_damaged_wal_are_named_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, home) = (tmp.path().join("data"), tmp.path().join("home"));
    let db = data.join("shotline.db");
    add_user(&home, &data, "alice");
    let mut server = serve(&data, &[]).expect("serve starts");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let trust = Trust::Pin {
            pins_file: tmp.path().join("pins.json"),
        };
        let c = Client::connect(&server.addr, &trust).await.unwrap();
        let token = c.login("alice", "password123").await.unwrap().token;
        // Nothing runs: only the submissions are in the WAL.
        c.pause_backend(&token, "singlequdit").await.unwrap();
        let job: Value = serde_json::from_value(json!({
            "experiment_0": {"instructions": [["measure", [0], []]], "num_wires": 1, "shots": 1}
        }))
        .unwrap();
        for _ in 0..20 {
            c.submit(&token, "singlequdit", job.clone(), SubmitOptions::default())
                .await
                .unwrap();
        }
    });
    // A crash, then a WAL that lost its second half (frames after a bad checksum are dropped alike).
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    let len = std::fs::metadata(&wal).unwrap().len();
    let frame = 24 + 4096;
    let frames = (len - 32) / frame;
    assert!(frames >= 20, "the WAL holds {frames} frames");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&wal)
        .unwrap()
        .set_len(32 + frames / 2 * frame)
        .unwrap();
    let _ = std::fs::remove_file(format!("{}-shm", db.display()));

    let text = serve(&data, &[])
        .map(|s| s.stop())
        .expect_err("served a db that lost acknowledged jobs");
    assert!(
        text.contains("but seq 20 was acknowledged")
            && text.contains("acknowledged jobs are missing"),
        "{text}"
    );
    // The operator accepts the loss explicitly; the server then starts and keeps starting.
    serve(&data, &["--accept-data-loss"])
        .expect("--accept-data-loss starts")
        .stop();
    serve(&data, &[]).expect("serves after accepting").stop();
}

/// A job of 40 experiments with long instruction lists: ~40 KB of body for the store.
fn bulky_job() -> Value {
    let mut instructions: Vec<serde_json::Value> =
        (0..60).map(|_| json!(["rlz", [0], [0.125]])).collect();
    instructions.push(json!(["measure", [0], []]));
    let experiments: serde_json::Map<String, serde_json::Value> = (0..40)
        .map(|i| {
            (
                format!("experiment_{i}"),
                json!({"instructions": instructions, "num_wires": 1, "shots": 1}),
            )
        })
        .collect();
    serde_json::from_value(serde_json::Value::Object(experiments)).unwrap()
}

#[test]
fn a_store_that_cannot_grow_answers_a_storage_code_and_loses_nothing_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, home) = (tmp.path().join("data"), tmp.path().join("home"));
    add_user(&home, &data, "alice");
    // Every file of the server may grow to 768 KiB (RLIMIT_FSIZE; SIGXFSZ ignored, so a write beyond fails
    // with EFBIG): the WAL soon cannot take another commit, as on a disk that is full or failing.
    let limited = |args: &[&str]| {
        shell_cmd(
            "trap '' XFSZ && exec prlimit --fsize=786432 -- \"$@\"",
            args,
        )
    };
    let server = serve_by(limited, &data, &[]).expect("serve starts under the file size limit");
    let pins = tmp.path().join("pins.json");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let acknowledged = rt.block_on(async {
        let c = Client::connect(
            &server.addr,
            &Trust::Pin {
                pins_file: pins.clone(),
            },
        )
        .await
        .unwrap();
        let token = c.login("alice", "password123").await.unwrap().token;
        c.pause_backend(&token, "singlequdit").await.unwrap();
        let job = bulky_job();
        let mut acknowledged = Vec::new();
        let refused = loop {
            assert!(acknowledged.len() < 200, "the store never filled up");
            match c
                .submit(&token, "singlequdit", job.clone(), SubmitOptions::default())
                .await
            {
                Ok(s) => acknowledged.push(s.job_id),
                Err(e) => break e,
            }
        };
        let shotline_client::ClientError::Server(body) = &refused else {
            panic!("not a server error: {refused}");
        };
        assert!(
            body.code == "STORAGE_UNAVAILABLE" || body.code == "STORAGE_FULL",
            "a storage failure reached the client as {}: {}",
            body.code,
            body.message
        );
        assert!(
            body.message.contains("nothing was stored"),
            "{}",
            body.message
        );
        assert!(
            acknowledged.len() >= 2,
            "{} jobs acknowledged",
            acknowledged.len()
        );
        // The server keeps serving what it holds: every acknowledged job is there.
        for id in &acknowledged {
            let s = c.status(&token, id).await.unwrap();
            assert_eq!(s.status, shotline::protocol::JobStatus::Queued, "{id}");
        }
        c.close().await;
        acknowledged
    });
    // A crash (SIGKILL), then a restart with room to grow.
    let mut server = server;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    // Nothing acknowledged is missing (the start-up checks agree) and the
    // refused job was never stored.
    let server = serve(&data, &[]).expect("restarts without complaint");
    rt.block_on(async {
        let c = Client::connect(&server.addr, &Trust::Pin { pins_file: pins })
            .await
            .unwrap();
        let token = c.login("alice", "password123").await.unwrap().token;
        for id in &acknowledged {
            let s = c.status(&token, id).await.unwrap();
            assert_eq!(s.status, shotline::protocol::JobStatus::Queued, "{id}");
        }
        c.close().await;
    });
    server.stop();
}

/// On PostgreSQL the data dir holds no database file (none of the SQLite checks above apply), but the
/// acknowledged-work mark stays (`<data_dir>/postgres.ack-hwm`): a database restored from an older backup is
/// refused, naming what is missing, until the operator starts with `serve --accept-data-loss`.
#[test]
fn a_postgresql_database_restored_from_an_older_backup_is_refused_unless_accepted() {
    let engine = TestEngine::postgres();
    let db = engine.database().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let job = job1(json!([["measure", [0], []]]), 1, Some(1));
    let run_jobs = |n: usize| -> Vec<String> {
        rt.block_on(async {
            let r = start_in(&engine, &data, sim_config()).await;
            let mut ids = Vec::new();
            for _ in 0..n {
                ids.push(run_job(&r, &job).await.0);
            }
            r.shutdown().await.unwrap();
            ids
        })
    };
    let kept = run_jobs(2);
    assert!(
        !data.join("shotline.db").exists(),
        "no SQLite database in the data dir of a PostgreSQL store"
    );
    let mark = std::fs::read_to_string(shotline::postgres_marks::mark_path(&data)).unwrap();
    assert!(mark.starts_with("seq "), "{mark}");
    assert_eq!(
        mode(&shotline::postgres_marks::mark_path(&data)),
        0o600,
        "the mark is private"
    );
    // The backup, then more acknowledged work, then the backup put back in place.
    let name = db.name();
    db.admin(&format!("CREATE DATABASE {name}_old TEMPLATE {name}"));
    run_jobs(3);
    db.admin(&format!("DROP DATABASE {name} WITH (FORCE)"));
    db.admin(&format!("ALTER DATABASE {name}_old RENAME TO {name}"));

    let refused = rt.block_on(shotline::Runtime::start_with(
        engine.config(sim_config()),
        "sha256:test".into(),
        shotline::StartOptions {
            data_dir: Some(data.clone()),
            ..Default::default()
        },
    ));
    let text = match refused {
        Ok(_) => panic!("served a database behind the acknowledged work"),
        Err(e) => e.to_string(),
    };
    assert!(
        text.contains("3 acknowledged jobs are missing") && text.contains("--accept-data-loss"),
        "{text}"
    );
    assert!(!text.contains("hunter2"));

    // The operator accepts the loss: the server starts and serves what the database holds.
    let config = engine.config_file(Path::new(SIM), tmp.path());
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--config", config.to_str().unwrap()])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--accept-data-loss",
            "--data-dir",
        ])
        .arg(&data);
    Server::spawn(command)
        .expect("--accept-data-loss serves the older database")
        .stop();
    rt.block_on(async {
        let r = start_in(&engine, &data, sim_config()).await;
        let status = r.status(&kept[1]).await.unwrap();
        assert_eq!(status.status, shotline::protocol::JobStatus::Done);
        r.shutdown().await.unwrap();
    });
}
