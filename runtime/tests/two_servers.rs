//! Two real `shotline serve` processes sharing one PostgreSQL database (a throw-away one per test:
//! `shotline_store::testing`), both serving `singlequdit`: the per-user limit, exactly-once execution,
//! unique execution ids and the backend lease hold across processes, and a server killed mid-job is taken
//! over by the other once its lease expired. Its own small helpers (no shared test module).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use shotline::protocol::JobStatus;
use shotline_actors::time::{utc_in_ms, utc_now};
use shotline_client::{Client, SubmitOptions, Trust};
use shotline_store::testing::TestDatabase;
use shotline_store::{Engine, ExecutionRecord, StoreSelection};

const BIN: &str = env!("CARGO_BIN_EXE_shotline");
const PASSWORD: &str = "correct horse battery";
/// A short lease, so a takeover happens within seconds.
const LEASE_MS: u64 = 1500;

/// `configs/sim.yaml` on `db` with a short lease and `max_queued` jobs per user.
fn write_config(dir: &Path, db: &TestDatabase, max_queued: u32) -> PathBuf {
    write_config_with_lease(dir, db, max_queued, LEASE_MS)
}

fn write_config_with_lease(
    dir: &Path,
    db: &TestDatabase,
    max_queued: u32,
    lease_ms: u64,
) -> PathBuf {
    let text = format!(
        "{}\nstore: {{ postgres: \"{}\" }}\nlimits: {{ max_queued_jobs_per_user: {max_queued} }}\n\
         recovery: {{ lock_lease_ms: {lease_ms} }}\n",
        shotline_config::SIM_YAML.replacen(
            "data_dir: ../data",
            &format!("data_dir: {}", dir.join("cli").display()),
            1
        ),
        db.url()
    );
    let path = dir.join("pg.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn add_user(config: &Path, name: &str) {
    let mut child = Command::new(BIN)
        .args(["user", "add", name, "--password-stdin", "--config"])
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One `shotline serve` (killed when dropped).
struct Server {
    child: Child,
    addr: String,
    pins: tempfile::TempDir,
}

impl Server {
    fn start(config: &Path, data: &Path) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .arg("--data-dir")
            .arg(data)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("shotline ready: listening on ") {
                    let _ = tx.send(addr.to_string());
                }
                if std::env::var_os("SHOTLINE_TEST_LOG").is_some() {
                    eprintln!("[serve] {line}");
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("serve became ready");
        Server {
            child,
            addr,
            pins: tempfile::tempdir().unwrap(),
        }
    }

    async fn client(&self) -> (Client, String) {
        let trust = Trust::Pin {
            pins_file: self.pins.path().join("pins.json"),
        };
        let c = Client::connect(&self.addr, &trust).await.unwrap();
        let token = c.login("alice", PASSWORD).await.unwrap().token;
        (c, token)
    }

    fn sigkill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn job(shots: u32) -> shotline::protocol::Value {
    serde_json::from_value(json!({ "experiment_0": {
        "instructions": [["load", [0], [50]], ["rlx", [0], [0.5]], ["measure", [0], []]],
        "num_wires": 1, "shots": shots, "wire_order": "sequential",
    }}))
    .unwrap()
}

async fn engine(db: &TestDatabase) -> Arc<dyn Engine> {
    shotline_store::open(&StoreSelection::Postgres {
        url: db.url().to_owned(),
        allow_synchronous_commit_off: false,
    })
    .await
    .unwrap()
}

/// Waits until every job in `ids` is DONE (panics after `limit`).
async fn wait_done(engine: &Arc<dyn Engine>, ids: &[String], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let mut pending = Vec::new();
        for id in ids {
            let j = engine.job(id).await.unwrap().unwrap();
            if j.job_status() != Some(JobStatus::Done) {
                pending.push(format!("{id}: {} {:?}", j.status, j.detail));
            }
        }
        if pending.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "jobs not DONE: {pending:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every job has exactly one DONE execution and one result; all executions (of every job) have distinct
/// ids and, as the backend lease allows one holder at a time, non-overlapping [start, end] spans.
async fn check_exactly_once(engine: &Arc<dyn Engine>, ids: &[String]) -> Vec<ExecutionRecord> {
    let mut all = Vec::new();
    for id in ids {
        let ex = engine.executions_for_job(id).await.unwrap();
        let done = ex
            .iter()
            .filter(|e| e.outcome.as_deref() == Some("DONE"))
            .count();
        assert_eq!(done, 1, "job {id}: {ex:?}");
        assert!(engine.result(id).await.unwrap().is_some(), "job {id}");
        all.extend(ex);
    }
    let mut seen = std::collections::BTreeSet::new();
    for e in &all {
        assert!(seen.insert(e.id.clone()), "execution id {} twice", e.id);
    }
    let mut spans: Vec<(&str, &str, &str)> = all
        .iter()
        .map(|e| {
            (
                e.started_at.as_str(),
                e.ended_at.as_deref().expect("closed"),
                e.id.as_str(),
            )
        })
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(
            w[1].0 >= w[0].1,
            "executions {} and {} overlap: {:?} {:?}",
            w[0].2,
            w[1].2,
            w[0],
            w[1]
        );
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_the_limit_run_each_job_once_and_take_over_a_killed_one() {
    const LIMIT: u32 = 4;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::new();
    let config = write_config(dir.path(), &db, LIMIT);
    add_user(&config, "alice");
    let a = Server::start(&config, &dir.path().join("a"));
    let b = Server::start(&config, &dir.path().join("b"));
    let store = engine(&db).await;

    // Concurrent submits of one user to both servers: 4 submitters per server, 6 jobs each, while a watcher
    // samples the user's QUEUED + RUNNING jobs (one query, one snapshot) every few milliseconds.
    let user = store.user_by_name("alice").await.unwrap().unwrap().id;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut max, mut samples) = (0, 0u32);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                max = max.max(store.count_active_jobs_of_user(user).await.unwrap());
                samples += 1;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            (max, samples)
        })
    };
    let mut tasks = Vec::new();
    for server in [&a, &b] {
        for _ in 0..4 {
            let (c, token) = server.client().await;
            tasks.push(tokio::spawn(async move {
                let (mut admitted, mut refused) = (Vec::new(), 0u32);
                for _ in 0..6 {
                    match c
                        .submit(&token, "singlequdit", job(100), SubmitOptions::default())
                        .await
                    {
                        Ok(s) => admitted.push(s.job_id),
                        Err(shotline_client::ClientError::Server(e)) => {
                            assert!(e.message.contains("max_queued_jobs_per_user"), "{e:?}");
                            refused += 1;
                        }
                        Err(e) => panic!("submit: {e}"),
                    }
                }
                (admitted, refused)
            }));
        }
    }
    let (mut admitted, mut refused) = (Vec::new(), 0);
    for t in tasks {
        let (ids, r) = t.await.unwrap();
        admitted.extend(ids);
        refused += r;
    }
    assert_eq!(admitted.len() as u32 + refused, 48);
    assert!(refused > 0, "the limit was never reached");
    assert!(admitted.len() >= LIMIT as usize, "{admitted:?}");
    wait_done(&store, &admitted, Duration::from_secs(120)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (max_active, samples) = watcher.await.unwrap();
    println!(
        "admitted {}, refused {refused}, max active {max_active} in {samples} samples",
        admitted.len()
    );
    assert!(max_active <= u64::from(LIMIT), "{max_active} > {LIMIT}");
    assert!(max_active > 0);
    check_exactly_once(&store, &admitted).await;

    // A long job on A, two short ones queued behind it on A; SIGKILL A mid-job: once A's lease expired, B
    // settles the long job (re-queued) and runs all three; nothing is lost or run twice.
    let (c, token) = a.client().await;
    let long = c
        .submit(&token, "singlequdit", job(20_000), SubmitOptions::default())
        .await
        .unwrap()
        .job_id;
    let mut queued = Vec::new();
    for _ in 0..2 {
        queued.push(
            c.submit(&token, "singlequdit", job(100), SubmitOptions::default())
                .await
                .unwrap()
                .job_id,
        );
    }
    // Wait for the long job to run, then kill the server holding the backend lease (A, unless B's sweep
    // picked the job up first: the lease's owner names the process).
    let deadline = Instant::now() + Duration::from_secs(30);
    let holder_pid = loop {
        let running =
            store.job(&long).await.unwrap().unwrap().job_status() == Some(JobStatus::Running);
        let lease = store
            .locks()
            .await
            .unwrap()
            .into_iter()
            .find(|l| l.resource == "backend:singlequdit");
        if let (true, Some(l)) = (running, lease) {
            if l.owner.ends_with(
                store.executions_for_job(&long).await.unwrap()[0]
                    .id
                    .as_str(),
            ) {
                // `<server>:<pid>-<random>/<execution id>`
                let pid = l
                    .owner
                    .split(':')
                    .nth(1)
                    .unwrap()
                    .split('-')
                    .next()
                    .unwrap();
                break pid.parse::<u32>().unwrap();
            }
        }
        assert!(Instant::now() < deadline, "the long job did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Kill the holder (A, unless B took the job first: the test is symmetric); the other survives.
    let mut servers = [a, b];
    let victim = servers
        .iter()
        .position(|s| s.child.id() == holder_pid)
        .expect("the lease names one of the two servers");
    servers[victim].sigkill();
    let survivor_pid = servers[1 - victim].child.id();
    let mut all = vec![long.clone()];
    all.extend(queued.clone());
    wait_done(&store, &all, Duration::from_secs(120)).await;
    finish(&store, &long, &queued, &admitted, survivor_pid).await;
}

async fn finish(
    store: &Arc<dyn Engine>,
    long: &str,
    queued: &[String],
    admitted: &[String],
    survivor_pid: u32,
) {
    let ex = store.executions_for_job(long).await.unwrap();
    assert_eq!(ex.len(), 2, "{ex:?}");
    assert_eq!(ex[0].outcome.as_deref(), Some("INTERRUPTED"), "{ex:?}");
    assert!(
        ex[0]
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("lease expired"),
        "{ex:?}"
    );
    assert_eq!(ex[1].outcome.as_deref(), Some("DONE"), "{ex:?}");
    let mut every: Vec<String> = admitted.to_vec();
    every.push(long.to_string());
    every.extend(queued.iter().cloned());
    check_exactly_once(store, &every).await;
    // The survivor holds no stale lease of the dead one.
    for l in store.locks().await.unwrap() {
        assert!(l.owner.contains(&format!(":{survivor_pid}-")), "{l:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_that_loses_its_lease_stops_playing_and_the_next_holder_reruns_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::new();
    let config = write_config(dir.path(), &db, 10);
    add_user(&config, "alice");
    let server = Server::start(&config, &dir.path().join("a"));
    let store = engine(&db).await;
    let (c, token) = server.client().await;
    let id = c
        .submit(&token, "singlequdit", job(40_000), SubmitOptions::default())
        .await
        .unwrap()
        .job_id;
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.job(&id).await.unwrap().unwrap().job_status() != Some(JobStatus::Running) {
        assert!(Instant::now() < deadline, "the job did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Someone else takes the lease (as an operator's force-unlock plus another server would).
    let resource = "backend:singlequdit";
    store.force_release_lock(resource).await.unwrap().unwrap();
    let (now, until) = (utc_now(), utc_in_ms(5000));
    let grant = store
        .acquire_lock(resource, "thief/1", &now, Some(&until))
        .await
        .unwrap();
    assert_eq!(grant, shotline_store::LockGrant::Granted);
    // Within a renewal period (a third of the lease) the execution notices and stops at a shot boundary:
    // its recorded progress stops moving (it is persisted every second while shots are played).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let progress = |ex: Vec<ExecutionRecord>| ex[0].detail.clone().unwrap_or_default();
    let first = progress(store.executions_for_job(&id).await.unwrap());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let ex = store.executions_for_job(&id).await.unwrap();
    assert_eq!(ex.len(), 1, "{ex:?}");
    assert_eq!(ex[0].outcome, None, "left open for the next holder: {ex:?}");
    assert_eq!(progress(ex), first, "it played on without the lease");
    assert!(
        first.starts_with("shot ") && !first.ends_with("40000 of 40000"),
        "{first}"
    );
    // The thief's lease expires; the server's idle sweep takes the lease, settles the job and re-runs it.
    wait_done(&store, std::slice::from_ref(&id), Duration::from_secs(120)).await;
    let ex = store.executions_for_job(&id).await.unwrap();
    assert_eq!(ex.len(), 2, "{ex:?}");
    assert_eq!(ex[0].outcome.as_deref(), Some("INTERRUPTED"), "{ex:?}");
    assert!(
        ex[0].ended_at.as_deref().unwrap() >= until.as_str(),
        "settled before the thief's lease expired: {ex:?}"
    );
    assert_eq!(ex[1].outcome.as_deref(), Some("DONE"), "{ex:?}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restarted_on_its_data_dir_recovers_its_own_job_without_waiting_for_the_lease() {
    // A lease far longer than the test may wait: only recognising its own dead predecessor (same data dir)
    // lets the restarted server settle the job at once.
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::new();
    let config = write_config_with_lease(dir.path(), &db, 10, 600_000);
    add_user(&config, "alice");
    let data = dir.path().join("a");
    let mut server = Server::start(&config, &data);
    let store = engine(&db).await;
    let (c, token) = server.client().await;
    let id = c
        .submit(&token, "singlequdit", job(20_000), SubmitOptions::default())
        .await
        .unwrap()
        .job_id;
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.job(&id).await.unwrap().unwrap().job_status() != Some(JobStatus::Running) {
        assert!(Instant::now() < deadline, "the job did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.sigkill();
    let stale = store.locks().await.unwrap();
    assert_eq!(stale.len(), 1, "the dead server's lease stays: {stale:?}");
    let restarted = Server::start(&config, &data);
    wait_done(&store, std::slice::from_ref(&id), Duration::from_secs(60)).await;
    let ex = store.executions_for_job(&id).await.unwrap();
    assert_eq!(ex.len(), 2, "{ex:?}");
    assert_eq!(ex[0].outcome.as_deref(), Some("INTERRUPTED"), "{ex:?}");
    assert!(
        ex[0]
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("interrupted by restart"),
        "{ex:?}"
    );
    assert_eq!(ex[1].outcome.as_deref(), Some("DONE"), "{ex:?}");
    assert!(store.locks().await.unwrap().is_empty());
    drop(restarted);
}
