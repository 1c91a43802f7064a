//! The soak / load tool: N concurrent clients for T seconds against the real binary, each submitting
//! small jobs, watching them to the end and cancelling some. Reports errors (limit rejections counted
//! apart), latencies and the server's memory over time (`cargo run --release -p shotline-benches --bin
//! soak -- --clients 100 --seconds 60 --json`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use shotline_client::{Client, ClientError, SubmitOptions, Trust};
use shotline_protocol::{JobStatus, Value};

use crate::drill::{add_user, add_user_by_config, spawn_server, write_config, DrillError};

/// Soak parameters.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// The `shotline` binary.
    pub binary: PathBuf,
    /// A fresh directory.
    pub dir: PathBuf,
    /// Concurrent clients (each its own user and connection).
    pub clients: u32,
    /// How long.
    pub duration: Duration,
    /// YAML appended to the config to choose the store: empty for SQLite in the data dir,
    /// `store: { postgres: "URL" }` for PostgreSQL (an empty database: the users `soak0`.. are added to it).
    pub store: String,
}

/// What the soak saw.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SoakReport {
    /// Clients.
    pub clients: u32,
    /// Seconds of load.
    pub seconds: f64,
    /// Jobs submitted and acknowledged.
    pub submitted: u64,
    /// Jobs watched to DONE.
    pub done: u64,
    /// Jobs cancelled (queued or running).
    pub cancelled: u64,
    /// Failures other than limit rejections (must be 0).
    pub errors: u64,
    /// The first few error messages.
    pub error_samples: Vec<String>,
    /// Rejections by a configured limit (LIMIT_EXCEEDED, RATE_LIMITED): expected under load.
    pub limit_rejections: u64,
    /// Status request latency p50 / p99 (µs).
    pub status_p50_us: u64,
    /// Status request latency p99 (µs).
    pub status_p99_us: u64,
    /// Submit → DONE p50 (ms).
    pub job_p50_ms: u64,
    /// Submit → DONE p99 (ms).
    pub job_p99_ms: u64,
    /// Server resident memory after warm-up (kB).
    pub rss_start_kb: u64,
    /// Server resident memory at the end (kB).
    pub rss_end_kb: u64,
    /// Largest resident memory seen (kB).
    pub rss_max_kb: u64,
}

#[derive(Default)]
struct Tally {
    submitted: u64,
    done: u64,
    cancelled: u64,
    errors: u64,
    samples: Vec<String>,
    limits: u64,
    status_us: Vec<u64>,
    job_ms: Vec<u64>,
}

