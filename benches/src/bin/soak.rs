//! `soak`: N concurrent clients for T seconds against the real `shotline` binary (`shotline::soak`): each
//! client is its own user and connection and loops submit (a 10-shot job) → status → watch to the end,
//! cancelling every fifth job. Reports errors (limit rejections counted apart), status and submit → DONE
//! latencies and the server's resident memory after a 2 s warm-up, at the end and at its largest. Exits 1
//! if there was any error. Target: 100 clients × 60 s with 0 errors and bounded memory.
//!
//! Build the server first: `cargo build --release -p shotline` (the binary is looked up next to this one).

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use shotline::soak::{run, SoakOptions, SoakReport};
use shotline_benches::inproc::tokio_runtime;
use shotline_benches::remote::{check_binary, drill_args_or_exit, shotline_binary};
use shotline_benches::Machine;

const USAGE: &str = "soak: N clients x T seconds of submit, status, watch and cancel against the real shotline binary\n\n\
usage: cargo build --release -p shotline && cargo run --release --bin soak -- [--quick] [--json] \
[--clients N] [--seconds T] [--binary PATH]\n  \
--clients N    concurrent clients, each its own user and connection (default 100; --quick: 20)\n  \
--seconds T    duration of the load (default 60; --quick: 10)\n  \
--binary PATH  the shotline binary (default: `shotline` next to this binary)\n  \
--json         print one JSON document instead of a table";

/// Logins the server admits per client address per minute (`actors/src/service/limits.rs`): all soak
/// clients come from 127.0.0.1, so clients beyond this many are refused at login and stay idle.
const LOGINS_PER_ADDRESS_PER_MINUTE: u32 = 20;

/// Memory may grow at most this much from the warm-up figure to the largest one to count as bounded.
const BOUNDED_GROWTH: f64 = 0.5;

#[derive(Debug, Serialize)]
struct Output {
    benchmark: &'static str,
    quick: bool,
    machine: Machine,
    #[serde(flatten)]
    report: SoakReport,
    /// (max − start) / start resident memory.
    memory_growth: f64,
    /// (end − start) / start resident memory.
    memory_growth_end: f64,
    target_zero_errors: bool,
    target_bounded_memory: bool,
}

fn growth(from: u64, to: u64) -> f64 {
    if from == 0 {
        return 0.0;
    }
    ((to as f64 - from as f64) / from as f64 * 1000.0).round() / 1000.0
}

fn main() {
    // A plain message (no backtrace) for the errors a user can fix, such as a missing binary; exit 2 as
    // for a bad argument (1 means a broken promise).
    if let Err(e) = try_main() {
        eprintln!("soak: {e:#}");
        std::process::exit(2);
    }
}

fn try_main() -> Result<()> {
    let args = drill_args_or_exit("soak", &["clients", "seconds"], USAGE);
    if let Some(config) = &args.config {
        anyhow::bail!(
            "--config {}: the soak runs on SQLite only (crash_trials takes --config)",
            config.display()
        );
    }
    let clients = args
        .number("clients")
        .unwrap_or(if args.quick { 20 } else { 100 });
    let clients = u32::try_from(clients).map_err(|_| anyhow!("--clients {clients}: too large"))?;
    if clients == 0 {
        return Err(anyhow!("--clients 0: at least 1 client is needed"));
    }
    let seconds = args
        .number("seconds")
        .unwrap_or(if args.quick { 10 } else { 60 });
    let binary = match &args.binary {
        Some(b) => {
            check_binary(b)?;
            b.clone()
        }
        None => shotline_binary()?,
    };
    let machine = Machine::current();
    let dir = tempfile::tempdir().context("creating a temporary soak dir")?;
    let tokio = tokio_runtime(2)?;
    let report = tokio
        .block_on(run(&SoakOptions {
            binary,
            dir: dir.path().to_path_buf(),
            clients,
            duration: Duration::from_secs(seconds),
            // The default store (SQLite in the soak's data dir).
            store: String::new(),
        }))
        .map_err(|e| anyhow!("the soak could not run: {e}"))?;
    drop(tokio);
    let memory_growth = growth(report.rss_start_kb, report.rss_max_kb);
    let out = Output {
        benchmark: "soak",
        quick: args.quick,
        machine,
        memory_growth,
        memory_growth_end: growth(report.rss_start_kb, report.rss_end_kb),
        target_zero_errors: report.errors == 0,
        target_bounded_memory: memory_growth <= BOUNDED_GROWTH,
        report,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let (m, r) = (&out.machine, &out.report);
        println!(
            "soak{}: {} cores, kernel {}, load {:?}",
            if out.quick { " (quick)" } else { "" },
            m.cores,
            m.kernel,
            m.load_avg
        );
        println!(
            "{} clients for {:.1} s: submitted {}, done {}, cancelled {}",
            r.clients, r.seconds, r.submitted, r.done, r.cancelled
        );
        println!(
            "errors {}, limit rejections {}",
            r.errors, r.limit_rejections
        );
        for s in &r.error_samples {
            println!("  error: {s}");
        }
        println!(
            "status latency p50 {} µs, p99 {} µs; submit -> DONE p50 {} ms, p99 {} ms",
            r.status_p50_us, r.status_p99_us, r.job_p50_ms, r.job_p99_ms
        );
        println!(
            "server RSS: start {} kB, end {} kB, max {} kB; growth to max {:+.1} %, to end {:+.1} %",
            r.rss_start_kb,
            r.rss_end_kb,
            r.rss_max_kb,
            out.memory_growth * 100.0,
            out.memory_growth_end * 100.0
        );
        if r.clients > LOGINS_PER_ADDRESS_PER_MINUTE && r.limit_rejections > 0 {
            println!(
                "note: the server admits {LOGINS_PER_ADDRESS_PER_MINUTE} logins per minute per address and every \
                 client logs in from 127.0.0.1: clients refused at login (counted in limit rejections) stayed \
                 idle, so up to {} of the {} clients were not active",
                r.clients - LOGINS_PER_ADDRESS_PER_MINUTE,
                r.clients
            );
        }
        println!(
            "target zero_errors: {}",
            if out.target_zero_errors {
                "PASS"
            } else {
                "MISS"
            }
        );
        println!(
            "target bounded_memory (max ≤ start + {:.0} %): {}",
            BOUNDED_GROWTH * 100.0,
            if out.target_bounded_memory {
                "PASS"
            } else {
                "MISS"
            }
        );
    }
    if out.report.errors > 0 {
        std::process::exit(1);
    }
    Ok(())
}
