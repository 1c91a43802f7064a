//! `crash_trials`: the long version of the crash drill. Each trial runs the real `shotline` binary under
//! load, kills it with SIGKILL at random points (`--kills K` times), restarts it, and checks that no
//! acknowledged job was lost, none duplicated, none stuck, every DONE job has exactly one correct result
//! and no execution id was reused (`shotline::drill`). Trials use seeds 1..=N, so a failing trial can be
//! rerun alone. Exits 1 if any promise broke in any trial.
//!
//! Build the server first: `cargo build --release -p shotline` (the binary is looked up next to this one).

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use shotline::drill::{run, DrillOptions, DrillReport};
use shotline_benches::inproc::tokio_runtime;
use shotline_benches::remote::{check_binary, drill_args_or_exit, shotline_binary};
use shotline_benches::Machine;

/// Jobs submitted per run of the server (as in the test-suite drill).
const JOBS_PER_RUN: u32 = 6;
/// Longest life of one server run before it is killed.
const MAX_RUN: Duration = Duration::from_millis(900);

const USAGE: &str = "crash_trials: SIGKILL the real shotline binary at random points under load, N trials\n\n\
usage: cargo build --release -p shotline && cargo run --release --bin crash_trials -- [--quick] [--json] \
[--trials N] [--kills K] [--binary PATH] [--config FILE]\n  \
--trials N     trials (default 20; --quick: 3)\n  \
--kills K      kills per trial (default 5)\n  \
--binary PATH  the shotline binary (default: `shotline` next to this binary)\n  \
--config FILE  run on the store FILE's `store` section selects (PostgreSQL: trials share the database, \
one user each); the rest of the drill's config is the simulated one\n  \
--json         print one JSON document instead of a table";

/// The summary over all trials.
#[derive(Debug, Serialize)]
struct Summary {
    benchmark: &'static str,
    quick: bool,
    machine: Machine,
    trials: u32,
    kills_per_trial: u32,
    kills: u64,
    acknowledged: u64,
    done: u64,
    lost: u64,
    duplicated: u64,
    stuck: u64,
    bad_results: u64,
    reused_execution_ids: u64,
    failed_trials: Vec<u64>,
    seconds: f64,
    ok: bool,
    per_trial: Vec<Trial>,
}

#[derive(Debug, Serialize)]
struct Trial {
    seed: u64,
    seconds: f64,
    #[serde(flatten)]
    report: DrillReport,
}

fn main() {
    // A plain message (no backtrace) for the errors a user can fix, such as a missing binary; exit 2 as
    // for a bad argument (1 means a broken promise).
    if let Err(e) = try_main() {
        eprintln!("crash_trials: {e:#}");
        std::process::exit(2);
    }
}

fn try_main() -> Result<()> {
    let args = drill_args_or_exit("crash_trials", &["trials", "kills"], USAGE);
    let trials = args
        .number("trials")
        .unwrap_or(if args.quick { 3 } else { 20 });
    let kills = args.number("kills").unwrap_or(5);
    let kills = u32::try_from(kills).map_err(|_| anyhow!("--kills {kills}: too large"))?;
    let binary = match &args.binary {
        Some(b) => {
            check_binary(b)?;
            b.clone()
        }
        None => shotline_binary()?,
    };
    let store = match &args.config {
        Some(file) => store_yaml(file)?,
        None => String::new(),
    };
    let machine = Machine::current();
    let tokio = tokio_runtime(2)?;
    let started = Instant::now();
    let mut per_trial = Vec::new();
    for seed in 1..=trials {
        let dir = tempfile::tempdir().context("creating a temporary trial dir")?;
        let t0 = Instant::now();
        let report = tokio
            .block_on(run(&DrillOptions {
                binary: binary.clone(),
                dir: dir.path().to_path_buf(),
                kills,
                jobs_per_run: JOBS_PER_RUN,
                seed,
                max_run: MAX_RUN,
                store: store.clone(),
            }))
            .map_err(|e| anyhow!("trial {seed} could not run: {e}"))?;
        let seconds = (t0.elapsed().as_secs_f64() * 10.0).round() / 10.0;
        if !args.json {
            eprintln!(
                "trial {seed}/{trials}: {} kills, {} acknowledged, {} done, lost {}, duplicated {}, stuck {}, \
                 bad results {}, reused ids {} ({seconds} s){}",
                report.kills,
                report.acknowledged,
                report.done,
                report.lost,
                report.duplicated,
                report.stuck,
                report.bad_results,
                report.reused_execution_ids,
                if report.ok() { "" } else { "  BROKEN PROMISE" }
            );
        }
        per_trial.push(Trial {
            seed,
            seconds,
            report,
        });
    }
    let sum = |f: fn(&DrillReport) -> u64| per_trial.iter().map(|t| f(&t.report)).sum::<u64>();
    let summary = Summary {
        benchmark: "crash_trials",
        quick: args.quick,
        machine,
        trials: per_trial.len() as u32,
        kills_per_trial: kills,
        kills: sum(|r| u64::from(r.kills)),
        acknowledged: sum(|r| r.acknowledged),
        done: sum(|r| r.done),
        lost: sum(|r| r.lost),
        duplicated: sum(|r| r.duplicated),
        stuck: sum(|r| r.stuck),
        bad_results: sum(|r| r.bad_results),
        reused_execution_ids: sum(|r| r.reused_execution_ids),
        failed_trials: per_trial
            .iter()
            .filter(|t| !t.report.ok())
            .map(|t| t.seed)
            .collect(),
        seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        ok: per_trial.iter().all(|t| t.report.ok()),
        per_trial,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        let m = &summary.machine;
        println!(
            "crash_trials{}: {} cores, kernel {}, load {:?}",
            if summary.quick { " (quick)" } else { "" },
            m.cores,
            m.kernel,
            m.load_avg
        );
        println!(
            "trials {}, kills {} ({} per trial), jobs acknowledged {}, done {}, {:.1} s",
            summary.trials,
            summary.kills,
            summary.kills_per_trial,
            summary.acknowledged,
            summary.done,
            summary.seconds
        );
        println!(
            "lost {}, duplicated {}, stuck {}, bad results {}, reused execution ids {}",
            summary.lost,
            summary.duplicated,
            summary.stuck,
            summary.bad_results,
            summary.reused_execution_ids
        );
        println!(
            "promises: {}",
            if summary.ok {
                "PASS (all held in every trial)".to_string()
            } else {
                format!(
                    "MISS (broken in trials with seeds {:?})",
                    summary.failed_trials
                )
            }
        );
    }
    if !summary.ok {
        std::process::exit(1);
    }
    Ok(())
}

/// The `store` section of `file` as YAML for the drill's config (empty: SQLite, the default).
fn store_yaml(file: &std::path::Path) -> Result<String> {
    let loaded = shotline_config::load(file).map_err(|e| anyhow!("{e}"))?;
    let store = &loaded.config.store;
    Ok(match &store.postgres {
        Some(url) => {
            eprintln!("crash_trials: store {}", url.redacted());
            format!(
                "store: {{ postgres: {}, allow_synchronous_commit_off: {} }}",
                serde_json::to_string(url.expose())?,
                store.allow_synchronous_commit_off
            )
        }
        None => String::new(),
    })
}
