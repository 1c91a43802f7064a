//! `gateway`: status requests per second and their latency over QUIC on loopback with 1, 16 and 64
//! concurrent streams on one connection, and durable submissions per second, on each store engine in the
//! same run (rows named with the engine: `status_64_streams_sqlite`, `durable_submit_postgres`, ...).
//!
//! Engines, one after the other: SQLite (the data dir in the temporary directory), then PostgreSQL: a
//! throw-away database (`shotline_store::testing`) on the server `SHOTLINE_BENCH_POSTGRES` (a URL of a role
//! that may create databases) or, when unset, on a private cluster started for the run in the temporary
//! directory, the same filesystem as the SQLite database (so both pay the same fsyncs), with `fsync` and
//! `synchronous_commit` on.
//!
//! Per engine: one in-process runtime on the embedded `sim.yaml` with the gateway on `127.0.0.1:0` (2 tokio workers,
//! shared by the server and the client: both run in this process on the same cores). One admin user logs
//! in over one connection and submits one tiny job; then K tasks (K = 1, 16, 64) send `status` requests for
//! it on that connection, each request a new bidirectional stream, for a fixed window (`--quick`: 2 s, else
//! 5 s). Latency = from just before `Client::status` to its answer. Then 16 tasks submit a 1-shot job
//! (`[["measure",[0],[]]]`) for the same window: each acknowledgement means the job is committed to the
//! store with fsync (group commit), first with the backend running the jobs, then with it paused (the
//! admission and store path alone). The store's group-commit counters (batches, operations) are read
//! before and after each submission phase. Target: ≥ 20 000 status requests/s at 64 streams.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use hdrhistogram::Histogram;
use serde_json::json;
use shotline::Runtime;
use shotline_actors::context::roles;
use shotline_actors::persistence::PersistenceMsg;
use shotline_benches::inproc::{job1, sim_config, tokio_runtime};
use shotline_benches::remote::{to_value, Served};
use shotline_benches::{
    args_or_exit, new_histogram, record, Percentiles, Report, ResultRow, Target,
};
use shotline_client::{Client, SubmitOptions};
use shotline_protocol::{JobStatus, Value};

/// Status requests per second required at 64 concurrent streams.
const TARGET_STATUS_PER_S: f64 = 20_000.0;
/// Concurrent submitters in the durable-submission phases.
const SUBMITTERS: usize = 16;

/// What K concurrent tasks achieved in one window.
struct Phase {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    latency: Histogram<u64>,
    seconds: f64,
}

#[derive(Clone, Copy)]
enum Op {
    Status,
    Submit,
}

