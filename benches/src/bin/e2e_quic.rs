//! `e2e_quic`: submit → DONE latency of a 1-experiment, 100-shot singlequdit job over QUIC with `watch`,
//! against the same job through the embedding API in the same run.
//!
//! One in-process runtime on the embedded `sim.yaml` with the gateway on `127.0.0.1:0` (2 tokio workers,
//! shared by server and client). The job of `examples/rabi.json` (100 shots) runs N times each way
//! (`--quick`: 20, else 100), alternating QUIC and in-process so both see the same conditions, after one
//! warm-up job each way. QUIC: from just before `Client::submit` to `Client::watch` returning DONE (the
//! server pushes the status; nothing polls). In process: from just before `Runtime::submit` to the first
//! `Runtime::status` poll (every 1 ms) that reports DONE, as in `e2e_inproc`, so that figure is up to ~1 ms
//! long. Every result is checked to hold 100 measurements. Target: QUIC p50 ≤ in-process p50 + 2 ms.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde_json::Value as Json;
use shotline_benches::inproc::{check_result, sim_config, submit_and_time, tokio_runtime, POLL};
use shotline_benches::remote::{to_value, Served};
use shotline_benches::{
    args_or_exit, new_histogram, record, Percentiles, Report, ResultRow, Target,
};
use shotline_client::{Client, SubmitOptions};
use shotline_protocol::{JobStatus, Value};

/// `examples/rabi.json`: one experiment, 100 shots.
const RABI_JOB: &str = include_str!("../../../examples/rabi.json");
/// The target: QUIC p50 at most this much above the in-process p50.
const TARGET_EXTRA_NS: u64 = 2_000_000;

/// Times one job over QUIC: (submit → acknowledgement, submit → DONE) in ns.
async fn quic_job(client: &Client, token: &str, job: &Value, shots: usize) -> Result<(u64, u64)> {
    let t0 = Instant::now();
    let sub = client
        .submit(token, "singlequdit", job.clone(), SubmitOptions::default())
        .await
        .map_err(|e| anyhow!("submit over QUIC: {e}"))?;
    let acked = t0.elapsed().as_nanos() as u64;
    let end = client
        .watch(token, &sub.job_id, false, |_| {})
        .await
        .map_err(|e| anyhow!("watch of {}: {e}", sub.job_id))?;
    let done = t0.elapsed().as_nanos() as u64;
    if end.status != JobStatus::Done {
        return Err(anyhow!(
            "job {} ended {}: {}",
            sub.job_id,
            end.status,
            end.error_message
        ));
    }
    let result = client
        .result(token, &sub.job_id)
        .await
        .map_err(|e| anyhow!("result of {}: {e}", sub.job_id))?;
    let n = result.results.first().map_or(0, |r| r.data.memory.len());
    if n != shots {
        return Err(anyhow!(
            "job {}: {n} measurements, expected {shots}",
            sub.job_id
        ));
    }
    Ok((acked, done))
}

fn main() -> Result<()> {
    let args = args_or_exit(
        "e2e_quic",
        "e2e_quic: submit -> DONE latency of a 100-shot job over QUIC with watch vs the embedding API",
    );
    let jobs = if args.quick { 20u64 } else { 100 };
    let json: Json = serde_json::from_str(RABI_JOB).context("parsing examples/rabi.json")?;
    let shots = json["experiment_0"]["shots"].as_u64().unwrap_or(0) as usize;
    let job = to_value(&json)?;
    let config = sim_config()?;
    let mut report = Report::new("e2e_quic", args);
    let tokio = tokio_runtime(2)?;
    let (mut quic, mut ack, mut inproc) = (new_histogram(), new_histogram(), new_histogram());
    tokio.block_on(async {
        let served = Served::start(config).await?;
        let (client, token) = served.user("bench", false).await?;
        let timeout = Duration::from_secs(60);
        quic_job(&client, &token, &job, shots)
            .await
            .context("QUIC warm-up job")?;
        submit_and_time(&served.rt, "singlequdit", &json, timeout)
            .await
            .context("in-process warm-up job")?;
        for i in 0..jobs {
            let (a, d) = quic_job(&client, &token, &job, shots)
                .await
                .with_context(|| format!("QUIC job {i}"))?;
            record(&mut ack, a);
            record(&mut quic, d);
            let t = submit_and_time(&served.rt, "singlequdit", &json, timeout)
                .await
                .with_context(|| format!("in-process job {i}"))?;
            check_result(&served.rt, &t.job_id, shots).await?;
            record(&mut inproc, t.total_ns());
        }
        client.close().await;
        served.shutdown().await
    })?;
    drop(tokio);
    let (q, p) = (Percentiles::of(&quic), Percentiles::of(&inproc));
    report.results.push(
        ResultRow::new("quic_submit_to_done")
            .percentiles(&q)
            .field("shots_per_job", shots as u64),
    );
    report.results.push(
        ResultRow::new("inproc_submit_to_done")
            .percentiles(&p)
            .field("shots_per_job", shots as u64),
    );
    report
        .results
        .push(ResultRow::new("quic_submit_ack").percentiles(&Percentiles::of(&ack)));
    let extra = q.p50_ns as i64 - p.p50_ns as i64;
    report.check(
        "quic_submit_to_done",
        Target::new(
            "target_p50_vs_inproc",
            q.p50_ns <= p.p50_ns.saturating_add(TARGET_EXTRA_NS),
            "QUIC p50 ≤ in-process p50 + 2 ms",
            format!(
                "{:.2} ms vs {:.2} ms: {:+.2} ms",
                q.p50_ns as f64 / 1e6,
                p.p50_ns as f64 / 1e6,
                extra as f64 / 1e6
            ),
        ),
    );
    report.notes.push(format!(
        "QUIC and in-process jobs alternate on one runtime; in-process DONE is seen by polling every {} ms \
         (up to ~1 ms late), QUIC DONE is pushed by `watch`",
        POLL.as_millis()
    ));
    report.notes.push(
        "server and client share this process and its 2 tokio workers; the QUIC figure includes the \
         client's TLS and framing work"
            .into(),
    );
    report.print(args.json)?;
    Ok(())
}
