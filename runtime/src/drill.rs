//! The crash drill: runs the real `shotline` binary under load, kills it with SIGKILL at random points,
//! restarts it, and checks the promises of `docs/operations.md`: no acknowledged job lost, none duplicated,
//! none stuck, exactly one result per finished job, execution ids never reused. A short version runs in
//! the test suite; `cargo run --release -p shotline-benches --bin crash_trials` runs many trials.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use shotline_client::{Client, ClientError, JobsQuery, SubmitOptions, Trust};
use shotline_protocol::{JobStatus, Value};

/// One trial's parameters.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// The `shotline` binary.
    pub binary: PathBuf,
    /// A fresh directory for the trial (data dir, config, client state).
    pub dir: PathBuf,
    /// How many times the server is killed.
    pub kills: u32,
    /// Jobs submitted per run of the server.
    pub jobs_per_run: u32,
    /// Seed of the kill times and job sizes.
    pub seed: u64,
    /// Longest time a run lives before it is killed.
    pub max_run: Duration,
    /// YAML appended to the trial's config to choose its store: empty for SQLite in the trial's data dir,
    /// `store: { postgres: "URL" }` for PostgreSQL. Trials may share one PostgreSQL database: each trial
    /// then submits as a user of its own (`drill-<seed>-<nanos>`), so its counts see only its own jobs.
    pub store: String,
}

/// What a trial found (every count but `acknowledged` and `done` must be 0).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DrillReport {
    /// Kills performed.
    pub kills: u32,
    /// Jobs acknowledged by the server.
    pub acknowledged: u64,
    /// Acknowledged jobs the server no longer knows.
    pub lost: u64,
    /// Idempotency keys that produced more than one job.
    pub duplicated: u64,
    /// Jobs not terminal at the end.
    pub stuck: u64,
    /// Jobs DONE.
    pub done: u64,
    /// DONE jobs whose result is missing or has the wrong number of shots.
    pub bad_results: u64,
    /// Execution ids that appear in more than one result.
    pub reused_execution_ids: u64,
}

impl DrillReport {
    /// Whether every promise held.
    pub fn ok(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.stuck == 0
            && self.bad_results == 0
            && self.reused_execution_ids == 0
    }
}

/// Why a drill could not run (not a broken promise: those are in the report).
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// I/O.
    #[error("drill: {0}")]
    Io(#[from] std::io::Error),
    /// The server did not come up.
    #[error("drill: the server did not start: {0}")]
    Start(String),
    /// The client failed where it should not.
    #[error("drill: {0}")]
    Client(#[from] ClientError),
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A `shotline serve` child process.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: String,
}

/// Starts `binary serve --config CONFIG --listen 127.0.0.1:0` and waits for its ready line.
pub(crate) fn spawn_server(binary: &Path, config: &Path) -> Result<Server, DrillError> {
    let mut child = Command::new(binary)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| DrillError::Start("no stderr".into()))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("shotline ready: listening on ") {
                let _ = tx.send(addr.to_string());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(addr) => Ok(Server { child, addr }),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(DrillError::Start("no ready line within 30 s".into()))
        }
    }
}

fn job(shots: u64) -> Value {
    let v = serde_json::json!({"experiment_0": {
        "instructions": [["load", [0], [3]], ["rlx", [0], [1.0]], ["measure", [0], []]],
        "num_wires": 1, "shots": shots, "wire_order": "sequential", "seed": 11
    }});
    serde_json::from_value(v).unwrap_or(Value::Nil)
}

fn shots_of(key: &str) -> u64 {
    // Deterministic per key: 20..=420 shots (~5..100 ms of shots each).
    let n: u64 = key.bytes().map(u64::from).sum();
    20 + (n * 37) % 401
}

/// Writes `sim.yaml` with its data dir inside `dir` plus `extra` YAML; returns (config path, data dir).
pub(crate) fn write_config(dir: &Path, extra: &str) -> Result<(PathBuf, PathBuf), DrillError> {
    shotline_tls::private_fs::create_private_dir(dir)?;
    let data = dir.join("data");
    let config = dir.join("shotline.yaml");
    let mut yaml = shotline_config::SIM_YAML.replacen(
        "data_dir: ../data",
        &format!("data_dir: {}", data.display()),
        1,
    );
    yaml.push_str(extra);
    std::fs::write(&config, yaml)?;
    Ok((config, data))
}

/// Adds a user with the binary (no server running: straight into the store).
pub(crate) fn add_user(
    binary: &Path,
    data: &Path,
    name: &str,
    password: &str,
) -> Result<(), DrillError> {
    add_user_with(binary, "--data-dir", data, name, password)
}

/// Adds a user with the binary to the store `config` selects (no server running: straight into the store).
pub(crate) fn add_user_by_config(
    binary: &Path,
    config: &Path,
    name: &str,
    password: &str,
) -> Result<(), DrillError> {
    add_user_with(binary, "--config", config, name, password)
}

