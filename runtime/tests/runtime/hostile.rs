//! Hostile and careless peers (issue 10, items 1, 5, 9, 18): unauthenticated peers cannot make the server hold
//! memory, a failed or killed client stops counting against its user's connections, the login limiter and
//! `register` are bounded, and a slow shot watcher does not make other watchers fall behind.
//!
//! These tests are about devices, physics and the protocol, not the store: they run on the default engine
//! (SQLite). The store's behaviour through the runtime runs on both engines (embedding, e2e, crash,
//! faults, supervision, limits, remote).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use shotline::protocol::wire::{decode_body, JobEvent, Response};
use shotline::protocol::{JobStatus, Value};
use shotline::SubmitOptions;
use shotline_client::{Client, ClientError, Trust};

use crate::common::*;

/// `shotline serve` on `configs/sim.yaml` plus `extra` YAML, data in `tmp/data`, with user `alice`.
fn serve_with(tmp: &Path, extra: &str) -> (Server, PathBuf) {
    let sim = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/sim.yaml"))
        .unwrap();
    let config = tmp.join("config.yaml");
    std::fs::write(&config, format!("{sim}\n{extra}\n")).unwrap();
    let data = tmp.join("data");
    let home = tmp.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let server = Server::start_with(&TestEngine::sqlite(), &config, &data);
    add_user_and_login(&home, &data, &server.addr, "alice", "correct horse");
    (server, home)
}

/// (VmSize, VmRSS) of a process in bytes.
fn memory_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("VmSize:"), field("VmRSS:"))
}

const MIB: u64 = 1024 * 1024;

fn pins(tmp: &Path) -> Trust {
    Trust::Pin {
        pins_file: tmp.join("attack-pins.json"),
    }
}

/// A connection that opens 64 streams and sends on each only a 4-byte header announcing ~8 MiB, then holds.
async fn hold_headers(addr: String, trust: Trust, stop: Arc<AtomicBool>) {
    let Ok(c) = Client::connect(&addr, &trust).await else {
        return;
    };
    let mut streams = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let conn = c.connection().clone();
        streams.spawn(async move {
            if let Ok((mut send, _recv)) = conn.open_bi().await {
                let _ = send.write_all(&(8_388_000u32).to_be_bytes()).await;
                std::future::pending::<()>().await;
            }
        });
    }
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    streams.abort_all();
}

