//! The crash drill, short version: the real binary killed with SIGKILL at random points under load, and
//! every promise checked after the restarts (see `shotline::drill`; the long version is the
//! `crash_trials` benchmark binary).

use std::time::Duration;

use shotline::drill::{run, DrillOptions};

use crate::common::{both_engines, TestEngine};

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn sigkill_at_random_points_loses_nothing_duplicates_nothing_and_leaves_nothing_stuck);
async fn sigkill_at_random_points_loses_nothing_duplicates_nothing_and_leaves_nothing_stuck(
    engine: TestEngine,
) {
    let tmp = tempfile::tempdir().unwrap();
    let report = run(&DrillOptions {
        binary: env!("CARGO_BIN_EXE_shotline").into(),
        dir: tmp.path().to_path_buf(),
        kills: 3,
        jobs_per_run: 6,
        seed: 20261122,
        max_run: Duration::from_millis(900),
        store: engine.yaml(),
    })
    .await
    .expect("the drill runs");
    println!("{}", serde_json::to_string(&report).unwrap());
    assert_eq!(report.kills, 3);
    assert!(report.acknowledged >= 6, "{report:?}");
    assert!(report.ok(), "a promise was broken: {report:?}");
    // Every acknowledged job ended (DONE, or ERROR with a reason after too many interruptions).
    assert!(report.done > 0, "{report:?}");
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn a_short_soak_has_no_errors_and_bounded_memory);
async fn a_short_soak_has_no_errors_and_bounded_memory(engine: TestEngine) {
    let tmp = tempfile::tempdir().unwrap();
    let report = shotline::soak::run(&shotline::soak::SoakOptions {
        binary: env!("CARGO_BIN_EXE_shotline").into(),
        dir: tmp.path().to_path_buf(),
        clients: 8,
        duration: Duration::from_secs(4),
        store: engine.yaml(),
    })
    .await
    .expect("the soak runs");
    println!("{}", serde_json::to_string(&report).unwrap());
    assert_eq!(report.errors, 0, "{:?}", report.error_samples);
    assert!(report.done > 0 && report.cancelled > 0, "{report:?}");
    // Bounded: a few seconds of load must not grow the server by more than 64 MB.
    assert!(
        report.rss_max_kb < report.rss_start_kb + 64 * 1024,
        "{report:?}"
    );
}