fn add_user_with(
    binary: &Path,
    option: &str,
    place: &Path,
    name: &str,
    password: &str,
) -> Result<(), DrillError> {
    let mut add = Command::new(binary)
        .args(["user", "add", name, "--password-stdin", option])
        .arg(place)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    if let Some(mut stdin) = add.stdin.take() {
        stdin.write_all(format!("{password}\n").as_bytes())?;
    }
    if !add.wait()?.success() {
        return Err(DrillError::Start(format!("user add {name} failed")));
    }
    Ok(())
}

/// Runs one trial.
pub async fn run(opts: &DrillOptions) -> Result<DrillReport, DrillError> {
    let (config, data) = write_config(&opts.dir, &opts.store)?;
    let user = if opts.store.trim().is_empty() {
        add_user(&opts.binary, &data, "drill", "drill-password")?;
        "drill".to_owned()
    } else {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let user = format!("drill-{}-{nanos}", opts.seed);
        add_user_by_config(&opts.binary, &config, &user, "drill-password")?;
        user
    };
    let trust = Trust::Pin {
        pins_file: opts.dir.join("pins.json"),
    };
    let mut rng = Rng(opts.seed);
    let mut report = DrillReport::default();
    let mut acked: BTreeMap<String, String> = BTreeMap::new();
    let mut duplicated: BTreeSet<String> = BTreeSet::new();
    let mut next_key = 0u64;
    for _ in 0..=opts.kills {
        let mut server = spawn_server(&opts.binary, &config)?;
        let born = Instant::now();
        let lifetime = Duration::from_millis(50 + rng.below(opts.max_run.as_millis() as u64));
        let client = Client::connect(&server.addr, &trust).await?;
        let _ = client.accept_first_use();
        let token = client.login(&user, "drill-password").await?.token;
        // Submit new jobs (and retry unacknowledged ones) until the kill time.
        let mut keys: Vec<String> = (0..opts.jobs_per_run)
            .map(|i| format!("job-{}", next_key + u64::from(i)))
            .collect();
        next_key += u64::from(opts.jobs_per_run);
        keys.extend(
            (0..next_key)
                .map(|i| format!("job-{i}"))
                .filter(|k| !acked.contains_key(k)),
        );
        keys.sort();
        keys.dedup();
        for key in keys {
            // The last run submits everything still unacknowledged, however long it takes.
            if born.elapsed() >= lifetime && report.kills < opts.kills {
                break;
            }
            let options = SubmitOptions {
                idempotency_key: Some(key.clone()),
                ..Default::default()
            };
            let submitted = tokio::time::timeout(
                Duration::from_secs(5),
                client.submit(&token, "singlequdit", job(shots_of(&key)), options),
            )
            .await;
            if let Ok(Ok(s)) = submitted {
                if let Some(previous) = acked.insert(key.clone(), s.job_id.clone()) {
                    if previous != s.job_id {
                        duplicated.insert(key);
                    }
                }
            }
        }
        if let Some(rest) = lifetime.checked_sub(born.elapsed()) {
            tokio::time::sleep(rest).await;
        }
        if report.kills < opts.kills {
            // SIGKILL: no cleanup of any kind runs.
            let _ = server.child.kill();
            let _ = server.child.wait();
            report.kills += 1;
        } else {
            // The last run: every acknowledged job must end, each exactly once.
            let end = check(&client, &token, &acked, &mut report).await;
            let _ = server.child.kill();
            let _ = server.child.wait();
            end?;
        }
    }
    report.acknowledged = acked.len() as u64;
    report.duplicated = duplicated.len() as u64;
    Ok(report)
}

async fn check(
    client: &Client,
    token: &str,
    acked: &BTreeMap<String, String>,
    report: &mut DrillReport,
) -> Result<(), DrillError> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut executions: BTreeMap<String, u32> = BTreeMap::new();
    for (key, job_id) in acked {
        let status = loop {
            match client.status(token, job_id).await {
                Ok(s) if s.status.is_terminal() => break Some(s),
                Ok(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Ok(_) => break None,
                Err(ClientError::Server(e)) if e.code == "NOT_FOUND" => {
                    report.lost += 1;
                    break Some(shotline_protocol::StatusRecord {
                        job_id: job_id.clone(),
                        status: JobStatus::Error,
                        detail: "lost".into(),
                        error_message: String::new(),
                    });
                }
                Err(e) => return Err(e.into()),
            }
        };
        let Some(status) = status else {
            report.stuck += 1;
            continue;
        };
        if status.status == JobStatus::Done {
            report.done += 1;
            match client.result(token, job_id).await {
                Ok(r)
                    if r.results.len() == 1
                        && r.results[0].data.memory.len() as u64 == shots_of(key) =>
                {
                    if let Some(x) = r.execution_id {
                        *executions.entry(x).or_insert(0) += 1;
                    }
                }
                _ => report.bad_results += 1,
            }
        }
    }
    report.reused_execution_ids = executions.values().filter(|n| **n > 1).count() as u64;
    // No job exists beyond the acknowledged ones (a retried submit never made a second job).
    let mut all = 0u64;
    let mut after = None;
    loop {
        let (page, next) = client
            .jobs(
                token,
                JobsQuery {
                    limit: Some(500),
                    after,
                    ..Default::default()
                },
            )
            .await?;
        all += page.len() as u64;
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    report.duplicated += all.saturating_sub(acked.len() as u64);
    Ok(())
}