impl Tally {
    fn fail(&mut self, e: ClientError) {
        match e.code() {
            Some("LIMIT_EXCEEDED" | "RATE_LIMITED") => self.limits += 1,
            _ => {
                self.errors += 1;
                if self.samples.len() < 5 {
                    self.samples.push(e.to_string());
                }
            }
        }
    }
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn percentile(v: &mut [u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i.min(v.len() - 1)]
}

fn small_job(i: u64) -> Value {
    let v = serde_json::json!({"experiment_0": {
        "instructions": [["load", [0], [4]], ["rlx", [0], [0.5 + (i % 5) as f64 * 0.3]], ["measure", [0], []]],
        "num_wires": 1, "shots": 10, "wire_order": "sequential"
    }});
    serde_json::from_value(v).unwrap_or(Value::Nil)
}

async fn client_loop(
    addr: String,
    trust: Trust,
    user: String,
    ready: Arc<tokio::sync::Barrier>,
    duration: Duration,
) -> Tally {
    let mut t = Tally::default();
    let session = async {
        let client = Client::connect(&addr, &trust).await?;
        let token = client.login(&user, "soak-password").await?.token;
        Ok::<_, ClientError>((client, token))
    }
    .await;
    // Every client is logged in before the load starts (argon2 logins are not what is measured).
    ready.wait().await;
    let (client, token) = match session {
        Ok(s) => s,
        Err(e) => {
            t.fail(e);
            return t;
        }
    };
    let until = Instant::now() + duration;
    let mut i = 0u64;
    while Instant::now() < until {
        i += 1;
        let started = Instant::now();
        let sub = match client
            .submit(
                &token,
                "singlequdit",
                small_job(i),
                SubmitOptions::default(),
            )
            .await
        {
            Ok(s) => s,
            Err(e) => {
                t.fail(e);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        t.submitted += 1;
        // The first job of every client and every fifth after it: each client cancels, however few jobs a
        // loaded machine lets it submit.
        if i % 5 == 1 {
            match client.cancel(&token, &sub.job_id).await {
                Ok(_) => t.cancelled += 1,
                // It may have finished already: not an error.
                Err(ClientError::Server(e)) if e.code == "ALREADY_FINISHED" => {}
                Err(e) => t.fail(e),
            }
        }
        let s0 = Instant::now();
        match client.status(&token, &sub.job_id).await {
            Ok(_) => t.status_us.push(s0.elapsed().as_micros() as u64),
            Err(e) => t.fail(e),
        }
        match client.watch(&token, &sub.job_id, false, |_| {}).await {
            Ok(s) if s.status == JobStatus::Done => {
                t.done += 1;
                t.job_ms.push(started.elapsed().as_millis() as u64);
            }
            Ok(s) if s.status == JobStatus::Cancelled => {}
            Ok(s) => {
                t.errors += 1;
                if t.samples.len() < 5 {
                    t.samples.push(format!(
                        "job {} ended {}: {}",
                        s.job_id, s.status, s.error_message
                    ));
                }
            }
            Err(e) => t.fail(e),
        }
    }
    client.close().await;
    t
}

/// Runs the soak.
pub async fn run(opts: &SoakOptions) -> Result<SoakReport, DrillError> {
    let extra = format!(
        "auth:\n  login_attempts_per_address: 100000\nlimits:\n  max_connections_per_user: 4\n  max_queued_jobs_per_user: 1000\n  max_streams_per_connection: 64\n# soak: {} clients\n",
        opts.clients
    );
    let (config, data) = write_config(&opts.dir, &format!("{extra}{}", opts.store))?;
    let users: Vec<String> = (0..opts.clients).map(|i| format!("soak{i}")).collect();
    for u in &users {
        if opts.store.trim().is_empty() {
            add_user(&opts.binary, &data, u, "soak-password")?;
        } else {
            add_user_by_config(&opts.binary, &config, u, "soak-password")?;
        }
    }
    let mut server = spawn_server(&opts.binary, &config)?;
    let pid = server.child.id();
    let trust = Trust::Pin {
        pins_file: opts.dir.join("pins.json"),
    };
    let ready = Arc::new(tokio::sync::Barrier::new(opts.clients as usize + 1));
    let mut tasks = tokio::task::JoinSet::new();
    for u in users {
        tasks.spawn(client_loop(
            server.addr.clone(),
            trust.clone(),
            u,
            ready.clone(),
            opts.duration,
        ));
    }
    ready.wait().await;
    let started = Instant::now();
    let until = started + opts.duration;
    // Memory: after a short warm-up, then every second.
    let rss = Arc::new(parking_lot::Mutex::new((0u64, 0u64, 0u64)));
    let sampler = {
        let rss = rss.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2).min(opts_half(until))).await;
            let first = rss_kb(pid);
            *rss.lock() = (first, first, first);
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = rss_kb(pid);
                let mut r = rss.lock();
                r.1 = now;
                r.2 = r.2.max(now);
            }
        })
    };
    let mut total = Tally::default();
    while let Some(t) = tasks.join_next().await {
        let Ok(t) = t else {
            total.errors += 1;
            continue;
        };
        total.submitted += t.submitted;
        total.done += t.done;
        total.cancelled += t.cancelled;
        total.errors += t.errors;
        total.limits += t.limits;
        total.status_us.extend(t.status_us);
        total.job_ms.extend(t.job_ms);
        for s in t.samples {
            if total.samples.len() < 5 {
                total.samples.push(s);
            }
        }
    }
    sampler.abort();
    let (rss_start, rss_end, rss_max) = *rss.lock();
    let _ = server.child.kill();
    let _ = server.child.wait();
    Ok(SoakReport {
        clients: opts.clients,
        seconds: started.elapsed().as_secs_f64(),
        submitted: total.submitted,
        done: total.done,
        cancelled: total.cancelled,
        errors: total.errors,
        error_samples: total.samples,
        limit_rejections: total.limits,
        status_p50_us: percentile(&mut total.status_us, 0.5),
        status_p99_us: percentile(&mut total.status_us, 0.99),
        job_p50_ms: percentile(&mut total.job_ms, 0.5),
        job_p99_ms: percentile(&mut total.job_ms, 0.99),
        rss_start_kb: rss_start,
        rss_end_kb: rss_end,
        rss_max_kb: rss_max,
    })
}

fn opts_half(until: Instant) -> Duration {
    until.saturating_duration_since(Instant::now()) / 2
}
