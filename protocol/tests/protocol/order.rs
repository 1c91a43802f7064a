//! Experiment order survives JSON and msgpack; the typed job re-serialises like DESIGN §6.

use shotline_protocol::{validate_job, Job, Value};

use crate::common::*;

fn twelve_experiments() -> String {
    let exps: Vec<String> = (0..12)
        .map(|i| {
            format!(
                r#""experiment_{i}": {{"instructions": [["rlx", [0], [0.{i}]], ["measure", [0], []]], "num_wires": 1, "shots": {}}}"#,
                i + 1
            )
        })
        .collect();
    format!("{{{}}}", exps.join(","))
}

fn names(job: &Job) -> Vec<String> {
    job.experiments.iter().map(|(n, _)| n.clone()).collect()
}

fn expected() -> Vec<String> {
    (0..12).map(|i| format!("experiment_{i}")).collect()
}

#[test]
fn order_survives_json_round_trip() {
    let job = validate_job(&json(&twelve_experiments()), &backend()).unwrap();
    assert_eq!(names(&job), expected());
    let text = serde_json::to_string(&job).unwrap();
    let pos2 = text.find("experiment_2").unwrap();
    let pos10 = text.find("experiment_10").unwrap();
    assert!(pos2 < pos10);
    let back: Job = serde_json::from_str(&text).unwrap();
    assert_eq!(back, job);
    // raw value too
    let raw = json(&twelve_experiments());
    let raw_back: Value = serde_json::from_str(&serde_json::to_string(&raw).unwrap()).unwrap();
    assert_eq!(raw_back, raw);
}

#[test]
fn order_survives_msgpack_round_trip() {
    let job = validate_job(&json(&twelve_experiments()), &backend()).unwrap();
    let bytes = rmp_serde::to_vec_named(&job).unwrap();
    let back: Job = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(back, job);
    assert_eq!(names(&back), expected());
    // and through the untyped value + validator, as the gateway does
    let raw: Value = rmp_serde::from_slice(&bytes).unwrap();
    let again = validate_job(&raw, &backend()).unwrap();
    assert_eq!(names(&again), expected());
}

/// Compares JSON trees, treating numbers by value (50 == 50.0).
fn same_shape(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (a, b) {
        (J::Number(x), J::Number(y)) => x.as_f64() == y.as_f64(),
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_shape(p, q))
        }
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k1, v1), (k2, v2))| k1 == k2 && same_shape(v1, v2))
        }
        _ => a == b,
    }
}

#[test]
fn design_example_reserialises_to_the_same_json_shape() {
    let job = validate_job(&json(DESIGN_JOB), &backend()).unwrap();
    let out = serde_json::to_value(&job).unwrap();
    let original: serde_json::Value = serde_json::from_str(DESIGN_JOB).unwrap();
    assert!(same_shape(&out, &original), "{out}");
}

#[test]
fn typed_job_omits_absent_seed() {
    let job = validate_job(&instr_job(r#"[["measure", [0], []]]"#), &backend()).unwrap();
    let out = serde_json::to_value(&job).unwrap();
    assert!(out["experiment_0"].get("seed").is_none());
    assert_eq!(out["experiment_0"]["wire_order"], "sequential");
}