/// A msgpack submit of ~7.8 MB with a garbage token, the token before or after the job.
fn garbage_submit(token_first: bool) -> Vec<u8> {
    let mut body = vec![0x84];
    let kv = |k: &str, v: &[u8], b: &mut Vec<u8>| {
        b.push(0xa0 | k.len() as u8);
        b.extend_from_slice(k.as_bytes());
        b.extend_from_slice(v);
    };
    let op = [&[0xa6][..], b"submit"].concat();
    let token = [&[0xd9, 64][..], &[b'f'; 64][..]].concat();
    let backend = [&[0xab][..], b"singlequdit"].concat();
    let n: u32 = 7_800_000;
    let job = [
        &[0xdb][..],
        &n.to_be_bytes()[..],
        &vec![b'x'; n as usize][..],
    ]
    .concat();
    kv("op", &op, &mut body);
    if token_first {
        kv("token", &token, &mut body);
        kv("backend", &backend, &mut body);
        kv("job", &job, &mut body);
    } else {
        kv("backend", &backend, &mut body);
        kv("job", &job, &mut body);
        kv("token", &token, &mut body);
    }
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// A connection that keeps sending big garbage-token requests on 4 streams at a time.
async fn send_garbage(addr: String, trust: Trust, frame: Arc<Vec<u8>>, stop: Arc<AtomicBool>) {
    let Ok(c) = Client::connect(&addr, &trust).await else {
        return;
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (conn, frame, stop) = (c.connection().clone(), frame.clone(), stop.clone());
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok((mut send, mut recv)) = conn.open_bi().await else {
                    return;
                };
                let _ = send.write_all(&frame).await;
                let _ = send.finish();
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1 << 20)).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Item 1: before any token checks out, a peer can make the server hold only a small bounded amount of memory.
/// 24 connections × 64 streams of bare 4-byte headers announcing 8 MiB and 4 connections sending 7.8 MB
/// requests with a garbage token, for 4 s: the server's address space and resident memory grow by less than
/// 128 MiB, and a legitimate client logs in and submits meanwhile.
#[test]
fn unauthenticated_peers_cannot_exhaust_the_servers_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, _home) = serve_with(tmp.path(), "");
    let pid = server.child.id();
    let addr = server.addr.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let trust = pins(tmp.path());
    let job = value(job1(json!([["measure", [0], []]]), 2, None));
    let legit = |trust: Trust, addr: String, job: Value| async move {
        let c = Client::connect(&addr, &trust).await?;
        let token = c.login("alice", "correct horse").await?.token;
        let s = c
            .submit(&token, "singlequdit", job, SubmitOptions::default())
            .await?;
        c.status(&token, &s.job_id).await?;
        c.close().await;
        Ok::<_, ClientError>(())
    };
    // Warm up (first login, first submit) so the baseline holds what a normal server holds.
    rt.block_on(async {
        let (a, b) = tokio::join!(
            legit(trust.clone(), addr.clone(), job.clone()),
            legit(trust.clone(), addr.clone(), job.clone())
        );
        a.unwrap();
        b.unwrap();
    });
    std::thread::sleep(Duration::from_millis(300));
    let (vm0, rss0) = memory_of(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let sampling = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut vm, mut rss) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                let (v, r) = memory_of(pid);
                vm = vm.max(v);
                rss = rss.max(r);
                std::thread::sleep(Duration::from_millis(50));
            }
            (vm, rss)
        })
    };
    let (legit_result, legit_time) = rt.block_on(async {
        let mut attack = tokio::task::JoinSet::new();
        for _ in 0..24 {
            attack.spawn(hold_headers(addr.clone(), trust.clone(), stop.clone()));
        }
        let first = Arc::new(garbage_submit(true));
        let last = Arc::new(garbage_submit(false));
        for i in 0..4 {
            let frame = if i % 2 == 0 {
                first.clone()
            } else {
                last.clone()
            };
            attack.spawn(send_garbage(
                addr.clone(),
                trust.clone(),
                frame,
                stop.clone(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let t0 = Instant::now();
        let legit_result = legit(trust.clone(), addr.clone(), job.clone()).await;
        let legit_time = t0.elapsed();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        stop.store(true, Ordering::Relaxed);
        attack.abort_all();
        while attack.join_next().await.is_some() {}
        (legit_result, legit_time)
    });
    stop.store(true, Ordering::Relaxed);
    let (vm1, rss1) = sampling.join().unwrap();
    let (dvm, drss) = (vm1.saturating_sub(vm0), rss1.saturating_sub(rss0));
    eprintln!(
        "server memory during the attack: VmSize {} -> {} MiB (+{}), VmRSS {} -> {} MiB (+{}); legitimate login + submit took {legit_time:?}",
        vm0 / MIB,
        vm1 / MIB,
        dvm / MIB,
        rss0 / MIB,
        rss1 / MIB,
        drss / MIB
    );
    legit_result.expect("a legitimate client logs in and submits during the attack");
    assert!(dvm < 128 * MIB, "address space grew by {} MiB", dvm / MIB);
    assert!(
        drss < 128 * MIB,
        "resident memory grew by {} MiB",
        drss / MIB
    );
    rt.shutdown_timeout(Duration::from_secs(1));
    server.stop();
}

/// Item 1: a connection that never authenticates is closed after `limits.unauthenticated_timeout_ms`; above
/// `limits.max_unauthenticated_connections` new connections are refused; an authenticated one gives its slot
/// back; a big frame is read past its first bytes only once its token checked out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_connections_are_capped_deadlined_and_held_to_small_frames() {
    let mut config = sim_config();
    config.limits.max_unauthenticated_connections = 2;
    config.limits.unauthenticated_timeout_ms = 3000;
    config.limits.max_unauthenticated_frame_bytes = 4096;
    let r = serve_remote(&TestEngine::sqlite(), config).await;
    r.rt.service()
        .add_user("alice", "password123", false)
        .await
        .unwrap();
    let a = r.client().await;
    let b = r.client().await;
    // A big frame whose token is not in its first bytes, and one with a garbage token: refused early.
    for (frame, expected) in [
        (garbage_submit(false), "FRAME_TOO_LARGE"),
        (garbage_submit(true), "UNAUTHENTICATED"),
    ] {
        let (mut send, mut recv) = b.connection().open_bi().await.unwrap();
        let writer = tokio::spawn(async move {
            let _ = send.write_all(&frame).await;
        });
        let buf = tokio::time::timeout(Duration::from_secs(10), recv.read_to_end(1 << 20))
            .await
            .unwrap()
            .unwrap();
        let body: Response = decode_body(&buf[4..]).unwrap();
        match body {
            Response::Error { error } => {
                assert_eq!(error.code, expected, "{}", error.message);
                if expected == "FRAME_TOO_LARGE" {
                    assert!(
                        error.message.contains("max_unauthenticated_frame_bytes"),
                        "{}",
                        error.message
                    );
                }
            }
            other => panic!("{other:?}"),
        }
        // The server stopped reading: the rest of the 7.8 MB is refused, not buffered.
        let written = tokio::time::timeout(Duration::from_secs(10), writer).await;
        assert!(written.is_ok(), "the server kept reading");
    }
    // A third unauthenticated connection is refused.
    match tokio::time::timeout(Duration::from_secs(5), Client::connect(&r.addr, &r.trust())).await {
        Ok(Err(ClientError::Connect { reason, .. })) => {
            assert!(reason.to_lowercase().contains("refuse"), "{reason}")
        }
        other => panic!(
            "expected a refused connection, got {:?}",
            other.map(|r| r.is_ok())
        ),
    }
    // Logging in authenticates `a` and frees its slot.
    let token = a.login("alice", "password123").await.unwrap().token;
    let c = r.client().await;
    // A big submit on a fresh connection (token first, as the client library writes it) is served.
    let experiments: serde_json::Map<String, serde_json::Value> = (0..100)
        .map(|i| {
            (
                format!("experiment_{i}"),
                experiment(json!([["measure", [0], []]]), 1, None),
            )
        })
        .collect();
    let job = value(serde_json::Value::Object(experiments));
    let size = shotline::protocol::wire::encode_frame(&job, usize::MAX)
        .unwrap()
        .len();
    assert!(size > 4096, "{size}");
    let s = c
        .submit(&token, "singlequdit", job, SubmitOptions::default())
        .await
        .unwrap();
    assert!(!s.job_id.is_empty());
    // `b` never authenticated: it is closed after the deadline.
    let reason = tokio::time::timeout(Duration::from_secs(10), b.connection().closed())
        .await
        .expect("closed within the deadline");
    assert!(
        reason.to_string().contains("unauthenticated_timeout_ms"),
        "{reason}"
    );
    // The authenticated one stays.
    assert!(a.whoami(&token).await.is_ok());
    r.rt.shutdown().await.unwrap();
}

/// Runs the CLI confined to one CPU: a process that only drops its connection (instead of closing it and
/// waiting until the server was told) then exits before its runtime's driver ever sends the close.
fn on_one_cpu(home: &Path, args: &[&str]) -> (bool, String, String) {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    // SAFETY: only an async-signal-safe system call between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            Ok(())
        });
    }
    run_cli(cmd, home, None)
}