/// Runs `op` from `k` tasks on `client` for `window`.
async fn hammer(
    client: &Arc<Client>,
    token: &str,
    job_id: &str,
    job: &Value,
    op: Op,
    k: usize,
    window: Duration,
) -> Result<Phase> {
    let start = Instant::now();
    let until = start + window;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..k {
        let (client, token, job_id, job) = (
            client.clone(),
            token.to_string(),
            job_id.to_string(),
            job.clone(),
        );
        tasks.spawn(async move {
            let mut h = new_histogram();
            let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None);
            while Instant::now() < until {
                let t0 = Instant::now();
                let outcome = match op {
                    Op::Status => client.status(&token, &job_id).await.map(|_| ()),
                    Op::Submit => client
                        .submit(&token, "singlequdit", job.clone(), SubmitOptions::default())
                        .await
                        .map(|_| ()),
                };
                match outcome {
                    Ok(()) => {
                        record(&mut h, t0.elapsed().as_nanos() as u64);
                        ok += 1;
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            (ok, errors, first_error, h)
        });
    }
    let mut phase = Phase {
        ok: 0,
        errors: 0,
        first_error: None,
        latency: new_histogram(),
        seconds: 0.0,
    };
    while let Some(joined) = tasks.join_next().await {
        let (ok, errors, first_error, h) = joined.context("a request task panicked")?;
        phase.ok += ok;
        phase.errors += errors;
        if phase.first_error.is_none() {
            phase.first_error = first_error;
        }
        phase
            .latency
            .add(&h)
            .map_err(|e| anyhow!("merging latency histograms: {e}"))?;
    }
    phase.seconds = start.elapsed().as_secs_f64();
    Ok(phase)
}

impl Phase {
    fn row(&self, name: &str, streams: usize) -> ResultRow {
        let mut row = ResultRow::new(name)
            .rate(self.ok as f64 / self.seconds.max(1e-9))
            .percentiles(&Percentiles::of(&self.latency))
            .field("streams", streams as u64)
            .field("seconds", (self.seconds * 100.0).round() / 100.0)
            .field("errors", self.errors);
        if let Some(e) = &self.first_error {
            row = row.field("first_error", e.as_str());
        }
        row
    }
}

/// `(batches, operations)` committed so far by the store thread, if the persistence actor answers.
async fn commit_stats(rt: &Runtime) -> Option<(u64, u64)> {
    let actor = rt.ctx().lookup::<PersistenceMsg>(roles::PERSISTENCE)?;
    match actor
        .call(PersistenceMsg::Stats, Some(Duration::from_secs(5)))
        .await
    {
        Ok(ractor::rpc::CallResult::Success(stats)) => Some(stats),
        _ => None,
    }
}

/// Adds the group-commit figures of one phase (`before`/`after` counters) to `row`.
fn with_commits(
    row: ResultRow,
    before: Option<(u64, u64)>,
    after: Option<(u64, u64)>,
) -> ResultRow {
    match (before, after) {
        (Some((b0, o0)), Some((b1, o1))) => {
            let (batches, ops) = (b1.saturating_sub(b0), o1.saturating_sub(o0));
            let per_batch = if batches == 0 {
                0.0
            } else {
                (ops as f64 / batches as f64 * 100.0).round() / 100.0
            };
            row.field("commit_batches", batches)
                .field("commit_ops", ops)
                .field("ops_per_batch", per_batch)
        }
        _ => row.field("commit_batches", "unavailable"),
    }
}

/// The store engines measured, in order.
#[derive(Clone, Copy)]
enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

/// A throw-away PostgreSQL database for the run (see the module docs), or why there is none.
fn postgres_database() -> Result<shotline_store::testing::TestDatabase> {
    match std::env::var("SHOTLINE_BENCH_POSTGRES") {
        Ok(url) if !url.is_empty() => std::env::set_var("SHOTLINE_TEST_POSTGRES", url),
        _ => {
            // A private cluster on the filesystem of the SQLite data dir, not on /dev/shm.
            std::env::remove_var("SHOTLINE_TEST_POSTGRES");
            std::env::set_var("SHOTLINE_PG_DIR", std::env::temp_dir());
        }
    }
    std::panic::catch_unwind(shotline_store::testing::TestDatabase::new).map_err(|p| {
        let why = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown reason".into());
        anyhow!("no PostgreSQL database for the postgres rows: {why}")
    })
}

/// Runs every phase on `config` (one engine) and adds its rows, named with `engine`, to `report`.
async fn measure(
    engine: Engine,
    config: shotline_config::Config,
    window: Duration,
    report: &mut Report,
) -> Result<()> {
    let e = engine.name();
    let tiny = to_value(&job1(json!([["measure", [0], []]]), 1, 1))?;
    let served = Served::start(config).await?;
    let (client, token) = served.user("bench", true).await?;
    let client = Arc::new(client);
    let sub = client
        .submit(
            &token,
            "singlequdit",
            tiny.clone(),
            SubmitOptions::default(),
        )
        .await
        .map_err(|e| anyhow!("submitting the job to query: {e}"))?;
    let end = client
        .watch(&token, &sub.job_id, false, |_| {})
        .await
        .map_err(|e| anyhow!("watching {}: {e}", sub.job_id))?;
    if end.status != JobStatus::Done {
        return Err(anyhow!(
            "job {} ended {}: {}",
            sub.job_id,
            end.status,
            end.error_message
        ));
    }
    // Warm-up (connection windows, caches, the tokio workers).
    hammer(
        &client,
        &token,
        &sub.job_id,
        &tiny,
        Op::Status,
        16,
        Duration::from_millis(500),
    )
    .await?;
    for k in [1usize, 16, 64] {
        let phase = hammer(&client, &token, &sub.job_id, &tiny, Op::Status, k, window).await?;
        report.results.push(
            phase
                .row(&format!("status_{k}_streams_{e}"), k)
                .field("engine", e),
        );
    }
    for (name, pause) in [("durable_submit", false), ("durable_submit_paused", true)] {
        if pause {
            client
                .pause_backend(&token, "singlequdit")
                .await
                .map_err(|e| anyhow!("pausing singlequdit: {e}"))?;
        }
        // A fresh user per phase: admission counts the user's queued jobs, so both phases start
        // from an empty queue.
        let (submitter, submitter_token) = served.user(&format!("bench-{name}"), false).await?;
        let submitter = Arc::new(submitter);
        let before = commit_stats(&served.rt).await;
        let phase = hammer(
            &submitter,
            &submitter_token,
            &sub.job_id,
            &tiny,
            Op::Submit,
            SUBMITTERS,
            window,
        )
        .await?;
        let after = commit_stats(&served.rt).await;
        report.results.push(with_commits(
            phase
                .row(&format!("{name}_{e}"), SUBMITTERS)
                .field("engine", e)
                .field("backend_paused", pause),
            before,
            after,
        ));
        if let Ok(c) = Arc::try_unwrap(submitter) {
            c.close().await;
        }
    }
    if let Ok(c) = Arc::try_unwrap(client) {
        c.close().await;
    }
    served.shutdown().await
}

fn main() -> Result<()> {
    let args = args_or_exit(
        "gateway",
        "gateway: status requests/s and latency over QUIC with 1, 16 and 64 concurrent streams; durable \
         submissions/s; on SQLite and on PostgreSQL (SHOTLINE_BENCH_POSTGRES, else a private cluster)",
    );
    let window = Duration::from_secs(if args.quick { 2 } else { 5 });
    let mut base = sim_config()?;
    base.limits.max_streams_per_connection = base.limits.max_streams_per_connection.max(256);
    // The submission phases queue tens of thousands of jobs for one user.
    base.limits.max_queued_jobs_per_user = 10_000_000;
    let mut report = Report::new("gateway", args);
    // Before any other thread exists (it may set the environment for store::testing).
    let database = postgres_database()?;
    let tokio = tokio_runtime(2)?;
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let mut config = base.clone();
        if let Engine::Postgres = engine {
            config.store.postgres = Some(database.url().into());
        }
        tokio
            .block_on(measure(engine, config, window, &mut report))
            .with_context(|| format!("the {} phases", engine.name()))?;
    }
    drop(tokio);
    drop(database);
    let rate = report
        .row("status_64_streams_sqlite")
        .and_then(|r| r.per_s)
        .unwrap_or(0.0);
    report.check(
        "status_64_streams_sqlite",
        Target::new(
            "target_status_per_s",
            rate >= TARGET_STATUS_PER_S,
            format!("≥ {TARGET_STATUS_PER_S:.0} status requests/s at 64 streams (SQLite)"),
            format!("{rate:.0}/s"),
        ),
    );
    report.notes.push(
        "server and client run in this process on the same 2 tokio workers (and the same cores): the \
         client's QUIC and TLS work is counted against the server's throughput"
            .into(),
    );
    report.notes.push(
        "each request is one bidirectional QUIC stream on one connection; submit rows: an ack means the \
         job is committed with fsync (SQLite: group commit; PostgreSQL: COMMIT returned with \
         synchronous_commit on); commit_ops counts every store operation, job runs included"
            .into(),
    );
    report.notes.push(match std::env::var("SHOTLINE_BENCH_POSTGRES") {
        Ok(url) if !url.is_empty() => format!(
            "postgres rows: a throw-away database on {}",
            shotline_store::redact_url(&url)
        ),
        _ => format!(
            "postgres rows: a private PostgreSQL cluster (initdb, default settings, fsync on) in {}, the \
             filesystem of the SQLite data dir; both in this process's box",
            std::env::temp_dir().display()
        ),
    });
    report.print(args.json)?;
    Ok(())
}
