//! The embedding API: submit, status, result in-process; validation; ordering; persistence across restarts.

use std::time::Duration;

use serde_json::json;
use shotline::protocol::JobStatus;
use shotline::SubmitOptions;

use crate::common::*;

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn a_seeded_job_reproduces_exactly_and_has_the_result_format);
async fn a_seeded_job_reproduces_exactly_and_has_the_result_format(engine: TestEngine) {
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(&engine, dir.path(), sim_config()).await;
    let job = job1(
        json!([
            ["load", [0], [50]],
            ["rlx", [0], [std::f64::consts::FRAC_PI_2]],
            ["measure", [0], []]
        ]),
        64,
        Some(7),
    );
    let a = run_ok(&rt, &job).await;
    let b = run_ok(&rt, &job).await;
    assert_eq!(a.results[0].data.memory, b.results[0].data.memory);
    assert_ne!(a.job_id, b.job_id);
    // Result format of DESIGN section 6.
    assert_eq!(a.backend_name, "singlequdit");
    assert!(a.success);
    assert_eq!(a.status, JobStatus::Done);
    let r = &a.results[0];
    assert_eq!(r.header.name, "experiment_0");
    assert_eq!(r.shots, 64);
    assert_eq!(r.data.memory.len(), 64);
    assert!(r
        .data
        .memory
        .iter()
        .all(|m| m.parse::<u32>().unwrap() <= 50));
    assert_eq!(r.seed, Some(7));
    assert_eq!(r.data.counts.values().sum::<u64>(), 64);
    let timing = r.timing.as_ref().expect("timing block");
    assert_eq!(timing.shots, 64);
    assert_eq!(timing.events, 64 * 3);
    let x = a.execution_id.as_deref().expect("execution id");
    assert!(x.len() >= 12 && x.as_bytes()[8] == b'-', "execution id {x}");
    rt.shutdown().await.unwrap();
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn invalid_jobs_are_refused_with_codes_and_paths_and_nothing_is_queued);
async fn invalid_jobs_are_refused_with_codes_and_paths_and_nothing_is_queued(engine: TestEngine) {
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(&engine, dir.path(), sim_config()).await;
    let bad = json!({
        "experiment_0": experiment(json!([["rlx", [0], [7.0]], ["measure", [0], []], ["rlz", [0], [0.1]]]), 0, None),
        "experiment_1": experiment(json!([["rlx", [0], [1.0]], ["load", [0], [5]]]), 10, None),
    });
    let err = rt
        .submit("singlequdit", &bad, SubmitOptions::default())
        .await
        .expect_err("invalid");
    assert_eq!(err.code, "VALIDATION_FAILED");
    let report = err.report.expect("details");
    let has = |code: &str, path: &str| {
        report
            .errors
            .iter()
            .any(|e| e.code.as_str() == code && e.path == path)
    };
    assert!(has("SHOTS_OUT_OF_RANGE", "experiment_0.shots"), "{report}");
    assert!(
        has(
            "PARAM_OUT_OF_RANGE",
            "experiment_0.instructions[0].params[0]"
        ),
        "{report}"
    );
    assert!(
        has("GATE_AFTER_MEASURE", "experiment_0.instructions[2]"),
        "{report}"
    );
    assert!(
        has("LOAD_NOT_FIRST", "experiment_1.instructions[1]"),
        "{report}"
    );
    assert!(
        has("MISSING_MEASURE", "experiment_1.instructions"),
        "{report}"
    );
    let unknown = rt
        .submit(
            "nope",
            &job1(json!([["measure", [0], []]]), 1, None),
            SubmitOptions::default(),
        )
        .await
        .expect_err("unknown backend");
    assert_eq!(unknown.code, "NOT_FOUND");
    assert!(
        unknown.message.contains("singlequdit"),
        "{}",
        unknown.message
    );
    rt.shutdown().await.unwrap();
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn experiments_keep_their_submission_order_end_to_end);
async fn experiments_keep_their_submission_order_end_to_end(engine: TestEngine) {
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(&engine, dir.path(), sim_config()).await;
    let mut job = serde_json::Map::new();
    for i in 0..12 {
        job.insert(
            format!("experiment_{i}"),
            experiment(
                json!([
                    ["load", [0], [i + 1]],
                    ["rlx", [0], [std::f64::consts::PI]],
                    ["measure", [0], []]
                ]),
                2,
                Some(1),
            ),
        );
    }
    let result = run_ok(&rt, &serde_json::Value::Object(job)).await;
    let names: Vec<&str> = result
        .results
        .iter()
        .map(|r| r.header.name.as_str())
        .collect();
    let expected: Vec<String> = (0..12).map(|i| format!("experiment_{i}")).collect();
    assert_eq!(names, expected);
    // rlx(pi) flips every atom: experiment i measures i + 1 atoms on every shot.
    for i in 0..12 {
        assert_eq!(memory(&result, i), vec![i as u32 + 1; 2]);
    }
    rt.shutdown().await.unwrap();
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn an_unseeded_job_gets_a_recorded_server_seed);
async fn an_unseeded_job_gets_a_recorded_server_seed(engine: TestEngine) {
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(&engine, dir.path(), sim_config()).await;
    let job = job1(
        json!([
            ["load", [0], [20]],
            ["rlx", [0], [1.0]],
            ["measure", [0], []]
        ]),
        20,
        None,
    );
    let result = run_ok(&rt, &job).await;
    let seed = result.results[0]
        .seed
        .expect("server-chosen seed is reported");
    let x = result.execution_id.clone().unwrap();
    rt.shutdown().await.unwrap();
    let store = engine.open(dir.path()).await;
    let exec = store
        .execution(&x)
        .await
        .unwrap()
        .expect("execution recorded");
    assert_eq!(exec.seed, seed);
    assert_eq!(exec.config_hash, "sha256:test");
    assert!(exec.software_version.starts_with("shotline "));
    assert!(exec.ended_at.is_some());
    assert!(exec.calibration.contains("rabi_frequency_hz"));
    // Re-running the same job body with that seed reproduces the memory.
    let dir2 = tempfile::tempdir().unwrap();
    let rt2 = start_in(&engine, dir2.path(), sim_config()).await;
    let again = run_ok(
        &rt2,
        &job1(
            json!([
                ["load", [0], [20]],
                ["rlx", [0], [1.0]],
                ["measure", [0], []]
            ]),
            20,
            Some(seed),
        ),
    )
    .await;
    assert_eq!(again.results[0].data.memory, result.results[0].data.memory);
    rt2.shutdown().await.unwrap();
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn jobs_results_and_execution_ids_survive_a_restart);
async fn jobs_results_and_execution_ids_survive_a_restart(engine: TestEngine) {
    let dir = tempfile::tempdir().unwrap();
    let job = job1(
        json!([
            ["load", [0], [3]],
            ["rlx", [0], [std::f64::consts::PI]],
            ["measure", [0], []]
        ]),
        5,
        Some(3),
    );
    let rt = start_in(&engine, dir.path(), sim_config()).await;
    let first = run_ok(&rt, &job).await;
    rt.shutdown().await.unwrap();

    let rt = start_in(&engine, dir.path(), sim_config()).await;
    let status = rt.status(&first.job_id).await.unwrap();
    assert_eq!(status.status, JobStatus::Done);
    let again = rt.result(&first.job_id).await.unwrap();
    assert_eq!(again, first);
    let second = run_ok(&rt, &job).await;
    let (x1, x2) = (first.execution_id.unwrap(), second.execution_id.unwrap());
    assert_ne!(x1, x2, "execution ids are never reused");
    assert!(x2 > x1, "{x2} after {x1}");
    rt.shutdown().await.unwrap();
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn an_idempotent_resubmit_returns_the_same_job);
async fn an_idempotent_resubmit_returns_the_same_job(engine: TestEngine) {
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(&engine, dir.path(), sim_config()).await;
    let job = job1(json!([["measure", [0], []]]), 3, Some(1));
    let opts = SubmitOptions {
        idempotency_key: Some("k-1".into()),
        ..Default::default()
    };
    let a = rt.submit("singlequdit", &job, opts.clone()).await.unwrap();
    let b = rt.submit("singlequdit", &job, opts.clone()).await.unwrap();
    assert_eq!(a.job_id, b.job_id);
    assert!(!a.duplicate && b.duplicate);
    let other = job1(json!([["measure", [0], []]]), 4, Some(1));
    let c = rt
        .submit("singlequdit", &other, opts)
        .await
        .expect_err("conflict");
    assert_eq!(c.code, "IDEMPOTENCY_CONFLICT");
    let s = rt.wait(&a.job_id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(s.status, JobStatus::Done);
    rt.shutdown().await.unwrap();
}

both_engines!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn a_full_acquisition_ring_fails_or_degrades_per_policy);
async fn a_full_acquisition_ring_fails_or_degrades_per_policy(engine: TestEngine) {
    use shotline::config::OverflowPolicy;
    // Shots of ~0.3 ms and a ring of 2 records drained every 2 ms: records must be lost.
    let job = job1(
        json!([
            ["load", [0], [5]],
            ["rlx", [0], [1.0]],
            ["measure", [0], []]
        ]),
        200,
        Some(2),
    );
    for policy in [OverflowPolicy::Fail, OverflowPolicy::Degrade] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = sim_config();
        config.backends[0].timing.shot_ring = 2;
        config.backends[0].timing.overflow_policy = policy;
        let rt = start_in(&engine, dir.path(), config).await;
        let (id, status) = run_job(&rt, &job).await;
        let result = rt.result(&id).await.unwrap();
        match policy {
            OverflowPolicy::Fail => {
                assert_eq!(status, JobStatus::Error);
                let why = &result.header["error_message"];
                assert!(why.contains("lost to a full ring"), "{why}");
            }
            OverflowPolicy::Degrade => {
                assert_eq!(status, JobStatus::Done);
                let r = &result.results[0];
                let timing = r.timing.as_ref().unwrap();
                assert!(timing.lost_shots > 0, "no shot was lost: {timing:?}");
                assert_eq!(r.data.memory.len() as u64 + timing.lost_shots, 200);
                assert_eq!(r.shots as usize, r.data.memory.len());
            }
        }
        rt.shutdown().await.unwrap();
    }
}