/// Item 5: failed CLI commands close their connection: 16 failures in a row with a connection limit of 1, then
/// a successful submit.
#[test]
fn failed_commands_never_leave_their_connection_counting() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, home) = serve_with(tmp.path(), "limits:\n  max_connections_per_user: 1\n");
    let bad = tmp.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"experiment_0": {"instructions": [["rlx", [0], [9.0]]], "num_wires": 1, "shots": 5}}"#,
    )
    .unwrap();
    let good = tmp.path().join("good.json");
    std::fs::write(
        &good,
        r#"{"experiment_0": {"instructions": [["measure", [0], []]], "num_wires": 1, "shots": 2}}"#,
    )
    .unwrap();
    let submit = |file: &Path| {
        on_one_cpu(
            &home,
            &[
                "submit",
                file.to_str().unwrap(),
                "--backend",
                "singlequdit",
                "--server",
                &server.addr,
            ],
        )
    };
    for i in 0..8 {
        let (ok, _, err) = submit(&bad);
        assert!(!ok);
        assert!(
            err.contains("VALIDATION_FAILED") || err.contains("params[0]"),
            "failed submit {i}: {err}"
        );
        let (ok, _, err) = on_one_cpu(&home, &["status", "no-such-job", "--server", &server.addr]);
        assert!(!ok && err.contains("NOT_FOUND"), "failed status {i}: {err}");
    }
    let (ok, out, err) = submit(&good);
    assert!(ok, "the submit after the failures: {out} {err}");
    server.stop();
}

