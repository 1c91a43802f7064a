//! The singlequdit physics through the whole shot path (compiler, devices, shot clock, acquisition, analysis).
//!
//! These tests are about devices, physics and the protocol, not the store: they run on the default engine
//! (SQLite). The store's behaviour through the runtime runs on both engines (embedding, e2e, crash,
//! faults, supervision, limits, remote).

use std::f64::consts::PI;

use serde_json::json;
use shotline_hal::sim::qudit::{final_probabilities, SpinOp};

use crate::common::*;

/// Checks empirical frequencies of `samples` (outcomes 0..=n) against `p` bin by bin, within 4.5 standard
/// deviations (the samples come from a fixed seed, so the test is deterministic).
fn assert_distribution(samples: &[u32], p: &[f64]) {
    let n = samples.len() as f64;
    let mut counts = vec![0u64; p.len()];
    for &k in samples {
        counts[k as usize] += 1;
    }
    for (k, (&c, &pk)) in counts.iter().zip(p).enumerate() {
        let f = c as f64 / n;
        let sigma = (pk * (1.0 - pk) / n).sqrt();
        assert!(
            (f - pk).abs() <= 4.5 * sigma + 2e-3,
            "outcome {k}: frequency {f:.4}, model {pk:.4} (counts {counts:?})"
        );
    }
}

/// The angle a pulse of `theta` really gets: its duration is rounded to the 1 ns clock of the sim DDS.
fn rounded(theta: f64) -> f64 {
    let f = 10_000.0;
    let ns = (theta / (2.0 * PI * f) * 1e9).round();
    2.0 * PI * f * ns * 1e-9
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rlx_pi_flips_every_atom_on_every_shot_up_to_500_atoms() {
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(&TestEngine::sqlite(), dir.path(), sim_config()).await;
    let mut job = serde_json::Map::new();
    for (i, n) in [1u32, 37, 500].iter().enumerate() {
        job.insert(
            format!("experiment_{i}"),
            experiment(
                json!([["load", [0], [n]], ["rlx", [0], [PI]], ["measure", [0], []]]),
                20,
                None,
            ),
        );
    }
    let result = run_ok(&rt, &serde_json::Value::Object(job)).await;
    for (i, n) in [1u32, 37, 500].iter().enumerate() {
        assert_eq!(memory(&result, i), vec![*n; 20], "N = {n}");
    }
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rlx_half_pi_gives_the_binomial_distribution() {
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(&TestEngine::sqlite(), dir.path(), sim_config()).await;
    let job = job1(
        json!([
            ["load", [0], [10]],
            ["rlx", [0], [PI / 2.0]],
            ["measure", [0], []]
        ]),
        3000,
        Some(11),
    );
    let result = run_ok(&rt, &job).await;
    let samples = memory(&result, 0);
    // Binomial(10, 1/2), independently of the simulator.
    let binom: Vec<f64> = (0..=10u32)
        .map(|k| {
            let c = (0..k).fold(1.0, |acc, i| acc * (10 - i) as f64 / (i + 1) as f64);
            c / 1024.0
        })
        .collect();
    assert_distribution(&samples, &binom);
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squeezing_sequence_follows_the_model_of_the_programmed_pulses() {
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(&TestEngine::sqlite(), dir.path(), sim_config()).await;
    let (a, b, c, d) = (PI / 2.0, 0.35, 0.8, 1.3);
    let job = job1(
        json!([
            ["load", [0], [6]],
            ["rlx", [0], [a]],
            ["rlz2", [0], [b]],
            ["rlz", [0], [c]],
            ["rlx", [0], [d]],
            ["measure", [0], []]
        ]),
        3000,
        Some(5),
    );
    let result = run_ok(&rt, &job).await;
    let model = final_probabilities(
        6,
        &[
            SpinOp::Rx(rounded(a)),
            SpinOp::Rz2(rounded(b)),
            SpinOp::Rz(rounded(c)),
            SpinOp::Rx(rounded(d)),
        ],
    )
    .unwrap();
    assert_distribution(&memory(&result, 0), &model);
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_without_load_has_one_atom() {
    let dir = tempfile::tempdir().unwrap();
    let rt = start_in(&TestEngine::sqlite(), dir.path(), sim_config()).await;
    let result = run_ok(
        &rt,
        &job1(json!([["rlx", [0], [PI]], ["measure", [0], []]]), 10, None),
    )
    .await;
    assert_eq!(memory(&result, 0), vec![1; 10]);
    let result = run_ok(&rt, &job1(json!([["measure", [0], []]]), 10, None)).await;
    assert_eq!(memory(&result, 0), vec![0; 10]);
    rt.shutdown().await.unwrap();
}