/// Item 5: a client killed with an open connection (a `watch`) stops counting within 10 s.
#[test]
fn a_killed_clients_connection_stops_counting_within_10_s() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, home) = serve_with(tmp.path(), "limits:\n  max_connections_per_user: 1\n");
    let long = tmp.path().join("long.json");
    std::fs::write(
        &long,
        r#"{"experiment_0": {"instructions": [["measure", [0], []]], "num_wires": 1, "shots": 1000000}}"#,
    )
    .unwrap();
    let (ok, out, err) = submit_file(&home, &long, &server.addr);
    assert!(ok, "{err}");
    let job_id = out.trim().to_string();
    let mut watcher = Command::new(BIN)
        .args(["watch", &job_id, "--server", &server.addr])
        .env("SHOTLINE_HOME", &home)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first pushed status proves the watch (and its connection) is bound to alice.
    let mut line = String::new();
    BufReader::new(watcher.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains(&job_id), "{line}");
    let status = |home: &Path| shotline(home, &["status", &job_id, "--server", &server.addr], None);
    let (ok, _, err) = status(&home);
    assert!(!ok && err.contains("LIMIT_EXCEEDED"), "{err}");
    watcher.kill().unwrap();
    let _ = watcher.wait();
    let killed = Instant::now();
    loop {
        let (ok, _, err) = status(&home);
        if ok {
            break;
        }
        assert!(err.contains("LIMIT_EXCEEDED"), "{err}");
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "the killed client's connection still counts after {:?}",
            killed.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("released {:?} after the kill", killed.elapsed());
    let (ok, _, err) = shotline(&home, &["cancel", &job_id, "--server", &server.addr], None);
    assert!(ok, "{err}");
    server.stop();
}

/// Item 9: over-long user names and passwords are refused before anything is stored, with the limit named;
/// the limiter's tables stay bounded; `register` is limited per address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_names_are_bounded_and_register_is_rate_limited() {
    let mut config = sim_config();
    config.auth.allow_registration = true;
    config.auth.registrations_per_address = 2;
    config.auth.login_attempts_per_address = 100_000;
    let r = serve_remote(&TestEngine::sqlite(), config).await;
    let c = r.client().await;
    // 4 MiB names do not fit in a login frame without a token; 60 KiB ones get a clear error.
    let long = "n".repeat(60_000);
    let e = c.login(&long, "password123").await;
    match e {
        Err(ClientError::Server(b)) => {
            assert_eq!(b.code, "INVALID_ARGUMENT");
            assert!(b.message.contains("limit of 64 bytes"), "{}", b.message);
            assert!(b.message.len() < 200, "the name is echoed back");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        code(c.login("alice", &"p".repeat(5000)).await),
        "INVALID_ARGUMENT"
    );
    // Registration: 2 per address per hour, then RATE_LIMITED naming the key; failures count too.
    assert_eq!(c.register("eve", "password123").await.unwrap(), "eve");
    assert_eq!(code(c.register("eve", "password123").await), "CONFLICT");
    match c.register("mallory", "password123").await {
        Err(ClientError::Server(b)) => {
            assert_eq!(b.code, "RATE_LIMITED");
            assert!(
                b.message.contains("auth.registrations_per_address"),
                "{}",
                b.message
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(r.rt.service().user("mallory").await.is_err());
    r.rt.shutdown().await.unwrap();
}

/// Item 18: a shot watcher that reads nothing, on a job of many shots, makes nobody else fall behind: a watcher
/// of the event bus that is only read after the job sees every status without `Lagged`; the slow shot watcher
/// misses shots, counted for it alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_shot_watcher_does_not_make_other_watchers_lag() {
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(&TestEngine::sqlite(), dir.path(), sim_config()).await;
    let mut bus = rt.ctx().subscribe();
    let s = rt
        .submit(
            "singlequdit",
            &job1(json!([["measure", [0], []]]), 9000, None),
            SubmitOptions::default(),
        )
        .await
        .unwrap();
    let mut slow = rt.ctx().watch_shots(&s.job_id);
    let end = rt.wait(&s.job_id, Duration::from_secs(120)).await.unwrap();
    assert_eq!(end.status, JobStatus::Done);
    // `wait` reads the store; the terminal event is published right after that commit, so read the bus until
    // it comes (bounded), failing on any lag.
    let mut statuses = Vec::new();
    let mut events = 0;
    while statuses.last() != Some(&JobStatus::Done) {
        match tokio::time::timeout(Duration::from_secs(10), bus.recv()).await {
            Ok(Ok(JobEvent::Status { status })) if status.job_id == s.job_id => {
                statuses.push(status.status)
            }
            Ok(Ok(_)) => events += 1,
            Ok(Err(e)) => panic!("the bus watcher fell behind: {e:?} after {events} events"),
            Err(_) => panic!("no DONE event within 10 s of DONE in the store: {statuses:?}"),
        }
    }
    assert_eq!(
        statuses,
        vec![JobStatus::Queued, JobStatus::Running, JobStatus::Done],
        "{statuses:?}"
    );
    let mut got = 0;
    while slow.try_recv().is_some() {
        got += 1;
    }
    assert!(got > 0 && got <= shotline_actors::context::SHOT_WATCH_CAPACITY);
    assert!(slow.dropped() > 0, "{got} received, none dropped");
    assert!(got as u64 + slow.dropped() <= 9000);
    rt.shutdown().await.unwrap();
}
